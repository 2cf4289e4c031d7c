//! One HTTP call to one provider with one key: build the request in the provider's wire
//! format, enforce the timeouts, classify a failure, decode the answer.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{HeaderName, HeaderValue};
use sluice_config::{AuthStyle, ProviderConfig, ProviderKind, Wire};
use sluice_llm::{
    ChatRequest, DecodeError, EmbeddingsRequest, EmbeddingsResponse, ResponseMeta, StreamDecoder,
    UpstreamError, anthropic, gemini, openai,
};

use crate::failure::{Failure, FailureClass, excerpt, retry_after};
use crate::stream::{StreamRules, commit_first, sse_chunks};
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
    /// (`/`, `?`, `#`, `%`, a segment of dots only, which URL parsing folds away, or `..`
    /// anywhere) or leave it empty is refused rather than escaped, before any call: the
    /// request would otherwise go, with the key, to a path the operator never configured.
    fn check_model_in_path(&self, model: &str) -> Result<(), Failure> {
        let in_path = self.cfg.kind == ProviderKind::Azure || self.cfg.kind.wire() == Wire::Gemini;
        if in_path && !model_is_path_safe(model) {
            return Err(Failure::new(
                FailureClass::Untranslatable,
                "the model name is not valid for this provider",
            )
            .with_detail(format!(
                "model name `{model}` is not a safe URL path segment"
            )));
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
                "the provider's URL could not be built for this model",
            )
            .with_detail(format!("invalid provider URL: {e}"))
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
            let timeouts = self.cfg.timeouts;
            let now = Instant::now();
            let deadline = now + timeouts.first_byte;
            let resp = self.send(rb, deadline, timeouts.first_byte).await?;
            if !is_event_stream(resp.headers()) {
                return Err(not_a_stream(resp, deadline, |b| self.decode_error(b)).await);
            }
            let decoder: Box<dyn StreamDecoder> = match wire {
                Wire::Anthropic => Box::new(anthropic::Stream::new(meta)),
                Wire::Gemini => Box::new(gemini::Stream::new(meta)),
                Wire::OpenAi | Wire::Mock => Box::new(openai::Stream::new(meta)),
            };
            let rules = StreamRules {
                first_deadline: deadline,
                idle: timeouts.idle,
                end: now + timeouts.stream,
                limit: timeouts.stream,
                max_event_bytes: self.cfg.max_stream_event_bytes,
            };
            let chunks = sse_chunks(resp.bytes_stream(), decoder, rules);
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
            read_answer(resp, self.cfg.max_answer_bytes).await
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

/// A transport error: the client learns only that the provider could not be reached or
/// did not answer in time; reqwest's message and its chain of causes, which name the
/// upstream URL (an internal host, an Azure deployment, a query), go to the log. They
/// never hold our headers, so no provider key reaches the log either.
fn transport_failure(e: &reqwest::Error) -> Failure {
    let (class, message) = if e.is_timeout() {
        (FailureClass::Timeout, "the connection timed out")
    } else {
        (FailureClass::Connect, "the provider could not be reached")
    };
    let mut detail = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        src = s.source();
    }
    Failure::new(class, message).with_detail(detail)
}

/// Whether a model name can stand as one segment of a URL path as it is.
fn model_is_path_safe(model: &str) -> bool {
    !model.is_empty()
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._@".contains(&b))
        && !model.contains("..")
        // `.` alone is a dot segment too (`..` and longer are caught above).
        && model != "."
}

/// Whether a 2xx answer to a stream request is an event stream (parameters such as
/// `; charset=utf-8` allowed). A missing content type is not accepted: no provider omits
/// it, and a body in an unknown format would otherwise look like a cut stream.
fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// A 2xx answer to a stream request that is not an event stream: the provider's error, if
/// the body is one in its format (some proxies answer errors with 200), else a bad answer.
async fn not_a_stream(
    resp: reqwest::Response,
    deadline: Instant,
    decode_error: impl Fn(&[u8]) -> Option<UpstreamError>,
) -> Failure {
    let content_type = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = read_capped(resp, MAX_ERROR_BODY, deadline).await;
    if let Some(e) = decode_error(&body) {
        return Failure::from_decode(DecodeError::Upstream(e));
    }
    Failure::new(
        FailureClass::BadResponse,
        "the provider answered a stream request with something that is not a stream",
    )
    .with_detail(format!(
        "content-type {}; {}",
        content_type.as_deref().unwrap_or("missing"),
        excerpt(&body)
    ))
}

/// Reads a whole answer of at most `cap` bytes. A larger one is refused as soon as that is
/// known (from `Content-Length`, or as the bytes arrive): reading stops and the connection
/// is dropped, so a provider cannot make the gateway buffer more than `cap`.
async fn read_answer(resp: reqwest::Response, cap: usize) -> Result<Bytes, Failure> {
    let too_large = |seen: String| {
        Failure::new(
            FailureClass::BadResponse,
            "the provider's answer is larger than the gateway accepts",
        )
        .with_detail(format!("{seen} is over max_answer_bytes ({cap})"))
    };
    if let Some(len) = resp.content_length()
        && len > cap as u64
    {
        return Err(too_large(format!("Content-Length {len}")));
    }
    let mut body = resp.bytes_stream();
    // Most answers come in one piece: it is returned as it is, without a copy.
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| transport_failure(&e))?;
        let so_far = first.as_ref().map_or(0, Bytes::len) + buf.len();
        if so_far + chunk.len() > cap {
            return Err(too_large(format!(
                "an answer of at least {} bytes",
                so_far + chunk.len()
            )));
        }
        match first.take() {
            None if buf.is_empty() => first = Some(chunk),
            None => buf.extend_from_slice(&chunk),
            Some(head) => {
                buf.reserve(head.len() + chunk.len());
                buf.extend_from_slice(&head);
                buf.extend_from_slice(&chunk);
            }
        }
    }
    Ok(first.unwrap_or_else(|| buf.freeze()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_only_and_empty_model_names_are_not_path_segments() {
        for bad in [
            "", ".", "..", "...", "....", "a..b", "a/b", "a?x", "a#x", "a%2e", "a b",
        ] {
            assert!(!model_is_path_safe(bad), "`{bad}` must be refused");
        }
        for good in ["gpt-4o", "gpt-4o.mini", "my_deploy@v2", ".hidden", "v1."] {
            assert!(model_is_path_safe(good), "`{good}` is a plain segment");
        }
    }

    #[test]
    fn only_event_streams_are_streams() {
        let with = |ct: Option<&str>| {
            let mut h = http::HeaderMap::new();
            if let Some(ct) = ct {
                h.insert(http::header::CONTENT_TYPE, ct.parse().expect("header"));
            }
            is_event_stream(&h)
        };
        assert!(with(Some("text/event-stream")));
        assert!(with(Some("text/event-stream; charset=utf-8")));
        assert!(with(Some("Text/Event-Stream ;charset=UTF-8")));
        assert!(!with(Some("application/json")));
        assert!(!with(Some("text/html; charset=utf-8")));
        assert!(!with(Some("text/event-streamx")));
        assert!(!with(None), "a missing content type is not a stream");
    }
}
