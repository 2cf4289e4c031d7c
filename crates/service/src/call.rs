//! The entry points: [`Service::chat`] and [`Service::embeddings`]. Each runs the same
//! steps once, in order: the pre-flight policy (the request's shape, the key's model
//! allowlist, its spend breaker, the output cap), admission (the estimate reserved in
//! every limit and budget that applies), the router's walk of the chain (abandoned if
//! the service is cut), and settlement (ledger rows for every provider call, the
//! reservation settled to the real use, the spend breaker told). A stream settles when
//! it ends, fails or is dropped ([`MeteredStream`]).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use sluice_config::Target;
use sluice_limits::run::RunBudget;
use sluice_limits::tokens::{prompt_tokens, text_tokens};
use sluice_llm::{ChatRequest, ChatResponse, EmbeddingsRequest};
use sluice_providers::{ChatReply, EmbeddingsReply, Routed};
use sluice_store::ledger::SpendRow;

use sluice_config::guard::OutputAction;

use crate::admission::Estimate;
use crate::cache::{CacheControl, CacheStatus, Hit, Lookup};
use crate::guard::{Flagged, has_system_prompt, place_canary};
use crate::keys::Principal;
use crate::metered::MeteredStream;
use crate::settlement::Spend;
use crate::{Headroom, Service, ServiceError};

/// What a call is for, beyond the key that makes it: what scopes its limits (agent, run)
/// and labels its ledger rows and log lines. One per call: not `Clone`, because its
/// request id keys the call's ledger rows, and a second call under the same id would
/// have its rows dropped as duplicates.
#[derive(Debug)]
pub struct CallMeta {
    /// The gateway's own id of the call ([`crate::ids::request_id`]): it keys the ledger's
    /// rows, so it must be fresh for every call.
    pub request_id: String,
    /// The agent the call is made for: its budgets apply and the ledger records it.
    pub agent: Option<String>,
    /// The run the call is a step of: its own limits apply and the ledger records it.
    pub run: Option<RunScope>,
    /// The session (a WebSocket session, a channel conversation) the call belongs to.
    pub session: Option<String>,
    /// The chat channel and platform user the call was made for: the user's own limits
    /// apply, and the ledger records both.
    pub channel: Option<Arc<ChannelUser>>,
    /// When the call arrived (before its body was read): its ledger rows' latency counts
    /// from here.
    pub started: Instant,
    /// What the caller asks of the response cache (`Cache-Control`).
    pub cache: CacheControl,
}

impl CallMeta {
    pub fn new(request_id: impl Into<String>) -> Self {
        CallMeta {
            request_id: request_id.into(),
            agent: None,
            run: None,
            session: None,
            channel: None,
            started: Instant::now(),
            cache: CacheControl::default(),
        }
    }

    /// A call with a fresh request id.
    pub fn fresh() -> Self {
        CallMeta::new(crate::ids::request_id())
    }

    /// Names the agent; refused unless it is a plain name (see [`is_plain_name`]). A key
    /// cannot escape its own (or its user's) limits by naming one: the agent's are added.
    pub fn with_agent(mut self, agent: &str) -> Result<Self, ServiceError> {
        if !is_plain_name(agent) {
            return Err(ServiceError::InvalidRequest(format!(
                "agent: {PLAIN_NAME_RULE}"
            )));
        }
        self.agent = Some(agent.to_owned());
        Ok(self)
    }

    pub fn with_run(mut self, run: RunScope) -> Self {
        self.run = Some(run);
        self
    }
}

/// A chat platform's user a call is made for (docs/channels.md): each user of a channel
/// has their own scope, `chan:{user}`, with the channel's `user_limits`, so one noisy
/// member of a workspace runs into their own budget and not the team's.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelUser {
    /// `slack`, `telegram:BOT`, `whatsapp`.
    pub channel: String,
    /// `slack:T…:U…`, `telegram:BOT:ID`, `whatsapp:WA_ID`: unique across channels.
    pub user: String,
    /// The scope's name, `chan:{user}`.
    pub scope: Arc<str>,
    pub limits: sluice_config::Limits,
}

impl ChannelUser {
    /// Refused unless both names are plain: they go into bucket names and ledger rows.
    pub fn new(
        channel: &str,
        user: &str,
        limits: sluice_config::Limits,
    ) -> Result<Self, ServiceError> {
        if !is_plain_name(channel) || !is_plain_name(user) {
            return Err(ServiceError::InvalidRequest(format!(
                "channel and platform user: {PLAIN_NAME_RULE}"
            )));
        }
        Ok(ChannelUser {
            channel: channel.to_owned(),
            user: user.to_owned(),
            scope: Arc::from(format!("chan:{user}")),
            limits,
        })
    }
}

/// What a plain name (agent, run, session) may be.
pub const PLAIN_NAME_RULE: &str = "1 to 128 characters of A-Z a-z 0-9 . _ : -";

/// Whether `s` is a plain name: it goes into bucket names, ledger rows and log lines.
pub fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// The run a call is a step of: its budget (tokens, cost, model calls; in memory, in a
/// tree for delegation: `sluice_limits::run`) is reserved before the call, with the
/// call's other limits, and settled with the same amounts its ledger row carries, so a
/// run's spend and its rows agree to the nano-dollar. Its id labels the rows.
#[derive(Debug, Clone)]
pub struct RunScope {
    id: String,
    pub budget: RunBudget,
}

impl RunScope {
    /// Refused unless the budget's run id is a plain name: it goes into ledger rows.
    pub fn new(budget: RunBudget) -> Result<Self, ServiceError> {
        let id = budget.id().to_string();
        if !is_plain_name(&id) {
            return Err(ServiceError::InvalidRequest(format!(
                "run id: {PLAIN_NAME_RULE}"
            )));
        }
        Ok(RunScope { id, budget })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A call's answer and who gave it.
#[derive(Debug)]
pub struct Answer<T> {
    pub value: T,
    /// The chain entry that answered.
    pub target: Target,
    /// Provider calls made, the answering one included.
    pub attempts: u32,
    /// Headroom left in the tightest per-minute limits, when a limit applied.
    pub headroom: Option<Headroom>,
    /// The prompt guard flagged the call (its policy's action is `flag`).
    pub flagged: Option<Flagged>,
    /// What the output filter redacted from a whole answer (kind ids).
    pub redacted: Vec<&'static str>,
    /// What the response cache did; `None` when the alias does not cache.
    pub cache: Option<CacheStatus>,
}

/// A chat answer: whole (already settled), or a stream that settles itself.
#[derive(Debug)]
pub enum Reply {
    Whole {
        response: Box<ChatResponse>,
        /// The provider's own bytes, when it spoke the OpenAI format.
        raw: Option<Bytes>,
    },
    Stream(MeteredStream),
}

impl Service {
    /// A chat completion.
    pub async fn chat(
        &self,
        who: &Arc<Principal>,
        meta: CallMeta,
        mut req: ChatRequest,
    ) -> Result<Answer<Reply>, ServiceError> {
        if req.messages.is_empty() {
            return Err(ServiceError::InvalidRequest(
                "`messages` must contain at least one message".into(),
            ));
        }
        let snapshot = self.snapshot();
        self.preflight(who, &req.model)?;
        // The guard, before anything is reserved: a refused prompt costs nothing and
        // leaves no ledger row.
        let guard = snapshot
            .guard
            .policy(&req.model, meta.agent.as_deref(), &who.key_name);
        let flagged = snapshot.guard.screen(&guard, &req, &meta.request_id)?;
        let canary = guard.canary != OutputAction::Off && has_system_prompt(&req);
        let output = snapshot
            .guard
            .output(&guard, canary.then_some(self.inner.canary.as_str()));
        // The reservation is for what the client asked for, or `output_reserve` when it
        // asked for nothing; the cap, sent upstream, is what bounds a stream's overshoot
        // of that reservation (docs/limits.md, "the bound").
        let asked = req.max_output_tokens();
        if let Some(cap) = snapshot.policy.max_output_tokens {
            match asked {
                Some(asked) if asked > cap => {
                    return Err(ServiceError::MaxTokensTooLarge { asked, cap });
                }
                Some(_) => {}
                None => req.max_tokens = Some(cap),
            }
        }
        // The cache, before anything is reserved: a hit spends nothing. Keyed on the
        // request with its output cap (a cap changed since is another request), before
        // the canary.
        let cache = snapshot.cache.policy(&req.model);
        let mut found = self.inner.cache.lookup(&cache, &meta, who, &req, true);
        if let Lookup::Wait { landed, wait } = found {
            // An identical request is on its way upstream: its answer, once stored, is
            // this one's (crate::flight). Waiting holds nothing; a stop ends it.
            let waited = self
                .until_cut(tokio::time::timeout(wait, crate::flight::landed(landed)))
                .await;
            if waited.is_none() {
                return Err(ServiceError::ShuttingDown);
            }
            found = self.inner.cache.lookup(&cache, &meta, who, &req, false);
            if matches!(found, Lookup::Hit(_)) {
                metrics::counter!("sluice_cache_coalesced_total").increment(1);
            }
        }
        let (cache, store) = match found {
            Lookup::Off => (None, None),
            Lookup::Hit(hit) => {
                return self.answer_cached(who, meta, &req, hit, output, flagged);
            }
            Lookup::Miss { status, store } => {
                metrics::counter!("sluice_cache_lookups_total", "result" => status.as_str())
                    .increment(1);
                (Some(status), store)
            }
            // Never after a wait (`follow` is false then); were it to come, a miss that
            // stores nothing.
            Lookup::Wait { .. } => {
                metrics::counter!("sluice_cache_lookups_total", "result" => "miss").increment(1);
                (Some(CacheStatus::Miss), None)
            }
        };
        if canary {
            place_canary(&mut req, &self.inner.canary);
        }
        let output_reserve = snapshot.policy.output_reserve;
        let req = Arc::new(req);
        let estimate = || Estimate {
            prompt: prompt_tokens(&req, &req.model).tokens,
            output: asked.map_or(output_reserve, u64::from),
        };
        let prompt = |target: &Target| prompt_tokens(&req, &target.model).tokens;
        let begun = Spend::begin(
            &self.inner,
            &snapshot,
            who,
            meta,
            &req.model,
            estimate,
            prompt,
        )
        .await?;
        let result = self
            .until_cut(snapshot.router.chat(&req, &begun.route, &begun.ctx))
            .await;
        let (spend, seq, routed, headroom) = begun.finish(result)?;
        let Routed {
            value,
            target,
            attempts,
        } = routed;
        let mut redacted = Vec::new();
        let value = match value {
            ChatReply::Complete {
                mut response,
                mut raw,
            } => {
                let request_id = output.as_ref().map(|_| spend.meta.request_id.clone());
                let settled = spend.answered(seq, &target, response.usage.as_ref(), "ok", || {
                    let text = response
                        .choices
                        .iter()
                        .map(|c| c.message.text_content())
                        .collect::<String>();
                    (
                        prompt_tokens(&req, &target.model).tokens,
                        text_tokens(&text, &target.model).tokens,
                    )
                });
                if let Some(output) = output {
                    redacted = output.whole(&mut response).inspect_err(|e| {
                        tracing::warn!(request_id = request_id.as_deref(), "answer blocked: {e}");
                    })?;
                    if !redacted.is_empty() {
                        // The provider's bytes are not what the client gets any more.
                        raw = None;
                    }
                }
                if let Some(store) = store {
                    store.put((*response).clone(), target.clone(), settled.cost_nanos);
                }
                Reply::Whole { response, raw }
            }
            ChatReply::Stream(stream) => Reply::Stream(
                MeteredStream::new(stream, spend, seq, target.clone(), req, output).storing(store),
            ),
        };
        Ok(Answer {
            value,
            target,
            attempts,
            headroom,
            flagged,
            redacted,
            cache,
        })
    }

    /// A call answered from the cache: nothing reserved or sent; a ledger row at zero
    /// cost that notes what the answer cost when it was made (the saving). The output
    /// filter of today's policy still applies.
    fn answer_cached(
        &self,
        who: &Arc<Principal>,
        meta: CallMeta,
        req: &ChatRequest,
        hit: Hit,
        output: Option<crate::guard::OutputGuard>,
        flagged: Option<Flagged>,
    ) -> Result<Answer<Reply>, ServiceError> {
        let Hit { entry, status } = hit;
        metrics::counter!("sluice_cache_lookups_total", "result" => status.as_str()).increment(1);
        let status_row = match status {
            CacheStatus::SemanticHit => "cache_semantic_hit",
            _ => "cache_hit",
        };
        // The row comes first, as on the provider path: a hit that today's output filter
        // blocks is still a call the ledger shows.
        self.inner.ledger.record(SpendRow {
            request_id: meta.request_id.clone(),
            call_seq: 0,
            key_id: Some(who.key_ref.to_string()),
            user_id: who.user_id.clone(),
            agent_id: meta.agent.clone(),
            run_id: meta.run.as_ref().map(|r| r.id().to_owned()),
            provider: "cache".into(),
            model: entry.target.to_string(),
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            cost_nanos: 0,
            saved_nanos: i64::try_from(entry.cost_nanos).unwrap_or(i64::MAX),
            estimated: false,
            status: status_row.into(),
            latency_ms: i64::try_from(meta.started.elapsed().as_millis()).unwrap_or(i64::MAX),
            created_at_ms: crate::ids::now_ms(),
            channel: meta.channel.as_ref().map(|c| c.channel.clone()),
            channel_user: meta.channel.as_ref().map(|c| c.user.clone()),
            session_id: meta.session.clone(),
        });
        let mut response = crate::cache::answer(&entry, &meta.request_id);
        let mut redacted = Vec::new();
        let value = if req.is_stream() {
            let include_usage = req
                .stream_options
                .as_ref()
                .and_then(|o| o.include_usage)
                .unwrap_or(false);
            Reply::Stream(MeteredStream::replay(
                crate::cache::replay(&response, include_usage),
                &self.inner.cut,
                output,
            ))
        } else {
            if let Some(output) = output {
                // Stored under a laxer policy, today's may block it.
                redacted = output.whole(&mut response)?;
            }
            Reply::Whole {
                response: Box::new(response),
                raw: None,
            }
        };
        Ok(Answer {
            value,
            target: entry.target.clone(),
            attempts: 0,
            headroom: None,
            flagged,
            redacted,
            cache: Some(status),
        })
    }

    /// An embeddings call (held to token budgets like a chat call).
    pub async fn embeddings(
        &self,
        who: &Arc<Principal>,
        meta: CallMeta,
        req: EmbeddingsRequest,
    ) -> Result<Answer<EmbeddingsReply>, ServiceError> {
        let empty = match &req.input {
            serde_json::Value::String(s) => s.is_empty(),
            serde_json::Value::Array(a) => a.is_empty(),
            _ => true,
        };
        if empty {
            return Err(ServiceError::InvalidRequest(
                "`input` must be a non-empty string or array".into(),
            ));
        }
        let snapshot = self.snapshot();
        self.preflight(who, &req.model)?;
        let estimate = || Estimate {
            prompt: input_tokens(&req, &req.model),
            output: 0,
        };
        let prompt = |target: &Target| input_tokens(&req, &target.model);
        let begun = Spend::begin(
            &self.inner,
            &snapshot,
            who,
            meta,
            &req.model,
            estimate,
            prompt,
        )
        .await?;
        let result = self
            .until_cut(snapshot.router.embeddings(&req, &begun.route, &begun.ctx))
            .await;
        let (spend, seq, routed, headroom) = begun.finish(result)?;
        let _ = spend.answered(
            seq,
            &routed.target,
            routed.value.response.usage.as_ref(),
            "ok",
            || (input_tokens(&req, &routed.target.model), 0),
        );
        Ok(Answer {
            value: routed.value,
            target: routed.target,
            attempts: routed.attempts,
            headroom,
            flagged: None,
            redacted: Vec::new(),
            cache: None,
        })
    }

    /// The checks every call meets before it may reserve anything.
    fn preflight(&self, who: &Principal, model: &str) -> Result<(), ServiceError> {
        if self.is_stopping() {
            return Err(ServiceError::ShuttingDown);
        }
        // A principal may be held for long (a WebSocket session, a run): its key is
        // checked again at every call, so a revocation stops it at once.
        self.inner.keys.recheck(who, crate::ids::now_ms())?;
        if !who.may_use(model) {
            return Err(ServiceError::ModelNotAllowed(model.to_owned()));
        }
        self.inner
            .spend_breaker
            .check(&who.key_ref, crate::ids::now_ms())
    }
}

/// The tokens of an embeddings input, as Sluice counts them for `model`: a string's text,
/// or the JSON of anything else (token arrays, several inputs).
fn input_tokens(req: &EmbeddingsRequest, model: &str) -> u64 {
    match &req.input {
        serde_json::Value::String(s) => text_tokens(s, model).tokens,
        other => text_tokens(&other.to_string(), model).tokens,
    }
}
