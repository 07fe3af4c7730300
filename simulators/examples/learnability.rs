//! Sanity check that the default stream is learnable: an online logistic regression over a
//! few rolling per-card / per-merchant features, trained only on delayed labels, scored
//! prequentially (score before the label is known). Prints ROC AUC and average precision
//! over the last half of the run.
//!
//! `cargo run --release -p fraudstream-sim --example learnability`

use std::collections::HashSet;

use fraudstream_sim::{
    Channel, FraudPattern, SimConfig, SimEvent, SimLabel, SimTransaction, Simulator, DAY_MS,
    HOUR_MS,
};

const NF: usize = 14;
/// Time constant of the merchant counts' exponential decay (ms).
const TAU_MS: f64 = 7.0 * DAY_MS as f64;

#[derive(Clone, Default)]
struct CardF {
    n: u32,
    mean_ln_amt: f64,
    lat: f64,
    lon: f64,
    n_loc: u32,
    home_country: Option<&'static str>,
    recent: [(i64, u32); 32],
    head: usize,
}

/// A decayed count `(value, at)` seen from `now`.
fn decay(v: (f64, i64), now: i64) -> f64 {
    v.0 * (-((now - v.1) as f64) / TAU_MS).exp()
}

/// What a card's recent transactions say at `now`: transactions in the last
/// hour, in the last day, and distinct merchants in the last ten minutes.
fn recent_activity(c: &CardF, now: i64) -> (u32, u32, usize) {
    let mut cnt1h = 0;
    let mut cnt24 = 0;
    let mut distinct10: Vec<u32> = Vec::new();
    for &(ts, m) in &c.recent {
        if ts > 0 && now - ts < HOUR_MS {
            cnt1h += 1;
        }
        if ts > 0 && now - ts < DAY_MS {
            cnt24 += 1;
        }
        if ts > 0 && now - ts < 600_000 && !distinct10.contains(&m) {
            distinct10.push(m);
        }
    }
    (cnt1h, cnt24, distinct10.len())
}

/// Rough km from the card's usual location (0 without one).
fn distance_from_usual(c: &CardF, t: &SimTransaction) -> f64 {
    match (t.location, c.n_loc) {
        (Some((la2, lo2)), n) if n > 0 => {
            let dy = (la2 - c.lat) * 110.0;
            let dx = (lo2 - c.lon) * 70.0;
            (dx * dx + dy * dy).sqrt()
        }
        _ => 0.0,
    }
}

/// Fold a transaction into the card's (unlabelled) behaviour profile.
fn update_card(c: &mut CardF, t: &SimTransaction) {
    let la = t.amount.ln();
    c.mean_ln_amt = if c.n == 0 {
        la
    } else {
        0.95 * c.mean_ln_amt + 0.05 * la
    };
    c.n += 1;
    if let Some((a, b)) = t.location {
        if c.n_loc == 0 {
            c.lat = a;
            c.lon = b;
        } else {
            c.lat = 0.95 * c.lat + 0.05 * a;
            c.lon = 0.95 * c.lon + 0.05 * b;
        }
        c.n_loc += 1;
    }
    c.home_country.get_or_insert(t.country);
    c.recent[c.head] = (t.ts_ms, t.merchant);
    c.head = (c.head + 1) % 32;
}

/// Online logistic regression with AdaGrad steps.
struct Model {
    w: [f64; NF],
    g2: [f64; NF],
}

impl Model {
    /// Fraud probability of `f`.
    fn predict(&self, f: &[f32; NF]) -> f64 {
        let z: f64 = f.iter().zip(&self.w).map(|(a, b)| *a as f64 * b).sum();
        1.0 / (1.0 + (-z).exp())
    }

    /// One step towards verdict `is_fraud` on `f` (frauds weigh 10).
    fn learn(&mut self, f: &[f32; NF], is_fraud: bool) {
        let y = is_fraud as u8 as f64;
        let p = self.predict(f);
        let wt = if is_fraud { 10.0 } else { 1.0 };
        for ((w, g2), &x) in self.w.iter_mut().zip(self.g2.iter_mut()).zip(f) {
            let g = wt * (y - p) * x as f64;
            *g2 += g * g;
            *w += 0.3 * g / (1e-8 + g2.sqrt());
        }
    }
}

/// The features, state and model of the check, fed event by event.
struct Learner {
    cards: Vec<CardF>,
    /// Decayed transaction count per merchant.
    m_tx: Vec<(f64, i64)>,
    /// Decayed fraud-label count per merchant.
    m_fraud: Vec<(f64, i64)>,
    /// (card, merchant) pairs seen.
    seen: HashSet<(u32, u32)>,
    /// Features and merchant of each transaction, by id (for its label).
    feats: Vec<[f32; NF]>,
    merch: Vec<u32>,
    model: Model,
    /// Transactions scored from `half` on: (score, is fraud), and the pattern of each.
    scored: Vec<(f64, bool)>,
    pat: Vec<Option<usize>>,
    half: i64,
}

impl Learner {
    fn new(cfg: &SimConfig) -> Self {
        Learner {
            cards: vec![CardF::default(); cfg.cards as usize],
            m_tx: vec![(0.0f64, 0i64); cfg.merchants as usize],
            m_fraud: vec![(0.0f64, 0i64); cfg.merchants as usize],
            seen: HashSet::new(),
            feats: vec![[0.0; NF]],
            merch: vec![0],
            model: Model {
                w: [0.0f64; NF],
                g2: [0.0f64; NF],
            },
            scored: Vec::new(),
            pat: Vec::new(),
            half: cfg.start_ms + cfg.days as i64 / 2 * DAY_MS,
        }
    }

    /// The features of `t` from the state before it.
    fn features(&self, t: &SimTransaction) -> [f32; NF] {
        let c = &self.cards[t.card as usize];
        let la = t.amount.ln();
        let (cnt1h, cnt24, distinct10) = recent_activity(c, t.ts_ms);
        let dist = distance_from_usual(c, t);
        let hour = ((t.ts_ms / HOUR_MS) % 24) as u32;
        let mt = decay(self.m_tx[t.merchant as usize], t.ts_ms);
        let mf = decay(self.m_fraud[t.merchant as usize], t.ts_ms);
        [
            1.0,
            if c.n > 0 {
                (la - c.mean_ln_amt) as f32
            } else {
                0.0
            },
            (cnt1h as f32).ln_1p(),
            (cnt24 as f32).ln_1p(),
            (!self.seen.contains(&(t.card, t.merchant))) as u8 as f32,
            (dist as f32).ln_1p() / 3.0,
            (c.home_country.is_some_and(|h| h != t.country)) as u8 as f32,
            (t.channel == Channel::Ecom) as u8 as f32,
            (t.channel == Channel::Atm) as u8 as f32,
            matches!(t.mcc, 5732 | 5944 | 7995) as u8 as f32,
            (hour < 6) as u8 as f32,
            (mf / (mt + 1.0) * 10.0) as f32,
            (distinct10 as f32).ln_1p(),
            (t.amount < 3.0) as u8 as f32,
        ]
    }

    /// Score `t` (kept from the second half on), then fold it into the state.
    fn on_transaction(&mut self, t: &SimTransaction) {
        let f = self.features(t);
        let p = self.model.predict(&f);
        if t.ts_ms >= self.half {
            self.scored.push((p, t.fraud.is_some()));
            self.pat.push(t.fraud.map(|p| p.index()));
        }
        self.feats.push(f);
        self.merch.push(t.merchant);
        update_card(&mut self.cards[t.card as usize], t);
        self.seen.insert((t.card, t.merchant));
        let e = &mut self.m_tx[t.merchant as usize];
        *e = (decay(*e, t.ts_ms) + 1.0, t.ts_ms);
    }

    /// Learn from a label; a fraud also counts against its merchant.
    fn on_label(&mut self, l: &SimLabel) {
        let f = self.feats[l.tx_id as usize];
        self.model.learn(&f, l.is_fraud);
        if l.is_fraud {
            let m = self.merch[l.tx_id as usize] as usize;
            let e = &mut self.m_fraud[m];
            *e = (decay(*e, l.ts_ms) + 1.0, l.ts_ms);
        }
    }

    /// Print the metrics per fraud pattern and overall, and the weights.
    fn report(mut self) {
        for k in 0..4 {
            let mut sub: Vec<(f64, bool)> = self
                .scored
                .iter()
                .zip(&self.pat)
                .filter(|(_, q)| q.is_none() || **q == Some(k))
                .map(|(s, _)| *s)
                .collect();
            let (auc, ap, n) = metrics(&mut sub);
            println!(
                "  {:<22} n={n:>5} AUC {auc:.4} AP {ap:.4}",
                FraudPattern::ALL[k].name()
            );
        }
        let (auc, ap, pos) = metrics(&mut self.scored);
        println!(
            "last half: {} tx, {} fraud; ROC AUC {:.4}, AP {:.4}; weights {:?}",
            self.scored.len(),
            pos,
            auc,
            ap,
            self.model
                .w
                .iter()
                .map(|x| (x * 100.0).round() / 100.0)
                .collect::<Vec<_>>()
        );
    }
}

fn main() {
    let cfg = SimConfig::default();
    let mut learner = Learner::new(&cfg);
    for ev in Simulator::new(cfg).unwrap() {
        match ev {
            SimEvent::Transaction(t) => learner.on_transaction(&t),
            SimEvent::Label(l) => learner.on_label(&l),
        }
    }
    learner.report();
}

/// (ROC AUC, average precision, positives) of (score, is_fraud) pairs.
fn metrics(scored: &mut [(f64, bool)]) -> (f64, f64, f64) {
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let pos = scored.iter().filter(|x| x.1).count() as f64;
    let neg = scored.len() as f64 - pos;
    let (mut tp, mut fp, mut auc, mut ap) = (0.0, 0.0, 0.0, 0.0);
    for &(_, y) in scored.iter() {
        if y {
            tp += 1.0;
            ap += tp / (tp + fp);
        } else {
            fp += 1.0;
            auc += tp;
        }
    }
    (auc / (pos * neg), ap / pos, pos)
}
