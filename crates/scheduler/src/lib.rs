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

pub mod breaker;
mod cron;
mod engine;
pub mod error;
pub mod events;
mod history;
mod recovery;
pub mod schedule;
pub mod submit;
pub mod tools;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use sluice_config::{AgentConfig, Config};
use sluice_protocol::runs::RunStatus;
use sluice_service::{Principal, Service};
use sluice_store::runs::RunRow;
use sluice_store::runs::status;
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
    /// `http_fetch`, when `[tools.http_fetch]` allows it anything.
    pub fetcher: Option<sluice_fetch::Fetcher>,
    /// The runs this process is running.
    pub live: DashMap<String, Arc<LiveRun>>,
    /// Runs going, per agent (for `max_concurrent_runs`).
    pub running: DashMap<String, u32>,
    /// One run at a time per session: a second one waits its turn.
    pub sessions: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    pub schedules: schedule::Schedules,
    pub writer: events::Writer,
    pub breakers: breaker::AgentBreakers,
    pub tasks: TaskTracker,
    /// Cancelled when the stop begins: no new runs.
    pub closing: CancellationToken,
    /// Cancelled when the stop's grace is over: runs end as `interrupted`.
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
        let fetcher = match &cfg.http_fetch {
            Some(f) => Some(
                sluice_fetch::Fetcher::new(sluice_fetch::FetchPolicy {
                    allow_hosts: f.allow_hosts.clone(),
                    allow_networks: f.allow_networks.clone(),
                    max_bytes: f.max_bytes,
                    timeout: f.timeout,
                    connect_timeout: f.timeout.min(Duration::from_secs(5)),
                    max_redirects: f.max_redirects,
                })
                .map_err(|e| SchedulerError::Config(format!("tools.http_fetch: {e}")))?,
            ),
            None => None,
        };
        let (writer, _task) = events::Writer::start(service.store().clone());
        let service_store = service.store().clone();
        let inner = Arc::new(Inner {
            agents: ArcSwap::from_pointee(agents_of(cfg)),
            service,
            nodes,
            fetcher,
            live: DashMap::new(),
            running: DashMap::new(),
            sessions: DashMap::new(),
            schedules: schedule::Schedules::default(),
            writer,
            breakers: breaker::AgentBreakers::new(service_store),
            tasks: TaskTracker::new(),
            closing: CancellationToken::new(),
            stopping: CancellationToken::new(),
        });
        recovery::recover(&inner).await?;
        if let Err(e) = inner.breakers.refresh().await {
            tracing::warn!("cannot read the agents' breakers: {e}");
        }
        schedule::start(&inner);
        let scheduler = Scheduler { inner };
        scheduler.refresh_breakers();
        Ok(scheduler)
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

    /// Reads the agents' breakers from the store every [`breaker::REFRESH`], until the
    /// scheduler stops: trips and resets of other instances and of operators.
    fn refresh_breakers(&self) {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(breaker::REFRESH);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = inner.stopping.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(e) = inner.breakers.refresh().await {
                    tracing::warn!("cannot read the agents' breakers: {e}");
                }
            }
        });
    }

    /// The agents' breakers that are not closed.
    pub async fn agent_breakers(
        &self,
    ) -> Result<Vec<sluice_store::agents::AgentBreakerRow>, sluice_store::StoreError> {
        self.inner.breakers.open().await
    }

    /// Closes an agent's breaker (an operator's reset): everywhere within
    /// [`breaker::REFRESH`]. `false` when it was not open.
    pub async fn reset_agent_breaker(&self, agent: &str) -> Result<bool, sluice_store::StoreError> {
        self.inner.breakers.reset(agent).await
    }

    /// Whether `name` is one of the config's agents.
    pub fn has_agent(&self, name: &str) -> bool {
        self.inner.agents.load().contains_key(name)
    }

    /// Runs going in this process.
    pub fn live_runs(&self) -> usize {
        self.inner.live.len()
    }

    /// Stops: no new runs; runs going may end by `deadline`, then the rest end as
    /// `interrupted` (their calls given up, their events and rows written; a client
    /// submits them again, elsewhere or after the restart).
    pub async fn stop(&self, deadline: tokio::time::Instant) {
        self.inner.closing.cancel();
        self.inner.tasks.close();
        if tokio::time::timeout_at(deadline, self.inner.tasks.wait())
            .await
            .is_ok()
        {
            // Ends the background work (the breakers' refresh) too.
            self.inner.stopping.cancel();
            self.flush_breakers().await;
            return;
        }
        let left = self.inner.live.len();
        self.inner.stopping.cancel();
        if tokio::time::timeout(STOP_WRITE, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                runs = self.inner.live.len(),
                "runs still ending when the scheduler stopped; the next start marks them interrupted"
            );
        } else if left > 0 {
            tracing::warn!(runs = left, "runs interrupted by the stop");
        }
        self.flush_breakers().await;
    }

    /// The agents' breaker changes into the store (bounded: a stop does not wait on a
    /// store that does not answer).
    async fn flush_breakers(&self) {
        if tokio::time::timeout(STOP_WRITE, self.inner.breakers.flush())
            .await
            .is_err()
        {
            tracing::warn!("agent breaker changes not all written at the stop");
        }
    }
}

/// How long interrupted runs get to write their end.
const STOP_WRITE: Duration = Duration::from_secs(2);

fn agents_of(cfg: &Config) -> Agents {
    cfg.agents
        .iter()
        .map(|(name, a)| (name.clone(), Arc::new(a.clone())))
        .collect()
}
