//! The static world: countries, merchants (terminals) and card holders with their habits.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::Channel;

/// A country as a lat/lon box with weighted city centres.
pub(crate) struct CountryDef {
    pub code: &'static str,
    pub currency: &'static str,
    pub lat: (f64, f64),
    pub lon: (f64, f64),
    /// (lat, lon, weight)
    pub cities: &'static [(f64, f64, f64)],
    pub card_weight: f64,
    pub merchant_weight: f64,
}

pub(crate) const COUNTRIES: [CountryDef; 4] = [
    CountryDef {
        code: "NL",
        currency: "EUR",
        lat: (51.3, 53.4),
        lon: (3.6, 7.1),
        cities: &[
            (52.37, 4.90, 3.0),
            (51.92, 4.48, 2.0),
            (52.09, 5.12, 1.5),
            (51.44, 5.48, 1.2),
            (53.22, 6.57, 1.0),
        ],
        card_weight: 0.72,
        merchant_weight: 0.55,
    },
    CountryDef {
        code: "BE",
        currency: "EUR",
        lat: (49.6, 51.4),
        lon: (2.6, 6.3),
        cities: &[
            (50.85, 4.35, 2.0),
            (51.22, 4.40, 1.5),
            (51.05, 3.72, 1.0),
            (50.63, 5.57, 0.8),
        ],
        card_weight: 0.10,
        merchant_weight: 0.15,
    },
    CountryDef {
        code: "DE",
        currency: "EUR",
        lat: (47.4, 54.8),
        lon: (6.0, 14.9),
        cities: &[
            (52.52, 13.40, 2.5),
            (53.55, 9.99, 1.5),
            (48.14, 11.58, 1.5),
            (50.94, 6.96, 1.2),
            (50.11, 8.68, 1.0),
            (51.23, 6.78, 1.0),
        ],
        card_weight: 0.10,
        merchant_weight: 0.18,
    },
    CountryDef {
        code: "GB",
        currency: "GBP",
        lat: (50.4, 55.0),
        lon: (-4.5, 1.5),
        cities: &[
            (51.51, -0.13, 3.0),
            (53.48, -2.24, 1.2),
            (52.49, -1.89, 1.2),
            (53.80, -1.55, 0.8),
        ],
        card_weight: 0.08,
        merchant_weight: 0.12,
    },
];

/// Number of countries.
pub(crate) const NC: usize = COUNTRIES.len();

/// (mcc, weight, amount factor) of card-present merchants.
const POS_MCCS: [(u16, f64, f64); 9] = [
    (5411, 0.26, 1.0),
    (5812, 0.22, 0.8),
    (5541, 0.12, 1.2),
    (4111, 0.08, 0.35),
    (5999, 0.12, 1.0),
    (5311, 0.10, 1.6),
    (5732, 0.04, 3.0),
    (5944, 0.02, 4.0),
    (7995, 0.04, 1.2),
];
/// (mcc, weight, amount factor) of ecom merchants.
const ECOM_MCCS: [(u16, f64, f64); 7] = [
    (5999, 0.32, 1.1),
    (5311, 0.20, 1.5),
    (5732, 0.18, 2.5),
    (5812, 0.12, 0.9),
    (4111, 0.08, 1.5),
    (7995, 0.07, 1.0),
    (5944, 0.03, 3.0),
];
const ATM_MCC: u16 = 6011;
const ECOM_SHARE: f64 = 0.15;
const ATM_SHARE: f64 = 0.03;

/// Share of a card's transactions at its usual merchants.
pub(crate) const USUAL_SHARE: f64 = 0.85;
/// Share at other nearby merchants; the rest goes to random ecom merchants.
pub(crate) const POOL_SHARE: f64 = 0.09;
/// Mean weekday factor (five days at 1.0, weekend at [`WEEKEND_FACTOR`]).
pub(crate) const WEEKEND_FACTOR: f64 = 1.15;
const NEAREST: usize = 40;
const USUAL_FROM: usize = 25;
const CANDIDATES: usize = 300;

fn is_risky(mcc: u16) -> bool {
    matches!(mcc, 5732 | 5944)
}

pub(crate) struct Merchant {
    pub country: u8,
    pub channel: Channel,
    pub mcc: u16,
    pub lat: f64,
    pub lon: f64,
    pub amount_factor: f64,
}

pub(crate) struct Card {
    pub country: u8,
    pub lat: f64,
    pub lon: f64,
    /// Median amount of an ordinary purchase.
    pub median: f64,
    /// Lognormal sigma of amounts.
    pub sigma: f64,
    /// Mean transactions per weekday.
    pub rate: f64,
    pub usual_start: u32,
    pub usual_len: u32,
    pub pool_start: u32,
    pub pool_len: u32,
}

pub(crate) struct World {
    pub merchants: Vec<Merchant>,
    pub cards: Vec<Card>,
    /// Flat storage of the cards' usual and nearby merchant lists.
    pub links: Vec<u32>,
    pub ecom: Vec<u32>,
    pub ecom_risky: Vec<u32>,
    /// Per country: POS terminals and ATMs.
    pub phys: Vec<Vec<u32>>,
    /// Per country: ATMs.
    pub atm: Vec<Vec<u32>>,
    /// Per country: POS terminals with high-risk mcc (electronics, jewelry).
    pub risky: Vec<Vec<u32>>,
    /// Per country: POS terminals (no ATMs).
    pub pos: Vec<Vec<u32>>,
    /// Expected genuine transactions per day at each merchant.
    pub merchant_daily: Vec<f64>,
    /// Sum of the cards' daily rates.
    pub total_rate: f64,
}

pub(crate) fn pick_weighted<R: Rng>(
    rng: &mut R,
    weights: impl Iterator<Item = f64> + Clone,
) -> usize {
    let total: f64 = weights.clone().sum();
    let mut u = rng.gen::<f64>() * total;
    let mut last = 0;
    for (i, w) in weights.enumerate() {
        if u < w {
            return i;
        }
        u -= w;
        last = i;
    }
    last
}

/// Squared equirectangular distance in km², good enough for ranking.
#[inline]
pub(crate) fn dist2(lat1: f64, lon1: f64, lat2: f64, lon2: f64, coslat: f64) -> f64 {
    let dy = (lat1 - lat2) * 110.57;
    let dx = (lon1 - lon2) * 111.32 * coslat;
    dx * dx + dy * dy
}

/// Distance in km between two points.
pub(crate) fn dist_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let coslat = ((lat1 + lat2) * 0.5).to_radians().cos();
    dist2(lat1, lon1, lat2, lon2, coslat).sqrt()
}

/// A point near a random city of `c` (jittered), clamped into the country box.
pub(crate) fn city_point(rng: &mut ChaCha8Rng, c: &CountryDef) -> (f64, f64) {
    let i = pick_weighted(rng, c.cities.iter().map(|x| x.2));
    let (lat, lon, _) = c.cities[i];
    let zl: f64 = rng.sample(StandardNormal);
    let zo: f64 = rng.sample(StandardNormal);
    (
        (lat + 0.07 * zl).clamp(c.lat.0, c.lat.1),
        (lon + 0.11 * zo).clamp(c.lon.0, c.lon.1),
    )
}

fn sample_location(rng: &mut ChaCha8Rng, c: &CountryDef) -> (f64, f64) {
    if rng.gen::<f64>() < 0.8 {
        city_point(rng, c)
    } else {
        (
            rng.gen_range(c.lat.0..c.lat.1),
            rng.gen_range(c.lon.0..c.lon.1),
        )
    }
}

impl World {
    /// Draws `n_merchants` merchants, then `n_cards` card holders with their habits.
    pub(crate) fn build(rng: &mut ChaCha8Rng, n_cards: u32, n_merchants: u32) -> World {
        let mut world = World::with_merchants(rng, n_merchants);
        world.add_cards(rng, n_cards);
        world
    }

    /// A world of `n_merchants` merchants, indexed by channel and country, and no cards yet.
    fn with_merchants(rng: &mut ChaCha8Rng, n_merchants: u32) -> World {
        let mut w = World {
            merchants: Vec::with_capacity(n_merchants as usize),
            cards: Vec::new(),
            links: Vec::new(),
            ecom: Vec::new(),
            ecom_risky: Vec::new(),
            phys: vec![Vec::new(); NC],
            atm: vec![Vec::new(); NC],
            risky: vec![Vec::new(); NC],
            pos: vec![Vec::new(); NC],
            merchant_daily: Vec::new(),
            total_rate: 0.0,
        };
        for i in 0..n_merchants {
            let idx = i as usize;
            // The first merchants guarantee one POS per country, one ecom and one ATM.
            let (country, channel) = if idx < NC {
                (idx, Channel::Pos)
            } else if idx == NC {
                (0, Channel::Ecom)
            } else if idx == NC + 1 {
                (0, Channel::Atm)
            } else {
                let c = pick_weighted(rng, COUNTRIES.iter().map(|c| c.merchant_weight));
                let u: f64 = rng.gen();
                let ch = if u < ECOM_SHARE {
                    Channel::Ecom
                } else if u < ECOM_SHARE + ATM_SHARE {
                    Channel::Atm
                } else {
                    Channel::Pos
                };
                (c, ch)
            };
            let cdef = &COUNTRIES[country];
            let (mcc, amount_factor) = match channel {
                Channel::Pos => {
                    let k = pick_weighted(rng, POS_MCCS.iter().map(|m| m.1));
                    (POS_MCCS[k].0, POS_MCCS[k].2)
                }
                Channel::Ecom => {
                    let k = pick_weighted(rng, ECOM_MCCS.iter().map(|m| m.1));
                    (ECOM_MCCS[k].0, ECOM_MCCS[k].2)
                }
                Channel::Atm => (ATM_MCC, 2.0),
            };
            let (lat, lon) = if channel == Channel::Ecom {
                (0.0, 0.0)
            } else {
                sample_location(rng, cdef)
            };
            match channel {
                Channel::Ecom => {
                    w.ecom.push(i);
                    if is_risky(mcc) || mcc == 7995 {
                        w.ecom_risky.push(i);
                    }
                }
                Channel::Atm => {
                    w.phys[country].push(i);
                    w.atm[country].push(i);
                }
                Channel::Pos => {
                    w.phys[country].push(i);
                    w.pos[country].push(i);
                    if is_risky(mcc) {
                        w.risky[country].push(i);
                    }
                }
            }
            w.merchants.push(Merchant {
                country: country as u8,
                channel,
                mcc,
                lat,
                lon,
                amount_factor,
            });
        }
        w.merchant_daily = vec![0.0; w.merchants.len()];
        w
    }

    /// Draws `n_cards` card holders (home, amounts, rate, usual and nearby merchants) and
    /// the expected daily traffic they bring each merchant.
    fn add_cards(&mut self, rng: &mut ChaCha8Rng, n_cards: u32) {
        self.cards.reserve_exact(n_cards as usize);
        let mut ecom_daily = 0.0;
        let mut scratch: Vec<(f64, u32)> = Vec::with_capacity(CANDIDATES);
        let (ln_lo, ln_hi) = (15f64.ln(), 120f64.ln());
        for _ in 0..n_cards {
            let country = pick_weighted(rng, COUNTRIES.iter().map(|c| c.card_weight));
            let (lat, lon) = sample_location(rng, &COUNTRIES[country]);
            let median = rng.gen_range(ln_lo..ln_hi).exp();
            let sigma = rng.gen_range(0.5..0.9);
            let z: f64 = rng.sample(StandardNormal);
            let rate = (1.62f64.ln() + 0.55 * z).exp().clamp(0.5, 4.0);

            self.nearest_physical(rng, &mut scratch, country, lat, lon);
            let head = scratch.len().min(USUAL_FROM);
            scratch[..head].shuffle(rng);
            let n_usual = rng.gen_range(5..=20usize).min(head);

            let usual_start = self.links.len() as u32;
            self.links.extend(scratch[..n_usual].iter().map(|x| x.1));
            // Most people also have one or two favourite web shops.
            if rng.gen::<f64>() < 0.7 {
                for _ in 0..rng.gen_range(1..=2) {
                    self.links
                        .push(self.ecom[rng.gen_range(0..self.ecom.len())]);
                }
            }
            let usual_len = self.links.len() as u32 - usual_start;
            let pool_start = self.links.len() as u32;
            self.links.extend(scratch[n_usual..].iter().map(|x| x.1));
            let pool_len = self.links.len() as u32 - pool_start;

            let card = Card {
                country: country as u8,
                lat,
                lon,
                median,
                sigma,
                rate,
                usual_start,
                usual_len,
                pool_start,
                pool_len,
            };
            ecom_daily += self.add_merchant_daily(&card);
            self.total_rate += rate;
            self.cards.push(card);
        }
        for &m in &self.ecom {
            self.merchant_daily[m as usize] += ecom_daily / self.ecom.len() as f64;
        }
    }

    /// Fills `scratch` with (squared distance, merchant) of the `NEAREST` physical merchants
    /// of `country` to (lat, lon), among all of them or a sample of `CANDIDATES`.
    fn nearest_physical(
        &self,
        rng: &mut ChaCha8Rng,
        scratch: &mut Vec<(f64, u32)>,
        country: usize,
        lat: f64,
        lon: f64,
    ) {
        let list = &self.phys[country];
        scratch.clear();
        let coslat = lat.to_radians().cos();
        let mut push = |m: u32| {
            let mm = &self.merchants[m as usize];
            scratch.push((dist2(lat, lon, mm.lat, mm.lon, coslat), m));
        };
        if list.len() <= CANDIDATES {
            list.iter().for_each(|&m| push(m));
        } else {
            for _ in 0..CANDIDATES {
                push(list[rng.gen_range(0..list.len())]);
            }
        }
        scratch.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        scratch.dedup_by_key(|x| x.1);
        scratch.truncate(NEAREST);
    }

    /// Adds `card`'s expected daily traffic to its usual and nearby merchants (used to size
    /// compromised-merchant incidents); returns its expected daily ecom traffic elsewhere.
    fn add_merchant_daily(&mut self, card: &Card) -> f64 {
        let wk_rate = card.rate * (5.0 + 2.0 * WEEKEND_FACTOR) / 7.0;
        let pool_share = if card.pool_len > 0 { POOL_SHARE } else { 0.0 };
        let usual_share = USUAL_SHARE + (POOL_SHARE - pool_share);
        let (us, ul) = (card.usual_start as usize, card.usual_len as usize);
        for &m in &self.links[us..us + ul] {
            self.merchant_daily[m as usize] += wk_rate * usual_share / card.usual_len as f64;
        }
        let (ps, pl) = (card.pool_start as usize, card.pool_len as usize);
        for &m in &self.links[ps..ps + pl] {
            self.merchant_daily[m as usize] += wk_rate * pool_share / card.pool_len as f64;
        }
        wk_rate * (1.0 - USUAL_SHARE - POOL_SHARE)
    }

    /// The best of `k` random picks from `list` by distance to (lat, lon); `list` must not be empty.
    pub(crate) fn pick_near(
        &self,
        rng: &mut ChaCha8Rng,
        list: &[u32],
        lat: f64,
        lon: f64,
        k: usize,
    ) -> u32 {
        let coslat = lat.to_radians().cos();
        let mut best = list[rng.gen_range(0..list.len())];
        let bm = &self.merchants[best as usize];
        let mut best_d = dist2(lat, lon, bm.lat, bm.lon, coslat);
        for _ in 1..k {
            let m = list[rng.gen_range(0..list.len())];
            let mm = &self.merchants[m as usize];
            let d = dist2(lat, lon, mm.lat, mm.lon, coslat);
            if d < best_d {
                best = m;
                best_d = d;
            }
        }
        best
    }
}
