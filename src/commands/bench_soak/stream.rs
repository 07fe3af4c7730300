//! The soak benchmark's traffic: days of event time at a constant rate over a
//! population that keeps changing, one day at a time, in event-time order.
//!
//! Each card is active for [`CARD_LIFE_DAYS`] and each merchant for
//! [`MERCHANT_LIFE_DAYS`]; new ones appear every day under ids never used
//! before (`c<n>`, `m<n>`, transactions `t<n>`), so the number of ids ever
//! seen grows linearly with the days and only eviction keeps the engine's
//! maps from doing the same. The population is already full on day 0 (cards
//! and merchants that started before it), so traffic is constant from the
//! first day. About [`FRAUD_RATE`] of transactions are fraud, labelled 1 to
//! 60 days later; [`GENUINE_LABELLED`] of the genuine ones are confirmed
//! 7 to 14 days later and the rest never are (they wait in the pending store
//! until its TTL). Seeded: the same shape gives the same stream.

use compact_str::format_compact;
use fraudstream_engine::event::{Event, Label, Transaction, TxId};
use fraudstream_engine::time::DAY_MS;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;

/// Days a card makes transactions, from its first one.
pub const CARD_LIFE_DAYS: u64 = 30;
/// Days a merchant takes transactions, from its first one.
pub const MERCHANT_LIFE_DAYS: u64 = 60;
/// Transactions a card makes per active day (so active cards = rate / this).
pub const TX_PER_CARD_DAY: u64 = 2;
/// Transactions a merchant takes per active day.
pub const TX_PER_MERCHANT_DAY: u64 = 10;
/// Share of transactions that are fraud.
pub const FRAUD_RATE: f64 = 0.01;
/// Share of genuine transactions whose label (a confirmation) ever arrives.
pub const GENUINE_LABELLED: f64 = 0.9;
/// A label arrives at most this many days after its transaction.
pub const MAX_LABEL_DELAY_DAYS: i64 = 60;

const MCCS: [&str; 8] = [
    "5411", "5812", "5541", "5999", "4829", "5732", "7011", "5311",
];
const COUNTRIES: [&str; 5] = ["FR", "DE", "ES", "IT", "NL"];

/// What the stream looks like.
#[derive(Clone, Copy, Debug)]
pub struct StreamShape {
    /// Event time of the first day's start (ms since the epoch).
    pub start_ms: i64,
    /// Transactions per day.
    pub tx_per_day: u64,
    /// Seed of every random choice.
    pub seed: u64,
}

/// A label not yet due.
#[derive(Clone, Copy, Debug)]
struct DueLabel {
    ts: i64,
    tx: u64,
    is_fraud: bool,
}

/// A population of cards and merchants that churns at a constant traffic
/// rate; [`ChurnStream::day`] writes one day's events at a time.
pub struct ChurnStream {
    shape: StreamShape,
    rng: ChaCha8Rng,
    next_day: i64,
    next_tx: u64,
    /// New cards (merchants) per day; cards active on day `d` are the ids
    /// `[d * new_cards, (d + CARD_LIFE_DAYS) * new_cards)`.
    new_cards: u64,
    new_merchants: u64,
    /// Labels by the day they are due, from `next_day` on; each day's vector
    /// is reused once that day is written, so the queue allocates nothing in
    /// steady state.
    due: VecDeque<Vec<DueLabel>>,
    times: Vec<i64>,
}

impl ChurnStream {
    /// A stream of `shape`, starting at its day 0.
    pub fn new(shape: StreamShape) -> Self {
        let active_cards = (shape.tx_per_day / TX_PER_CARD_DAY).max(CARD_LIFE_DAYS);
        let active_merchants = (shape.tx_per_day / TX_PER_MERCHANT_DAY).max(MERCHANT_LIFE_DAYS);
        ChurnStream {
            shape,
            rng: ChaCha8Rng::seed_from_u64(shape.seed),
            next_day: 0,
            next_tx: 0,
            new_cards: active_cards.div_ceil(CARD_LIFE_DAYS),
            new_merchants: active_merchants.div_ceil(MERCHANT_LIFE_DAYS),
            due: (0..=MAX_LABEL_DELAY_DAYS + 1).map(|_| Vec::new()).collect(),
            times: Vec::new(),
        }
    }

    /// Card and merchant ids active on some day of the first `days`: about
    /// what the maps would hold without eviction.
    pub fn ids_active(&self, days: u64) -> (u64, u64) {
        let last = days.saturating_sub(1);
        (
            (last + CARD_LIFE_DAYS) * self.new_cards,
            (last + MERCHANT_LIFE_DAYS) * self.new_merchants,
        )
    }

    /// Replace `out` with the next day's events (its transactions and the
    /// labels due that day) in event-time order; returns that day's number.
    pub fn day(&mut self, out: &mut Vec<Event>) -> i64 {
        let day = self.next_day;
        self.next_day += 1;
        let day_start = self.shape.start_ms + day * DAY_MS;
        let mut labels = self.due.pop_front().expect("one vector per day ahead");
        labels.sort_unstable_by_key(|l| (l.ts, l.tx));
        self.times.clear();
        for _ in 0..self.shape.tx_per_day {
            self.times.push(day_start + self.rng.gen_range(0..DAY_MS));
        }
        self.times.sort_unstable();
        out.clear();
        let mut next_label = labels.iter().peekable();
        for i in 0..self.times.len() {
            let ts = self.times[i];
            while let Some(l) = next_label.next_if(|l| l.ts <= ts) {
                out.push(label_event(l));
            }
            let tx = self.transaction(day, ts);
            out.push(Event::Transaction(tx));
        }
        out.extend(next_label.map(label_event));
        labels.clear();
        self.due.push_back(labels);
        day
    }

    /// One transaction at `ts` (of `day`), its label scheduled.
    fn transaction(&mut self, day: i64, ts: i64) -> Transaction {
        let d = day as u64;
        let card = d * self.new_cards + self.rng.gen_range(0..CARD_LIFE_DAYS * self.new_cards);
        let merchant = d * self.new_merchants
            + self
                .rng
                .gen_range(0..MERCHANT_LIFE_DAYS * self.new_merchants);
        let is_fraud = self.rng.gen_bool(FRAUD_RATE);
        let amount = if is_fraud {
            self.rng.gen_range(50.0..2000.0)
        } else {
            self.rng.gen_range(0.0f64..5.5).exp()
        };
        let channel = if is_fraud || self.rng.gen_bool(0.2) {
            "ecom"
        } else {
            "pos"
        };
        let n = self.next_tx;
        self.next_tx += 1;
        let delay = if is_fraud {
            Some(self.rng.gen_range(DAY_MS..=MAX_LABEL_DELAY_DAYS * DAY_MS))
        } else if self.rng.gen_bool(GENUINE_LABELLED) {
            Some(self.rng.gen_range(7 * DAY_MS..=14 * DAY_MS))
        } else {
            None
        };
        if let Some(delay) = delay {
            let label_ts = ts + delay;
            let ahead = (label_ts - self.shape.start_ms).div_euclid(DAY_MS) - day;
            // Due on a later day (delay >= 1 day), within the queue's days.
            self.due[ahead as usize - 1].push(DueLabel {
                ts: label_ts,
                tx: n,
                is_fraud,
            });
        }
        Transaction {
            tx_id: TxId::Str(format_compact!("t{n}")),
            ts,
            card_id: format_compact!("c{card}"),
            merchant_id: format_compact!("m{merchant}"),
            amount,
            currency: Some("EUR".into()),
            mcc: Some(MCCS[(merchant % MCCS.len() as u64) as usize].into()),
            country: Some(COUNTRIES[(card % COUNTRIES.len() as u64) as usize].into()),
            channel: Some(channel.into()),
            location: None,
        }
    }
}

fn label_event(l: &DueLabel) -> Event {
    Event::Label(Label {
        tx_id: TxId::Str(format_compact!("t{}", l.tx)),
        ts: l.ts,
        is_fraud: l.is_fraud,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn days(shape: StreamShape, n: usize) -> Vec<Vec<Event>> {
        let mut s = ChurnStream::new(shape);
        (0..n)
            .map(|_| {
                let mut out = Vec::new();
                s.day(&mut out);
                out
            })
            .collect()
    }

    const SHAPE: StreamShape = StreamShape {
        start_ms: 1_700_000_000_000,
        tx_per_day: 600,
        seed: 7,
    };

    #[test]
    fn days_are_in_event_time_order_with_every_label_after_its_transaction() {
        let mut scored = HashSet::new();
        let mut last = i64::MIN;
        for (d, events) in days(SHAPE, 90).iter().enumerate() {
            let start = SHAPE.start_ms + d as i64 * DAY_MS;
            let tx = events
                .iter()
                .filter(|e| matches!(e, Event::Transaction(_)))
                .count();
            assert_eq!(tx, 600, "constant traffic");
            for e in events {
                assert!(e.ts() >= last && (start..start + DAY_MS).contains(&e.ts()));
                last = e.ts();
                match e {
                    Event::Transaction(t) => assert!(scored.insert(t.tx_id.clone())),
                    Event::Label(l) => assert!(scored.contains(&l.tx_id), "labelled after"),
                }
            }
        }
    }

    #[test]
    fn cards_churn_and_the_same_seed_gives_the_same_stream() {
        let a = days(SHAPE, 100);
        assert_eq!(a, days(SHAPE, 100));
        let cards = |range: std::ops::Range<usize>| -> HashSet<_> {
            a[range]
                .iter()
                .flatten()
                .filter_map(|e| match e {
                    Event::Transaction(t) => Some(t.card_id.clone()),
                    _ => None,
                })
                .collect()
        };
        // A month apart, the card populations no longer meet.
        assert!(cards(0..10).is_disjoint(&cards(40..50)));
        let (ids, _) = ChurnStream::new(SHAPE).ids_active(100);
        let seen = cards(0..100).len() as u64;
        assert!(seen <= ids && seen > ids * 9 / 10, "{seen} of {ids}");
    }
}
