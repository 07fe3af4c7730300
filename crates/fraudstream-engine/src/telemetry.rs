//! What the card stage counts for its operators beyond [`EngineCounters`]:
//! the time each transaction takes to score, in the fixed buckets of a
//! Prometheus histogram, and the decisions given.
//!
//! Both are plain counters the stage bumps as it scores (a bucket found by
//! binary search over 16 bounds, two additions; no lock, no allocation); the
//! service copies them out at each tick and the metrics endpoint renders
//! them. Neither is part of a checkpoint: they describe this process, as a
//! Prometheus counter does (it starts again at a restart).
//!
//! [`EngineCounters`]: crate::engine::EngineCounters

use crate::decide::Decision;
use crate::Named as _;

/// Upper bounds of the score-latency buckets, in nanoseconds: 1 µs to
/// 100 ms in 1, 2.5, 5 steps. Scoring takes a few µs to tens of µs; the
/// upper buckets catch a stall (a page fault, a checkpoint's copy).
pub const SCORE_LATENCY_BOUNDS_NS: [u64; 16] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
];

const BUCKETS: usize = SCORE_LATENCY_BOUNDS_NS.len();

/// Per-transaction scoring time in the buckets of
/// [`SCORE_LATENCY_BOUNDS_NS`], with the exact count and sum: what a
/// Prometheus histogram exports (`_bucket{le}`, `_sum`, `_count`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScoreLatency {
    /// Transactions per bucket: `counts[i]` took more than bound `i - 1`
    /// and at most bound `i`; the last one, more than every bound.
    counts: [u64; BUCKETS + 1],
    sum_ns: u64,
}

impl Default for ScoreLatency {
    fn default() -> Self {
        Self::new()
    }
}

impl ScoreLatency {
    /// No transaction yet.
    pub const fn new() -> Self {
        ScoreLatency {
            counts: [0; BUCKETS + 1],
            sum_ns: 0,
        }
    }

    /// One transaction that took `ns` nanoseconds.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        let i = SCORE_LATENCY_BOUNDS_NS.partition_point(|&b| b < ns);
        self.counts[i] += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }

    /// Add another stage's transactions.
    pub fn add(&mut self, other: &ScoreLatency) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
    }

    /// Each bound (ns) with the transactions that took at most that long
    /// (Prometheus `le` buckets are cumulative); `+Inf` is [`count`](Self::count).
    pub fn cumulative(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        SCORE_LATENCY_BOUNDS_NS
            .iter()
            .zip(self.counts.iter().scan(0u64, |sum, c| {
                *sum += c;
                Some(*sum)
            }))
            .map(|(&b, c)| (b, c))
    }

    /// Transactions recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Their total time, in nanoseconds.
    pub fn sum_ns(&self) -> u64 {
        self.sum_ns
    }
}

/// Transactions given each [`Decision`] (a topology with `[decisions]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecisionCounts([u64; 3]);

impl DecisionCounts {
    /// One more `d`.
    #[inline]
    pub fn record(&mut self, d: Decision) {
        self.0[d as usize] += 1;
    }

    /// How many were given `d`.
    pub fn of(&self, d: Decision) -> u64 {
        self.0[d as usize]
    }

    /// Add another stage's decisions.
    pub fn add(&mut self, other: &DecisionCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// Add the decisions since `published` to the `metrics` registry
    /// (`fraudstream_decisions_total{decision}`), every decision named
    /// even at zero so a dashboard sees all three from the start.
    pub fn publish(&self, published: &DecisionCounts) {
        for &d in Decision::ALL {
            metrics::counter!("fraudstream_decisions_total", "decision" => d.name())
                .increment(self.of(d) - published.of(d));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_values_up_to_their_bound_and_the_sum_is_exact() {
        let mut l = ScoreLatency::new();
        for ns in [
            1,
            1_000,
            1_001,
            2_500,
            99_999_999,
            100_000_000,
            100_000_001,
            7_000,
        ] {
            l.record(ns);
        }
        let c: Vec<(u64, u64)> = l.cumulative().collect();
        assert_eq!(c[0], (1_000, 2), "1 ns and 1 µs are at most 1 µs");
        assert_eq!(c[1], (2_500, 4), "1,001 ns and 2,500 ns are at most 2.5 µs");
        assert_eq!(c[3], (10_000, 5), "7 µs");
        assert_eq!(c[15], (100_000_000, 7), "up to 100 ms");
        assert_eq!(l.count(), 8, "+Inf holds the one over every bound");
        assert_eq!(
            l.sum_ns(),
            1 + 1_000 + 1_001 + 2_500 + 99_999_999 + 100_000_000 + 100_000_001 + 7_000
        );
        let mut twice = l.clone();
        twice.add(&l);
        assert_eq!(twice.count(), 16);
        assert_eq!(twice.sum_ns(), 2 * l.sum_ns());
    }

    #[test]
    fn bounds_rise() {
        assert!(SCORE_LATENCY_BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn decisions_are_counted_by_kind() {
        let mut d = DecisionCounts::default();
        d.record(Decision::Review);
        d.record(Decision::Review);
        d.record(Decision::Decline);
        assert_eq!(d.of(Decision::Approve), 0);
        assert_eq!(d.of(Decision::Review), 2);
        assert_eq!(d.of(Decision::Decline), 1);
    }
}
