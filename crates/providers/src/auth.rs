//! Auth profiles: the API keys of one provider, rotated round-robin, each with its own
//! cool-down (rate limit, billing) or disablement (refused credentials). Lock-free: the
//! request path reads and writes atomics only.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sluice_config::Secret;

/// Why a key is out of rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Ready,
    /// Rate limited; back at the given time.
    CoolingDown,
    /// Quota or billing refused; back after the billing cool-down.
    Billing,
    /// The provider refused the credentials; out until restart or an operator reset.
    Disabled,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Ready => "ready",
            KeyState::CoolingDown => "cooling_down",
            KeyState::Billing => "billing",
            KeyState::Disabled => "disabled",
        }
    }
}

const READY: u8 = 0;
const COOLING: u8 = 1;
const BILLING: u8 = 2;
const DISABLED: u8 = 3;

/// One API key and its state.
#[derive(Debug)]
pub struct Profile {
    /// A stable, non-secret id: `sha256:` and the first 12 hex digits of the key's hash.
    pub id: String,
    secret: Secret,
    reason: AtomicU8,
    /// Milliseconds since the set's epoch until which the key sits out.
    until_ms: AtomicU64,
    failures: AtomicU32,
}

impl Profile {
    pub fn secret(&self) -> &Secret {
        &self.secret
    }
}

pub struct AuthProfiles {
    epoch: Instant,
    profiles: Vec<Profile>,
    next: AtomicUsize,
    /// Told of every local state change (not of changes applied from elsewhere), so they
    /// can be persisted and shared with other instances.
    observer: Option<Observer>,
}

/// One key's new state, as an observer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileChange {
    pub profile_id: String,
    pub state: KeyState,
    /// How long until the key is back (zero for ready or disabled).
    pub retry_in: Duration,
    pub failures: u32,
}

pub type Observer = std::sync::Arc<dyn Fn(ProfileChange) + Send + Sync>;

impl std::fmt::Debug for AuthProfiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthProfiles")
            .field("profiles", &self.profiles)
            .finish_non_exhaustive()
    }
}

/// No key can be used right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoKey {
    /// All keys cool down; the first is back after this long.
    CoolingDown(Duration),
    /// Every key is disabled.
    AllDisabled,
}

impl AuthProfiles {
    /// Profiles for `keys`; a provider without keys gets one empty profile, so rotation
    /// logic is the same for local servers.
    pub fn new(keys: &[Secret]) -> Self {
        let keys: Vec<Secret> = if keys.is_empty() {
            vec![Secret::new(String::new())]
        } else {
            keys.to_vec()
        };
        let profiles = keys
            .into_iter()
            .map(|secret| Profile {
                id: key_id(secret.expose()),
                secret,
                reason: AtomicU8::new(READY),
                until_ms: AtomicU64::new(0),
                failures: AtomicU32::new(0),
            })
            .collect();
        AuthProfiles {
            epoch: Instant::now(),
            profiles,
            next: AtomicUsize::new(0),
            observer: None,
        }
    }

    /// Calls `observer` after every local state change.
    pub fn observe(&mut self, observer: Observer) {
        self.observer = Some(observer);
    }

    fn notify(&self, p: &Profile, now: Instant) {
        if let Some(observer) = &self.observer {
            let (state, retry_in) = self.state_of(p, self.ms(now));
            observer(ProfileChange {
                profile_id: p.id.clone(),
                state,
                retry_in,
                failures: p.failures.load(Ordering::Relaxed),
            });
        }
    }

    fn state_of(&self, p: &Profile, now_ms: u64) -> (KeyState, Duration) {
        let until = p.until_ms.load(Ordering::Acquire);
        let state = match p.reason.load(Ordering::Acquire) {
            DISABLED => KeyState::Disabled,
            _ if until <= now_ms => KeyState::Ready,
            BILLING => KeyState::Billing,
            COOLING => KeyState::CoolingDown,
            _ => KeyState::Ready,
        };
        let left = match state {
            KeyState::CoolingDown | KeyState::Billing => Duration::from_millis(until - now_ms),
            _ => Duration::ZERO,
        };
        (state, left)
    }

    /// Applies a state decided elsewhere (another instance, or this one before a
    /// restart), without telling the observer. `Ready` means an operator reset.
    pub fn apply(&self, profile_id: &str, state: KeyState, retry_in: Duration, now: Instant) {
        let Some(p) = self.profiles.iter().find(|p| p.id == profile_id) else {
            return;
        };
        match state {
            KeyState::Ready => {
                p.reason.store(READY, Ordering::Release);
                p.until_ms.store(0, Ordering::Release);
                p.failures.store(0, Ordering::Relaxed);
            }
            KeyState::Disabled => p.reason.store(DISABLED, Ordering::Release),
            KeyState::CoolingDown => self.sit_out_quietly(p, COOLING, later(now, retry_in)),
            KeyState::Billing => self.sit_out_quietly(p, BILLING, later(now, retry_in)),
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    pub fn len(&self) -> usize {
        self.profiles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }

    /// Whether some key is usable now (without taking it).
    pub fn has_ready(&self, now: Instant) -> bool {
        let now_ms = self.ms(now);
        self.profiles
            .iter()
            .any(|p| match p.reason.load(Ordering::Acquire) {
                READY => true,
                DISABLED => false,
                _ => p.until_ms.load(Ordering::Acquire) <= now_ms,
            })
    }

    /// The next usable key in round-robin order.
    pub fn pick(&self, now: Instant) -> Result<&Profile, NoKey> {
        let now_ms = self.ms(now);
        let n = self.profiles.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut soonest: Option<u64> = None;
        for i in 0..n {
            let p = &self.profiles[(start + i) % n];
            match p.reason.load(Ordering::Acquire) {
                READY => return Ok(p),
                DISABLED => {}
                _ => {
                    let until = p.until_ms.load(Ordering::Acquire);
                    if until <= now_ms {
                        return Ok(p);
                    }
                    soonest = Some(soonest.map_or(until, |s| s.min(until)));
                }
            }
        }
        match soonest {
            Some(until) => Err(NoKey::CoolingDown(Duration::from_millis(until - now_ms))),
            None => Err(NoKey::AllDisabled),
        }
    }

    /// The key answered. Only the failure count is cleared: a request that started before
    /// another one got this key cooled down or disabled must not put it back in rotation.
    /// An expired cool-down needs no clearing; [`AuthProfiles::pick`] already skips past it.
    pub fn succeeded(&self, p: &Profile) {
        if p.failures.load(Ordering::Relaxed) != 0 {
            p.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Rate limited: out until `now + for_`.
    pub fn cool_down(&self, p: &Profile, now: Instant, for_: Duration) {
        self.sit_out(p, COOLING, later(now, for_));
        self.notify(p, now);
    }

    /// Refused for billing or quota: out for the (long) billing cool-down.
    pub fn billing(&self, p: &Profile, now: Instant, for_: Duration) {
        self.sit_out(p, BILLING, later(now, for_));
        self.notify(p, now);
    }

    /// Refused credentials: out until [`AuthProfiles::reset`].
    pub fn disable(&self, p: &Profile) {
        p.failures.fetch_add(1, Ordering::Relaxed);
        p.reason.store(DISABLED, Ordering::Release);
        tracing::warn!(key = %p.id, "provider refused the API key; key disabled");
        self.notify(p, Instant::now());
    }

    fn sit_out(&self, p: &Profile, reason: u8, until: Instant) {
        p.failures.fetch_add(1, Ordering::Relaxed);
        self.sit_out_quietly(p, reason, until);
    }

    fn sit_out_quietly(&self, p: &Profile, reason: u8, until: Instant) {
        p.until_ms.fetch_max(self.ms(until), Ordering::AcqRel);
        // A disabled key stays disabled; billing outranks a plain cool-down.
        let _ = p
            .reason
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
                (r != DISABLED).then_some(r.max(reason))
            });
    }

    /// Puts every key back in rotation.
    pub fn reset(&self) {
        let now = Instant::now();
        for p in &self.profiles {
            p.reason.store(READY, Ordering::Release);
            p.until_ms.store(0, Ordering::Release);
            p.failures.store(0, Ordering::Relaxed);
            self.notify(p, now);
        }
    }

    /// A snapshot for status views: id, state, time left, failures.
    pub fn snapshot(&self, now: Instant) -> Vec<(String, KeyState, Duration, u32)> {
        let now_ms = self.ms(now);
        self.profiles
            .iter()
            .map(|p| {
                let (state, left) = self.state_of(p, now_ms);
                (
                    p.id.clone(),
                    state,
                    left,
                    p.failures.load(Ordering::Relaxed),
                )
            })
            .collect()
    }
}

impl KeyState {
    pub fn parse(s: &str) -> Option<KeyState> {
        Some(match s {
            "ready" => KeyState::Ready,
            "cooling_down" => KeyState::CoolingDown,
            "billing" => KeyState::Billing,
            "disabled" => KeyState::Disabled,
            _ => return None,
        })
    }
}

/// `now + d`, saturating far in the future instead of overflowing.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

fn key_id(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profiles(n: usize) -> AuthProfiles {
        let keys: Vec<Secret> = (0..n).map(|i| Secret::new(format!("key-{i}"))).collect();
        AuthProfiles::new(&keys)
    }

    #[test]
    fn rotates_round_robin() {
        let a = profiles(3);
        let now = Instant::now();
        let ids: Vec<String> = (0..6).map(|_| a.pick(now).unwrap().id.clone()).collect();
        assert_eq!(ids[0], ids[3]);
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[1], ids[2]);
    }

    #[test]
    fn cooling_and_disabled_keys_are_skipped_until_due() {
        let a = profiles(2);
        let now = Instant::now();
        let first = a.pick(now).unwrap();
        a.cool_down(first, now, Duration::from_secs(5));
        let second = a.pick(now).unwrap();
        assert_ne!(first.id, second.id);
        a.disable(second);
        assert_eq!(
            a.pick(now).unwrap_err(),
            NoKey::CoolingDown(Duration::from_secs(5))
        );
        let later = now + Duration::from_secs(5);
        assert_eq!(
            a.pick(later).unwrap().id,
            first.id,
            "the cooled key is back when due"
        );
        assert_eq!(
            a.pick(later).unwrap().id,
            first.id,
            "the disabled one never is"
        );
        a.disable(first);
        assert_eq!(a.pick(later).unwrap_err(), NoKey::AllDisabled);
        a.reset();
        assert!(a.pick(later).is_ok());
    }

    #[test]
    fn local_changes_are_observed_and_applied_ones_are_not() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut a = profiles(2);
        let sink = seen.clone();
        a.observe(std::sync::Arc::new(move |c| sink.lock().unwrap().push(c)));
        let now = Instant::now();
        let key = a.pick(now).unwrap();
        let id = key.id.clone();
        a.billing(key, now, Duration::from_secs(60));
        let changes = seen.lock().unwrap().clone();
        assert_eq!(changes.len(), 1);
        assert_eq!(
            (changes[0].state, changes[0].retry_in),
            (KeyState::Billing, Duration::from_secs(60))
        );

        let b = profiles(2);
        b.apply(&id, KeyState::Billing, Duration::from_secs(60), now);
        let states = b.snapshot(now);
        assert!(
            states.iter().any(|s| s.0 == id && s.1 == KeyState::Billing),
            "{states:?}"
        );
        b.apply(&id, KeyState::Ready, Duration::ZERO, now);
        assert!(
            b.snapshot(now).iter().all(|s| s.1 == KeyState::Ready),
            "ready = an operator reset"
        );
        a.apply(&id, KeyState::Disabled, Duration::ZERO, now);
        assert_eq!(
            seen.lock().unwrap().len(),
            1,
            "applied states are not observed again"
        );
        a.reset();
        assert_eq!(
            seen.lock().unwrap().len(),
            3,
            "a reset is a change of every key"
        );
    }

    #[test]
    fn a_late_success_does_not_revive_a_refused_key() {
        let a = profiles(1);
        let now = Instant::now();
        let key = a.pick(now).unwrap();
        a.disable(key);
        a.succeeded(key); // a request that started before the refusal comes back fine
        assert_eq!(a.pick(now).unwrap_err(), NoKey::AllDisabled);

        let b = profiles(1);
        let key = b.pick(now).unwrap();
        b.cool_down(key, now, Duration::from_secs(30));
        b.succeeded(key);
        assert!(b.pick(now).is_err(), "still cooling down");
        b.cool_down(key, now, Duration::MAX);
        assert!(
            b.pick(now + Duration::from_secs(3600)).is_err(),
            "a huge wait saturates"
        );
    }

    #[test]
    fn ids_are_stable_and_not_the_secret() {
        let a = profiles(1);
        let id = a.pick(Instant::now()).unwrap().id.clone();
        assert!(id.starts_with("sha256:") && !id.contains("key-0"));
        assert_eq!(id, profiles(1).pick(Instant::now()).unwrap().id);
    }
}
