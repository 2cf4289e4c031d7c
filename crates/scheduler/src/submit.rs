//! A run asked for: checked (the agent, the input, the key's right to the agent's model,
//! the agent's concurrency), made idempotent (one run per gateway key and idempotency
//! key, across tasks and instances: the store's unique index decides), written as a
//! `runs` row, and handed to the engine.

use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};
use sluice_config::AgentConfig;
use sluice_limits::run::{RunBudget, RunMeters};
use sluice_llm::{Message, Role};
use sluice_service::ids::now_ms;
use sluice_service::{ChannelUser, Principal, ServiceError};
use sluice_store::runs::status;
use sluice_store::runs::{Inserted, RunCounters, RunRow};
use sluice_store::sessions::SessionRow;

use crate::engine::{self, RunCtx};
use crate::{Inner, SchedulerError};

/// Who asked for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Ws,
    Http,
    Schedule,
    Channel,
    /// A parent run, using an agent as a tool.
    Agent,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Ws => "ws",
            Origin::Http => "http",
            Origin::Schedule => "schedule",
            Origin::Channel => "channel",
            Origin::Agent => "agent",
        }
    }
}

/// A run asked for.
#[derive(Debug, Clone)]
pub struct Submission {
    pub agent: String,
    /// A string (one user message) or OpenAI chat messages (no `system`/`developer`:
    /// the agent's prompt is the operator's).
    pub input: Value,
    pub session_key: Option<String>,
    pub idempotency_key: Option<String>,
    pub origin: Origin,
    /// A chat channel's message: the platform user's limits apply to every call of the
    /// run (and of its children), the ledger and the session name the channel.
    pub channel: Option<Arc<ChannelUser>>,
}

/// A run started, or the existing one an idempotency key named.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub run_id: String,
    pub status: String,
    pub existing: bool,
}

/// Longest session or idempotency key.
const MAX_KEY_LEN: usize = 255;

pub(crate) async fn submit(
    inner: &Arc<Inner>,
    who: &Arc<Principal>,
    sub: Submission,
) -> Result<Accepted, SchedulerError> {
    if inner.closing.is_cancelled() || inner.service.is_stopping() {
        return Err(SchedulerError::ShuttingDown);
    }
    let agents = inner.agents.load();
    let agent = agents
        .get(&sub.agent)
        .cloned()
        .ok_or_else(|| SchedulerError::AgentNotFound(sub.agent.clone()))?;
    let input = input_messages(&sub.input)?;
    for (what, key) in [
        ("session_key", &sub.session_key),
        ("idempotency_key", &sub.idempotency_key),
    ] {
        if let Some(k) = key
            && (k.is_empty() || k.len() > MAX_KEY_LEN)
        {
            return Err(SchedulerError::InvalidInput(format!(
                "{what}: 1 to {MAX_KEY_LEN} bytes"
            )));
        }
    }
    // The key is checked again at every model call; its model allowlist is checked here
    // so a run that could never call its model is not started.
    inner
        .service
        .keys()
        .recheck(who, now_ms())
        .map_err(SchedulerError::Service)?;
    if !who.may_use(&agent.model) {
        return Err(ServiceError::ModelNotAllowed(agent.model.clone()).into());
    }
    let admitted = inner.breakers.admit(&agent.name)?;
    let store = inner.service.store();
    let session_id = match &sub.session_key {
        Some(k) => Some(
            session(
                inner,
                who,
                &agent.name,
                k,
                sub.channel.as_deref().map(|c| c.channel.as_str()),
            )
            .await?,
        ),
        None => None,
    };
    let id = uuid::Uuid::now_v7().to_string();
    // A run of a session may wait for the session's previous run; any other starts now
    // (one write fewer on the way in).
    let first_status = if session_id.is_some() {
        status::QUEUED
    } else {
        status::RUNNING
    };
    let row = RunRow {
        session_id: session_id.clone(),
        idempotency_key: sub.idempotency_key.clone(),
        request_hash: Some(request_hash(&sub)),
        ..new_row(
            &id,
            who,
            &agent.name,
            sub.origin,
            sub.input.clone(),
            first_status,
        )
    };
    let inserted = store.insert_run(&row).await.map_err(|e| {
        inner.breakers.release(&agent.name, admitted);
        SchedulerError::Store(e.to_string())
    })?;
    // The idempotency key is decided first (by the store), so resubmissions of a run
    // get it back whatever the agent's concurrency; only a new run needs a place.
    let slot = match inserted {
        Inserted::New => match Slot::take(inner, &agent) {
            Ok(slot) => slot,
            Err(e) => {
                inner.breakers.release(&agent.name, admitted);
                if let Err(e) = store.delete_unstarted_run(&id).await {
                    tracing::warn!(run = %id, "cannot remove a run refused a place: {e}");
                }
                return Err(e);
            }
        },
        Inserted::Existing(existing) => {
            inner.breakers.release(&agent.name, admitted);
            if existing.request_hash != row.request_hash {
                return Err(SchedulerError::IdempotencyKeyReused(
                    sub.idempotency_key.unwrap_or_default(),
                ));
            }
            return Ok(Accepted {
                run_id: existing.id,
                status: existing.status,
                existing: true,
            });
        }
    };
    engine::spawn(
        inner,
        RunCtx {
            id: id.clone(),
            who: who.clone(),
            budget: RunBudget::new(&id, caps(&agent)),
            deadline: tokio::time::Instant::now() + agent.bounds.deadline,
            agent,
            input,
            session_id,
            channel: sub.channel.clone(),
            ancestors: Vec::new(),
            depth: 0,
            admitted,
            slot: Some(slot),
        },
    );
    Ok(Accepted {
        run_id: id,
        status: first_status.to_owned(),
        existing: false,
    })
}

/// A new top-level run's row, nothing used yet (callers set what else they know).
pub(crate) fn new_row(
    id: &str,
    who: &Principal,
    agent: &str,
    origin: Origin,
    input: Value,
    status: &str,
) -> RunRow {
    let now = now_ms();
    RunRow {
        id: id.to_owned(),
        key_id: who.key_ref.to_string(),
        user_id: who.user_id.clone(),
        agent: agent.to_owned(),
        parent_run_id: None,
        root_run_id: id.to_owned(),
        depth: 0,
        session_id: None,
        origin: origin.as_str().to_owned(),
        idempotency_key: None,
        request_hash: None,
        status: status.to_owned(),
        input,
        output: None,
        error_code: None,
        error_message: None,
        breaker: None,
        counters: RunCounters::default(),
        last_seq: 0,
        created_at_ms: now,
        finished_at_ms: None,
        updated_at_ms: now,
    }
}

/// What one run of `agent` may use.
pub(crate) fn caps(agent: &AgentConfig) -> RunMeters {
    RunMeters {
        tokens: agent.bounds.max_tokens,
        cost_nanos: agent.bounds.max_cost_nanos,
        llm_calls: u64::from(agent.bounds.max_llm_calls),
    }
}

/// The input as chat messages.
fn input_messages(input: &Value) -> Result<Vec<Message>, SchedulerError> {
    let messages = match input {
        Value::String(s) if !s.trim().is_empty() => vec![Message::text(Role::User, s.clone())],
        Value::Array(items) if !items.is_empty() => {
            serde_json::from_value::<Vec<Message>>(input.clone())
                .map_err(|e| SchedulerError::InvalidInput(format!("input: {e}")))?
        }
        _ => {
            return Err(SchedulerError::InvalidInput(
                "input: a non-empty string, or a non-empty array of chat messages".into(),
            ));
        }
    };
    if messages
        .iter()
        .any(|m| matches!(m.role, Role::System | Role::Developer))
    {
        return Err(SchedulerError::InvalidInput(
            "input: no system or developer messages (the agent's prompt is its config's)".into(),
        ));
    }
    Ok(messages)
}

/// What was asked, to tell a retry from a reused idempotency key.
fn request_hash(sub: &Submission) -> String {
    let mut h = Sha256::new();
    for part in [
        sub.agent.as_str(),
        &sub.input.to_string(),
        sub.session_key.as_deref().unwrap_or(""),
    ] {
        h.update(part.len().to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The stored session of (key, agent, session key): found, or made.
async fn session(
    inner: &Inner,
    who: &Principal,
    agent: &str,
    key: &str,
    channel: Option<&str>,
) -> Result<String, SchedulerError> {
    let store = inner.service.store();
    let session_key = format!("agent:{}:{agent}:{key}", who.key_ref);
    let err = |e: sluice_store::StoreError| SchedulerError::Store(e.to_string());
    if let Some(s) = store.session_by_key(&session_key).await.map_err(err)? {
        return Ok(s.id);
    }
    let now = now_ms();
    let row = SessionRow {
        id: uuid::Uuid::now_v7().to_string(),
        session_key: session_key.clone(),
        key_id: Some(who.key_ref.to_string()),
        agent: Some(agent.to_owned()),
        channel: channel.map(str::to_owned),
        metadata: None,
        created_at_ms: now,
        updated_at_ms: now,
    };
    match store.create_session(&row).await {
        Ok(()) => Ok(row.id),
        // Made by a run asked for at the same time: that one.
        Err(e) => match store.session_by_key(&session_key).await.map_err(err)? {
            Some(s) => Ok(s.id),
            None => Err(err(e)),
        },
    }
}

/// A place among an agent's runs going at once; given back when dropped.
pub(crate) struct Slot {
    inner: Arc<Inner>,
    agent: String,
}

impl Slot {
    pub(crate) fn take(inner: &Arc<Inner>, agent: &AgentConfig) -> Result<Slot, SchedulerError> {
        let max = agent.bounds.max_concurrent_runs;
        let mut n = inner.running.entry(agent.name.clone()).or_insert(0);
        if *n >= max {
            return Err(SchedulerError::TooManyRuns {
                agent: agent.name.clone(),
                max,
            });
        }
        *n += 1;
        Ok(Slot {
            inner: inner.clone(),
            agent: agent.name.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(mut n) = self.inner.running.get_mut(&self.agent) {
            *n = n.saturating_sub(1);
        }
    }
}
