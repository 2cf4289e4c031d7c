//! The loop of one run: session history and input → the model (streamed) → the tools it
//! asked for (at once, up to `max_parallel_tools`) → their results appended → again,
//! until an answer without tool calls. Every await of a step races the run's cancel and
//! its deadline: a call dropped mid-stream settles what it streamed (its ledger row says
//! `client_closed`) and gives back the rest of its reservation.
//!
//! `step_tools.rs` is a step's tool calls: loop detection, running them at once, agents as
//! child runs. The recovery of runs a dead process left is `crate::recovery`.

mod step_tools;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sluice_config::AgentConfig;
use sluice_limits::run::RunBudget;
use sluice_llm::assemble::Assembler;
use sluice_llm::{ChatRequest, Message, Role, StreamOptions};
use sluice_protocol::codes;
use sluice_protocol::runs::{
    RunBounds, RunCompleted, RunDelta, RunFailed, RunStarted, RunUsage, events, usd,
};
use sluice_service::ids::now_ms;
use sluice_service::{CallMeta, Principal, Reply, RunScope, ServiceError};
use sluice_store::runs::status;
use sluice_store::runs::{RunCounters, RunEnd};
use tokio::time::Instant;

use crate::error::{RunFailure, breaker, ms};
use crate::events::RunLog;
use crate::submit::Slot;
use crate::tools::{Outcome, ToolSet};
use crate::{Inner, LiveRun, history};

/// An answer's text and tool calls kept at most (a model that writes without end is
/// stopped by `max_output_tokens` long before).
const MAX_ANSWER_BYTES: usize = 4 << 20;
/// Deltas merged into one event: for this long after the first of a step's pieces...
const DELTA_WINDOW: Duration = Duration::from_millis(32);
/// ...or up to this many bytes.
const DELTA_BYTES: usize = 1024;
/// Longest wait between retries of a model call.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

/// What a run needs to go.
pub(crate) struct RunCtx {
    pub id: String,
    pub who: Arc<Principal>,
    pub agent: Arc<AgentConfig>,
    pub input: Vec<Message>,
    pub session_id: Option<String>,
    /// The chat channel's user the run answers (inherited by child runs).
    pub channel: Option<Arc<sluice_service::ChannelUser>>,
    pub budget: RunBudget,
    pub deadline: Instant,
    /// The logs of the runs above this one, nearest first: its events go to them too.
    pub ancestors: Vec<(String, Arc<RunLog>)>,
    pub depth: i64,
    /// How the agent's breaker let the run through (told how it ended).
    pub admitted: crate::breaker::Admitted,
    /// The run's place among its agent's runs, given back as the run ends (before its
    /// terminal event goes out).
    pub slot: Option<Slot>,
}

/// Starts a top-level run on the scheduler's tasks.
pub(crate) fn spawn(inner: &Arc<Inner>, ctx: RunCtx) {
    let live = register(inner, &ctx, inner.stopping.child_token());
    let inner2 = inner.clone();
    inner.tasks.spawn(async move {
        // Its end is in its events and its row.
        let _ = drive(inner2, live, ctx).await;
    });
}

fn register(
    inner: &Arc<Inner>,
    ctx: &RunCtx,
    cancel: tokio_util::sync::CancellationToken,
) -> Arc<LiveRun> {
    let live = Arc::new(LiveRun {
        id: ctx.id.clone(),
        key_ref: ctx.who.key_ref.clone(),
        agent: ctx.agent.name.clone(),
        log: RunLog::new(ctx.id.clone(), inner.writer.clone()),
        cancel,
    });
    inner.live.insert(ctx.id.clone(), live.clone());
    live
}

/// Runs a run to its end: its events, its row, its session's turn. Returns its answer.
async fn drive(inner: Arc<Inner>, live: Arc<LiveRun>, ctx: RunCtx) -> Result<String, RunFailure> {
    let store = inner.service.store().clone();
    // Runs of one session go one at a time, in the order they get here.
    let lock = ctx
        .session_id
        .as_ref()
        .map(|s| inner.sessions.entry(s.clone()).or_default().clone());
    let mut runner = Runner {
        inner: inner.clone(),
        live: live.clone(),
        ctx,
        step: 0,
        llm_calls: 0,
        tool_calls: 0,
        seen_calls: HashMap::new(),
        failing: HashMap::new(),
    };
    let turn = match &lock {
        Some(l) => Some(runner.guarded(l.lock()).await),
        None => None,
    };
    let result = match &turn {
        // Cancelled while it waited for its session's turn.
        Some(Err(f)) => Err(f.clone()),
        _ => {
            // Only a session's run was written `queued` (it may have waited its turn).
            if runner.ctx.session_id.is_some()
                && let Err(e) = store.start_run(&runner.ctx.id, now_ms()).await
            {
                tracing::warn!(run = %runner.ctx.id, "cannot mark the run running: {e}");
            }
            runner.go().await
        }
    };
    let result = runner.finish(result).await;
    drop(turn);
    if let Some(sid) = &runner.ctx.session_id {
        drop(lock);
        inner
            .sessions
            .remove_if(sid, |_, m| Arc::strong_count(m) == 1);
    }
    inner.live.remove(&runner.ctx.id);
    result
}

/// A child run, boxed with its type written out: a run's future contains its children's,
/// and naming the type here is what lets the compiler see it is `Send`.
fn drive_child(
    inner: Arc<Inner>,
    live: Arc<LiveRun>,
    ctx: RunCtx,
) -> std::pin::Pin<Box<dyn Future<Output = Result<String, RunFailure>> + Send>> {
    Box::pin(drive(inner, live, ctx))
}

struct Runner {
    inner: Arc<Inner>,
    live: Arc<LiveRun>,
    ctx: RunCtx,
    step: u32,
    llm_calls: u64,
    tool_calls: u64,
    /// Tool calls by fingerprint: how often, and the first result.
    seen_calls: HashMap<[u8; 32], (u32, Value)>,
    /// Failing model requests by fingerprint.
    failing: HashMap<[u8; 32], u32>,
}

type ToolRun<'a> = std::pin::Pin<Box<dyn Future<Output = (Outcome, Duration)> + Send + 'a>>;

/// Why a model call gave no answer.
enum Stop {
    /// The run must end.
    Run(RunFailure),
    /// The call failed; it may be retried.
    Call(ServiceError),
}

impl Runner {
    fn bounds(&self) -> &sluice_config::AgentBounds {
        &self.ctx.agent.bounds
    }

    /// Sends an event to the run's log and its ancestors' (nested in their streams).
    fn emit(&self, event: &'static str, data: impl Fn(u64) -> Value) {
        self.live.log.emit(event, &data);
        for (_, log) in &self.ctx.ancestors {
            log.emit(event, &data);
        }
    }

    fn parent(&self) -> Option<String> {
        self.ctx.ancestors.first().map(|(id, _)| id.clone())
    }

    /// Why the run is being stopped now: cancelled, interrupted (the process stops) or
    /// past its deadline.
    fn stopped(&self) -> RunFailure {
        if self.inner.stopping.is_cancelled() {
            RunFailure::interrupted()
        } else if self.live.cancel.is_cancelled() {
            RunFailure::cancelled()
        } else {
            RunFailure::tripped(
                breaker::DEADLINE,
                format!(
                    "the run's deadline of {} s passed",
                    self.bounds().deadline.as_secs()
                ),
            )
        }
    }

    /// `fut`, unless the run is cancelled or its deadline passes first.
    async fn guarded<T>(&self, fut: impl Future<Output = T>) -> Result<T, RunFailure> {
        tokio::select! {
            biased;
            () = self.live.cancel.cancelled() => Err(self.stopped()),
            () = tokio::time::sleep_until(self.ctx.deadline) => Err(self.stopped()),
            v = fut => Ok(v),
        }
    }

    async fn go(&mut self) -> Result<(String, Vec<Message>), RunFailure> {
        let agents = self.inner.agents.load();
        let node_tools = self.inner.nodes.tools(&self.ctx.who.key_ref);
        let fetch = self.inner.fetcher.is_some();
        let (tools, unavailable) = ToolSet::resolve(&self.ctx.agent, &node_tools, fetch, |name| {
            agents.get(name).and_then(|a| a.system.clone())
        });
        let caps = self.ctx.budget.caps();
        let started = RunStarted {
            run_id: self.ctx.id.clone(),
            seq: 0,
            parent_run_id: self.parent(),
            agent: self.ctx.agent.name.clone(),
            bounds: RunBounds {
                max_steps: self.bounds().max_steps,
                max_llm_calls: caps.llm_calls,
                max_tokens: caps.tokens,
                max_cost_usd: usd(caps.cost_nanos),
                deadline_ms: ms(self.ctx.deadline.saturating_duration_since(Instant::now())),
            },
            tools: tools.names(),
            unavailable_tools: unavailable,
        };
        self.emit(events::STARTED, |seq| {
            to_value(&RunStarted {
                seq,
                ..started.clone()
            })
        });
        let history = match &self.ctx.session_id {
            Some(sid) => history::History::new(
                {
                    let store = self.inner.service.store().clone();
                    self.guarded(history::load(&store, sid))
                    .await?
                    .map_err(|e| {
                        tracing::warn!(session = %sid, "cannot read the session's history: {e}");
                        RunFailure::failed(
                            codes::INTERNAL,
                            "the session's history could not be read",
                        )
                    })?
                },
                &self.ctx.agent.model,
            ),
            None => history::History::default(),
        };
        let mut turn = self.ctx.input.clone();
        loop {
            self.step += 1;
            if self.step > self.bounds().max_steps {
                return Err(RunFailure::tripped(
                    breaker::MAX_STEPS,
                    format!(
                        "{} model turns without a final answer",
                        self.bounds().max_steps
                    ),
                ));
            }
            let req = self.request(&history, &turn, &tools)?;
            let answer = self.model_step(req).await?;
            let calls = answer.tool_calls.clone().unwrap_or_default();
            turn.push(answer);
            if calls.is_empty() {
                let text = turn.last().map(Message::text_content).unwrap_or_default();
                return Ok((text, turn));
            }
            let results = self.run_tools(&tools, &calls).await?;
            turn.extend(results);
            self.progress().await;
        }
    }

    /// The step's request: history trimmed to the context window, the output capped by
    /// what the run's token budget has left.
    fn request(
        &self,
        history: &history::History,
        turn: &[Message],
        tools: &ToolSet,
    ) -> Result<ChatRequest, RunFailure> {
        let agent = &self.ctx.agent;
        let max_output = u64::from(self.bounds().max_output_tokens);
        let context = u64::from(self.bounds().context_tokens);
        let system = agent.system.as_deref();
        // The prompt without history: the system prompt, the run's turn, the tools.
        let mut req = request(&agent.model, history::messages(system, &[], turn), tools);
        let fixed = sluice_limits::tokens::prompt_tokens(&req, &req.model).tokens;
        let Some(room) = context.checked_sub(fixed + max_output) else {
            return Err(RunFailure::failed(
                codes::CONTEXT_OVERFLOW,
                format!(
                    "the agent's prompt and the run's messages ({fixed} tokens) and its output \
                     ({max_output}) do not fit its context of {context} tokens"
                ),
            ));
        };
        let from = history.fitting(room);
        req.messages = history::messages(system, &history.messages[from..], turn);
        let prompt = sluice_limits::tokens::prompt_tokens(&req, &req.model).tokens;
        let left = self.ctx.budget.remaining().tokens.saturating_sub(prompt);
        let cap = max_output.min(left).max(1);
        req.max_tokens = Some(u32::try_from(cap).unwrap_or(u32::MAX));
        Ok(req)
    }

    /// One model turn, retried on retryable failures up to `max_retries`.
    async fn model_step(&mut self, req: ChatRequest) -> Result<Message, RunFailure> {
        let fingerprint = request_fingerprint(&req);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if self.llm_calls >= u64::from(self.bounds().max_llm_calls) {
                return Err(RunFailure::tripped(
                    breaker::MAX_LLM_CALLS,
                    format!("{} model calls", self.bounds().max_llm_calls),
                ));
            }
            self.llm_calls += 1;
            let e = match self.call(req.clone(), attempt).await {
                Ok(m) => return Ok(m),
                Err(Stop::Run(f)) => return Err(f),
                Err(Stop::Call(e)) => e,
            };
            let info = e.info();
            let seen = self.failing.entry(fingerprint).or_insert(0);
            *seen += 1;
            if *seen >= self.ctx.agent.bounds.loop_failing_requests {
                return Err(RunFailure::tripped(
                    breaker::LOOP_FAILING_REQUEST,
                    format!(
                        "the same model request failed {seen} times (last: {}: {})",
                        info.code, info.message
                    ),
                ));
            }
            // The run's own budget is a lifetime budget: never retryable.
            if !info.retryable {
                return Err(RunFailure::from_service(&e));
            }
            if attempt > self.bounds().max_retries {
                if info.code == "circuit_open" {
                    return Err(RunFailure::from_service(&e));
                }
                return Err(RunFailure::tripped(
                    breaker::MAX_RETRIES,
                    format!(
                        "{} retries of a model call failed (last: {}: {})",
                        self.bounds().max_retries,
                        info.code,
                        info.message
                    ),
                ));
            }
            let wait = info
                .retry_after
                .unwrap_or_else(|| {
                    sluice_backoff::full_jitter(
                        Duration::from_millis(200),
                        Duration::from_secs(10),
                        attempt,
                    )
                })
                .min(MAX_RETRY_WAIT);
            if Instant::now() + wait > self.ctx.deadline {
                return Err(RunFailure::tripped(
                    breaker::DEADLINE,
                    format!(
                        "a retry after {} ms would pass the run's deadline (last: {})",
                        wait.as_millis(),
                        info.code
                    ),
                ));
            }
            self.guarded(tokio::time::sleep(wait)).await?;
        }
    }

    /// One model call, streamed into `run.delta` events and assembled into a message.
    async fn call(&mut self, req: ChatRequest, attempt: u32) -> Result<Message, Stop> {
        let scope = RunScope::new(self.ctx.budget.clone()).map_err(Stop::Call)?;
        let mut meta = CallMeta::fresh()
            .with_agent(&self.ctx.agent.name)
            .map_err(Stop::Call)?
            .with_run(scope);
        meta.session = self.ctx.session_id.clone();
        meta.channel = self.ctx.channel.clone();
        let answer = self
            .guarded(self.inner.service.chat(&self.ctx.who, meta, req))
            .await
            .map_err(Stop::Run)?
            .map_err(Stop::Call)?;
        let mut stream = match answer.value {
            Reply::Stream(s) => s,
            Reply::Whole { response, .. } => {
                let Some(choice) = response.choices.into_iter().next() else {
                    return Ok(Message::text(Role::Assistant, ""));
                };
                let text = choice.message.text_content();
                if !text.is_empty() {
                    self.delta(attempt, text);
                }
                return Ok(choice.message);
            }
        };
        let mut asm = Assembler::with_limit(MAX_ANSWER_BYTES);
        let mut pending = String::new();
        let mut flush_at: Option<Instant> = None;
        let mut sent_first = false;
        loop {
            let next = tokio::select! {
                biased;
                () = self.live.cancel.cancelled() => return Err(Stop::Run(self.stopped())),
                () = tokio::time::sleep_until(self.ctx.deadline) => return Err(Stop::Run(self.stopped())),
                () = sleep_until_opt(flush_at) => {
                    self.delta(attempt, std::mem::take(&mut pending));
                    flush_at = None;
                    continue;
                }
                next = stream.next() => next,
            };
            match next {
                Some(Ok(chunk)) => {
                    asm.push(&chunk);
                    for c in &chunk.choices {
                        if let Some(t) = &c.delta.content {
                            pending.push_str(t);
                        }
                    }
                    if pending.is_empty() {
                        continue;
                    }
                    // The first piece goes at once (time to first token is kept); later
                    // ones are merged for a moment.
                    if !sent_first || pending.len() >= DELTA_BYTES {
                        sent_first = true;
                        self.delta(attempt, std::mem::take(&mut pending));
                        flush_at = None;
                    } else if flush_at.is_none() {
                        flush_at = Some(Instant::now() + DELTA_WINDOW);
                    }
                }
                Some(Err(e)) => {
                    if !pending.is_empty() {
                        self.delta(attempt, pending);
                    }
                    return Err(Stop::Call(e));
                }
                None => break,
            }
        }
        if !pending.is_empty() {
            self.delta(attempt, pending);
        }
        Ok(asm.finish().message)
    }

    fn delta(&self, attempt: u32, text: String) {
        let (run_id, parent, step) = (self.ctx.id.clone(), self.parent(), self.step);
        self.emit(events::DELTA, |seq| {
            to_value(&RunDelta {
                run_id: run_id.clone(),
                seq,
                parent_run_id: parent.clone(),
                step,
                attempt,
                text: text.clone(),
            })
        });
    }

    fn counters(&self) -> RunCounters {
        let (prompt, completion) = self.ctx.budget.own_tokens();
        let own = self.ctx.budget.own_spent();
        let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        RunCounters {
            steps: i64::from(self.step),
            llm_calls: i(self.llm_calls),
            tool_calls: i(self.tool_calls),
            prompt_tokens: i(prompt),
            completion_tokens: i(completion),
            cost_nanos: i(own.cost_nanos),
        }
    }

    fn usage(&self) -> RunUsage {
        let c = self.counters();
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        RunUsage {
            steps: self.step,
            llm_calls: self.llm_calls,
            tool_calls: self.tool_calls,
            prompt_tokens: u(c.prompt_tokens),
            completion_tokens: u(c.completion_tokens),
            cost_usd: usd(u(c.cost_nanos)),
            total_cost_usd: usd(self.ctx.budget.spent().cost_nanos),
        }
    }

    async fn progress(&self) {
        let store = self.inner.service.store();
        let last = i64::try_from(self.live.log.last_seq()).unwrap_or(i64::MAX);
        if let Err(e) = store
            .update_run_progress(&self.ctx.id, self.counters(), last, now_ms())
            .await
        {
            tracing::warn!(run = %self.ctx.id, "cannot record the run's progress: {e}");
        }
    }

    /// Ends the run: its row and its session's turn first, then its terminal event, so a
    /// client that saw the event finds both; the event is stored before the run leaves
    /// the live runs, so a follower that comes later replays it from the store.
    async fn finish(
        &mut self,
        result: Result<(String, Vec<Message>), RunFailure>,
    ) -> Result<String, RunFailure> {
        let usage = self.usage();
        let (run_id, parent) = (self.ctx.id.clone(), self.parent());
        let mut end = RunEnd {
            status: status::COMPLETED,
            output: None,
            error_code: None,
            error_message: None,
            breaker: None,
            counters: self.counters(),
            // The terminal event's.
            last_seq: i64::try_from(self.live.log.last_seq() + 1).unwrap_or(i64::MAX),
            at_ms: now_ms(),
        };
        let turn = match &result {
            Ok((output, turn)) => {
                end.output = Some(Value::String(output.clone()));
                Some(turn)
            }
            Err(f) => {
                end.status = f.status;
                end.error_code = Some(f.error.code.clone());
                end.error_message = Some(f.error.message.clone());
                end.breaker = f.breaker.as_ref().map(|b| b.name.clone());
                None
            }
        };
        self.live.log.flushed().await;
        let store = self.inner.service.store();
        if let Err(e) = store.finish_run(&self.ctx.id, &end).await {
            tracing::error!(run = %self.ctx.id, "cannot record the run's end: {e}");
        }
        if let (Some(sid), Some(turn)) = (&self.ctx.session_id, turn) {
            history::append(store, sid, turn, now_ms()).await;
        }
        // The agent's breaker hears of it, and the run's place among the agent's runs
        // is given back, before the client does: a resubmission on seeing the end meets
        // the breaker and the concurrency as they now are.
        drop(self.ctx.slot.take());
        self.inner
            .breakers
            .record(&self.ctx.agent, result.as_ref().err(), self.ctx.admitted);
        let result = match result {
            Ok((output, _)) => {
                self.emit(events::COMPLETED, |seq| {
                    to_value(&RunCompleted {
                        run_id: run_id.clone(),
                        seq,
                        parent_run_id: parent.clone(),
                        output: output.clone(),
                        usage: usage.clone(),
                    })
                });
                Ok(output)
            }
            Err(f) => {
                self.emit(events::FAILED, |seq| {
                    to_value(&RunFailed {
                        run_id: run_id.clone(),
                        seq,
                        parent_run_id: parent.clone(),
                        error: f.error.clone(),
                        breaker: f.breaker.as_deref().cloned(),
                        usage: usage.clone(),
                    })
                });
                Err(f)
            }
        };
        self.live.log.flushed().await;
        result
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A chat request with the run's defaults: streamed, with usage, with its tools.
fn request(model: &str, messages: Vec<Message>, tools: &ToolSet) -> ChatRequest {
    ChatRequest {
        model: model.to_owned(),
        messages,
        stream: Some(true),
        stream_options: Some(StreamOptions {
            include_usage: Some(true),
            rest: Default::default(),
        }),
        max_tokens: None,
        max_completion_tokens: None,
        temperature: None,
        top_p: None,
        stop: None,
        tools: (!tools.is_empty()).then(|| tools.defs()),
        tool_choice: None,
        parallel_tool_calls: None,
        user: None,
        rest: Default::default(),
    }
}

fn sha(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.len().to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

/// A model request's identity: what is sent, but the output cap (which shrinks as the
/// budget is spent).
fn request_fingerprint(req: &ChatRequest) -> [u8; 32] {
    let body = serde_json::to_string(&(&req.model, &req.messages, &req.tools)).unwrap_or_default();
    sha(&[&body])
}
