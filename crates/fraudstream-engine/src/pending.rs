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
    /// The model's raw score when the transaction was scored, before
    /// calibration (0 where this store served no score: the merchant
    /// stage's mirror, replicated vectors).
    pub raw: f32,
}

#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
struct Slot {
    tx: u64,
    meta: PendingMeta,
    live: bool,
    /// Changed since the last checkpoint (listed in [`ChangeLog::slots`]).
    #[serde(skip)]
    changed: bool,
}

/// What changed since the last checkpoint, once tracking has started: the
/// slots written (each listed once, by its `changed` flag), how far the
/// free list was popped down, how many FIFO entries were pushed.
#[derive(Debug, Default)]
struct ChangeLog {
    slots: Vec<u32>,
    free_low: usize,
    fifo_pushed: usize,
}

/// What changed in a pending store between two checkpoints. The free list
/// is a stack and the FIFO a queue, so each is its kept part plus what was
/// added since.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct PendingDelta<V> {
    slots_len: u64,
    /// Changed slots, ascending: number, slot, its values.
    slots: Vec<(u32, SlotBytes, V)>,
    free_kept: u64,
    free_added: Vec<u32>,
    fifo_len: u64,
    fifo_added: Vec<(u32, u64, i64)>,
    stats: PendingStats,
    absorbed_len: u64,
}

/// A slot as a delta carries it.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct SlotBytes {
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
///
/// A checkpoint keeps everything but the index, which is rebuilt from the
/// live slots on reading (so the bytes do not depend on the hash seed).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "PendingParts")]
pub struct PendingFeatures {
    stride: usize,
    capacity: usize,
    ttl_ms: i64,
    values: Vec<f32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    fifo: VecDeque<(u32, u64, i64)>,
    stats: PendingStats,
    /// Entries held by stores absorbed into this one's counts.
    absorbed_len: usize,
    /// Transaction key → its live slot.
    #[serde(skip)]
    index: KeyMap<u32>,
    #[serde(skip)]
    log: Option<ChangeLog>,
}

/// [`PendingFeatures`] as a checkpoint holds it (the same fields, in the
/// same order, without the index).
#[derive(serde::Deserialize)]
struct PendingParts {
    stride: usize,
    capacity: usize,
    ttl_ms: i64,
    values: Vec<f32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    fifo: VecDeque<(u32, u64, i64)>,
    stats: PendingStats,
    absorbed_len: usize,
}

impl TryFrom<PendingParts> for PendingFeatures {
    type Error = String;

    /// The store with its index rebuilt, after checking that every slot
    /// number points into the slab and the slab holds `stride` values per
    /// slot (a damaged snapshot is refused, never indexed out of bounds).
    fn try_from(p: PendingParts) -> Result<Self, String> {
        let n = p.slots.len();
        if p.values.len() != n.saturating_mul(p.stride) {
            return Err(format!(
                "pending store: {} values for {n} slots of {}",
                p.values.len(),
                p.stride
            ));
        }
        let out_of_range = |s: u32| s as usize >= n;
        if p.free.iter().any(|&s| out_of_range(s)) || p.fifo.iter().any(|e| out_of_range(e.0)) {
            return Err(format!("pending store: a slot number beyond its {n} slots"));
        }
        let mut index = key_map();
        index.reserve(n - p.free.len().min(n));
        for (i, s) in p.slots.iter().enumerate().filter(|(_, s)| s.live) {
            if index.insert(s.tx, i as u32).is_some() {
                return Err(format!("pending store: transaction {:#x} held twice", s.tx));
            }
        }
        Ok(PendingFeatures {
            stride: p.stride,
            capacity: p.capacity,
            ttl_ms: p.ttl_ms,
            values: p.values,
            slots: p.slots,
            free: p.free,
            fifo: p.fifo,
            stats: p.stats,
            absorbed_len: p.absorbed_len,
            index,
            log: None,
        })
    }
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
            log: None,
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
                Some(s) => {
                    if let Some(log) = &mut self.log {
                        log.free_low = log.free_low.min(self.free.len());
                    }
                    s
                }
                None => {
                    self.slots.push(Slot {
                        tx,
                        meta,
                        live: false,
                        changed: false,
                    });
                    self.values.resize(self.values.len() + self.stride, 0.0);
                    (self.slots.len() - 1) as u32
                }
            };
            self.index.insert(tx, s);
            s
        };
        let i = slot as usize;
        let s = &mut self.slots[i];
        (s.tx, s.meta, s.live) = (tx, meta, true);
        self.values[i * self.stride..(i + 1) * self.stride].copy_from_slice(&x.dense);
        self.fifo.push_back((slot, tx, meta.ts));
        if let Some(log) = &mut self.log {
            log.fifo_pushed += 1;
        }
        self.touch(slot);
    }

    /// Note that `slot` changed.
    #[inline]
    fn touch(&mut self, slot: u32) {
        if let Some(log) = &mut self.log {
            let s = &mut self.slots[slot as usize];
            if !s.changed {
                s.changed = true;
                log.slots.push(slot);
            }
        }
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
        let meta = s.meta;
        self.free.push(slot as u32);
        self.touch(slot as u32);
        Some(meta)
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
        self.touch(slot);
    }

    /// Start listing changes afresh (the store was just written whole).
    pub fn start_tracking(&mut self) {
        if let Some(log) = &self.log {
            for &s in &log.slots {
                self.slots[s as usize].changed = false;
            }
        }
        let mut log = self.log.take().unwrap_or_default();
        log.slots.clear();
        log.free_low = self.free.len();
        log.fifo_pushed = 0;
        self.log = Some(log);
    }

    /// Whether changes are listed (a delta can be written).
    pub fn tracking(&self) -> bool {
        self.log.is_some()
    }

    /// What changed since tracking started or the last
    /// [`start_tracking`](Self::start_tracking) (call that once the delta is
    /// written). Empty before tracking starts.
    pub fn delta(&self) -> PendingDelta<&[f32]> {
        let empty = ChangeLog::default();
        let log = self.log.as_ref().unwrap_or(&empty);
        let mut changed = log.slots.clone();
        changed.sort_unstable();
        let stride = self.stride;
        let free_kept = log.free_low.min(self.free.len());
        let pushed = log.fifo_pushed.min(self.fifo.len());
        PendingDelta {
            slots_len: self.slots.len() as u64,
            slots: changed
                .into_iter()
                .map(|i| {
                    let s = &self.slots[i as usize];
                    let at = i as usize * stride;
                    let bytes = SlotBytes {
                        tx: s.tx,
                        meta: s.meta,
                        live: s.live,
                    };
                    (i, bytes, &self.values[at..at + stride])
                })
                .collect(),
            free_kept: free_kept as u64,
            free_added: self.free[free_kept..].to_vec(),
            fifo_len: self.fifo.len() as u64,
            fifo_added: self
                .fifo
                .range(self.fifo.len() - pushed..)
                .copied()
                .collect(),
            stats: self.stats,
            absorbed_len: self.absorbed_len as u64,
        }
    }

    /// Apply a checkpoint's delta to the store it was written after,
    /// checking every slot number and length against what is held.
    pub fn apply_delta(&mut self, d: PendingDelta<Vec<f32>>) -> Result<(), String> {
        let n = usize::try_from(d.slots_len).map_err(|e| e.to_string())?;
        let bad = |what: &str| Err(format!("pending store delta: {what}"));
        if n < self.slots.len() || n > self.slots.len() + d.slots.len() {
            return bad("slot count does not follow the previous checkpoint");
        }
        if d.slots
            .iter()
            .any(|(i, _, v)| *i as usize >= n || v.len() != self.stride)
            || d.free_added.iter().any(|&s| s as usize >= n)
            || d.fifo_added.iter().any(|e| e.0 as usize >= n)
        {
            return bad("a slot number beyond its slots, or values of another stride");
        }
        let free_kept = usize::try_from(d.free_kept).map_err(|e| e.to_string())?;
        let fifo_len = usize::try_from(d.fifo_len).map_err(|e| e.to_string())?;
        if free_kept > self.free.len() || self.fifo.len() + d.fifo_added.len() < fifo_len {
            return bad("free list or FIFO shorter than the previous checkpoint's");
        }
        let dead = Slot {
            tx: 0,
            meta: PendingMeta {
                card: 0,
                merchant: 0,
                ts: 0,
                cats: [0; CATEGORICALS],
                raw: 0.0,
            },
            live: false,
            changed: false,
        };
        self.slots.resize(n, dead);
        self.values.resize(n * self.stride, 0.0);
        for (i, b, v) in d.slots {
            let at = i as usize;
            let old = self.slots[at];
            if old.live && self.index.get(&old.tx) == Some(&i) {
                self.index.remove(&old.tx);
            }
            self.slots[at] = Slot {
                tx: b.tx,
                meta: b.meta,
                live: b.live,
                changed: false,
            };
            if b.live {
                self.index.insert(b.tx, i);
            }
            self.values[at * self.stride..(at + 1) * self.stride].copy_from_slice(&v);
        }
        self.free.truncate(free_kept);
        self.free.extend(d.free_added);
        self.fifo.extend(d.fifo_added);
        while self.fifo.len() > fifo_len {
            self.fifo.pop_front();
        }
        self.stats = d.stats;
        self.absorbed_len = usize::try_from(d.absorbed_len).map_err(|e| e.to_string())?;
        Ok(())
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
            cats: [1, 2, 3, 4, 5, 6, 7],
            raw: 0.25,
        }
    }

    fn vector(v: f32) -> FeatureVector {
        FeatureVector {
            dense: vec![v, v + 1.0],
            cats: [1, 2, 3, 4, 5, 6, 7],
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
