//! The pending store: the feature vector each transaction was scored with,
//! kept until its label arrives, bounded in count and age.
//!
//! Vectors live in one slab (`Vec<f32>` with a fixed stride) whose slots are
//! reused through a free list, so steady state allocates nothing. A FIFO of
//! insertions drives age-based expiry and, when full, eviction of the oldest.

use crate::features::{FeatureVector, CATEGORICALS};
use crate::keymap::{key_map, KeyMap};
use std::collections::VecDeque;

/// What the engine needs to learn from a transaction once labelled.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PendingMeta {
    /// Card key.
    pub card: u64,
    /// Merchant key.
    pub merchant: u64,
    /// Event time of the transaction.
    pub ts: i64,
    /// Hashed categorical slots.
    pub cats: [u32; CATEGORICALS],
}

#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
struct Slot {
    tx: u64,
    meta: PendingMeta,
    live: bool,
}

/// Counters of the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingStats {
    /// Entries dropped because the store was full.
    pub evicted_capacity: u64,
    /// Entries dropped because their time-to-live passed.
    pub expired: u64,
    /// A transaction id inserted while already pending (the newer one wins).
    pub replaced: u64,
}

/// Bounded store of scored, not yet labelled feature vectors, keyed by tx key.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct PendingFeatures {
    stride: usize,
    capacity: usize,
    ttl_ms: i64,
    values: Vec<f32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: KeyMap<u32>,
    fifo: VecDeque<(u32, u64, i64)>,
    stats: PendingStats,
    /// Entries held by stores absorbed into this one's counts.
    absorbed_len: usize,
}

impl PendingFeatures {
    /// A store for vectors of `stride` dense values, holding at most
    /// `capacity` entries for at most `ttl_ms` of event time.
    pub fn new(stride: usize, capacity: usize, ttl_ms: i64) -> Self {
        PendingFeatures {
            stride,
            capacity: capacity.max(1),
            ttl_ms,
            values: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            index: key_map(),
            fifo: VecDeque::new(),
            stats: PendingStats::default(),
            absorbed_len: 0,
        }
    }

    /// Dense values per entry.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Entries waiting for a label (including those of absorbed stores).
    pub fn len(&self) -> usize {
        self.index.len() + self.absorbed_len
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Add another store's counters and entries held to this one's report
    /// (after a parallel run).
    pub fn absorb_counts(&mut self, other: &PendingFeatures) {
        self.stats.evicted_capacity += other.stats.evicted_capacity;
        self.stats.expired += other.stats.expired;
        self.stats.replaced += other.stats.replaced;
        self.absorbed_len += other.len();
    }

    /// Counters so far.
    pub fn stats(&self) -> PendingStats {
        self.stats
    }

    /// Keep `x` for transaction `tx`. Expires what is older than the TTL at
    /// `meta.ts` and, when full, evicts the oldest entry.
    pub fn insert(&mut self, tx: u64, x: &FeatureVector, meta: PendingMeta) {
        debug_assert_eq!(x.dense.len(), self.stride);
        self.expire(meta.ts);
        let slot = if let Some(&s) = self.index.get(&tx) {
            self.stats.replaced += 1;
            s
        } else {
            if self.index.len() >= self.capacity {
                self.evict_oldest();
            }
            let s = match self.free.pop() {
                Some(s) => s,
                None => {
                    self.slots.push(Slot {
                        tx,
                        meta,
                        live: false,
                    });
                    self.values.resize(self.values.len() + self.stride, 0.0);
                    (self.slots.len() - 1) as u32
                }
            };
            self.index.insert(tx, s);
            s
        };
        let i = slot as usize;
        self.slots[i] = Slot {
            tx,
            meta,
            live: true,
        };
        self.values[i * self.stride..(i + 1) * self.stride].copy_from_slice(&x.dense);
        self.fifo.push_back((slot, tx, meta.ts));
    }

    /// Remove the entry of `tx`, writing its vector into `out`; `None` if the
    /// transaction is unknown, already labelled, expired or evicted.
    pub fn take(&mut self, tx: u64, out: &mut FeatureVector) -> Option<PendingMeta> {
        let slot = self.index.remove(&tx)? as usize;
        let s = &mut self.slots[slot];
        s.live = false;
        out.dense.clear();
        out.dense
            .extend_from_slice(&self.values[slot * self.stride..(slot + 1) * self.stride]);
        out.cats = s.meta.cats;
        self.free.push(slot as u32);
        Some(s.meta)
    }

    /// Drop entries whose transaction is older than `now - ttl`.
    pub fn expire(&mut self, now: i64) {
        while let Some(&(slot, tx, ts)) = self.fifo.front() {
            if self.is_current(slot, tx, ts) {
                if ts >= now.saturating_sub(self.ttl_ms) {
                    break;
                }
                self.release(slot, tx);
                self.stats.expired += 1;
            }
            self.fifo.pop_front();
        }
    }

    fn is_current(&self, slot: u32, tx: u64, ts: i64) -> bool {
        let s = &self.slots[slot as usize];
        s.live && s.tx == tx && s.meta.ts == ts && self.index.get(&tx) == Some(&slot)
    }

    fn release(&mut self, slot: u32, tx: u64) {
        self.index.remove(&tx);
        self.slots[slot as usize].live = false;
        self.free.push(slot);
    }

    fn evict_oldest(&mut self) {
        while let Some((slot, tx, ts)) = self.fifo.pop_front() {
            if self.is_current(slot, tx, ts) {
                self.release(slot, tx);
                self.stats.evicted_capacity += 1;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(ts: i64) -> PendingMeta {
        PendingMeta {
            card: 1,
            merchant: 2,
            ts,
            cats: [1, 2, 3],
        }
    }

    fn vector(v: f32) -> FeatureVector {
        FeatureVector {
            dense: vec![v, v + 1.0],
            cats: [1, 2, 3],
        }
    }

    #[test]
    fn take_returns_what_was_stored_once() {
        let mut p = PendingFeatures::new(2, 10, 1000);
        p.insert(7, &vector(1.0), meta(5));
        p.insert(8, &vector(2.0), meta(6));
        let mut out = FeatureVector::default();
        assert_eq!(p.take(7, &mut out), Some(meta(5)));
        assert_eq!(out, vector(1.0));
        assert_eq!(p.take(7, &mut out), None, "a second label finds nothing");
        assert_eq!(p.len(), 1);
        // the freed slot is reused without disturbing the other entry
        p.insert(9, &vector(3.0), meta(7));
        assert_eq!(p.take(8, &mut out), Some(meta(6)));
        assert_eq!(out, vector(2.0));
        assert_eq!(p.take(9, &mut out).map(|m| m.ts), Some(7));
        assert!(p.is_empty());
    }

    #[test]
    fn capacity_evicts_the_oldest_and_counts_it() {
        let mut p = PendingFeatures::new(2, 2, i64::MAX / 4);
        for tx in 0..5u64 {
            p.insert(tx, &vector(tx as f32), meta(tx as i64));
        }
        assert_eq!(p.len(), 2);
        assert_eq!(p.stats().evicted_capacity, 3);
        let mut out = FeatureVector::default();
        assert!(p.take(2, &mut out).is_none());
        assert_eq!(p.take(4, &mut out), Some(meta(4)));
    }

    #[test]
    fn entries_expire_after_their_ttl() {
        let mut p = PendingFeatures::new(2, 100, 10);
        p.insert(1, &vector(0.0), meta(0));
        p.insert(2, &vector(0.0), meta(5));
        p.expire(12);
        assert_eq!(p.len(), 1);
        assert_eq!(p.stats().expired, 1);
        let mut out = FeatureVector::default();
        assert!(p.take(2, &mut out).is_some());
    }

    #[test]
    fn reinserting_a_pending_id_replaces_it() {
        let mut p = PendingFeatures::new(2, 100, 1000);
        p.insert(1, &vector(0.0), meta(0));
        p.insert(1, &vector(5.0), meta(3));
        assert_eq!(p.len(), 1);
        assert_eq!(p.stats().replaced, 1);
        let mut out = FeatureVector::default();
        assert_eq!(p.take(1, &mut out), Some(meta(3)));
        assert_eq!(out.dense[0], 5.0);
        // the stale FIFO entry of the first insert does not expire anything
        p.insert(2, &vector(0.0), meta(500));
        p.expire(1001);
        assert_eq!(p.stats().expired, 0);
    }
}
