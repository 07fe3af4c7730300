//! Honest prequential (test-then-train) evaluation of the fraud-scoring stream.
//!
//! Every transaction is scored exactly once, when it arrives and before its
//! label can be known ([`Prequential::record_score`]); its label arrives later
//! (typically days later, as a chargeback) or never
//! ([`Prequential::record_label`]). Metrics are computed at report time from
//! the stored `(score, label)` pairs, per day of the transaction's *event time*
//! ([`Prequential::daily`]) and over a range of days ([`Prequential::summary`]).
//!
//! # Fraud definition
//! A transaction counts as fraud iff its label said so. A transaction whose
//! label never arrived counts as genuine under [`Unlabeled::Genuine`] (no
//! chargeback means genuine) and is left out of every metric under
//! [`Unlabeled::Ignore`]. The transactions that enter the metrics are called
//! the *evaluated* transactions below.
//!
//! # Storage and memory
//! Days are addressed by `day = (ts - origin_ms).div_euclid(DAY_MS)`. Each day
//! that has a scored transaction owns a slot holding a `Vec` of compact
//! 16-byte records (card key and label state in a `u64`, `score: f32`,
//! `amount: f32`) and
//! its own index, a map `tx → position` (16 bytes of payload per entry plus
//! the hash table's control byte and load slack, about 18–37 bytes). A day
//! leaving the retention is dropped whole, index and all, so no table grows
//! with the run's length. A label tries the day of its transaction when the
//! caller knows it, else the days newest first. The same key on two days is
//! two transactions (an id reused); on one day it is scored once. A labeled
//! transaction *keeps* its map entry: the
//! label state of the record it points to marks it as labeled, so a later
//! duplicate label is recognised as [`LabelOutcome::Duplicate`] without a
//! second set (a separate set of labeled keys would cost about as much per
//! labeled tx and need a second lookup). Total: roughly 34–53 bytes per
//! scored transaction, independent of whether and when it is labeled.
//!
//! # Determinism and floats
//! Days are iterated through a `BTreeMap`, ties are grouped explicitly and
//! every float sort uses `total_cmp`, so no output depends on hash iteration
//! order. NaN scores are treated as `0.0` (on record and in the free
//! functions) and `-0.0` as `0.0`, so equal scores always form one tie group.
//!
//! # Per-member evaluation
//! [`MemberEvaluation`] keeps one such evaluator per portfolio member: an
//! observer of the scores each member gave (returned by the served model,
//! which does not evaluate itself) and of the labels, reported as
//! [`MemberMetrics`].

mod compact;
mod curves;

pub use curves::{CurvePoint, Curves, ScoreDistribution, ThresholdRow, DISTRIBUTION_BINS};

use std::collections::{BTreeMap, VecDeque};

use crate::keymap::{key_map_with_capacity, KeyMap};
use crate::model::portfolio::{Member, MemberScores, ModelKind, PortfolioConfig};
use compact::{top_cards, CompactDay, ScoreBins};
use serde::{Deserialize, Serialize};

/// Compacted days kept at most (older ones are dropped): over a year.
pub const MAX_COMPACTED_DAYS: usize = 400;

/// The width of a reporting day.
pub use crate::time::DAY_MS;

/// What to do, at report time, with transactions whose label never arrived.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unlabeled {
    /// Count them as genuine: no chargeback means genuine (the default).
    #[default]
    Genuine,
    /// Leave them out of every metric (they still count in `transactions`).
    Ignore,
}

/// Configuration of the evaluator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvalConfig {
    /// Alert threshold: a transaction is alerted when `score >= threshold`
    /// (default 0.5).
    pub threshold: f64,
    /// `k` of the daily card precision@k (default 100).
    pub k: usize,
    /// Policy for transactions whose label never arrived (default genuine).
    pub unlabeled: Unlabeled,
    /// Origin of day boundaries: `day = (ts - origin_ms).div_euclid(DAY_MS)`
    /// (default 0, i.e. UTC midnight).
    pub origin_ms: i64,
    /// Days whose records are kept: a day older than this behind the newest
    /// is compacted (default 120 days).
    pub retention_ms: i64,
    /// Most records held; past it the oldest day is compacted early
    /// (default 20,000,000).
    pub max_records: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            k: 100,
            unlabeled: Unlabeled::Genuine,
            origin_ms: 0,
            retention_ms: 120 * DAY_MS,
            max_records: 20_000_000,
        }
    }
}

/// Result of [`Prequential::record_label`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelOutcome {
    /// The label was attached to its scored transaction.
    Applied,
    /// No transaction with this key was ever scored; nothing changed.
    Unknown,
    /// The transaction already had a label; nothing changed (first label wins).
    Duplicate,
}

/// Metrics over a range of days.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsSummary {
    /// Scored transactions in the range (labeled or not, whatever the policy).
    pub transactions: u64,
    /// Of those, the ones whose label arrived.
    pub labeled: u64,
    /// Of those, the ones labeled fraud.
    pub frauds: u64,
    /// ROC AUC over the evaluated transactions; `None` when a class is absent.
    pub roc_auc: Option<f64>,
    /// Average precision over the evaluated transactions; `None` without fraud.
    pub average_precision: Option<f64>,
    /// Frauds among alerts / alerts; `None` when there is no alert.
    pub precision_at_threshold: Option<f64>,
    /// Alerted frauds / frauds; `None` when there is no fraud.
    pub recall_at_threshold: Option<f64>,
    /// Evaluated transactions with `score >= threshold`.
    pub alerts: u64,
    /// Mean over the days of the range of the daily card precision@k (days
    /// where it is `None` are skipped); `None` if no day has a value.
    pub card_precision_at_k: Option<f64>,
    /// First day (index from `origin_ms`) in the range with a scored transaction.
    pub first_day: Option<i64>,
    /// Last day in the range with a scored transaction.
    pub last_day: Option<i64>,
    /// Days of the range that were compacted: when not 0, ROC AUC and
    /// average precision come from score histograms (approximate).
    #[serde(default)]
    pub compacted_days: u64,
    /// How far scores are from being probabilities: the expected
    /// calibration error over ten equal-width score bins (see
    /// [`Reliability`]); `None` without evaluated transactions.
    #[serde(default)]
    pub expected_calibration_error: Option<f64>,
}

/// Metrics of one day (of the transactions' event time).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DayMetrics {
    /// Day index from `origin_ms`.
    pub day: i64,
    /// Scored transactions that day (labeled or not, whatever the policy).
    pub transactions: u64,
    /// Transactions labeled fraud that day.
    pub frauds: u64,
    /// ROC AUC over the day's evaluated transactions; `None` if a class is absent.
    pub roc_auc: Option<f64>,
    /// Average precision over the day's evaluated transactions; `None` without fraud.
    pub average_precision: Option<f64>,
    /// Card precision@k over the day's evaluated transactions.
    pub card_precision_at_k: Option<f64>,
    /// Evaluated transactions with `score >= threshold` that day.
    pub alerts: u64,
    /// The day was compacted: its ROC AUC and average precision come from
    /// a score histogram (approximate).
    #[serde(default)]
    pub compacted: bool,
}

const LABEL_NONE: u8 = 0;
const LABEL_GENUINE: u8 = 1;
const LABEL_FRAUD: u8 = 2;
/// The bits of [`Rec::card_label`] that hold the card key.
const CARD_BITS: u64 = (1 << 62) - 1;

/// One scored transaction: 16 bytes. The label state takes the card key's
/// two high bits (card precision@k groups by the other 62, where a
/// collision between two cards of one day is as unlikely as in 64), which
/// leaves room for the amount the threshold table sums.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Rec {
    card_label: u64,
    score: f32,
    amount: f32,
}

impl Rec {
    fn new(card: u64, score: f32, amount: f32) -> Self {
        Rec {
            card_label: card & CARD_BITS | u64::from(LABEL_NONE) << 62,
            score,
            amount,
        }
    }

    /// The card key (its two high bits cleared).
    #[inline]
    fn card(&self) -> u64 {
        self.card_label & CARD_BITS
    }

    #[inline]
    fn label(&self) -> u8 {
        (self.card_label >> 62) as u8
    }

    #[inline]
    fn set_label(&mut self, label: u8) {
        self.card_label = self.card_label & CARD_BITS | u64::from(label & 3) << 62;
    }
}

/// All scored transactions of one day, and the index of their keys: a day
/// that leaves the retention is dropped whole, index and all, so no table
/// churns (a single index emptied by `retain` day after day filled with
/// tombstones until it doubled, a one-time +68 MiB step in a two-year soak).
#[derive(Clone, Debug)]
struct DaySlot {
    day: i64,
    recs: Vec<Rec>,
    /// Transaction key → position in `recs`.
    index: KeyMap<u32>,
    /// Records held at the last checkpoint (0 for a day opened since).
    clean_len: u32,
    /// Since the last checkpoint, when tracked: the keys of the records
    /// added (in record order) and the older records labelled.
    new_keys: Vec<u64>,
    labelled_old: Vec<u32>,
}

impl DaySlot {
    fn new(day: i64) -> Self {
        Self::with_capacity(day, 0)
    }

    /// Room for `n` records: a new day sized as the day before it takes
    /// one allocation per table instead of a chain of doublings, whose
    /// freed blocks (128 KiB to a few MiB) fragmented the heap around the
    /// long-lived days (RSS +13.5 % over a year's soak with `auto`, which
    /// evaluates six scores).
    fn with_capacity(day: i64, n: usize) -> Self {
        DaySlot {
            day,
            recs: Vec::with_capacity(n),
            index: key_map_with_capacity(n),
            clean_len: 0,
            new_keys: Vec::new(),
            labelled_old: Vec::new(),
        }
    }

    /// The index as a checkpoint keeps it: sorted by key, whatever the seed.
    fn sorted_keys(&self) -> Vec<(u64, u32)> {
        let mut v: Vec<(u64, u32)> = self.index.iter().map(|(k, i)| (*k, *i)).collect();
        v.sort_unstable_by_key(|e| e.0);
        v
    }
}

/// Prequential evaluator: stores one record per scored transaction for the
/// retention, older days as aggregates, and computes metrics on demand.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "PrequentialParts")]
pub struct Prequential {
    cfg: EvalConfig,
    /// Days of records held, ascending by day.
    days: VecDeque<DaySlot>,
    /// Records indexed (the sum of the days' index sizes).
    records: usize,
    labeled: u64,
    newest_day: i64,
    compacted: BTreeMap<i64, CompactDay>,
    /// Whether changes are listed for an incremental checkpoint.
    tracking: bool,
    /// Compacted days changed since the last checkpoint, when tracked.
    compacted_changed: Vec<i64>,
}

/// What changed in an evaluator between two checkpoints, as written: the
/// days held now (one absent was compacted), each changed day's added
/// records and labels of older ones, and the compacted days changed
/// (`None`: dropped).
#[derive(Serialize)]
pub struct EvalDeltaRef<'a> {
    held: Vec<i64>,
    days: Vec<DayDeltaRef<'a>>,
    compacted: Vec<(i64, Option<&'a CompactDay>)>,
    labeled: u64,
    newest_day: i64,
}

#[derive(Serialize)]
struct DayDeltaRef<'a> {
    day: i64,
    from: u32,
    recs: &'a [Rec],
    keys: &'a [u64],
    labels: Vec<(u32, u8)>,
}

/// [`EvalDeltaRef`] read back.
#[derive(Debug, Deserialize)]
pub struct EvalDelta {
    held: Vec<i64>,
    days: Vec<DayDelta>,
    compacted: Vec<(i64, Option<CompactDay>)>,
    labeled: u64,
    newest_day: i64,
}

#[derive(Debug, Deserialize)]
struct DayDelta {
    day: i64,
    from: u32,
    recs: Vec<Rec>,
    keys: Vec<u64>,
    labels: Vec<(u32, u8)>,
}

/// The evaluator as a checkpoint writes it: the days ascending, each with
/// its records and its index sorted by key, so the bytes are the same
/// whatever the hash seeds.
#[derive(Serialize)]
struct PrequentialRef<'a> {
    cfg: &'a EvalConfig,
    days: Vec<DayRef<'a>>,
    labeled: u64,
    newest_day: i64,
    compacted: &'a BTreeMap<i64, CompactDay>,
}

#[derive(Serialize)]
struct DayRef<'a> {
    day: i64,
    recs: &'a [Rec],
    keys: Vec<(u64, u32)>,
}

/// The same, read back (checked by [`Prequential::try_from`]).
#[derive(Deserialize)]
struct PrequentialParts {
    cfg: EvalConfig,
    days: Vec<DayParts>,
    labeled: u64,
    newest_day: i64,
    compacted: BTreeMap<i64, CompactDay>,
}

#[derive(Deserialize)]
struct DayParts {
    day: i64,
    recs: Vec<Rec>,
    keys: Vec<(u64, u32)>,
}

impl DayParts {
    /// The day, its index checked against its records.
    fn into_slot(self) -> Result<DaySlot, String> {
        let mut slot = DaySlot::new(self.day);
        slot.index.reserve(self.keys.len());
        for (tx, idx) in self.keys {
            if idx as usize >= self.recs.len() || slot.index.insert(tx, idx).is_some() {
                return Err(format!(
                    "evaluation day {}: index entry {tx:#x} → {idx} does not fit its {} records",
                    self.day,
                    self.recs.len()
                ));
            }
        }
        slot.recs = self.recs;
        Ok(slot)
    }
}

impl Serialize for Prequential {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PrequentialRef {
            cfg: &self.cfg,
            days: self
                .days
                .iter()
                .map(|d| DayRef {
                    day: d.day,
                    recs: &d.recs,
                    keys: d.sorted_keys(),
                })
                .collect(),
            labeled: self.labeled,
            newest_day: self.newest_day,
            compacted: &self.compacted,
        }
        .serialize(s)
    }
}

impl TryFrom<PrequentialParts> for Prequential {
    type Error = String;

    fn try_from(p: PrequentialParts) -> Result<Self, String> {
        let mut days = VecDeque::with_capacity(p.days.len());
        let mut records = 0;
        for d in p.days {
            if days.back().is_some_and(|s: &DaySlot| s.day >= d.day) {
                return Err(format!("evaluation day {} out of order", d.day));
            }
            let slot = d.into_slot()?;
            records += slot.index.len();
            days.push_back(slot);
        }
        Ok(Prequential {
            cfg: p.cfg,
            days,
            records,
            labeled: p.labeled,
            newest_day: p.newest_day,
            compacted: p.compacted,
            tracking: false,
            compacted_changed: Vec::new(),
        })
    }
}

/// Canonical score: NaN becomes 0.0 and -0.0 becomes 0.0, so that `==` and
/// `total_cmp` agree and equal scores form one tie group.
#[inline]
fn norm(s: f32) -> f32 {
    if s.is_nan() {
        0.0
    } else {
        s + 0.0
    }
}

/// Day index of `ts_ms`, computed in i128 so it cannot overflow.
fn day_of(ts_ms: i64, origin_ms: i64) -> i64 {
    let d = (i128::from(ts_ms) - i128::from(origin_ms)).div_euclid(i128::from(DAY_MS));
    // |d| <= 2^64 / 86_400_000 < 2^37, always representable.
    d as i64
}

/// Add compacted day `c` to `compacted` (merged with what is there).
fn fold_day(compacted: &mut BTreeMap<i64, CompactDay>, day: i64, c: CompactDay, k: usize) {
    match compacted.entry(day) {
        std::collections::btree_map::Entry::Vacant(e) => {
            e.insert(c);
        }
        std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge(&c, k),
    }
}

impl Prequential {
    /// An empty evaluator.
    pub fn new(cfg: EvalConfig) -> Self {
        Self {
            cfg,
            days: VecDeque::new(),
            records: 0,
            labeled: 0,
            newest_day: i64::MIN,
            compacted: BTreeMap::new(),
            tracking: false,
            compacted_changed: Vec::new(),
        }
    }

    /// Start listing changes afresh (the evaluator was just written whole,
    /// or a delta of it).
    pub fn start_tracking(&mut self) {
        self.tracking = true;
        self.compacted_changed.clear();
        for d in &mut self.days {
            d.clean_len = d.recs.len() as u32;
            d.new_keys.clear();
            d.labelled_old.clear();
        }
    }

    /// Whether changes are listed (a delta can be written).
    pub fn tracking(&self) -> bool {
        self.tracking
    }

    /// What changed since tracking started or the last
    /// [`start_tracking`](Self::start_tracking) (call that once the delta is
    /// written).
    pub fn delta(&self) -> EvalDeltaRef<'_> {
        let mut compacted_days = self.compacted_changed.clone();
        compacted_days.sort_unstable();
        compacted_days.dedup();
        EvalDeltaRef {
            held: self.days.iter().map(|d| d.day).collect(),
            days: self
                .days
                .iter()
                .filter(|d| d.recs.len() > d.clean_len as usize || !d.labelled_old.is_empty())
                .map(|d| {
                    let mut labels: Vec<(u32, u8)> = d
                        .labelled_old
                        .iter()
                        .map(|&i| (i, d.recs[i as usize].label()))
                        .collect();
                    labels.sort_unstable();
                    DayDeltaRef {
                        day: d.day,
                        from: d.clean_len,
                        recs: &d.recs[d.clean_len as usize..],
                        keys: &d.new_keys,
                        labels,
                    }
                })
                .collect(),
            compacted: compacted_days
                .into_iter()
                .map(|day| (day, self.compacted.get(&day)))
                .collect(),
            labeled: self.labeled,
            newest_day: self.newest_day,
        }
    }

    /// Apply a checkpoint's delta to the evaluator it was written after,
    /// checking each day's records against what is held.
    pub fn apply_delta(&mut self, d: EvalDelta) -> Result<(), String> {
        if d.held.windows(2).any(|w| w[0] >= w[1]) {
            return Err("evaluation delta: days out of order".into());
        }
        let mut days = VecDeque::with_capacity(d.held.len());
        let mut old = std::mem::take(&mut self.days).into_iter().peekable();
        for day in &d.held {
            while old.next_if(|o| o.day < *day).is_some() {}
            days.push_back(
                old.next_if(|o| o.day == *day)
                    .unwrap_or_else(|| DaySlot::new(*day)),
            );
        }
        self.days = days;
        for dd in d.days {
            let Ok(at) = self.days.binary_search_by_key(&dd.day, |s| s.day) else {
                return Err(format!("evaluation delta: day {} is not held", dd.day));
            };
            let slot = &mut self.days[at];
            let from = dd.from as usize;
            if slot.recs.len() != from || dd.keys.len() != dd.recs.len() {
                return Err(format!(
                    "evaluation delta: day {} holds {} records, the delta follows {from} and                      adds {} with {} keys",
                    dd.day,
                    slot.recs.len(),
                    dd.recs.len(),
                    dd.keys.len()
                ));
            }
            for (i, label) in dd.labels {
                let Some(r) = slot.recs.get_mut(i as usize) else {
                    return Err(format!("evaluation delta: day {}: no record {i}", dd.day));
                };
                r.set_label(label);
            }
            for (j, key) in dd.keys.into_iter().enumerate() {
                if slot.index.insert(key, (from + j) as u32).is_some() {
                    return Err(format!("evaluation delta: day {}: a key twice", dd.day));
                }
            }
            slot.recs.extend(dd.recs);
        }
        for (day, c) in d.compacted {
            match c {
                Some(c) => self.compacted.insert(day, c),
                None => self.compacted.remove(&day),
            };
        }
        self.records = self.days.iter().map(|s| s.index.len()).sum();
        self.labeled = d.labeled;
        self.newest_day = d.newest_day;
        Ok(())
    }

    /// The configuration in use.
    pub fn config(&self) -> &EvalConfig {
        &self.cfg
    }

    /// Position of `day` among the days held, or where it would go.
    fn find_day(&self, day: i64) -> Result<usize, usize> {
        // Consecutive transactions are mostly of the newest day.
        match self.days.back() {
            Some(s) if s.day == day => Ok(self.days.len() - 1),
            Some(s) if s.day < day => Err(self.days.len()),
            _ => self.days.binary_search_by_key(&day, |s| s.day),
        }
    }

    /// Records the score given to a transaction when it arrived.
    ///
    /// `tx`: a 64-bit key of the transaction id (already hashed by the
    /// caller); `card`: 64-bit card key. A NaN score is stored as 0.0. A
    /// transaction is scored once: a second score for the same `tx` on the
    /// same day is ignored (the first, honest score is kept); the same key
    /// on another day is another transaction (an id reused), whose label
    /// goes to the newest. A transaction of a day already compacted counts
    /// in that day's aggregate, unlabelled.
    ///
    /// # Panics
    /// If one day receives more than `u32::MAX` transactions (64 GiB of
    /// records for that day alone).
    pub fn record_score(&mut self, tx: u64, ts_ms: i64, card: u64, score: f32, amount: f64) {
        let day = day_of(ts_ms, self.cfg.origin_ms);
        let at = match self.find_day(day) {
            Ok(at) => at,
            Err(_) if self.compacted.contains_key(&day) => {
                let (threshold, unlabeled) = (self.cfg.threshold, self.cfg.unlabeled);
                let c = self.compacted.get_mut(&day).expect("checked");
                c.transactions += 1;
                if unlabeled == Unlabeled::Genuine {
                    c.bins.add(norm(score), false);
                    c.alerts += u64::from(f64::from(score) >= threshold);
                }
                if self.tracking && self.compacted_changed.last() != Some(&day) {
                    self.compacted_changed.push(day);
                }
                return;
            }
            Err(at) => {
                // A new newest day is sized as the one before it.
                let n = match self.days.back() {
                    Some(last) if at == self.days.len() => last.recs.len(),
                    _ => 0,
                };
                self.days.insert(at, DaySlot::with_capacity(day, n));
                at
            }
        };
        let slot = &mut self.days[at];
        let std::collections::hash_map::Entry::Vacant(entry) = slot.index.entry(tx) else {
            return;
        };
        let idx =
            u32::try_from(slot.recs.len()).expect("more than u32::MAX transactions in one day");
        let amount = if amount.is_finite() {
            amount as f32
        } else {
            0.0
        };
        slot.recs.push(Rec::new(card, norm(score), amount));
        entry.insert(idx);
        if self.tracking {
            slot.new_keys.push(tx);
        }
        self.records += 1;
        if day > self.newest_day {
            self.newest_day = day;
            self.compact_expired();
        }
        if self.records > self.cfg.max_records {
            self.compact_oldest();
        }
    }

    /// Days of records kept.
    fn retention_days(&self) -> i64 {
        self.cfg.retention_ms.max(1).saturating_add(DAY_MS - 1) / DAY_MS
    }

    /// Compact every day older than the retention behind the newest.
    fn compact_expired(&mut self) {
        let first_kept = self.newest_day.saturating_sub(self.retention_days() - 1);
        while self.days.front().is_some_and(|s| s.day < first_kept) {
            self.compact_at(0);
        }
    }

    /// Compact the oldest day held, unless it is the only one.
    fn compact_oldest(&mut self) {
        if self.days.len() > 1 {
            self.compact_at(0);
        }
    }

    /// Compact `day`, if it is held.
    fn compact_day(&mut self, day: i64) {
        if let Ok(at) = self.find_day(day) {
            self.compact_at(at);
        }
    }

    /// Fold the records of the day at `at` into its aggregate and drop them
    /// with their index (a label for one of them is then unknown).
    fn compact_at(&mut self, at: usize) {
        let Some(slot) = self.days.remove(at) else {
            return;
        };
        self.records -= slot.index.len();
        let recs = slot.recs;
        let mut c = CompactDay {
            transactions: recs.len() as u64,
            labeled: 0,
            frauds: 0,
            alerts: 0,
            true_alerts: 0,
            bins: ScoreBins::default(),
            top_cards: Vec::new(),
        };
        let mut cards = Vec::with_capacity(recs.len());
        for r in &recs {
            c.labeled += u64::from(r.label() != LABEL_NONE);
            let Some(fraud) = self.outcome(r) else {
                continue;
            };
            c.bins.add(r.score, fraud);
            c.frauds += u64::from(fraud);
            if f64::from(r.score) >= self.cfg.threshold {
                c.alerts += 1;
                c.true_alerts += u64::from(fraud);
            }
            cards.push((r.card(), r.score, fraud));
        }
        c.top_cards = top_cards(&cards, self.cfg.k);
        fold_day(&mut self.compacted, slot.day, c, self.cfg.k);
        if self.tracking {
            self.compacted_changed.push(slot.day);
        }
        while self.compacted.len() > MAX_COMPACTED_DAYS {
            let Some((day, _)) = self.compacted.pop_first() else {
                break;
            };
            if self.tracking {
                self.compacted_changed.push(day);
            }
        }
    }

    /// Attaches a label to a scored transaction.
    ///
    /// A second label for the same tx is [`LabelOutcome::Duplicate`] and
    /// changes nothing (the first label wins); a label for a tx never scored
    /// (or of a compacted day) is [`LabelOutcome::Unknown`] and is dropped (a
    /// label arriving before its transaction was scored cannot be evaluated
    /// honestly anyway). The days are tried newest first.
    pub fn record_label(&mut self, tx: u64, is_fraud: bool) -> LabelOutcome {
        self.record_label_near(tx, None, is_fraud)
    }

    /// [`record_label`](Self::record_label), trying first the day of
    /// `tx_ts_ms` (the transaction's event time, when the caller knows it)
    /// and the others only when the key is not there.
    pub fn record_label_near(
        &mut self,
        tx: u64,
        tx_ts_ms: Option<i64>,
        is_fraud: bool,
    ) -> LabelOutcome {
        let hinted = tx_ts_ms
            .and_then(|ts| self.find_day(day_of(ts, self.cfg.origin_ms)).ok())
            .filter(|&at| self.days[at].index.contains_key(&tx));
        let found = hinted.or_else(|| {
            (0..self.days.len())
                .rev()
                .find(|&at| self.days[at].index.contains_key(&tx))
        });
        let Some(at) = found else {
            return LabelOutcome::Unknown;
        };
        let slot = &mut self.days[at];
        let idx = slot.index[&tx];
        let rec = &mut slot.recs[idx as usize];
        if rec.label() != LABEL_NONE {
            return LabelOutcome::Duplicate;
        }
        rec.set_label(if is_fraud { LABEL_FRAUD } else { LABEL_GENUINE });
        if self.tracking && idx < slot.clean_len {
            slot.labelled_old.push(idx);
        }
        self.labeled += 1;
        LabelOutcome::Applied
    }

    /// Take in another evaluator's records (same configuration; typically a
    /// parallel worker's, which scored a disjoint set of cards). A transaction
    /// present in both on the same day keeps this evaluator's record. A day
    /// compacted on either side is compacted on both first.
    pub fn merge(&mut self, mut other: Prequential) {
        // Not listed change by change: the next checkpoint holds it whole.
        self.tracking = false;
        let theirs: Vec<i64> = other.compacted.keys().copied().collect();
        for day in theirs {
            self.compact_day(day);
        }
        let mine: Vec<i64> = self.compacted.keys().copied().collect();
        for day in mine {
            other.compact_day(day);
        }
        for (day, c) in std::mem::take(&mut other.compacted) {
            fold_day(&mut self.compacted, day, c, self.cfg.k);
        }
        for slot in std::mem::take(&mut other.days) {
            match self.find_day(slot.day) {
                Err(at) => {
                    self.records += slot.index.len();
                    self.days.insert(at, slot);
                }
                Ok(at) => {
                    let target = &mut self.days[at];
                    let base = u32::try_from(target.recs.len())
                        .expect("more than u32::MAX transactions in one day");
                    target.recs.extend(slot.recs);
                    for (tx, idx) in slot.index {
                        if let std::collections::hash_map::Entry::Vacant(e) = target.index.entry(tx)
                        {
                            e.insert(base + idx);
                            self.records += 1;
                        }
                    }
                }
            }
        }
        self.labeled += other.labeled;
        self.newest_day = self.newest_day.max(other.newest_day);
        self.compact_expired();
        while self.records > self.cfg.max_records && self.days.len() > 1 {
            self.compact_oldest();
        }
    }

    /// Number of distinct transactions scored (records held and compacted).
    pub fn scored(&self) -> u64 {
        self.records as u64 + self.compacted.values().map(|c| c.transactions).sum::<u64>()
    }

    /// Records held (the retained days' transactions).
    pub fn records(&self) -> usize {
        self.records
    }

    /// Days of records held (at most the retention's days).
    pub fn days_held(&self) -> usize {
        self.days.len()
    }

    /// Days compacted into aggregates (held).
    pub fn compacted_days(&self) -> usize {
        self.compacted.len()
    }

    /// Number of labels applied (one per transaction at most).
    pub fn labeled(&self) -> u64 {
        self.labeled
    }

    /// Whether a record enters the metrics, and as fraud or not.
    #[inline]
    fn outcome(&self, r: &Rec) -> Option<bool> {
        match r.label() {
            LABEL_FRAUD => Some(true),
            LABEL_GENUINE => Some(false),
            _ => match self.cfg.unlabeled {
                Unlabeled::Genuine => Some(false),
                Unlabeled::Ignore => None,
            },
        }
    }

    /// Metrics over transactions whose day index (from `origin_ms`) is
    /// `>= from_day` (`None` = all days). When the range holds compacted
    /// days, ROC AUC and average precision come from score histograms of
    /// every day of the range (`compacted_days` says how many).
    pub fn summary(&self, from_day: Option<i64>) -> MetricsSummary {
        let from = from_day.unwrap_or(i64::MIN);
        let mut out = MetricsSummary {
            transactions: 0,
            labeled: 0,
            frauds: 0,
            roc_auc: None,
            average_precision: None,
            precision_at_threshold: None,
            recall_at_threshold: None,
            alerts: 0,
            card_precision_at_k: None,
            first_day: None,
            last_day: None,
            compacted_days: 0,
            expected_calibration_error: None,
        };
        let mut pairs: Vec<(f32, bool)> = Vec::new();
        let mut cards: Vec<(u64, f32, bool)> = Vec::new();
        let mut true_alerts = 0u64;
        let (mut cp_sum, mut cp_days) = (0.0f64, 0u64);
        for slot in self.days.iter().filter(|s| s.day >= from) {
            let (day, recs) = (slot.day, &slot.recs);
            out.transactions += recs.len() as u64;
            cards.clear();
            for r in recs {
                if r.label() != LABEL_NONE {
                    out.labeled += 1;
                }
                let Some(fraud) = self.outcome(r) else {
                    continue;
                };
                pairs.push((r.score, fraud));
                cards.push((r.card(), r.score, fraud));
                if f64::from(r.score) >= self.cfg.threshold {
                    out.alerts += 1;
                    true_alerts += u64::from(fraud);
                }
                out.frauds += u64::from(fraud);
            }
            if let Some(cp) = card_precision_at_k(&cards, self.cfg.k) {
                cp_sum += cp;
                cp_days += 1;
            }
            out.first_day = Some(out.first_day.map_or(day, |d: i64| d.min(day)));
            out.last_day = Some(out.last_day.map_or(day, |d: i64| d.max(day)));
        }
        let mut bins = ScoreBins::default();
        for (&day, c) in self.compacted.range(from..) {
            out.compacted_days += 1;
            out.transactions += c.transactions;
            out.labeled += c.labeled;
            out.frauds += c.frauds;
            out.alerts += c.alerts;
            true_alerts += c.true_alerts;
            bins.merge(&c.bins);
            if let Some(cp) = c.card_precision() {
                cp_sum += cp;
                cp_days += 1;
            }
            out.first_day = Some(out.first_day.map_or(day, |d: i64| d.min(day)));
            out.last_day = Some(out.last_day.map_or(day, |d: i64| d.max(day)));
        }
        if out.compacted_days == 0 {
            out.roc_auc = roc_auc(&pairs);
            out.average_precision = average_precision(&pairs);
            out.expected_calibration_error = expected_calibration_error(&pairs);
        } else {
            for &(score, fraud) in &pairs {
                bins.add(score, fraud);
            }
            out.roc_auc = bins.roc_auc();
            out.average_precision = bins.average_precision();
            out.expected_calibration_error = bins.reliability().ece();
        }
        out.precision_at_threshold =
            (out.alerts > 0).then(|| true_alerts as f64 / out.alerts as f64);
        out.recall_at_threshold = (out.frauds > 0).then(|| true_alerts as f64 / out.frauds as f64);
        out.card_precision_at_k = (cp_days > 0).then(|| cp_sum / cp_days as f64);
        out
    }

    /// The curves and threshold table of the evaluated transactions whose
    /// day is `>= from_day` (`None`: all days), as
    /// [`summary`](Self::summary) counts them: from the records, or from
    /// score histograms (approximate, no amounts) when the range holds a
    /// compacted day.
    pub fn curves(&self, from_day: Option<i64>) -> Curves {
        let from = from_day.unwrap_or(i64::MIN);
        let held = self.days.iter().filter(|s| s.day >= from);
        let compacted = self.compacted.range(from..);
        let day_span = held
            .clone()
            .map(|s| s.day)
            .chain(compacted.clone().map(|(&d, _)| d))
            .fold(None, |acc: Option<(i64, i64)>, d| {
                Some(acc.map_or((d, d), |(lo, hi)| (lo.min(d), hi.max(d))))
            });
        let days = day_span.map_or(0, |(lo, hi)| (hi - lo + 1) as u64);
        let threshold = self.cfg.threshold;
        if compacted.clone().next().is_none() {
            let recs: Vec<(f32, f32, bool)> = held
                .flat_map(|s| s.recs.iter())
                .filter_map(|r| self.outcome(r).map(|fraud| (r.score, r.amount, fraud)))
                .collect();
            return Curves::of(&curves::groups_of_records(recs), days, threshold, false);
        }
        let mut bins = ScoreBins::default();
        for (_, c) in compacted {
            bins.merge(&c.bins);
        }
        for s in held {
            for r in &s.recs {
                if let Some(fraud) = self.outcome(r) {
                    bins.add(r.score, fraud);
                }
            }
        }
        Curves::of(&curves::groups_of_bins(&bins), days, threshold, true)
    }

    /// Metrics of each day that has a scored transaction, ascending by day.
    pub fn daily(&self) -> Vec<DayMetrics> {
        let mut pairs: Vec<(f32, bool)> = Vec::new();
        let mut cards: Vec<(u64, f32, bool)> = Vec::new();
        let mut days: Vec<DayMetrics> = self
            .compacted
            .iter()
            .map(|(&day, c)| DayMetrics {
                day,
                transactions: c.transactions,
                frauds: c.frauds,
                roc_auc: c.bins.roc_auc(),
                average_precision: c.bins.average_precision(),
                card_precision_at_k: c.card_precision(),
                alerts: c.alerts,
                compacted: true,
            })
            .collect();
        days.extend(self.days.iter().map(|s| {
            pairs.clear();
            cards.clear();
            let (mut frauds, mut alerts) = (0u64, 0u64);
            for r in &s.recs {
                let Some(fraud) = self.outcome(r) else {
                    continue;
                };
                pairs.push((r.score, fraud));
                cards.push((r.card(), r.score, fraud));
                frauds += u64::from(fraud);
                alerts += u64::from(f64::from(r.score) >= self.cfg.threshold);
            }
            DayMetrics {
                day: s.day,
                transactions: s.recs.len() as u64,
                frauds,
                roc_auc: roc_auc(&pairs),
                average_precision: average_precision(&pairs),
                card_precision_at_k: card_precision_at_k(&cards, self.cfg.k),
                alerts,
                compacted: false,
            }
        }));
        days.sort_by_key(|d| d.day);
        days
    }
}

/// Metrics of one portfolio member, from its own prequential evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberMetrics {
    /// Member name.
    pub name: String,
    /// Whether its score is the one served.
    pub served: bool,
    /// Over the whole run.
    pub overall: MetricsSummary,
    /// Over the last days of the report.
    pub last_days: MetricsSummary,
}

/// Each portfolio member's own prequential evaluation: an observer, outside
/// the models, of the member scores the served model returns with each
/// score ([`MemberScores`]) and of every label. Which members it evaluates
/// follows the portfolio settings
/// ([`PortfolioConfig::evaluated_members`]): none for the logistic alone.
///
/// Not model state: a checkpoint does not carry it, so after a restore it
/// covers the stream from the restore on.
#[derive(Clone, Debug)]
pub struct MemberEvaluation {
    served: ModelKind,
    evals: Vec<(Member, Prequential)>,
}

impl MemberEvaluation {
    /// Empty evaluations of the members `cfg` runs, each configured by `eval`.
    pub fn new(cfg: &PortfolioConfig, eval: &EvalConfig) -> Self {
        MemberEvaluation {
            served: cfg.kind,
            evals: cfg
                .evaluated_members()
                .into_iter()
                .map(|m| (m, Prequential::new(eval.clone())))
                .collect(),
        }
    }

    /// Record each evaluated member's score of transaction `tx` (event time
    /// `ts_ms`, card key `card`); see [`Prequential::record_score`].
    pub fn record_score(
        &mut self,
        tx: u64,
        ts_ms: i64,
        card: u64,
        amount: f64,
        scores: &MemberScores,
    ) {
        for (m, eval) in &mut self.evals {
            eval.record_score(tx, ts_ms, card, scores.of(*m) as f32, amount);
        }
    }

    /// Each evaluated member's curves over the whole run (see
    /// [`Prequential::curves`]), by name.
    pub fn curves(&self) -> Vec<(String, Curves)> {
        self.evals
            .iter()
            .map(|(m, e)| (m.name().to_string(), e.curves(None)))
            .collect()
    }

    /// Note a label (every label, joined to its features or not).
    pub fn record_label(&mut self, tx: u64, is_fraud: bool) {
        self.record_label_near(tx, None, is_fraud);
    }

    /// [`record_label`](Self::record_label), with the transaction's event
    /// time when known (see [`Prequential::record_label_near`]).
    pub fn record_label_near(&mut self, tx: u64, tx_ts_ms: Option<i64>, is_fraud: bool) {
        for (_, eval) in &mut self.evals {
            eval.record_label_near(tx, tx_ts_ms, is_fraud);
        }
    }

    /// Each evaluated member's metrics, over the run and from `from_day` on.
    pub fn metrics(&self, from_day: Option<i64>) -> Vec<MemberMetrics> {
        self.evals
            .iter()
            .map(|(m, e)| MemberMetrics {
                name: m.name().to_string(),
                served: m.name() == self.served.name(),
                overall: e.summary(None),
                last_days: e.summary(from_day),
            })
            .collect()
    }

    /// The daily metrics of one member (by name), if it is evaluated.
    pub fn daily(&self, name: &str) -> Option<Vec<DayMetrics>> {
        self.evals
            .iter()
            .find(|(m, _)| m.name() == name)
            .map(|(_, e)| e.daily())
    }

    /// Take in another stage's evaluations (same settings; after a parallel run).
    pub fn merge(&mut self, other: MemberEvaluation) {
        for ((_, mine), (_, theirs)) in self.evals.iter_mut().zip(other.evals) {
            mine.merge(theirs);
        }
    }
}

/// Normalised copy of `pairs` sorted by score with `order` (ties adjacent).
fn sorted_pairs(pairs: &[(f32, bool)], descending: bool) -> Vec<(f32, bool)> {
    let mut v: Vec<(f32, bool)> = pairs.iter().map(|&(s, y)| (norm(s), y)).collect();
    if descending {
        v.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    } else {
        v.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    }
    v
}

/// Calls `f(positives, negatives)` for each group of equal scores, in the
/// order of the (sorted) slice.
fn for_each_tie_group(sorted: &[(f32, bool)], mut f: impl FnMut(u64, u64)) {
    let mut i = 0;
    while i < sorted.len() {
        let s = sorted[i].0;
        let (mut p, mut n) = (0u64, 0u64);
        while i < sorted.len() && sorted[i].0 == s {
            if sorted[i].1 {
                p += 1;
            } else {
                n += 1;
            }
            i += 1;
        }
        f(p, n);
    }
}

/// Exact, tie-aware ROC AUC (Mann-Whitney with average ranks). None if a
/// class is absent.
///
/// Computed as the probability that a random fraud outscores a random
/// genuine transaction, ties counting 1/2, with the pair count kept exactly
/// in integers (`u128`) until the final division. NaN scores count as 0.0.
pub fn roc_auc(pairs: &[(f32, bool)]) -> Option<f64> {
    let sorted = sorted_pairs(pairs, false);
    let (mut neg_below, mut pos_total) = (0u64, 0u64);
    // Twice the Mann-Whitney U statistic.
    let mut u2: u128 = 0;
    for_each_tie_group(&sorted, |p, n| {
        u2 += 2 * u128::from(p) * u128::from(neg_below) + u128::from(p) * u128::from(n);
        neg_below += n;
        pos_total += p;
    });
    let neg_total = neg_below;
    if pos_total == 0 || neg_total == 0 {
        return None;
    }
    Some(u2 as f64 / (2.0 * pos_total as f64 * neg_total as f64))
}

/// Average precision as in scikit-learn (sum over thresholds of
/// (R_n - R_{n-1}) P_n, ties grouped). None if no positive.
///
/// Each distinct score is one threshold; all transactions sharing it enter
/// together. NaN scores count as 0.0.
pub fn average_precision(pairs: &[(f32, bool)]) -> Option<f64> {
    let sorted = sorted_pairs(pairs, true);
    let (mut tp, mut fp) = (0u64, 0u64);
    let mut acc = 0.0f64;
    for_each_tie_group(&sorted, |p, n| {
        tp += p;
        fp += n;
        if p > 0 {
            acc += p as f64 * (tp as f64 / (tp + fp) as f64);
        }
    });
    (tp > 0).then(|| acc / tp as f64)
}

/// Reliability of scores read as probabilities of fraud: per bin of
/// score ([`RELIABILITY_BINS`] of equal width over [0, 1]), the
/// transactions, their summed score and their frauds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reliability {
    n: [u64; RELIABILITY_BINS],
    score: [f64; RELIABILITY_BINS],
    frauds: [u64; RELIABILITY_BINS],
}

/// Bins of [`Reliability`].
pub const RELIABILITY_BINS: usize = 10;

impl Reliability {
    /// Count `n` evaluated transactions of `score` (NaN as 0).
    pub fn add_n(&mut self, score: f64, fraud: bool, n: u64) {
        let s = if score.is_nan() {
            0.0
        } else {
            score.clamp(0.0, 1.0)
        };
        let b = ((s * RELIABILITY_BINS as f64) as usize).min(RELIABILITY_BINS - 1);
        self.n[b] += n;
        self.score[b] += s * n as f64;
        if fraud {
            self.frauds[b] += n;
        }
    }

    /// Expected calibration error: the mean over transactions of the gap
    /// between their bin's mean score and its fraud rate,
    /// `Σ_b (n_b / n) |mean score_b - frauds_b / n_b|`. 0 for scores that
    /// are the fraud probabilities they claim; `None` without transactions.
    pub fn ece(&self) -> Option<f64> {
        let total: u64 = self.n.iter().sum();
        (total > 0).then(|| {
            (0..RELIABILITY_BINS)
                .filter(|&b| self.n[b] > 0)
                .map(|b| (self.score[b] - self.frauds[b] as f64).abs())
                .sum::<f64>()
                / total as f64
        })
    }
}

/// [`Reliability::ece`] of `(score, is_fraud)` pairs.
pub fn expected_calibration_error(pairs: &[(f32, bool)]) -> Option<f64> {
    let mut r = Reliability::default();
    for &(score, fraud) in pairs {
        r.add_n(f64::from(score), fraud, 1);
    }
    r.ece()
}

/// Card precision@k for one day.
///
/// `cards` holds one `(card, score, is_fraud)` entry per transaction of the
/// day. Per card, its max score that day and whether it had any fraud that
/// day; of the `k` cards with the highest max score (ties broken by card key
/// ascending, deterministic), the share with fraud. With fewer than `k`
/// cards the denominator is the number of cards (`min(k, cards)`). None if
/// there is no card or `k == 0`. NaN scores count as 0.0.
pub fn card_precision_at_k(cards: &[(u64, f32, bool)], k: usize) -> Option<f64> {
    if cards.is_empty() || k == 0 {
        return None;
    }
    let top = top_cards(cards, k);
    let hits = top.iter().filter(|e| e.2).count();
    Some(hits as f64 / top.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pairs(scores: &[f32], labels: &[u8]) -> Vec<(f32, bool)> {
        scores
            .iter()
            .zip(labels)
            .map(|(&s, &y)| (s, y == 1))
            .collect()
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    /// O(n^2) AUC: share of (fraud, genuine) pairs ordered right, ties 1/2.
    fn naive_auc(p: &[(f32, bool)]) -> Option<f64> {
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for &(sp, yp) in p {
            for &(sn, yn) in p {
                if yp && !yn {
                    den += 1.0;
                    if sp > sn {
                        num += 1.0;
                    } else if sp == sn {
                        num += 0.5;
                    }
                }
            }
        }
        (den > 0.0).then(|| num / den)
    }

    /// O(n^2) AP: thresholds = distinct scores, descending; sum (R_n - R_{n-1}) P_n.
    fn naive_ap(p: &[(f32, bool)]) -> Option<f64> {
        let pos = p.iter().filter(|e| e.1).count();
        if pos == 0 {
            return None;
        }
        let mut th: Vec<f32> = p.iter().map(|e| e.0).collect();
        th.sort_by(|a, b| b.total_cmp(a));
        th.dedup();
        let (mut ap, mut prev_r) = (0.0, 0.0);
        for t in th {
            let sel = p.iter().filter(|e| e.0 >= t).count();
            let tp = p.iter().filter(|e| e.0 >= t && e.1).count();
            let prec = tp as f64 / sel as f64;
            let r = tp as f64 / pos as f64;
            ap += (r - prev_r) * prec;
            prev_r = r;
        }
        Some(ap)
    }

    #[test]
    fn calibration_error_hand_worked() {
        // Bin 0.1-0.2: mean 0.15, one fraud in two (gap 0.35); bin 0.9-1.0:
        // mean 0.9, both fraud (gap 0.1). (2 * 0.35 + 2 * 0.1) / 4.
        let pairs = [(0.1, false), (0.2 - 1e-6, true), (0.9, true), (0.9, true)];
        let ece = expected_calibration_error(&pairs).unwrap();
        assert!((ece - 0.225).abs() < 1e-6, "{ece}");
        assert_eq!(expected_calibration_error(&[]), None);
        // Scores that are the rates they claim have no error.
        let fair: Vec<(f32, bool)> = (0..10).map(|i| (0.3, i < 3)).collect();
        assert!(expected_calibration_error(&fair).unwrap() < 1e-6);
    }

    #[test]
    fn auc_hand_worked() {
        let p = pairs(&[0.1, 0.4, 0.35, 0.8], &[0, 0, 1, 1]);
        assert!(close(roc_auc(&p), 0.75));
        // Perfect and inverted rankings.
        assert!(close(roc_auc(&pairs(&[0.1, 0.2, 0.9], &[0, 0, 1])), 1.0));
        assert!(close(roc_auc(&pairs(&[0.9, 0.2, 0.1], &[0, 1, 1])), 0.0));
        // Ties across classes: pos {0.5, 0.7}, neg {0.5, 0.2}:
        // pairs (0.5,0.5)=0.5, (0.5,0.2)=1, (0.7,0.5)=1, (0.7,0.2)=1 -> 3.5/4.
        let p = pairs(&[0.5, 0.7, 0.5, 0.2], &[1, 1, 0, 0]);
        assert!(close(roc_auc(&p), 0.875));
    }

    #[test]
    fn auc_all_ties_is_half_and_one_class_is_none() {
        let p = pairs(&[0.3; 6], &[0, 1, 0, 1, 1, 0]);
        assert!(close(roc_auc(&p), 0.5));
        assert_eq!(roc_auc(&pairs(&[0.1, 0.2], &[1, 1])), None);
        assert_eq!(roc_auc(&pairs(&[0.1, 0.2], &[0, 0])), None);
        assert_eq!(roc_auc(&[]), None);
    }

    #[test]
    fn ap_sklearn_doc_example() {
        let p = pairs(&[0.1, 0.4, 0.35, 0.8], &[0, 0, 1, 1]);
        assert!(close(average_precision(&p), 0.5 + 0.5 * 2.0 / 3.0));
        assert!((average_precision(&p).unwrap() - 0.833_333_333_333).abs() < 1e-9);
        // All ties: one threshold, precision = prevalence.
        assert!(close(
            average_precision(&pairs(&[0.3; 4], &[1, 0, 0, 0])),
            0.25
        ));
        assert_eq!(average_precision(&pairs(&[0.3, 0.4], &[0, 0])), None);
        // No negatives: AP is 1.
        assert!(close(average_precision(&pairs(&[0.3, 0.4], &[1, 1])), 1.0));
    }

    #[test]
    fn nan_and_negative_zero_scores() {
        // NaN counts as 0.0 and so ties with the genuine 0.0 and -0.0.
        let p = vec![(f32::NAN, true), (0.0, false), (-0.0, false)];
        assert!(close(roc_auc(&p), 0.5));
        assert!(close(average_precision(&p), 1.0 / 3.0));
        let c = vec![(1, f32::NAN, true), (2, -0.0, false)];
        // Both max scores 0.0: tie -> card 1 first.
        assert_eq!(card_precision_at_k(&c, 1), Some(1.0));
    }

    #[test]
    fn card_precision_worked_example() {
        let c = vec![
            (1, 0.9, false),
            (1, 0.2, true), // card 1: max 0.9, has fraud
            (3, 0.8, true), // card 3: max 0.8, fraud
            (2, 0.8, false),
            (4, 0.1, true), // card 4: max 0.1, fraud
        ];
        // Ranking: 1 (0.9), 2 (0.8, key 2 < 3), 3 (0.8), 4 (0.1).
        assert_eq!(card_precision_at_k(&c, 1), Some(1.0));
        assert_eq!(card_precision_at_k(&c, 2), Some(0.5));
        assert!(close(card_precision_at_k(&c, 3), 2.0 / 3.0));
        // Fewer than k cards: divide by the number of cards.
        assert_eq!(card_precision_at_k(&c, 100), Some(0.75));
        assert_eq!(card_precision_at_k(&[], 10), None);
        assert_eq!(card_precision_at_k(&c, 0), None);
    }

    fn cfg() -> EvalConfig {
        EvalConfig {
            threshold: 0.5,
            k: 2,
            unlabeled: Unlabeled::Genuine,
            origin_ms: 0,
            ..EvalConfig::default()
        }
    }

    /// 30 days of 200 transactions over 50 cards, one in 20 fraud (labelled
    /// at once), scores that rank frauds high with noise; into `e`.
    fn thirty_days(e: &mut Prequential) {
        let mut rng = 12345u64;
        for day in 0..30i64 {
            for i in 0..200u64 {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let noise = (rng >> 40) as f32 / (1u64 << 24) as f32;
                let tx = day as u64 * 1_000 + i;
                let fraud = i % 20 == 0;
                let score = if fraud {
                    0.3 + 0.7 * noise
                } else {
                    0.6 * noise
                };
                e.record_score(tx, day * DAY_MS + i as i64, i % 50, score, 0.0);
                e.record_label(tx, fraud);
            }
        }
    }

    #[test]
    fn a_new_day_is_sized_as_the_day_before_it() {
        let mut e = Prequential::new(cfg());
        thirty_days(&mut e);
        e.record_score(99_999, 30 * DAY_MS, 1, 0.5, 0.0);
        let last = e.days.back().expect("day 30 is held");
        assert_eq!((last.day, last.recs.len()), (30, 1));
        // One allocation per table for a day like the one before, not a
        // chain of doublings (whose freed blocks fragment the heap).
        assert!(last.recs.capacity() >= 200, "{}", last.recs.capacity());
        assert!(last.index.capacity() >= 200, "{}", last.index.capacity());
        // A late transaction's day is not sized after the newest.
        let mut late = Prequential::new(cfg());
        late.record_score(1, 5 * DAY_MS, 1, 0.5, 0.0);
        late.record_score(2, 2 * DAY_MS, 1, 0.5, 0.0);
        assert!(late.days.front().expect("day 2").recs.capacity() < 200);
    }

    #[test]
    fn old_days_are_compacted_into_the_aggregates_reports_need() {
        let mut full = Prequential::new(cfg());
        thirty_days(&mut full);
        let mut kept = Prequential::new(EvalConfig {
            retention_ms: 7 * DAY_MS,
            ..cfg()
        });
        thirty_days(&mut kept);
        assert_eq!(kept.records(), 7 * 200, "seven days of records");
        assert_eq!(kept.compacted_days(), 23);
        assert_eq!(kept.scored(), full.scored());
        let (a, b) = (full.summary(None), kept.summary(None));
        assert_eq!(
            (a.transactions, a.labeled, a.frauds, a.alerts),
            (b.transactions, b.labeled, b.frauds, b.alerts)
        );
        assert_eq!(
            (b.first_day, b.last_day, b.compacted_days),
            (Some(0), Some(29), 23)
        );
        assert_eq!(a.precision_at_threshold, b.precision_at_threshold);
        assert!(close(b.card_precision_at_k, a.card_precision_at_k.unwrap()));
        let gap = (a.roc_auc.unwrap() - b.roc_auc.unwrap()).abs();
        assert!(gap < 2e-3, "binned AUC within 2e-3 of the exact: {gap}");
        let gap = (a.average_precision.unwrap() - b.average_precision.unwrap()).abs();
        assert!(gap < 5e-3, "binned AP within 5e-3: {gap}");
        // The retained days are exact, the compacted ones flagged.
        assert_eq!(full.summary(Some(23)), kept.summary(Some(23)));
        let (da, db) = (full.daily(), kept.daily());
        assert_eq!(da.len(), db.len());
        assert!(db[..23].iter().all(|d| d.compacted) && !db[23].compacted);
        assert_eq!(da[29], db[29]);
        assert_eq!(da[3].card_precision_at_k, db[3].card_precision_at_k);
        // A label for a compacted transaction is unknown, a new one still lands.
        assert_eq!(kept.record_label(1_000 + 3, true), LabelOutcome::Unknown);
    }

    #[test]
    fn the_record_cap_compacts_the_oldest_days_first() {
        let mut e = Prequential::new(EvalConfig {
            max_records: 1_000,
            ..cfg()
        });
        thirty_days(&mut e);
        assert!(e.records() <= 1_000, "{}", e.records());
        assert_eq!(e.summary(None).transactions, 30 * 200);
        assert!(e.daily().last().is_some_and(|d| !d.compacted));
    }

    #[test]
    fn merged_compacted_evaluators_equal_one() {
        let c = EvalConfig {
            retention_ms: 5 * DAY_MS,
            ..cfg()
        };
        let (mut all, mut a, mut b) = (
            Prequential::new(c.clone()),
            Prequential::new(c.clone()),
            Prequential::new(EvalConfig {
                retention_ms: 12 * DAY_MS,
                ..c
            }),
        );
        thirty_days(&mut all);
        let mut split = Prequential::new(cfg());
        thirty_days(&mut split);
        // Feed cards < 25 to a, the rest to b, from the same stream.
        for day in 0..30i64 {
            for i in 0..200u64 {
                let tx = day as u64 * 1_000 + i;
                let fraud = i % 20 == 0;
                let day_slot = split
                    .days
                    .iter()
                    .find(|s| s.index.contains_key(&tx))
                    .unwrap();
                let score = day_slot.recs[day_slot.index[&tx] as usize].score;
                let e = if i % 50 < 25 { &mut a } else { &mut b };
                e.record_score(tx, day * DAY_MS + i as i64, i % 50, score, 0.0);
                e.record_label(tx, fraud);
            }
        }
        a.merge(b);
        assert_eq!(a.summary(None), all.summary(None));
        assert_eq!(a.daily(), all.daily());
    }

    #[test]
    fn merging_split_evaluators_equals_one() {
        let mut all = Prequential::new(cfg());
        let (mut a, mut b) = (Prequential::new(cfg()), Prequential::new(cfg()));
        for i in 0..400u64 {
            let (card, ts, score) = (
                i % 37,
                (i as i64) * 3_600_000,
                ((i * 7919) % 101) as f32 / 100.0,
            );
            let fraud = i % 13 == 0;
            let part = if card % 2 == 0 { &mut a } else { &mut b };
            for p in [&mut all, part] {
                p.record_score(i, ts, card, score, 0.0);
                if i % 5 != 0 {
                    p.record_label(i, fraud);
                }
            }
        }
        a.merge(b);
        assert_eq!(a.scored(), all.scored());
        assert_eq!(a.labeled(), all.labeled());
        assert_eq!(a.summary(None), all.summary(None));
        assert_eq!(a.daily(), all.daily());
        assert_eq!(a.record_label(1, true), LabelOutcome::Duplicate);
    }

    #[test]
    fn default_config() {
        let c = EvalConfig::default();
        assert_eq!(c.threshold, 0.5);
        assert_eq!(c.k, 100);
        assert_eq!(c.unlabeled, Unlabeled::Genuine);
        assert_eq!(c.origin_ms, 0);
        assert_eq!(
            serde_json::to_string(&Unlabeled::Ignore).unwrap(),
            "\"ignore\""
        );
    }

    #[test]
    fn duplicate_and_unknown_labels() {
        let mut p = Prequential::new(cfg());
        p.record_score(10, 0, 1, 0.9, 0.0);
        p.record_score(11, 0, 2, 0.1, 0.0);
        assert_eq!(p.record_label(99, true), LabelOutcome::Unknown);
        assert_eq!(p.record_label(10, true), LabelOutcome::Applied);
        assert_eq!(p.record_label(10, false), LabelOutcome::Duplicate);
        assert_eq!(p.record_label(10, true), LabelOutcome::Duplicate);
        assert_eq!((p.scored(), p.labeled()), (2, 1));
        let s = p.summary(None);
        assert_eq!((s.transactions, s.labeled, s.frauds), (2, 1, 1));
        assert_eq!(s.roc_auc, Some(1.0));
        // A second score for the same tx (the same day) is ignored.
        p.record_score(11, 5, 2, 0.99, 0.0);
        assert_eq!(p.scored(), 2);
        assert_eq!(p.daily().len(), 1);
        assert_eq!(p.record_label(11, true), LabelOutcome::Applied);
        assert_eq!(p.summary(None).roc_auc, None); // both fraud now
                                                   // The key on another day is another transaction; its label lands
                                                   // there, the newest, and the first day's records are unchanged.
        p.record_score(11, 5 * DAY_MS, 2, 0.2, 0.0);
        assert_eq!((p.scored(), p.daily().len()), (3, 2));
        assert_eq!(p.record_label(11, false), LabelOutcome::Applied);
        assert_eq!(p.record_label(11, false), LabelOutcome::Duplicate);
        assert_eq!(p.daily()[0].frauds, 2);
    }

    #[test]
    fn unlabeled_policy() {
        let build = |policy| {
            let mut p = Prequential::new(EvalConfig {
                unlabeled: policy,
                ..cfg()
            });
            p.record_score(1, 0, 1, 0.9, 0.0); // fraud
            p.record_score(2, 0, 2, 0.6, 0.0); // unlabeled
            p.record_score(3, 0, 3, 0.2, 0.0); // genuine
            p.record_label(1, true);
            p.record_label(3, false);
            p
        };
        let g = build(Unlabeled::Genuine).summary(None);
        assert_eq!(
            (g.transactions, g.labeled, g.frauds, g.alerts),
            (3, 2, 1, 2)
        );
        assert_eq!(g.roc_auc, Some(1.0));
        assert_eq!(g.precision_at_threshold, Some(0.5));
        assert_eq!(g.recall_at_threshold, Some(1.0));
        assert_eq!(g.card_precision_at_k, Some(0.5)); // cards 1, 2 of top 2
        let i = build(Unlabeled::Ignore).summary(None);
        assert_eq!(
            (i.transactions, i.labeled, i.frauds, i.alerts),
            (3, 2, 1, 1)
        );
        assert_eq!(i.precision_at_threshold, Some(1.0));
        assert_eq!(i.card_precision_at_k, Some(0.5)); // cards 1, 3
        assert_eq!(i.average_precision, Some(1.0));
    }

    #[test]
    fn per_day_split_and_from_day() {
        let origin = 6 * 3_600_000; // days start at 06:00
        let mut p = Prequential::new(EvalConfig {
            origin_ms: origin,
            ..cfg()
        });
        // Day -1: before the origin.
        p.record_score(1, origin - 1, 7, 0.7, 0.0);
        // Day 0.
        p.record_score(2, origin, 7, 0.8, 0.0);
        p.record_score(3, origin + DAY_MS - 1, 8, 0.3, 0.0);
        // Day 2 (arrives before a later day-1 tx: out of order).
        p.record_score(4, origin + 2 * DAY_MS, 9, 0.1, 0.0);
        p.record_score(5, origin + 2 * DAY_MS + 5, 10, 0.6, 0.0);
        p.record_score(6, origin + DAY_MS + 1, 11, 0.4, 0.0); // day 1
        p.record_label(2, true);
        p.record_label(4, true);
        p.record_label(1, true);

        let d = p.daily();
        let days: Vec<i64> = d.iter().map(|m| m.day).collect();
        assert_eq!(days, vec![-1, 0, 1, 2]);
        let tx: Vec<u64> = d.iter().map(|m| m.transactions).collect();
        assert_eq!(tx, vec![1, 2, 1, 2]);
        assert_eq!(d[0].roc_auc, None);
        assert_eq!(d[0].card_precision_at_k, Some(1.0));
        assert_eq!(d[1].roc_auc, Some(1.0));
        assert_eq!(d[1].frauds, 1);
        assert_eq!(d[1].alerts, 1);
        assert_eq!(d[2].average_precision, None);
        assert_eq!(d[2].card_precision_at_k, Some(0.0));
        assert_eq!(d[3].roc_auc, Some(0.0));
        assert_eq!(d[3].average_precision, Some(0.5));

        let all = p.summary(None);
        assert_eq!((all.first_day, all.last_day), (Some(-1), Some(2)));
        assert_eq!((all.transactions, all.frauds), (6, 3));
        // Mean of daily card precision@2: (1 + 0.5 + 0 + 0.5) / 4.
        assert!(close(all.card_precision_at_k, 0.5));

        let late = p.summary(Some(1));
        assert_eq!((late.first_day, late.last_day), (Some(1), Some(2)));
        assert_eq!((late.transactions, late.labeled, late.frauds), (3, 1, 1));
        // Pooled over days 1..2: fraud 0.1 vs genuine 0.6, 0.4.
        assert_eq!(late.roc_auc, Some(0.0));
        assert!(close(late.card_precision_at_k, 0.25));
        assert_eq!(late.alerts, 1);
        assert_eq!(late.precision_at_threshold, Some(0.0));
        assert_eq!(late.recall_at_threshold, Some(0.0));

        let none = p.summary(Some(3));
        assert_eq!(none.transactions, 0);
        assert_eq!(
            (none.first_day, none.roc_auc, none.card_precision_at_k),
            (None, None, None)
        );
        assert_eq!(none.precision_at_threshold, None);
    }

    #[test]
    fn extreme_timestamps_and_nan_do_not_panic() {
        // Days 2^38 apart: the first is compacted as soon as the second
        // arrives, whatever the retention; its label came first, so it counts.
        for retention_ms in [i64::MAX, DAY_MS] {
            let mut p = Prequential::new(EvalConfig {
                origin_ms: i64::MAX,
                retention_ms,
                ..cfg()
            });
            p.record_score(1, i64::MIN, 1, f32::NAN, 0.0);
            p.record_label(1, true);
            p.record_score(2, i64::MAX, 2, f32::INFINITY, 0.0);
            let d = p.daily();
            assert_eq!(d.len(), 2);
            assert_eq!(d[1].day, 0);
            assert!(d[0].compacted);
            let s = p.summary(None);
            assert_eq!(s.roc_auc, Some(0.0));
            assert_eq!(s.alerts, 1);
        }
    }

    #[test]
    fn metrics_serialize_round_trip() {
        let mut p = Prequential::new(cfg());
        p.record_score(1, 0, 1, 0.9, 0.0);
        p.record_score(2, 0, 2, 0.1, 0.0);
        p.record_label(1, true);
        let s = p.summary(None);
        let back: MetricsSummary =
            serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        let d = p.daily();
        let back: Vec<DayMetrics> =
            serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
    }

    fn arb_pairs() -> impl Strategy<Value = Vec<(f32, bool)>> {
        // Few distinct scores so ties are frequent; sometimes arbitrary floats.
        let score = prop_oneof![
            4 => (0u8..8).prop_map(|x| f32::from(x) / 8.0),
            1 => any::<f32>(),
        ];
        prop::collection::vec((score, any::<bool>()), 0..60)
    }

    proptest! {
        #[test]
        fn auc_matches_naive(p in arb_pairs()) {
            let naive_in: Vec<(f32, bool)> = p.iter().map(|&(s, y)| (norm(s), y)).collect();
            match (roc_auc(&p), naive_auc(&naive_in)) {
                (Some(a), Some(b)) => prop_assert!((a - b).abs() < 1e-9, "{a} vs {b}"),
                (a, b) => prop_assert_eq!(a, b),
            }
        }

        #[test]
        fn ap_in_unit_interval_and_matches_naive(p in arb_pairs()) {
            let naive_in: Vec<(f32, bool)> = p.iter().map(|&(s, y)| (norm(s), y)).collect();
            let ap = average_precision(&p);
            if let Some(a) = ap {
                prop_assert!((0.0..=1.0 + 1e-12).contains(&a));
            }
            match (ap, naive_ap(&naive_in)) {
                (Some(a), Some(b)) => prop_assert!((a - b).abs() < 1e-9, "{a} vs {b}"),
                (a, b) => prop_assert_eq!(a, b),
            }
        }

        #[test]
        fn auc_invariant_under_increasing_transform(
            raw in prop::collection::vec((0u32..=100, any::<bool>()), 0..60),
            which in 0usize..3,
        ) {
            // Each map is strictly increasing and injective in f32 on 0..=100.
            let f = |i: u32| -> f32 {
                let x = f64::from(i);
                match which {
                    0 => (x * x * x - 5.0) as f32,
                    1 => (x + 1.0).ln() as f32,
                    _ => (-1.0 / (x + 1.0)) as f32,
                }
            };
            let base: Vec<(f32, bool)> = raw.iter().map(|&(i, y)| (i as f32, y)).collect();
            let moved: Vec<(f32, bool)> = raw.iter().map(|&(i, y)| (f(i), y)).collect();
            prop_assert_eq!(roc_auc(&base), roc_auc(&moved));
            prop_assert_eq!(average_precision(&base), average_precision(&moved));
        }

        #[test]
        fn prequential_pools_like_free_functions(
            txs in prop::collection::vec((0i64..4, 0u64..5, 0u8..8, 0u8..3), 0..40),
        ) {
            // label state: 0 = never labeled, 1 = genuine, 2 = fraud.
            let mut p = Prequential::new(cfg());
            let mut expect = Vec::new();
            for (i, &(day, card, s, lab)) in txs.iter().enumerate() {
                let score = f32::from(s) / 8.0;
                p.record_score(i as u64, day * DAY_MS + 1000, card, score, 0.0);
                if lab > 0 {
                    prop_assert_eq!(p.record_label(i as u64, lab == 2), LabelOutcome::Applied);
                }
                expect.push((score, lab == 2));
            }
            let s = p.summary(None);
            prop_assert_eq!(s.transactions, txs.len() as u64);
            prop_assert_eq!(s.roc_auc, roc_auc(&expect));
            prop_assert_eq!(s.average_precision, average_precision(&expect));
            let d = p.daily();
            prop_assert_eq!(d.iter().map(|m| m.transactions).sum::<u64>(), txs.len() as u64);
            prop_assert!(d.windows(2).all(|w| w[0].day < w[1].day));
        }
    }
}
