//! Identical requests in flight (docs/cache.md, "Identical requests at once"). The first
//! cacheable miss of a key leads: it goes upstream and stores its answer. An identical
//! request that arrives meanwhile follows: it waits (at most its alias's `coalesce_s`) for
//! the leader to finish, then looks the cache up again, and is a hit when the leader's
//! answer was stored. A retry storm or a fleet of agents asking the same thing at once
//! then costs one provider call, not one per request.
//!
//! A follower waits once: when the leader's answer was not stored (an error, a cut
//! stream, a blocked answer), it goes upstream itself rather than queueing behind another
//! leader. Nothing is held while waiting (no reservation, no concurrency slot): only a
//! `watch` receiver, woken when the leader's [`Lead`] is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sluice_cache::Key;
use tokio::sync::watch;

/// A key in one generation of the cache.
type FlightKey = (u64, Key);
/// A leader's id, and the sender whose drop wakes its followers.
type Leader = (u64, watch::Sender<()>);

/// The keys whose leader is on its way upstream.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    /// By the cache's generation and the key: after a purge, a new request never follows
    /// a leader whose answer the purge will keep out.
    leaders: Mutex<HashMap<FlightKey, Leader>>,
    next: AtomicU64,
}

/// What a cacheable miss is for its key: its leader, or a follower of one.
pub(crate) enum Flight {
    /// First of its key: it goes upstream; followers wake when this is dropped.
    Lead(Lead),
    /// Another call of the same key is on its way: wait for it with this.
    Follow(watch::Receiver<()>),
}

/// A leader's place in [`Flights`]; dropping it (the answer stored, or the call over
/// without one) wakes the followers.
#[derive(Debug)]
pub(crate) struct Lead {
    flights: Arc<Flights>,
    key: FlightKey,
    id: u64,
}

impl Flights {
    fn leaders(&self) -> MutexGuard<'_, HashMap<FlightKey, Leader>> {
        self.leaders.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Leads `key` (in the cache's `generation`) if no call of it is in flight; otherwise
    /// follows the one that is, unless `follow` is false (then `None`: go upstream
    /// without leading).
    pub(crate) fn join(
        self: &Arc<Self>,
        generation: u64,
        key: Key,
        follow: bool,
    ) -> Option<Flight> {
        let key = (generation, key);
        let mut leaders = self.leaders();
        if let Some((_, tx)) = leaders.get(&key) {
            return follow.then(|| Flight::Follow(tx.subscribe()));
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        leaders.insert(key, (id, watch::channel(()).0));
        Some(Flight::Lead(Lead {
            flights: self.clone(),
            key,
            id,
        }))
    }

    /// Keys with a leader in flight.
    pub(crate) fn len(&self) -> usize {
        self.leaders().len()
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        let mut leaders = self.flights.leaders();
        // Dropping the sender closes every follower's receiver: they wake.
        if leaders.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            leaders.remove(&self.key);
        }
    }
}

/// Waits until the leader `rx` follows is done (its sender dropped).
pub(crate) async fn landed(mut rx: watch::Receiver<()>) {
    // `changed` fails once the sender is gone; nothing is ever sent.
    while rx.changed().await.is_ok() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A leader of `key` and one follower.
    fn lead_and_follow(flights: &Arc<Flights>, key: Key) -> (Lead, watch::Receiver<()>) {
        let Some(Flight::Lead(lead)) = flights.join(0, key, true) else {
            panic!("the first call of a key leads");
        };
        let Some(Flight::Follow(rx)) = flights.join(0, key, true) else {
            panic!("an identical call follows");
        };
        (lead, rx)
    }

    #[tokio::test]
    async fn the_first_leads_the_rest_follow_until_the_leader_is_dropped() {
        let flights = Arc::new(Flights::default());
        let key = Key([7; 32]);
        let (lead, rx) = lead_and_follow(&flights, key);
        assert!(
            flights.join(0, key, false).is_none(),
            "one that may not wait goes on"
        );
        assert!(matches!(
            flights.join(0, Key([8; 32]), true),
            Some(Flight::Lead(_))
        ));
        let waiting = tokio::spawn(landed(rx));
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "followers wait while the leader is out"
        );
        drop(lead);
        waiting.await.unwrap();
        assert_eq!(flights.len(), 0, "the key is free again");
        assert!(matches!(flights.join(0, key, true), Some(Flight::Lead(_))));
    }

    #[tokio::test]
    async fn after_a_purge_the_same_key_leads_anew() {
        let flights = Arc::new(Flights::default());
        let key = Key([3; 32]);
        let _before = flights.join(0, key, true);
        assert!(matches!(flights.join(1, key, true), Some(Flight::Lead(_))));
    }

    #[tokio::test]
    async fn a_follower_that_subscribes_after_the_leader_left_does_not_hang() {
        let flights = Arc::new(Flights::default());
        let (lead, rx) = lead_and_follow(&flights, Key([1; 32]));
        drop(lead);
        // Already landed: returns at once.
        tokio::time::timeout(std::time::Duration::from_secs(5), landed(rx))
            .await
            .unwrap();
    }
}
