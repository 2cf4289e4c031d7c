//! The index: exact and semantic hits and misses, TTL, eviction by entries and by bytes,
//! and context isolation. A toy embedder keeps these independent of the model.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_cache::{
    Cache, Context, DEFAULT_MIN_COSINE, Embedder, Hasher, Inserted, Key, Limits, Query,
};

/// Hashes each lower-cased word into one of 64 dimensions: a bag of words, like the real
/// model, so word order is invisible to it too.
struct Bag;

impl Embedder for Bag {
    fn embed(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0.0; 64];
        for w in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let h = w
                .to_lowercase()
                .bytes()
                .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            v[(h % 64) as usize] += 1.0;
        }
        v
    }
    fn dim(&self) -> usize {
        64
    }
}

fn limits(max_entries: usize, max_bytes: usize, ttl_s: u64) -> Limits {
    Limits {
        max_entries,
        max_bytes,
        ttl: Duration::from_secs(ttl_s),
    }
}

fn ctx(tenant: &str) -> Context {
    Hasher::new("test").part(tenant.as_bytes()).context()
}

fn q(text: &str) -> Query {
    Query::new(&Bag, text)
}

#[test]
fn exact_hit_and_miss() {
    let cache = Cache::new(Limits::default());
    let t0 = Instant::now();
    let k = Key::of(b"request one");
    assert_eq!(
        cache.insert(k, ctx("a"), None, "answer", 10, t0),
        Inserted::Stored
    );
    assert_eq!(cache.get(&k, t0).as_deref(), Some(&"answer"));
    assert!(
        cache.get(&Key::of(b"request two"), t0).is_none(),
        "another key is a miss"
    );
    assert_eq!(cache.len(), 1);
}

#[test]
fn insert_same_key_replaces() {
    let cache = Cache::new(Limits::default());
    let t0 = Instant::now();
    let k = Key::of(b"r");
    cache.insert(k, ctx("a"), Some(q("reset my password")), 1, 10, t0);
    cache.insert(k, ctx("a"), Some(q("reset my password")), 2, 10, t0);
    assert_eq!(cache.len(), 1, "one entry per key");
    assert_eq!(cache.get(&k, t0).as_deref(), Some(&2));
    let hit = cache.search(&ctx("a"), &q("reset my password"), 0.5, t0);
    assert_eq!(
        hit.map(|h| *h.value),
        Some(2),
        "the replaced vector is gone too"
    );
}

#[test]
fn semantic_hit_verified_and_near_miss_refused() {
    let cache = Cache::new(Limits::default());
    let t0 = Instant::now();
    let c = ctx("a");
    cache.insert(
        Key::of(b"1"),
        c,
        Some(q("How do I reset my password?")),
        "reset",
        10,
        t0,
    );
    let hit = cache
        .search(
            &c,
            &q("how can I reset my password"),
            DEFAULT_MIN_COSINE,
            t0,
        )
        .map(|h| (*h.value, h.cached_text.to_string()));
    assert_eq!(
        hit,
        Some(("reset", "How do I reset my password?".to_owned())),
        "a near-repeat differing in function words is served"
    );
    cache.insert(
        Key::of(b"2"),
        c,
        Some(q("convert USD to EUR")),
        "usd->eur",
        10,
        t0,
    );
    let swapped = q("convert EUR to USD");
    assert!(
        swapped.cosine(&q("convert USD to EUR")) > 0.99,
        "a bag of words cannot see the swap"
    );
    assert!(
        cache.search(&c, &swapped, DEFAULT_MIN_COSINE, t0).is_none(),
        "the swap must be refused by verification"
    );
    assert!(
        cache
            .search(&c, &q("how do I not reset my password"), 0.3, t0)
            .is_none(),
        "a negation must be refused"
    );
}

#[test]
fn search_takes_the_best_candidate_that_verifies() {
    let cache = Cache::new(Limits::default());
    let t0 = Instant::now();
    let c = ctx("a");
    // The swapped one is identical as a bag of words (cosine 1.0, ranked first);
    // the right one differs by a function word (lower cosine) and must still be found.
    cache.insert(
        Key::of(b"swap"),
        c,
        Some(q("flights Paris London")),
        "wrong",
        10,
        t0,
    );
    cache.insert(
        Key::of(b"ok"),
        c,
        Some(q("the flights London Paris")),
        "right",
        10,
        t0,
    );
    let hit = cache.search(&c, &q("flights London Paris"), 0.5, t0);
    assert_eq!(hit.map(|h| *h.value), Some("right"));
}

#[test]
fn ttl_expires_exact_and_semantic() {
    let cache = Cache::new(limits(100, 1 << 20, 60));
    let t0 = Instant::now();
    let k = Key::of(b"r");
    cache.insert(k, ctx("a"), Some(q("capital of France")), 1, 10, t0);
    let before = t0 + Duration::from_secs(59);
    let after = t0 + Duration::from_secs(61);
    assert!(
        cache
            .search(&ctx("a"), &q("capital of France"), 0.9, before)
            .is_some()
    );
    assert!(
        cache
            .search(&ctx("a"), &q("capital of France"), 0.9, after)
            .is_none(),
        "expired"
    );
    assert!(cache.get(&k, before).is_some());
    assert!(cache.get(&k, after).is_none(), "expired");
    assert_eq!(cache.len(), 0, "an expired exact lookup drops the entry");
    assert_eq!(cache.bytes(), 0);
}

#[test]
fn purge_drops_only_expired() {
    let cache = Cache::new(limits(100, 1 << 20, 60));
    let t0 = Instant::now();
    for i in 0..10u8 {
        cache.insert(
            Key::of(&[i]),
            ctx("a"),
            None,
            i,
            10,
            t0 + Duration::from_secs(u64::from(i) * 10),
        );
    }
    // Inserts drop what has expired by their time: at 90 s, those of 0..=30 s.
    assert_eq!(cache.len(), 6);
    // Those of 40 s are past 60 s at 101 s.
    assert_eq!(cache.purge_expired(t0 + Duration::from_secs(101)), 1);
    assert_eq!(cache.len(), 5);
    assert!(
        cache
            .get(&Key::of(&[5]), t0 + Duration::from_secs(101))
            .is_some()
    );
}

#[test]
fn evicts_least_recently_used_by_entries() {
    let cache = Cache::new(limits(3, 1 << 20, 3600));
    let t0 = Instant::now();
    for i in 0..3u8 {
        cache.insert(
            Key::of(&[i]),
            ctx("a"),
            Some(q(&format!("question number {i}"))),
            i,
            10,
            t0,
        );
    }
    assert!(
        cache.get(&Key::of(&[0]), t0).is_some(),
        "0 becomes the most recent"
    );
    cache.insert(Key::of(&[3]), ctx("a"), None, 3, 10, t0);
    assert_eq!(cache.len(), 3);
    assert!(
        cache.get(&Key::of(&[1]), t0).is_none(),
        "1 was the least recently used"
    );
    for i in [0u8, 2, 3] {
        assert!(cache.get(&Key::of(&[i]), t0).is_some(), "{i} stays");
    }
    // The evicted entry's vector left the bucket; the others are still searchable.
    assert!(
        cache
            .search(&ctx("a"), &q("question number 1"), 0.99, t0)
            .is_none()
    );
    assert!(
        cache
            .search(&ctx("a"), &q("question number 2"), 0.99, t0)
            .is_some()
    );
}

#[test]
fn a_semantic_hit_counts_as_a_use() {
    let cache = Cache::new(limits(2, 1 << 20, 3600));
    let t0 = Instant::now();
    cache.insert(Key::of(b"a"), ctx("a"), Some(q("boil an egg")), "a", 10, t0);
    cache.insert(Key::of(b"b"), ctx("a"), None, "b", 10, t0);
    assert!(
        cache
            .search(&ctx("a"), &q("boil an egg please"), 0.5, t0)
            .is_some()
    );
    cache.insert(Key::of(b"c"), ctx("a"), None, "c", 10, t0);
    assert!(
        cache.get(&Key::of(b"a"), t0).is_some(),
        "the searched entry was recent"
    );
    assert!(
        cache.get(&Key::of(b"b"), t0).is_none(),
        "b was the least recently used"
    );
}

#[test]
fn evicts_by_bytes_and_refuses_what_never_fits() {
    let per = Cache::<u32>::entry_cost(1000, None);
    let cache = Cache::new(limits(1000, per * 3, 3600));
    let t0 = Instant::now();
    for i in 0..3u8 {
        cache.insert(Key::of(&[i]), ctx("a"), None, u32::from(i), 1000, t0);
    }
    assert_eq!(cache.bytes(), per * 3);
    cache.insert(Key::of(&[3]), ctx("a"), None, 3, 2000, t0);
    assert!(
        cache.bytes() <= per * 3,
        "bytes stay within the limit: {}",
        cache.bytes()
    );
    assert_eq!(
        cache.len(),
        2,
        "two small ones made room for one twice their size"
    );
    assert!(cache.get(&Key::of(&[0]), t0).is_none() && cache.get(&Key::of(&[1]), t0).is_none());
    assert_eq!(
        cache.insert(Key::of(&[9]), ctx("a"), None, 9, per * 4, t0),
        Inserted::TooLarge
    );
    assert_eq!(cache.len(), 2, "a too-large entry evicts nothing");
}

#[test]
fn contexts_are_isolated() {
    let cache = Cache::new(Limits::default());
    let t0 = Instant::now();
    let text = "What is our refund policy?";
    cache.insert(
        Key::of(b"tenant-a"),
        ctx("tenant-a"),
        Some(q(text)),
        "A's policy",
        10,
        t0,
    );
    assert!(
        cache.search(&ctx("tenant-b"), &q(text), 0.0, t0).is_none(),
        "the same question in another tenant's context must never be served A's answer"
    );
    assert!(cache.get(&Key::of(b"tenant-b"), t0).is_none());
    let hit = cache.search(&ctx("tenant-a"), &q(text), DEFAULT_MIN_COSINE, t0);
    assert_eq!(hit.map(|h| *h.value), Some("A's policy"));
    assert_eq!(cache.remove_context(&ctx("tenant-a")), 1);
    assert!(cache.is_empty());
}

#[test]
fn hasher_parts_are_unambiguous() {
    let ab_c = Hasher::new("t").part(b"ab").part(b"c").key();
    let a_bc = Hasher::new("t").part(b"a").part(b"bc").key();
    assert_ne!(ab_c, a_bc);
    assert_ne!(
        Hasher::new("t").part(b"x").key(),
        Hasher::new("u").part(b"x").key()
    );
}

#[test]
fn many_entries_stay_consistent() {
    // Churn through a small cache: every vector row must still point at its entry.
    let cache = Cache::new(limits(50, 1 << 20, 3600));
    let t0 = Instant::now();
    for i in 0..500u32 {
        let text = format!("item {i} colour {}", i % 7);
        cache.insert(
            Key::of(&i.to_le_bytes()),
            ctx(&format!("{}", i % 3)),
            Some(q(&text)),
            i,
            10,
            t0,
        );
        if i % 5 == 0 {
            cache.remove(&Key::of(&(i / 2).to_le_bytes()));
        }
    }
    assert!(cache.len() <= 50);
    for i in 450..500u32 {
        let Some(v) = cache.get(&Key::of(&i.to_le_bytes()), t0) else {
            continue;
        };
        let text = format!("item {i} colour {}", i % 7);
        let hit = cache.search(&ctx(&format!("{}", i % 3)), &q(&text), 0.999, t0);
        assert_eq!(
            hit.map(|h| *h.value),
            Some(*v),
            "row of {i} points at its entry"
        );
    }
    cache.clear();
    assert_eq!((cache.len(), cache.bytes(), cache.contexts()), (0, 0, 0));
}

#[test]
fn cache_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Cache<String>>();
    assert_send_sync::<Arc<Cache<Vec<u8>>>>();
}
