//! Sanity check that the default stream is learnable: an online logistic regression over a
//! few rolling per-card / per-merchant features, trained only on delayed labels, scored
//! prequentially (score before the label is known). Prints ROC AUC and average precision
//! over the last half of the run.
//!
//! `cargo run --release -p fraudstream-sim --example learnability`

use std::collections::HashSet;

use fraudstream_sim::{Channel, FraudPattern, SimConfig, SimEvent, Simulator, DAY_MS, HOUR_MS};

const NF: usize = 14;

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

fn main() {
    let cfg = SimConfig::default();
    let half = cfg.start_ms + cfg.days as i64 / 2 * DAY_MS;
    let mut cards = vec![CardF::default(); cfg.cards as usize];
    let mut m_tx = vec![(0.0f64, 0i64); cfg.merchants as usize];
    let mut m_fraud = vec![(0.0f64, 0i64); cfg.merchants as usize];
    let mut seen: HashSet<(u32, u32)> = HashSet::new();
    let mut feats: Vec<[f32; NF]> = vec![[0.0; NF]];
    let mut merch: Vec<u32> = vec![0];
    let mut w = [0.0f64; NF];
    let mut g2 = [0.0f64; NF];
    let mut scored: Vec<(f64, bool)> = Vec::new();
    let mut pat: Vec<Option<usize>> = Vec::new();
    let mut is_fraud_truth: Vec<Option<usize>> = vec![None];
    let tau = 7.0 * DAY_MS as f64;
    let decay = |v: (f64, i64), now: i64| v.0 * (-((now - v.1) as f64) / tau).exp();
    for ev in Simulator::new(cfg).unwrap() {
        match ev {
            SimEvent::Transaction(t) => {
                let c = &mut cards[t.card as usize];
                let la = t.amount.ln();
                let mut cnt1h = 0;
                let mut cnt24 = 0;
                let mut distinct10: Vec<u32> = Vec::new();
                for &(ts, m) in &c.recent {
                    if ts > 0 && t.ts_ms - ts < HOUR_MS {
                        cnt1h += 1;
                    }
                    if ts > 0 && t.ts_ms - ts < DAY_MS {
                        cnt24 += 1;
                    }
                    if ts > 0 && t.ts_ms - ts < 600_000 && !distinct10.contains(&m) {
                        distinct10.push(m);
                    }
                }
                let dist = match (t.location, c.n_loc) {
                    (Some((la2, lo2)), n) if n > 0 => {
                        let dy = (la2 - c.lat) * 110.0;
                        let dx = (lo2 - c.lon) * 70.0;
                        (dx * dx + dy * dy).sqrt()
                    }
                    _ => 0.0,
                };
                let hour = ((t.ts_ms / HOUR_MS) % 24) as u32;
                let mt = decay(m_tx[t.merchant as usize], t.ts_ms);
                let mf = decay(m_fraud[t.merchant as usize], t.ts_ms);
                let f: [f32; NF] = [
                    1.0,
                    if c.n > 0 {
                        (la - c.mean_ln_amt) as f32
                    } else {
                        0.0
                    },
                    (cnt1h as f32).ln_1p(),
                    (cnt24 as f32).ln_1p(),
                    (!seen.contains(&(t.card, t.merchant))) as u8 as f32,
                    (dist as f32).ln_1p() / 3.0,
                    (c.home_country.is_some_and(|h| h != t.country)) as u8 as f32,
                    (t.channel == Channel::Ecom) as u8 as f32,
                    (t.channel == Channel::Atm) as u8 as f32,
                    matches!(t.mcc, 5732 | 5944 | 7995) as u8 as f32,
                    (hour < 6) as u8 as f32,
                    (mf / (mt + 1.0) * 10.0) as f32,
                    (distinct10.len() as f32).ln_1p(),
                    (t.amount < 3.0) as u8 as f32,
                ];
                let z: f64 = f.iter().zip(&w).map(|(a, b)| *a as f64 * b).sum();
                let p = 1.0 / (1.0 + (-z).exp());
                if t.ts_ms >= half {
                    scored.push((p, t.fraud.is_some()));
                    pat.push(t.fraud.map(|p| p.index()));
                    is_fraud_truth.push(Some(scored.len() - 1));
                } else {
                    is_fraud_truth.push(None);
                }
                feats.push(f);
                merch.push(t.merchant);
                // update card state (unlabelled behaviour profile)
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
                seen.insert((t.card, t.merchant));
                let e = &mut m_tx[t.merchant as usize];
                *e = (decay(*e, t.ts_ms) + 1.0, t.ts_ms);
            }
            SimEvent::Label(l) => {
                let f = feats[l.tx_id as usize];
                let y = l.is_fraud as u8 as f64;
                let z: f64 = f.iter().zip(&w).map(|(a, b)| *a as f64 * b).sum();
                let p = 1.0 / (1.0 + (-z).exp());
                let wt = if l.is_fraud { 10.0 } else { 1.0 };
                for i in 0..NF {
                    let g = wt * (y - p) * f[i] as f64;
                    g2[i] += g * g;
                    w[i] += 0.3 * g / (1e-8 + g2[i].sqrt());
                }
                if l.is_fraud {
                    let m = merch[l.tx_id as usize] as usize;
                    let e = &mut m_fraud[m];
                    *e = (decay(*e, l.ts_ms) + 1.0, l.ts_ms);
                }
            }
        }
    }
    for k in 0..4 {
        let mut sub: Vec<(f64, bool)> = scored
            .iter()
            .zip(&pat)
            .filter(|(_, q)| q.is_none() || **q == Some(k))
            .map(|(s, _)| *s)
            .collect();
        let (auc, ap, n) = metrics(&mut sub);
        println!(
            "  {:<22} n={n:>5} AUC {auc:.4} AP {ap:.4}",
            FraudPattern::ALL[k].name()
        );
    }
    let (auc, ap, pos) = metrics(&mut scored);
    println!(
        "last half: {} tx, {} fraud; ROC AUC {:.4}, AP {:.4}; weights {:?}",
        scored.len(),
        pos,
        auc,
        ap,
        w.iter()
            .map(|x| (x * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    );
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
