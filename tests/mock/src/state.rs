//! What a mock remembers: its scripts and every call it received.

use crate::Wire;
use crate::script::{Scripts, Step};
use crate::tokens::{self, Prompt};
use axum::http::{HeaderMap, Uri};
use bytes::Bytes;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// One chat or embeddings call as the mock received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// From the body (OpenAI, Anthropic) or the path (Gemini); empty when absent.
    pub model: String,
    /// From the format's auth header (or Gemini's `?key=`); empty when absent.
    pub api_key: String,
    pub stream: bool,
    /// The request path, without the query string.
    pub path: String,
    /// The query string without `?`, empty when there is none (Gemini's `alt=sse`, `key=`).
    pub query: String,
    /// Every request header, names lower-case; repeated headers appear once per value.
    pub headers: Vec<(String, String)>,
    /// The parsed body; a JSON string holding the raw text when it was not JSON.
    pub body: Value,
}

/// What handlers extract: `extract::State<Shared>`.
pub(crate) type Shared = std::sync::Arc<State>;

/// The state every handler shares.
pub(crate) struct State {
    pub(crate) wire: Wire,
    scripts: Mutex<Scripts>,
    log: Mutex<Vec<Recorded>>,
    ids: AtomicU64,
    /// Sent on every answer (OpenAI format), e.g. `x-ratelimit-remaining-tokens`.
    pub(crate) answer_headers: Mutex<Vec<(String, String)>>,
}

/// A received call, recorded, with what the answer needs to know about it.
pub(crate) struct Call {
    pub(crate) model: String,
    pub(crate) api_key: String,
    pub(crate) stream: bool,
    pub(crate) body: Value,
    /// Distinct per call on this mock, for response and tool-call ids.
    pub(crate) id: u64,
    /// Unix seconds.
    pub(crate) created: u64,
    pub(crate) prompt: Prompt,
    pub(crate) answer_headers: Vec<(String, String)>,
}

/// The parts of a request every format records.
pub(crate) struct Received<'a> {
    pub(crate) uri: &'a Uri,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: &'a Bytes,
}

impl Received<'_> {
    /// The body as JSON, or as a JSON string of its raw text when it does not parse.
    pub(crate) fn json(&self) -> Result<Value, Value> {
        serde_json::from_slice(self.body)
            .map_err(|_| Value::String(String::from_utf8_lossy(self.body).into_owned()))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// A query parameter, taken verbatim (API keys and `alt` need no percent-decoding).
    pub(crate) fn query(&self, name: &str) -> Option<&str> {
        self.uri.query()?.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }
}

impl State {
    pub(crate) fn new(wire: Wire) -> State {
        State {
            wire,
            scripts: Mutex::default(),
            log: Mutex::default(),
            ids: AtomicU64::new(1),
            answer_headers: Mutex::default(),
        }
    }

    pub(crate) fn scripts(&self) -> MutexGuard<'_, Scripts> {
        self.scripts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn log(&self) -> MutexGuard<'_, Vec<Recorded>> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a call; every call counts, even one the mock then rejects.
    pub(crate) fn receive(
        &self,
        received: &Received<'_>,
        model: String,
        api_key: String,
        stream: bool,
        body: Value,
    ) -> Call {
        let headers = received
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect();
        self.log().push(Recorded {
            model: model.clone(),
            api_key: api_key.clone(),
            stream,
            path: received.uri.path().to_owned(),
            query: received.uri.query().unwrap_or_default().to_owned(),
            headers,
            body: body.clone(),
        });
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        Call {
            answer_headers: self
                .answer_headers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            prompt: tokens::prompt(&body),
            model,
            api_key,
            stream,
            body,
            id: self.ids.fetch_add(1, Ordering::Relaxed),
            created,
        }
    }

    /// The step this call takes; advances the script that supplied it.
    pub(crate) fn next_step(&self, call: &Call) -> Step {
        self.scripts().next(&call.model, &call.api_key)
    }
}
