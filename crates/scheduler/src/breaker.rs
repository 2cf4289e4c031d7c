//! The per-agent breaker: an agent whose runs keep failing is refused new runs before
//! they can spend anything. After `breaker_failures` failed runs in a row it opens for
//! `breaker_open` (doubling at each re-open, at most an hour), then half-opens and lets
//! one probe run through: success closes it, failure opens it again. While open,
//! `agent.run` answers `agent_breaker_open` with the time left.
//!
//! Only failures on the agent's side count: its run bounds and loop breakers, the
//! provider failing, a tool-driven failure, the deadline. A cancelled or interrupted run,
//! bad input, or a key's own budget, spend breaker or permissions do not: one key's empty
//! budget must not stop the agent for every key.
//!
//! The state is in memory for the decision and in the store (`agent_breakers`) for other
//! instances, restarts and operators: each instance reads the store every
//! [`REFRESH`], and a reset there (the admin API, the CLI) closes it everywhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use sluice_config::AgentConfig;
use sluice_protocol::codes;
use sluice_service::ids::now_ms;
use sluice_store::Store;
use sluice_store::agents::AgentBreakerRow;

use crate::error::{RunFailure, breaker};
use crate::{SchedulerError, error::ms};

/// How often the store's breakers are read again.
pub const REFRESH: Duration = Duration::from_secs(2);
/// Longest an open breaker stays open before it lets a probe through.
const MAX_OPEN: Duration = Duration::from_secs(3600);

pub const OPEN: &str = "open";
pub const HALF_OPEN: &str = "half_open";

#[derive(Debug, Clone, Default)]
struct State {
    /// Failed runs in a row.
    failures: u32,
    /// `Some` while open or half-open.
    trip: Option<Trip>,
}

#[derive(Debug, Clone)]
struct Trip {
    half_open: bool,
    /// A probe run is going (half-open lets one through).
    probing: bool,
    trips: u32,
    opened_at_ms: i64,
    until_ms: i64,
    reason: String,
}

/// The breakers of every agent.
#[derive(Debug, Clone)]
pub struct AgentBreakers {
    state: Arc<Mutex<HashMap<String, State>>>,
    store: Store,
    /// Changes to write to the store, in the order they were made (see [`Write`]).
    writes: mpsc::UnboundedSender<Write>,
}

/// A change for the store. One task writes them in order, so a trip's row is never
/// written after the reset that closed it, and [`AgentBreakers::flush`] lets a read of
/// the store (the admin view, the refresh) see everything this instance decided before
/// it: written in detached tasks, a refresh could read the store before a fresh trip's
/// row was in and close the trip again, and the admin view could miss it.
#[derive(Debug)]
enum Write {
    Put(AgentBreakerRow),
    Close(String),
    /// Answered once every write queued before it is done.
    Flush(oneshot::Sender<()>),
}

/// A run let through: whether it is the half-open breaker's probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub probe: bool,
}

impl AgentBreakers {
    /// The breakers, and the task that writes their changes (in a Tokio runtime).
    pub fn new(store: Store) -> AgentBreakers {
        let (writes, mut queue) = mpsc::unbounded_channel();
        let writer = store.clone();
        tokio::spawn(async move {
            while let Some(w) = queue.recv().await {
                match w {
                    Write::Put(row) => {
                        if let Err(e) = writer.put_agent_breaker(&row).await {
                            tracing::error!(agent = %row.agent, "cannot record the agent's breaker: {e}");
                        }
                    }
                    Write::Close(agent) => {
                        if let Err(e) = writer.close_agent_breaker(&agent).await {
                            tracing::error!(agent = %agent, "cannot record the agent's breaker closing: {e}");
                        }
                    }
                    Write::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        AgentBreakers {
            state: Arc::default(),
            store,
            writes,
        }
    }

    /// Waits until every change made so far is in the store.
    pub async fn flush(&self) {
        let (done, landed) = oneshot::channel();
        if self.writes.send(Write::Flush(done)).is_ok() {
            let _ = landed.await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, State>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// May a new run of `agent` start now?
    pub fn admit(&self, agent: &str) -> Result<Admitted, SchedulerError> {
        let now = now_ms();
        let mut all = self.lock();
        let Some(trip) = all.get_mut(agent).and_then(|s| s.trip.as_mut()) else {
            return Ok(Admitted { probe: false });
        };
        let refused = |trip: &Trip, wait_ms: i64| SchedulerError::AgentBreakerOpen {
            agent: agent.to_owned(),
            reason: trip.reason.clone(),
            retry_after: Some(Duration::from_millis(
                u64::try_from(wait_ms.max(1)).unwrap_or(1),
            )),
        };
        if !trip.half_open && now < trip.until_ms {
            return Err(refused(trip, trip.until_ms - now));
        }
        if trip.probing {
            return Err(refused(trip, 1000));
        }
        trip.half_open = true;
        trip.probing = true;
        let row = row(agent, trip, 0, now);
        drop(all);
        self.persist(row);
        Ok(Admitted { probe: true })
    }

    /// A run of `agent` ended (`None`: with an answer).
    pub fn record(&self, agent: &AgentConfig, failure: Option<&RunFailure>, admitted: Admitted) {
        let now = now_ms();
        let counts = failure.is_some_and(counts);
        let mut all = self.lock();
        let state = all.entry(agent.name.clone()).or_default();
        if failure.is_none() {
            // Any answer shows the agent works: the breaker closes.
            state.failures = 0;
            if state.trip.take().is_some() {
                drop(all);
                self.persist_close(agent.name.clone());
            }
            return;
        }
        if !counts {
            if admitted.probe
                && let Some(t) = state.trip.as_mut()
            {
                // The probe told nothing: the next run probes again.
                t.probing = false;
            }
            return;
        }
        state.failures += 1;
        let reason = failure.map_or_else(String::new, |f| {
            let what = f.breaker.as_ref().map_or(f.error.code.clone(), |b| {
                format!("{}: {}", f.error.code, b.name)
            });
            format!("{} failed runs in a row (last: {what})", state.failures)
        });
        match &state.trip {
            // The probe failed: open again, for longer.
            Some(_) if admitted.probe => {}
            // Already open: a run that started before it opened.
            Some(_) => return,
            None if state.failures >= agent.bounds.breaker_failures => {}
            None => return,
        }
        let trips = state.trip.as_ref().map_or(0, |t| t.trips) + 1;
        let open_for = agent
            .bounds
            .breaker_open
            .saturating_mul(1 << (trips - 1).min(12))
            .min(MAX_OPEN);
        let trip = Trip {
            half_open: false,
            probing: false,
            trips,
            opened_at_ms: now,
            until_ms: now + i64::try_from(open_for.as_millis()).unwrap_or(i64::MAX / 2),
            reason,
        };
        tracing::warn!(
            agent = %agent.name,
            open_ms = ms(open_for),
            "agent breaker opened: {}",
            trip.reason
        );
        let row = row(&agent.name, &trip, i64::from(state.failures), now);
        state.trip = Some(trip);
        drop(all);
        self.persist(row);
    }

    /// A run let through that will not run after all (its idempotency key named an
    /// existing run): a probe's place goes back.
    pub fn release(&self, agent: &str, admitted: Admitted) {
        if !admitted.probe {
            return;
        }
        if let Some(t) = self.lock().get_mut(agent).and_then(|s| s.trip.as_mut()) {
            t.probing = false;
        }
    }

    /// Closes an agent's breaker (an operator's reset); `false` when it was closed.
    pub async fn reset(&self, agent: &str) -> Result<bool, sluice_store::StoreError> {
        let was = {
            let mut all = self.lock();
            let state = all.entry(agent.to_owned()).or_default();
            state.failures = 0;
            state.trip.take().is_some()
        };
        // After the trip's own row, not before it.
        self.flush().await;
        let stored = self.store.close_agent_breaker(agent).await?;
        Ok(was || stored)
    }

    /// The breakers that are not closed, as the store has them (with every change this
    /// instance made so far).
    pub async fn open(&self) -> Result<Vec<AgentBreakerRow>, sluice_store::StoreError> {
        self.flush().await;
        self.store.agent_breakers().await
    }

    /// Reads the store: trips recorded elsewhere are taken, and trips closed there (an
    /// operator's reset) are closed here.
    pub async fn refresh(&self) -> Result<(), sluice_store::StoreError> {
        // This instance's own changes first: a trip not yet written would read as closed.
        self.flush().await;
        let rows = self.store.agent_breakers().await?;
        let mut all = self.lock();
        for (agent, state) in all.iter_mut() {
            if state.trip.is_some() && !rows.iter().any(|r| &r.agent == agent) {
                state.trip = None;
                state.failures = 0;
            }
        }
        for r in rows {
            let state = all.entry(r.agent.clone()).or_default();
            let newer = state
                .trip
                .as_ref()
                .is_none_or(|t| t.opened_at_ms < r.opened_at_ms);
            if newer {
                state.trip = Some(Trip {
                    half_open: r.state == HALF_OPEN,
                    probing: r.state == HALF_OPEN,
                    trips: u32::try_from(r.trips).unwrap_or(1),
                    opened_at_ms: r.opened_at_ms,
                    until_ms: r.until_ms,
                    reason: r.reason,
                });
            }
        }
        Ok(())
    }

    fn persist(&self, row: AgentBreakerRow) {
        let _ = self.writes.send(Write::Put(row));
    }

    fn persist_close(&self, agent: String) {
        let _ = self.writes.send(Write::Close(agent));
    }
}

fn row(agent: &str, t: &Trip, failures: i64, now: i64) -> AgentBreakerRow {
    AgentBreakerRow {
        agent: agent.to_owned(),
        state: if t.half_open { HALF_OPEN } else { OPEN }.to_owned(),
        failures,
        trips: i64::from(t.trips),
        opened_at_ms: t.opened_at_ms,
        until_ms: t.until_ms,
        reason: t.reason.clone(),
        updated_at_ms: now,
    }
}

/// Whether a run's failure is the agent's (and counts toward its breaker).
fn counts(f: &RunFailure) -> bool {
    if let Some(b) = &f.breaker {
        return b.name != breaker::SPEND_VELOCITY;
    }
    !matches!(
        f.error.code.as_str(),
        codes::CANCELLED
            | codes::INTERRUPTED
            | codes::INVALID_PARAMS
            | "budget_exceeded"
            | "prompt_rejected"
            | "rate_limit_exceeded"
            | "limits_unavailable"
            | "spend_breaker_open"
            | "missing_api_key"
            | "invalid_api_key"
            | "key_revoked"
            | "key_expired"
            | "model_not_allowed"
            | "shutting_down"
    )
}
