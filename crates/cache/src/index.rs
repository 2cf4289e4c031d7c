//! The in-memory index: exact entries by [`Key`], semantic vectors by [`Context`], bounded
//! by entries, bytes and age, evicting the least recently used.
//!
//! Entries live in a slab; two intrusive lists run through it, one in recency order (for
//! LRU eviction) and one in insertion order (which, the TTL being the same for all, is
//! expiry order, so expired entries are dropped from its tail without a scan). Each
//! context's vectors are one contiguous `Vec<f32>`, so a search is a linear pass of dot
//! products the compiler vectorises.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::embed::Query;
use crate::key::{Context, Key};
use crate::verify::Analysis;

/// How large and how old the cache may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// At most this many entries; the least recently used goes first.
    pub max_entries: usize,
    /// At most this many bytes: the callers' `bytes` plus each entry's own cost (its
    /// text, vector and bookkeeping, [`Cache::entry_cost`]).
    pub max_bytes: usize,
    /// An entry is never served past this age (counted from its insert).
    pub ttl: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 64 << 20,
            ttl: Duration::from_secs(3600),
        }
    }
}

/// The conservative default for `min_cosine` in [`Cache::search`]: below it a candidate
/// is not even verified. Chosen from `examples/eval.rs` (docs/cache.md, "Threshold").
pub const DEFAULT_MIN_COSINE: f32 = 0.80;

/// At most this many candidates over the threshold are verified per search, best first;
/// past them the search is a miss. Bounds the cost of a context flooded with look-alikes.
pub const MAX_VERIFIED: usize = 16;

/// A semantic hit: the value, how close its text was, and the text, for the caller's
/// headers and logs.
#[derive(Debug, Clone)]
pub struct SemanticHit<V> {
    pub value: Arc<V>,
    pub cosine: f32,
    pub cached_text: Arc<str>,
}

/// Whether [`Cache::insert`] kept the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Stored (replacing any entry with the same key).
    Stored,
    /// Larger than `max_bytes` on its own; not stored, and nothing was evicted for it.
    TooLarge,
}

/// The exact + semantic response cache. `Send + Sync`: share it in an `Arc`. Reads take
/// a shared lock; inserts, exact hits and evictions a short exclusive one. A semantic
/// search scores and verifies under the shared lock and takes the exclusive one only to
/// mark its hit as recently used.
pub struct Cache<V> {
    limits: Limits,
    inner: RwLock<Inner<V>>,
}

const NIL: u32 = u32::MAX;
const LRU: usize = 0;
const AGE: usize = 1;

#[derive(Clone, Copy)]
struct Link {
    prev: u32,
    next: u32,
}

struct Entry<V> {
    key: Key,
    ctx: Context,
    value: Arc<V>,
    cost: usize,
    expires: Instant,
    /// Unique per insert: tells a slot reused between two locks from the one first seen.
    id: u64,
    /// The embedded text, its row in the context's bucket and its analysis for
    /// verification (done once, at insert).
    semantic: Option<(Arc<str>, u32, Arc<Analysis>)>,
}

struct Slot<V> {
    entry: Option<Entry<V>>,
    links: [Link; 2],
}

/// One context's vectors, row-major, and the slot each row belongs to.
struct Bucket {
    dim: usize,
    vectors: Vec<f32>,
    slots: Vec<u32>,
}

struct Inner<V> {
    slots: Vec<Slot<V>>,
    free: Vec<u32>,
    head: [u32; 2],
    tail: [u32; 2],
    by_key: HashMap<Key, u32>,
    buckets: HashMap<Context, Bucket>,
    bytes: usize,
    next_id: u64,
}

/// Bookkeeping counted per entry besides its text and vector: the slot, the key map's
/// entry and the bucket's row index.
const BOOKKEEPING: usize = 96;

impl<V> Cache<V> {
    /// An empty cache with these limits.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            inner: RwLock::new(Inner {
                slots: Vec::new(),
                free: Vec::new(),
                head: [NIL; 2],
                tail: [NIL; 2],
                by_key: HashMap::new(),
                buckets: HashMap::new(),
                bytes: 0,
                next_id: 0,
            }),
        }
    }

    /// The limits it was built with.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The bytes an entry counts against `max_bytes`: the caller's `bytes` plus the
    /// embedded text (counted three times: the text and its analysed words), its vector
    /// and a fixed bookkeeping share.
    pub fn entry_cost(bytes: usize, semantic: Option<&Query>) -> usize {
        let sem = semantic.map_or(0, |q| {
            3 * q.text().len()
                + 4 * q.vector().len()
                + 128
                + q.analysed().map_or(0, |a| a.word_vector_bytes())
        });
        bytes
            .saturating_add(sem)
            .saturating_add(BOOKKEEPING + std::mem::size_of::<Slot<V>>())
    }

    /// The exact lookup. A hit becomes the most recently used; an expired entry is
    /// dropped and is a miss.
    pub fn get(&self, key: &Key, now: Instant) -> Option<Arc<V>> {
        let mut inner = self.write();
        let idx = *inner.by_key.get(key)?;
        let expired = inner.entry(idx).is_none_or(|e| e.expires <= now);
        if expired {
            inner.remove_slot(idx);
            return None;
        }
        inner.touch(idx);
        inner.entry(idx).map(|e| Arc::clone(&e.value))
    }

    /// The semantic lookup: among the unexpired entries of `ctx`, the candidates whose
    /// cosine to `query` is at least `min_cosine`, best first (at most [`MAX_VERIFIED`]);
    /// the first whose text passes [`verify()`] against the query's is the hit and becomes
    /// the most recently used. Entries of other contexts are never looked at.
    pub fn search(
        &self,
        ctx: &Context,
        query: &Query,
        min_cosine: f32,
        now: Instant,
    ) -> Option<SemanticHit<V>> {
        let (idx, id, hit) = {
            let inner = self.read();
            let bucket = inner.buckets.get(ctx)?;
            if bucket.dim != query.vector().len() || bucket.dim == 0 {
                return None;
            }
            let mut candidates: Vec<(f32, u32)> = Vec::new();
            for (row, v) in bucket.vectors.chunks_exact(bucket.dim).enumerate() {
                let c = dot(query.vector(), v);
                if c >= min_cosine {
                    candidates.push((c, row as u32));
                }
            }
            candidates.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
            candidates.truncate(MAX_VERIFIED);
            let mut found = None;
            let mut asked: Option<Arc<Analysis>> = None;
            for (cosine, row) in candidates {
                let idx = bucket.slots[row as usize];
                let Some(e) = inner.entry(idx) else { continue };
                let Some((text, _, cached)) = &e.semantic else {
                    continue;
                };
                if e.expires <= now {
                    continue;
                }
                let asked = asked.get_or_insert_with(|| query.analysis());
                if !asked.compare(cached).is_match() {
                    continue;
                }
                found = Some((
                    idx,
                    e.id,
                    SemanticHit {
                        value: Arc::clone(&e.value),
                        cosine,
                        cached_text: Arc::clone(text),
                    },
                ));
                break;
            }
            found?
        };
        let mut inner = self.write();
        if inner.entry(idx).is_some_and(|e| e.id == id) {
            inner.touch(idx);
        }
        Some(hit)
    }

    /// Stores `value` under `key` (replacing any entry with that key) and, when
    /// `semantic` is given, makes it findable by [`Cache::search`] within `ctx`. Expired
    /// entries go first, then the least recently used until the new one fits.
    pub fn insert(
        &self,
        key: Key,
        ctx: Context,
        semantic: Option<Query>,
        value: V,
        bytes: usize,
        now: Instant,
    ) -> Inserted {
        let cost = Self::entry_cost(bytes, semantic.as_ref());
        if cost > self.limits.max_bytes || self.limits.max_entries == 0 {
            return Inserted::TooLarge;
        }
        let expires = now.checked_add(self.limits.ttl).unwrap_or(now);
        let mut inner = self.write();
        if let Some(&old) = inner.by_key.get(&key) {
            inner.remove_slot(old);
        }
        inner.purge_expired(now);
        while inner.by_key.len() >= self.limits.max_entries
            || inner.bytes + cost > self.limits.max_bytes
        {
            let lru = inner.tail[LRU];
            if lru == NIL {
                break;
            }
            inner.remove_slot(lru);
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let idx = match inner.free.pop() {
            Some(i) => i,
            None => {
                inner.slots.push(Slot {
                    entry: None,
                    links: [Link {
                        prev: NIL,
                        next: NIL,
                    }; 2],
                });
                (inner.slots.len() - 1) as u32
            }
        };
        let semantic = semantic.and_then(|q| {
            let dim = q.vector().len();
            if dim == 0 {
                return None;
            }
            let bucket = inner.buckets.entry(ctx).or_insert_with(|| Bucket {
                dim,
                vectors: Vec::new(),
                slots: Vec::new(),
            });
            if bucket.dim != dim {
                return None;
            }
            let row = bucket.slots.len() as u32;
            bucket.vectors.extend_from_slice(q.vector());
            bucket.slots.push(idx);
            Some((Arc::<str>::from(q.text()), row, q.analysis()))
        });
        inner.slots[idx as usize].entry = Some(Entry {
            key,
            ctx,
            value: Arc::new(value),
            cost,
            expires,
            id,
            semantic,
        });
        inner.by_key.insert(key, idx);
        inner.bytes += cost;
        inner.push_front(LRU, idx);
        inner.push_front(AGE, idx);
        Inserted::Stored
    }

    /// Drops the entry with this key, if any. Returns whether there was one.
    pub fn remove(&self, key: &Key) -> bool {
        let mut inner = self.write();
        let Some(&idx) = inner.by_key.get(key) else {
            return false;
        };
        inner.remove_slot(idx);
        true
    }

    /// Drops every entry of `ctx` (say, a tenant's, when its policy changes). Returns
    /// how many.
    pub fn remove_context(&self, ctx: &Context) -> usize {
        let mut inner = self.write();
        let idxs: Vec<u32> = inner
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.entry.as_ref().is_some_and(|e| e.ctx == *ctx))
            .map(|(i, _)| i as u32)
            .collect();
        for &i in &idxs {
            inner.remove_slot(i);
        }
        idxs.len()
    }

    /// Drops every expired entry now (inserts do it too). Returns how many.
    pub fn purge_expired(&self, now: Instant) -> usize {
        self.write().purge_expired(now)
    }

    /// Drops everything.
    pub fn clear(&self) {
        let mut inner = self.write();
        while inner.tail[LRU] != NIL {
            let i = inner.tail[LRU];
            inner.remove_slot(i);
        }
    }

    /// Entries held (expired ones included until something drops them).
    pub fn len(&self) -> usize {
        self.read().by_key.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes counted against `max_bytes`.
    pub fn bytes(&self) -> usize {
        self.read().bytes
    }

    /// Contexts that hold at least one semantic entry.
    pub fn contexts(&self) -> usize {
        self.read().buckets.len()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner<V>> {
        // The index is consistent between statements that can panic; a panic elsewhere
        // while holding the lock must not disable the cache.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner<V>> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<V> Inner<V> {
    fn entry(&self, idx: u32) -> Option<&Entry<V>> {
        self.slots.get(idx as usize).and_then(|s| s.entry.as_ref())
    }

    fn unlink(&mut self, list: usize, idx: u32) {
        let Link { prev, next } = self.slots[idx as usize].links[list];
        if prev == NIL {
            self.head[list] = next;
        } else {
            self.slots[prev as usize].links[list].next = next;
        }
        if next == NIL {
            self.tail[list] = prev;
        } else {
            self.slots[next as usize].links[list].prev = prev;
        }
        self.slots[idx as usize].links[list] = Link {
            prev: NIL,
            next: NIL,
        };
    }

    fn push_front(&mut self, list: usize, idx: u32) {
        let old = self.head[list];
        self.slots[idx as usize].links[list] = Link {
            prev: NIL,
            next: old,
        };
        if old == NIL {
            self.tail[list] = idx;
        } else {
            self.slots[old as usize].links[list].prev = idx;
        }
        self.head[list] = idx;
    }

    fn touch(&mut self, idx: u32) {
        if self.head[LRU] != idx {
            self.unlink(LRU, idx);
            self.push_front(LRU, idx);
        }
    }

    fn purge_expired(&mut self, now: Instant) -> usize {
        let mut n = 0;
        loop {
            let oldest = self.tail[AGE];
            if oldest == NIL || self.entry(oldest).is_none_or(|e| e.expires > now) {
                return n;
            }
            self.remove_slot(oldest);
            n += 1;
        }
    }

    /// Unlinks and frees a slot; the bucket's last row moves into the freed row.
    fn remove_slot(&mut self, idx: u32) {
        let Some(entry) = self.slots[idx as usize].entry.take() else {
            return;
        };
        self.unlink(LRU, idx);
        self.unlink(AGE, idx);
        self.by_key.remove(&entry.key);
        self.bytes -= entry.cost;
        self.free.push(idx);
        let Some((_, row, _)) = entry.semantic else {
            return;
        };
        let Some(bucket) = self.buckets.get_mut(&entry.ctx) else {
            return;
        };
        let row = row as usize;
        let last = bucket.slots.len() - 1;
        if row != last {
            let dim = bucket.dim;
            bucket
                .vectors
                .copy_within(last * dim..(last + 1) * dim, row * dim);
            let moved = bucket.slots[last];
            bucket.slots[row] = moved;
            if let Some(Some((_, r, _))) = self.slots[moved as usize]
                .entry
                .as_mut()
                .map(|e| e.semantic.as_mut())
            {
                *r = row as u32;
            }
        }
        bucket.slots.pop();
        bucket.vectors.truncate(last * bucket.dim);
        if bucket.slots.is_empty() {
            self.buckets.remove(&entry.ctx);
        }
    }
}

/// Dot product in eight independent lanes, so the compiler keeps it in SIMD registers.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}
