//! The `categories` family: merchant-category payments modelled on BankSim
//! (Lopez-Rojas & Axelsson, "BankSim: a bank payments simulator for fraud
//! detection research", 2014), structurally unlike the `cards` family.
//!
//! - One country (ES, EUR), customers in age groups with their own taste
//!   over BankSim's 15 merchant categories; a customer shops at a few
//!   favourite merchants per category and now and then at any merchant of
//!   it. No trips, no ATMs, no card-testing bursts.
//! - Amounts follow the category (transport a few euros, travel thousands),
//!   the merchant and the customer's wealth.
//! - Three fraud mechanisms, none of which the `cards` features were written
//!   for ([`FraudPattern::CATEGORIES`]):
//!   - *high-value category*: stolen credentials used card-not-present for
//!     2 to 6 purchases over a few days in the categories fraudsters favour
//!     (travel, leisure, sports and toys, tech, hotels, home), at 1.5 to 4
//!     times the category's usual amount; the owner keeps using the card;
//!   - *fraud-ring merchant*: a merchant in an everyday category colludes
//!     for 10 to 30 days; cards of the ring make ordinary-looking purchases
//!     there while its genuine trade goes on;
//!   - *micro drain*: a small recurring charge (1 to 15 EUR) at one
//!     unfamiliar subscription-like merchant every 1 to 3 days for 1 to 4
//!     weeks.
//! - Labels come in batches (`labels::LabelQueue` in batched mode): each
//!   fraud is reported after `chargeback_median_days` × U(0.25, 1.75), at
//!   the next daily batch (02:00 UTC), or the next full hour when the delay
//!   is under a day.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::day::{cents, poisson};
use crate::{Channel, FraudPattern, SimConfig, SimTransaction, DAY_MS, HOUR_MS};

/// A merchant category: BankSim's name, an MCC, the median amount (EUR),
/// its share of genuine purchases, and how it is paid.
struct Category {
    name: &'static str,
    mcc: u16,
    median: f64,
    share: f64,
    channel: Channel,
    /// Fraudsters favour it (high-value category fraud).
    risky: bool,
    /// Subscription-like: where a micro drain charges.
    recurring: bool,
}

const CATEGORIES: [Category; 15] = [
    cat(
        "es_transportation",
        4111,
        22.0,
        0.30,
        Channel::Pos,
        false,
        false,
    ),
    cat("es_food", 5411, 35.0, 0.16, Channel::Pos, false, false),
    cat("es_health", 8099, 70.0, 0.07, Channel::Pos, false, false),
    cat(
        "es_wellnessandbeauty",
        7298,
        45.0,
        0.06,
        Channel::Pos,
        false,
        false,
    ),
    cat("es_fashion", 5651, 55.0, 0.06, Channel::Pos, false, false),
    cat(
        "es_barsandrestaurants",
        5812,
        30.0,
        0.09,
        Channel::Pos,
        false,
        false,
    ),
    cat("es_hyper", 5311, 40.0, 0.07, Channel::Pos, false, false),
    cat(
        "es_sportsandtoys",
        5941,
        120.0,
        0.03,
        Channel::Ecom,
        true,
        false,
    ),
    cat("es_tech", 5732, 110.0, 0.03, Channel::Ecom, true, false),
    cat("es_home", 5712, 130.0, 0.03, Channel::Pos, true, false),
    cat(
        "es_hotelservices",
        7011,
        160.0,
        0.015,
        Channel::Ecom,
        true,
        false,
    ),
    cat(
        "es_otherservices",
        7399,
        60.0,
        0.025,
        Channel::Ecom,
        false,
        true,
    ),
    cat("es_contents", 5815, 15.0, 0.04, Channel::Ecom, false, true),
    cat("es_travel", 4722, 600.0, 0.006, Channel::Ecom, true, false),
    cat("es_leisure", 7999, 180.0, 0.009, Channel::Ecom, true, false),
];

const fn cat(
    name: &'static str,
    mcc: u16,
    median: f64,
    share: f64,
    channel: Channel,
    risky: bool,
    recurring: bool,
) -> Category {
    Category {
        name,
        mcc,
        median,
        share,
        channel,
        risky,
        recurring,
    }
}

/// BankSim's category names, in generation order.
pub fn category_names() -> [&'static str; 15] {
    CATEGORIES.map(|c| c.name)
}

/// Shares of fraudulent transactions per mechanism
/// ([`FraudPattern::CATEGORIES`] order).
const MECHANISM_SHARE: [f64; 3] = [0.5, 0.3, 0.2];
/// Mean transactions of one incident of each mechanism (to turn a target
/// fraud volume into incidents).
const MECHANISM_SIZE: [f64; 3] = [4.0, 18.0, 9.0];
/// Cities of the country (lat, lon, weight): customers live near one,
/// card-present merchants stand near one.
const CITIES: [(f64, f64, f64); 5] = [
    (40.42, -3.70, 3.0),
    (41.39, 2.17, 2.5),
    (39.47, -0.38, 1.2),
    (37.39, -5.98, 1.0),
    (43.26, -2.93, 0.8),
];
/// Favourite merchants a customer keeps per category.
const FAVOURITES: usize = 3;
/// Share of a customer's purchases at a favourite merchant.
const FAVOURITE_SHARE: f64 = 0.8;

/// Relative hourly intensity: a day of shopping, quiet nights.
const HOUR_WEIGHTS: [f64; 24] = [
    0.1, 0.05, 0.03, 0.03, 0.05, 0.1, 0.3, 0.8, 1.1, 1.2, 1.3, 1.5, 1.7, 1.5, 1.3, 1.3, 1.4, 1.6,
    1.8, 1.7, 1.3, 0.9, 0.5, 0.25,
];

struct Customer {
    city: u8,
    /// Purchases per day.
    rate: f64,
    /// Multiplies every amount (age group and wealth).
    wealth: f64,
    /// Cumulative taste over categories.
    taste_cdf: [f64; 15],
    /// Per category, its favourite merchants (indices into `merchants`).
    favourites: [[u32; FAVOURITES]; 15],
}

struct Merchant {
    category: u8,
    scale: f64,
    lat: f64,
    lon: f64,
}

/// A running incident of one of the three mechanisms.
struct Incident {
    pattern: FraudPattern,
    card: u32,
    merchant: u32,
    /// Next transaction time; the incident ends at `until`.
    next: i64,
    until: i64,
    /// Transactions left (unbounded for a micro drain).
    left: u32,
    /// The micro drain's charge (a high-value purchase draws its own).
    amount: f64,
}

/// The world and day generator of the `categories` family.
pub(crate) struct CategoryGen {
    rng: ChaCha8Rng,
    customers: Vec<Customer>,
    merchants: Vec<Merchant>,
    /// Per category, its merchants.
    by_category: Vec<Vec<u32>>,
    hour_cdf: [f64; 24],
    incidents: Vec<Incident>,
    /// Per merchant: the end of its fraud-ring window, and the ring's cards.
    rings: Vec<(u32, i64, Vec<u32>)>,
    fraud_rate: f64,
    /// Expected genuine purchases per day (for the fraud volume).
    genuine_per_day: f64,
    seq: u64,
    end_ms: i64,
}

impl CategoryGen {
    /// Build the customers and merchants of `cfg` from `rng`.
    pub(crate) fn new(mut rng: ChaCha8Rng, cfg: &SimConfig, end_ms: i64) -> Self {
        let n_merch = cfg.merchants.max(CATEGORIES.len() as u32);
        let share_sum: f64 = CATEGORIES.iter().map(|c| c.share).sum();
        // Every category has at least one merchant, the rest by share.
        let mut merchants = Vec::with_capacity(n_merch as usize);
        let mut by_category = vec![Vec::new(); CATEGORIES.len()];
        for i in 0..n_merch {
            let k = if (i as usize) < CATEGORIES.len() {
                i as usize
            } else {
                pick(&mut rng, CATEGORIES.iter().map(|c| c.share / share_sum))
            };
            let city = pick_city(&mut rng);
            let (lat, lon) = near(&mut rng, city, 0.15);
            by_category[k].push(i);
            merchants.push(Merchant {
                category: k as u8,
                scale: lognormal(&mut rng, 1.0, 0.3),
                lat,
                lon,
            });
        }
        let mut customers = Vec::with_capacity(cfg.cards as usize);
        let mut genuine_per_day = 0.0;
        for _ in 0..cfg.cards {
            // Age groups 0..=6 (BankSim's), the young spend less.
            let age = rng.gen_range(0..7u32);
            let wealth = lognormal(&mut rng, 0.7 + 0.1 * age as f64, 0.35);
            let rate = lognormal(&mut rng, 1.0, 0.5).min(8.0);
            let mut taste_cdf = [0.0; 15];
            let mut acc = 0.0;
            for (k, c) in CATEGORIES.iter().enumerate() {
                // Gamma(1)-like personal taste around the category's share.
                let t: f64 = -(1.0 - rng.gen::<f64>()).ln();
                acc += c.share * t;
                taste_cdf[k] = acc;
            }
            let mut favourites = [[0u32; FAVOURITES]; 15];
            for (k, f) in favourites.iter_mut().enumerate() {
                let list = &by_category[k];
                for slot in f.iter_mut() {
                    *slot = list[rng.gen_range(0..list.len())];
                }
            }
            genuine_per_day += rate;
            customers.push(Customer {
                city: pick_city(&mut rng),
                rate,
                wealth,
                taste_cdf,
                favourites,
            });
        }
        let mut hour_cdf = [0.0; 24];
        let mut acc = 0.0;
        for (c, w) in hour_cdf.iter_mut().zip(HOUR_WEIGHTS) {
            acc += w;
            *c = acc;
        }
        CategoryGen {
            rng,
            customers,
            merchants,
            by_category,
            hour_cdf,
            incidents: Vec::new(),
            rings: Vec::new(),
            fraud_rate: cfg.fraud_rate,
            genuine_per_day,
            seq: 0,
            end_ms,
        }
    }

    /// Home (lat, lon) of a customer.
    pub(crate) fn home(&self, card: u32) -> Option<(f64, f64)> {
        let c = self.customers.get(card as usize)?;
        let (lat, lon, _) = CITIES[c.city as usize];
        Some((lat, lon))
    }

    /// Append the day at `day_start`'s transactions to `buf` (tx_id = the
    /// generation order; the simulator sorts and numbers them).
    pub(crate) fn day(&mut self, buf: &mut Vec<SimTransaction>, day_start: i64) {
        self.seq = 0;
        self.start_incidents(day_start);
        for c in 0..self.customers.len() {
            let n = poisson(&mut self.rng, self.customers[c].rate);
            for _ in 0..n {
                let ts = self.time_of_day(day_start);
                let cu = &self.customers[c];
                let u = self.rng.gen::<f64>() * cu.taste_cdf[14];
                let k = cu.taste_cdf.partition_point(|&x| x <= u).min(14);
                let merchant = if self.rng.gen::<f64>() < FAVOURITE_SHARE {
                    cu.favourites[k][self.rng.gen_range(0..FAVOURITES)]
                } else {
                    let list = &self.by_category[k];
                    list[self.rng.gen_range(0..list.len())]
                };
                let m = &self.merchants[merchant as usize];
                let amount = lognormal(
                    &mut self.rng,
                    CATEGORIES[k].median * m.scale * cu.wealth,
                    0.6,
                );
                self.push(buf, c as u32, merchant, ts, amount, None);
            }
        }
        self.ring_day(buf, day_start);
        self.incident_day(buf, day_start);
    }

    /// Start the day's incidents so that each mechanism's share of the
    /// fraud volume matches `fraud_rate` on average.
    fn start_incidents(&mut self, day_start: i64) {
        if self.fraud_rate <= 0.0 || self.customers.is_empty() {
            return;
        }
        let frauds = self.genuine_per_day * self.fraud_rate / (1.0 - self.fraud_rate).max(1e-9);
        for (i, pattern) in FraudPattern::CATEGORIES.into_iter().enumerate() {
            let lambda = frauds * MECHANISM_SHARE[i] / MECHANISM_SIZE[i];
            for _ in 0..poisson(&mut self.rng, lambda) {
                let card = self.rng.gen_range(0..self.customers.len() as u32);
                let start = day_start + self.rng.gen_range(0..DAY_MS);
                match pattern {
                    FraudPattern::HighValueCategory => {
                        let merchant = self.merchant_where(|c| c.risky);
                        let days = self.rng.gen_range(1..=5);
                        self.incidents.push(Incident {
                            pattern,
                            card,
                            merchant,
                            next: start,
                            until: start + days * DAY_MS,
                            left: self.rng.gen_range(2..=6),
                            amount: 0.0,
                        });
                    }
                    FraudPattern::FraudRingMerchant => {
                        let merchant = self.merchant_where(|c| !c.risky && !c.recurring);
                        if self.rings.iter().any(|r| r.0 == merchant) {
                            continue;
                        }
                        let days = self.rng.gen_range(10..=30);
                        let cards = (0..self.rng.gen_range(2..=4))
                            .map(|_| self.rng.gen_range(0..self.customers.len() as u32))
                            .collect();
                        self.rings.push((merchant, start + days * DAY_MS, cards));
                    }
                    _ => {
                        let merchant = self.merchant_where(|c| c.recurring);
                        let days = self.rng.gen_range(7..=28);
                        let amount = self.rng.gen_range(1.0..15.0);
                        self.incidents.push(Incident {
                            pattern: FraudPattern::MicroDrain,
                            card,
                            merchant,
                            next: start,
                            until: start + days * DAY_MS,
                            left: u32::MAX,
                            amount,
                        });
                    }
                }
            }
        }
    }

    /// A merchant of a category drawn uniformly among those `wanted`.
    fn merchant_where(&mut self, wanted: fn(&Category) -> bool) -> u32 {
        let n = CATEGORIES.iter().filter(|c| wanted(c)).count();
        let j = self.rng.gen_range(0..n);
        let k = (0..CATEGORIES.len())
            .filter(|&k| wanted(&CATEGORIES[k]))
            .nth(j)
            .expect("j < n");
        let list = &self.by_category[k];
        list[self.rng.gen_range(0..list.len())]
    }

    /// The day's purchases of every running fraud ring: each ring card
    /// buys there with probability 0.3 a day, an ordinary amount.
    fn ring_day(&mut self, buf: &mut Vec<SimTransaction>, day_start: i64) {
        let rings = std::mem::take(&mut self.rings);
        for (merchant, until, cards) in &rings {
            let m = &self.merchants[*merchant as usize];
            let median = CATEGORIES[m.category as usize].median * m.scale;
            for &card in cards {
                if self.rng.gen::<f64>() < 0.3 {
                    let ts = self.time_of_day(day_start);
                    if ts < *until {
                        let amount = lognormal(&mut self.rng, median * 1.5, 0.5);
                        let p = Some(FraudPattern::FraudRingMerchant);
                        self.push(buf, card, *merchant, ts, amount, p);
                    }
                }
            }
        }
        self.rings = rings;
        self.rings.retain(|r| r.1 > day_start + DAY_MS);
    }

    /// The day's transactions of the high-value and micro-drain incidents.
    fn incident_day(&mut self, buf: &mut Vec<SimTransaction>, day_start: i64) {
        let day_end = day_start + DAY_MS;
        let mut incidents = std::mem::take(&mut self.incidents);
        for inc in &mut incidents {
            while inc.next < day_end && inc.next < inc.until && inc.left > 0 {
                let amount = match inc.pattern {
                    FraudPattern::HighValueCategory => {
                        // The high end of the merchant's usual amounts.
                        let m = &self.merchants[inc.merchant as usize];
                        let median = CATEGORIES[m.category as usize].median * m.scale;
                        let factor = self.rng.gen_range(1.5..4.0);
                        lognormal(&mut self.rng, median * factor, 0.4)
                    }
                    _ => inc.amount,
                };
                self.push(
                    buf,
                    inc.card,
                    inc.merchant,
                    inc.next,
                    amount,
                    Some(inc.pattern),
                );
                inc.left = inc.left.saturating_sub(1);
                inc.next += match inc.pattern {
                    FraudPattern::HighValueCategory => self.rng.gen_range(HOUR_MS..DAY_MS),
                    _ => self.rng.gen_range(1..=3) * DAY_MS + self.rng.gen_range(-HOUR_MS..HOUR_MS),
                };
            }
        }
        incidents.retain(|i| i.next < i.until && i.left > 0);
        self.incidents = incidents;
    }

    fn time_of_day(&mut self, day_start: i64) -> i64 {
        let u = self.rng.gen::<f64>() * self.hour_cdf[23];
        let h = self.hour_cdf.partition_point(|&c| c <= u).min(23) as i64;
        day_start + h * HOUR_MS + self.rng.gen_range(0..HOUR_MS)
    }

    fn push(
        &mut self,
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
        let m = &self.merchants[merchant as usize];
        let c = &CATEGORIES[m.category as usize];
        buf.push(SimTransaction {
            tx_id: self.seq,
            ts_ms: ts,
            card,
            merchant,
            amount: cents(amount),
            currency: "EUR",
            mcc: c.mcc,
            country: "ES",
            channel: c.channel,
            location: (c.channel == Channel::Pos).then_some((m.lat, m.lon)),
            fraud,
        });
        self.seq += 1;
    }
}

/// A lognormal draw with the given median and sigma.
fn lognormal(rng: &mut ChaCha8Rng, median: f64, sigma: f64) -> f64 {
    let z: f64 = rng.sample(StandardNormal);
    median * (sigma * z).exp()
}

/// An index drawn with the given weights (summing to about 1).
fn pick(rng: &mut ChaCha8Rng, weights: impl Iterator<Item = f64>) -> usize {
    let u: f64 = rng.gen();
    let mut acc = 0.0;
    let mut last = 0;
    for (i, w) in weights.enumerate() {
        acc += w;
        last = i;
        if u < acc {
            return i;
        }
    }
    last
}

fn pick_city(rng: &mut ChaCha8Rng) -> u8 {
    let total: f64 = CITIES.iter().map(|c| c.2).sum();
    pick(rng, CITIES.iter().map(|c| c.2 / total)) as u8
}

/// A point within about `spread` degrees of city `city`.
fn near(rng: &mut ChaCha8Rng, city: u8, spread: f64) -> (f64, f64) {
    let (lat, lon, _) = CITIES[city as usize];
    let a: f64 = rng.sample(StandardNormal);
    let b: f64 = rng.sample(StandardNormal);
    (lat + spread * a, lon + spread * b)
}
