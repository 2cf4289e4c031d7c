//! Gateway keys: who is calling. A transport hands over the token its client presented
//! (an HTTP `Authorization: Bearer` header, a WebSocket `connect` frame's token) and gets
//! back a [`Principal`]. Tokens are checked against:
//! - the bootstrap `[[keys]]` of the config, held as SHA-256 digests and compared in
//!   constant time against every one of them;
//! - the keys in the store (`sluice keys create`, the admin API), held in memory as a map
//!   from SHA-256 digest to key, swapped atomically by a refresh task. Looking a digest up
//!   reveals nothing usable about a secret (finding a key from its digest is a preimage
//!   attack), and no request waits on the database.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use sluice_config::{GatewayKey, Limits};
use sluice_store::Store;
use sluice_store::keys::ApiKey;
use subtle::ConstantTimeEq;

use crate::ServiceError;

type Digest32 = [u8; 32];

#[derive(Debug)]
pub struct KeyRing {
    bootstrap: Vec<(Digest32, Arc<Principal>)>,
    stored: ArcSwap<HashMap<Digest32, Arc<StoredKey>>>,
    /// The same keys by id, for re-checking a principal held for long (a WebSocket
    /// session, a run): a key revoked or expired since stops it at its next call.
    by_id: ArcSwap<HashMap<String, Arc<StoredKey>>>,
    /// The largest `updated_at_ms` seen, where the next refresh starts (with an overlap).
    seen_ms: AtomicI64,
}

/// Who a call is made by: the key it authenticated with, for the policy, the limits and
/// the ledger.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_name: String,
    /// The stored key's id; `None` for a bootstrap key from the config.
    pub key_id: Option<String>,
    /// The key as the ledger, the limits and the spend breaker know it: the stored key's
    /// id, or `config:NAME` for a bootstrap key.
    pub key_ref: Arc<str>,
    /// `key:` + `key_ref`: the key's limits' scope, named once rather than per request.
    pub key_scope: Arc<str>,
    pub user_id: Option<String>,
    /// Models the key may ask for; `None`: all.
    pub allowed_models: Option<Arc<[String]>>,
    /// The key's own rate limits and budgets.
    pub limits: Limits,
}

impl Principal {
    /// A user vouched for by a trusted identity-aware proxy (`[server] auth =
    /// "trusted_proxy"`): no gateway key, so no key limits; the user's limits apply, and
    /// the ledger, the limits and the spend breaker know the caller as `proxy:USER`.
    pub fn proxied_user(user: &str) -> Principal {
        let key_ref: Arc<str> = Arc::from(format!("proxy:{user}"));
        Principal {
            key_name: format!("proxy:{user}"),
            key_id: None,
            key_scope: Arc::from(format!("key:{key_ref}")),
            key_ref,
            user_id: Some(user.to_owned()),
            allowed_models: None,
            limits: Limits::default(),
        }
    }

    pub fn may_use(&self, model: &str) -> bool {
        self.allowed_models
            .as_ref()
            .is_none_or(|m| m.iter().any(|a| a == model))
    }
}

/// A stored key with the [`Principal`] it authenticates, built once when loaded rather than
/// on every request.
#[derive(Debug)]
struct StoredKey {
    key: ApiKey,
    caller: Arc<Principal>,
}

impl StoredKey {
    fn new(key: ApiKey) -> Self {
        let l = &key.limits;
        let u = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
        let caller = Principal {
            key_name: key.name.clone(),
            key_id: Some(key.id.clone()),
            key_ref: Arc::from(key.id.as_str()),
            key_scope: Arc::from(format!("key:{}", key.id)),
            user_id: key.user_id.clone(),
            allowed_models: key.allowed_models.as_ref().map(|m| Arc::from(m.as_slice())),
            limits: Limits {
                rpm: u(l.rpm),
                tpm: u(l.tpm),
                usd_day_nanos: u(l.budget_usd_day_nanos),
                usd_month_nanos: u(l.budget_usd_month_nanos),
                usd_total_nanos: u(l.budget_usd_total_nanos),
                tokens_day: u(l.budget_tokens_day),
                tokens_month: u(l.budget_tokens_month),
                tokens_total: None,
            },
        };
        StoredKey {
            key,
            caller: Arc::new(caller),
        }
    }
}

/// Re-fetch this much before the newest change seen, so that rows written by another
/// instance whose clock lags a little are not missed.
const REFRESH_OVERLAP_MS: i64 = 5_000;

impl KeyRing {
    pub fn new(keys: &[GatewayKey]) -> Self {
        KeyRing {
            bootstrap: keys
                .iter()
                .map(|k| {
                    let caller = Principal {
                        key_name: k.name.clone(),
                        key_id: None,
                        key_ref: Arc::from(format!("config:{}", k.name)),
                        key_scope: Arc::from(format!("key:config:{}", k.name)),
                        user_id: k.user.clone(),
                        allowed_models: None,
                        limits: k.limits,
                    };
                    (digest(k.key.expose()), Arc::new(caller))
                })
                .collect(),
            stored: ArcSwap::from_pointee(HashMap::new()),
            by_id: ArcSwap::from_pointee(HashMap::new()),
            seen_ms: AtomicI64::new(i64::MIN),
        }
    }

    /// The principal a presented token authenticates, or why not.
    /// Shared, not copied: a request holds the principal for its whole life at the cost
    /// of a reference count.
    pub fn check(&self, presented: &str, now_ms: i64) -> Result<Arc<Principal>, ServiceError> {
        let d = digest(presented);
        let mut found: Option<&Arc<Principal>> = None;
        for (k, caller) in &self.bootstrap {
            if bool::from(k.ct_eq(&d)) {
                found = Some(caller);
            }
        }
        if let Some(caller) = found {
            return Ok(caller.clone());
        }
        let stored = self.stored.load();
        let Some(stored) = stored.get(&d) else {
            return Err(ServiceError::InvalidApiKey);
        };
        if stored.key.revoked_at_ms.is_some() {
            return Err(ServiceError::KeyRevoked);
        }
        if stored.key.expires_at_ms.is_some_and(|e| e <= now_ms) {
            return Err(ServiceError::KeyExpired);
        }
        Ok(stored.caller.clone())
    }

    /// The principal of a `[[keys]]` entry of the config, by its name: what a schedule's
    /// runs are made as (`run_as`), so that key's limits and budgets apply to them. Keys
    /// made in the store are not looked up: a schedule names a key the config holds.
    pub fn principal_by_name(&self, name: &str) -> Option<Arc<Principal>> {
        self.bootstrap
            .iter()
            .find(|(_, caller)| caller.key_name == name)
            .map(|(_, caller)| caller.clone())
    }

    /// Whether a principal authenticated earlier may still call: its stored key has not
    /// been revoked, expired or deleted since. Config keys and proxied users always may.
    pub fn recheck(&self, who: &Principal, now_ms: i64) -> Result<(), ServiceError> {
        let Some(id) = &who.key_id else {
            return Ok(());
        };
        let keys = self.by_id.load();
        let Some(stored) = keys.get(id) else {
            return Err(ServiceError::InvalidApiKey);
        };
        if stored.key.revoked_at_ms.is_some() {
            return Err(ServiceError::KeyRevoked);
        }
        if stored.key.expires_at_ms.is_some_and(|e| e <= now_ms) {
            return Err(ServiceError::KeyExpired);
        }
        Ok(())
    }

    /// Loads keys changed since the last refresh (all of them the first time) and swaps
    /// the map. Returns how many changed.
    pub async fn refresh(&self, store: &Store) -> Result<usize, sluice_store::StoreError> {
        let seen = self.seen_ms.load(Ordering::Acquire);
        let changed = if seen == i64::MIN {
            store.list_keys().await?
        } else {
            store
                .keys_changed_since(seen.saturating_sub(REFRESH_OVERLAP_MS))
                .await?
        };
        let current = self.stored.load();
        let fresh: Vec<&ApiKey> = changed
            .iter()
            .filter(|k| {
                hex_digest(&k.key_hash)
                    .is_some_and(|d| current.get(&d).is_none_or(|old| old.key != **k))
            })
            .collect();
        if let Some(max) = changed.iter().map(|k| k.updated_at_ms).max() {
            self.seen_ms.fetch_max(max, Ordering::AcqRel);
        } else if seen == i64::MIN {
            self.seen_ms.store(0, Ordering::Release);
        }
        if fresh.is_empty() {
            return Ok(0);
        }
        let mut next = HashMap::clone(&current);
        for k in &fresh {
            if let Some(d) = hex_digest(&k.key_hash) {
                next.insert(d, Arc::new(StoredKey::new((*k).clone())));
            }
        }
        let by_id = next
            .values()
            .map(|k| (k.key.id.clone(), k.clone()))
            .collect();
        self.stored.store(Arc::new(next));
        self.by_id.store(Arc::new(by_id));
        Ok(fresh.len())
    }
}

fn digest(s: &str) -> Digest32 {
    Sha256::digest(s.as_bytes()).into()
}

fn hex_digest(hex: &str) -> Option<Digest32> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_config::Secret;

    #[test]
    fn matches_only_exact_keys() {
        let ring = KeyRing::new(&[
            GatewayKey {
                name: "a".into(),
                key: Secret::new("key-aaaaaaaa"),
                user: None,
                limits: Limits::default(),
            },
            GatewayKey {
                name: "b".into(),
                key: Secret::new("key-bbbbbbbb"),
                user: Some("bob".into()),
                limits: Limits::default(),
            },
        ]);
        let b = ring.check("key-bbbbbbbb", 0).unwrap();
        assert_eq!((b.key_name.as_str(), &*b.key_ref), ("b", "config:b"));
        assert_eq!(b.user_id.as_deref(), Some("bob"));
        assert!(
            ring.check("key-bbbbbbb", 0).is_err(),
            "a prefix is not the key"
        );
        assert!(ring.check("", 0).is_err());
        let by_name = ring.principal_by_name("b").unwrap();
        assert!(
            Arc::ptr_eq(&by_name, &b),
            "the same principal a token finds"
        );
        assert!(ring.principal_by_name("c").is_none());
    }

    #[test]
    fn hex_digests_parse() {
        let d = digest("x");
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex_digest(&hex), Some(d));
        assert_eq!(hex_digest("zz"), None);
    }
}
