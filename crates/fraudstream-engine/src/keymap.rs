//! Maps keyed by 64-bit entity keys, safe against chosen keys, the
//! least-recently-seen eviction that caps them, and the list of keys
//! changed since the last checkpoint ([`ChangedKeys`], [`KeyedDelta`]).
//!
//! Keys are hashes of ids the outside world chooses (card, merchant and
//! transaction ids). `key_of` is seedless, so it is the same on every machine
//! and run (routing and scores depend on it); anyone can compute it. A map
//! that used the key itself as its hash (as `nohash` does) would let a
//! producer pick ids whose keys share their low bits and pile them into one
//! bucket chain (hash flooding). [`SeededKeys`] mixes each key with a random
//! per-map seed through a 128-bit folded multiply (foldhash's construction):
//! bucket placement is unpredictable without the seed, at the cost of one
//! multiplication per lookup.
//!
//! The seed changes only where entries sit, never what they hold, so it need
//! not be saved: snapshots write entries sorted by key (see
//! [`sorted_entries`]), the same bytes whatever the seed.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// A map from entity keys to `V` with a seeded hash.
pub type KeyMap<V> = HashMap<u64, V, SeededKeys>;

/// Builds [`KeyHasher`]s with this map's random seed.
#[derive(Clone, Copy, Debug)]
pub struct SeededKeys {
    seed: u64,
}

impl Default for SeededKeys {
    /// A fresh random seed (from the standard library's per-process keys).
    fn default() -> Self {
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        SeededKeys { seed }
    }
}

impl BuildHasher for SeededKeys {
    type Hasher = KeyHasher;
    #[inline]
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            seed: self.seed,
            hash: 0,
        }
    }
}

/// Hashes one `u64` key (other input falls back to xxh3 with the seed).
#[derive(Clone, Copy, Debug)]
pub struct KeyHasher {
    seed: u64,
    hash: u64,
}

/// Odd constants with well-spread bits (the golden ratio's, and pi's).
const MIX: u64 = 0x9e37_79b9_7f4a_7c15;
const MIX2: u64 = 0x243f_6a88_85a3_08d3;

#[inline]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Hasher for KeyHasher {
    #[inline]
    fn write_u64(&mut self, key: u64) {
        // Two rounds: one folded multiply leaves keys that differ only in
        // their high bits in too few buckets.
        let h = folded_multiply(key ^ self.seed, MIX);
        self.hash = folded_multiply(h ^ self.seed.rotate_left(32), MIX2);
    }

    fn write(&mut self, bytes: &[u8]) {
        self.hash = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.seed ^ self.hash);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// An empty map with a fresh seed.
pub fn key_map<V>() -> KeyMap<V> {
    HashMap::with_hasher(SeededKeys::default())
}

/// An empty map with a fresh seed and room for `capacity` entries.
pub fn key_map_with_capacity<V>(capacity: usize) -> KeyMap<V> {
    HashMap::with_capacity_and_hasher(capacity, SeededKeys::default())
}

/// The entries of `map` sorted by key: the same sequence whatever the seed
/// (for snapshots and anything else that must not depend on it).
pub fn sorted_entries<V>(map: &KeyMap<V>) -> Vec<(u64, &V)> {
    let mut v: Vec<(u64, &V)> = map.iter().map(|(k, v)| (*k, v)).collect();
    v.sort_unstable_by_key(|e| e.0);
    v
}

/// When `map` holds `cap` entries or more and `incoming` is not one of them,
/// drop the least recently seen (by `last_seen`, ties by key, so the choice
/// does not depend on the seed) down to `cap - cap / 16`, making room for
/// `incoming`; returns how many were dropped. The selection is linear in the
/// map's size and runs once per `cap / 16` new entries: constant time per
/// entry amortised, with a transient list of 16 bytes per entry.
pub fn make_room<V>(
    map: &mut KeyMap<V>,
    cap: usize,
    incoming: u64,
    last_seen: impl Fn(&V) -> i64,
    mut dropped: impl FnMut(u64),
) -> usize {
    if map.len() < cap || map.contains_key(&incoming) {
        return 0;
    }
    let keep = cap.saturating_sub(1).min(cap - cap / 16);
    let excess = map.len() - keep;
    let mut ages: Vec<(i64, u64)> = map.iter().map(|(k, v)| (last_seen(v), *k)).collect();
    if excess < ages.len() {
        ages.select_nth_unstable(excess);
    }
    for &(_, k) in &ages[..excess] {
        map.remove(&k);
        dropped(k);
    }
    excess
}

/// The keys of a map whose entries changed (added, updated or removed)
/// since the last checkpoint, for an incremental one. Each entry carries a
/// `changed` flag, so an entry updated a thousand times is listed once: the
/// hot path pays a branch and, the first time only, a push onto a vector
/// whose room is kept from one checkpoint to the next. A removed entry has
/// no flag left and is listed each time (duplicates are dropped when the
/// list is taken). Nothing is listed until tracking starts.
#[derive(Debug, Default)]
pub struct ChangedKeys {
    keys: Vec<u64>,
    tracking: bool,
}

impl ChangedKeys {
    /// Note that the entry of `key` (whose flag is `changed`) changed.
    #[inline]
    pub fn touch(&mut self, changed: &mut bool, key: u64) {
        if self.tracking && !*changed {
            *changed = true;
            self.keys.push(key);
        }
    }

    /// Note a change of the entry of `key` without its flag: its removal,
    /// or any change in a map whose entries carry no flag (listed each time).
    #[inline]
    pub fn note(&mut self, key: u64) {
        if self.tracking {
            self.keys.push(key);
        }
    }

    /// Whether changes are being listed.
    pub fn tracking(&self) -> bool {
        self.tracking
    }

    /// The keys listed since the last call (or since tracking started),
    /// sorted and without duplicates; the list starts again, empty, and
    /// tracking is on from now. The caller clears the listed entries' flags.
    pub fn take(&mut self) -> Vec<u64> {
        self.tracking = true;
        let mut keys = std::mem::take(&mut self.keys);
        keys.sort_unstable();
        keys.dedup();
        self.keys = Vec::with_capacity(keys.capacity());
        keys
    }

    /// Stop listing (the next checkpoint must hold the map whole).
    pub fn stop(&mut self) {
        self.tracking = false;
        self.keys = Vec::new();
    }
}

/// What changed in a keyed map between two checkpoints: the entries added
/// or updated (sorted by key) and the keys removed.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct KeyedDelta<V> {
    /// Entries added or updated since the previous checkpoint.
    pub upserts: Vec<(u64, V)>,
    /// Keys held at the previous checkpoint and removed since.
    pub removed: Vec<u64>,
}

impl<'a, V> KeyedDelta<&'a V> {
    /// The delta of `map` for the `changed` keys (sorted).
    pub fn of(map: &'a KeyMap<V>, changed: &[u64]) -> Self {
        let mut d = KeyedDelta {
            upserts: Vec::new(),
            removed: Vec::new(),
        };
        for &k in changed {
            match map.get(&k) {
                Some(v) => d.upserts.push((k, v)),
                None => d.removed.push(k),
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sharing_their_low_bits_spread_over_buckets() {
        // Keys a flooder would choose: identical in their low 32 bits.
        // Random placement fills about 1 - 1/e (63 %) of 1,024 buckets with
        // 1,000 keys; a weak mix fills far fewer. Over many seeds.
        for _ in 0..200 {
            let s = SeededKeys::default();
            for shift in [0, 20, 32, 54] {
                let mut buckets = std::collections::HashSet::new();
                for i in 0..1_000u64 {
                    let mut h = s.build_hasher();
                    h.write_u64(i << shift);
                    buckets.insert(h.finish() & 1023);
                }
                assert!(
                    buckets.len() > 560,
                    "shift {shift}: {} of 1024 buckets",
                    buckets.len()
                );
            }
        }
    }

    #[test]
    fn two_maps_place_keys_differently_but_hold_the_same() {
        let (mut a, mut b) = (key_map(), key_map());
        for k in 0..100u64 {
            a.insert(k * 7919, k);
            b.insert(k * 7919, k);
        }
        assert_eq!(sorted_entries(&a), sorted_entries(&b));
    }

    #[test]
    fn the_least_recently_seen_make_room() {
        let mut m: KeyMap<i64> = key_map();
        for k in 0..32u64 {
            m.insert(k, 100 - k as i64); // key 31 is the least recently seen
        }
        let mut gone = Vec::new();
        assert_eq!(
            make_room(&mut m, 64, 99, |&t| t, |_| {}),
            0,
            "under the cap"
        );
        assert_eq!(make_room(&mut m, 32, 5, |&t| t, |_| {}), 0, "already held");
        let n = make_room(&mut m, 32, 99, |&t| t, |k| gone.push(k));
        assert_eq!(n, 2, "down to 30 of 32");
        gone.sort_unstable();
        assert_eq!(gone, [30, 31], "the dropped keys are reported");
        assert_eq!(m.len(), 30);
        assert!(!m.contains_key(&31) && !m.contains_key(&30) && m.contains_key(&29));
        let mut one: KeyMap<i64> = key_map();
        one.insert(1, 0);
        assert_eq!(
            make_room(&mut one, 1, 2, |&t| t, |_| {}),
            1,
            "a cap of one keeps room for one"
        );
        assert!(one.is_empty());
    }
}
