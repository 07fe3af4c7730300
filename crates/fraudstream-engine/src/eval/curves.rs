//! What a report draws from one evaluator: the ROC and precision-recall
//! curves, the score distribution of each class and the threshold table a
//! fraud team sets its threshold by (precision, recall, alerts per day, the
//! fraud amount caught against the amount reviewed).
//!
//! Everything derives from one list of tie groups (all evaluated
//! transactions of one score, best score first): from the records held, or
//! from the score histograms when a day of the range was compacted, where
//! scores in one bin count as tied and amounts are unknown (`approximate`).

use super::compact::{ScoreBins, BINS, LOGIT_RANGE};
use super::norm;
use serde::{Deserialize, Serialize};

/// A point of a curve: `[x, y]`.
pub type CurvePoint = [f64; 2];

/// Consecutive points of a curve are kept at least this far apart (in
/// `|dx| + |dy|`): at most a few thousand points, and the trapezoids under
/// the ROC points stay within 1e-3 of the exact area (a chord between two
/// kept points misses at most `dx * dy / 2` of the curve, which sums to at
/// most `STEP / 4` over the curve).
const STEP: f64 = 0.002;

/// Bins of [`ScoreDistribution`].
pub const DISTRIBUTION_BINS: usize = 50;

/// Score thresholds every threshold table lists.
const GRID: [f64; 12] = [
    0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01,
];
/// Shares of the transactions alerted whose thresholds the table lists too
/// (the "review the top 1 %" way of choosing).
const TOP_SHARES: [f64; 5] = [0.001, 0.005, 0.01, 0.02, 0.05];

/// Curves and tables of an evaluator over a range of days.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Curves {
    /// ROC curve, `[false positive rate, true positive rate]` from `[0, 0]`
    /// to `[1, 1]` (empty when a class is absent).
    pub roc: Vec<CurvePoint>,
    /// Precision-recall curve, `[recall, precision]` by falling threshold
    /// (empty without fraud).
    pub pr: Vec<CurvePoint>,
    /// ROC AUC of the full curve (ties as diagonal steps).
    pub roc_auc: Option<f64>,
    /// Average precision of the full curve.
    pub average_precision: Option<f64>,
    /// Evaluated frauds.
    pub frauds: u64,
    /// Evaluated genuine transactions.
    pub genuine: u64,
    /// Summed amount of the evaluated frauds (`None` when approximate).
    pub fraud_amount: Option<f64>,
    /// Days the range spans (first to last day with a transaction).
    pub days: u64,
    /// Built from score histograms (a day of the range was compacted):
    /// scores within a bin count as tied and amounts are unknown.
    pub approximate: bool,
    /// Scores of each class.
    pub distribution: ScoreDistribution,
    /// One row per candidate threshold, highest threshold first.
    pub thresholds: Vec<ThresholdRow>,
}

/// Evaluated transactions per class in [`DISTRIBUTION_BINS`] bins of equal
/// width over [0, 1] (bin `i` holds scores in `[i/n, (i+1)/n)`, the last
/// one 1.0 too).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreDistribution {
    /// Frauds per bin.
    pub fraud: Vec<u64>,
    /// Genuine transactions per bin.
    pub genuine: Vec<u64>,
}

/// What alerting at one threshold (`score >= threshold`) would have given
/// over the range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThresholdRow {
    /// The threshold.
    pub threshold: f64,
    /// Why it is listed: `"score"` (a round threshold), `"topology"` (the
    /// alert threshold in force) or `"top 1%"` (the score that alerts that
    /// share of the transactions), joined by `", "` when several agree.
    pub rule: String,
    /// Transactions alerted.
    pub alerts: u64,
    /// Alerts per day of the range.
    pub alerts_per_day: f64,
    /// Frauds among the alerts / alerts (`None` without alerts).
    pub precision: Option<f64>,
    /// Frauds alerted / frauds (`None` without fraud).
    pub recall: Option<f64>,
    /// Frauds alerted.
    pub frauds_caught: u64,
    /// Summed amount of the frauds alerted (`None` when approximate).
    pub fraud_amount_caught: Option<f64>,
    /// Summed amount of every alerted transaction: what analysts review
    /// (`None` when approximate).
    pub amount_reviewed: Option<f64>,
}

/// The evaluated transactions of one score.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct TieGroup {
    pub score: f64,
    pub frauds: u64,
    pub genuine: u64,
    pub fraud_amount: f64,
    pub amount: f64,
}

/// Tie groups of `(score, amount, is_fraud)` records, best score first.
pub(super) fn groups_of_records(mut recs: Vec<(f32, f32, bool)>) -> Vec<TieGroup> {
    for r in &mut recs {
        r.0 = norm(r.0);
    }
    recs.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    let mut out: Vec<TieGroup> = Vec::new();
    let mut last = f32::NAN;
    for (score, amount, fraud) in recs {
        if score != last || out.is_empty() {
            out.push(TieGroup {
                score: f64::from(score),
                ..TieGroup::default()
            });
            last = score;
        }
        let g = out.last_mut().expect("pushed");
        let amount = f64::from(amount);
        g.amount += amount;
        if fraud {
            g.frauds += 1;
            g.fraud_amount += amount;
        } else {
            g.genuine += 1;
        }
    }
    out
}

/// Tie groups of a score histogram (one per non-empty bin, at the score of
/// its centre), best score first.
pub(super) fn groups_of_bins(bins: &ScoreBins) -> Vec<TieGroup> {
    let (fraud, genuine) = bins.counts();
    (0..BINS)
        .rev()
        .filter(|&b| fraud[b] > 0 || genuine[b] > 0)
        .map(|b| {
            let logit = (b as f64 + 0.5) / BINS as f64 * 2.0 * LOGIT_RANGE - LOGIT_RANGE;
            TieGroup {
                score: 1.0 / (1.0 + (-logit).exp()),
                frauds: u64::from(fraud[b]),
                genuine: u64::from(genuine[b]),
                fraud_amount: 0.0,
                amount: 0.0,
            }
        })
        .collect()
}

/// Push `p` unless it is within [`STEP`] of the last point kept (the last
/// point of a curve is always pushed by the caller with `force`).
fn keep(points: &mut Vec<CurvePoint>, p: CurvePoint, force: bool) {
    let near = points
        .last()
        .is_some_and(|q| (p[0] - q[0]).abs() + (p[1] - q[1]).abs() < STEP);
    if force {
        if points.last() != Some(&p) {
            points.push(p);
        }
    } else if !near {
        points.push(p);
    }
}

impl Curves {
    /// Curves of `groups` (best score first) over `days` days;
    /// `threshold` is the alert threshold in force.
    pub(super) fn of(groups: &[TieGroup], days: u64, threshold: f64, approximate: bool) -> Self {
        let frauds: u64 = groups.iter().map(|g| g.frauds).sum();
        let genuine: u64 = groups.iter().map(|g| g.genuine).sum();
        let fraud_amount: f64 = groups.iter().map(|g| g.fraud_amount).sum();
        let (mut roc, mut pr) = (Vec::new(), Vec::new());
        let (mut tp, mut fp) = (0u64, 0u64);
        // Twice the Mann-Whitney U, counted from the top: a fraud outscores
        // every genuine transaction not yet passed.
        let (mut u2, mut ap) = (0u128, 0.0f64);
        if frauds > 0 && genuine > 0 {
            roc.push([0.0, 0.0]);
        }
        for (i, g) in groups.iter().enumerate() {
            let genuine_below = genuine - fp - g.genuine;
            u2 += 2 * u128::from(g.frauds) * u128::from(genuine_below)
                + u128::from(g.frauds) * u128::from(g.genuine);
            tp += g.frauds;
            fp += g.genuine;
            if g.frauds > 0 {
                ap += g.frauds as f64 * tp as f64 / (tp + fp) as f64;
            }
            let last = i + 1 == groups.len();
            if frauds > 0 && genuine > 0 {
                keep(
                    &mut roc,
                    [fp as f64 / genuine as f64, tp as f64 / frauds as f64],
                    last,
                );
            }
            if frauds > 0 {
                keep(
                    &mut pr,
                    [tp as f64 / frauds as f64, tp as f64 / (tp + fp) as f64],
                    last,
                );
            }
        }
        Curves {
            roc,
            pr,
            roc_auc: (frauds > 0 && genuine > 0)
                .then(|| u2 as f64 / (2.0 * frauds as f64 * genuine as f64)),
            average_precision: (frauds > 0).then(|| ap / frauds as f64),
            frauds,
            genuine,
            fraud_amount: (!approximate).then_some(fraud_amount),
            days,
            approximate,
            distribution: ScoreDistribution::of(groups),
            thresholds: threshold_rows(groups, days, threshold, approximate),
        }
    }
}

impl ScoreDistribution {
    fn of(groups: &[TieGroup]) -> Self {
        let mut d = ScoreDistribution {
            fraud: vec![0; DISTRIBUTION_BINS],
            genuine: vec![0; DISTRIBUTION_BINS],
        };
        for g in groups {
            let b = ((g.score.clamp(0.0, 1.0) * DISTRIBUTION_BINS as f64) as usize)
                .min(DISTRIBUTION_BINS - 1);
            d.fraud[b] += g.frauds;
            d.genuine[b] += g.genuine;
        }
        d
    }
}

/// The candidate thresholds with their reasons, highest first, one row per
/// distinct threshold.
fn candidates(groups: &[TieGroup], threshold: f64) -> Vec<(f64, String)> {
    let total: u64 = groups.iter().map(|g| g.frauds + g.genuine).sum();
    let mut c: Vec<(f64, String)> = GRID.iter().map(|&t| (t, "score".to_string())).collect();
    c.push((threshold, "topology".to_string()));
    for share in TOP_SHARES {
        let want = (share * total as f64).ceil() as u64;
        let mut seen = 0u64;
        if let Some(g) = groups.iter().find(|g| {
            seen += g.frauds + g.genuine;
            seen >= want.max(1)
        }) {
            c.push((g.score, format!("top {}%", share * 100.0)));
        }
    }
    c.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut out: Vec<(f64, String)> = Vec::with_capacity(c.len());
    for (t, why) in c {
        match out.last_mut() {
            Some(last) if last.0 == t => {
                if !last.1.split(", ").any(|w| w == why) {
                    last.1 = format!("{}, {why}", last.1);
                }
            }
            _ => out.push((t, why)),
        }
    }
    out
}

fn threshold_rows(
    groups: &[TieGroup],
    days: u64,
    threshold: f64,
    approximate: bool,
) -> Vec<ThresholdRow> {
    let frauds: u64 = groups.iter().map(|g| g.frauds).sum();
    let mut rows = Vec::new();
    let (mut tp, mut fp, mut caught, mut reviewed) = (0u64, 0u64, 0.0f64, 0.0f64);
    let mut next = 0;
    for (t, rule) in candidates(groups, threshold) {
        while next < groups.len() && groups[next].score >= t {
            let g = &groups[next];
            tp += g.frauds;
            fp += g.genuine;
            caught += g.fraud_amount;
            reviewed += g.amount;
            next += 1;
        }
        let alerts = tp + fp;
        rows.push(ThresholdRow {
            threshold: t,
            rule,
            alerts,
            alerts_per_day: alerts as f64 / days.max(1) as f64,
            precision: (alerts > 0).then(|| tp as f64 / alerts as f64),
            recall: (frauds > 0).then(|| tp as f64 / frauds as f64),
            frauds_caught: tp,
            fraud_amount_caught: (!approximate).then_some(caught),
            amount_reviewed: (!approximate).then_some(reviewed),
        });
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn trapezoid(points: &[CurvePoint]) -> f64 {
        points
            .windows(2)
            .map(|w| (w[1][0] - w[0][0]) * (w[1][1] + w[0][1]) / 2.0)
            .sum()
    }

    #[test]
    fn a_perfect_ranking_has_the_unit_curves_and_a_full_table() {
        let recs = vec![
            (0.9, 100.0, true),
            (0.8, 50.0, true),
            (0.2, 10.0, false),
            (0.1, 20.0, false),
        ];
        let c = Curves::of(&groups_of_records(recs), 2, 0.5, false);
        assert_eq!(c.roc_auc, Some(1.0));
        assert_eq!(c.average_precision, Some(1.0));
        assert_eq!(c.roc.first(), Some(&[0.0, 0.0]));
        assert_eq!(c.roc.last(), Some(&[1.0, 1.0]));
        assert_eq!(c.fraud_amount, Some(150.0));
        let at_half = c.thresholds.iter().find(|r| r.threshold == 0.5).unwrap();
        assert_eq!(at_half.rule, "score, topology");
        assert_eq!(
            (
                at_half.alerts,
                at_half.frauds_caught,
                at_half.alerts_per_day
            ),
            (2, 2, 1.0)
        );
        assert_eq!(at_half.precision, Some(1.0));
        assert_eq!(at_half.fraud_amount_caught, Some(150.0));
        assert_eq!(at_half.amount_reviewed, Some(150.0));
        let at_01 = c.thresholds.iter().find(|r| r.threshold == 0.1).unwrap();
        assert_eq!((at_01.alerts, at_01.amount_reviewed), (4, Some(180.0)));
        assert_eq!(c.distribution.fraud.iter().sum::<u64>(), 2);
        assert_eq!(c.distribution.genuine[DISTRIBUTION_BINS / 10], 1);
    }

    #[test]
    fn one_class_has_no_roc_curve() {
        let c = Curves::of(
            &groups_of_records(vec![(0.3, 1.0, false), (0.6, 1.0, false)]),
            1,
            0.5,
            false,
        );
        assert!(c.roc.is_empty() && c.pr.is_empty());
        assert_eq!((c.roc_auc, c.average_precision), (None, None));
        assert_eq!(
            c.thresholds
                .iter()
                .find(|r| r.threshold == 0.5)
                .unwrap()
                .alerts,
            1
        );
    }

    proptest! {
        /// The area under the thinned ROC points is the exact ROC AUC
        /// (the evaluator's own) within 1e-3, the curves' own AUC and AP are
        /// the evaluator's, and the table's counts are monotone.
        #[test]
        fn curves_agree_with_the_metrics(
            recs in proptest::collection::vec((0u16..500, 0u32..1000, any::<bool>()), 2..3000)
        ) {
            let recs: Vec<(f32, f32, bool)> = recs
                .into_iter()
                .map(|(s, a, y)| (f32::from(s) / 500.0, a as f32, y))
                .collect();
            let pairs: Vec<(f32, bool)> = recs.iter().map(|r| (r.0, r.2)).collect();
            let c = Curves::of(&groups_of_records(recs), 3, 0.5, false);
            prop_assert_eq!(c.roc_auc.is_some(), super::super::roc_auc(&pairs).is_some());
            if let Some(auc) = super::super::roc_auc(&pairs) {
                prop_assert!((c.roc_auc.unwrap() - auc).abs() < 1e-9);
                prop_assert!((trapezoid(&c.roc) - auc).abs() < 1e-3, "{} vs {auc}", trapezoid(&c.roc));
            }
            if let Some(ap) = super::super::average_precision(&pairs) {
                prop_assert!((c.average_precision.unwrap() - ap).abs() < 1e-9);
            }
            for w in c.thresholds.windows(2) {
                prop_assert!(w[0].threshold > w[1].threshold);
                prop_assert!(w[0].alerts <= w[1].alerts);
                prop_assert!(w[0].frauds_caught <= w[1].frauds_caught);
            }
        }
    }
}
