//! A streamed answer that settles itself. It yields the provider's chunks as they arrive
//! (the usage chunk only when the request asked for it: Sluice asks for usage upstream
//! whatever the client said), counts what it streamed, and settles exactly once: when the
//! stream ends (`ok`), breaks (the error's code) or is cut by the service's stop
//! (`shutting_down`), or when it is dropped unfinished (`client_closed`: a client that
//! disconnected, a run that was cancelled), whoever consumes it. Settling writes the
//! ledger row with the usage the stream reported (or Sluice's own count of it, marked
//! estimated), settles the reservation and tells the spend breaker.
//!
//! After an error item the stream is over: a broken answer never looks finished.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::{FutureExt, Stream, StreamExt};
use sluice_config::Target;
use sluice_limits::tokens::{prompt_tokens, tokens_from_bytes};
use sluice_llm::assemble::Assembler;
use sluice_llm::{ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Delta, Usage};
use sluice_providers::ChunkStream;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::ServiceError;
use crate::cache::Store;
use crate::guard::OutputGuard;
use crate::settlement::{Settled, Spend};

pub struct MeteredStream {
    inner: ChunkStream,
    include_usage: bool,
    /// Fires when the service is cut (its stop's grace period is over).
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    settle: Option<Box<Settle>>,
    usage: Option<Usage>,
    /// Bytes of text and tool-call arguments streamed, for an estimate when the
    /// provider reports no usage.
    streamed_bytes: u64,
    settled: Option<Settled>,
    /// The output filter (docs/guard.md), when the call's policy filters anything.
    output: Option<Box<OutputGuard>>,
    /// Where a complete answer goes in the response cache, and the answer so far.
    store: Option<Box<Storing>>,
    /// Ended, failed or settled: nothing more comes.
    over: bool,
    /// The answer's id, model and time, from its first chunk: for the chunk that carries
    /// what the output filter held back, and for the answer the cache stores.
    first: Option<Box<(String, String, u64)>>,
}

/// A stream on its way into the response cache.
struct Storing {
    store: Store,
    asm: Assembler,
    target: Target,
}

/// What settling needs, taken once.
struct Settle {
    spend: Spend,
    seq: usize,
    target: Target,
    req: Arc<ChatRequest>,
}

impl std::fmt::Debug for MeteredStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredStream")
            .field("settled", &self.settle.is_none())
            .field("streamed_bytes", &self.streamed_bytes)
            .finish()
    }
}

impl MeteredStream {
    pub(crate) fn new(
        inner: ChunkStream,
        spend: Spend,
        seq: usize,
        target: Target,
        req: Arc<ChatRequest>,
        output: Option<OutputGuard>,
    ) -> Self {
        let include_usage = req
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let cut = Box::pin(spend.inner.cut.clone().cancelled_owned());
        MeteredStream {
            inner,
            include_usage,
            cut,
            settle: Some(Box::new(Settle {
                spend,
                seq,
                target,
                req,
            })),
            usage: None,
            streamed_bytes: 0,
            settled: None,
            output: output.map(Box::new),
            store: None,
            over: false,
            first: None,
        }
    }

    /// A cached answer replayed as a stream (its chunks already carry the usage when the
    /// client asked for it): nothing to settle; today's output filter still applies, and
    /// the service's cut still ends it.
    pub(crate) fn replay(
        chunks: Vec<ChatChunk>,
        cut: &tokio_util::sync::CancellationToken,
        output: Option<OutputGuard>,
    ) -> Self {
        MeteredStream {
            inner: Box::pin(futures_util::stream::iter(chunks.into_iter().map(Ok))),
            include_usage: true,
            cut: Box::pin(cut.clone().cancelled_owned()),
            settle: None,
            usage: None,
            streamed_bytes: 0,
            settled: None,
            output: output.map(Box::new),
            store: None,
            over: false,
            first: None,
        }
    }

    /// Stores the answer in the response cache if the stream ends complete (a single
    /// choice: the assembler keeps choice 0 only).
    pub(crate) fn storing(mut self, store: Option<Box<Store>>) -> Self {
        let Some(settle) = &self.settle else {
            return self;
        };
        let single = settle
            .req
            .rest
            .get("n")
            .is_none_or(|n| n.is_null() || n.as_u64() == Some(1));
        if let Some(store) = store.filter(|_| single) {
            let asm = Assembler::with_limit(store.max_answer_bytes());
            self.store = Some(Box::new(Storing {
                store: *store,
                asm,
                target: settle.target.clone(),
            }));
        }
        self
    }

    /// A chunk as the client gets it, into the answer to store.
    fn keep(&mut self, chunk: &ChatChunk) {
        if let Some(s) = self.store.as_mut() {
            s.asm.push(chunk);
        }
    }

    /// At a clean end: the assembled answer into the cache, when it is complete.
    fn store_answer(&mut self) {
        let (Some(storing), Some(settled)) = (self.store.take(), self.settled) else {
            return;
        };
        let Storing { store, asm, target } = *storing;
        let done = asm.finish();
        let Some((id, model, created)) = self.first.take().filter(|_| !done.truncated).map(|b| *b)
        else {
            return;
        };
        let response = ChatResponse {
            id,
            object: "chat.completion".into(),
            created,
            model,
            choices: vec![Choice {
                index: 0,
                message: done.message,
                finish_reason: done.finish_reason,
                logprobs: None,
                rest: Default::default(),
            }],
            usage: self.usage.clone(),
            system_fingerprint: None,
            rest: Default::default(),
        };
        store.put(response, target, settled.cost_nanos);
    }

    /// What the output filter has redacted so far (kind ids).
    pub fn redacted(&self) -> Vec<&'static str> {
        self.output
            .as_ref()
            .map(|o| o.redacted())
            .unwrap_or_default()
    }

    /// Ends the stream with `err`, settled with its code.
    fn fail(&mut self, err: ServiceError) -> Poll<Option<Result<ChatChunk, ServiceError>>> {
        if let Some(s) = &self.settle {
            tracing::warn!(request_id = %s.spend.meta.request_id, code = err.code(), "stream ended: {err}");
        }
        self.finish(err.code());
        Poll::Ready(Some(Err(err)))
    }

    /// At the provider's end: a chunk with what the filter still holds, if anything.
    fn held_back(&mut self) -> Result<Option<ChatChunk>, ServiceError> {
        let Some(output) = self.output.as_mut() else {
            return Ok(None);
        };
        let held = output.flush()?;
        if held.is_empty() {
            return Ok(None);
        }
        let (id, model, created) = self.first.as_deref().cloned().unwrap_or_default();
        Ok(Some(ChatChunk {
            id,
            object: "chat.completion.chunk".into(),
            created,
            model,
            choices: held
                .into_iter()
                .map(|(index, text)| ChunkChoice {
                    index,
                    delta: Delta {
                        content: Some(text),
                        ..Delta::default()
                    },
                    finish_reason: None,
                    logprobs: None,
                    rest: Default::default(),
                })
                .collect(),
            usage: None,
            system_fingerprint: None,
            rest: Default::default(),
        }))
    }

    /// The request id of the call (for the transport's log lines).
    pub fn request_id(&self) -> Option<&str> {
        self.settle
            .as_ref()
            .map(|s| s.spend.meta.request_id.as_str())
    }

    /// Settles (once; later calls do nothing) with how the stream ended.
    fn finish(&mut self, status: &str) {
        self.over = true;
        // Only a clean end stores; any other lets identical requests waiting on this one
        // go on now (crate::flight), not when the transport drops the stream.
        if status != "ok" {
            self.store = None;
        }
        let Some(settle) = self.settle.take() else {
            return;
        };
        let Settle {
            spend,
            seq,
            target,
            req,
        } = *settle;
        let streamed = self.streamed_bytes;
        self.settled = Some(
            spend.answered(seq, &target, self.usage.as_ref(), status, || {
                (
                    prompt_tokens(&req, &target.model).tokens,
                    tokens_from_bytes(streamed),
                )
            }),
        );
    }

    /// What the call cost, once the stream has ended (its last item was read).
    pub fn settled(&self) -> Option<Settled> {
        self.settled
    }

    /// The usage the provider reported, if it did (whether or not the client asked to
    /// see it in the stream).
    pub fn usage(&self) -> Option<&Usage> {
        self.usage.as_ref()
    }

    fn is_over(&self) -> bool {
        self.over
    }
}

impl Stream for MeteredStream {
    type Item = Result<ChatChunk, ServiceError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.is_over() {
            return Poll::Ready(None);
        }
        if this.cut.poll_unpin(cx).is_ready() {
            if let Some(s) = &this.settle {
                tracing::warn!(request_id = %s.spend.meta.request_id, "stream cut: shutdown grace period over");
            }
            this.finish("shutting_down");
            return Poll::Ready(Some(Err(ServiceError::StreamCut)));
        }
        loop {
            match this.inner.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    let held = match this.held_back() {
                        Ok(held) => held,
                        Err(e) => return this.fail(e),
                    };
                    if let Some(h) = &held {
                        this.keep(h);
                    }
                    this.finish("ok");
                    this.store_answer();
                    return Poll::Ready(held.map(Ok));
                }
                Poll::Ready(Some(Ok(mut chunk))) => {
                    if let Some(u) = &chunk.usage {
                        this.usage = Some(u.clone());
                    }
                    this.streamed_bytes += streamed_bytes(&chunk);
                    if this.first.is_none() {
                        this.first = Some(Box::new((
                            chunk.id.clone(),
                            chunk.model.clone(),
                            chunk.created,
                        )));
                    }
                    if let Some(output) = this.output.as_mut()
                        && let Err(e) = output.chunk(&mut chunk)
                    {
                        return this.fail(e);
                    }
                    this.keep(&chunk);
                    if !this.include_usage {
                        // The usage chunk was asked for by Sluice, not by the client.
                        if chunk.choices.is_empty() && chunk.usage.is_some() {
                            continue;
                        }
                        chunk.usage = None;
                    }
                    return Poll::Ready(Some(Ok(chunk)));
                }
                Poll::Ready(Some(Err(e))) => {
                    let err = ServiceError::Stream(e);
                    let code = err.code();
                    // The client gets a stable code and our wording; the detail (which
                    // may name the upstream) goes to the log with the request id.
                    if let Some(s) = &this.settle {
                        tracing::warn!(request_id = %s.spend.meta.request_id, code, "stream broke after it was committed: {err}");
                    }
                    this.finish(code);
                    return Poll::Ready(Some(Err(err)));
                }
            }
        }
    }
}

impl Drop for MeteredStream {
    fn drop(&mut self) {
        self.finish("client_closed");
    }
}

/// Bytes of text and tool-call arguments in a chunk.
fn streamed_bytes(chunk: &ChatChunk) -> u64 {
    chunk
        .choices
        .iter()
        .map(|c| {
            let text = c.delta.content.as_ref().map_or(0, String::len);
            let args: usize = c
                .delta
                .tool_calls
                .iter()
                .flatten()
                .filter_map(|t| t.function.as_ref()?.arguments.as_ref().map(String::len))
                .sum();
            (text + args) as u64
        })
        .sum()
}
