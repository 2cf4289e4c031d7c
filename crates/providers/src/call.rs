//! What one request's walk of its chain shares with its caller: the call context going in
//! (request id, upstream-model admission, the calls made so far, the call in flight) and
//! the outcomes coming out (the answer and who gave it, or why every entry failed).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sluice_config::Target;

use crate::failure::{Failure, FailureClass};
use crate::router::Route;

/// The gateway's own limit on one upstream model (its `[limits.upstream]`), asked
/// before the router calls that chain entry.
pub trait Admission: Send + Sync + std::fmt::Debug {
    /// `Err(wait)`: the entry is at its limit and is skipped like a rate-limited one; it
    /// has room again after `wait`.
    fn admit<'a>(
        &'a self,
        target: &'a Target,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), Duration>> + Send + 'a>>;

    /// The share of the gateway's own limit for `target` still free (0.0 to 1.0), for the
    /// `headroom` strategy; `None`: no such limit.
    fn headroom(&self, _target: &Target) -> Option<f64> {
        None
    }
}

/// Per-request facts the router needs from the caller.
#[derive(Debug, Default)]
pub struct CallContext {
    pub request_id: String,
    /// Every provider call that failed, in order, for the spend ledger (one row per
    /// provider call). Per request: never shared, so the lock is never contended.
    pub failed_calls: std::sync::Mutex<Vec<FailedCall>>,
    /// Upstream-model limits; `None`: none apply.
    pub admission: Option<Arc<dyn Admission>>,
    /// The provider call in progress, as 1 + its index in the route's targets (0: none),
    /// so a caller that gives up on the walk (the shutdown grace ended) can still record
    /// that call. An index, not a copy of the target: it is set on every call.
    in_flight: AtomicUsize,
}

impl CallContext {
    pub fn new(request_id: String) -> Self {
        CallContext {
            request_id,
            failed_calls: std::sync::Mutex::default(),
            admission: None,
            in_flight: AtomicUsize::new(0),
        }
    }

    /// The target of the provider call in progress, if the walk of `route` is in one.
    pub fn call_in_flight<'r>(&self, route: &'r Route) -> Option<&'r Target> {
        let i = self.in_flight.load(Ordering::Acquire).checked_sub(1)?;
        route.targets().get(i)
    }

    pub(crate) fn set_in_flight(&self, index: Option<usize>) {
        self.in_flight
            .store(index.map_or(0, |i| i + 1), Ordering::Release);
    }

    /// The failed calls recorded so far, taken out.
    pub fn take_failed_calls(&self) -> Vec<FailedCall> {
        std::mem::take(&mut *self.failed_calls.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// One provider call that failed.
#[derive(Debug, Clone)]
pub struct FailedCall {
    pub target: Target,
    pub class: FailureClass,
    pub latency: Duration,
}

/// A committed reply and the chain entry that produced it.
#[derive(Debug)]
pub struct Routed<T> {
    pub value: T,
    pub target: Target,
    /// Provider calls made, the successful one included.
    pub attempts: u32,
}

/// Why the last chain entry was given up.
#[derive(Debug, Clone)]
pub enum Exhaustion {
    Failure(Failure),
    /// The entry's breaker was open; it will let a probe through after this long.
    BreakerOpen(Duration),
    /// Every key of the provider was cooling down (for this long) or disabled (`None`).
    NoKey(Option<Duration>),
    /// The gateway's own limit for the upstream model was reached; room after this long.
    OwnLimit(Duration),
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("the model `{0}` does not exist or you do not have access to it")]
    UnknownModel(String),
    /// A failure whose rule is "fail at once" (bad request, content filter).
    #[error("{0}")]
    Rejected(Failure),
    /// Every chain entry failed; `last` says how the last one did.
    #[error("all {entries} chain entr(y/ies) failed")]
    Exhausted { entries: usize, last: Exhaustion },
}
