//! Event-time sliding windows as bucketed ring buffers, one set per entity.
//!
//! A window of horizon `H` with `B` buckets keeps `B` slots of width `H / B`.
//! Bucket index `b = floor(ts / width)`. The window queried at time `t` covers
//! buckets `[b(t) - B + 1, b(t)]`, intersected with what the ring still holds.
//! An entity's newest bucket follows the largest timestamp it has seen
//! (`latest`), so all horizons of an entity share one `i64` of position.
//!
//! Update is O(1) (one slot per horizon, plus clearing the slots the ring
//! advances over, at most `B`); a query reads `B` slots per horizon. `B` is a
//! small constant fixed by configuration, so both are O(1) in stream length.
//! Totals are summed at query time rather than kept running: no float drift
//! from repeated subtraction, and `max` needs the slots anyway.
//!
//! Events older than the ring (more than one horizon behind `latest`) are
//! outside that horizon by definition and are not counted in it.
//!
//! Timestamps are epoch milliseconds and must not be negative (the sources
//! reject times before 1970). Bucket widths and counts are divided by through
//! precomputed reciprocals: a hardware 64-bit division costs tens of cycles
//! and the per-event path needs several per horizon.

use strength_reduce::StrengthReducedU64;

/// One window: a horizon split into buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    /// Horizon in milliseconds.
    pub horizon_ms: i64,
    /// Number of buckets (ring slots).
    pub buckets: u32,
}

impl WindowSpec {
    /// Width of one bucket in milliseconds (at least 1).
    pub fn width_ms(&self) -> i64 {
        (self.horizon_ms / self.buckets as i64).max(1)
    }
}

/// Aggregate of the events in one bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bucket {
    /// Number of events.
    pub count: u32,
    /// Auxiliary count (meaning set by the owner: new merchants, frauds, ...).
    pub aux: u32,
    /// Sum of values.
    pub sum: f32,
    /// Largest value.
    pub max: f32,
}

/// What a window query returns.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WindowStats {
    /// Number of events in the window.
    pub count: u32,
    /// Auxiliary count in the window.
    pub aux: u32,
    /// Sum of values.
    pub sum: f64,
    /// Largest value (0 when empty).
    pub max: f32,
}

impl WindowStats {
    /// Mean value, or `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

/// The shape shared by every entity of one kind: the list of windows and where
/// each one's slots start in the entity's slot array.
#[derive(Clone, Debug)]
pub struct WindowLayout {
    specs: Vec<WindowSpec>,
    rings: Vec<Ring>,
    total: usize,
}

/// One horizon's ring, with its divisors prepared.
#[derive(Clone, Copy, Debug)]
struct Ring {
    width: StrengthReducedU64,
    buckets: StrengthReducedU64,
    len: i64,
    offset: usize,
}

impl Ring {
    /// Bucket index of a timestamp; one before 1970 counts as 1970 (the
    /// engine's gate refuses those, but the windows stay defined for any).
    #[inline]
    fn bucket(&self, ts: i64) -> i64 {
        (ts.max(0) as u64 / self.width) as i64
    }

    /// Slot of a bucket index in the ring.
    #[inline]
    fn slot(&self, idx: i64) -> usize {
        self.offset + (idx as u64 % self.buckets) as usize
    }
}

impl WindowLayout {
    /// Layout for these windows, in the given order.
    pub fn new(specs: &[WindowSpec]) -> Self {
        let mut rings = Vec::with_capacity(specs.len());
        let mut total = 0usize;
        for s in specs {
            assert!(s.buckets > 0 && s.horizon_ms > 0, "invalid window {s:?}");
            rings.push(Ring {
                width: StrengthReducedU64::new(s.width_ms() as u64),
                buckets: StrengthReducedU64::new(s.buckets as u64),
                len: s.buckets as i64,
                offset: total,
            });
            total += s.buckets as usize;
        }
        WindowLayout {
            specs: specs.to_vec(),
            rings,
            total,
        }
    }

    /// The windows.
    pub fn specs(&self) -> &[WindowSpec] {
        &self.specs
    }

    /// Number of slots an entity needs.
    pub fn slots(&self) -> usize {
        self.total
    }

    /// A fresh, empty window set for one entity.
    pub fn new_set(&self) -> WindowSet {
        WindowSet {
            latest: i64::MIN,
            slots: vec![Bucket::default(); self.total].into_boxed_slice(),
        }
    }
}

/// The windows of one entity: its newest timestamp and all ring slots in one
/// allocation (made once, when the entity first appears).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct WindowSet {
    latest: i64,
    slots: Box<[Bucket]>,
}

impl WindowSet {
    /// Number of buckets held (all horizons).
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Newest timestamp observed (`i64::MIN` if none).
    pub fn latest(&self) -> i64 {
        self.latest
    }

    /// Heap bytes held by this set.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }

    /// Move the rings forward to `ts` if it is newer than anything seen,
    /// clearing the slots that fall out. Older `ts` change nothing.
    pub fn advance(&mut self, layout: &WindowLayout, ts: i64) {
        if ts <= self.latest {
            return;
        }
        let old = self.latest;
        self.latest = ts;
        for r in &layout.rings {
            let ring = r.offset..r.offset + r.len as usize;
            if old == i64::MIN {
                self.slots[ring].fill(Bucket::default());
                continue;
            }
            let (old_head, new_head) = (r.bucket(old), r.bucket(ts));
            if new_head - old_head >= r.len {
                self.slots[ring].fill(Bucket::default());
            } else if new_head > old_head {
                let mut slot = r.slot(old_head + 1);
                for _ in old_head..new_head {
                    self.slots[slot] = Bucket::default();
                    slot += 1;
                    if slot == ring.end {
                        slot = ring.start;
                    }
                }
            }
        }
    }

    /// Add one event at `ts` with `value` (and `aux` added to the auxiliary
    /// count). Advances first; an event older than a horizon's ring is not
    /// counted in that horizon.
    pub fn add(&mut self, layout: &WindowLayout, ts: i64, value: f32, aux: u32) {
        self.advance(layout, ts);
        let latest = self.latest;
        for r in &layout.rings {
            let head = r.bucket(latest);
            let idx = r.bucket(ts);
            if idx <= head - r.len {
                continue;
            }
            let slot = &mut self.slots[r.slot(idx)];
            if slot.count == 0 || value > slot.max {
                slot.max = value;
            }
            slot.count = slot.count.saturating_add(1);
            slot.aux = slot.aux.saturating_add(aux);
            slot.sum += value;
        }
    }

    /// Statistics of window `i` (index into the layout) as seen at time `t`.
    pub fn query(&self, layout: &WindowLayout, i: usize, t: i64) -> WindowStats {
        let r = &layout.rings[i];
        let mut out = WindowStats::default();
        if self.latest == i64::MIN {
            return out;
        }
        let head = r.bucket(self.latest);
        let tb = r.bucket(t);
        let hi = tb.min(head);
        let lo = (tb - r.len + 1).max(head - r.len + 1).max(0);
        if hi < lo {
            return out;
        }
        let end = r.offset + r.len as usize;
        let mut slot = r.slot(lo);
        let mut max_set = false;
        for _ in lo..=hi {
            let s = &self.slots[slot];
            slot += 1;
            if slot == end {
                slot = r.offset;
            }
            if s.count == 0 {
                continue;
            }
            out.count += s.count;
            out.aux += s.aux;
            out.sum += s.sum as f64;
            if !max_set || s.max > out.max {
                out.max = s.max;
                max_set = true;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: i64 = 60_000;

    fn layout() -> WindowLayout {
        WindowLayout::new(&[
            WindowSpec {
                horizon_ms: 10 * MIN,
                buckets: 5,
            },
            WindowSpec {
                horizon_ms: 60 * MIN,
                buckets: 4,
            },
        ])
    }

    #[test]
    fn counts_sums_and_max_within_horizon() {
        let l = layout();
        let mut w = l.new_set();
        w.add(&l, 0, 10.0, 1);
        w.add(&l, MIN, 5.0, 0);
        w.add(&l, 3 * MIN, 7.0, 1);
        let s = w.query(&l, 0, 3 * MIN);
        assert_eq!(s.count, 3);
        assert_eq!(s.aux, 2);
        assert_eq!(s.sum, 22.0);
        assert_eq!(s.max, 10.0);
        assert_eq!(s.mean(), Some(22.0 / 3.0));
    }

    #[test]
    fn old_buckets_expire_as_time_moves() {
        let l = layout();
        let mut w = l.new_set();
        w.add(&l, 0, 10.0, 0);
        w.add(&l, 9 * MIN, 1.0, 0);
        // 10-minute window, 2-minute buckets: at t=10min, bucket 0 is out.
        w.advance(&l, 10 * MIN);
        let s = w.query(&l, 0, 10 * MIN);
        assert_eq!((s.count, s.sum, s.max), (1, 1.0, 1.0));
        // The 1-hour window still has both.
        assert_eq!(w.query(&l, 1, 10 * MIN).count, 2);
        // Far in the future everything is gone.
        w.advance(&l, 1000 * MIN);
        assert_eq!(w.query(&l, 1, 1000 * MIN), WindowStats::default());
    }

    #[test]
    fn late_event_lands_in_its_own_bucket() {
        let l = layout();
        let mut w = l.new_set();
        w.add(&l, 8 * MIN, 1.0, 0);
        w.add(&l, MIN, 2.0, 0); // out of order, still within the 10-minute ring
        assert_eq!(w.query(&l, 0, 8 * MIN).count, 2);
        // Queried at 1 minute, only the late event's bucket is in range.
        assert_eq!(w.query(&l, 0, MIN).count, 1);
        // An event older than the ring is not counted in the short window.
        w.add(&l, 30 * MIN, 3.0, 0);
        w.add(&l, 10 * MIN, 4.0, 0); // 20 minutes behind: outside the 10-minute ring
        assert_eq!(w.query(&l, 0, 30 * MIN).count, 1);
        assert_eq!(w.query(&l, 1, 30 * MIN).count, 4);
    }

    #[test]
    fn empty_set_reports_nothing() {
        let l = layout();
        let w = l.new_set();
        assert_eq!(w.query(&l, 0, 0), WindowStats::default());
        assert_eq!(w.query(&l, 0, 0).mean(), None);
        assert_eq!(w.heap_bytes(), 9 * std::mem::size_of::<Bucket>());
    }

    /// The naive definition: every accepted event whose bucket lies in
    /// `[b(t) - B + 1, b(t)]` and not behind the ring of the newest time seen.
    fn naive(
        events: &[(i64, f32, u32)],
        latest: i64,
        spec: WindowSpec,
        t: i64,
    ) -> (u32, u32, f64, f32) {
        let w = spec.width_ms();
        let b = spec.buckets as i64;
        let head = latest.div_euclid(w);
        let lo = (t.div_euclid(w) - b + 1).max(head - b + 1);
        let hi = t.div_euclid(w).min(head);
        let mut out = (0u32, 0u32, 0f64, 0f32);
        let mut first = true;
        for &(ts, v, a) in events {
            let idx = ts.div_euclid(w);
            if idx >= lo && idx <= hi {
                out.0 += 1;
                out.1 += a;
                out.2 += v as f64;
                if first || v > out.3 {
                    out.3 = v;
                    first = false;
                }
            }
        }
        out
    }

    proptest! {
        #[test]
        fn matches_naive_recomputation(
            horizon_min in 1i64..120,
            buckets in 1u32..9,
            steps in proptest::collection::vec((-30i64..90, 1u32..10_000, 0u32..3, -60i64..60), 1..200),
        ) {
            let spec = WindowSpec { horizon_ms: horizon_min * MIN, buckets };
            let l = WindowLayout::new(&[spec]);
            let mut w = l.new_set();
            let mut accepted: Vec<(i64, f32, u32)> = Vec::new();
            let mut clock = 1_000 * MIN; // epoch ms are never negative
            let mut latest = i64::MIN;
            for (dt_sec, cents, aux, query_back_sec) in steps {
                // Mostly forward time, sometimes out of order.
                clock += dt_sec * 1000;
                let ts = clock;
                let v = cents as f32 / 100.0;
                w.add(&l, ts, v, aux);
                latest = latest.max(ts);
                // Events behind the ring at insertion are dropped; record the
                // same in the naive model.
                let wd = spec.width_ms();
                if ts.div_euclid(wd) > latest.div_euclid(wd) - buckets as i64 {
                    accepted.push((ts, v, aux));
                }
                let t = latest - query_back_sec.abs() * 1000;
                let got = w.query(&l, 0, t);
                let (c, a, s, m) = naive(&accepted, latest, spec, t);
                prop_assert_eq!(got.count, c);
                prop_assert_eq!(got.aux, a);
                prop_assert!((got.sum - s).abs() <= 1e-3 * (1.0 + s.abs()), "sum {} vs {}", got.sum, s);
                prop_assert_eq!(got.max, if c == 0 { 0.0 } else { m });
            }
        }
    }
}
