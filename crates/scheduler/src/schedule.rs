//! Schedules: an agent with a `schedule` (docs/agents.md, "Schedules") gets a run at every
//! fire of its cron pattern, read in UTC, made as its `run_as` key through the same
//! [`submit`](crate::submit) as every other run, so every bound of the agent and every
//! limit and budget of the key apply.
//!
//! - **One run per fire**, across instances and restarts: the run's idempotency key is
//!   `schedule:{agent}:{fire_ms}`, and the store's unique index makes the one run.
//! - **No overlap**: a fire while the agent's previous scheduled run is still going is
//!   skipped, and the log says so.
//! - **No catch-up**: after a start, the first fire is the first one after now (and after
//!   the last fire the store has); fires missed while the gateway was down are not made.
//! - **Pause**: a run that a budget, a rate limit or a breaker stopped (or a submission one
//!   refused) pauses the schedule, with its reason, in the store (so every instance and a
//!   restart see it) and in the log. A paused schedule does not fire. It resumes by itself
//!   at the first fire after the refusal's `retry_after_ms` has passed, or when an
//!   operator resumes it; firing again at once would only be refused again.
//!
//! The patterns are config; a schedule's state (paused, reason, last fire) is the store's
//! `schedules` table, read at every fire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use sluice_config::AgentConfig;
use sluice_protocol::ErrorBody;
use sluice_protocol::runs::events;
use sluice_service::ids::now_ms;
use sluice_store::StoreError;
use sluice_store::agents::ScheduleRow;
use sluice_store::runs::status;
use tokio::sync::Notify;

pub use crate::cron::{next_fire, utc_text};
use crate::submit::{self, Origin, Submission};
use crate::{Follow, Inner, Scheduler};

/// The refusals that pause a schedule: a run fired again would be refused the same way.
pub const PAUSING_CODES: &[&str] = &[
    sluice_protocol::codes::BREAKER_TRIPPED,
    "budget_exceeded",
    "rate_limit_exceeded",
    sluice_protocol::codes::AGENT_BREAKER_OPEN,
    "spend_breaker_open",
];

/// The longest the timer sleeps without looking at the config's agents again.
const NAP: Duration = Duration::from_secs(60);
/// The longest one fire may take: reading the schedule's state, submitting, recording.
const FIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long past its run's deadline a fire's run is followed before it is given up on.
const FOLLOW_SLACK: Duration = Duration::from_secs(60);

/// A schedule as the admin API and the CLI show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleStatus {
    pub agent: String,
    /// The cron pattern as written (UTC).
    pub schedule: String,
    /// The pattern in words.
    pub description: String,
    /// The `[[keys]]` entry the runs are made as.
    pub run_as: String,
    /// The next fire that will start a run (epoch ms); `None` while paused until an
    /// operator resumes it, or for a pattern that never fires.
    pub next_fire_ms: Option<i64>,
    pub last_fire_ms: Option<i64>,
    pub paused: bool,
    /// Why it paused: the refusal's code and message.
    pub reason: Option<String>,
    /// When a pause ends by itself; `None` with `paused`: when an operator resumes it.
    pub paused_until_ms: Option<i64>,
}

/// What an operator's resume did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resumed {
    /// `false`: the schedule was not paused (nothing changed).
    pub resumed: bool,
    pub schedule: ScheduleStatus,
}

/// The schedule of `agent` as it stands at `now_ms`, given its stored state; `None` when
/// the agent has no schedule.
pub fn status(
    agent: &AgentConfig,
    row: Option<&ScheduleRow>,
    now_ms: i64,
) -> Option<ScheduleStatus> {
    let s = agent.schedule.as_ref()?;
    let paused = row.is_some_and(|r| r.paused);
    let paused_until_ms = row.filter(|r| r.paused).and_then(|r| r.paused_until_ms);
    let next_fire_ms = match (paused, paused_until_ms) {
        (false, _) => next_fire(&s.cron, now_ms),
        // It fires again at the first fire at or after its pause ends.
        (true, Some(until)) => next_fire(&s.cron, now_ms.max(until.saturating_sub(1))),
        (true, None) => None,
    };
    Some(ScheduleStatus {
        agent: agent.name.clone(),
        schedule: s.text.clone(),
        description: s.cron.describe(),
        run_as: s.run_as.clone(),
        next_fire_ms,
        last_fire_ms: row.and_then(|r| r.last_fire_ms),
        paused,
        reason: row.filter(|r| r.paused).and_then(|r| r.reason.clone()),
        paused_until_ms,
    })
}

impl Scheduler {
    /// Every schedule of the config, with its state from the store.
    pub async fn schedules(&self) -> Result<Vec<ScheduleStatus>, StoreError> {
        let rows = self.inner.service.store().schedules().await?;
        let now = now_ms();
        Ok(self
            .inner
            .agents
            .load()
            .values()
            .filter_map(|a| status(a, rows.iter().find(|r| r.agent == a.name), now))
            .collect())
    }

    /// An operator's resume of `agent`'s schedule (on every instance: the state is the
    /// store's). `None`: the agent has no schedule.
    pub async fn resume_schedule(&self, agent: &str) -> Result<Option<Resumed>, StoreError> {
        let Some(a) = self.inner.agents.load().get(agent).cloned() else {
            return Ok(None);
        };
        if a.schedule.is_none() {
            return Ok(None);
        }
        let store = self.inner.service.store();
        let now = now_ms();
        let resumed = store.resume_schedule(agent, now).await?;
        if resumed {
            tracing::info!(agent, "schedule resumed by an operator");
        }
        let rows = store.schedules().await?;
        Ok(status(&a, rows.iter().find(|r| r.agent == agent), now)
            .map(|schedule| Resumed { resumed, schedule }))
    }
}

/// The scheduler's part of the schedules: the timer's wake-up, and what it remembers of
/// each agent's latest fire.
#[derive(Debug, Default)]
pub(crate) struct Schedules {
    /// Woken when the agents change (a reload): the timer plans again.
    wake: Notify,
    /// Per agent, the run of its latest fire (made here, or found made by another
    /// instance).
    last_run: Mutex<HashMap<String, String>>,
}

impl Schedules {
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    fn runs(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.last_run.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Starts the timer; it ends when the scheduler stops.
pub(crate) fn start(inner: &Arc<Inner>) {
    inner.tasks.spawn(timer(inner.clone()));
}

/// The next fire the timer plans for one agent.
struct Planned {
    /// The pattern it was planned for: a reload that changes it plans again.
    text: String,
    at: Option<i64>,
}

async fn timer(inner: Arc<Inner>) {
    // The last fires recorded, read once: the first fire after a restart comes after them.
    let mut recorded: HashMap<String, i64> = match inner.service.store().schedules().await {
        Ok(rows) => rows
            .into_iter()
            .filter_map(|r| Some((r.agent, r.last_fire_ms?)))
            .collect(),
        Err(e) => {
            tracing::warn!("cannot read the schedules' last fires; planning from now: {e}");
            HashMap::new()
        }
    };
    let mut plan: HashMap<String, Planned> = HashMap::new();
    loop {
        let now = now_ms();
        let agents = inner.agents.load_full();
        plan.retain(|name, _| agents.get(name).is_some_and(|a| a.schedule.is_some()));
        let mut due = Vec::new();
        for (name, agent) in agents.iter() {
            let Some(s) = &agent.schedule else {
                continue;
            };
            if plan.get(name).is_none_or(|p| p.text != s.text) {
                let at = first_fire(&s.cron, now, recorded.remove(name));
                match at {
                    Some(at) => tracing::info!(
                        agent = %name,
                        schedule = %s.text,
                        next_fire = %utc_text(at),
                        "schedule planned"
                    ),
                    None => tracing::warn!(
                        agent = %name,
                        schedule = %s.text,
                        "the schedule's pattern never fires"
                    ),
                }
                plan.insert(
                    name.clone(),
                    Planned {
                        text: s.text.clone(),
                        at,
                    },
                );
            }
            let Some(p) = plan.get_mut(name) else {
                continue;
            };
            if let Some(at) = p.at
                && at <= now
            {
                due.push((agent.clone(), at));
                // Fires missed (a stalled process, a slow fire) are not made up.
                p.at = next_fire(&s.cron, now);
            }
        }
        for (agent, at) in due {
            if tokio::time::timeout(FIRE_TIMEOUT, fire(&inner, &agent, at))
                .await
                .is_err()
            {
                tracing::warn!(agent = %agent.name, fire_ms = at, "a fire took too long and was given up");
            }
        }
        let nap = plan.values().filter_map(|p| p.at).min().map_or(NAP, |at| {
            Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)).min(NAP)
        });
        tokio::select! {
            // No fire once the stop begins (a stop waits for the scheduler's tasks).
            () = inner.closing.cancelled() => return,
            () = inner.schedules.wake.notified() => {}
            () = tokio::time::sleep(nap) => {}
        }
    }
}

/// The first fire to make after a start (or a reload that changed the pattern): after now,
/// so fires missed while the gateway was down are not made up, and after the last fire
/// recorded, so a restart at a fire's instant does not make it twice.
fn first_fire(cron: &croner::Cron, now_ms: i64, last_fire_ms: Option<i64>) -> Option<i64> {
    next_fire(cron, now_ms.max(last_fire_ms.unwrap_or(i64::MIN)))
}

/// One fire of `agent`'s schedule: unless it is paused or its previous run is still going,
/// a run is submitted and followed to its end.
async fn fire(inner: &Arc<Inner>, agent: &Arc<AgentConfig>, fire_ms: i64) {
    let Some(s) = &agent.schedule else {
        return;
    };
    let name = agent.name.as_str();
    let store = inner.service.store();
    let row = match store.schedules().await {
        Ok(rows) => rows.into_iter().find(|r| r.agent == name),
        Err(e) => {
            tracing::warn!(
                agent = name,
                fire_ms,
                "fire skipped: cannot read the schedule's state: {e}"
            );
            return;
        }
    };
    if let Some(row) = row.filter(|r| r.paused) {
        let now = now_ms();
        if row.paused_until_ms.is_none_or(|until| until > now) {
            tracing::debug!(agent = name, fire_ms, reason = ?row.reason, "fire skipped: the schedule is paused");
            return;
        }
        match store.resume_schedule_due(name, now).await {
            Ok(true) => tracing::info!(
                agent = name,
                "schedule resumed by itself: its pause is over"
            ),
            // Paused again, or resumed, by someone else meanwhile: the next fire sees which.
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(
                    agent = name,
                    fire_ms,
                    "fire skipped: cannot resume the schedule: {e}"
                );
                return;
            }
        }
    }
    let previous = inner.schedules.runs().get(name).cloned();
    if let Some(prev) = previous
        && going(inner, &prev).await
    {
        tracing::info!(
            agent = name,
            run = %prev,
            fire_ms,
            "fire skipped: the previous scheduled run is still going"
        );
        return;
    }
    let Some(who) = inner.service.keys().principal_by_name(&s.run_as) else {
        tracing::warn!(
            agent = name,
            run_as = %s.run_as,
            "fire skipped: run_as names no [[keys]] entry of the config"
        );
        return;
    };
    let sub = Submission {
        agent: agent.name.clone(),
        input: Value::String(s.input.clone()),
        session_key: None,
        idempotency_key: Some(format!("schedule:{name}:{fire_ms}")),
        origin: Origin::Schedule,
        channel: None,
    };
    let submitted = submit::submit(inner, &who, sub).await;
    if let Err(e) = store.schedule_fired(name, fire_ms, now_ms()).await {
        tracing::warn!(
            agent = name,
            fire_ms,
            "cannot record the schedule's fire: {e}"
        );
    }
    match submitted {
        Ok(accepted) => {
            tracing::info!(
                agent = name,
                run = %accepted.run_id,
                fire_ms,
                existing = accepted.existing,
                "schedule fired"
            );
            inner
                .schedules
                .runs()
                .insert(agent.name.clone(), accepted.run_id.clone());
            // A run another instance made for the same fire is followed there.
            if !accepted.existing {
                follow(inner, agent, accepted.run_id);
            }
        }
        Err(e) => {
            let error = e.body();
            if PAUSING_CODES.contains(&error.code.as_str()) {
                pause(inner, name, &error, None).await;
            } else {
                tracing::warn!(
                    agent = name,
                    fire_ms,
                    code = %error.code,
                    "scheduled run refused: {}",
                    error.message
                );
            }
        }
    }
}

/// Whether a run is still going, here or on another instance. A run whose state cannot be
/// read counts as going: the fire waits rather than risk an overlap.
async fn going(inner: &Inner, run_id: &str) -> bool {
    if inner.live.contains_key(run_id) {
        return true;
    }
    match inner.service.store().run(run_id).await {
        Ok(Some(r)) => r.status == status::QUEUED || r.status == status::RUNNING,
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(
                run = run_id,
                "cannot read the scheduled run; taking it as still going: {e}"
            );
            true
        }
    }
}

/// Follows a fire's run to its end, on the scheduler's tasks: a run stopped by a budget,
/// a rate limit or a breaker pauses the schedule.
fn follow(inner: &Arc<Inner>, agent: &AgentConfig, run_id: String) {
    let limit = agent.bounds.deadline + FOLLOW_SLACK;
    let name = agent.name.clone();
    let owner = inner.clone();
    inner.tasks.spawn(async move {
        let live = owner.live.get(&run_id).map(|r| r.log.clone());
        let mut follow = Follow::new(
            run_id.clone(),
            0,
            owner.service.store().clone(),
            live,
        );
        let last = async {
            let mut last = None;
            while let Some(e) = follow.next().await {
                last = Some(e);
            }
            last
        };
        let Ok(last) = tokio::time::timeout(limit, last).await else {
            tracing::warn!(agent = %name, run = %run_id, "the scheduled run did not end in time to be followed");
            return;
        };
        let Some(end) = last.filter(|e| {
            e.event == events::FAILED && e.data.get("run_id").and_then(Value::as_str) == Some(&run_id)
        }) else {
            return;
        };
        let Some(error) = end
            .data
            .get("error")
            .and_then(|e| serde_json::from_value::<ErrorBody>(e.clone()).ok())
        else {
            return;
        };
        if PAUSING_CODES.contains(&error.code.as_str()) {
            pause(&owner, &name, &error, Some(&run_id)).await;
        }
    });
}

/// Pauses `agent`'s schedule for `error`: until its `retry_after_ms`, if it has one, or
/// until an operator resumes it.
async fn pause(inner: &Inner, agent: &str, error: &ErrorBody, run: Option<&str>) {
    let now = now_ms();
    let until = error
        .retry_after_ms
        .map(|ms| now.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)));
    let reason = match run {
        Some(run) => format!("{}: {} (run {run})", error.code, error.message),
        None => format!("{}: {} (the run was refused)", error.code, error.message),
    };
    match inner
        .service
        .store()
        .pause_schedule(agent, &reason, until, now)
        .await
    {
        Ok(()) => tracing::warn!(
            agent,
            code = %error.code,
            paused_until = until.map(utc_text),
            "schedule paused: {reason}"
        ),
        Err(e) => tracing::error!(
            agent,
            "the schedule should pause ({reason}) but its state cannot be written: {e}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(pattern: &str) -> AgentConfig {
        let cfg = sluice_config::Config::parse(
            &format!(
                r#"
                [[keys]]
                name = "nightly"
                key = "nightly-key-0123"
                [providers.mock]
                kind = "mock"
                [models.fast]
                chain = ["mock:m"]
                [agents.report]
                model = "fast"
                schedule = "{pattern}"
                schedule_input = "Write the report"
                run_as = "nightly"
                "#
            ),
            &|_| None,
        )
        .unwrap();
        cfg.agents["report"].clone()
    }

    fn row(paused: bool, until: Option<i64>) -> ScheduleRow {
        ScheduleRow {
            agent: "report".into(),
            paused,
            reason: paused.then(|| "budget_exceeded: spent".into()),
            paused_until_ms: until,
            last_fire_ms: Some(59_000),
            updated_at_ms: 59_500,
        }
    }

    #[test]
    fn a_status_says_when_the_next_run_starts() {
        let a = agent("0 * * * * *");
        let fresh = status(&a, None, 61_000).unwrap();
        assert_eq!(
            (fresh.next_fire_ms, fresh.paused, fresh.last_fire_ms),
            (Some(120_000), false, None)
        );
        assert_eq!(fresh.run_as, "nightly");

        let held = status(&a, Some(&row(true, None)), 61_000).unwrap();
        assert_eq!(
            (held.next_fire_ms, held.paused, held.reason.as_deref()),
            (None, true, Some("budget_exceeded: spent")),
            "paused until an operator resumes it: no next fire"
        );

        let until = status(&a, Some(&row(true, Some(180_000))), 61_000).unwrap();
        assert_eq!(
            until.next_fire_ms,
            Some(180_000),
            "a fire at the instant the pause ends is made"
        );
        let until = status(&a, Some(&row(true, Some(180_001))), 61_000).unwrap();
        assert_eq!(until.next_fire_ms, Some(240_000));

        let resumed = status(&a, Some(&row(false, None)), 61_000).unwrap();
        assert_eq!(
            (resumed.next_fire_ms, resumed.reason, resumed.last_fire_ms),
            (Some(120_000), None, Some(59_000))
        );
    }

    #[test]
    fn fires_missed_while_down_are_not_made_up() {
        let cron = sluice_config::parse_cron("*/10 * * * * *").unwrap();
        // Last fired at 20 s, started again at 95 s: the fires at 30…90 s are not made.
        assert_eq!(first_fire(&cron, 95_000, Some(20_000)), Some(100_000));
        assert_eq!(first_fire(&cron, 95_000, None), Some(100_000));
        // Started again at the instant of the fire just made (or with a clock behind the
        // instance that made it): that fire is not made again.
        assert_eq!(first_fire(&cron, 100_000, Some(100_000)), Some(110_000));
        assert_eq!(first_fire(&cron, 99_000, Some(100_000)), Some(110_000));
    }

    #[test]
    fn an_agent_without_a_schedule_has_no_status() {
        let mut a = agent("@daily");
        a.schedule = None;
        assert_eq!(status(&a, None, 0), None);
    }
}
