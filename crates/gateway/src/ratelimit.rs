//! Per-key rate limits (the `rpm` and `tpm` of stored keys), per instance: a reservation
//! of one request and the estimated tokens (prompt by tokenizer + `max_tokens`, or
//! [`DEFAULT_OUTPUT_RESERVE`]) before the call, settled to the real usage after it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use http::{HeaderMap, HeaderValue};
use sluice_limits::rate::{Bucket, Wait};

use crate::ApiError;
use crate::auth::Caller;

/// Output tokens reserved when a request names no `max_tokens`.
pub const DEFAULT_OUTPUT_RESERVE: u64 = 1024;

#[derive(Debug)]
struct KeyBuckets {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
}

#[derive(Debug, Default)]
pub struct RateLimits {
    by_key: DashMap<String, Arc<KeyBuckets>>,
}

/// What a key may still do, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub limit_requests: Option<u64>,
    pub remaining_requests: Option<u64>,
    pub limit_tokens: Option<u64>,
    pub remaining_tokens: Option<u64>,
}

impl Snapshot {
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, v) in [
            ("x-ratelimit-limit-requests", self.limit_requests),
            ("x-ratelimit-remaining-requests", self.remaining_requests),
            ("x-ratelimit-limit-tokens", self.limit_tokens),
            ("x-ratelimit-remaining-tokens", self.remaining_tokens),
        ] {
            if let Some(v) = v {
                headers.insert(name, HeaderValue::from(v));
            }
        }
    }
}

/// Tokens reserved by one request; settled with [`Reservation::settle`], or given back
/// whole when dropped unsettled (the call failed and used nothing).
#[derive(Debug)]
pub struct Reservation {
    buckets: Arc<KeyBuckets>,
    tokens: u64,
    settled: bool,
    pub snapshot: Snapshot,
}

impl Reservation {
    pub fn settle(mut self, used: u64) {
        self.settled = true;
        if let Some(b) = &self.buckets.tokens {
            let delta = i64::try_from(self.tokens).unwrap_or(i64::MAX)
                - i64::try_from(used).unwrap_or(i64::MAX);
            b.settle(delta, Instant::now());
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled
            && let Some(b) = &self.buckets.tokens
        {
            b.settle(
                i64::try_from(self.tokens).unwrap_or(i64::MAX),
                Instant::now(),
            );
        }
    }
}

impl RateLimits {
    fn buckets(
        &self,
        key_id: &str,
        rpm: Option<u64>,
        tpm: Option<u64>,
        now: Instant,
    ) -> Arc<KeyBuckets> {
        let fits = |b: &KeyBuckets| {
            b.requests.as_ref().map(Bucket::limit) == rpm
                && b.tokens.as_ref().map(Bucket::limit) == tpm
        };
        if let Some(b) = self.by_key.get(key_id)
            && fits(&b)
        {
            return b.clone();
        }
        // New key, or its limits changed: start it afresh.
        let b = Arc::new(KeyBuckets {
            requests: rpm.map(|l| Bucket::per_minute(l, now)),
            tokens: tpm.map(|l| Bucket::per_minute(l, now)),
        });
        self.by_key.insert(key_id.to_owned(), b.clone());
        b
    }

    /// Reserves one request and `estimate()` tokens for the caller, or refuses with 429.
    /// Keys without limits pay nothing (the estimate is not even computed).
    pub fn reserve(
        &self,
        caller: &Caller,
        estimate: impl FnOnce() -> u64,
    ) -> Result<Option<Reservation>, ApiError> {
        let (rpm, tpm) = (caller.rpm, caller.tpm);
        let (Some(key_id), true) = (&caller.key_id, rpm.is_some() || tpm.is_some()) else {
            return Ok(None);
        };
        let now = Instant::now();
        let buckets = self.buckets(key_id, rpm, tpm, now);
        let tokens = if tpm.is_some() { estimate() } else { 0 };
        let mut snapshot = Snapshot {
            limit_requests: rpm,
            remaining_requests: buckets.requests.as_ref().map(|b| b.remaining(now)),
            limit_tokens: tpm,
            remaining_tokens: buckets.tokens.as_ref().map(|b| b.remaining(now)),
        };
        if let Some(b) = &buckets.requests {
            match b.try_take(1, now) {
                Ok(left) => snapshot.remaining_requests = Some(left),
                Err(Wait(wait)) => return Err(refused("requests", wait, snapshot)),
            }
        }
        if let Some(b) = &buckets.tokens {
            match b.try_take(tokens, now) {
                Ok(left) => snapshot.remaining_tokens = Some(left),
                Err(Wait(wait)) => {
                    // The request slot was taken for nothing: the refused call does not count.
                    if let Some(r) = &buckets.requests {
                        r.settle(1, now);
                    }
                    return Err(refused("tokens", wait, snapshot));
                }
            }
        }
        Ok(Some(Reservation {
            buckets,
            tokens,
            settled: false,
            snapshot,
        }))
    }
}

fn refused(what: &'static str, wait: Duration, snapshot: Snapshot) -> ApiError {
    ApiError::RateLimited {
        what,
        retry_after: wait,
        snapshot,
    }
}
