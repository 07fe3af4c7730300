//! Rolling per-entity features: per card and per merchant state, the one
//! declaration of every dense feature (name and vector order, in the
//! `feature_group!` groups), and the feature vector each transaction is
//! scored with.
//!
//! Keyed state as a fold: each card and merchant owns its state, created on
//! first sight, updated by its own events, dropped when idle for longer than
//! the configured time. One owner, no lock. Features are computed from the
//! state *before* the transaction is added, so a vector only describes the past.

use crate::event::{key_of, Transaction};
use crate::keymap::{key_map, make_room, sorted_entries, ChangedKeys, KeyMap, KeyedDelta};
use crate::windows::{WindowLayout, WindowSet, WindowSpec, WindowStats};
use compact_str::{format_compact, CompactString};
use std::sync::Arc;

use crate::time::{DAY_MS, HOUR_MS, MINUTE_MS};
/// Smallest amount taken in log space (zero-amount authorisations and
/// sub-cent amounts would give ln(0) = -inf or a value far below any real one).
const MIN_LOG_AMOUNT: f32 = 0.01;
/// How many recent distinct merchants a card remembers for "new merchant".
const RECENT_MERCHANTS: usize = 16;
/// Smoothing of the merchant fraud rate towards `RISK_PRIOR` with weight `RISK_PRIOR_WEIGHT` labels.
const RISK_PRIOR: f64 = 0.005;
const RISK_PRIOR_WEIGHT: f64 = 5.0;
/// Exponential weight of the newest observation in a card's usual amount and location.
const EW_ALPHA: f32 = 0.05;

/// Settings of the feature stage.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FeatureConfig {
    /// Card window horizons (ms), shortest first.
    pub card_windows: Vec<i64>,
    /// Merchant window horizons (ms).
    pub merchant_windows: Vec<i64>,
    /// Merchant fraud-risk horizons (ms).
    pub merchant_risk_windows: Vec<i64>,
    /// Which time a label counts at in the merchant's risk windows.
    pub merchant_risk_time: RiskTime,
    /// Buckets per window.
    pub buckets: u32,
    /// How long a confirmed fraud marks its card (ms).
    pub confirmed_fraud_horizon_ms: i64,
    /// Bits of the hashed categorical feature space.
    pub hash_bits: u32,
    /// The banded categoricals computed, by name ([`BAND_NAMES`]; see
    /// `Bands`).
    pub bands: Vec<CompactString>,
}

/// The banded categoricals, by the name `features.bands` gives them, in slot order.
pub const BAND_NAMES: [&str; CATEGORICALS - FIELD_SLOTS] =
    ["amount", "amount_vs_card", "mcc_x_amount", "merch_risk"];

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            card_windows: vec![10 * MINUTE_MS, HOUR_MS, DAY_MS, 7 * DAY_MS, 30 * DAY_MS],
            merchant_windows: vec![DAY_MS, 7 * DAY_MS, 30 * DAY_MS],
            merchant_risk_windows: vec![DAY_MS, 7 * DAY_MS, 30 * DAY_MS],
            merchant_risk_time: RiskTime::Both,
            buckets: 4,
            confirmed_fraud_horizon_ms: 30 * DAY_MS,
            hash_bits: 12,
            bands: BAND_NAMES.map(CompactString::from).to_vec(),
        }
    }
}

/// Which time a label counts at in a merchant's risk windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskTime {
    /// When the label arrived: the window holds the verdicts of the last
    /// days, whatever the age of their transactions.
    Arrival,
    /// When its transaction happened: the window holds the labelled share of
    /// the merchant's transactions of the last days (River's `TargetAgg`
    /// over a `TimeRolling` window); transactions younger than the label
    /// delay are not labelled yet, so a horizon shorter than the delay
    /// stays near the prior.
    Transaction,
    /// Both, as two groups of features (`merch_risk_*`, `merch_tx_risk_*`).
    Both,
}

impl FeatureConfig {
    /// The merchant risk horizons counted at label arrival, and those
    /// counted at transaction time (`merchant_risk_time`).
    pub fn risk_horizons(&self) -> (&[i64], &[i64]) {
        let all = self.merchant_risk_windows.as_slice();
        match self.merchant_risk_time {
            RiskTime::Arrival => (all, &[]),
            RiskTime::Transaction => (&[], all),
            RiskTime::Both => (all, all),
        }
    }
}

/// Short label of a horizon for feature names: `10m`, `1h`, `7d`, `90s`.
pub fn horizon_label(ms: i64) -> CompactString {
    if ms % DAY_MS == 0 {
        format_compact!("{}d", ms / DAY_MS)
    } else if ms % HOUR_MS == 0 {
        format_compact!("{}h", ms / HOUR_MS)
    } else if ms % MINUTE_MS == 0 {
        format_compact!("{}m", ms / MINUTE_MS)
    } else if ms % 1000 == 0 {
        format_compact!("{}s", ms / 1000)
    } else {
        format_compact!("{ms}ms")
    }
}

/// The features of one transaction: dense values in the order of
/// [`FeatureSpace::names`], and the hashed categorical slots.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeatureVector {
    /// Dense raw values (not standardised).
    pub dense: Vec<f32>,
    /// Hashed slots of merchant category, country and channel, then the
    /// bands of `features.bands` ([`BAND_NAMES`]; [`NO_SLOT`] when off).
    pub cats: [u32; CATEGORICALS],
}

/// Number of hashed categorical fields.
pub const CATEGORICALS: usize = 7;
/// Names of the hashed categorical fields, in slot order.
pub const CATEGORICAL_NAMES: [&str; CATEGORICALS] = [
    "mcc",
    "country",
    "channel",
    "amount_band",
    "amount_vs_card_band",
    "mcc_x_amount_band",
    "merch_risk_band",
];
/// A categorical slot that holds nothing (a model skips it).
pub const NO_SLOT: u32 = u32::MAX;
/// The slots [`CardFeatures`] hashes from the transaction's own fields.
pub const FIELD_SLOTS: usize = 3;

/// The names and order of the features, fixed by the configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureSpace {
    names: Arc<[CompactString]>,
    hash_bits: u32,
}

impl FeatureSpace {
    /// Dense feature names, in vector order.
    pub fn names(&self) -> &[CompactString] {
        &self.names
    }
    /// Number of dense features.
    pub fn dense_len(&self) -> usize {
        self.names.len()
    }
    /// Bits of the hashed categorical space.
    pub fn hash_bits(&self) -> u32 {
        self.hash_bits
    }
}

/// State of one card.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CardState {
    windows: WindowSet,
    /// Exponentially weighted mean and variance of ln(amount).
    amount_mu: f32,
    amount_var: f32,
    /// Transactions seen (saturating).
    seen: u32,
    /// Previous location and the usual one (NaN when unknown).
    last_loc: (f32, f32),
    home: (f32, f32),
    /// 16-bit fingerprints of recent distinct merchants (0 = empty), ring
    /// order; a false "seen" needs a 1-in-4096 collision among 16 slots.
    recent: [u16; RECENT_MERCHANTS],
    recent_pos: u8,
    last_country: u16,
    /// Arrival time of the newest fraud label for this card.
    confirmed_fraud_ts: i64,
    /// Changed since the last checkpoint (see [`ChangedKeys`]).
    #[serde(skip)]
    changed: bool,
}

/// State of one merchant / terminal.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct MerchantState {
    windows: WindowSet,
    /// Labels by arrival time: count = labelled, aux = frauds.
    risk: WindowSet,
    /// Labels by their transaction's time (same counts).
    risk_tx: WindowSet,
}

/// Owns every card's state: the card half of the feature vector.
#[derive(Debug)]
pub struct CardFeatures {
    cfg: FeatureConfig,
    card_layout: WindowLayout,
    /// Card features per vector ([`card_feature_count`]).
    len: usize,
    cards: KeyMap<CardState>,
    /// Most cards held; the least recently seen make room for a new one.
    max_cards: usize,
    /// Cards dropped to make room.
    capped: u64,
    /// Cards changed since the last checkpoint.
    changes: ChangedKeys,
    /// `ln(1 + n)` for n < LN1P_TABLE.
    ln1p: Box<[f32]>,
    /// Hash of each categorical field's name, mixed into its values' hashes.
    cat_salts: [u64; CATEGORICALS],
    /// The banded categoricals.
    bands: Bands,
}

/// Width of an amount band in `ln(1 + amount)`: half an octave (bands √2 apart).
const HALF_OCTAVE: f32 = std::f32::consts::LN_2 / 2.0;
/// Width of a merchant-risk band in log-odds.
const RISK_BAND: f32 = 0.5;

/// Piecewise-constant views of a few dense features, as hashed
/// categoricals, so that a linear model gives each level of them a weight
/// of its own. A tree splits on a level for free; a linear score is
/// monotone in each feature, so a fraud rule such as "any amount above a
/// fixed level" or "about five times the card's usual amount" is out of
/// its reach without them.
///
/// - `amount_band`: `1 + amount` in half-octave bands;
/// - `amount_vs_card_band`: `(1 + amount) / (1 + the card's mean)` over its
///   longest window, in half-octave bands clamped to ×1/16 … ×16, and a
///   band of its own for a card's first transaction;
/// - `mcc_x_amount_band`: the merchant category crossed with the amount
///   in half-octave bands shifted a quarter octave from `amount_band`'s
///   (an amount unusual for its category; without categories, a second
///   grid that places a level to a quarter octave, as tile coding does);
/// - `merch_risk_band`: the merchant's smoothed fraud share over its
///   longest risk window, in half-logit bands.
///
/// Read from the assembled vector (card and merchant halves), so each
/// transaction's bands are fixed when it is scored and stored with it.
#[derive(Clone, Debug)]
struct Bands {
    /// Which of [`BAND_NAMES`] are computed.
    on: [bool; CATEGORICALS - FIELD_SLOTS],
    mask: u32,
    /// Dense indices of `amount_log`, `amount_vs_card_mean`, `first_seen`
    /// and the longest window's `merch_risk` (or `merch_tx_risk`; none
    /// without risk windows).
    amount: usize,
    vs_card: usize,
    first_seen: usize,
    risk: Option<usize>,
    /// Salts of the four band slots.
    salts: [u64; CATEGORICALS - FIELD_SLOTS],
}

impl Bands {
    fn new(cfg: &FeatureConfig) -> Self {
        let space = feature_space(cfg);
        let at = |n: &str| {
            (space.names().iter())
                .position(|x| x == n)
                .expect("a declared feature")
        };
        let risk = match cfg.risk_horizons() {
            ([.., h], _) => Some(at(&format_compact!("merch_risk_{}", horizon_label(*h)))),
            (_, [.., h]) => Some(at(&format_compact!("merch_tx_risk_{}", horizon_label(*h)))),
            _ => None,
        };
        Bands {
            on: BAND_NAMES.map(|n| cfg.bands.iter().any(|b| b == n)),
            mask: (1u32 << cfg.hash_bits) - 1,
            amount: at("amount_log"),
            vs_card: at("amount_vs_card_mean"),
            first_seen: at("first_seen"),
            risk,
            salts: std::array::from_fn(|i| key_of(CATEGORICAL_NAMES[FIELD_SLOTS + i].as_bytes())),
        }
    }

    /// Write the band slots of `x` (its dense vector complete, its field
    /// slots hashed).
    #[inline]
    fn apply(&self, x: &mut FeatureVector) {
        let (fields, slots) = x.cats.split_at_mut(FIELD_SLOTS);
        if self.on == [false; CATEGORICALS - FIELD_SLOTS] {
            slots.fill(NO_SLOT);
            return;
        }
        let level = |v: f32, width: f32, lim: f32| (v / width).floor().clamp(-lim, lim) as i64;
        let amount = level(x.dense[self.amount], HALF_OCTAVE, 64.0);
        let vs_card = if x.dense[self.first_seen] > 0.5 {
            i64::MIN
        } else {
            level(x.dense[self.vs_card], HALF_OCTAVE, 8.0)
        };
        // On a grid shifted by half a band: where the category tells
        // nothing (a single category, or none), the two grids together
        // place an amount to a quarter octave.
        let shifted = level(x.dense[self.amount] + HALF_OCTAVE / 2.0, HALF_OCTAVE, 64.0);
        let mcc_x_amount = (i64::from(fields[0]) << 8) ^ shifted;
        let risk = self.risk.map(|i| {
            let r = x.dense[i].clamp(1e-6, 1.0 - 1e-6);
            level((r / (1.0 - r)).ln(), RISK_BAND, 32.0)
        });
        let values = [Some(amount), Some(vs_card), Some(mcc_x_amount), risk];
        for (((slot, v), salt), on) in slots.iter_mut().zip(values).zip(self.salts).zip(self.on) {
            *slot = match v {
                Some(v) if on => (mix(salt ^ v as u64) as u32) & self.mask,
                _ => NO_SLOT,
            };
        }
    }
}

/// splitmix64's finaliser: a band's number spread over the hashed space.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49eb_133b_a111);
    z ^ (z >> 31)
}

/// Owns every merchant's state: the merchant half of the feature vector,
/// including the label-fed fraud risk.
#[derive(Debug)]
pub struct MerchantFeatures {
    merchant_layout: WindowLayout,
    risk_layout: WindowLayout,
    risk_tx_layout: WindowLayout,
    /// Merchant features per vector ([`merchant_feature_count`]).
    len: usize,
    merchants: KeyMap<MerchantState>,
    /// Most merchants held; the least recently seen make room for a new one.
    max_merchants: usize,
    /// Merchants dropped to make room.
    capped: u64,
    /// Merchants changed since the last checkpoint. Without a flag per
    /// merchant (it would add 8 bytes to each): a key is listed at each
    /// change, duplicates dropped when the list is taken, so the list holds
    /// at most one key per event between two checkpoints.
    changes: ChangedKeys,
    ln1p: Box<[f32]>,
}

/// Both halves in one place, for single-threaded use: the vector is the card
/// features followed by the merchant features.
#[derive(Debug)]
pub struct FeatureExtractor {
    space: FeatureSpace,
    card: CardFeatures,
    merchant: MerchantFeatures,
    merchant_buf: Vec<f32>,
}

fn layout(horizons: &[i64], buckets: u32) -> WindowLayout {
    let specs: Vec<WindowSpec> = horizons
        .iter()
        .map(|&h| WindowSpec {
            horizon_ms: h,
            buckets,
        })
        .collect();
    WindowLayout::new(&specs)
}
/// Distance in km by the equirectangular approximation: within 0.5 % of the
/// great-circle distance below ~1000 km, and monotone beyond, which is all a
/// feature needs, at a fraction of haversine's cost (one cosine, no asin).
pub fn distance_km(a: (f32, f32), b: (f32, f32)) -> f64 {
    let (lat1, lon1) = (a.0 as f64, a.1 as f64);
    let (lat2, lon2) = (b.0 as f64, b.1 as f64);
    let mut dlon = (lon2 - lon1).abs();
    if dlon > 180.0 {
        dlon = 360.0 - dlon;
    }
    let x = dlon.to_radians() * ((lat1 + lat2) * 0.5).to_radians().cos();
    let y = (lat2 - lat1).to_radians();
    6371.0 * (x * x + y * y).sqrt()
}

fn ln1p(x: f64) -> f32 {
    fast_ln(1.0 + x.max(0.0) as f32)
}

/// Natural log of a positive finite `y`, within 1e-4 absolute: exponent from
/// the float's bits, mantissa through a polynomial. Features need ranks and
/// scale, not the last digits, and libm's `log1pf` was a sixth of the cost
/// of feature extraction.
#[inline]
pub fn fast_ln(y: f32) -> f32 {
    if !(y.is_finite() && y > 0.0) {
        return y.ln();
    }
    let bits = y.to_bits();
    let exp = ((bits >> 23) & 0xff) as i32 - 127;
    // mantissa in [1, 2), recentred to [sqrt(1/2), sqrt(2)) for accuracy
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let mut e = exp as f32;
    if m > std::f32::consts::SQRT_2 {
        m *= 0.5;
        e += 1.0;
    }
    // ln(m) = 2 atanh(t), t = (m - 1) / (m + 1), |t| < 0.1716
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let atanh = t * (1.0 + t2 * (1.0 / 3.0 + t2 * (1.0 / 5.0 + t2 * (1.0 / 7.0))));
    e * std::f32::consts::LN_2 + 2.0 * atanh
}

/// `ln(1 + n)` for small counts, looked up.
const LN1P_TABLE: usize = 1024;

#[inline]
fn ln1p_count(table: &[f32], n: u32) -> f32 {
    table
        .get(n as usize)
        .copied()
        .unwrap_or_else(|| (n as f32).ln_1p())
}

fn ln1p_table() -> Box<[f32]> {
    (0..LN1P_TABLE).map(|n| (n as f32).ln_1p()).collect()
}

/// `1.0` for true, `0.0` for false.
#[inline]
fn flag(b: bool) -> f32 {
    b as u8 as f32
}

/// `ln((amount + 1) / (reference + 1))`: an amount against a usual one.
#[inline]
fn amount_vs(amount: f64, reference: f64) -> f32 {
    fast_ln(((amount + 1.0) / (reference + 1.0)) as f32)
}

/// Declares one group of dense features, the single source of their names
/// and order: a struct of `f32` values whose field names, in declaration
/// order, are the feature names (windowed groups add the horizon label) and
/// the vector order. A value is written by building the struct, so every
/// feature gets one, and its `push_to` appends them in the declared order.
macro_rules! feature_group {
    ($(#[$meta:meta])* struct $name:ident { $($(#[$fmeta:meta])* $field:ident,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug)]
        struct $name {
            $($(#[$fmeta])* $field: f32,)+
        }

        impl $name {
            /// Feature names, in vector order.
            const NAMES: &'static [&'static str] = &[$(stringify!($field)),+];
            /// Number of features in the group.
            const LEN: usize = Self::NAMES.len();

            /// Append the values in the declared order.
            #[inline]
            fn push_to(&self, out: &mut Vec<f32>) {
                out.extend_from_slice(&[$(self.$field),+]);
            }
        }
    };
}

feature_group! {
    /// Card features of one window horizon, named `{field}_{horizon}`; one
    /// group per card window, shortest first, at the start of the vector.
    struct CardWindow {
        /// `ln(1 + transactions)` in the window.
        card_count,
        /// `ln(1 + amount spent)` in the window.
        card_amount,
        /// `ln(1 + transactions at merchants new to the card)` in the window.
        card_new_merch,
    }
}

feature_group! {
    /// Card features without a horizon, after the window groups.
    struct CardFixed {
        /// `ln(1 + amount)`.
        amount_log,
        /// Amount against the card's mean over its longest window.
        amount_vs_card_mean,
        /// Amount against the card's largest over its longest window.
        amount_vs_card_max,
        /// Z-score of `ln(amount)` against the card's usual, clamped to ±10.
        amount_zscore,
        /// `ln(1 + seconds since the card's previous transaction)`.
        secs_since_last_log,
        /// The card's first transaction.
        first_seen,
        /// A merchant not among the card's recent ones.
        new_merchant,
        /// `amount_vs_card_mean` (at least 0) at a new merchant.
        new_merchant_x_amount,
        /// `ln(1 + km from the previous location)`.
        dist_prev_km_log,
        /// `ln(1 + km/h since the previous location)`.
        speed_kmh_log,
        /// `ln(1 + km from the card's usual location)`.
        dist_home_km_log,
        /// The transaction has a location.
        has_location,
        /// Another country than the card's previous one.
        country_change,
        /// Time of day on the unit circle.
        hour_sin,
        /// Time of day on the unit circle.
        hour_cos,
        /// Between midnight and 06:00 UTC.
        night,
        /// Saturday or Sunday (UTC).
        weekend,
        /// A fraud on the card was confirmed within the configured horizon.
        card_confirmed_fraud,
    }
}

feature_group! {
    /// Merchant activity of one window horizon, named `{field}_{horizon}`;
    /// one group per merchant window, first in the merchant half.
    struct MerchantWindow {
        /// `ln(1 + transactions)` in the window.
        merch_count,
        /// `ln(1 + mean amount)` in the window.
        merch_amount_mean,
    }
}

feature_group! {
    /// Merchant features without a horizon, after the activity groups.
    struct MerchantFixed {
        /// Amount against the merchant's mean over its longest window.
        amount_vs_merch_mean,
    }
}

feature_group! {
    /// Merchant fraud risk of one horizon of label arrival time, named
    /// `{field}_{horizon}`; one group per risk window, after the fixed
    /// merchant features.
    struct MerchantRisk {
        /// Fraud share of the labels, smoothed towards the prior.
        merch_risk,
        /// `ln(1 + frauds)` in the window.
        merch_frauds,
    }
}

feature_group! {
    /// Merchant fraud risk of one horizon of transaction time (labels
    /// counted at their transaction's time), named `{field}_{horizon}`; one
    /// group per risk window, last in the vector.
    struct MerchantTxRisk {
        /// Fraud share of the labelled transactions, smoothed towards the prior.
        merch_tx_risk,
        /// `ln(1 + frauds)` among them.
        merch_tx_frauds,
    }
}

/// Append `fields` named for each horizon: `{field}_{horizon}`.
fn push_windowed_names(names: &mut Vec<CompactString>, fields: &[&str], horizons: &[i64]) {
    for &h in horizons {
        let l = horizon_label(h);
        names.extend(fields.iter().map(|f| format_compact!("{f}_{l}")));
    }
}

/// Names of the card features, in vector order.
fn card_names(cfg: &FeatureConfig) -> Vec<CompactString> {
    let mut names = Vec::with_capacity(card_feature_count(cfg));
    push_windowed_names(&mut names, CardWindow::NAMES, &cfg.card_windows);
    names.extend(CardFixed::NAMES.iter().map(|&s| CompactString::from(s)));
    names
}

/// Names of the merchant features, in vector order.
fn merchant_names(cfg: &FeatureConfig) -> Vec<CompactString> {
    let mut names = Vec::with_capacity(merchant_feature_count(cfg));
    push_windowed_names(&mut names, MerchantWindow::NAMES, &cfg.merchant_windows);
    names.extend(MerchantFixed::NAMES.iter().map(|&s| CompactString::from(s)));
    let (arrival, transaction) = cfg.risk_horizons();
    push_windowed_names(&mut names, MerchantRisk::NAMES, arrival);
    push_windowed_names(&mut names, MerchantTxRisk::NAMES, transaction);
    names
}

/// The feature space a configuration computes: card features, then merchant features.
pub fn feature_space(cfg: &FeatureConfig) -> FeatureSpace {
    let mut names = card_names(cfg);
    names.extend(merchant_names(cfg));
    assert_eq!(
        names.len(),
        card_feature_count(cfg) + merchant_feature_count(cfg),
        "feature names and counts come from the same groups"
    );
    FeatureSpace {
        names: names.into(),
        hash_bits: cfg.hash_bits,
    }
}

/// Number of card features a configuration computes.
pub fn card_feature_count(cfg: &FeatureConfig) -> usize {
    CardWindow::LEN * cfg.card_windows.len() + CardFixed::LEN
}

/// Number of merchant features a configuration computes.
pub fn merchant_feature_count(cfg: &FeatureConfig) -> usize {
    MerchantWindow::LEN * cfg.merchant_windows.len()
        + MerchantFixed::LEN
        + MerchantRisk::LEN * cfg.risk_horizons().0.len()
        + MerchantTxRisk::LEN * cfg.risk_horizons().1.len()
}

/// Bytes of one card's state (struct, window slots, hash-table slot).
fn card_bytes(l: &WindowLayout) -> usize {
    std::mem::size_of::<(u64, CardState)>()
        + l.slots() * std::mem::size_of::<crate::windows::Bucket>()
}

/// What the card features use of one transaction, derived once.
struct CardInput {
    ts: i64,
    amount: f64,
    ln_amount: f32,
    /// Fingerprint of the merchant in the card's recent-merchant ring.
    merch_fp: u16,
    /// Fingerprint of the country (0 when unknown).
    country_fp: u16,
    loc: Option<(f32, f32)>,
}

impl CardInput {
    fn of(tx: &Transaction, merchant_key: u64) -> Self {
        CardInput {
            ts: tx.ts,
            amount: tx.amount,
            // A zero (or sub-cent) amount counts as a cent in log space.
            ln_amount: fast_ln((tx.amount as f32).max(MIN_LOG_AMOUNT)),
            merch_fp: (merchant_key as u16) | 1,
            country_fp: tx
                .country
                .as_deref()
                .map(|c| (key_of(c.as_bytes()) as u16) | 1)
                .unwrap_or(0),
            loc: tx.location.map(|(a, b)| (a as f32, b as f32)),
        }
    }
}

/// What a card's window history says before the transaction.
struct CardHistory {
    /// Stats of the longest window.
    longest: WindowStats,
    /// Milliseconds since the card's previous transaction (none for a first).
    gap_ms: Option<i64>,
    /// The merchant is not among the card's recent ones.
    new_merchant: bool,
}

impl CardWindow {
    fn of(s: &WindowStats, table: &[f32]) -> Self {
        CardWindow {
            card_count: ln1p_count(table, s.count),
            card_amount: ln1p(s.sum),
            card_new_merch: ln1p_count(table, s.aux),
        }
    }
}

/// Time-of-day and weekday features of a timestamp (UTC).
struct Clock {
    sin: f32,
    cos: f32,
    night: bool,
    weekend: bool,
}

impl Clock {
    fn of(ts: i64) -> Self {
        let minute_of_day = ts.rem_euclid(DAY_MS) as f64 / MINUTE_MS as f64;
        let (sin, cos) = (minute_of_day / 1440.0 * std::f64::consts::TAU).sin_cos();
        // 1970-01-01 was a Thursday: day 0 -> weekday 3 (Mon = 0).
        let weekday = (ts.div_euclid(DAY_MS) + 3).rem_euclid(7);
        Clock {
            sin: sin as f32,
            cos: cos as f32,
            night: minute_of_day < 360.0,
            weekend: weekday >= 5,
        }
    }
}

impl CardFixed {
    /// The fixed features of `x` against the card's state before it.
    fn of(card: &CardState, x: &CardInput, h: &CardHistory, fraud_horizon_ms: i64) -> Self {
        let vs_mean = h
            .longest
            .mean()
            .map(|m| amount_vs(x.amount, m))
            .unwrap_or(0.0);
        let (dist_prev, speed, dist_home) = card.distances(x.loc, h.gap_ms);
        let clock = Clock::of(x.ts);
        CardFixed {
            amount_log: ln1p(x.amount),
            amount_vs_card_mean: vs_mean,
            amount_vs_card_max: if h.longest.count > 0 {
                amount_vs(x.amount, h.longest.max as f64)
            } else {
                0.0
            },
            amount_zscore: card.amount_zscore(x.ln_amount),
            secs_since_last_log: h.gap_ms.map(|g| ln1p(g as f64 / 1000.0)).unwrap_or(0.0),
            first_seen: flag(card.seen == 0),
            new_merchant: flag(h.new_merchant),
            new_merchant_x_amount: if h.new_merchant {
                vs_mean.max(0.0)
            } else {
                0.0
            },
            dist_prev_km_log: dist_prev,
            speed_kmh_log: speed,
            dist_home_km_log: dist_home,
            has_location: flag(x.loc.is_some()),
            country_change: flag(card.country_changed(x.country_fp)),
            hour_sin: clock.sin,
            hour_cos: clock.cos,
            night: flag(clock.night),
            weekend: flag(clock.weekend),
            card_confirmed_fraud: flag(card.fraud_within(x.ts, fraud_horizon_ms)),
        }
    }
}

impl CardState {
    /// A card never seen.
    fn new(layout: &WindowLayout) -> Self {
        CardState {
            windows: layout.new_set(),
            amount_mu: 0.0,
            amount_var: 0.0,
            seen: 0,
            last_loc: (f32::NAN, f32::NAN),
            home: (f32::NAN, f32::NAN),
            recent: [0; RECENT_MERCHANTS],
            recent_pos: 0,
            last_country: 0,
            confirmed_fraud_ts: i64::MIN,
            changed: false,
        }
    }

    /// Milliseconds from the previous transaction (newest at `prev_latest`) to `ts`.
    fn gap_ms(&self, prev_latest: i64, ts: i64) -> Option<i64> {
        if self.seen == 0 || prev_latest == i64::MIN {
            None
        } else {
            Some(ts.saturating_sub(prev_latest).max(0))
        }
    }

    /// The merchant (by fingerprint) is not among the recent ones.
    fn is_new_merchant(&self, merch_fp: u16) -> bool {
        !self.recent.contains(&merch_fp)
    }

    /// Z-score of `ln_amount` against the usual, 0 before the third transaction.
    fn amount_zscore(&self, ln_amount: f32) -> f32 {
        if self.seen >= 3 {
            ((ln_amount - self.amount_mu) / (self.amount_var + 0.05).sqrt()).clamp(-10.0, 10.0)
        } else {
            0.0
        }
    }

    /// `ln(1 + x)` of the km from the previous location, the km/h from it and
    /// the km from the usual location; 0 where a location is unknown.
    fn distances(&self, here: Option<(f32, f32)>, gap_ms: Option<i64>) -> (f32, f32, f32) {
        let (mut dist_prev, mut speed, mut dist_home) = (0.0f32, 0.0f32, 0.0f32);
        if let Some(here) = here {
            if !self.last_loc.0.is_nan() {
                let d = distance_km(self.last_loc, here);
                dist_prev = ln1p(d);
                let hours = gap_ms.unwrap_or(0) as f64 / HOUR_MS as f64;
                speed = ln1p(d / hours.max(1.0 / 60.0));
            }
            if !self.home.0.is_nan() {
                dist_home = ln1p(distance_km(self.home, here));
            }
        }
        (dist_prev, speed, dist_home)
    }

    /// Both countries are known and differ.
    fn country_changed(&self, country_fp: u16) -> bool {
        self.last_country != 0 && country_fp != 0 && self.last_country != country_fp
    }

    /// A fraud was confirmed at most `horizon_ms` before `ts`.
    fn fraud_within(&self, ts: i64, horizon_ms: i64) -> bool {
        self.confirmed_fraud_ts != i64::MIN
            && ts.saturating_sub(self.confirmed_fraud_ts) <= horizon_ms
    }

    /// Fold a transaction into the card; a `late` one stays out of the windows.
    fn fold(&mut self, layout: &WindowLayout, x: &CardInput, late: bool, new_merchant: bool) {
        if !late {
            self.windows
                .add(layout, x.ts, x.amount as f32, new_merchant as u32);
        }
        self.fold_amount(x.ln_amount);
        self.seen = self.seen.saturating_add(1);
        if let Some(here) = x.loc {
            self.fold_location(here);
        }
        if new_merchant {
            self.remember_merchant(x.merch_fp);
        }
        if x.country_fp != 0 {
            self.last_country = x.country_fp;
        }
    }

    /// Move the usual `ln(amount)` and its variance towards `ln_amount`.
    fn fold_amount(&mut self, ln_amount: f32) {
        if self.seen == 0 {
            self.amount_mu = ln_amount;
        } else {
            let d = ln_amount - self.amount_mu;
            self.amount_mu += EW_ALPHA * d;
            self.amount_var = (1.0 - EW_ALPHA) * (self.amount_var + EW_ALPHA * d * d);
        }
    }

    /// Remember `here` as the previous location and move the usual one towards it.
    fn fold_location(&mut self, here: (f32, f32)) {
        self.last_loc = here;
        self.home = if self.home.0.is_nan() {
            here
        } else {
            (
                self.home.0 + EW_ALPHA * (here.0 - self.home.0),
                self.home.1 + EW_ALPHA * (here.1 - self.home.1),
            )
        };
    }

    /// Put a merchant fingerprint in the recent-merchant ring.
    fn remember_merchant(&mut self, merch_fp: u16) {
        self.recent[self.recent_pos as usize] = merch_fp;
        self.recent_pos = ((self.recent_pos as usize + 1) % RECENT_MERCHANTS) as u8;
    }
}

impl CardFeatures {
    /// No cards yet.
    pub fn new(cfg: FeatureConfig) -> Self {
        CardFeatures {
            card_layout: layout(&cfg.card_windows, cfg.buckets),
            len: card_feature_count(&cfg),
            bands: Bands::new(&cfg),
            cfg,
            cards: key_map(),
            max_cards: usize::MAX,
            capped: 0,
            changes: ChangedKeys::default(),
            ln1p: ln1p_table(),
            cat_salts: CATEGORICAL_NAMES.map(|n| key_of(n.as_bytes())),
        }
    }

    /// Cards currently held.
    pub fn len(&self) -> usize {
        self.cards.len()
    }

    /// Hold at most `max` cards: when a new card would exceed it, the least
    /// recently seen make room.
    pub fn with_cap(mut self, max: usize) -> Self {
        self.max_cards = max.max(1);
        self
    }

    /// Cards dropped so far to stay within the cap.
    pub fn capped(&self) -> u64 {
        self.capped
    }

    /// Every card's state, sorted by key (what a checkpoint keeps).
    pub fn entities(&self) -> Vec<(u64, &CardState)> {
        sorted_entries(&self.cards)
    }

    /// Replace every card's state with `cards` (from a checkpoint written
    /// under the same feature settings); refused when a window layout differs.
    pub fn restore_entities(&mut self, cards: Vec<(u64, CardState)>) -> Result<(), String> {
        let slots = self.card_layout.slots();
        if cards.iter().any(|(_, c)| c.windows.slots() != slots) {
            return Err("card windows have another layout than this topology's".into());
        }
        self.cards = key_map();
        self.cards.extend(cards);
        Ok(())
    }

    /// The cards changed since the last call (sorted; see [`ChangedKeys`]);
    /// from the first call on, changes are listed.
    pub fn take_changes(&mut self) -> Vec<u64> {
        self.changes.take()
    }

    /// Whether changes are listed (a delta can be written).
    pub fn tracking(&self) -> bool {
        self.changes.tracking()
    }

    /// The delta of the `changed` cards (from [`take_changes`](Self::take_changes)).
    pub fn delta(&self, changed: &[u64]) -> KeyedDelta<&CardState> {
        KeyedDelta::of(&self.cards, changed)
    }

    /// Clear every card's flag (its state was just written whole).
    pub fn clear_all_changed(&mut self) {
        for c in self.cards.values_mut() {
            c.changed = false;
        }
    }

    /// Clear the flags of the `changed` cards once their delta is written.
    pub fn clear_changed(&mut self, changed: &[u64]) {
        for k in changed {
            if let Some(c) = self.cards.get_mut(k) {
                c.changed = false;
            }
        }
    }

    /// Apply a checkpoint's delta (written under the same feature settings).
    pub fn apply_delta(&mut self, d: KeyedDelta<CardState>) -> Result<(), String> {
        let slots = self.card_layout.slots();
        if d.upserts.iter().any(|(_, c)| c.windows.slots() != slots) {
            return Err("card windows have another layout than this topology's".into());
        }
        for k in d.removed {
            self.cards.remove(&k);
        }
        self.cards.extend(d.upserts);
        Ok(())
    }

    /// True when no card is held.
    pub fn is_empty(&self) -> bool {
        self.cards.is_empty()
    }

    /// Approximate bytes of state per card.
    pub fn bytes_per_card(&self) -> usize {
        card_bytes(&self.card_layout)
    }

    /// Write the card features of `tx` into `out` (cleared first) and its
    /// hashed categoricals, from the card's state before `tx`; then fold `tx`
    /// into the card. A `late` transaction is not added to the windows.
    pub fn extract_and_update(
        &mut self,
        tx: &Transaction,
        card_key: u64,
        merchant_key: u64,
        late: bool,
        out: &mut FeatureVector,
    ) {
        let x = CardInput::of(tx, merchant_key);
        let changes = &mut self.changes;
        self.capped += make_room(
            &mut self.cards,
            self.max_cards,
            card_key,
            |c| c.windows.latest().max(c.confirmed_fraud_ts),
            |k| changes.note(k),
        ) as u64;
        let layout = &self.card_layout;
        let card = self
            .cards
            .entry(card_key)
            .or_insert_with(|| CardState::new(layout));
        changes.touch(&mut card.changed, card_key);
        let prev_latest = card.windows.latest();
        if !late {
            card.windows.advance(layout, x.ts);
        }
        let dense = &mut out.dense;
        dense.clear();
        let longest = Self::push_windows(card, layout, &self.ln1p, x.ts, dense);
        let history = CardHistory {
            longest,
            gap_ms: card.gap_ms(prev_latest, x.ts),
            new_merchant: card.is_new_merchant(x.merch_fp),
        };
        CardFixed::of(card, &x, &history, self.cfg.confirmed_fraud_horizon_ms).push_to(dense);
        assert_eq!(dense.len(), self.len, "card vector as declared");
        card.fold(layout, &x, late, history.new_merchant);
        self.hash_categoricals(tx, &mut out.cats);
    }

    /// Append one [`CardWindow`] group per window, shortest first; returns
    /// the longest window's stats.
    fn push_windows(
        card: &CardState,
        layout: &WindowLayout,
        table: &[f32],
        ts: i64,
        dense: &mut Vec<f32>,
    ) -> WindowStats {
        let mut longest = WindowStats::default();
        for i in 0..layout.specs().len() {
            let s = card.windows.query(layout, i, ts);
            CardWindow::of(&s, table).push_to(dense);
            longest = s;
        }
        longest
    }

    /// The card's rolling window features (the first
    /// `3 × card_windows` of its vector, shortest window first) as they
    /// would be for a transaction at `at`, read without changing anything;
    /// `None` for a card not held.
    pub fn peek_windows(&self, card_key: u64, at: i64) -> Option<Vec<f32>> {
        let card = self.cards.get(&card_key)?;
        let mut out = Vec::new();
        Self::push_windows(card, &self.card_layout, &self.ln1p, at, &mut out);
        Some(out)
    }

    /// Write the banded categoricals of `x`, a vector this stage's
    /// [`extract_and_update`](Self::extract_and_update) began and the
    /// merchant features completed (see [`BAND_NAMES`] and `features.bands` in docs/topology.md).
    #[inline]
    pub fn band(&self, x: &mut FeatureVector) {
        self.bands.apply(x);
    }

    /// Hash the categorical fields of `tx` into their slots.
    fn hash_categoricals(&self, tx: &Transaction, cats: &mut [u32; CATEGORICALS]) {
        let mask = (1u32 << self.cfg.hash_bits) - 1;
        let fields = [&tx.mcc, &tx.country, &tx.channel];
        for (slot, (field, salt)) in fields.iter().zip(self.cat_salts).enumerate() {
            debug_assert!(slot < FIELD_SLOTS);
            let h = match field {
                Some(v) => key_of(v.as_bytes()) ^ salt,
                None => salt,
            };
            cats[slot] = (h as u32) & mask;
        }
    }

    /// Mark the card as having a confirmed fraud at `label_ts`.
    pub fn apply_fraud(&mut self, card_key: u64, label_ts: i64) {
        if let Some(c) = self.cards.get_mut(&card_key) {
            c.confirmed_fraud_ts = c.confirmed_fraud_ts.max(label_ts);
            self.changes.touch(&mut c.changed, card_key);
        }
    }

    /// Drop cards with no activity since `before`; returns how many.
    pub fn evict_idle(&mut self, before: i64) -> usize {
        let n = self.cards.len();
        let changes = &mut self.changes;
        self.cards.retain(|&k, c| {
            let keep = c.windows.latest() >= before || c.confirmed_fraud_ts >= before;
            if !keep {
                changes.note(k);
            }
            keep
        });
        n - self.cards.len()
    }
}

impl MerchantWindow {
    fn of(s: &WindowStats, table: &[f32]) -> Self {
        MerchantWindow {
            merch_count: ln1p_count(table, s.count),
            merch_amount_mean: ln1p(s.mean().unwrap_or(0.0)),
        }
    }
}

impl MerchantFixed {
    /// `amount` against the mean of the merchant's longest window.
    fn of(amount: f64, longest: &WindowStats) -> Self {
        MerchantFixed {
            amount_vs_merch_mean: longest.mean().map(|m| amount_vs(amount, m)).unwrap_or(0.0),
        }
    }
}

/// A labelled fraud share smoothed towards [`RISK_PRIOR`], and `ln(1 + frauds)`.
fn risk_of(s: &WindowStats, table: &[f32]) -> (f32, f32) {
    let rate =
        (s.aux as f64 + RISK_PRIOR * RISK_PRIOR_WEIGHT) / (s.count as f64 + RISK_PRIOR_WEIGHT);
    (rate as f32, ln1p_count(table, s.aux))
}

impl MerchantRisk {
    fn of(s: &WindowStats, table: &[f32]) -> Self {
        let (merch_risk, merch_frauds) = risk_of(s, table);
        MerchantRisk {
            merch_risk,
            merch_frauds,
        }
    }
}

impl MerchantTxRisk {
    fn of(s: &WindowStats, table: &[f32]) -> Self {
        let (merch_tx_risk, merch_tx_frauds) = risk_of(s, table);
        MerchantTxRisk {
            merch_tx_risk,
            merch_tx_frauds,
        }
    }
}

impl MerchantState {
    /// A merchant never seen.
    fn new(windows: &WindowLayout, risk: &WindowLayout, risk_tx: &WindowLayout) -> Self {
        MerchantState {
            windows: windows.new_set(),
            risk: risk.new_set(),
            risk_tx: risk_tx.new_set(),
        }
    }

    /// Its newest event of any kind (for eviction and the cap).
    fn latest(&self) -> i64 {
        (self.windows.latest())
            .max(self.risk.latest())
            .max(self.risk_tx.latest())
    }

    /// Whether its windows are laid out as `w`, `r` and `t` say.
    fn fits(&self, w: &WindowLayout, r: &WindowLayout, t: &WindowLayout) -> bool {
        self.windows.slots() == w.slots()
            && self.risk.slots() == r.slots()
            && self.risk_tx.slots() == t.slots()
    }
}

impl MerchantFeatures {
    /// No merchants yet.
    pub fn new(cfg: FeatureConfig) -> Self {
        MerchantFeatures {
            merchant_layout: layout(&cfg.merchant_windows, cfg.buckets),
            risk_layout: layout(cfg.risk_horizons().0, cfg.buckets),
            risk_tx_layout: layout(cfg.risk_horizons().1, cfg.buckets),
            len: merchant_feature_count(&cfg),
            merchants: key_map(),
            max_merchants: usize::MAX,
            capped: 0,
            changes: ChangedKeys::default(),
            ln1p: ln1p_table(),
        }
    }

    /// Merchants currently held.
    pub fn len(&self) -> usize {
        self.merchants.len()
    }

    /// Hold at most `max` merchants: when a new merchant would exceed it,
    /// the least recently seen make room.
    pub fn with_cap(mut self, max: usize) -> Self {
        self.max_merchants = max.max(1);
        self
    }

    /// Merchants dropped so far to stay within the cap.
    pub fn capped(&self) -> u64 {
        self.capped
    }

    /// Every merchant's state, sorted by key (what a checkpoint keeps).
    pub fn entities(&self) -> Vec<(u64, &MerchantState)> {
        sorted_entries(&self.merchants)
    }

    /// Replace every merchant's state with `merchants` (from a checkpoint
    /// written under the same feature settings); refused when a window
    /// layout differs.
    pub fn restore_entities(&mut self, merchants: Vec<(u64, MerchantState)>) -> Result<(), String> {
        let (w, r, t) = (
            &self.merchant_layout,
            &self.risk_layout,
            &self.risk_tx_layout,
        );
        if merchants.iter().any(|(_, m)| !m.fits(w, r, t)) {
            return Err("merchant windows have another layout than this topology's".into());
        }
        self.merchants = key_map();
        self.merchants.extend(merchants);
        Ok(())
    }

    /// The merchants changed since the last call (sorted; see
    /// [`ChangedKeys`]); from the first call on, changes are listed.
    pub fn take_changes(&mut self) -> Vec<u64> {
        self.changes.take()
    }

    /// Whether changes are listed (a delta can be written).
    pub fn tracking(&self) -> bool {
        self.changes.tracking()
    }

    /// The delta of the `changed` merchants.
    pub fn delta(&self, changed: &[u64]) -> KeyedDelta<&MerchantState> {
        KeyedDelta::of(&self.merchants, changed)
    }

    /// Apply a checkpoint's delta (written under the same feature settings).
    pub fn apply_delta(&mut self, d: KeyedDelta<MerchantState>) -> Result<(), String> {
        let (w, r, t) = (
            &self.merchant_layout,
            &self.risk_layout,
            &self.risk_tx_layout,
        );
        if d.upserts.iter().any(|(_, m)| !m.fits(w, r, t)) {
            return Err("merchant windows have another layout than this topology's".into());
        }
        for key in d.removed {
            self.merchants.remove(&key);
        }
        self.merchants.extend(d.upserts);
        Ok(())
    }

    /// True when no merchant is held.
    pub fn is_empty(&self) -> bool {
        self.merchants.is_empty()
    }

    /// Approximate bytes of state per merchant.
    pub fn bytes_per_merchant(&self) -> usize {
        std::mem::size_of::<(u64, MerchantState)>()
            + (self.merchant_layout.slots()
                + self.risk_layout.slots()
                + self.risk_tx_layout.slots())
                * std::mem::size_of::<crate::windows::Bucket>()
    }

    /// Append the merchant features of `tx` to `out`, from the merchant's
    /// state before `tx`; then fold `tx` into the merchant.
    pub fn extract_and_update(
        &mut self,
        tx: &Transaction,
        merchant_key: u64,
        late: bool,
        out: &mut Vec<f32>,
    ) {
        let start = out.len();
        let ts = tx.ts;
        let changes = &mut self.changes;
        self.capped += make_room(
            &mut self.merchants,
            self.max_merchants,
            merchant_key,
            MerchantState::latest,
            |k| changes.note(k),
        ) as u64;
        let (ml, rl, tl) = (
            &self.merchant_layout,
            &self.risk_layout,
            &self.risk_tx_layout,
        );
        let merchant = self
            .merchants
            .entry(merchant_key)
            .or_insert_with(|| MerchantState::new(ml, rl, tl));
        changes.note(merchant_key);
        if !late {
            merchant.windows.advance(ml, ts);
        }
        let longest = Self::push_activity(&merchant.windows, ml, &self.ln1p, ts, out);
        MerchantFixed::of(tx.amount, &longest).push_to(out);
        merchant.risk.advance(rl, ts);
        for i in 0..rl.specs().len() {
            MerchantRisk::of(&merchant.risk.query(rl, i, ts), &self.ln1p).push_to(out);
        }
        merchant.risk_tx.advance(tl, ts);
        for i in 0..tl.specs().len() {
            MerchantTxRisk::of(&merchant.risk_tx.query(tl, i, ts), &self.ln1p).push_to(out);
        }
        assert_eq!(out.len() - start, self.len, "merchant vector as declared");
        if !late {
            merchant.windows.add(ml, ts, tx.amount as f32, 0);
        }
    }

    /// The merchant's rolling features as they would be for a transaction
    /// at `at` (activity windows, then fraud risk by arrival and by
    /// transaction time: its vector without the one feature that depends
    /// on the transaction's amount), read without changing anything;
    /// `None` for a merchant not held.
    pub fn peek(&self, merchant_key: u64, at: i64) -> Option<Vec<f32>> {
        let m = self.merchants.get(&merchant_key)?;
        let (ml, rl, tl) = (
            &self.merchant_layout,
            &self.risk_layout,
            &self.risk_tx_layout,
        );
        let mut out = Vec::new();
        Self::push_activity(&m.windows, ml, &self.ln1p, at, &mut out);
        for i in 0..rl.specs().len() {
            MerchantRisk::of(&m.risk.query(rl, i, at), &self.ln1p).push_to(&mut out);
        }
        for i in 0..tl.specs().len() {
            MerchantTxRisk::of(&m.risk_tx.query(tl, i, at), &self.ln1p).push_to(&mut out);
        }
        Some(out)
    }

    /// Append one [`MerchantWindow`] group per activity window; returns the
    /// longest window's stats.
    fn push_activity(
        windows: &WindowSet,
        layout: &WindowLayout,
        table: &[f32],
        ts: i64,
        out: &mut Vec<f32>,
    ) -> WindowStats {
        let mut longest = WindowStats::default();
        for i in 0..layout.specs().len() {
            let s = windows.query(layout, i, ts);
            MerchantWindow::of(&s, table).push_to(out);
            longest = s;
        }
        longest
    }

    /// Fold a label into the merchant's fraud-risk windows: at its arrival
    /// time `label_ts` in `merch_risk`, at its transaction's `tx_ts` in
    /// `merch_tx_risk` (those configured).
    pub fn apply_label(&mut self, merchant_key: u64, label_ts: i64, tx_ts: i64, is_fraud: bool) {
        if let Some(m) = self.merchants.get_mut(&merchant_key) {
            let fraud = u32::from(is_fraud);
            if !self.risk_layout.specs().is_empty() {
                m.risk.add(&self.risk_layout, label_ts, 0.0, fraud);
            }
            if !self.risk_tx_layout.specs().is_empty() {
                m.risk_tx.add(&self.risk_tx_layout, tx_ts, 0.0, fraud);
            }
            self.changes.note(merchant_key);
        }
    }

    /// Drop merchants with no activity since `before`; returns how many.
    pub fn evict_idle(&mut self, before: i64) -> usize {
        let n = self.merchants.len();
        let changes = &mut self.changes;
        self.merchants.retain(|&k, m| {
            let keep = m.latest() >= before;
            if !keep {
                changes.note(k);
            }
            keep
        });
        n - self.merchants.len()
    }
}

impl FeatureExtractor {
    /// A new extractor with no entities.
    pub fn new(cfg: FeatureConfig) -> Self {
        FeatureExtractor {
            space: feature_space(&cfg),
            merchant_buf: Vec::with_capacity(merchant_feature_count(&cfg)),
            card: CardFeatures::new(cfg.clone()),
            merchant: MerchantFeatures::new(cfg),
        }
    }

    /// The feature names and sizes.
    pub fn space(&self) -> &FeatureSpace {
        &self.space
    }

    /// Cards currently held.
    pub fn cards(&self) -> usize {
        self.card.len()
    }

    /// Merchants currently held.
    pub fn merchants(&self) -> usize {
        self.merchant.len()
    }

    /// Approximate bytes of state per card and per merchant (struct, window
    /// slots and hash-table slot), for reports.
    pub fn bytes_per_entity(&self) -> (usize, usize) {
        (
            self.card.bytes_per_card(),
            self.merchant.bytes_per_merchant(),
        )
    }

    /// Compute the features of `tx` into `out` from the state before it, then
    /// fold `tx` into its card's and merchant's state. A `late` transaction
    /// (behind the allowed lateness) is scored but not added to the windows.
    pub fn extract_and_update(
        &mut self,
        tx: &Transaction,
        card_key: u64,
        merchant_key: u64,
        late: bool,
        out: &mut FeatureVector,
    ) {
        self.merchant_buf.clear();
        self.merchant
            .extract_and_update(tx, merchant_key, late, &mut self.merchant_buf);
        self.card
            .extract_and_update(tx, card_key, merchant_key, late, out);
        out.dense.extend_from_slice(&self.merchant_buf);
        debug_assert_eq!(out.dense.len(), self.space.dense_len());
        self.card.band(out);
    }

    /// Fold a label into the merchant's fraud-risk windows (at the label's
    /// arrival `label_ts` and its transaction's `tx_ts`) and, for a fraud,
    /// mark the card.
    pub fn apply_label(
        &mut self,
        card_key: u64,
        merchant_key: u64,
        (label_ts, tx_ts): (i64, i64),
        is_fraud: bool,
    ) {
        self.merchant
            .apply_label(merchant_key, label_ts, tx_ts, is_fraud);
        if is_fraud {
            self.card.apply_fraud(card_key, label_ts);
        }
    }

    /// Drop cards and merchants with no activity since `before`; returns how
    /// many of each were dropped.
    pub fn evict_idle(&mut self, before: i64) -> (usize, usize) {
        (
            self.card.evict_idle(before),
            self.merchant.evict_idle(before),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::TxId;

    fn tx(ts: i64, card: &str, merchant: &str, amount: f64) -> Transaction {
        Transaction {
            tx_id: TxId::Int(ts as u64),
            ts,
            card_id: card.into(),
            merchant_id: merchant.into(),
            amount,
            currency: None,
            mcc: Some("5411".into()),
            country: Some("NL".into()),
            channel: Some("pos".into()),
            location: Some((52.37, 4.89)),
        }
    }

    fn feature(fx: &FeatureExtractor, v: &FeatureVector, name: &str) -> f32 {
        let i = fx
            .space()
            .names()
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("no feature {name}"));
        v.dense[i]
    }

    fn run(fx: &mut FeatureExtractor, t: &Transaction) -> FeatureVector {
        let mut v = FeatureVector::default();
        let (c, m) = (
            key_of(t.card_id.as_bytes()),
            key_of(t.merchant_id.as_bytes()),
        );
        fx.extract_and_update(t, c, m, false, &mut v);
        v
    }

    #[test]
    fn bands_give_levels_of_the_amount_and_its_ratio_their_own_slots() {
        let mut fx = FeatureExtractor::new(FeatureConfig::default());
        let slot = |v: &FeatureVector, name: &str| {
            v.cats[CATEGORICAL_NAMES.iter().position(|n| *n == name).unwrap()]
        };
        let first = run(&mut fx, &tx(0, "c", "m", 20.0));
        for i in 1..20 {
            run(&mut fx, &tx(i * MINUTE_MS, "c", "m", 20.0));
        }
        let usual = run(&mut fx, &tx(30 * MINUTE_MS, "c", "m", 21.0));
        // 1 + amount: 22 and 22.5 share a half-octave band, 231 is 3.4 octaves up.
        let same = run(&mut fx, &tx(31 * MINUTE_MS, "c", "m", 21.5));
        let high = run(&mut fx, &tx(32 * MINUTE_MS, "c", "m", 230.0));
        assert_eq!(slot(&usual, "amount_band"), slot(&same, "amount_band"));
        assert_ne!(slot(&usual, "amount_band"), slot(&high, "amount_band"));
        assert_ne!(
            slot(&usual, "amount_vs_card_band"),
            slot(&high, "amount_vs_card_band")
        );
        assert_ne!(
            slot(&first, "amount_vs_card_band"),
            slot(&usual, "amount_vs_card_band"),
            "a first transaction has a band of its own, not that of the usual amount"
        );
        assert_ne!(
            slot(&usual, "mcc_x_amount_band"),
            slot(&high, "mcc_x_amount_band")
        );
        for v in [&first, &usual, &high] {
            assert!(
                v.cats.iter().all(|&c| c < 1 << 12),
                "every slot in the hashed space"
            );
        }
        // Off: the band slots hold nothing; the field slots are as before.
        let mut off = FeatureExtractor::new(FeatureConfig {
            bands: Vec::new(),
            ..FeatureConfig::default()
        });
        let v = run(&mut off, &tx(0, "c", "m", 20.0));
        assert_eq!(v.cats[..FIELD_SLOTS], first.cats[..FIELD_SLOTS]);
        assert!(v.cats[FIELD_SLOTS..].iter().all(|&c| c == NO_SLOT));
    }

    #[test]
    fn names_are_unique_and_match_vector_length() {
        let mut fx = FeatureExtractor::new(FeatureConfig::default());
        let v = run(&mut fx, &tx(0, "c", "m", 10.0));
        let names = fx.space().names();
        assert_eq!(v.dense.len(), names.len());
        let mut sorted: Vec<_> = names.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        assert!(names.iter().all(|n| n.len() <= 24), "names stay inline");
    }

    #[test]
    fn features_describe_history_before_the_transaction() {
        let mut fx = FeatureExtractor::new(FeatureConfig::default());
        let first = run(&mut fx, &tx(0, "c", "m", 10.0));
        assert_eq!(feature(&fx, &first, "card_count_1h"), 0.0);
        assert_eq!(feature(&fx, &first, "first_seen"), 1.0);
        assert_eq!(feature(&fx, &first, "new_merchant"), 1.0);
        let second = run(&mut fx, &tx(60_000, "c", "m", 10.0));
        assert_eq!(feature(&fx, &second, "card_count_1h"), (2f32).ln());
        assert_eq!(feature(&fx, &second, "first_seen"), 0.0);
        assert_eq!(feature(&fx, &second, "new_merchant"), 0.0);
        assert!((feature(&fx, &second, "secs_since_last_log") - 61f32.ln()).abs() < 1e-5);
        // another card does not see the first card's history
        let other = run(&mut fx, &tx(60_000, "d", "m", 10.0));
        assert_eq!(feature(&fx, &other, "card_count_1h"), 0.0);
        // but the merchant does
        assert_eq!(feature(&fx, &other, "merch_count_1d"), (3f32).ln());
    }

    #[test]
    fn large_far_amount_stands_out() {
        let mut fx = FeatureExtractor::new(FeatureConfig::default());
        for i in 0..20 {
            run(&mut fx, &tx(i * HOUR_MS, "c", "m", 20.0));
        }
        let mut far = tx(21 * HOUR_MS, "c", "x", 500.0);
        far.location = Some((40.0, -3.7));
        let v = run(&mut fx, &far);
        assert!(feature(&fx, &v, "amount_zscore") > 5.0);
        assert!(feature(&fx, &v, "amount_vs_card_mean") > 2.5);
        assert!(feature(&fx, &v, "dist_home_km_log") > 7.0);
        assert!(feature(&fx, &v, "speed_kmh_log") > 6.0);
        assert_eq!(feature(&fx, &v, "new_merchant"), 1.0);
    }

    #[test]
    fn labels_raise_merchant_risk_and_mark_the_card() {
        let mut fx = FeatureExtractor::new(FeatureConfig {
            merchant_risk_time: RiskTime::Both,
            ..FeatureConfig::default()
        });
        let t = tx(0, "c", "m", 20.0);
        run(&mut fx, &t);
        let (c, m) = (key_of(b"c"), key_of(b"m"));
        let before = run(&mut fx, &tx(HOUR_MS, "c", "m", 20.0));
        for i in 0..5 {
            fx.apply_label(c, m, (HOUR_MS + i, 0), true);
        }
        let after = run(&mut fx, &tx(2 * HOUR_MS, "c", "m", 20.0));
        for risk in ["merch_risk_7d", "merch_tx_risk_7d"] {
            assert!(
                feature(&fx, &after, risk) > 10.0 * feature(&fx, &before, risk),
                "{risk}"
            );
        }
        assert_eq!(feature(&fx, &after, "card_confirmed_fraud"), 1.0);
        assert_eq!(feature(&fx, &before, "card_confirmed_fraud"), 0.0);
        // A verdict on a transaction older than every window counts at its
        // arrival only.
        let day = 40 * DAY_MS;
        run(&mut fx, &tx(day, "c", "m", 20.0));
        fx.apply_label(c, m, (day + 1, day - 31 * DAY_MS), true);
        let later = run(&mut fx, &tx(day + HOUR_MS, "c", "m", 20.0));
        assert_eq!(feature(&fx, &later, "merch_frauds_1d"), 1f32.ln_1p());
        assert_eq!(feature(&fx, &later, "merch_tx_frauds_30d"), 0.0);
    }

    #[test]
    fn idle_entities_are_evicted() {
        let mut fx = FeatureExtractor::new(FeatureConfig::default());
        run(&mut fx, &tx(0, "a", "m1", 1.0));
        run(&mut fx, &tx(10 * DAY_MS, "b", "m2", 1.0));
        assert_eq!(fx.evict_idle(DAY_MS), (1, 1));
        assert_eq!((fx.cards(), fx.merchants()), (1, 1));
    }

    #[test]
    fn late_transactions_do_not_enter_windows() {
        let mut fx = FeatureExtractor::new(FeatureConfig::default());
        run(&mut fx, &tx(HOUR_MS, "c", "m", 1.0));
        let t = tx(0, "c", "m", 1.0);
        let mut v = FeatureVector::default();
        fx.extract_and_update(&t, key_of(b"c"), key_of(b"m"), true, &mut v);
        let next = run(&mut fx, &tx(HOUR_MS + 1, "c", "m", 1.0));
        assert_eq!(feature(&fx, &next, "card_count_1d"), (2f32).ln());
    }

    #[test]
    fn fast_ln_is_close_to_ln() {
        let mut y = 1e-6f32;
        while y < 1e12 {
            let (a, b) = (fast_ln(y), y.ln());
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{y}: {a} vs {b}");
            y *= 1.013;
        }
        assert_eq!(fast_ln(1.0), 0.0);
    }

    #[test]
    fn horizon_labels_are_short() {
        assert_eq!(horizon_label(600_000), "10m");
        assert_eq!(horizon_label(HOUR_MS), "1h");
        assert_eq!(horizon_label(30 * DAY_MS), "30d");
        assert_eq!(horizon_label(1500), "1500ms");
    }
}
