//! One HTTP call to one provider with one key: build the request in the provider's wire
//! format, enforce the timeouts, classify a failure, decode the answer.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderName, HeaderValue};
use sluice_config::{AuthStyle, ProviderConfig, ProviderKind, Wire};
use sluice_llm::{
    ChatRequest, DecodeError, EmbeddingsRequest, EmbeddingsResponse, ResponseMeta, StreamDecoder,
    UpstreamError, anthropic, gemini, openai,
};

use crate::failure::{Failure, FailureClass, retry_after};
use crate::stream::{commit_first, sse_chunks};
use crate::{ChatReply, EmbeddingsReply};

/// Error bodies are read up to this size; the rest is of no use for classifying.
const MAX_ERROR_BODY: usize = 64 * 1024;

pub(crate) struct Http<'a> {
    pub cfg: &'a ProviderConfig,
    pub client: &'a reqwest::Client,
    pub urls: &'a Option<FixedUrls>,
    /// A group member's stats: answers' `x-ratelimit-remaining-*` headers go there.
    pub stats: Option<&'a crate::balance::TargetStats>,
}

/// URLs parsed once for providers whose URL does not name the model (parsing a URL per
/// request, IDNA included, showed up in profiles).
#[derive(Debug)]
pub(crate) struct FixedUrls {
    chat: reqwest::Url,
    embeddings: reqwest::Url,
}

impl FixedUrls {
    pub(crate) fn for_provider(cfg: &ProviderConfig) -> Option<FixedUrls> {
        let base = &cfg.base_url;
        let (chat, embeddings) = match (cfg.kind, cfg.kind.wire()) {
            (ProviderKind::Azure, _) | (_, Wire::Gemini | Wire::Mock) => return None,
            (_, Wire::Anthropic) => (format!("{base}/messages"), format!("{base}/embeddings")),
            (_, Wire::OpenAi) => (
                format!("{base}/chat/completions"),
                format!("{base}/embeddings"),
            ),
        };
        Some(FixedUrls {
            chat: chat.parse().ok()?,
            embeddings: embeddings.parse().ok()?,
        })
    }
}

impl Http<'_> {
    /// Azure and Gemini put the model in the URL path; a name that could change the path
    /// (`/`, `..`, `?`, `#`, `%`) is refused rather than escaped.
    fn check_model_in_path(&self, model: &str) -> Result<(), Failure> {
        let in_path = self.cfg.kind == ProviderKind::Azure || self.cfg.kind.wire() == Wire::Gemini;
        let safe = model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._@".contains(&b))
            && !model.contains("..");
        if in_path && !safe {
            return Err(Failure::new(
                FailureClass::Untranslatable,
                format!("model name `{model}` is not valid for this provider"),
            ));
        }
        Ok(())
    }

    fn url(&self, model: &str, op: &str, stream: bool) -> Result<reqwest::Url, Failure> {
        if let Some(urls) = self.urls {
            return Ok(if op == "embeddings" {
                urls.embeddings.clone()
            } else {
                urls.chat.clone()
            });
        }
        let base = &self.cfg.base_url;
        let url = match (self.cfg.kind, self.cfg.kind.wire()) {
            (ProviderKind::Azure, _) => format!(
                "{base}/openai/deployments/{model}/{op}?api-version={}",
                self.cfg.api_version.as_deref().unwrap_or_default()
            ),
            (_, Wire::Anthropic) => format!("{base}/messages"),
            (_, Wire::Gemini) => match (op, stream) {
                ("embeddings", _) => format!("{base}/models/{model}:batchEmbedContents"),
                (_, true) => format!("{base}/models/{model}:streamGenerateContent?alt=sse"),
                (_, false) => format!("{base}/models/{model}:generateContent"),
            },
            _ => format!("{base}/{op}"),
        };
        url.parse().map_err(|e| {
            Failure::new(
                FailureClass::Untranslatable,
                format!("invalid provider URL: {e}"),
            )
        })
    }

    fn request(&self, url: reqwest::Url, key: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        let mut rb = self
            .client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body);
        if !key.is_empty() {
            rb = match self.cfg.kind.preset().auth {
                AuthStyle::Bearer => rb.bearer_auth(key),
                AuthStyle::AzureApiKey => rb.header("api-key", key),
                AuthStyle::XApiKey => rb.header("x-api-key", key),
                AuthStyle::GoogApiKey => rb.header("x-goog-api-key", key),
            };
        }
        if self.cfg.kind.wire() == Wire::Anthropic {
            rb = rb.header("anthropic-version", anthropic::API_VERSION);
        }
        for (name, value) in &self.cfg.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                rb = rb.header(n, v);
            }
        }
        rb
    }

    /// Sends and waits for the response headers until `deadline`; a non-2xx answer becomes
    /// a classified [`Failure`].
    async fn send(
        &self,
        rb: reqwest::RequestBuilder,
        deadline: Instant,
        limit: Duration,
    ) -> Result<reqwest::Response, Failure> {
        let resp = match tokio::time::timeout_at(deadline, rb.send()).await {
            Err(_) => {
                return Err(Failure::new(
                    FailureClass::Timeout,
                    format!("no response within {limit:?}"),
                ));
            }
            Ok(Err(e)) => return Err(transport_failure(&e)),
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        if let Some(stats) = self.stats {
            stats.observe_headers(resp.headers());
        }
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let ra = retry_after(resp.headers(), SystemTime::now());
        let body = read_capped(resp, MAX_ERROR_BODY, deadline).await;
        let upstream = self.decode_error(&body);
        Err(Failure::from_status(status, ra, upstream, &body))
    }

    fn decode_error(&self, body: &[u8]) -> Option<UpstreamError> {
        match self.cfg.kind.wire() {
            Wire::Anthropic => anthropic::decode_error(body),
            Wire::Gemini => gemini::decode_error(body),
            Wire::OpenAi | Wire::Mock => openai::decode_error(body),
        }
    }

    pub async fn chat(
        &self,
        req: &ChatRequest,
        model: &str,
        key: &str,
        meta: ResponseMeta,
    ) -> Result<ChatReply, Failure> {
        self.check_model_in_path(model)?;
        let stream = req.is_stream();
        let wire = self.cfg.kind.wire();
        let body = match wire {
            Wire::Anthropic => anthropic::encode_request(req, model, self.cfg.default_max_tokens)
                .and_then(|v| to_vec(&v)),
            Wire::Gemini => gemini::encode_request(req).and_then(|v| to_vec(&v)),
            Wire::OpenAi | Wire::Mock => {
                to_vec(&openai::encode_request(req, model, self.cfg.stream_usage))
            }
        }
        .map_err(|e| Failure::new(FailureClass::Untranslatable, e.to_string()))?;
        let rb = self.request(self.url(model, "chat/completions", stream)?, key, body);

        if stream {
            // One deadline for the headers and the first token together.
            let first_byte = self.cfg.timeouts.first_byte;
            let deadline = Instant::now() + first_byte;
            let resp = self.send(rb, deadline, first_byte).await?;
            let decoder: Box<dyn StreamDecoder> = match wire {
                Wire::Anthropic => Box::new(anthropic::Stream::new(meta)),
                Wire::Gemini => Box::new(gemini::Stream::new(meta)),
                Wire::OpenAi | Wire::Mock => Box::new(openai::Stream),
            };
            let chunks = sse_chunks(
                resp.bytes_stream(),
                decoder,
                deadline,
                self.cfg.timeouts.idle,
            );
            return Ok(ChatReply::Stream(commit_first(chunks).await?));
        }

        let body = self.send_for_body(rb).await?;
        let response = match wire {
            Wire::Anthropic => anthropic::decode_response(&body, &meta),
            Wire::Gemini => gemini::decode_response(&body, &meta),
            Wire::OpenAi | Wire::Mock => openai::decode_response(&body),
        }
        .map_err(Failure::from_decode)?;
        let raw = matches!(wire, Wire::OpenAi).then_some(body);
        Ok(ChatReply::Complete {
            response: Box::new(response),
            raw,
        })
    }

    pub async fn embeddings(
        &self,
        req: &EmbeddingsRequest,
        model: &str,
        key: &str,
    ) -> Result<EmbeddingsReply, Failure> {
        self.check_model_in_path(model)?;
        let wire = self.cfg.kind.wire();
        let body = match wire {
            Wire::Gemini => gemini::encode_embeddings(req, model)
                .and_then(|v| to_vec(&v))
                .map_err(|e| Failure::new(FailureClass::Untranslatable, e.to_string()))?,
            Wire::Anthropic => {
                return Err(Failure::new(
                    FailureClass::Untranslatable,
                    "Anthropic has no embeddings API",
                ));
            }
            Wire::OpenAi | Wire::Mock => {
                let mut out = req.clone();
                out.model = model.to_owned();
                to_vec(&out).map_err(|e| Failure::new(FailureClass::BadRequest, e.to_string()))?
            }
        };
        let rb = self.request(self.url(model, "embeddings", false)?, key, body);
        let body = self.send_for_body(rb).await?;
        let response = match wire {
            Wire::Gemini => gemini::decode_embeddings(&body, model),
            _ => {
                serde_json::from_slice::<EmbeddingsResponse>(&body).map_err(DecodeError::malformed)
            }
        }
        .map_err(Failure::from_decode)?;
        let raw = matches!(wire, Wire::OpenAi).then_some(body);
        Ok(EmbeddingsReply { response, raw })
    }

    /// Sends and reads the whole body, all within the provider's total timeout (a
    /// non-streamed answer's headers come only when the whole answer is ready, so the
    /// first-byte timeout does not apply).
    async fn send_for_body(&self, rb: reqwest::RequestBuilder) -> Result<Bytes, Failure> {
        let total = self.cfg.timeouts.total;
        let deadline = Instant::now() + total;
        let call = async {
            let resp = self.send(rb, deadline, total).await?;
            resp.bytes().await.map_err(|e| transport_failure(&e))
        };
        tokio::time::timeout(total, call).await.unwrap_or_else(|_| {
            Err(Failure::new(
                FailureClass::Timeout,
                format!("no complete answer within {total:?}"),
            ))
        })
    }
}

fn to_vec<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, sluice_llm::TranslateError> {
    serde_json::to_vec(v).map_err(|e| sluice_llm::TranslateError::Unsupported(e.to_string()))
}

fn transport_failure(e: &reqwest::Error) -> Failure {
    let class = if e.is_timeout() {
        FailureClass::Timeout
    } else {
        FailureClass::Connect
    };
    // reqwest's Display names the URL but never our headers, so no key can leak here.
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    Failure::new(class, msg)
}

/// Reads at most `cap` bytes of a body until `deadline`; whatever arrived is returned.
async fn read_capped(resp: reqwest::Response, cap: usize, deadline: Instant) -> Vec<u8> {
    let mut out = Vec::new();
    let mut body = resp.bytes_stream();
    let _ = tokio::time::timeout_at(deadline, async {
        while let Some(Ok(chunk)) = body.next().await {
            let room = cap.saturating_sub(out.len());
            out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if out.len() >= cap {
                break;
            }
        }
    })
    .await;
    out
}
