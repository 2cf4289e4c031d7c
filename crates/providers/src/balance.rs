//! Balanced groups: a chain entry made of several equivalent targets (regions of one
//! Azure model, one open model on several hosts, projects with separate quotas). The
//! group's strategy orders its healthy targets for each request; the router tries them in
//! that order with the chain's error rules, and only then moves to the next entry.
//!
//! State is per instance and lock-free on the pick: in-flight counts, latency averages and
//! provider-reported headroom are atomics per target; round-robin is one counter; prefix
//! affinity is a sharded map. Nothing here waits on a lock shared by all requests.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use http::HeaderMap;
use serde::Serialize;
use sluice_config::{Affinity, GroupSpec, Strategy, Target};
use sluice_llm::{ChatRequest, Role};

/// A fraction of picks that try a random healthy target first under `latency`, so a
/// target that was slow and recovered is measured again.
const EXPLORE: f64 = 0.05;
/// Weight of a new sample in the latency averages.
const ALPHA: f64 = 0.3;
/// Targets within this factor of the fastest, plus [`LATENCY_SLACK_US`], count as equally
/// fast and share the traffic: measurement noise should not send everything to one.
const LATENCY_BAND: f64 = 1.25;
const LATENCY_SLACK_US: f64 = 2_000.0;
/// Provider-reported headroom older than this is assumed to have refilled.
const HEADROOM_TTL: Duration = Duration::from_secs(60);
/// Prefixes remembered per group for affinity; past this the map starts over.
const STICKY_CAP: usize = 100_000;

/// What the router knows about one target of a group.
#[derive(Debug)]
pub struct TargetStats {
    epoch: Instant,
    in_flight: AtomicU64,
    /// Exponentially weighted averages in microseconds (f64 bits); 0 = no sample yet.
    ttft_us: AtomicU64,
    total_us: AtomicU64,
    /// Provider-reported remaining / limit, in millionths; `u64::MAX` = not reported.
    headroom_ppm: AtomicU64,
    headroom_at_ms: AtomicU64,
    /// Largest remaining counts seen, standing in for a limit the provider does not send.
    max_remaining_requests: AtomicU64,
    max_remaining_tokens: AtomicU64,
}

impl Default for TargetStats {
    fn default() -> Self {
        TargetStats {
            epoch: Instant::now(),
            in_flight: AtomicU64::new(0),
            ttft_us: AtomicU64::new(0),
            total_us: AtomicU64::new(0),
            headroom_ppm: AtomicU64::new(u64::MAX),
            headroom_at_ms: AtomicU64::new(0),
            max_remaining_requests: AtomicU64::new(0),
            max_remaining_tokens: AtomicU64::new(0),
        }
    }
}

fn ewma(cell: &AtomicU64, sample: Duration) {
    let sample = sample.as_secs_f64() * 1e6;
    let _ = cell.fetch_update(Ordering::AcqRel, Ordering::Acquire, |bits| {
        let old = f64::from_bits(bits);
        let new = if bits == 0 {
            sample
        } else {
            old + ALPHA * (sample - old)
        };
        Some(new.max(1.0).to_bits())
    });
}

fn average(cell: &AtomicU64) -> Option<f64> {
    let bits = cell.load(Ordering::Acquire);
    (bits != 0).then(|| f64::from_bits(bits))
}

impl TargetStats {
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Counts a call in flight until the guard drops (a stream's at its end).
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight {
            stats: self.clone(),
            started: Instant::now(),
        }
    }

    /// Time to the first token (a whole answer's time when not streamed).
    pub fn record_first_token(&self, took: Duration) {
        ewma(&self.ttft_us, took);
    }

    pub fn ttft(&self) -> Option<Duration> {
        average(&self.ttft_us).map(|us| Duration::from_secs_f64(us / 1e6))
    }

    pub fn total(&self) -> Option<Duration> {
        average(&self.total_us).map(|us| Duration::from_secs_f64(us / 1e6))
    }

    /// Reads `x-ratelimit-remaining-requests` / `-tokens` (and their `limit`s when sent)
    /// from a provider's answer.
    pub fn observe_headers(&self, headers: &HeaderMap) {
        let num = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        let mut fraction: Option<f64> = None;
        for (remaining, limit, max_seen) in [
            (
                "x-ratelimit-remaining-requests",
                "x-ratelimit-limit-requests",
                &self.max_remaining_requests,
            ),
            (
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-limit-tokens",
                &self.max_remaining_tokens,
            ),
        ] {
            let Some(rem) = num(remaining) else { continue };
            let seen = max_seen.fetch_max(rem, Ordering::AcqRel).max(rem);
            let limit = num(limit).unwrap_or(seen).max(1);
            let f = (rem as f64 / limit as f64).clamp(0.0, 1.0);
            fraction = Some(fraction.map_or(f, |g| g.min(f)));
        }
        if let Some(f) = fraction {
            self.headroom_ppm.store((f * 1e6) as u64, Ordering::Release);
            self.headroom_at_ms.store(
                u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX),
                Ordering::Release,
            );
        }
    }

    /// The share of its limits the provider says is left (1.0 when not reported lately).
    pub fn headroom(&self) -> f64 {
        let ppm = self.headroom_ppm.load(Ordering::Acquire);
        let at = self.headroom_at_ms.load(Ordering::Acquire);
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        if ppm == u64::MAX || now.saturating_sub(at) > HEADROOM_TTL.as_millis() as u64 {
            1.0
        } else {
            ppm as f64 / 1e6
        }
    }
}

/// A call in flight on a target; dropping it ends the count and records the whole time.
#[derive(Debug)]
pub struct InFlight {
    stats: Arc<TargetStats>,
    started: Instant,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::AcqRel);
        ewma(&self.stats.total_us, self.started.elapsed());
    }
}

#[derive(Debug)]
pub struct Group {
    pub targets: Vec<Target>,
    pub weights: Vec<u32>,
    pub strategy: Strategy,
    pub affinity: Option<Affinity>,
    pub stats: Vec<Arc<TargetStats>>,
    rr: AtomicUsize,
    sticky: DashMap<u64, usize>,
}

impl Group {
    pub fn new(spec: &GroupSpec, stats: Vec<Arc<TargetStats>>) -> Self {
        Group {
            targets: spec.targets.clone(),
            weights: spec.weights.clone(),
            strategy: spec.strategy,
            affinity: spec.affinity,
            stats,
            rr: AtomicUsize::new(0),
            sticky: DashMap::new(),
        }
    }

    /// The order to try the targets in: the healthy ones as the strategy (and affinity)
    /// ranks them, then the others (which the router skips without calling while their
    /// breaker is open or their keys are out). `healthy[i]` is target i's health; `own[i]`,
    /// when given, the share of the gateway's own limit for target i still free.
    pub fn order(&self, healthy: &[bool], prefix: Option<u64>, own: Option<&[f64]>) -> Vec<usize> {
        let n = self.targets.len();
        let mut good: Vec<usize> = (0..n).filter(|i| healthy[*i]).collect();
        let rest = (0..n).filter(|i| !healthy[*i]);
        if good.len() > 1 {
            self.rank(&mut good, own);
        }
        if let Some(p) = prefix
            && let Some(i) = self.sticky.get(&p).map(|i| *i)
            && let Some(pos) = good.iter().position(|g| *g == i)
        {
            let i = good.remove(pos);
            good.insert(0, i);
        }
        good.extend(rest);
        good
    }

    fn rank(&self, good: &mut Vec<usize>, own: Option<&[f64]>) {
        let n = good.len();
        // A rotating start spreads ties (equal load, no samples yet) evenly.
        let start = self.rr.fetch_add(1, Ordering::Relaxed) % n;
        good.rotate_left(start);
        match self.strategy {
            Strategy::RoundRobin => {}
            Strategy::Weighted => {
                // Weighted sampling without replacement (Efraimidis–Spirakis keys).
                let mut keyed: Vec<(f64, usize)> = good
                    .iter()
                    .map(|&i| {
                        let w = f64::from(self.weights.get(i).copied().unwrap_or(1));
                        let key = if w > 0.0 {
                            fastrand::f64().powf(1.0 / w)
                        } else {
                            -1.0
                        };
                        (key, i)
                    })
                    .collect();
                keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
                *good = keyed.into_iter().map(|(_, i)| i).collect();
            }
            Strategy::LeastBusy => good.sort_by_key(|&i| self.stats[i].in_flight()),
            Strategy::Latency => {
                // Time to first token, plus a quarter of the whole call's time (a target
                // that streams slowly is worse too). Unmeasured targets score 0, so they
                // get measured first.
                let score = |i: usize| {
                    let s = &self.stats[i];
                    average(&s.ttft_us).unwrap_or(0.0) + average(&s.total_us).unwrap_or(0.0) / 4.0
                };
                let best = good.iter().map(|&i| score(i)).fold(f64::INFINITY, f64::min);
                let band = best * LATENCY_BAND + LATENCY_SLACK_US;
                // The equally fast keep their rotated order (sharing the traffic); the
                // slower follow, fastest first.
                good.sort_by(|&a, &b| {
                    let key = |i: usize| {
                        let s = score(i);
                        if s <= band { 0.0 } else { s }
                    };
                    key(a).total_cmp(&key(b))
                });
                if fastrand::f64() < EXPLORE {
                    let pick = fastrand::usize(..n);
                    let i = good.remove(pick);
                    good.insert(0, i);
                }
            }
            Strategy::Headroom => {
                // The tighter of what the provider reports and the gateway's own limit.
                let room = |i: usize| {
                    let own = own.and_then(|o| o.get(i)).copied().unwrap_or(1.0);
                    self.stats[i].headroom().min(own)
                };
                good.sort_by(|&a, &b| room(b).total_cmp(&room(a)));
            }
        }
    }

    /// Remembers which target answered a prefix (a failover moves it, and it stays).
    pub fn answered(&self, prefix: Option<u64>, index: usize) {
        let Some(p) = prefix else { return };
        if self.sticky.get(&p).is_some_and(|i| *i == index) {
            return;
        }
        if self.sticky.len() >= STICKY_CAP {
            self.sticky.clear();
        }
        self.sticky.insert(p, index);
    }
}

/// The hash of a conversation's prefix: its system (and developer) messages and the first
/// other message. It stays the same turn after turn of one conversation, and is what a
/// provider's prompt cache keys on.
pub fn prefix_hash(req: &ChatRequest) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    for m in &req.messages {
        let system = matches!(m.role, Role::System | Role::Developer);
        std::mem::discriminant(&m.role).hash(&mut h);
        m.text_content().hash(&mut h);
        if !system {
            break;
        }
    }
    h.finish()
}

/// One target of a group as the status view shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    pub target: String,
    pub weight: u32,
    pub in_flight: u64,
    pub ttft_ms: Option<f64>,
    pub total_ms: Option<f64>,
    pub headroom: f64,
    pub breaker: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupStatus {
    pub model: String,
    /// The group's place in the model's chain.
    pub entry: usize,
    pub strategy: &'static str,
    pub affinity: Option<&'static str>,
    pub targets: Vec<TargetStatus>,
}

pub fn strategy_name(s: Strategy) -> &'static str {
    match s {
        Strategy::Weighted => "weighted",
        Strategy::RoundRobin => "round_robin",
        Strategy::LeastBusy => "least_busy",
        Strategy::Latency => "latency",
        Strategy::Headroom => "headroom",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(strategy: Strategy, weights: Vec<u32>) -> Group {
        let n = weights.len();
        let spec = GroupSpec {
            targets: (0..n)
                .map(|i| Target {
                    provider: format!("p{i}"),
                    model: "m".into(),
                })
                .collect(),
            weights,
            strategy,
            affinity: None,
        };
        Group::new(&spec, (0..n).map(|_| Arc::default()).collect())
    }

    #[test]
    fn weights_shape_the_first_pick() {
        let g = group(Strategy::Weighted, vec![1, 2, 3]);
        let mut first = [0u32; 3];
        for _ in 0..60_000 {
            first[g.order(&[true; 3], None, None)[0]] += 1;
        }
        for (i, want) in [1.0, 2.0, 3.0].iter().enumerate() {
            let share = f64::from(first[i]) / 60_000.0;
            assert!((share - want / 6.0).abs() < 0.01, "target {i}: {share}");
        }
    }

    #[test]
    fn unhealthy_targets_come_last_and_round_robin_rotates() {
        let g = group(Strategy::RoundRobin, vec![1, 1, 1]);
        let firsts: Vec<usize> = (0..6)
            .map(|_| g.order(&[true, false, true], None, None)[0])
            .collect();
        assert!(firsts.iter().all(|i| *i != 1));
        assert!(firsts.contains(&0) && firsts.contains(&2));
        assert_eq!(g.order(&[true, false, true], None, None)[2], 1);
    }

    #[test]
    fn least_busy_and_headroom_and_latency_rank_by_their_measure() {
        let g = group(Strategy::LeastBusy, vec![1, 1]);
        let _busy = [g.stats[0].start(), g.stats[0].start()];
        assert_eq!(g.order(&[true, true], None, None)[0], 1);

        let g = group(Strategy::Headroom, vec![1, 1]);
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining-tokens", "10".parse().unwrap());
        h.insert("x-ratelimit-limit-tokens", "10000".parse().unwrap());
        g.stats[1].observe_headers(&h);
        assert!((g.stats[1].headroom() - 0.001).abs() < 1e-9);
        for _ in 0..10 {
            assert_eq!(g.order(&[true, true], None, None)[0], 0);
        }

        let g = group(Strategy::Latency, vec![1, 1]);
        g.stats[0].record_first_token(Duration::from_millis(250));
        g.stats[1].record_first_token(Duration::from_millis(50));
        let fast = (0..1000)
            .filter(|_| g.order(&[true, true], None, None)[0] == 1)
            .count();
        assert!(
            fast > 900 && fast < 1000,
            "mostly the fast one, some exploring: {fast}"
        );
    }

    #[test]
    fn a_prefix_sticks_to_its_target_and_moves_with_a_failover() {
        let g = group(Strategy::RoundRobin, vec![1, 1, 1]);
        g.answered(Some(7), 2);
        for _ in 0..10 {
            assert_eq!(g.order(&[true; 3], Some(7), None)[0], 2);
        }
        // Target 2 is down: the prefix goes elsewhere, and stays where it answered.
        let moved = g.order(&[true, true, false], Some(7), None)[0];
        g.answered(Some(7), moved);
        for _ in 0..10 {
            assert_eq!(g.order(&[true; 3], Some(7), None)[0], moved);
        }
    }

    #[test]
    fn prefixes_are_the_same_across_turns_of_one_conversation() {
        let turn = |n: usize| {
            let mut msgs = vec![
                serde_json::json!({"role": "system", "content": "You are terse."}),
                serde_json::json!({"role": "user", "content": "first question"}),
            ];
            for i in 0..n {
                msgs.push(serde_json::json!({"role": "assistant", "content": format!("a{i}")}));
                msgs.push(serde_json::json!({"role": "user", "content": format!("q{i}")}));
            }
            serde_json::from_value::<ChatRequest>(
                serde_json::json!({"model": "m", "messages": msgs}),
            )
            .unwrap()
        };
        assert_eq!(prefix_hash(&turn(0)), prefix_hash(&turn(5)));
        let other: ChatRequest = serde_json::from_value(serde_json::json!({"model": "m", "messages": [
            {"role": "system", "content": "You are terse."}, {"role": "user", "content": "another"}]}))
        .unwrap();
        assert_ne!(prefix_hash(&turn(0)), prefix_hash(&other));
    }
}
