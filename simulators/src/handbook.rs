//! The `handbook` family: the transaction simulator of the Fraud Detection
//! Handbook (Le Borgne, Siblini, Lebichot, Bontempi, "Reproducible Machine
//! Learning for Credit Card Fraud Detection - Practical Handbook", 2022,
//! chapter 3.2), written by others for their own book, so a third structure
//! the engine's features were not written for.
//!
//! - Customers and terminals stand on a 100 x 100 grid; a customer pays at
//!   the terminals within a radius of home (5 with the handbook's 10,000
//!   terminals; scaled with the terminal density otherwise, so a customer
//!   keeps about 78 terminals), Poisson(U(0, 4)) times a day, at
//!   N(noon, 20,000 s) (draws outside the day are dropped), amounts
//!   N(m, m/2) with m ~ U(5, 100) (a negative draw is U(0, 2m) instead).
//!   One currency, no category, country, channel or location.
//! - Three fraud mechanisms, the handbook's scenarios ([`FraudPattern::HANDBOOK`]):
//!   - *amount above a level*: every amount above 220;
//!   - *compromised terminal*: all its transactions for 28 days;
//!   - *compromised customer*: a third of their transactions for 14 days,
//!     at 5 times the amount.
//! - `fraud_rate` sets how many terminals and customers are compromised a
//!   day: at 0.84 % (the handbook's rate) and the handbook's population,
//!   two terminals and three customers, as in the book. A customer's
//!   fraud is drawn per transaction (one in three), where the book picks a
//!   third of the 14 days' transactions at the end.
//! - Labels arrive a fixed delay after their transaction (the book's
//!   "delay period"): `labels.chargeback_median_days`, for frauds and
//!   genuine transactions alike when `labels.genuine` matures them then.
//!
//! `simulators/handbook/generate.py` is the book's own code path in Python
//! (the same draws as the book at its seed 0); this module draws with
//! ChaCha8 like the other families, so its streams are the same in shape,
//! not in values.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::day::{cents, poisson};
use crate::{FraudPattern, SimConfig, SimTransaction};

/// Side of the square grid customers and terminals stand on.
const GRID: f64 = 100.0;
/// The handbook's radius, at its 10,000 terminals.
const RADIUS: f64 = 5.0;
const HANDBOOK_TERMINALS: f64 = 10_000.0;
/// Scenario 1: every amount above this is fraud.
pub const AMOUNT_LEVEL: f64 = 220.0;
/// Days a compromised terminal / customer stays compromised.
const TERMINAL_DAYS: u32 = 28;
const CUSTOMER_DAYS: u32 = 14;
/// A compromised customer's transactions that are fraud, and their amount factor.
const CUSTOMER_SHARE: f64 = 1.0 / 3.0;
const CUSTOMER_FACTOR: f64 = 5.0;
/// Shares of the fraud rate from compromised terminals and customers
/// (the book's 9,159 and 4,631 of 1,754,155 transactions; amounts above
/// the level are the rest, about 0.055 %, whatever the rate).
const TERMINAL_SHARE: f64 = 0.62;
const COMPROMISED_CUSTOMER_SHARE: f64 = 0.32;

struct Customer {
    mean: f64,
    std: f64,
    rate: f64,
    /// Terminals within the radius of home.
    near: Vec<u32>,
}

/// Terminals bucketed in square cells at least the radius wide, so a
/// customer's near terminals are among the 3 x 3 cells around home rather
/// than a scan of every terminal (cards x terminals distances otherwise).
struct Cells {
    side: usize,
    width: f64,
    cells: Vec<Vec<u32>>,
}

impl Cells {
    fn new(terminals: &[(f64, f64)], radius: f64) -> Self {
        let side = ((GRID / radius).floor() as usize).clamp(1, 1024);
        let mut cells = Cells {
            side,
            width: GRID / side as f64,
            cells: vec![Vec::new(); side * side],
        };
        for (i, &(x, y)) in terminals.iter().enumerate() {
            let at = cells.at(x) + side * cells.at(y);
            cells.cells[at].push(i as u32);
        }
        cells
    }

    fn at(&self, v: f64) -> usize {
        ((v / self.width) as usize).min(self.side - 1)
    }

    /// The terminals within `radius` of `(x, y)`, in index order.
    fn near(&self, terminals: &[(f64, f64)], (x, y): (f64, f64), radius: f64) -> Vec<u32> {
        let around = |c: usize| c.saturating_sub(1)..=(c + 1).min(self.side - 1);
        let mut near = Vec::new();
        for gy in around(self.at(y)) {
            for gx in around(self.at(x)) {
                near.extend(self.cells[gx + self.side * gy].iter().filter(|&&t| {
                    let (tx, ty) = terminals[t as usize];
                    (tx - x).hypot(ty - y) < radius
                }));
            }
        }
        near.sort_unstable();
        near
    }
}

/// The world and day generator of the `handbook` family.
pub(crate) struct HandbookGen {
    rng: ChaCha8Rng,
    customers: Vec<Customer>,
    /// Per terminal / customer: the first day it is no longer compromised
    /// (0: never compromised).
    terminal_until: Vec<u32>,
    customer_until: Vec<u32>,
    /// Expected compromises a day.
    terminals_a_day: f64,
    customers_a_day: f64,
    day: u32,
}

impl HandbookGen {
    pub(crate) fn new(mut rng: ChaCha8Rng, cfg: &SimConfig) -> Self {
        let n_terminals = cfg.merchants.max(1);
        let grid: Vec<(f64, f64)> = (0..cfg.cards + n_terminals)
            .map(|_| (rng.gen_range(0.0..GRID), rng.gen_range(0.0..GRID)))
            .collect();
        let (homes, terminals) = grid.split_at(cfg.cards as usize);
        let radius = (RADIUS * (HANDBOOK_TERMINALS / n_terminals as f64).sqrt())
            .min(GRID * std::f64::consts::SQRT_2);
        let cells = Cells::new(terminals, radius);
        let customers = homes
            .iter()
            .map(|&home| {
                let mean = rng.gen_range(5.0..100.0);
                let near = cells.near(terminals, home, radius);
                Customer {
                    mean,
                    std: mean / 2.0,
                    rate: rng.gen_range(0.0..4.0),
                    near,
                }
            })
            .collect();
        let rate = cfg.fraud_rate;
        HandbookGen {
            rng,
            customers,
            terminal_until: vec![0; n_terminals as usize],
            customer_until: vec![0; cfg.cards as usize],
            // A terminal carries customers × 2 / terminals transactions a day.
            terminals_a_day: rate * TERMINAL_SHARE * n_terminals as f64 / TERMINAL_DAYS as f64,
            // A customer makes 2 a day, a third of them fraud while compromised.
            customers_a_day: rate * COMPROMISED_CUSTOMER_SHARE * cfg.cards as f64
                / (CUSTOMER_DAYS as f64 * CUSTOMER_SHARE),
            day: 0,
        }
    }

    /// Expected `mean` as a whole count: its floor, plus one with the
    /// probability of its fraction.
    fn count(rng: &mut ChaCha8Rng, mean: f64) -> u32 {
        mean.floor() as u32 + u32::from(rng.gen::<f64>() < mean.fract())
    }

    /// Compromises of the day: terminals and customers drawn uniformly
    /// (one already compromised is compromised again, for longer).
    fn start_compromises(&mut self) {
        let rng = &mut self.rng;
        for _ in 0..Self::count(rng, self.terminals_a_day) {
            let t = rng.gen_range(0..self.terminal_until.len());
            self.terminal_until[t] = self.day + TERMINAL_DAYS;
        }
        for _ in 0..Self::count(rng, self.customers_a_day) {
            let c = rng.gen_range(0..self.customer_until.len());
            self.customer_until[c] = self.day + CUSTOMER_DAYS;
        }
    }

    /// Appends the day at `day_start`: every customer's transactions, in
    /// customer order (the caller sorts by time).
    pub(crate) fn day(&mut self, buf: &mut Vec<SimTransaction>, day_start: i64) {
        self.start_compromises();
        let day = self.day;
        for (card, c) in self.customers.iter().enumerate() {
            let rng = &mut self.rng;
            for _ in 0..poisson(rng, c.rate) {
                let z: f64 = rng.sample(StandardNormal);
                let secs = (43_200.0 + 20_000.0 * z) as i64;
                let drawn: f64 = rng.sample(StandardNormal);
                let mut amount = c.mean + c.std * drawn;
                if amount < 0.0 {
                    amount = rng.gen_range(0.0..2.0 * c.mean);
                }
                if !(1..86_400).contains(&secs) || c.near.is_empty() {
                    continue;
                }
                let terminal = c.near[rng.gen_range(0..c.near.len())];
                let mut amount = cents(amount).max(0.01);
                let mut fraud = (amount > AMOUNT_LEVEL).then_some(FraudPattern::AmountAboveLevel);
                if self.terminal_until[terminal as usize] > day {
                    fraud = Some(FraudPattern::CompromisedTerminal);
                }
                if self.customer_until[card] > day && rng.gen::<f64>() < CUSTOMER_SHARE {
                    amount = cents(amount * CUSTOMER_FACTOR);
                    fraud = Some(FraudPattern::CompromisedCustomer);
                }
                buf.push(SimTransaction {
                    tx_id: buf.len() as u64,
                    ts_ms: day_start + secs * 1000,
                    card: card as u32,
                    merchant: terminal,
                    amount,
                    currency: "EUR",
                    mcc: 5999,
                    country: "BE",
                    channel: crate::Channel::Pos,
                    location: None,
                    fraud,
                });
            }
        }
        self.day += 1;
    }

    /// Expected transactions a day (for the day buffer's capacity).
    pub(crate) fn expected_day(&self) -> usize {
        self.customers.iter().map(|c| c.rate).sum::<f64>() as usize + 64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Family, SimEvent, Simulator, DAY_MS};

    /// The day of the run a transaction at `ts` falls on.
    fn day_of(ts: i64, start_ms: i64) -> i64 {
        (ts - start_ms).div_euclid(DAY_MS)
    }

    fn handbook(cards: u32, terminals: u32, days: u32, rate: f64) -> SimConfig {
        SimConfig {
            family: Family::Handbook,
            cards,
            merchants: terminals,
            days,
            fraud_rate: rate,
            ..SimConfig::default()
        }
    }

    #[test]
    fn the_three_scenarios_hold_as_the_handbook_defines_them() {
        let cfg = handbook(2000, 4000, 60, 0.0084);
        let start = cfg.start_ms;
        let txs: Vec<_> = Simulator::new(cfg)
            .unwrap()
            .filter_map(|e| match e {
                SimEvent::Transaction(t) => Some(t),
                SimEvent::Label(_) => None,
            })
            .collect();
        let n = txs.len() as f64;
        // About 2 transactions a customer a day (a few drawn outside the day).
        assert!((200_000.0..260_000.0).contains(&n), "{n}");
        let count = |p| txs.iter().filter(|t| t.fraud == Some(p)).count() as f64;
        let (above, terminal, customer) = (
            count(FraudPattern::AmountAboveLevel),
            count(FraudPattern::CompromisedTerminal),
            count(FraudPattern::CompromisedCustomer),
        );
        let rate = (above + terminal + customer) / n;
        assert!((0.004..0.014).contains(&rate), "fraud rate {rate}");
        assert!(
            above > 0.0 && terminal > above && customer > above,
            "{above} {terminal} {customer}"
        );
        for t in &txs {
            // Genuine amounts never exceed the level; only a compromised
            // customer's (5x) or terminal's fraud may also be above it.
            if t.fraud.is_none() {
                assert!(t.amount <= AMOUNT_LEVEL && t.amount > 0.0, "{t:?}");
            }
            if t.fraud == Some(FraudPattern::AmountAboveLevel) {
                assert!(t.amount > AMOUNT_LEVEL);
            }
            assert!(t.location.is_none());
        }
        // A compromised terminal's transactions are all fraud from the day
        // it was compromised until 28 days on.
        let first = txs
            .iter()
            .find(|t| t.fraud == Some(FraudPattern::CompromisedTerminal))
            .unwrap();
        let d = day_of(first.ts_ms, start);
        let later_same = txs.iter().filter(|t| {
            t.merchant == first.merchant && (d..d + 28).contains(&day_of(t.ts_ms, start))
        });
        assert!(
            later_same.clone().all(|t| t.fraud.is_some()),
            "a genuine transaction at a compromised terminal"
        );
        assert!(later_same.count() > 1);
    }

    #[test]
    fn the_cells_find_exactly_the_terminals_a_scan_finds() {
        use rand::SeedableRng;
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let terminals: Vec<(f64, f64)> = (0..3000)
            .map(|_| (rng.gen_range(0.0..GRID), rng.gen_range(0.0..GRID)))
            .collect();
        for radius in [0.5, 5.0, 13.0, 60.0, 150.0] {
            let cells = Cells::new(&terminals, radius);
            for _ in 0..200 {
                let home = (rng.gen_range(0.0..GRID), rng.gen_range(0.0..GRID));
                let scan: Vec<u32> = (0..terminals.len() as u32)
                    .filter(|&t| {
                        let (x, y) = terminals[t as usize];
                        (x - home.0).hypot(y - home.1) < radius
                    })
                    .collect();
                assert_eq!(
                    cells.near(&terminals, home, radius),
                    scan,
                    "radius {radius}"
                );
            }
        }
    }

    #[test]
    fn labels_come_a_fixed_delay_after_their_transaction() {
        let mut cfg = handbook(300, 600, 20, 0.02);
        cfg.labels.chargeback_median_days = 7.0;
        let mut ts = std::collections::HashMap::new();
        let mut labels = 0;
        for e in Simulator::new(cfg).unwrap() {
            match e {
                SimEvent::Transaction(t) => {
                    ts.insert(t.tx_id, t.ts_ms);
                }
                SimEvent::Label(l) => {
                    assert_eq!(l.ts_ms - ts[&l.tx_id], 7 * DAY_MS, "{l:?}");
                    labels += 1;
                }
            }
        }
        assert_eq!(labels, ts.len(), "every transaction is labelled");
    }
}
