//! Self-selecting models (`model.type = "auto"`): the logistic model, the
//! forest and the blend score every transaction; the served one is the
//! candidate with the best prequential average precision over the latest
//! labels (the shortest run of them that holds `window_frauds` frauds, at
//! most `max_window`). The choice is made again every `every` labels once
//! the window holds `min_frauds` frauds; a challenger replaces the served
//! candidate only when it leads by `margin` (hysteresis: two close
//! candidates do not take turns). Every switch is kept with the figures
//! that caused it.
//!
//! **What a candidate is judged by** (`judge`). By default, each candidate's
//! score of the labelled transaction's stored features *when the label
//! arrives*, before anything learns from it: test-then-train on the
//! candidate as it is now. Judged by the scores given at scoring time
//! (`judge = "scored"`), a candidate was judged on its cold start a whole
//! label delay after it had ended: at a 30-day delay the choice on day 47
//! read the blend's scores of day 17. Within the window a label counts
//! half after `half_life` newer labels, for the same reason.
//!
//! **The blend is credited `blend_prior`** of average precision in the
//! comparison. Across the robustness matrix (two families, two seeds) the
//! blend has the best mean and is within 0.02 of the best candidate in 17
//! cells of 20; the window (a few hundred frauds, fewer at low fraud rates)
//! is noisy, and uncredited it served the logistic model or the forest for
//! weeks where they were not better. A candidate far ahead of the blend
//! (the forest on `categories` at a 0.1 % fraud rate) is still served.
//!
//! **Scale.** Candidates' scores live on different scales (a forest's votes
//! crowd 0 and 1, a logistic model's log-odds do not), so serving one, then
//! another, would rank one period's genuine transactions above another's
//! frauds: measured, a switch within a 30-day window took its pooled average
//! precision to 0.09 while every candidate and every single day was above
//! 0.2. Platt maps fitted on the label window did not help (0.17): under
//! label delay the labelled share of frauds is not the stream's. So a
//! candidate's score is served on the blend's scale, by quantile: its rank
//! among its own recent scores (every transaction's, labelled or not) is
//! mapped to the blend's score of the same rank. Each period then ranks its
//! traffic as the candidate does, and while the blend is served (most of
//! the time) `auto` serves exactly what `blend` would. (Mapped to the
//! logistic model's scale instead, serving the blend cost 0.015 average
//! precision: the map moves from day to day.)

use super::calibration::log_odds;
use super::sigmoid;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// The candidate whose scale every served score is on.
const SCALE_OF: Candidate = Candidate::Blend;

/// A candidate of `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Candidate {
    /// The online logistic regression.
    Logistic,
    /// The adaptive forest.
    Forest,
    /// The blend of the members.
    Blend,
}

impl Candidate {
    /// Every candidate, in the order of [`ModelSwitch::average_precision`].
    pub const ALL: [Candidate; 3] = [Candidate::Logistic, Candidate::Forest, Candidate::Blend];

    /// Its name (as `model.type`).
    pub fn name(self) -> &'static str {
        match self {
            Candidate::Logistic => "logistic",
            Candidate::Forest => "forest",
            Candidate::Blend => "blend",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Which scores of a labelled transaction `auto` judges the candidates by
/// (`model.auto.judge`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Judge {
    /// The scores each candidate gave when the transaction was scored
    /// (stored with its features): what it served, label delay included.
    Scored,
    /// Each candidate's score of the stored features when the label
    /// arrives, before it learns from it: test-then-train on the candidate
    /// as it is now, so a candidate that has outgrown its cold start is
    /// seen at once, not a label delay later.
    #[default]
    Current,
}

/// Settings of `auto` (`[model.auto]`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelectConfig {
    /// Frauds among the latest labels the candidates are judged on: the
    /// window is the shortest run of latest labels holding this many.
    pub window_frauds: usize,
    /// Most labels in the window (a low fraud rate would make it long).
    pub max_window: usize,
    /// Labels between two choices.
    pub every: u64,
    /// How far a challenger's average precision must lead the served one's.
    pub margin: f64,
    /// Labels after which a label counts half in the window's average
    /// precision (0: all alike). Candidates improve as they learn, and the
    /// window still holds their first, cold scores: weighting by age sees a
    /// candidate that has become better sooner than a shorter window would,
    /// without a shorter window's noise.
    pub half_life: f64,
    /// Average precision credited to the blend when candidates are
    /// compared: another candidate is served only while it leads the blend
    /// by `blend_prior + margin`, and the blend takes over from the
    /// logistic model once it trails it by less than `blend_prior -
    /// margin`. Across the robustness matrix the blend is the best or
    /// close to it where another candidate wins, and the window's noise
    /// (a few hundred frauds) picked the others when they were not better.
    pub blend_prior: f64,
    /// Which scores of a labelled transaction the candidates are judged by.
    pub judge: Judge,
    /// Frauds the window must hold before a choice is made.
    pub min_frauds: usize,
}

impl Default for SelectConfig {
    fn default() -> Self {
        SelectConfig {
            window_frauds: 1_000,
            max_window: 50_000,
            every: 1_000,
            margin: 0.02,
            half_life: 15_000.0,
            blend_prior: 0.05,
            judge: Judge::Current,
            min_frauds: 30,
        }
    }
}

/// One change of the served candidate, with the figures that caused it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSwitch {
    /// Arrival time (ms) of the label that completed the choice.
    pub ts: i64,
    /// Day of `ts` counted from the evaluation's origin.
    pub day: i64,
    /// Served before.
    pub from: Candidate,
    /// Served from now on.
    pub to: Candidate,
    /// Each candidate's average precision over the window, in
    /// [`Candidate::ALL`] order.
    pub average_precision: [f64; 3],
    /// Average precision credited to the blend in the comparison
    /// ([`SelectConfig::blend_prior`]).
    pub blend_prior: f64,
    /// Labels and frauds in the window.
    pub window_labels: usize,
    /// Frauds among them.
    pub window_frauds: usize,
    /// Labels learnt by then (by this card stage).
    pub labels: u64,
}

/// Most switches kept; later ones are only counted.
pub const MAX_SWITCHES: usize = 1_000;

/// Chooses the served candidate (see the module doc).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Selector {
    cfg: SelectConfig,
    served: Candidate,
    /// Each labelled transaction's candidate scores at scoring time, and
    /// its label, oldest first.
    window: VecDeque<([f32; 3], bool)>,
    frauds: usize,
    since_choice: u64,
    /// Each candidate's recent scores, for the quantile map.
    scales: [ScoreScale; 3],
    switches: Vec<ModelSwitch>,
    switches_dropped: u64,
    /// Sequence number of the window's oldest label (counted from this
    /// selector's start or restore; not saved: the sorted views are rebuilt).
    #[serde(skip)]
    front_seq: u64,
    /// Each candidate's window sorted by score (highest first, ties by
    /// sequence number) as (score, label, sequence number), up to
    /// `sorted_upto`: a choice merges in the labels since the last one
    /// instead of sorting the whole window again (sorting was 15 % of an
    /// `auto` run's samples).
    #[serde(skip)]
    sorted: [Vec<(f32, bool, u64)>; 3],
    /// Labels with a sequence number below this are in `sorted`.
    #[serde(skip)]
    sorted_upto: u64,
    /// Scratch: the labels since the last choice, then the merge.
    #[serde(skip)]
    fresh: Vec<(f32, bool, u64)>,
    #[serde(skip)]
    merged: Vec<(f32, bool, u64)>,
    /// Scratch: each label's weight over the window, oldest first.
    #[serde(skip)]
    weights: Vec<f64>,
}

impl Selector {
    /// Serving the logistic model (it learns from the first label; the
    /// others serve a cold-start score) until the window says otherwise.
    /// (Starting from the blend, measured on the robustness matrix, did no
    /// better: mean AP 0.504-0.507 against 0.513.)
    pub fn new(cfg: SelectConfig) -> Self {
        Selector {
            cfg,
            served: Candidate::Logistic,
            window: VecDeque::new(),
            frauds: 0,
            since_choice: 0,
            scales: std::array::from_fn(|_| ScoreScale::new()),
            switches: Vec::new(),
            switches_dropped: 0,
            front_seq: 0,
            sorted: Default::default(),
            sorted_upto: 0,
            fresh: Vec::new(),
            merged: Vec::new(),
            weights: Vec::new(),
        }
    }

    /// The candidate served now.
    pub fn served(&self) -> Candidate {
        self.served
    }

    /// Take a transaction's candidate scores into each candidate's recent
    /// scores, as the logits stored with its vector: a card stage that holds
    /// another stage's vector ([`crate::engine::CardStage::hold_replica`])
    /// takes in exactly what the scoring stage did.
    pub fn observe_scales(&mut self, logits: [f32; 3]) {
        for (scale, z) in self.scales.iter_mut().zip(logits) {
            scale.observe_logit(f64::from(z));
        }
    }

    /// The score to serve for a transaction's candidate `scores` (taken in
    /// by [`observe_scales`](Self::observe_scales) first): the served
    /// candidate's, on the blend's scale (see the module doc; the blend's
    /// own score as it is).
    pub fn serve(&self, scores: [f64; 3]) -> f64 {
        let c = self.served.index();
        if c == SCALE_OF.index() {
            return scores[c];
        }
        let q = self.scales[c].rank(scores[c]);
        self.scales[SCALE_OF.index()].at_rank(q)
    }

    /// Switches so far (oldest first) and how many were not kept.
    pub fn switches(&self) -> (&[ModelSwitch], u64) {
        (&self.switches, self.switches_dropped)
    }

    /// Take in a label: `scores` are the candidates' scores of its
    /// transaction when it was scored. `ts`/`day` date a switch, `labels`
    /// counts the labels learnt. Returns the switch it caused, if any.
    pub fn observe(
        &mut self,
        scores: [f32; 3],
        is_fraud: bool,
        (ts, day): (i64, i64),
        labels: u64,
    ) -> Option<&ModelSwitch> {
        self.window.push_back((scores, is_fraud));
        self.frauds += usize::from(is_fraud);
        while let Some(&(_, oldest)) = self.window.front() {
            let without = self.frauds - usize::from(oldest);
            if self.window.len() <= self.cfg.max_window.max(1)
                && without < self.cfg.window_frauds.max(1)
            {
                break;
            }
            self.window.pop_front();
            self.front_seq += 1;
            self.frauds = without;
        }
        self.since_choice += 1;
        if self.since_choice < self.cfg.every.max(1) || self.frauds < self.cfg.min_frauds {
            return None;
        }
        self.since_choice = 0;
        let ap = self.average_precisions();
        let mut credited = ap;
        credited[Candidate::Blend.index()] += self.cfg.blend_prior;
        let best = (Candidate::ALL.into_iter())
            .max_by(|a, b| credited[a.index()].total_cmp(&credited[b.index()]))
            .expect("three candidates");
        if best == self.served
            || credited[best.index()] < credited[self.served.index()] + self.cfg.margin
        {
            return None;
        }
        let switch = ModelSwitch {
            ts,
            day,
            from: self.served,
            to: best,
            average_precision: ap,
            blend_prior: self.cfg.blend_prior,
            window_labels: self.window.len(),
            window_frauds: self.frauds,
            labels,
        };
        self.served = best;
        if self.switches.len() < MAX_SWITCHES {
            self.switches.push(switch);
            self.switches.last()
        } else {
            self.switches_dropped += 1;
            None
        }
    }

    /// Each candidate's average precision over the window, each label
    /// weighted by its age (see [`SelectConfig::half_life`]).
    fn average_precisions(&mut self) -> [f64; 3] {
        let mut out = [0.0; 3];
        let n = self.window.len();
        let half_life = self.cfg.half_life;
        // Each label's weight, once for the three candidates: the newest 1,
        // each older one the next newer one's times 2^(-1/half_life).
        let decay = if half_life > 0.0 {
            (-std::f64::consts::LN_2 / half_life).exp()
        } else {
            1.0
        };
        self.weights.resize(n, 0.0);
        let mut w = 1.0;
        for weight in self.weights.iter_mut().rev() {
            *weight = w;
            w *= decay;
        }
        let (front, end) = (self.front_seq, self.front_seq + n as u64);
        let since = self.sorted_upto.max(front);
        for c in Candidate::ALL {
            let sorted = &mut self.sorted[c.index()];
            sorted.retain(|&(_, _, seq)| seq >= front);
            self.fresh.clear();
            (self.fresh).extend((since..end).map(|seq| {
                let (s, f) = self.window[(seq - front) as usize];
                (s[c.index()], f, seq)
            }));
            self.fresh.sort_unstable_by(by_score);
            merge_sorted(sorted, &self.fresh, &mut self.merged);
            std::mem::swap(sorted, &mut self.merged);
            let weights = &self.weights;
            out[c.index()] =
                sorted_average_precision(sorted, |seq| weights[(seq - front) as usize])
                    .unwrap_or(0.0);
        }
        self.sorted_upto = end;
        out
    }

    /// Take in another stage's switches (after a parallel run).
    pub fn absorb(&mut self, other: &Selector) {
        self.switches.extend(other.switches.iter().cloned());
        self.switches.sort_by_key(|s| s.ts);
        self.switches_dropped += other.switches_dropped;
    }
}

/// [`sorted_average_precision`] of unsorted (score, label, weight) items.
#[cfg(test)]
fn weighted_average_precision(items: &mut [(f32, bool, f64)]) -> Option<f64> {
    items.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    sorted_average_precision(items, |w| w)
}

/// Highest score first; ties by sequence number, so that merging and
/// sorting anew give the same order (and the same sums to the last bit).
fn by_score(a: &(f32, bool, u64), b: &(f32, bool, u64)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.2.cmp(&b.2))
}

/// `old` and `new`, each in [`by_score`] order, merged into `out`.
fn merge_sorted(
    old: &[(f32, bool, u64)],
    new: &[(f32, bool, u64)],
    out: &mut Vec<(f32, bool, u64)>,
) {
    out.clear();
    out.reserve(old.len() + new.len());
    let (mut i, mut j) = (0, 0);
    while i < old.len() && j < new.len() {
        if by_score(&new[j], &old[i]).is_lt() {
            out.push(new[j]);
            j += 1;
        } else {
            out.push(old[i]);
            i += 1;
        }
    }
    out.extend_from_slice(&old[i..]);
    out.extend_from_slice(&new[j..]);
}

/// Average precision of `items` (sorted highest score first), each label
/// counted `weight(tag)` times: tied scores are one threshold, as in
/// [`crate::eval::average_precision`] (equal to it when every weight is 1).
fn sorted_average_precision<T: Copy>(
    items: &[(f32, bool, T)],
    weight: impl Fn(T) -> f64,
) -> Option<f64> {
    let (mut tp, mut fp, mut acc) = (0.0f64, 0.0f64, 0.0f64);
    let mut i = 0;
    while i < items.len() {
        let s = items[i].0;
        let (mut p, mut n) = (0.0, 0.0);
        while i < items.len() && items[i].0 == s {
            let w = weight(items[i].2);
            if items[i].1 {
                p += w;
            } else {
                n += w;
            }
            i += 1;
        }
        tp += p;
        fp += n;
        if p > 0.0 {
            acc += p * tp / (tp + fp);
        }
    }
    (tp > 0.0).then(|| acc / tp)
}

/// Bins of a [`ScoreScale`], over logit(score) in [-12, 12].
const SCALE_BINS: usize = 1024;
/// Scores a [`ScoreScale`] holds before its counts are halved (older scores
/// fade: the scale follows the stream).
const SCALE_HALF_LIFE: f64 = 50_000.0;

/// Recent scores of one candidate as a histogram over logit(score) (a
/// Fenwick tree of counts), for ranks and the score at a rank.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ScoreScale {
    tree: Vec<f64>,
    total: f64,
}

impl ScoreScale {
    fn new() -> Self {
        ScoreScale {
            tree: vec![0.0; SCALE_BINS + 1],
            total: 0.0,
        }
    }

    fn bin(p: f64) -> usize {
        Self::bin_of_logit(log_odds(p))
    }

    fn bin_of_logit(z: f64) -> usize {
        let z = (z.clamp(-12.0, 12.0) + 12.0) / 24.0 * SCALE_BINS as f64;
        // NaN lands in the lowest bin.
        (z.max(0.0) as usize).min(SCALE_BINS - 1)
    }

    fn observe_logit(&mut self, z: f64) {
        if self.total >= SCALE_HALF_LIFE {
            // Halve every count: rebuild the tree from its bins.
            let counts: Vec<f64> = (0..SCALE_BINS).map(|i| self.count(i) / 2.0).collect();
            self.tree.iter_mut().for_each(|t| *t = 0.0);
            self.total = 0.0;
            for (i, c) in counts.into_iter().enumerate() {
                self.add(i, c);
            }
        }
        self.add(Self::bin_of_logit(z), 1.0);
    }

    fn add(&mut self, bin: usize, w: f64) {
        self.total += w;
        let mut i = bin + 1;
        while i <= SCALE_BINS {
            self.tree[i] += w;
            i += i & i.wrapping_neg();
        }
    }

    /// Sum of the counts of bins `0..bin`.
    fn below(&self, bin: usize) -> f64 {
        let (mut i, mut sum) = (bin, 0.0);
        while i > 0 {
            sum += self.tree[i];
            i -= i & i.wrapping_neg();
        }
        sum
    }

    fn count(&self, bin: usize) -> f64 {
        self.below(bin + 1) - self.below(bin)
    }

    /// Share of recent scores below `p` (half of its own bin's).
    fn rank(&self, p: f64) -> f64 {
        if self.total <= 0.0 {
            return 0.5;
        }
        let b = Self::bin(p);
        (self.below(b) + self.count(b) / 2.0) / self.total
    }

    /// The score at rank `q`: the bin where the counts below pass `q`,
    /// interpolated within it.
    fn at_rank(&self, q: f64) -> f64 {
        let target = q.clamp(0.0, 1.0) * self.total;
        // Fenwick descent: the largest prefix of bins whose counts stay below `target`.
        let (mut pos, mut acc) = (0usize, 0.0);
        let mut step = SCALE_BINS.next_power_of_two();
        while step > 0 {
            let next = pos + step;
            if next <= SCALE_BINS && acc + self.tree[next] < target {
                pos = next;
                acc += self.tree[next];
            }
            step /= 2;
        }
        let bin = pos.min(SCALE_BINS - 1);
        let inside = self.count(bin);
        let frac = if inside > 0.0 {
            ((target - acc) / inside).clamp(0.0, 1.0)
        } else {
            0.5
        };
        let z = (bin as f64 + frac) / SCALE_BINS as f64 * 24.0 - 12.0;
        sigmoid(z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::average_precision;

    fn cfg() -> SelectConfig {
        SelectConfig {
            window_frauds: 20,
            max_window: 400,
            every: 50,
            margin: 0.05,
            half_life: 0.0,
            blend_prior: 0.0,
            judge: Judge::Current,
            min_frauds: 10,
        }
    }

    #[test]
    fn a_score_is_served_at_the_blends_score_of_the_same_rank() {
        let mut scale = ScoreScale::new();
        let mut other = ScoreScale::new();
        for i in 0..10_000 {
            let u = (f64::from(i) + 0.5) / 10_000.0;
            scale.observe_logit(log_odds(0.001 + 0.1 * u)); // the blend: 0.001 .. 0.101
            other.observe_logit(log_odds(u)); // a forest: 0 .. 1
        }
        for (p, want) in [(0.5, 0.051), (0.9, 0.091), (0.99, 0.1)] {
            let got = scale.at_rank(other.rank(p));
            assert!((got - want).abs() < 0.003, "{p}: {got} against {want}");
        }
        // Ranks keep the order of the scores.
        assert!(other.rank(0.2) < other.rank(0.3));
    }

    #[test]
    fn the_blend_is_served_as_it_scores_and_the_others_on_its_scale() {
        let mut sel = Selector::new(cfg());
        for i in 0..5_000 {
            let u = (f64::from(i) + 0.5) / 5_000.0;
            // logistic 0 .. 0.5, forest 0 .. 1, blend 0.001 .. 0.101
            sel.observe_scales([u / 2.0, u, 0.001 + 0.1 * u].map(|p| log_odds(p) as f32));
        }
        // Serving the logistic model: its rank, at the blend's score.
        assert_eq!(sel.served(), Candidate::Logistic);
        let p = sel.serve([0.25, 0.9, 0.02]);
        assert!((p - 0.051).abs() < 0.003, "{p}");
        sel.served = Candidate::Blend;
        assert_eq!(sel.serve([0.25, 0.9, 0.02]), 0.02);
    }

    /// Scores where `good` ranks every fraud first and the others rank at
    /// random (a fixed pseudo-random sequence).
    fn scores(i: u64, fraud: bool, good: Candidate) -> [f32; 3] {
        let noise = |k: u64| ((i.wrapping_mul(0x9e37_79b9) ^ k) % 1000) as f32 / 1000.0;
        let mut s = [noise(1), noise(2), noise(3)];
        s[good.index()] = if fraud {
            0.9 + noise(4) / 10.0
        } else {
            noise(4) * 0.8
        };
        s
    }

    #[test]
    fn the_best_candidate_is_served_and_the_switch_says_why() {
        let mut sel = Selector::new(cfg());
        let mut switched = Vec::new();
        for i in 0..2_000u64 {
            let fraud = i % 20 == 0;
            if let Some(s) =
                sel.observe(scores(i, fraud, Candidate::Forest), fraud, (i as i64, 0), i)
            {
                switched.push(s.clone());
            }
        }
        assert_eq!(sel.served(), Candidate::Forest);
        assert_eq!(switched.len(), 1, "{switched:?}");
        let s = &switched[0];
        assert_eq!((s.from, s.to), (Candidate::Logistic, Candidate::Forest));
        assert!(
            s.average_precision[1] > s.average_precision[0] + 0.05,
            "{s:?}"
        );
        assert!(s.window_frauds >= 10 && s.window_labels <= 400);
        assert_eq!(sel.switches().0, switched.as_slice());
    }

    #[test]
    fn a_lead_smaller_than_the_margin_does_not_switch_and_a_change_does() {
        let mut sel = Selector::new(cfg());
        // Logistic and blend equally good: the served logistic model stays.
        for i in 0..1_000u64 {
            let fraud = i % 20 == 0;
            let mut s = scores(i, fraud, Candidate::Logistic);
            s[2] = s[0];
            sel.observe(s, fraud, (i as i64, 0), i);
        }
        assert_eq!(sel.served(), Candidate::Logistic);
        assert!(sel.switches().0.is_empty());
        // Then only the blend ranks frauds: it takes over once the window
        // has turned.
        for i in 1_000..3_000u64 {
            let fraud = i % 20 == 0;
            sel.observe(scores(i, fraud, Candidate::Blend), fraud, (i as i64, 0), i);
        }
        assert_eq!(sel.served(), Candidate::Blend);
        assert_eq!(sel.switches().0.len(), 1);
    }

    #[test]
    fn the_blend_is_credited_its_prior_both_ways() {
        let prior = SelectConfig {
            blend_prior: 0.3,
            ..cfg()
        };
        // The forest ranks every fraud first, the blend three in four: the
        // blend is served all the same, the forest's lead is within the
        // credit.
        let blend_close_behind = |cfg| {
            let mut sel = Selector::new(cfg);
            for i in 0..2_000u64 {
                let fraud = i % 20 == 0;
                let mut s = scores(i, fraud, Candidate::Forest);
                if i % 80 != 0 {
                    s[2] = s[1];
                }
                sel.observe(s, fraud, (i as i64, 0), i);
            }
            sel
        };
        let sel = blend_close_behind(prior);
        assert_eq!(sel.served(), Candidate::Blend);
        let w = &sel.switches().0[0];
        assert_eq!((w.from, w.to), (Candidate::Logistic, Candidate::Blend));
        assert!(w.average_precision[1] > w.average_precision[2], "{w:?}");
        assert_eq!(w.blend_prior, 0.3);
        // Without the credit the forest is served.
        assert_eq!(blend_close_behind(cfg()).served(), Candidate::Forest);
        // A candidate far ahead of the credited blend is served.
        let mut sel = Selector::new(prior);
        for i in 0..2_000u64 {
            let fraud = i % 20 == 0;
            sel.observe(scores(i, fraud, Candidate::Forest), fraud, (i as i64, 0), i);
        }
        assert_eq!(sel.served(), Candidate::Forest);
    }

    /// The labels at which the served candidate became the blend, when
    /// the blend ranks frauds from label 1,000 on and the logistic model
    /// before (a window of 2,000 labels).
    fn switch_to_the_blend(half_life: f64) -> u64 {
        let mut sel = Selector::new(SelectConfig {
            max_window: 2_000,
            window_frauds: 1_000,
            every: 20,
            half_life,
            ..cfg()
        });
        for i in 0..4_000u64 {
            let fraud = i % 20 == 0;
            let good = if i < 1_000 {
                Candidate::Logistic
            } else {
                Candidate::Blend
            };
            sel.observe(scores(i, fraud, good), fraud, (i as i64, 0), i);
        }
        let (switches, _) = sel.switches();
        assert_eq!(switches.len(), 1, "{switches:?}");
        assert_eq!(switches[0].to, Candidate::Blend);
        switches[0].labels
    }

    #[test]
    fn weighting_labels_by_age_sees_a_candidate_that_became_better_sooner() {
        let (alike, weighted) = (switch_to_the_blend(0.0), switch_to_the_blend(300.0));
        assert!(
            weighted + 200 < alike,
            "by age: label {weighted}; all alike: label {alike}"
        );
    }

    #[test]
    fn merging_each_choices_labels_gives_the_figures_of_sorting_the_window_anew() {
        let cfg = SelectConfig {
            window_frauds: 60,
            max_window: 900,
            half_life: 250.0,
            ..cfg()
        };
        let mut live = Selector::new(cfg);
        let mut restored = None::<Selector>;
        for i in 0..6_000u64 {
            let fraud = i % 11 == 0;
            // Coarse scores: ties within and across classes.
            let s = scores(i, fraud, Candidate::ALL[(i / 1_500) as usize % 3]);
            let s = s.map(|v| (v * 20.0).round() / 20.0);
            live.observe(s, fraud, (i as i64, 0), i);
            if let Some(r) = restored.as_mut() {
                r.observe(s, fraud, (i as i64, 0), i);
            }
            if i % 97 != 0 {
                continue;
            }
            let merged = live.average_precisions();
            // The reference: every candidate's window weighted and sorted
            // from scratch.
            let decay = (-std::f64::consts::LN_2 / 250.0f64).exp();
            let n = live.window.len();
            for c in Candidate::ALL {
                let mut items: Vec<_> = (live.window.iter().enumerate())
                    .map(|(k, (s, f))| (s[c.index()], *f, decay.powi((n - 1 - k) as i32)))
                    .collect();
                let want = weighted_average_precision(&mut items).unwrap_or(0.0);
                let got = merged[c.index()];
                assert!(
                    (got - want).abs() < 1e-9,
                    "label {i} {c:?}: {got} against {want}"
                );
            }
            // A selector restored from a snapshot sorts its window anew and
            // gives the same figures to the last bit.
            match restored.as_mut() {
                None if i >= 2_000 => {
                    let bytes = bincode::serialize(&live).unwrap();
                    restored = Some(bincode::deserialize(&bytes).unwrap());
                }
                Some(r) => assert_eq!(r.average_precisions(), merged, "label {i}"),
                None => {}
            }
        }
        assert!(restored.is_some());
    }

    #[test]
    fn the_weighted_average_precision_is_the_plain_one_with_equal_weights() {
        let pairs: Vec<(f32, bool)> = (0..2_000u64)
            .map(|i| {
                let fraud = i % 7 == 0;
                // A candidate that ranks at random, on coarse scores: many
                // ties, across classes too.
                (scores(i, fraud, Candidate::Forest)[0] * 10.0).round() / 10.0
            })
            .zip((0..2_000u64).map(|i| i % 7 == 0))
            .collect();
        let mut weighted: Vec<_> = pairs.iter().map(|&(s, f)| (s, f, 1.0)).collect();
        let (a, b) = (
            weighted_average_precision(&mut weighted).unwrap(),
            average_precision(&pairs).unwrap(),
        );
        assert!((a - b).abs() < 1e-12, "{a} against {b}");
        // Doubling every weight changes nothing; weighting down the genuine
        // transactions it ranks in the upper half raises it.
        let mut doubled: Vec<_> = pairs.iter().map(|&(s, f)| (s, f, 2.0)).collect();
        assert!((weighted_average_precision(&mut doubled).unwrap() - b).abs() < 1e-12);
        let mut tilted: Vec<_> = pairs
            .iter()
            .map(|&(s, f)| (s, f, if !f && s >= 0.5 { 0.1 } else { 1.0 }))
            .collect();
        assert!(weighted_average_precision(&mut tilted).unwrap() > b);
    }

    #[test]
    fn no_choice_before_the_window_holds_enough_frauds() {
        let mut sel = Selector::new(cfg());
        for i in 0..1_000u64 {
            let fraud = i % 200 == 0; // 5 frauds
            sel.observe(scores(i, fraud, Candidate::Forest), fraud, (i as i64, 0), i);
        }
        assert_eq!(sel.served(), Candidate::Logistic);
    }
}
