//! Provider kinds and their presets: which wire format each speaks, where it lives and how
//! it authenticates, so an operator writes `kind = "groq"` and an API key, nothing more.

use serde::Deserialize;

/// The wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    Anthropic,
    Gemini,
    /// Sluice's built-in deterministic provider; no network.
    Mock,
}

/// How the API key travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization: Bearer KEY`
    Bearer,
    /// Azure OpenAI: `api-key: KEY`
    AzureApiKey,
    /// Anthropic: `x-api-key: KEY`
    XApiKey,
    /// Gemini: `x-goog-api-key: KEY`
    GoogApiKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    OpenAi,
    Azure,
    Groq,
    Mistral,
    DeepSeek,
    Together,
    Fireworks,
    OpenRouter,
    Xai,
    Perplexity,
    Cerebras,
    Ollama,
    Vllm,
    LmStudio,
    Anthropic,
    Gemini,
    Mock,
}

/// What a kind fills in when the config leaves it out.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub wire: Wire,
    /// `None`: the operator must give `base_url` (Azure, whose URL names the resource).
    pub base_url: Option<&'static str>,
    pub auth: AuthStyle,
    /// Whether the provider requires an API key (local servers do not).
    pub needs_key: bool,
    /// Whether the provider accepts `stream_options.include_usage`.
    pub stream_usage: bool,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 17] = [
        ProviderKind::OpenAi,
        ProviderKind::Azure,
        ProviderKind::Groq,
        ProviderKind::Mistral,
        ProviderKind::DeepSeek,
        ProviderKind::Together,
        ProviderKind::Fireworks,
        ProviderKind::OpenRouter,
        ProviderKind::Xai,
        ProviderKind::Perplexity,
        ProviderKind::Cerebras,
        ProviderKind::Ollama,
        ProviderKind::Vllm,
        ProviderKind::LmStudio,
        ProviderKind::Anthropic,
        ProviderKind::Gemini,
        ProviderKind::Mock,
    ];

    pub fn preset(self) -> Preset {
        use AuthStyle::*;
        let openai = |url: &'static str, stream_usage: bool| Preset {
            wire: Wire::OpenAi,
            base_url: Some(url),
            auth: Bearer,
            needs_key: true,
            stream_usage,
        };
        let local = |url: &'static str, stream_usage: bool| Preset {
            needs_key: false,
            ..openai(url, stream_usage)
        };
        match self {
            ProviderKind::OpenAi => openai("https://api.openai.com/v1", true),
            ProviderKind::Azure => Preset {
                base_url: None,
                auth: AzureApiKey,
                ..openai("", true)
            },
            ProviderKind::Groq => openai("https://api.groq.com/openai/v1", true),
            // Mistral sends usage in its last chunk unasked and rejects unknown fields.
            ProviderKind::Mistral => openai("https://api.mistral.ai/v1", false),
            ProviderKind::DeepSeek => openai("https://api.deepseek.com/v1", true),
            ProviderKind::Together => openai("https://api.together.xyz/v1", true),
            ProviderKind::Fireworks => openai("https://api.fireworks.ai/inference/v1", true),
            ProviderKind::OpenRouter => openai("https://openrouter.ai/api/v1", true),
            ProviderKind::Xai => openai("https://api.x.ai/v1", true),
            ProviderKind::Perplexity => openai("https://api.perplexity.ai", false),
            ProviderKind::Cerebras => openai("https://api.cerebras.ai/v1", true),
            ProviderKind::Ollama => local("http://127.0.0.1:11434/v1", true),
            ProviderKind::Vllm => local("http://127.0.0.1:8000/v1", true),
            ProviderKind::LmStudio => local("http://127.0.0.1:1234/v1", false),
            ProviderKind::Anthropic => Preset {
                wire: Wire::Anthropic,
                base_url: Some("https://api.anthropic.com/v1"),
                auth: XApiKey,
                needs_key: true,
                stream_usage: false,
            },
            ProviderKind::Gemini => Preset {
                wire: Wire::Gemini,
                base_url: Some("https://generativelanguage.googleapis.com/v1beta"),
                auth: GoogApiKey,
                needs_key: true,
                stream_usage: false,
            },
            ProviderKind::Mock => Preset {
                wire: Wire::Mock,
                base_url: Some("mock://"),
                auth: Bearer,
                needs_key: false,
                stream_usage: true,
            },
        }
    }

    pub fn wire(self) -> Wire {
        self.preset().wire
    }

    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Azure => "azure",
            ProviderKind::Groq => "groq",
            ProviderKind::Mistral => "mistral",
            ProviderKind::DeepSeek => "deepseek",
            ProviderKind::Together => "together",
            ProviderKind::Fireworks => "fireworks",
            ProviderKind::OpenRouter => "openrouter",
            ProviderKind::Xai => "xai",
            ProviderKind::Perplexity => "perplexity",
            ProviderKind::Cerebras => "cerebras",
            ProviderKind::Ollama => "ollama",
            ProviderKind::Vllm => "vllm",
            ProviderKind::LmStudio => "lmstudio",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Mock => "mock",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_fill_url_and_auth() {
        for kind in ProviderKind::ALL {
            let p = kind.preset();
            match kind {
                ProviderKind::Azure => {
                    assert!(p.base_url.is_none(), "azure's URL names the resource");
                    assert_eq!(p.auth, AuthStyle::AzureApiKey);
                }
                ProviderKind::Mock => assert_eq!(p.wire, Wire::Mock),
                _ => {
                    let url = p.base_url.expect("a preset URL");
                    assert!(
                        url.starts_with("https://") || url.starts_with("http://127.0.0.1"),
                        "{url}"
                    );
                    assert!(!url.ends_with('/'), "{url}");
                }
            }
        }
        assert_eq!(ProviderKind::Anthropic.preset().auth, AuthStyle::XApiKey);
        assert_eq!(ProviderKind::Gemini.preset().auth, AuthStyle::GoogApiKey);
        assert_eq!(ProviderKind::Groq.preset().wire, Wire::OpenAi);
        assert!(!ProviderKind::Ollama.preset().needs_key);
        assert!(ProviderKind::DeepSeek.preset().needs_key);
    }

    #[test]
    fn names_round_trip_through_serde() {
        for kind in ProviderKind::ALL {
            let parsed: ProviderKind =
                serde_json::from_value(serde_json::Value::String(kind.name().into())).unwrap();
            assert_eq!(parsed, kind);
        }
    }
}
