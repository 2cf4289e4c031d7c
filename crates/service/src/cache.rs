//! The response cache on the one call path (docs/cache.md). After the guard and before
//! admission, a chat call under an alias whose policy caches is looked up: first exactly
//! (the canonical request in its scope), then, under `semantic`, by a near-repeat of its
//! last user turn with everything else identical and the second check agreeing. A hit is
//! answered from memory (replayed as a stream when one was asked for), reserves nothing
//! and writes a ledger row at zero cost with the saving noted. A miss goes on, and only a
//! complete, successful answer is stored: never an error, a blocked or cut answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sluice_cache::{Cache, Context, Embedder, Hasher, Key, Limits, Model2Vec, Query};
use sluice_config::Target;
use sluice_config::cache::{CacheConfig, CacheMode, CachePolicy, CacheScope};
use sluice_llm::{
    ChatChunk, ChatRequest, ChatResponse, ChunkChoice, Content, Delta, FunctionDelta, Role,
    ToolCallDelta,
};

use crate::call::CallMeta;
use crate::flight::{Flight, Flights, Lead};
use crate::keys::Principal;

/// What the cache did for a call: `x-sluice-cache` and the WebSocket results say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    SemanticHit,
    Miss,
    /// The caller asked not to be served from the cache (`Cache-Control: no-cache`).
    Bypass,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::SemanticHit => "semantic-hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
        }
    }
}

/// What a caller asks of the cache for one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// Not served from the cache (`Cache-Control: no-cache`, `x-sluice-cache: bypass`).
    pub no_lookup: bool,
    /// Its answer not stored either (`Cache-Control: no-store`).
    pub no_store: bool,
}

/// A stored answer.
#[derive(Debug)]
pub(crate) struct Entry {
    /// As the client got it (after the output filter), choice by choice.
    pub response: ChatResponse,
    /// The chain entry that answered it.
    pub target: Target,
    /// What the call that produced it cost: what each hit saves.
    pub cost_nanos: u64,
    /// Under its alias's TTL (the index's own is the longest of all aliases').
    pub expires: Instant,
}

/// The process's cache: the index, and the embedder when the semantic cache can run.
pub struct ResponseCache {
    index: Cache<Entry>,
    /// Bumped by [`ResponseCache::clear`]: an answer whose lookup came before a purge is
    /// not stored after it.
    generation: AtomicU64,
    embedder: Option<Box<dyn Embedder>>,
    max_answer_bytes: usize,
    /// Cacheable misses on their way upstream, by key (identical requests wait for them).
    flights: Arc<Flights>,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("entries", &self.index.len())
            .field("semantic", &self.embedder.is_some())
            .finish_non_exhaustive()
    }
}

/// A hit: the answer, and how it was found.
pub(crate) struct Hit {
    pub entry: Arc<Entry>,
    pub status: CacheStatus,
}

/// A miss that may store its answer: where it goes.
#[derive(Debug)]
pub(crate) struct Store {
    cache: Arc<ResponseCache>,
    key: Key,
    context: Context,
    query: Option<Query>,
    ttl: Duration,
    /// The cache's generation at the lookup.
    generation: u64,
    /// Held while the answer is on its way: identical requests wait until it is dropped
    /// (with the store, once the answer is in the cache or the call is over).
    _lead: Option<Lead>,
}

/// What the lookup decided.
pub(crate) enum Lookup {
    /// The alias does not cache (or the cache is not built): no header.
    Off,
    Hit(Hit),
    /// Not found or not looked up; the answer is stored when it may be.
    Miss {
        status: CacheStatus,
        store: Option<Box<Store>>,
    },
    /// Not found, and an identical request is on its way upstream: wait (at most `wait`)
    /// until `landed`, then look up again.
    Wait {
        landed: tokio::sync::watch::Receiver<()>,
        wait: Duration,
    },
}

impl ResponseCache {
    /// The cache `cfg` sizes (empty until an alias caches: a reload may turn one on).
    /// The model is loaded when an alias asks for the semantic cache at start; when it
    /// cannot be, the semantic cache is off (those aliases get exact lookups) and the log
    /// says why. `model_dir` is relative to the working directory.
    pub fn build(cfg: &CacheConfig) -> Arc<ResponseCache> {
        let embedder: Option<Box<dyn Embedder>> = if cfg.any_semantic() {
            let dir = &cfg.model_dir;
            match Model2Vec::load(dir) {
                Ok(m) => {
                    tracing::info!(dir = %dir.display(), "semantic cache on");
                    Some(Box::new(m))
                }
                Err(e) => {
                    tracing::warn!(
                        "semantic cache off: {e} (scripts/fetch-model fetches the model); \
                         aliases with mode = \"semantic\" get exact lookups"
                    );
                    None
                }
            }
        } else {
            None
        };
        Arc::new(ResponseCache {
            index: Cache::new(Limits {
                max_entries: cfg.max_entries,
                max_bytes: cfg.max_bytes,
                // Each entry also carries its alias's own expiry; this bound is the
                // longest TTL at start (a reload that raises one is held to it).
                ttl: cfg.max_ttl(),
            }),
            embedder,
            max_answer_bytes: cfg.max_answer_bytes,
            generation: AtomicU64::new(0),
            flights: Arc::default(),
        })
    }

    /// Whether semantic lookups run.
    pub fn semantic(&self) -> bool {
        self.embedder.is_some()
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes the index counts (answers, texts and vectors).
    pub fn bytes(&self) -> usize {
        self.index.bytes()
    }

    /// Empties the cache; returns how many answers it held.
    pub fn clear(&self) -> usize {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let n = self.index.len();
        self.index.clear();
        metrics::gauge!("sluice_cache_entries").set(0.0);
        n
    }

    /// Identical cacheable requests on their way upstream now.
    pub fn in_flight(&self) -> usize {
        self.flights.len()
    }

    /// Looks `req` up under `policy` for `who`. `req` is the request as the client sent
    /// it (before the canary and the output cap are added). With `follow`, a miss whose
    /// identical request is already on its way upstream is [`Lookup::Wait`] (`crate::flight`).
    pub(crate) fn lookup(
        self: &Arc<Self>,
        policy: &CachePolicy,
        meta: &CallMeta,
        who: &Principal,
        req: &ChatRequest,
        follow: bool,
    ) -> Lookup {
        let control = meta.cache;
        // Log probabilities are not kept through a stored answer: such calls always go
        // upstream.
        if policy.mode == CacheMode::Off || asks_logprobs(req) {
            return Lookup::Off;
        }
        let generation = self.generation.load(Ordering::Acquire);
        let scope = scope_of(policy.scope, who, meta);
        let Some(mut canon) = canonical(req) else {
            return Lookup::Off;
        };
        let Ok(whole) = serde_json::to_vec(&canon) else {
            return Lookup::Off;
        };
        let key = scoped(Hasher::new("sluice/cache/exact/v1"), &scope)
            .part(&whole)
            .key();
        let now = Instant::now();
        if !control.no_lookup
            && let Some(entry) = self.index.get(&key, now).filter(|e| e.expires > now)
        {
            return Lookup::Hit(Hit {
                entry,
                status: CacheStatus::Hit,
            });
        }
        // Embedded only past an exact miss: an exact hit costs no model time.
        let wanted = policy.mode == CacheMode::Semantic && !(control.no_lookup && control.no_store);
        let turn = wanted.then(|| last_user_text(req)).flatten();
        let before_turn = turn
            .is_some()
            .then(|| without_last_turn(&mut canon))
            .flatten();
        let semantic = match (&self.embedder, turn, before_turn) {
            (Some(embedder), Some(text), Some(before)) => {
                let context = scoped(Hasher::new("sluice/cache/context/v1"), &scope)
                    .part(&before)
                    .context();
                Some((context, Query::new(embedder.as_ref(), text)))
            }
            // Exact entries still need a context: one of their own, never searched.
            _ => None,
        };
        if !control.no_lookup
            && let Some((context, query)) = &semantic
        {
            let found = self
                .index
                .search(context, query, policy.min_similarity, now)
                .filter(|h| h.value.expires > now);
            if let Some(h) = found {
                return Lookup::Hit(Hit {
                    entry: h.value,
                    status: CacheStatus::SemanticHit,
                });
            }
        }
        let status = if control.no_lookup {
            CacheStatus::Bypass
        } else {
            CacheStatus::Miss
        };
        // A call that will store its answer leads its key, or follows the one that does.
        // One that bypasses the lookup wants a fresh answer: it never follows.
        let coalesce = !control.no_store && !policy.coalesce.is_zero();
        let lead = match coalesce
            .then(|| {
                self.flights
                    .join(generation, key, follow && !control.no_lookup)
            })
            .flatten()
        {
            Some(Flight::Follow(landed)) => {
                return Lookup::Wait {
                    landed,
                    wait: policy.coalesce,
                };
            }
            Some(Flight::Lead(lead)) => Some(lead),
            None => None,
        };
        // `n > 1` answers are stored whole only (a stream's other choices are not kept).
        let store = (!control.no_store).then(|| {
            let (context, query) = match semantic {
                Some((c, q)) => (c, Some(q)),
                None => (Context(key.0), None),
            };
            Box::new(Store {
                cache: self.clone(),
                key,
                context,
                query,
                ttl: policy.ttl,
                generation,
                _lead: lead,
            })
        });
        Lookup::Miss { status, store }
    }
}

impl Store {
    /// The largest answer stored.
    pub(crate) fn max_answer_bytes(&self) -> usize {
        self.cache.max_answer_bytes
    }

    /// Stores a whole answer if it is complete: every choice finished for a reason that
    /// is an answer (`stop`, `length`, `tool_calls`), and it is within the size bound.
    pub(crate) fn put(self, response: ChatResponse, target: Target, cost_nanos: u64) {
        let complete = !response.choices.is_empty()
            && response.choices.iter().all(|c| {
                matches!(
                    c.finish_reason.as_deref(),
                    Some("stop" | "length" | "tool_calls" | "function_call")
                )
            });
        // An answer asked before a purge stays out of the cache after it.
        if !complete || self.generation != self.cache.generation.load(Ordering::Acquire) {
            return;
        }
        let bytes = serde_json::to_vec(&response).map_or(usize::MAX, |b| b.len());
        if bytes > self.cache.max_answer_bytes {
            return;
        }
        let now = Instant::now();
        let entry = Entry {
            response,
            target,
            cost_nanos,
            expires: now + self.ttl,
        };
        self.cache
            .index
            .insert(self.key, self.context, self.query, entry, bytes, now);
        metrics::gauge!("sluice_cache_entries").set(self.cache.index.len() as f64);
    }
}

/// The scope: part of every key, so one tenant never gets another's answer. A chat
/// channel's platform users share their channel's key; under `key` and `user` each of
/// them is a scope of their own. Its parts are hashed apart (length-prefixed), so no
/// name can pass for another.
#[derive(Debug, PartialEq, Eq)]
struct Scope {
    kind: &'static str,
    id: String,
    channel: Option<Arc<str>>,
}

fn scope_of(scope: CacheScope, who: &Principal, meta: &CallMeta) -> Scope {
    let channel = meta.channel.as_ref().map(|c| c.scope.clone());
    match (scope, &who.user_id) {
        (CacheScope::Global, _) => Scope {
            kind: "global",
            id: String::new(),
            channel: None,
        },
        (CacheScope::User, Some(user)) => Scope {
            kind: "user",
            id: user.clone(),
            channel,
        },
        (CacheScope::User | CacheScope::Key, _) => Scope {
            kind: "key",
            id: who.key_ref.to_string(),
            channel,
        },
    }
}

/// `h` with the scope's parts.
fn scoped(h: Hasher, scope: &Scope) -> Hasher {
    h.part(scope.kind.as_bytes())
        .part(scope.id.as_bytes())
        .part(scope.channel.as_deref().unwrap_or("").as_bytes())
}

/// Whether the call asks for log probabilities (not kept through a stored answer).
fn asks_logprobs(req: &ChatRequest) -> bool {
    req.rest
        .get("logprobs")
        .is_some_and(|v| v.as_bool() == Some(true))
        || req.rest.get("top_logprobs").is_some_and(|v| !v.is_null())
}

/// The request with everything that changes the answer, as JSON: the stream flag and
/// options (a stream and a whole answer are the same answer) and `user` (an end-user id
/// for the provider's abuse tracking) left out. Built once per lookup; the semantic
/// context is the same without its last message ([`without_last_turn`]).
fn canonical(req: &ChatRequest) -> Option<serde_json::Value> {
    let mut v = serde_json::to_value(req).ok()?;
    let o = v.as_object_mut()?;
    for field in ["stream", "stream_options", "user"] {
        o.remove(field);
    }
    Some(v)
}

/// The canonical request's bytes without its last message.
fn without_last_turn(canon: &mut serde_json::Value) -> Option<Vec<u8>> {
    canon.get_mut("messages")?.as_array_mut()?.pop()?;
    serde_json::to_vec(canon).ok()
}

/// The last message's text when it is a user turn: what the semantic cache embeds.
fn last_user_text(req: &ChatRequest) -> Option<String> {
    let last = req.messages.last()?;
    if last.role != Role::User {
        return None;
    }
    let text = match &last.content {
        Some(Content::Text(s)) => s.clone(),
        Some(Content::Parts(parts)) if parts.iter().all(|p| p.text.is_some()) => {
            last.text_content()
        }
        // Images and other parts: exact lookups only.
        _ => return None,
    };
    (!text.trim().is_empty()).then_some(text)
}

/// A cached answer as this call's answer: a fresh id and time, the cached choices and
/// usage (what the answer is; nothing was spent for it).
pub(crate) fn answer(entry: &Entry, request_id: &str) -> ChatResponse {
    let mut r = entry.response.clone();
    r.id = format!("chatcmpl-{request_id}");
    r.created = u64::try_from(crate::ids::now_ms() / 1000).unwrap_or(0);
    r
}

/// Bytes of text per replayed chunk, at most (cut at a character boundary).
const REPLAY_PIECE: usize = 64;

/// A whole answer as the chunks of a stream, as OpenAI streams it: a role chunk, the text
/// in pieces, each tool call opened with its id and name and then its arguments, the
/// finish reason, and the usage when the client asked for it.
pub(crate) fn replay(response: &ChatResponse, include_usage: bool) -> Vec<ChatChunk> {
    let chunk = |choices: Vec<ChunkChoice>| ChatChunk {
        id: response.id.clone(),
        object: "chat.completion.chunk".into(),
        created: response.created,
        model: response.model.clone(),
        choices,
        usage: None,
        system_fingerprint: response.system_fingerprint.clone(),
        rest: Default::default(),
    };
    let choice = |index: u32, delta: Delta, finish: Option<String>| ChunkChoice {
        index,
        delta,
        finish_reason: finish,
        logprobs: None,
        rest: Default::default(),
    };
    let mut out = Vec::new();
    for c in &response.choices {
        out.push(chunk(vec![choice(
            c.index,
            Delta {
                role: Some(Role::Assistant),
                content: Some(String::new()),
                ..Delta::default()
            },
            None,
        )]));
        if let Some(refusal) = &c.message.refusal {
            out.push(chunk(vec![choice(
                c.index,
                Delta {
                    refusal: Some(refusal.clone()),
                    ..Delta::default()
                },
                None,
            )]));
        }
        let text = c.message.text_content();
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let mut cut = rest.len().min(REPLAY_PIECE);
            while !rest.is_char_boundary(cut) {
                cut += 1;
            }
            let (piece, tail) = rest.split_at(cut);
            out.push(chunk(vec![choice(
                c.index,
                Delta {
                    content: Some(piece.to_owned()),
                    ..Delta::default()
                },
                None,
            )]));
            rest = tail;
        }
        for (i, call) in c.message.tool_calls.iter().flatten().enumerate() {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            out.push(chunk(vec![choice(
                c.index,
                Delta {
                    tool_calls: Some(vec![ToolCallDelta {
                        index,
                        id: Some(call.id.clone()),
                        kind: Some(call.kind.clone()),
                        function: Some(FunctionDelta {
                            name: Some(call.function.name.clone()),
                            arguments: Some(call.function.arguments.clone()),
                        }),
                    }]),
                    ..Delta::default()
                },
                None,
            )]));
        }
        out.push(chunk(vec![choice(
            c.index,
            Delta::default(),
            c.finish_reason.clone(),
        )]));
    }
    if include_usage && response.usage.is_some() {
        let mut last = chunk(Vec::new());
        last.usage = response.usage.clone();
        out.push(last);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::ChannelUser;

    fn meta(channel_user: Option<&str>) -> CallMeta {
        let mut m = CallMeta::fresh();
        m.channel = channel_user.map(|u| {
            Arc::new(ChannelUser::new("slack", u, sluice_config::Limits::default()).unwrap())
        });
        m
    }

    #[test]
    fn a_channel_s_users_are_scopes_of_their_own_unless_global() {
        let who = Principal::proxied_user("alice");
        let (a, b) = (meta(Some("slack:T1:U1")), meta(Some("slack:T1:U2")));
        for scope in [CacheScope::Key, CacheScope::User] {
            assert_ne!(scope_of(scope, &who, &a), scope_of(scope, &who, &b));
            assert_ne!(
                scope_of(scope, &who, &a),
                scope_of(scope, &who, &meta(None))
            );
        }
        assert_eq!(
            scope_of(CacheScope::Global, &who, &a),
            scope_of(CacheScope::Global, &who, &b)
        );
    }

    #[test]
    fn the_canonical_request_leaves_out_only_what_does_not_change_the_answer() {
        let req = |v: serde_json::Value| -> ChatRequest { serde_json::from_value(v).unwrap() };
        let base =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let mut streamed = base.clone();
        streamed["stream"] = true.into();
        streamed["stream_options"] = serde_json::json!({"include_usage": true});
        streamed["user"] = "u-1".into();
        let (a, b) = (req(base.clone()), req(streamed));
        assert_eq!(canonical(&a), canonical(&b));
        assert!(canonical(&a).is_some());
        // The context drops the last turn and nothing else.
        let mut two = base.clone();
        two["messages"] = serde_json::json!([{"role": "user", "content": "hi"}, {"role": "user", "content": "more"}]);
        let mut ctx = canonical(&req(two)).unwrap();
        assert_eq!(
            without_last_turn(&mut ctx),
            serde_json::to_vec(&canonical(&a).unwrap()).ok()
        );
        for (field, value) in [
            ("temperature", serde_json::json!(0.2)),
            ("seed", serde_json::json!(7)),
            (
                "response_format",
                serde_json::json!({"type": "json_object"}),
            ),
            ("model", serde_json::json!("m2")),
        ] {
            let mut changed = base.clone();
            changed[field] = value;
            assert_ne!(canonical(&a), canonical(&req(changed)), "{field}");
        }
    }

    fn exact_cache() -> (Arc<ResponseCache>, CachePolicy) {
        let cfg = CacheConfig {
            default: CachePolicy {
                mode: CacheMode::Exact,
                ..CachePolicy::default()
            },
            ..CacheConfig::default()
        };
        (ResponseCache::build(&cfg), cfg.default)
    }

    fn answer(text: &str) -> ChatResponse {
        serde_json::from_value(serde_json::json!({
            "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        }))
        .unwrap()
    }

    fn target() -> Target {
        Target {
            provider: "a".into(),
            model: "m".into(),
        }
    }

    fn hi() -> ChatRequest {
        serde_json::from_value(
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .unwrap()
    }

    #[test]
    fn an_answer_asked_before_a_purge_is_not_stored_after_it() {
        let (cache, policy) = exact_cache();
        let who = Principal::proxied_user("alice");
        let Lookup::Miss {
            store: Some(store), ..
        } = cache.lookup(&policy, &meta(None), &who, &hi(), false)
        else {
            panic!("a miss that stores");
        };
        assert_eq!(cache.clear(), 0);
        store.put(answer("old"), target(), 5);
        assert!(cache.is_empty(), "the purge came after the lookup");
        let Lookup::Miss {
            store: Some(store), ..
        } = cache.lookup(&policy, &meta(None), &who, &hi(), false)
        else {
            panic!("a miss that stores");
        };
        store.put(answer("new"), target(), 5);
        assert!(matches!(
            cache.lookup(&policy, &meta(None), &who, &hi(), false),
            Lookup::Hit(_)
        ));
    }

    #[test]
    fn calls_asking_for_logprobs_are_not_cached() {
        let (cache, policy) = exact_cache();
        let who = Principal::proxied_user("alice");
        let mut req = hi();
        req.rest.insert("logprobs".into(), true.into());
        assert!(matches!(
            cache.lookup(&policy, &meta(None), &who, &req, false),
            Lookup::Off
        ));
        let mut req = hi();
        req.rest.insert("top_logprobs".into(), 2.into());
        assert!(matches!(
            cache.lookup(&policy, &meta(None), &who, &req, false),
            Lookup::Off
        ));
    }

    #[test]
    fn a_replayed_refusal_is_a_refusal_and_usage_comes_only_when_stored() {
        let mut r = answer("");
        r.choices[0].message.content = None;
        r.choices[0].message.refusal = Some("I can't help with that.".into());
        let chunks = replay(&r, true);
        let refusal: String = chunks
            .iter()
            .filter_map(|c| c.choices.first().and_then(|ch| ch.delta.refusal.clone()))
            .collect();
        assert_eq!(refusal, "I can't help with that.");
        assert!(
            chunks.iter().all(|c| !c.choices.is_empty()),
            "no usage chunk without usage"
        );
    }

    #[test]
    fn no_name_passes_for_a_channel_user_s_scope() {
        let proxied = Principal::proxied_user("alice/chan:slack:T1:U1");
        let plain = Principal::proxied_user("alice");
        let channel = meta(Some("slack:T1:U1"));
        assert_ne!(
            scope_of(CacheScope::User, &proxied, &meta(None)),
            scope_of(CacheScope::User, &plain, &channel)
        );
    }
}
