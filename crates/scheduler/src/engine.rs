//! The loop of one run: session history and input → the model (streamed) → the tools it
//! asked for (at once, up to `max_parallel_tools`) → their results appended → again,
//! until an answer without tool calls. Every await of a step races the run's cancel and
//! its deadline: a call dropped mid-stream settles what it streamed (its ledger row says
//! `client_closed`) and gives back the rest of its reservation.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sluice_config::AgentConfig;
use sluice_limits::run::RunBudget;
use sluice_llm::assemble::Assembler;
use sluice_llm::{ChatRequest, Message, Role, StreamOptions, ToolCall};
use sluice_protocol::codes;
use sluice_protocol::runs::{
    RunBounds, RunCompleted, RunDelta, RunFailed, RunStarted, RunToolCall, RunToolResult, RunUsage,
    events, usd,
};
use sluice_service::ids::now_ms;
use sluice_service::{CallMeta, Principal, Reply, RunScope, ServiceError};
use sluice_store::runs::status;
use sluice_store::runs::{RunCounters, RunEnd, RunEventRow, RunRow};
use tokio::time::Instant;

use crate::error::{RunFailure, breaker, ms};
use crate::events::RunLog;
use crate::submit::{Origin, Slot, caps};
use crate::tools::{self, Kind, Outcome, ToolSet};
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
    pub budget: RunBudget,
    pub deadline: Instant,
    /// The logs of the runs above this one, nearest first: its events go to them too.
    pub ancestors: Vec<(String, Arc<RunLog>)>,
    pub depth: i64,
    /// How the agent's breaker let the run through (told how it ended).
    pub admitted: crate::breaker::Admitted,
    /// The run's place among its agent's runs, given back when the run is done.
    pub _slot: Slot,
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
            let run_bound =
                matches!(&e, ServiceError::LimitReached(r) if r.scope.starts_with("run:"));
            if !info.retryable || run_bound {
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

    /// Runs the step's tool calls (at once, up to `max_parallel_tools`) and returns their
    /// results as `tool` messages, in the order the model asked.
    async fn run_tools(
        &mut self,
        tools: &ToolSet,
        calls: &[ToolCall],
    ) -> Result<Vec<Message>, RunFailure> {
        enum Plan<'t> {
            Run(&'t tools::Entry, Value),
            Done(Outcome),
        }
        let mut plans = Vec::with_capacity(calls.len());
        for call in calls {
            self.tool_calls += 1;
            let entry = tools.find(&call.function.name);
            // A repeat is caught whatever the call: a model that keeps sending the same
            // unknown tool or the same bad arguments loops as surely as one that keeps
            // getting the same answer.
            let plan = match self.repeated(&call.function.name, &call.function.arguments)? {
                Some(earlier) => Plan::Done(earlier),
                None => match entry {
                    None => Plan::Done(Outcome::err(
                        tools::codes::UNKNOWN_TOOL,
                        format!(
                            "no tool `{}`; the tools are: {}",
                            call.function.name,
                            tools.names().join(", ")
                        ),
                    )),
                    Some(e) => match e.arguments(&call.function.arguments) {
                        Err(refused) => Plan::Done(refused),
                        Ok(args) => Plan::Run(e, args),
                    },
                },
            };
            let arguments = serde_json::from_str::<Value>(&call.function.arguments)
                .unwrap_or_else(|_| Value::String(call.function.arguments.clone()));
            let (run_id, parent, step) = (self.ctx.id.clone(), self.parent(), self.step);
            let tool = entry.map_or_else(String::new, |e| e.tool.clone());
            self.emit(events::TOOL_CALL, |seq| {
                to_value(&RunToolCall {
                    run_id: run_id.clone(),
                    seq,
                    parent_run_id: parent.clone(),
                    step,
                    call_id: call.id.clone(),
                    name: call.function.name.clone(),
                    tool: tool.clone(),
                    arguments: arguments.clone(),
                })
            });
            plans.push(plan);
        }
        let parallel = usize::try_from(self.bounds().max_parallel_tools).unwrap_or(1);
        let this = &*self;
        // Boxed as `Send` one by one: a stream of borrowing futures would otherwise not
        // prove `Send` for every lifetime the spawned run needs.
        let runs: Vec<ToolRun<'_>> = plans
            .into_iter()
            .map(|plan| -> ToolRun<'_> {
                Box::pin(async move {
                    let started = Instant::now();
                    let outcome = match plan {
                        Plan::Done(o) => o,
                        Plan::Run(entry, args) => this.run_tool(entry, args).await,
                    };
                    (outcome, started.elapsed())
                })
            })
            .collect();
        let outcomes: Vec<(Outcome, Duration)> = this
            .guarded(
                futures_util::stream::iter(runs)
                    .buffered(parallel.max(1))
                    .collect(),
            )
            .await?;
        let max = usize::try_from(self.bounds().max_tool_result_bytes).unwrap_or(usize::MAX);
        let mut messages = Vec::with_capacity(calls.len());
        for (call, (outcome, took)) in calls.iter().zip(outcomes) {
            let (text, truncated) = tools::capped(&outcome.output, max);
            let fp = call_fingerprint(&call.function.name, &call.function.arguments);
            if let Some(seen) = self.seen_calls.get_mut(&fp)
                && seen.1.is_null()
            {
                seen.1 = Value::String(text.clone());
            }
            let (run_id, parent, step) = (self.ctx.id.clone(), self.parent(), self.step);
            self.emit(events::TOOL_RESULT, |seq| {
                to_value(&RunToolResult {
                    run_id: run_id.clone(),
                    seq,
                    parent_run_id: parent.clone(),
                    step,
                    call_id: call.id.clone(),
                    name: call.function.name.clone(),
                    output: outcome.output.clone(),
                    error: outcome.error.clone(),
                    truncated,
                    duration_ms: ms(took),
                })
            });
            messages.push(Message {
                tool_call_id: Some(call.id.clone()),
                ..Message::text(Role::Tool, text)
            });
        }
        Ok(messages)
    }

    /// Loop detection: the same call (name and arguments) the `loop_repeat`th time is not
    /// run (the model gets its earlier result and is told); two more and the run trips.
    fn repeated(&mut self, name: &str, args: &str) -> Result<Option<Outcome>, RunFailure> {
        let repeat = self.bounds().loop_repeat;
        let fp = call_fingerprint(name, args);
        let seen = self.seen_calls.entry(fp).or_insert((0, Value::Null));
        seen.0 += 1;
        if seen.0 >= repeat + 2 {
            return Err(RunFailure::tripped(
                breaker::LOOP_TOOL_CALL,
                format!(
                    "the model called `{name}` with the same arguments {} times",
                    seen.0
                ),
            ));
        }
        if seen.0 >= repeat {
            let mut o = Outcome::err(
                tools::codes::REPEATED_CALL,
                format!(
                    "`{name}` was already called {} times with these arguments; its result will not change. Use it, or answer",
                    seen.0 - 1
                ),
            );
            o.output["error"]["earlier_result"] = seen.1.clone();
            return Ok(Some(o));
        }
        Ok(None)
    }

    async fn run_tool(&self, entry: &tools::Entry, args: Value) -> Outcome {
        let timeout = self.bounds().tool_timeout;
        match &entry.kind {
            Kind::Agent(other) => self.delegate(other, args).await,
            _ => {
                let env = tools::Env {
                    nodes: &self.inner.nodes,
                    fetcher: self.inner.fetcher.as_ref(),
                    key_ref: &self.ctx.who.key_ref,
                    timeout,
                };
                match tokio::time::timeout(timeout, entry.run(&env, args)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Outcome::err(
                        tools::codes::TOOL_TIMEOUT,
                        format!(
                            "`{}` gave no result within {} s",
                            entry.name,
                            timeout.as_secs()
                        ),
                    ),
                }
            }
        }
    }

    /// An agent used as a tool: a child run, its bounds capped by what this run has left,
    /// its events nested in this run's stream; its answer is the tool's result.
    async fn delegate(&self, other: &str, args: Value) -> Outcome {
        let agents = self.inner.agents.load();
        let Some(agent) = agents.get(other).cloned() else {
            return Outcome::err(tools::codes::UNKNOWN_TOOL, format!("no agent `{other}`"));
        };
        let input = args
            .get("input")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let refused = |e: crate::SchedulerError| {
            let b = e.body();
            Outcome::err(&b.code, b.message)
        };
        let admitted = match self.inner.breakers.admit(&agent.name) {
            Ok(a) => a,
            Err(e) => return refused(e),
        };
        let slot = match Slot::take(&self.inner, &agent) {
            Ok(s) => s,
            Err(e) => {
                self.inner.breakers.release(&agent.name, admitted);
                return refused(e);
            }
        };
        let id = uuid::Uuid::now_v7().to_string();
        let row = RunRow {
            parent_run_id: Some(self.ctx.id.clone()),
            root_run_id: self
                .ctx
                .ancestors
                .last()
                .map_or_else(|| self.ctx.id.clone(), |(root, _)| root.clone()),
            depth: self.ctx.depth + 1,
            ..crate::submit::new_row(
                &id,
                &self.ctx.who,
                &agent.name,
                Origin::Agent,
                Value::String(input.clone()),
                status::RUNNING,
            )
        };
        if let Err(e) = self.inner.service.store().insert_run(&row).await {
            self.inner.breakers.release(&agent.name, admitted);
            tracing::warn!(run = %self.ctx.id, "cannot store a child run: {e}");
            return Outcome::err(codes::INTERNAL, "the child run could not be stored");
        }
        let mut ancestors = vec![(self.ctx.id.clone(), self.live.log.clone())];
        ancestors.extend(self.ctx.ancestors.iter().cloned());
        let ctx = RunCtx {
            budget: self.ctx.budget.child(&id, caps(&agent)),
            deadline: self
                .ctx
                .deadline
                .min(Instant::now() + agent.bounds.deadline),
            id,
            who: self.ctx.who.clone(),
            agent,
            input: vec![Message::text(Role::User, input)],
            session_id: None,
            ancestors,
            depth: self.ctx.depth + 1,
            admitted,
            _slot: slot,
        };
        let live = register(&self.inner, &ctx, self.live.cancel.child_token());
        // A task of its own: if this run stops waiting (cancelled, past its deadline),
        // the child still ends properly (its own cancel is this run's child token) and
        // writes its end, rather than being dropped half-way.
        let child = self
            .inner
            .tasks
            .spawn(drive_child(self.inner.clone(), live, ctx));
        let ended = match child.await {
            Ok(ended) => ended,
            Err(e) => Err(RunFailure::failed(
                codes::INTERNAL,
                format!("the child run stopped unexpectedly: {e}"),
            )),
        };
        match ended {
            Ok(answer) => Outcome::ok(Value::String(answer)),
            Err(f) => {
                let mut o = Outcome::err(&f.error.code, f.error.message.clone());
                if let Some(b) = &f.breaker {
                    o.output["error"]["breaker"] = json!(b.name);
                }
                o
            }
        }
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
        // The agent's breaker hears of it before the client does: a resubmission on
        // seeing the end meets the breaker as it now is.
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

/// A tool call's identity: its name and its arguments (as JSON with sorted keys, so
/// the same arguments in another order are the same call).
fn call_fingerprint(name: &str, args: &str) -> [u8; 32] {
    let canonical =
        serde_json::from_str::<Value>(args).map_or_else(|_| args.to_owned(), |v| v.to_string());
    sha(&[name, &canonical])
}

/// A model request's identity: what is sent, but the output cap (which shrinks as the
/// budget is spent).
fn request_fingerprint(req: &ChatRequest) -> [u8; 32] {
    let body = serde_json::to_string(&(&req.model, &req.messages, &req.tools)).unwrap_or_default();
    sha(&[&body])
}

/// At start: runs the store says are in flight were run by a process that is gone. The
/// ledger is flushed first (it replayed its spill file at start), so what they spent is
/// read from it; each gets a final `run.failed` with code `interrupted`.
pub(crate) async fn recover(inner: &Arc<Inner>) -> Result<(), crate::SchedulerError> {
    let store = inner.service.store();
    if let Err(e) = inner.service.ledger().flush().await {
        tracing::warn!("ledger not flushed before interrupted runs were settled: {e}");
    }
    let err = |e: sluice_store::StoreError| crate::SchedulerError::Store(e.to_string());
    let ids = store.interrupt_runs(now_ms()).await.map_err(err)?;
    for id in &ids {
        let Some(row) = store.run(id).await.map_err(err)? else {
            continue;
        };
        let seq = store.run_last_event_seq(id).await.map_err(err)? + 1;
        let c = row.counters;
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        let failed = RunFailed {
            run_id: id.clone(),
            seq: u(seq),
            parent_run_id: row.parent_run_id.clone(),
            error: RunFailure::interrupted().error,
            breaker: None,
            usage: RunUsage {
                steps: u32::try_from(c.steps).unwrap_or(0),
                llm_calls: u(c.llm_calls),
                tool_calls: u(c.tool_calls),
                prompt_tokens: u(c.prompt_tokens),
                completion_tokens: u(c.completion_tokens),
                cost_usd: usd(u(c.cost_nanos)),
                total_cost_usd: usd(u(c.cost_nanos)),
            },
        };
        let event = RunEventRow {
            run_id: id.clone(),
            seq,
            event: events::FAILED.to_owned(),
            data: to_value(&failed),
            created_at_ms: now_ms(),
        };
        store.append_run_events(&[event]).await.map_err(err)?;
    }
    if !ids.is_empty() {
        tracing::warn!(
            runs = ids.len(),
            "runs in flight when the gateway last stopped were marked interrupted"
        );
    }
    Ok(())
}
