//! The scheduler: runs agents (`[agents.NAME]`) for WebSocket clients, HTTP callers, chat
//! channels and schedules. A run is a loop of model calls (streamed) and the tools the
//! model asks for, until a final answer; every model call goes through the completion
//! service ([`sluice_service::Service::chat`]) with the agent as its `agent` scope and
//! the run's budget as its `run` scope, so each step is admitted, limited, settled and
//! written to the ledger like any other call, and a run's cost is what its ledger rows
//! add up to.
//!
//! Nothing here can become a runaway bill: every run has bounds (steps, model calls,
//! retries, tokens, cost, a deadline; `sluice_config::AgentBounds`), each of which ends
//! the run with `breaker_tripped` naming it; a delegated run's bounds are capped by what
//! its parent has left (`sluice_limits::run`).
//!
//! Layout:
//! - [`submit`]: a run asked for → checks, idempotency, the runs row, the engine task.
//! - `engine`: the loop of one run; `history`: the session's history, trimmed.
//! - [`events`]: a run's numbered events, live and in the store; [`events::Follow`].
//! - [`tools`]: the tools of a run (built-in, node, agent) and their checks.
//! - [`schedule`]: runs started by the clock (`[agents.NAME] schedule`), paused when a
//!   budget or a breaker stops them; `cron`: the pattern's fires in UTC.
//! - [`error`]: refusals and run failures, each with one stable code.

mod cron;
mod engine;
pub mod error;
pub mod events;
mod history;
pub mod schedule;
pub mod submit;
pub mod tools;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use sluice_config::{AgentConfig, Config};
use sluice_protocol::runs::{RunStatus, status};
use sluice_service::{Principal, Service};
use sluice_store::runs::RunRow;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use error::{RunFailure, SchedulerError};
pub use events::{Follow, RunEvent, RunLog};
pub use schedule::{Resumed, ScheduleStatus};
pub use submit::{Accepted, Origin, Submission};
pub use tools::{NodeFailure, NodeToolDef, NodeTools};

/// The agents of the config, by name.
pub type Agents = BTreeMap<String, Arc<AgentConfig>>;

/// The scheduler of one process. Cloning it shares it.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("live_runs", &self.inner.live.len())
            .finish()
    }
}

pub(crate) struct Inner {
    pub service: Service,
    pub agents: ArcSwap<Agents>,
    pub nodes: Arc<dyn NodeTools>,
    /// The runs this process is running.
    pub live: DashMap<String, Arc<LiveRun>>,
    /// Runs going, per agent (for `max_concurrent_runs`).
    pub running: DashMap<String, u32>,
    /// One run at a time per session: a second one waits its turn.
    pub sessions: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    pub schedules: schedule::Schedules,
    pub writer: events::Writer,
    pub tasks: TaskTracker,
    /// Cancelled when the process stops: runs end as `interrupted`.
    pub stopping: CancellationToken,
}

/// A run this process is running.
#[derive(Debug)]
pub struct LiveRun {
    pub id: String,
    pub key_ref: Arc<str>,
    pub agent: String,
    pub log: Arc<RunLog>,
    /// Cancelled to stop the run (`run.cancel`, a parent's end, the process stopping).
    pub cancel: CancellationToken,
}

impl Scheduler {
    /// Starts the scheduler: runs the store says were in flight (the process that ran them
    /// is gone) are marked `interrupted`, with what the ledger says they spent; then the
    /// schedules' timer starts.
    pub async fn start(
        cfg: &Config,
        service: Service,
        nodes: Arc<dyn NodeTools>,
    ) -> Result<Scheduler, SchedulerError> {
        let (writer, _task) = events::Writer::start(service.store().clone());
        let inner = Arc::new(Inner {
            agents: ArcSwap::from_pointee(agents_of(cfg)),
            service,
            nodes,
            live: DashMap::new(),
            running: DashMap::new(),
            sessions: DashMap::new(),
            schedules: schedule::Schedules::default(),
            writer,
            tasks: TaskTracker::new(),
            stopping: CancellationToken::new(),
        });
        engine::recover(&inner).await?;
        schedule::start(&inner);
        Ok(Scheduler { inner })
    }

    /// The agents of a new config (a reload); runs going keep the agent they started with.
    pub fn set_agents(&self, cfg: &Config) {
        self.inner.agents.store(Arc::new(agents_of(cfg)));
        self.inner.schedules.wake();
    }

    /// Starts a run for `who` (or returns the one its idempotency key names).
    pub async fn submit(
        &self,
        who: &Arc<Principal>,
        sub: Submission,
    ) -> Result<Accepted, SchedulerError> {
        submit::submit(&self.inner, who, sub).await
    }

    /// A run of `who`'s key, as stored.
    pub async fn get(&self, who: &Principal, run_id: &str) -> Result<RunRow, SchedulerError> {
        let row = self
            .inner
            .service
            .store()
            .run(run_id)
            .await
            .map_err(|e| SchedulerError::Store(e.to_string()))?;
        row.filter(|r| *r.key_id == *who.key_ref)
            .ok_or_else(|| SchedulerError::RunNotFound(run_id.to_owned()))
    }

    /// Follows a run of `who`'s key from after `after_seq`: its stored events, then live
    /// ones until it ends.
    pub async fn follow(
        &self,
        who: &Principal,
        run_id: &str,
        after_seq: u64,
    ) -> Result<(RunStatus, Follow), SchedulerError> {
        let store = self.inner.service.store().clone();
        if let Some(live) = self.live(who, run_id) {
            let status = RunStatus {
                run_id: run_id.to_owned(),
                status: status::RUNNING.to_owned(),
                last_seq: live.log.last_seq(),
            };
            let follow = Follow::new(run_id.to_owned(), after_seq, store, Some(live.log.clone()));
            return Ok((status, follow));
        }
        let row = self.get(who, run_id).await?;
        let status = RunStatus {
            run_id: row.id.clone(),
            status: row.status.clone(),
            last_seq: u64::try_from(row.last_seq).unwrap_or(0),
        };
        Ok((status, Follow::new(row.id, after_seq, store, None)))
    }

    /// Cancels a run of `who`'s key: it stops between or inside its steps, and what it
    /// had reserved is given back. A run already ended is left as it is.
    pub async fn cancel(&self, who: &Principal, run_id: &str) -> Result<RunStatus, SchedulerError> {
        if let Some(live) = self.live(who, run_id) {
            live.cancel.cancel();
            return Ok(RunStatus {
                run_id: run_id.to_owned(),
                status: status::CANCELLED.to_owned(),
                last_seq: live.log.last_seq(),
            });
        }
        let row = self.get(who, run_id).await?;
        Ok(RunStatus {
            run_id: row.id,
            status: row.status,
            last_seq: u64::try_from(row.last_seq).unwrap_or(0),
        })
    }

    fn live(&self, who: &Principal, run_id: &str) -> Option<Arc<LiveRun>> {
        self.inner
            .live
            .get(run_id)
            .map(|r| r.clone())
            .filter(|r| r.key_ref == who.key_ref)
    }

    /// Whether `name` is one of the config's agents.
    pub fn has_agent(&self, name: &str) -> bool {
        self.inner.agents.load().contains_key(name)
    }

    /// Runs going in this process.
    pub fn live_runs(&self) -> usize {
        self.inner.live.len()
    }

    /// Stops: no new runs; runs going end as `interrupted` (their events and rows
    /// written), waiting at most `grace`.
    pub async fn stop(&self, grace: Duration) {
        self.inner.stopping.cancel();
        self.inner.tasks.close();
        if tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                runs = self.inner.live.len(),
                "runs still ending when the scheduler stopped; the next start marks them interrupted"
            );
        }
    }
}

fn agents_of(cfg: &Config) -> Agents {
    cfg.agents
        .iter()
        .map(|(name, a)| (name.clone(), Arc::new(a.clone())))
        .collect()
}
