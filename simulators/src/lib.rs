//! `fraudstream-sim` owns the seeded, deterministic generator of card transactions and their delayed fraud labels.
//!
//! A [`Simulator`] is an [`Iterator`] of [`SimEvent`]s: transactions of a synthetic card
//! portfolio (card holders with homes, usual merchants, amount profiles, daily rhythm, trips)
//! mixed with four fraud patterns ([`FraudPattern`]) whose mix and rate can drift, and the
//! labels that reveal the truth later (analyst confirmations, chargebacks, matured genuine
//! transactions).
//!
//! Streaming contract:
//! - the run is generated one day at a time; a day's transactions are sorted by
//!   (ts_ms, generation order) and numbered 1.. in that order, so memory stays
//!   O(cards + merchants + one day + pending labels);
//! - events come out with non-decreasing `ts_ms`; a pending label is emitted before the next
//!   transaction when `label.ts_ms <= tx.ts_ms` (labels first at equal timestamps);
//!   pending labels are ordered by (ts_ms, tx_id) (fraud labels in a min-heap, genuine
//!   labels — which all have the same maturity — in a FIFO that is already in that order);
//! - after the last transaction all remaining labels are drained in (ts_ms, tx_id) order;
//! - the same [`SimConfig`] always yields the same event sequence (ChaCha8, no hash-map
//!   iteration, no clock).

use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

mod config;
mod event;
mod labels;
mod pattern;
mod time;
mod world;

pub use config::{
    DriftConfig, DriftMode, GenuineLabels, LabelConfig, PatternMix, SimConfig, MAX_CARDS, MAX_DAYS,
    MAX_FRAUD_RATE, MAX_MERCHANTS, MIN_MERCHANTS,
};
pub use event::{
    card_id, merchant_id, write_card_id, write_merchant_id, Channel, SimEvent, SimLabel,
    SimTransaction,
};
use labels::LabelQueue;
pub use pattern::FraudPattern;
pub use time::{DAY_MS, DEFAULT_START_MS, HOUR_MS, MINUTE_MS};
use world::{city_point, dist_km, World, COUNTRIES, NC, POOL_SHARE, USUAL_SHARE, WEEKEND_FACTOR};

// ---------------------------------------------------------------------------------------
// Behaviour constants.

/// Relative transaction intensity per hour of day.
const HOUR_WEIGHTS: [f64; 24] = [
    0.15, 0.08, 0.05, 0.04, 0.05, 0.12, 0.35, 0.7, 1.0, 1.1, 1.2, 1.5, 1.8, 1.5, 1.2, 1.1, 1.2,
    1.5, 1.8, 1.9, 1.6, 1.1, 0.7, 0.35,
];
const TRIP_PROB_PER_DAY: f64 = 1.0 / 150.0;
const BIG_TICKET_SHARE: f64 = 0.02;
/// Days of target volume the active incidents of a pattern should cover beyond today
/// (E[D²]/2E[D] of the incident duration), so that incident starts keep pace with the target.
const LOOKAHEAD_DAYS: [f64; 4] = [1.0, 7.6, 2.5, 0.0];

fn cents(x: f64) -> f64 {
    ((x * 100.0).round() / 100.0).max(0.01)
}

fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> u32 {
    if lambda <= 0.0 {
        return 0;
    }
    if lambda < 30.0 {
        let l = (-lambda).exp();
        let mut k = 0;
        let mut p: f64 = rng.gen();
        while p > l {
            k += 1;
            p *= rng.gen::<f64>();
        }
        k
    } else {
        let z: f64 = rng.sample(StandardNormal);
        (lambda + lambda.sqrt() * z).round().max(0.0) as u32
    }
}

fn dow_factor(day_start: i64) -> f64 {
    // 1970-01-01 was a Thursday; Monday = 0.
    let dow = (day_start.div_euclid(DAY_MS) + 3).rem_euclid(7);
    if dow >= 5 {
        WEEKEND_FACTOR
    } else {
        1.0
    }
}

// ---------------------------------------------------------------------------------------
// Dynamic state.

#[derive(Clone, Copy)]
struct CardState {
    /// No new incident may start on this card before this time.
    busy_until: i64,
    /// Account-takeover window: genuine transactions stop.
    ato_from: i64,
    ato_until: i64,
    trip_from: i64,
    trip_until: i64,
    trip_country: u8,
    trip_lat: f64,
    trip_lon: f64,
}

#[derive(Clone, Copy)]
enum IncidentKind {
    Stolen {
        n: u8,
        times: [i64; 8],
        country: u8,
        lat: f64,
        lon: f64,
    },
    Merchant {
        merchant: u32,
        daily: f64,
    },
    Takeover {
        rate: f64,
    },
    Testing {
        n: u8,
        window_ms: i64,
        large_at: i64,
    },
}

#[derive(Clone, Copy)]
struct Incident {
    card: u32,
    start: i64,
    end: i64,
    kind: IncidentKind,
}

impl Incident {
    fn pattern(&self) -> FraudPattern {
        match self.kind {
            IncidentKind::Stolen { .. } => FraudPattern::StolenCard,
            IncidentKind::Merchant { .. } => FraudPattern::CompromisedMerchant,
            IncidentKind::Takeover { .. } => FraudPattern::AccountTakeover,
            IncidentKind::Testing { .. } => FraudPattern::CardTesting,
        }
    }

    /// Expected fraudulent transactions from `from` until the end of the run.
    fn expected_from(&self, from: i64, end_ms: i64) -> f64 {
        let span = |rate: f64| {
            let a = self.start.max(from);
            let b = self.end.min(end_ms);
            rate * ((b - a).max(0) as f64) / DAY_MS as f64
        };
        match self.kind {
            IncidentKind::Stolen { n, times, .. } => times[..n as usize]
                .iter()
                .filter(|&&t| t >= from && t < end_ms)
                .count() as f64,
            IncidentKind::Merchant { daily, .. } => span(daily),
            IncidentKind::Takeover { rate } => span(rate),
            IncidentKind::Testing { n, .. } => {
                if self.start >= from {
                    n as f64 + 1.0
                } else {
                    0.0
                }
            }
        }
    }
}

/// Everything that changes while days are generated.
struct DayGen {
    rng: ChaCha8Rng,
    cards: Vec<CardState>,
    /// Per merchant: compromised window [from, until).
    compromised: Vec<(i64, i64)>,
    incidents: Vec<Incident>,
    realised: [f64; 4],
    cum_target: [f64; 4],
    hour_cdf: [f64; 24],
    seq: u64,
    end_ms: i64,
}

impl DayGen {
    fn time_of_day(&mut self, day_start: i64) -> i64 {
        let total = self.hour_cdf[23];
        let u = self.rng.gen::<f64>() * total;
        let h = self.hour_cdf.partition_point(|&c| c <= u).min(23) as i64;
        day_start + h * HOUR_MS + self.rng.gen_range(0..HOUR_MS)
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        world: &World,
        buf: &mut Vec<SimTransaction>,
        card: u32,
        merchant: u32,
        ts: i64,
        amount: f64,
        fraud: Option<FraudPattern>,
    ) {
        if ts >= self.end_ms {
            return;
        }
        let m = &world.merchants[merchant as usize];
        let c = &COUNTRIES[m.country as usize];
        if let Some(p) = fraud {
            self.realised[p.index()] += 1.0;
        }
        buf.push(SimTransaction {
            tx_id: self.seq,
            ts_ms: ts,
            card,
            merchant,
            amount: cents(amount),
            currency: c.currency,
            mcc: m.mcc,
            country: c.code,
            channel: m.channel,
            location: if m.channel == Channel::Ecom {
                None
            } else {
                Some((m.lat, m.lon))
            },
            fraud,
        });
        self.seq += 1;
    }

    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        let z: f64 = self.rng.sample(StandardNormal);
        median * (sigma * z).exp()
    }

    fn cash(&mut self, median: f64) -> f64 {
        let x = self.lognormal(median, 0.5);
        ((x / 10.0).round() * 10.0).max(20.0)
    }

    fn random_ecom(&mut self, world: &World, risky: bool) -> u32 {
        let list = if risky && !world.ecom_risky.is_empty() {
            &world.ecom_risky
        } else {
            &world.ecom
        };
        list[self.rng.gen_range(0..list.len())]
    }

    fn genuine_day(
        &mut self,
        world: &World,
        buf: &mut Vec<SimTransaction>,
        day_start: i64,
        dow: f64,
    ) {
        for c in 0..world.cards.len() {
            let card = &world.cards[c];
            // Trips abroad.
            if self.cards[c].trip_until <= day_start && self.rng.gen::<f64>() < TRIP_PROB_PER_DAY {
                let from = day_start + self.rng.gen_range(0..DAY_MS);
                let len = self.rng.gen_range(2 * DAY_MS..=6 * DAY_MS);
                let mut dest = self.rng.gen_range(0..NC - 1);
                if dest >= card.country as usize {
                    dest += 1;
                }
                let (lat, lon) = city_point(&mut self.rng, &COUNTRIES[dest]);
                let st = &mut self.cards[c];
                st.trip_from = from;
                st.trip_until = from + len;
                st.trip_country = dest as u8;
                st.trip_lat = lat;
                st.trip_lon = lon;
            }
            let n = poisson(&mut self.rng, card.rate * dow);
            for _ in 0..n {
                let ts = self.time_of_day(day_start);
                let st = self.cards[c];
                if ts >= st.ato_from && ts < st.ato_until {
                    continue; // the fraudster has locked the owner out
                }
                let u: f64 = self.rng.gen();
                let merchant = if ts >= st.trip_from && ts < st.trip_until {
                    if u < 0.75 {
                        let list = &world.phys[st.trip_country as usize];
                        world.pick_near(&mut self.rng, list, st.trip_lat, st.trip_lon, 6)
                    } else {
                        self.random_ecom(world, false)
                    }
                } else if u < USUAL_SHARE || (card.pool_len == 0 && u < USUAL_SHARE + POOL_SHARE) {
                    world.links[(card.usual_start + self.rng.gen_range(0..card.usual_len)) as usize]
                } else if u < USUAL_SHARE + POOL_SHARE {
                    world.links[(card.pool_start + self.rng.gen_range(0..card.pool_len)) as usize]
                } else {
                    self.random_ecom(world, false)
                };
                let m = &world.merchants[merchant as usize];
                let amount = if m.channel == Channel::Atm {
                    self.cash(card.median * m.amount_factor)
                } else {
                    let mut a = self.lognormal(card.median * m.amount_factor, card.sigma);
                    if self.rng.gen::<f64>() < BIG_TICKET_SHARE {
                        a *= self.rng.gen_range(3.0..10.0);
                    }
                    a
                };
                let (cf, cu) = self.compromised[merchant as usize];
                let fraud = (ts >= cf && ts < cu).then_some(FraudPattern::CompromisedMerchant);
                self.push(world, buf, c as u32, merchant, ts, amount, fraud);
            }
        }
    }

    fn free_card(&mut self, world: &World, at: i64) -> Option<u32> {
        for _ in 0..32 {
            let c = self.rng.gen_range(0..world.cards.len());
            if self.cards[c].busy_until <= at {
                return Some(c as u32);
            }
        }
        None
    }

    /// Plans a new incident of `pattern` starting on the day at `day_start`; returns it with
    /// its expected number of fraudulent transactions within the run.
    fn plan(
        &mut self,
        world: &World,
        pattern: FraudPattern,
        day_start: i64,
        first_day: bool,
        daily_target: f64,
    ) -> Option<(Incident, f64)> {
        let start = day_start + self.rng.gen_range(0..DAY_MS);
        // On the first day, multi-day incidents look as if they had started earlier.
        let backdate = if first_day {
            self.rng.gen_range(0.05..1.0)
        } else {
            1.0
        };
        let inc = match pattern {
            FraudPattern::StolenCard => {
                let card = self.free_card(world, start)?;
                let home = &world.cards[card as usize];
                let n = self.rng.gen_range(2..=8u8);
                let dur = self.rng.gen_range(DAY_MS..=3 * DAY_MS);
                let mut times = [i64::MAX; 8];
                times[0] = start;
                for t in times.iter_mut().take(n as usize).skip(1) {
                    *t = start + self.rng.gen_range(0..dur);
                }
                times[..n as usize].sort_unstable();
                // Far from home: another country, or a distant city of the home country.
                let mut target = None;
                if self.rng.gen::<f64>() < 0.4 {
                    let cdef = &COUNTRIES[home.country as usize];
                    for _ in 0..6 {
                        let (lat, lon) = city_point(&mut self.rng, cdef);
                        if dist_km(lat, lon, home.lat, home.lon) > 150.0 {
                            target = Some((home.country, lat, lon));
                            break;
                        }
                    }
                }
                let (country, lat, lon) = match target {
                    Some(t) => t,
                    None => {
                        let mut c = self.rng.gen_range(0..NC - 1);
                        if c >= home.country as usize {
                            c += 1;
                        }
                        let (lat, lon) = city_point(&mut self.rng, &COUNTRIES[c]);
                        (c as u8, lat, lon)
                    }
                };
                Incident {
                    card,
                    start,
                    end: times[n as usize - 1] + 1,
                    kind: IncidentKind::Stolen {
                        n,
                        times,
                        country,
                        lat,
                        lon,
                    },
                }
            }
            FraudPattern::CompromisedMerchant => {
                let cap = daily_target.max(4.0);
                let mut fallback = None;
                let mut chosen = None;
                for _ in 0..48 {
                    let m = self.rng.gen_range(0..world.merchants.len());
                    if world.merchants[m].channel != Channel::Pos || self.compromised[m].1 > start {
                        continue;
                    }
                    let d = world.merchant_daily[m];
                    if (2.0..=cap).contains(&d) {
                        chosen = Some(m);
                        break;
                    }
                    if d > 0.0 && fallback.is_none() {
                        fallback = Some(m);
                    }
                }
                let merchant = chosen.or(fallback)? as u32;
                let dur = self.rng.gen_range(7 * DAY_MS..=21 * DAY_MS) as f64 * backdate;
                Incident {
                    card: u32::MAX,
                    start,
                    end: start + dur as i64,
                    kind: IncidentKind::Merchant {
                        merchant,
                        daily: world.merchant_daily[merchant as usize],
                    },
                }
            }
            FraudPattern::AccountTakeover => {
                let card = self.free_card(world, start)?;
                let rate = (3.0 * world.cards[card as usize].rate).max(4.0);
                let dur = self.rng.gen_range(2 * DAY_MS..=7 * DAY_MS) as f64 * backdate;
                Incident {
                    card,
                    start,
                    end: start + dur as i64,
                    kind: IncidentKind::Takeover { rate },
                }
            }
            FraudPattern::CardTesting => {
                let start = day_start + self.rng.gen_range(0..DAY_MS - 75 * MINUTE_MS);
                let card = self.free_card(world, start)?;
                let n = self.rng.gen_range(5..=20u8);
                let window_ms = self.rng.gen_range(2 * MINUTE_MS..=10 * MINUTE_MS);
                let large_at = start + window_ms + self.rng.gen_range(MINUTE_MS..=60 * MINUTE_MS);
                Incident {
                    card,
                    start,
                    end: large_at + 1,
                    kind: IncidentKind::Testing {
                        n,
                        window_ms,
                        large_at,
                    },
                }
            }
        };
        let vol = inc.expected_from(i64::MIN, self.end_ms);
        Some((inc, vol))
    }

    fn commit(&mut self, inc: Incident) {
        match inc.kind {
            IncidentKind::Merchant { merchant, .. } => {
                self.compromised[merchant as usize] = (inc.start, inc.end);
            }
            IncidentKind::Takeover { .. } => {
                let st = &mut self.cards[inc.card as usize];
                st.ato_from = inc.start;
                st.ato_until = inc.end;
                st.busy_until = inc.end;
            }
            _ => self.cards[inc.card as usize].busy_until = inc.end,
        }
        self.incidents.push(inc);
    }

    /// Starts incidents so that each pattern's realised + committed volume tracks its target.
    fn start_incidents(
        &mut self,
        world: &World,
        cfg: &SimConfig,
        day: u32,
        day_start: i64,
        dow: f64,
    ) {
        let (mult, mix) = cfg.drift_at(day);
        let volume = world.total_rate * dow;
        let days_after = (cfg.days - day - 1) as f64;
        for p in FraudPattern::ALL {
            let i = p.index();
            let target = cfg.fraud_rate * mult * mix[i] * volume;
            self.cum_target[i] += target;
            if target <= 0.0 {
                continue;
            }
            let threshold = self.cum_target[i] + LOOKAHEAD_DAYS[i].min(days_after) * target;
            let mut committed = self.realised[i]
                + self
                    .incidents
                    .iter()
                    .filter(|x| x.pattern() == p)
                    .map(|x| x.expected_from(day_start, self.end_ms))
                    .sum::<f64>();
            while committed < threshold {
                let Some((inc, vol)) = self.plan(world, p, day_start, day == 0, target) else {
                    break;
                };
                if committed + 0.5 * vol > threshold {
                    break;
                }
                self.commit(inc);
                committed += vol;
            }
        }
    }

    fn fraud_day(&mut self, world: &World, buf: &mut Vec<SimTransaction>, day_start: i64) {
        let day_end = day_start + DAY_MS;
        for k in 0..self.incidents.len() {
            let inc = self.incidents[k];
            let card = &world.cards[inc.card.min(world.cards.len() as u32 - 1) as usize];
            match inc.kind {
                IncidentKind::Stolen {
                    n,
                    times,
                    country,
                    lat,
                    lon,
                } => {
                    for &ts in times[..n as usize]
                        .iter()
                        .filter(|&&t| t >= day_start && t < day_end)
                    {
                        let u: f64 = self.rng.gen();
                        let c = country as usize;
                        let merchant = if u < 0.15 && !world.atm[c].is_empty() {
                            world.pick_near(&mut self.rng, &world.atm[c], lat, lon, 4)
                        } else if u < 0.75 && !world.risky[c].is_empty() {
                            world.pick_near(&mut self.rng, &world.risky[c], lat, lon, 4)
                        } else {
                            world.pick_near(&mut self.rng, &world.pos[c], lat, lon, 6)
                        };
                        let m = &world.merchants[merchant as usize];
                        let amount = if m.channel == Channel::Atm {
                            ((card.median * self.rng.gen_range(3.0..10.0) / 10.0).round() * 10.0)
                                .max(50.0)
                        } else {
                            let k = self.rng.gen_range(3.0..10.0);
                            self.lognormal(card.median * k, 0.2)
                        };
                        let p = Some(FraudPattern::StolenCard);
                        self.push(world, buf, inc.card, merchant, ts, amount, p);
                    }
                }
                IncidentKind::Merchant { .. } => {} // marked during genuine generation
                IncidentKind::Takeover { rate } => {
                    let a = inc.start.max(day_start);
                    let b = inc.end.min(day_end);
                    if b <= a {
                        continue;
                    }
                    let k = poisson(&mut self.rng, rate * (b - a) as f64 / DAY_MS as f64);
                    for _ in 0..k {
                        let ts = self.rng.gen_range(a..b);
                        let u: f64 = self.rng.gen();
                        let merchant = if u < 0.65 {
                            let risky = self.rng.gen::<f64>() < 0.4;
                            self.random_ecom(world, risky)
                        } else if u < 0.9 {
                            let list = &world.pos[card.country as usize];
                            list[self.rng.gen_range(0..list.len())]
                        } else {
                            world.links[(card.usual_start + self.rng.gen_range(0..card.usual_len))
                                as usize]
                        };
                        let k = self.rng.gen_range(3.0..6.0);
                        let amount = self.lognormal(card.median * k, 0.25);
                        let p = Some(FraudPattern::AccountTakeover);
                        self.push(world, buf, inc.card, merchant, ts, amount, p);
                    }
                }
                IncidentKind::Testing {
                    n,
                    window_ms,
                    large_at,
                } => {
                    if inc.start < day_start || inc.start >= day_end {
                        continue;
                    }
                    let mut used = [u32::MAX; 20];
                    for j in 0..n as usize {
                        let ts = inc.start + self.rng.gen_range(0..window_ms);
                        let mut merchant = 0;
                        for _ in 0..8 {
                            merchant = if self.rng.gen::<f64>() < 0.85 {
                                self.random_ecom(world, false)
                            } else {
                                let list = &world.pos[self.rng.gen_range(0..NC)];
                                list[self.rng.gen_range(0..list.len())]
                            };
                            if !used[..j].contains(&merchant) {
                                break;
                            }
                        }
                        used[j] = merchant;
                        let amount = self.rng.gen_range(0.5..=3.0);
                        let p = Some(FraudPattern::CardTesting);
                        self.push(world, buf, inc.card, merchant, ts, amount, p);
                    }
                    let risky = self.rng.gen::<f64>() < 0.7;
                    let merchant = self.random_ecom(world, risky);
                    let amount = self.rng.gen_range(200.0..2000.0);
                    let p = Some(FraudPattern::CardTesting);
                    self.push(world, buf, inc.card, merchant, large_at, amount, p);
                }
            }
        }
        self.incidents.retain(|x| x.end > day_end);
    }
}

/// Seeded, deterministic, day-by-day generator of transactions and delayed labels.
///
/// Iterate it to get the event stream; see the crate docs for the ordering contract.
pub struct Simulator {
    cfg: SimConfig,
    end_ms: i64,
    world: World,
    gen: DayGen,
    labels: LabelQueue,
    day_buf: Vec<SimTransaction>,
    cursor: usize,
    next_day: u32,
    next_tx_id: u64,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("cfg", &self.cfg)
            .field("next_day", &self.next_day)
            .field("next_tx_id", &self.next_tx_id)
            .field("pending_labels", &self.labels.pending())
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Validates `cfg` (see [`SimConfig::validate`]) and builds the world.
    pub fn new(cfg: SimConfig) -> Result<Self, Vec<String>> {
        cfg.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut label_rng = rng.clone();
        label_rng.set_stream(1);
        let world = World::build(&mut rng, cfg.cards, cfg.merchants);
        let end_ms = cfg.start_ms + cfg.days as i64 * DAY_MS;
        let mut hour_cdf = [0.0; 24];
        let mut acc = 0.0;
        for (c, w) in hour_cdf.iter_mut().zip(HOUR_WEIGHTS) {
            acc += w;
            *c = acc;
        }
        let card_state = CardState {
            busy_until: i64::MIN,
            ato_from: i64::MIN,
            ato_until: i64::MIN,
            trip_from: i64::MIN,
            trip_until: i64::MIN,
            trip_country: 0,
            trip_lat: 0.0,
            trip_lon: 0.0,
        };
        let gen = DayGen {
            rng,
            cards: vec![card_state; cfg.cards as usize],
            compromised: vec![(i64::MIN, i64::MIN); cfg.merchants as usize],
            incidents: Vec::new(),
            realised: [0.0; 4],
            cum_target: [0.0; 4],
            hour_cdf,
            seq: 0,
            end_ms,
        };
        let expected_day = (world.total_rate * 1.1) as usize + 64;
        Ok(Simulator {
            end_ms,
            world,
            gen,
            labels: LabelQueue::new(&cfg.labels, label_rng),
            day_buf: Vec::with_capacity(expected_day),
            cursor: 0,
            next_day: 0,
            next_tx_id: 1,
            cfg,
        })
    }

    /// The configuration this simulator runs.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Share of simulated days generated so far, in 0..=1.
    pub fn progress(&self) -> f64 {
        self.next_day as f64 / self.cfg.days as f64
    }

    /// End of the simulated period: `start_ms + days * DAY_MS` (labels may come later).
    pub fn end_ms(&self) -> i64 {
        self.end_ms
    }

    /// ISO-2 country of a merchant, or `None` if out of range.
    pub fn merchant_country(&self, merchant: u32) -> Option<&'static str> {
        let m = self.world.merchants.get(merchant as usize)?;
        Some(COUNTRIES[m.country as usize].code)
    }

    /// Home (lat, lon) and ISO-2 country of a card holder, or `None` if out of range.
    pub fn card_home(&self, card: u32) -> Option<((f64, f64), &'static str)> {
        let c = self.world.cards.get(card as usize)?;
        Some(((c.lat, c.lon), COUNTRIES[c.country as usize].code))
    }

    fn generate_day(&mut self) {
        let day = self.next_day;
        let day_start = self.cfg.start_ms + day as i64 * DAY_MS;
        let dow = dow_factor(day_start);
        self.day_buf.clear();
        self.cursor = 0;
        self.gen.seq = 0;
        self.gen
            .start_incidents(&self.world, &self.cfg, day, day_start, dow);
        self.gen
            .genuine_day(&self.world, &mut self.day_buf, day_start, dow);
        self.gen
            .fraud_day(&self.world, &mut self.day_buf, day_start);
        // tx_id holds the generation order here: a stable, deterministic tie-break.
        self.day_buf.sort_unstable_by_key(|t| (t.ts_ms, t.tx_id));
        for t in &mut self.day_buf {
            t.tx_id = self.next_tx_id;
            self.next_tx_id += 1;
        }
        self.next_day += 1;
    }
}

impl Iterator for Simulator {
    type Item = SimEvent;

    fn next(&mut self) -> Option<SimEvent> {
        loop {
            if let Some(tx) = self.day_buf.get(self.cursor).copied() {
                if let Some(l) = self.labels.pop(tx.ts_ms) {
                    return Some(SimEvent::Label(l));
                }
                self.cursor += 1;
                self.labels.schedule(&tx);
                return Some(SimEvent::Transaction(tx));
            }
            if self.next_day < self.cfg.days {
                self.generate_day();
                continue;
            }
            return self.labels.pop(i64::MAX).map(SimEvent::Label);
        }
    }
}

impl std::iter::FusedIterator for Simulator {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_of_week() {
        // 2026-01-03 is a Saturday, 2026-01-05 a Monday.
        assert_eq!(dow_factor(DEFAULT_START_MS + 2 * DAY_MS), WEEKEND_FACTOR);
        assert_eq!(dow_factor(DEFAULT_START_MS + 4 * DAY_MS), 1.0);
    }

    #[test]
    fn poisson_mean() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for lambda in [0.7, 3.0, 45.0] {
            let n = 20_000;
            let s: u64 = (0..n).map(|_| poisson(&mut rng, lambda) as u64).sum();
            let mean = s as f64 / n as f64;
            assert!(
                (mean - lambda).abs() < 0.05 * lambda + 0.05,
                "{lambda}: {mean}"
            );
        }
    }

    #[test]
    fn drift_interpolates() {
        let cfg = SimConfig::default();
        let (m0, mix0) = cfg.drift_at(0);
        let (m1, mix1) = cfg.drift_at(cfg.days - 1);
        assert!((m0 - 1.0).abs() < 1e-12 && (m1 - 1.5).abs() < 1e-12);
        assert!((mix0[0] - 0.3).abs() < 1e-12 && (mix1[0] - 0.15).abs() < 1e-12);
        let sudden = SimConfig {
            drift: DriftConfig {
                mode: DriftMode::Sudden { at_day: 10 },
                ..DriftConfig::default()
            },
            ..SimConfig::default()
        };
        assert_eq!(sudden.drift_at(9).0, 1.0);
        assert_eq!(sudden.drift_at(10).0, 1.5);
    }
}
