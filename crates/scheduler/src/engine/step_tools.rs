//! A step's tool calls: each announced (`run.tool_call`), checked for repeats (loop
//! detection, before anything else), its arguments checked, then run at once up to
//! `max_parallel_tools`, each under the tool timeout; an agent used as a tool is a child
//! run. Results go back to the model in the order it asked, cut to size.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use sluice_llm::{Message, Role, ToolCall};
use sluice_protocol::codes;
use sluice_protocol::runs::{RunToolCall, RunToolResult, events};
use sluice_store::runs::{RunRow, status};
use tokio::time::Instant;

use super::{RunCtx, Runner, ToolRun, drive_child, register, sha, to_value};
use crate::error::{RunFailure, breaker, ms};
use crate::submit::{Origin, Slot, caps};
use crate::tools::{self, Kind, Outcome, ToolSet};

impl Runner {
    /// Runs the step's tool calls (at once, up to `max_parallel_tools`) and returns their
    /// results as `tool` messages, in the order the model asked.
    pub(super) async fn run_tools(
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
            channel: self.ctx.channel.clone(),
            ancestors,
            depth: self.ctx.depth + 1,
            admitted,
            slot: Some(slot),
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
}

/// A tool call's identity: its name and its arguments (as JSON with sorted keys, so
/// the same arguments in another order are the same call).
fn call_fingerprint(name: &str, args: &str) -> [u8; 32] {
    let canonical =
        serde_json::from_str::<Value>(args).map_or_else(|_| args.to_owned(), |v| v.to_string());
    sha(&[name, &canonical])
}
