//! The chain walk. Failover happens only here, and only before a reply is committed: a
//! whole response, or a stream that has produced its first substantive chunk.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;
use sluice_backoff::full_jitter;
use sluice_config::{ChainEntry, Config, ProviderConfig, RoutingConfig, Target, Wire};
use sluice_llm::{ChatRequest, EmbeddingsRequest, ResponseMeta};

use crate::auth::{AuthProfiles, KeyState, NoKey};
use crate::balance::{
    Group, GroupStatus, InFlight, TargetStats, TargetStatus, prefix_hash, strategy_name,
};
use crate::breaker::{Breaker, Permit, Verdict};
use crate::call::{CallContext, Exhaustion, FailedCall, RouteError, Routed};
use crate::failure::{Action, Failure, FailureClass};
use crate::stream::{ChunkStream, StreamError};
use crate::upstream::{FixedUrls, Http};
use crate::{ChatReply, EmbeddingsReply, mock};

/// The HTTP client for a provider could not be built (TLS backend trouble).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client for providers: {0}")]
pub struct BuildError(#[from] reqwest::Error);

/// A local auth-profile change of one provider's key.
#[derive(Debug, Clone)]
pub struct ProfileEvent {
    pub provider: String,
    pub change: crate::auth::ProfileChange,
}

struct Provider {
    cfg: ProviderConfig,
    http: reqwest::Client,
    urls: Option<FixedUrls>,
    profiles: AuthProfiles,
}

enum Op<'a> {
    Chat(&'a ChatRequest),
    Embeddings(&'a EmbeddingsRequest),
}

enum Reply {
    Chat(ChatReply),
    Embeddings(Box<EmbeddingsReply>),
}

const MAX_BREAKERS: usize = 10_000;

/// What a failed call counts as in a group target's latency average, at least.
const FAILURE_SAMPLE: Duration = Duration::from_secs(1);

/// A target to try, and the group (with its index there) when it is a group member.
type Planned<'r> = (&'r Target, Option<(&'r Arc<Group>, usize)>);

/// A model's chain: its entries as written (single targets and balanced groups), and all
/// its targets flattened in order. Resolved once per request ([`Router::route`]) and
/// handed to [`Router::chat`] / [`Router::embeddings`].
#[derive(Debug)]
pub struct Route {
    flat: Arc<[Target]>,
    entries: Vec<Entry>,
    /// Some group keeps prompt prefixes on one target.
    affinity: bool,
}

#[derive(Debug)]
enum Entry {
    Single(Target),
    Group(Arc<Group>),
}

impl Route {
    /// Every target of the chain in order, groups flattened (for pricing and limits).
    pub fn targets(&self) -> &[Target] {
        &self.flat
    }

    fn single(target: Target) -> Route {
        Route {
            flat: Arc::from([target.clone()]),
            entries: vec![Entry::Single(target)],
            affinity: false,
        }
    }
}

pub struct Router {
    providers: HashMap<String, Provider>,
    aliases: HashMap<String, Arc<Route>>,
    allow_direct: bool,
    routing: RoutingConfig,
    breakers: DashMap<Target, Arc<Breaker>>,
    profile_events: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<ProfileEvent>>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("providers", &self.providers.len())
            .finish()
    }
}

impl Router {
    pub fn new(cfg: &Config) -> Result<Router, BuildError> {
        let mut providers = HashMap::new();
        let (events_tx, events_rx) = tokio::sync::mpsc::channel(1024);
        for (id, p) in &cfg.providers {
            let http = reqwest::Client::builder()
                .connect_timeout(p.timeouts.connect)
                .pool_idle_timeout(Duration::from_secs(90))
                .tcp_nodelay(true)
                // A redirect could carry a provider key (x-api-key, api-key) to another host.
                .redirect(reqwest::redirect::Policy::none())
                .build()?;
            let mut profiles = AuthProfiles::new(&p.api_keys);
            let (provider, events) = (id.clone(), events_tx.clone());
            profiles.observe(Arc::new(move |change| {
                // Never waits: a full queue (the store is slow) drops the event; the state
                // itself is already in effect here.
                if events
                    .try_send(ProfileEvent {
                        provider: provider.clone(),
                        change,
                    })
                    .is_err()
                {
                    tracing::warn!("auth-profile change not persisted: queue full");
                }
            }));
            providers.insert(
                id.clone(),
                Provider {
                    cfg: p.clone(),
                    http,
                    urls: FixedUrls::for_provider(p),
                    profiles,
                },
            );
        }
        // One set of stats per target, shared by every group it is in.
        let mut stats: HashMap<Target, Arc<TargetStats>> = HashMap::new();
        let aliases = cfg
            .models
            .iter()
            .map(|(name, m)| {
                let entries: Vec<Entry> = m
                    .entries
                    .iter()
                    .map(|e| match e {
                        ChainEntry::Single(t) => Entry::Single(t.clone()),
                        ChainEntry::Group(spec) => {
                            let members = spec
                                .targets
                                .iter()
                                .map(|t| stats.entry(t.clone()).or_default().clone())
                                .collect();
                            Entry::Group(Arc::new(Group::new(spec, members)))
                        }
                    })
                    .collect();
                let affinity = entries
                    .iter()
                    .any(|e| matches!(e, Entry::Group(g) if g.affinity.is_some()));
                let route = Route {
                    flat: Arc::from(m.chain.clone()),
                    entries,
                    affinity,
                };
                (name.clone(), Arc::new(route))
            })
            .collect();
        Ok(Router {
            providers,
            aliases,
            allow_direct: cfg.server.allow_direct_models,
            routing: cfg.routing.clone(),
            breakers: DashMap::new(),
            profile_events: std::sync::Mutex::new(Some(events_rx)),
        })
    }

    /// The names a client may ask for: aliases, and each `provider:model` named in a
    /// chain when direct models are allowed.
    pub fn model_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.aliases.keys().cloned().collect();
        names.sort();
        if self.allow_direct {
            let mut direct: Vec<String> = self
                .aliases
                .values()
                .flat_map(|r| r.flat.iter().map(Target::to_string))
                .collect();
            direct.sort();
            direct.dedup();
            names.extend(direct);
        }
        names
    }

    /// The chain for a requested model name.
    /// The chain a client's model name stands for: an alias, or (when allowed) a
    /// `provider:model` of a configured provider.
    pub fn route(&self, model: &str) -> Result<Arc<Route>, RouteError> {
        if let Some(route) = self.aliases.get(model) {
            return Ok(route.clone());
        }
        if self.allow_direct
            && let Some((p, m)) = model.split_once(':')
            && !m.is_empty()
            && m.len() <= 256
            && !m.chars().any(|c| c.is_control() || c.is_whitespace())
            && self.providers.contains_key(p)
        {
            return Ok(Arc::new(Route::single(Target {
                provider: p.to_owned(),
                model: m.to_owned(),
            })));
        }
        Err(RouteError::UnknownModel(model.to_owned()))
    }

    /// Whether a target may get traffic now: its breaker is not open and one of its
    /// provider's keys is usable.
    fn healthy(&self, target: &Target, now: Instant) -> bool {
        self.providers
            .get(&target.provider)
            .is_some_and(|p| p.profiles.has_ready(now))
            && self.breaker(target).state(now) != crate::breaker::BreakerState::Open
    }

    /// Every balanced group with its targets' weight, in-flight calls, latency, headroom
    /// and breaker state, for the admin status view.
    pub fn groups(&self) -> Vec<GroupStatus> {
        let now = Instant::now();
        let mut out = Vec::new();
        for (model, route) in &self.aliases {
            for (entry, e) in route.entries.iter().enumerate() {
                let Entry::Group(g) = e else { continue };
                let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3);
                out.push(GroupStatus {
                    model: model.clone(),
                    entry,
                    strategy: strategy_name(g.strategy),
                    affinity: g.affinity.map(|_| "prefix"),
                    targets: g
                        .targets
                        .iter()
                        .zip(&g.stats)
                        .zip(&g.weights)
                        .map(|((t, s), w)| TargetStatus {
                            target: t.to_string(),
                            weight: *w,
                            in_flight: s.in_flight(),
                            ttft_ms: ms(s.ttft()),
                            total_ms: ms(s.total()),
                            headroom: s.headroom(),
                            breaker: self.breaker(t).state(now).as_str(),
                        })
                        .collect(),
                });
            }
        }
        out.sort_by(|a, b| (&a.model, a.entry).cmp(&(&b.model, b.entry)));
        out
    }

    pub async fn chat(
        &self,
        req: &ChatRequest,
        route: &Route,
        ctx: &CallContext,
    ) -> Result<Routed<ChatReply>, RouteError> {
        // Boxed once here, the walk's large state is not copied each time the caller's
        // future moves.
        let routed = Box::pin(self.walk_within_deadline(route, Op::Chat(req), ctx)).await?;
        match routed.value {
            Reply::Chat(value) => Ok(Routed {
                value,
                target: routed.target,
                attempts: routed.attempts,
            }),
            Reply::Embeddings(_) => unreachable!("a chat call answers with a chat reply"),
        }
    }

    pub async fn embeddings(
        &self,
        req: &EmbeddingsRequest,
        route: &Route,
        ctx: &CallContext,
    ) -> Result<Routed<EmbeddingsReply>, RouteError> {
        let routed = Box::pin(self.walk_within_deadline(route, Op::Embeddings(req), ctx)).await?;
        match routed.value {
            Reply::Embeddings(value) => Ok(Routed {
                value: *value,
                target: routed.target,
                attempts: routed.attempts,
            }),
            Reply::Chat(_) => unreachable!("an embeddings call answers with embeddings"),
        }
    }

    fn breaker(&self, target: &Target) -> Arc<Breaker> {
        if let Some(b) = self.breakers.get(target) {
            return b.clone();
        }
        // Direct model names come from clients: past this many entries, a new name gets a
        // breaker of its own that is not kept, so memory stays bounded.
        if self.breakers.len() >= MAX_BREAKERS {
            return Arc::new(Breaker::new(self.routing.breaker));
        }
        self.breakers
            .entry(target.clone())
            .or_insert_with(|| Arc::new(Breaker::new(self.routing.breaker)))
            .clone()
    }

    /// The chain entries whose breaker is not closed (this instance's view): `provider:model`
    /// and `open` or `half_open`, sorted.
    pub fn open_breakers(&self) -> Vec<(String, &'static str)> {
        let now = Instant::now();
        let mut out: Vec<(String, &'static str)> = self
            .breakers
            .iter()
            .filter_map(|e| {
                let state = e.value().state(now);
                (state != crate::breaker::BreakerState::Closed)
                    .then(|| (e.key().to_string(), state.as_str()))
            })
            .collect();
        out.sort();
        out
    }

    /// Closes the breaker of a chain entry named `provider:model` (this instance's: each
    /// instance watches its own traffic). `false` when it was not open.
    pub fn reset_breaker(&self, target: &str) -> bool {
        let now = Instant::now();
        let mut closed = false;
        for e in self.breakers.iter() {
            if e.key().to_string() == target
                && e.value().state(now) != crate::breaker::BreakerState::Closed
            {
                e.value().reset();
                closed = true;
            }
        }
        closed
    }

    /// The state of one entry's breaker, for status views and tests.
    pub fn breaker_state(&self, target: &Target) -> crate::breaker::BreakerState {
        self.breaker(target).state(Instant::now())
    }

    /// Key states of one provider, for status views and tests.
    pub fn key_states(
        &self,
        provider: &str,
    ) -> Vec<(String, crate::auth::KeyState, Duration, u32)> {
        self.providers
            .get(provider)
            .map_or_else(Vec::new, |p| p.profiles.snapshot(Instant::now()))
    }

    /// The stream of local auth-profile changes (a key cooled down, refused, reset), for
    /// persisting and sharing them. It can be taken once.
    pub fn take_profile_events(&self) -> Option<tokio::sync::mpsc::Receiver<ProfileEvent>> {
        self.profile_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Applies a key state decided elsewhere (another instance, or before a restart).
    pub fn apply_profile_state(
        &self,
        provider: &str,
        profile_id: &str,
        state: KeyState,
        retry_in: Duration,
    ) {
        if let Some(p) = self.providers.get(provider) {
            p.profiles
                .apply(profile_id, state, retry_in, Instant::now());
        }
    }

    /// Configured provider ids, sorted.
    pub fn provider_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.providers.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Puts every key of a provider back in rotation (an operator's reset). `false` for an
    /// unknown provider.
    pub fn reset_keys(&self, provider: &str) -> bool {
        self.providers
            .get(provider)
            .map(|p| p.profiles.reset())
            .is_some()
    }

    async fn walk_within_deadline(
        &self,
        route: &Route,
        op: Op<'_>,
        ctx: &CallContext,
    ) -> Result<Routed<Reply>, RouteError> {
        let limit = self.routing.request_timeout;
        match tokio::time::timeout(limit, self.walk(route, op, ctx)).await {
            Ok(result) => result,
            Err(_) => Err(RouteError::Exhausted {
                entries: route.flat.len(),
                last: Exhaustion::Failure(Failure::new(
                    FailureClass::Timeout,
                    format!("no answer within the request deadline of {limit:?}"),
                )),
            }),
        }
    }

    /// The targets to try, in order: single entries as they are, each group's targets as
    /// its strategy ranks them (healthy first), with the group and index for its stats.
    /// A group's ranking is made when the walk reaches the group, with its targets'
    /// health at that moment; a chain of single entries allocates nothing.
    fn plan<'a>(
        &'a self,
        route: &'a Route,
        prefix: Option<u64>,
        ctx: &'a CallContext,
    ) -> impl Iterator<Item = Planned<'a>> + Send + 'a {
        route.entries.iter().flat_map(move |entry| {
            let (single, group) = match entry {
                Entry::Single(t) => (Some((t, None)), None),
                Entry::Group(g) => {
                    let order = self.rank(g, prefix, ctx);
                    (
                        None,
                        Some(
                            order
                                .into_iter()
                                .map(move |i| (&g.targets[i], Some((g, i)))),
                        ),
                    )
                }
            };
            single.into_iter().chain(group.into_iter().flatten())
        })
    }

    /// A group's targets in the order to try them now.
    fn rank(&self, g: &Group, prefix: Option<u64>, ctx: &CallContext) -> Vec<usize> {
        let now = Instant::now();
        let healthy: Vec<bool> = g.targets.iter().map(|t| self.healthy(t, now)).collect();
        let prefix = prefix.filter(|_| g.affinity.is_some());
        let own: Option<Vec<f64>> = match (&ctx.admission, g.strategy) {
            (Some(a), sluice_config::Strategy::Headroom) => Some(
                g.targets
                    .iter()
                    .map(|t| a.headroom(t).unwrap_or(1.0))
                    .collect(),
            ),
            _ => None,
        };
        g.order(&healthy, prefix, own.as_deref())
    }

    async fn walk(
        &self,
        route: &Route,
        op: Op<'_>,
        ctx: &CallContext,
    ) -> Result<Routed<Reply>, RouteError> {
        let mut last = Exhaustion::NoKey(None);
        let mut attempts = 0u32;
        let prefix = match &op {
            Op::Chat(req) if route.affinity => Some(prefix_hash(req)),
            _ => None,
        };
        for (target, member) in self.plan(route, prefix, ctx) {
            let stats = member.map(|(g, i)| &g.stats[i]);
            let Some(provider) = self.providers.get(&target.provider) else {
                continue;
            };
            // Only an entry that will be called is charged against its upstream limit (an
            // open breaker or no usable key skips it below anyway).
            if let Some(admission) = &ctx.admission
                && self.healthy(target, Instant::now())
                && let Err(wait) = admission.admit(target).await
            {
                last = Exhaustion::OwnLimit(wait);
                tracing::debug!(%target, "upstream limit reached; skipping entry");
                continue;
            }
            let breaker = self.breaker(target);
            let mut retries = 0u32;
            let mut rotations = 0usize;
            let mut failed_here = false;
            loop {
                let now = Instant::now();
                let Some(permit) = breaker.try_acquire(now) else {
                    last = Exhaustion::BreakerOpen(breaker.retry_in(now).unwrap_or_default());
                    tracing::debug!(%target, "breaker open; skipping entry");
                    break;
                };
                let key = match provider.profiles.pick(now) {
                    Ok(key) => key,
                    Err(NoKey::CoolingDown(wait))
                        if wait <= self.routing.max_retry_after
                            && retries < provider.cfg.max_retries =>
                    {
                        drop(permit);
                        retries += 1;
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    // A key failure on this entry says more than "no key left".
                    Err(_) if failed_here => break,
                    Err(NoKey::CoolingDown(wait)) => {
                        last = Exhaustion::NoKey(Some(wait));
                        break;
                    }
                    Err(NoKey::AllDisabled) => {
                        last = Exhaustion::NoKey(None);
                        break;
                    }
                };
                attempts += 1;
                let started = Instant::now();
                let in_flight = stats.map(|s| s.start());
                ctx.set_in_flight(route.flat.iter().position(|t| t == target));
                let result = Box::pin(call(
                    provider,
                    &op,
                    &target.model,
                    key.secret().expose(),
                    ctx,
                    stats.map(|s| &**s),
                ))
                .await;
                ctx.set_in_flight(None);
                let now = Instant::now();
                if let Some(s) = stats {
                    let took = now.duration_since(started);
                    match &result {
                        Ok(_) => s.record_first_token(took),
                        // A timeout or a 5xx is no answer: a sample of at least a second, so
                        // a target failing fast does not look fast.
                        Err(f) if f.class.counts_against_breaker() => {
                            s.record_first_token(took.max(FAILURE_SAMPLE));
                        }
                        Err(_) => {}
                    }
                }
                let failure = match result {
                    Ok(value) => {
                        provider.profiles.succeeded(key);
                        if let Some((g, i)) = member {
                            g.answered(prefix.filter(|_| g.affinity.is_some()), i);
                        }
                        let value = match value {
                            Reply::Chat(ChatReply::Stream(inner)) => {
                                let permit = Some(permit);
                                Reply::Chat(ChatReply::Stream(Box::pin(Watched {
                                    inner,
                                    permit,
                                    _in_flight: in_flight,
                                })))
                            }
                            other => {
                                permit.record(Verdict::Success, now);
                                other
                            }
                        };
                        return Ok(Routed {
                            value,
                            target: target.clone(),
                            attempts,
                        });
                    }
                    Err(f) => f,
                };
                // Not in flight while backing off.
                drop(in_flight);
                let verdict = if failure.class.counts_against_breaker() {
                    Verdict::Failure
                } else {
                    Verdict::Neutral
                };
                permit.record(verdict, now);
                ctx.failed_calls
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(FailedCall {
                        target: target.clone(),
                        class: failure.class,
                        latency: now.duration_since(started),
                    });
                let mut failure = failure;
                match failure.class {
                    FailureClass::RateLimited => {
                        // The client's Retry-After, when this ends the chain, is the key's.
                        let wait = *failure
                            .retry_after
                            .get_or_insert(self.routing.rate_limit_cooldown);
                        provider.profiles.cool_down(key, now, wait);
                    }
                    FailureClass::Auth => provider.profiles.disable(key),
                    FailureClass::Billing => {
                        provider
                            .profiles
                            .billing(key, now, self.routing.billing_cooldown)
                    }
                    _ => {}
                }
                // The only place a failure's detail (transport errors naming the upstream
                // URL, bodies in no known format) is written: the log, with the request id.
                tracing::info!(
                    request_id = %ctx.request_id, %target, key = %key.id,
                    class = failure.class.as_str(), status = failure.status,
                    detail = %failure,
                    "provider call failed"
                );
                let action = failure.class.action();
                let retry_after = failure.retry_after;
                failed_here = true;
                last = Exhaustion::Failure(failure);
                match action {
                    Action::Fail => {
                        let Exhaustion::Failure(f) = last else {
                            unreachable!()
                        };
                        return Err(RouteError::Rejected(f));
                    }
                    Action::NextEntry => break,
                    // The next pick decides: another key at once, a wait for the first
                    // key back (within `max_retry_after`), or the next entry.
                    Action::RotateKey => {
                        rotations += 1;
                        if rotations > provider.profiles.len() + provider.cfg.max_retries as usize {
                            break;
                        }
                    }
                    Action::Retry => {
                        if retries >= provider.cfg.max_retries {
                            break;
                        }
                        let delay = match retry_after {
                            Some(d) if d > self.routing.max_retry_after => break,
                            Some(d) => d,
                            None => full_jitter(
                                self.routing.backoff_base,
                                self.routing.backoff_max,
                                retries,
                            ),
                        };
                        retries += 1;
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        }
        Err(RouteError::Exhausted {
            entries: route.flat.len(),
            last,
        })
    }
}

/// A committed stream carries its breaker permit to its end: a clean end is the entry's
/// success, a break (cut, idle, provider error) its failure, a client that goes away says
/// nothing. So a provider that opens streams and then drops them trips its breaker.
struct Watched {
    inner: ChunkStream,
    permit: Option<Permit>,
    /// A group member's stream counts as in flight until it ends.
    _in_flight: Option<InFlight>,
}

impl futures_util::Stream for Watched {
    type Item = <ChunkStream as futures_util::Stream>::Item;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let item = std::task::ready!(self.inner.as_mut().poll_next(cx));
        let verdict = match &item {
            None => Some(Verdict::Success),
            Some(Err(StreamError::Upstream(f))) if !f.class.counts_against_breaker() => {
                Some(Verdict::Neutral)
            }
            // A stream that ran past `stream_timeout_ms` kept answering: a long answer, not
            // an unhealthy provider.
            Some(Err(StreamError::TooLong(_))) => Some(Verdict::Neutral),
            Some(Err(_)) => Some(Verdict::Failure),
            Some(Ok(_)) => None,
        };
        if let Some(v) = verdict
            && let Some(permit) = self.permit.take()
        {
            permit.record(v, Instant::now());
        }
        std::task::Poll::Ready(item)
    }
}

async fn call(
    provider: &Provider,
    op: &Op<'_>,
    model: &str,
    key: &str,
    ctx: &CallContext,
    stats: Option<&TargetStats>,
) -> Result<Reply, Failure> {
    let cfg = &provider.cfg;
    let meta = || ResponseMeta {
        id: format!("chatcmpl-{}", ctx.request_id),
        created: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model: model.to_owned(),
    };
    if cfg.kind.wire() == Wire::Mock {
        return Ok(match op {
            Op::Chat(req) => Reply::Chat(mock::chat(req, meta(), cfg.mock).await),
            Op::Embeddings(req) => {
                Reply::Embeddings(Box::new(mock::embeddings(req, model, cfg.mock).await))
            }
        });
    }
    let http = Http {
        cfg,
        client: &provider.http,
        urls: &provider.urls,
        stats,
    };
    match op {
        Op::Chat(req) => http.chat(req, model, key, meta()).await.map(Reply::Chat),
        Op::Embeddings(req) => http
            .embeddings(req, model, key)
            .await
            .map(|r| Reply::Embeddings(Box::new(r))),
    }
}
