//! ADWIN drift detection: owns an adaptive window over a real-valued stream
//! and cuts its stale head when the recent mean has drifted away from it.
//!
//! This is ADWIN2 of Bifet & Gavaldà, "Learning from Time-Changing Data with
//! Adaptive Windowing" (SDM 2007): the window is an exponential histogram of
//! buckets (row `i` holds buckets summarising `2^i` values, at most
//! [`MAX_BUCKETS`] per row), so memory and the cost of a cut check are
//! `O(log width)`. The cut test and its constants follow River's `ADWIN`
//! (`river.drift.ADWIN`): a check every [`CLOCK`] updates once the window
//! holds more than [`GRACE_PERIOD`] values, both sub-windows at least
//! [`MIN_WINDOW_LENGTH`] long, and the variance-based bound
//! `eps = sqrt(2 * v * ln(2/δ') / m) + 2/3 * ln(2/δ') / m` with
//! `δ' = δ / ln(width)`, `1/m = 1/(n0 - L + 1) + 1/(n1 - L + 1)` (`L` the
//! minimum sub-window length) and `v` the variance of the whole window.
//! Unlike River, every bucket boundary is a candidate cut (River's loop skips
//! the newest bucket of each row); this is what the paper specifies.

use serde::{Deserialize, Serialize};

/// Buckets kept per row before the two oldest are merged into the next row
/// (the paper's `M`).
pub const MAX_BUCKETS: usize = 5;
/// Updates between two cut checks: a check costs `O(log width)`, and
/// checking every update finds a change only a few values sooner.
pub const CLOCK: u64 = 32;
/// Minimum length of each sub-window for a cut to be tested.
pub const MIN_WINDOW_LENGTH: u64 = 5;
/// No cut is tested until the window holds more than this many values.
pub const GRACE_PERIOD: u64 = 10;
/// Confidence used by [`Adwin::default`].
pub const DEFAULT_DELTA: f64 = 0.002;

/// The buckets of one row of the histogram, oldest first. Fixed arrays, so
/// inserting and merging never allocate.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Row {
    /// Buckets in use.
    len: usize,
    /// Sum of the values summarised by each bucket.
    totals: [f64; MAX_BUCKETS + 1],
    /// Sum of squared deviations from their mean of each bucket's values.
    m2s: [f64; MAX_BUCKETS + 1],
}

impl Row {
    fn push(&mut self, total: f64, m2: f64) {
        self.totals[self.len] = total;
        self.m2s[self.len] = m2;
        self.len += 1;
    }

    /// Drop the `k` oldest buckets.
    fn drop_oldest(&mut self, k: usize) {
        self.totals.copy_within(k..self.len, 0);
        self.m2s.copy_within(k..self.len, 0);
        self.len -= k;
    }
}

/// ADWIN change detector over a stream of real values (for example 0/1
/// errors or model scores).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Adwin {
    /// Confidence of the cut test: smaller means fewer false alarms and
    /// slower detection.
    delta: f64,
    /// `rows[i]` holds buckets of `2^i` values; the oldest values are in the
    /// last row. Never empty.
    rows: Vec<Row>,
    /// Number of values in the window.
    width: u64,
    /// Sum of the values in the window.
    total: f64,
    /// Sum of squared deviations from the window mean.
    m2: f64,
    /// Buckets in use over all rows.
    buckets: usize,
    /// Updates since the last cut check (or since creation).
    since_check: u64,
    /// Updates on which a change was detected.
    detections: u64,
}

impl Default for Adwin {
    fn default() -> Self {
        Adwin::new(DEFAULT_DELTA)
    }
}

impl Adwin {
    /// An empty detector with confidence `delta` in (0, 1).
    ///
    /// # Panics
    /// If `delta` is not in (0, 1).
    pub fn new(delta: f64) -> Self {
        assert!(
            delta > 0.0 && delta < 1.0,
            "ADWIN delta must be in (0, 1), got {delta}"
        );
        Adwin {
            delta,
            rows: vec![Row::default()],
            width: 0,
            total: 0.0,
            m2: 0.0,
            buckets: 0,
            since_check: 0,
            detections: 0,
        }
    }

    /// Add one value (e.g. 0/1 error, or a score); returns true when a change
    /// was detected (the window was cut). Non-finite values are ignored (and
    /// return false): one NaN would otherwise poison every later mean.
    pub fn update(&mut self, x: f64) -> bool {
        if !x.is_finite() {
            return false;
        }
        self.insert(x);
        self.detect_change()
    }

    /// Mean of the values in the window (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.width == 0 {
            0.0
        } else {
            self.total / self.width as f64
        }
    }

    /// Number of values in the window.
    pub fn width(&self) -> u64 {
        self.width
    }

    /// Population variance of the values in the window (0 when empty).
    pub fn variance(&self) -> f64 {
        if self.width == 0 {
            0.0
        } else {
            self.m2 / self.width as f64
        }
    }

    /// Number of updates on which a change was detected.
    pub fn detections(&self) -> u64 {
        self.detections
    }

    /// Confidence of the cut test.
    pub fn delta(&self) -> f64 {
        self.delta
    }

    /// Number of histogram buckets held (the memory in use, `O(log width)`).
    pub fn buckets(&self) -> usize {
        self.buckets
    }

    fn insert(&mut self, x: f64) {
        self.width += 1;
        if self.width > 1 {
            // Welford update of the window's sum of squared deviations.
            let w = self.width as f64;
            let d = x - self.total / (w - 1.0);
            self.m2 += (w - 1.0) * d * d / w;
        }
        self.total += x;
        self.rows[0].push(x, 0.0);
        self.buckets += 1;
        self.compress();
    }

    /// Merge the two oldest buckets of every overfull row into the next row,
    /// cascading upwards.
    fn compress(&mut self) {
        let mut i = 0;
        while self.rows[i].len > MAX_BUCKETS {
            if i + 1 == self.rows.len() {
                self.rows.push(Row::default());
            }
            let n = (1u64 << i) as f64;
            let row = &self.rows[i];
            let (t0, t1) = (row.totals[0], row.totals[1]);
            let d = (t0 - t1) / n;
            // Chan et al. combination of two equal-sized groups.
            let m2 = row.m2s[0] + row.m2s[1] + n * d * d / 2.0;
            self.rows[i].drop_oldest(2);
            self.rows[i + 1].push(t0 + t1, m2);
            self.buckets -= 1;
            i += 1;
        }
    }

    /// Drop the oldest bucket from the window.
    fn delete_oldest(&mut self) {
        let last = self.rows.len() - 1;
        let n = 1u64 << last;
        let u = self.rows[last].totals[0];
        let v = self.rows[last].m2s[0];
        self.width -= n;
        self.total -= u;
        let (nf, wf) = (n as f64, self.width as f64);
        let d = u / nf - self.total / wf;
        // Clamped: rounding must not leave a (tiny) negative variance.
        self.m2 = (self.m2 - v - nf * wf * d * d / (nf + wf)).max(0.0);
        self.rows[last].drop_oldest(1);
        self.buckets -= 1;
        if self.rows[last].len == 0 && last > 0 {
            self.rows.pop();
        }
    }

    /// Every [`CLOCK`] updates, drop the oldest bucket while some split of
    /// the window into old `W0` and recent `W1` has means further apart than
    /// the cut bound.
    fn detect_change(&mut self) -> bool {
        self.since_check += 1;
        if self.since_check < CLOCK {
            return false;
        }
        self.since_check = 0;
        if self.width <= GRACE_PERIOD {
            return false;
        }
        let mut changed = false;
        while self.find_cut() {
            changed = true;
            self.delete_oldest();
        }
        if changed {
            self.detections += 1;
        }
        changed
    }

    /// Whether some bucket boundary splits the window into two sub-windows
    /// whose means differ by more than the cut bound.
    fn find_cut(&self) -> bool {
        let (mut n0, mut u0) = (0.0, 0.0);
        let (mut n1, mut u1) = (self.width as f64, self.total);
        let min = MIN_WINDOW_LENGTH as f64;
        for (i, row) in self.rows.iter().enumerate().rev() {
            let n2 = (1u64 << i) as f64;
            for k in 0..row.len {
                let u2 = row.totals[k];
                n0 += n2;
                n1 -= n2;
                u0 += u2;
                u1 -= u2;
                if i == 0 && k + 1 == row.len {
                    return false; // W1 would be empty.
                }
                if n0 >= min && n1 >= min && self.cut_holds(n0, n1, u0 / n0 - u1 / n1) {
                    return true;
                }
            }
        }
        false
    }

    fn cut_holds(&self, n0: f64, n1: f64, delta_mean: f64) -> bool {
        let w = self.width as f64;
        let log_term = (2.0 * w.ln() / self.delta).ln();
        let min = MIN_WINDOW_LENGTH as f64;
        let m_recip = 1.0 / (n0 - min + 1.0) + 1.0 / (n1 - min + 1.0);
        let eps =
            (2.0 * m_recip * self.variance() * log_term).sqrt() + 2.0 / 3.0 * log_term * m_recip;
        delta_mean.abs() > eps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn bernoulli(rng: &mut ChaCha8Rng, p: f64) -> f64 {
        if rng.gen::<f64>() < p {
            1.0
        } else {
            0.0
        }
    }

    /// Bucket sizes add up to the width and totals to the window sum.
    fn check_invariants(a: &Adwin) {
        let mut width = 0u64;
        let mut total = 0.0;
        let mut buckets = 0usize;
        for (i, row) in a.rows.iter().enumerate() {
            assert!(row.len <= MAX_BUCKETS);
            width += (1u64 << i) * row.len as u64;
            total += row.totals[..row.len].iter().sum::<f64>();
            buckets += row.len;
        }
        assert_eq!(width, a.width);
        assert_eq!(buckets, a.buckets);
        assert!((total - a.total).abs() < 1e-6 * (1.0 + a.total.abs()));
    }

    #[test]
    fn mean_and_variance_match_naive_before_any_cut() {
        let xs = [0.5, 2.0, -1.0, 3.5, 0.0, 7.25, 1.0, 1.0, 2.0];
        let mut a = Adwin::default();
        for &x in &xs {
            assert!(!a.update(x));
        }
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        assert_eq!(a.width(), xs.len() as u64);
        assert!((a.mean() - mean).abs() < 1e-12);
        assert!((a.variance() - var).abs() < 1e-12);
        check_invariants(&a);
    }

    #[test]
    fn empty_detector_is_zero_and_ignores_non_finite() {
        let mut a = Adwin::default();
        assert_eq!((a.mean(), a.variance(), a.width()), (0.0, 0.0, 0));
        assert!(!a.update(f64::NAN));
        assert!(!a.update(f64::INFINITY));
        assert_eq!(a.width(), 0);
        a.update(1.0);
        assert_eq!((a.mean(), a.width()), (1.0, 1));
    }

    #[test]
    fn stationary_stream_raises_at_most_one_false_alarm() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut a = Adwin::default();
        for _ in 0..20_000 {
            a.update(bernoulli(&mut rng, 0.2));
        }
        assert!(a.detections() <= 1, "{} false alarms", a.detections());
        assert!((a.mean() - 0.2).abs() < 0.05, "mean {}", a.mean());
        check_invariants(&a);
    }

    #[test]
    fn abrupt_change_is_detected_quickly_and_the_window_follows() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut a = Adwin::default();
        let mut first_after = None;
        for t in 0..10_000u64 {
            let p = if t < 5_000 { 0.2 } else { 0.8 };
            let before = a.width();
            if a.update(bernoulli(&mut rng, p)) {
                assert!(a.width() < before + 1, "a cut must shrink the window");
                if t >= 5_000 && first_after.is_none() {
                    first_after = Some(t);
                    assert!(a.width() < t + 1);
                }
            }
            check_invariants(&a);
        }
        let t = first_after.expect("change not detected");
        assert!(t < 5_500, "detected at {t}, more than 500 values late");
        assert!((a.mean() - 0.8).abs() < 0.05, "mean {}", a.mean());
        // The window now holds (about) the new regime only.
        assert!(a.width() <= 5_000 + 64, "width {}", a.width());
    }

    #[test]
    fn memory_stays_logarithmic() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut a = Adwin::default();
        for _ in 0..1_000_000 {
            a.update(bernoulli(&mut rng, 0.2));
        }
        assert!(a.buckets() < 200, "{} buckets", a.buckets());
        assert!(a.rows.len() <= 64 - a.width().leading_zeros() as usize);
        check_invariants(&a);
    }

    #[test]
    fn serde_round_trip_continues_identically() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut a = Adwin::new(0.01);
        for _ in 0..3_000 {
            a.update(bernoulli(&mut rng, 0.3));
        }
        let mut b: Adwin = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        for t in 0..3_000 {
            let x = bernoulli(&mut rng, if t < 1_000 { 0.3 } else { 0.9 });
            assert_eq!(a.update(x), b.update(x));
            assert_eq!(a.mean().to_bits(), b.mean().to_bits());
            assert_eq!(a.width(), b.width());
        }
        assert_eq!(a.detections(), b.detections());
    }

    proptest! {
        #[test]
        fn window_stats_stay_consistent(xs in prop::collection::vec(-1e6f64..1e6, 1..600)) {
            let mut a = Adwin::default();
            for &x in &xs {
                a.update(x);
            }
            let lo = xs.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let slack = 1e-9 * (1.0 + lo.abs().max(hi.abs()));
            prop_assert!(a.width() >= 1 && a.width() <= xs.len() as u64);
            prop_assert!(a.mean() >= lo - slack && a.mean() <= hi + slack);
            prop_assert!(a.variance().is_finite() && a.variance() >= 0.0);
            check_invariants(&a);
        }
    }
}
