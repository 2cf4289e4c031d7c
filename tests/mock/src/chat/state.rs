//! What the chat mock remembers, and the one path every platform call takes: record it, play a
//! scripted failure or apply it, wait the latency, answer.

use super::{ChatMessage, ChatRequest, Failure, Platform};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub(crate) type Shared = Arc<ChatState>;

/// Everything behind one lock: a mock's calls are few and each holds it for microseconds.
pub(crate) struct ChatState {
    book: Mutex<Book>,
}

impl ChatState {
    pub(crate) fn new() -> ChatState {
        ChatState {
            book: Mutex::new(Book::new()),
        }
    }

    pub(crate) fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A Telegram bot the mock knows by its token.
#[derive(Clone, Debug)]
pub(crate) struct Bot {
    pub(crate) id: i64,
    pub(crate) username: String,
}

/// The webhook a Telegram bot has now (after `setWebhook`, before `deleteWebhook`).
#[derive(Clone, Debug)]
pub(crate) struct Webhook {
    pub(crate) url: String,
    pub(crate) max_connections: u64,
    pub(crate) allowed_updates: Option<Value>,
}

/// A message the bot sent, with what the platform needs to answer about it later.
#[derive(Clone, Debug)]
pub(crate) struct Stored {
    /// Who sent it: the Telegram bot token, the WhatsApp phone number id; empty for Slack.
    pub(crate) owner: String,
    /// Unix seconds when it was sent.
    pub(crate) date: u64,
    pub(crate) message: ChatMessage,
}

/// A WhatsApp message accepted and not yet reported by `whatsapp_statuses`.
#[derive(Clone, Debug)]
pub(crate) struct Accepted {
    pub(crate) phone_number_id: String,
    pub(crate) wa_id: String,
    pub(crate) wamid: String,
    pub(crate) biz_opaque_callback_data: Option<String>,
}

pub(crate) struct Book {
    pub(crate) log: Vec<ChatRequest>,
    failures: HashMap<(Platform, String), VecDeque<Failure>>,
    pub(crate) latency: Duration,
    pub(crate) slack_token: String,
    pub(crate) whatsapp_token: String,
    pub(crate) bots: HashMap<String, Bot>,
    /// Every `setWebhook` body, per bot token, in order.
    pub(crate) set_webhooks: BTreeMap<String, Vec<Value>>,
    pub(crate) webhooks: HashMap<String, Webhook>,
    pub(crate) slack: BTreeMap<String, Vec<Stored>>,
    pub(crate) telegram: BTreeMap<i64, Vec<Stored>>,
    /// Keyed by `wa_id` (the recipient's digits).
    pub(crate) whatsapp: BTreeMap<String, Vec<Stored>>,
    pub(crate) unreported: Vec<Accepted>,
    next_id: u64,
    /// Unix seconds at start: Slack timestamps count up from here.
    epoch: u64,
}

impl Book {
    fn new() -> Book {
        Book {
            log: Vec::new(),
            failures: HashMap::new(),
            latency: Duration::ZERO,
            slack_token: super::SLACK_TOKEN.to_owned(),
            whatsapp_token: super::WHATSAPP_TOKEN.to_owned(),
            bots: HashMap::new(),
            set_webhooks: BTreeMap::new(),
            webhooks: HashMap::new(),
            slack: BTreeMap::new(),
            telegram: BTreeMap::new(),
            whatsapp: BTreeMap::new(),
            unreported: Vec::new(),
            next_id: 1,
            epoch: unix_now(),
        }
    }

    /// Distinct on this mock: Telegram message ids, and the counter inside Slack timestamps,
    /// wamids and `fbtrace_id`s.
    pub(crate) fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// A unique, increasing Slack message timestamp such as `1700000000.000042`.
    pub(crate) fn slack_ts(&mut self) -> String {
        let n = self.next_id();
        format!("{}.{:06}", self.epoch + n / 1_000_000, n % 1_000_000)
    }

    pub(crate) fn clear_failures(&mut self) {
        self.failures.clear();
    }

    pub(crate) fn add_failures(
        &mut self,
        platform: Platform,
        method: &str,
        failures: Vec<Failure>,
    ) {
        self.failures
            .entry((platform, method.to_owned()))
            .or_default()
            .extend(failures);
    }

    fn next_failure(&mut self, platform: Platform, method: &str) -> Option<Failure> {
        self.failures
            .get_mut(&(platform, method.to_owned()))?
            .pop_front()
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// One call as a platform module sees it.
pub(crate) struct Call {
    pub(crate) platform: Platform,
    /// `chat.postMessage`, `sendMessage`, `messages`.
    pub(crate) method: String,
    /// From the path: Telegram's first segment (`bot{token}`), WhatsApp's phone number id;
    /// empty for Slack.
    pub(crate) target: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    /// The parsed body; a JSON string of the raw text when it was not JSON (then `json` is
    /// false). An empty body is `{}`, as a `getMe` without one means no parameters.
    pub(crate) body: Value,
    pub(crate) json: bool,
}

impl Call {
    pub(crate) fn new(
        platform: Platform,
        method: &str,
        target: &str,
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Call {
        let parsed = if body.is_empty() {
            Ok(Value::Object(serde_json::Map::new()))
        } else {
            serde_json::from_slice(body)
        };
        let (body, json) = match parsed {
            Ok(value) => (value, true),
            Err(_) => (
                Value::String(String::from_utf8_lossy(body).into_owned()),
                false,
            ),
        };
        Call {
            platform,
            method: method.to_owned(),
            target: target.to_owned(),
            path: uri.path().to_owned(),
            headers: headers
                .iter()
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    (name.as_str().to_owned(), value)
                })
                .collect(),
            body,
            json,
        }
    }

    /// The token of `Authorization: Bearer …`.
    pub(crate) fn bearer(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(name, _)| name == "authorization")
            .and_then(|(_, value)| value.strip_prefix("Bearer "))
    }

    /// A string field of the body.
    pub(crate) fn str(&self, field: &str) -> Option<&str> {
        self.body.get(field).and_then(Value::as_str)
    }
}

/// A scripted failure that answers; `Hang` and `ApplyThenHang` never reach a platform module.
pub(crate) enum Scripted {
    RateLimited(u64),
    ServerError(u16),
    ApiError(String),
}

/// An answer, laid out by the platform module.
pub(crate) struct Reply {
    pub(crate) status: u16,
    content_type: &'static str,
    body: String,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub(crate) fn new(status: u16, content_type: &'static str, body: String) -> Reply {
        Reply {
            status,
            content_type,
            body,
            headers: Vec::new(),
        }
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }

    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

/// What a platform module does with a call it is to handle normally, and with a scripted
/// failure that answers.
pub(crate) struct Handlers {
    pub(crate) apply: fn(&mut Book, &Call) -> Reply,
    pub(crate) fail: fn(&mut Book, &Scripted) -> Reply,
}

/// Records the call, then plays the method's next scripted failure or applies it, waits the
/// latency and answers. `Hang` and `ApplyThenHang` never return: the connection stays open
/// until the client gives up or the mock stops.
pub(crate) async fn exchange(state: &Shared, call: Call, handlers: Handlers) -> Response {
    let (index, latency, reply) = {
        let mut book = state.book();
        let index = book.log.len();
        book.log.push(ChatRequest {
            platform: call.platform,
            method: call.method.clone(),
            path: call.path.clone(),
            headers: call.headers.clone(),
            body: call.body.clone(),
            status: None,
            at: Instant::now(),
        });
        let reply = match book.next_failure(call.platform, &call.method) {
            None => Some((handlers.apply)(&mut book, &call)),
            Some(Failure::Hang) => None,
            Some(Failure::ApplyThenHang) => {
                let _unsent = (handlers.apply)(&mut book, &call);
                None
            }
            Some(Failure::RateLimited { retry_after_s }) => Some((handlers.fail)(
                &mut book,
                &Scripted::RateLimited(retry_after_s),
            )),
            Some(Failure::ServerError(status)) => {
                Some((handlers.fail)(&mut book, &Scripted::ServerError(status)))
            }
            Some(Failure::ApiError(error)) => {
                Some((handlers.fail)(&mut book, &Scripted::ApiError(error)))
            }
        };
        (index, book.latency, reply)
    };
    let Some(reply) = reply else {
        return std::future::pending().await;
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(logged) = state.book().log.get_mut(index) {
        logged.status = Some(reply.status);
    }
    reply.into_response()
}
