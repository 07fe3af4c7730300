//! Fraud incidents: what an incident of each pattern is, how a new one is planned (card or
//! merchant, window, location) and how it is committed to the card / merchant state.

use rand::Rng;

use crate::day::DayGen;
use crate::world::{city_point, dist_km, Card, World, COUNTRIES, NC};
use crate::{Channel, FraudPattern, DAY_MS, MINUTE_MS};

/// Pattern-specific plan of an incident.
#[derive(Clone, Copy)]
pub(crate) enum IncidentKind {
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

/// A fraud incident over [start, end): on one card, or on one terminal for a compromised
/// merchant (`card` is then `u32::MAX`).
#[derive(Clone, Copy)]
pub(crate) struct Incident {
    pub(crate) card: u32,
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) kind: IncidentKind,
}

impl Incident {
    /// The pattern this incident belongs to.
    pub(crate) fn pattern(&self) -> FraudPattern {
        match self.kind {
            IncidentKind::Stolen { .. } => FraudPattern::StolenCard,
            IncidentKind::Merchant { .. } => FraudPattern::CompromisedMerchant,
            IncidentKind::Takeover { .. } => FraudPattern::AccountTakeover,
            IncidentKind::Testing { .. } => FraudPattern::CardTesting,
        }
    }

    /// Expected fraudulent transactions from `from` until the end of the run.
    pub(crate) fn expected_from(&self, from: i64, end_ms: i64) -> f64 {
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

impl DayGen {
    /// A random card with no incident in progress at `at` (32 tries), or `None`.
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
    pub(crate) fn plan(
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
            FraudPattern::StolenCard => self.plan_stolen_card(world, start)?,
            FraudPattern::CompromisedMerchant => {
                self.plan_compromised_merchant(world, start, backdate, daily_target)?
            }
            FraudPattern::AccountTakeover => self.plan_account_takeover(world, start, backdate)?,
            // Card testing draws its own start: the whole burst must fit in the day.
            FraudPattern::CardTesting => self.plan_card_testing(world, day_start)?,
            // The `categories` family plans its own incidents.
            _ => return None,
        };
        let vol = inc.expected_from(i64::MIN, self.end_ms);
        Some((inc, vol))
    }

    /// Stolen card: 2-8 purchases over 1-3 days from `start`, far from the holder's home.
    fn plan_stolen_card(&mut self, world: &World, start: i64) -> Option<Incident> {
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
        let (country, lat, lon) = self.far_from_home(home);
        Some(Incident {
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
        })
    }

    /// (country, lat, lon) far from `home`: a distant city of the home country (tried first,
    /// 40% of the time), otherwise a city of another country.
    fn far_from_home(&mut self, home: &Card) -> (u8, f64, f64) {
        if self.rng.gen::<f64>() < 0.4 {
            let cdef = &COUNTRIES[home.country as usize];
            for _ in 0..6 {
                let (lat, lon) = city_point(&mut self.rng, cdef);
                if dist_km(lat, lon, home.lat, home.lon) > 150.0 {
                    return (home.country, lat, lon);
                }
            }
        }
        let mut c = self.rng.gen_range(0..NC - 1);
        if c >= home.country as usize {
            c += 1;
        }
        let (lat, lon) = city_point(&mut self.rng, &COUNTRIES[c]);
        (c as u8, lat, lon)
    }

    /// Compromised merchant: a free POS terminal with 2..=max(4, `daily_target`) genuine
    /// transactions a day (failing that, one with any traffic), compromised for 7-21 days.
    fn plan_compromised_merchant(
        &mut self,
        world: &World,
        start: i64,
        backdate: f64,
        daily_target: f64,
    ) -> Option<Incident> {
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
        Some(Incident {
            card: u32::MAX,
            start,
            end: start + dur as i64,
            kind: IncidentKind::Merchant {
                merchant,
                daily: world.merchant_daily[merchant as usize],
            },
        })
    }

    /// Account takeover: a free card taken over for 2-7 days at three times its usual rate
    /// (at least 4 a day).
    fn plan_account_takeover(
        &mut self,
        world: &World,
        start: i64,
        backdate: f64,
    ) -> Option<Incident> {
        let card = self.free_card(world, start)?;
        let rate = (3.0 * world.cards[card as usize].rate).max(4.0);
        let dur = self.rng.gen_range(2 * DAY_MS..=7 * DAY_MS) as f64 * backdate;
        Some(Incident {
            card,
            start,
            end: start + dur as i64,
            kind: IncidentKind::Takeover { rate },
        })
    }

    /// Card testing: 5-20 tiny purchases within 2-10 minutes, then one large purchase 1-60
    /// minutes later, all on the day at `day_start`.
    fn plan_card_testing(&mut self, world: &World, day_start: i64) -> Option<Incident> {
        let start = day_start + self.rng.gen_range(0..DAY_MS - 75 * MINUTE_MS);
        let card = self.free_card(world, start)?;
        let n = self.rng.gen_range(5..=20u8);
        let window_ms = self.rng.gen_range(2 * MINUTE_MS..=10 * MINUTE_MS);
        let large_at = start + window_ms + self.rng.gen_range(MINUTE_MS..=60 * MINUTE_MS);
        Some(Incident {
            card,
            start,
            end: large_at + 1,
            kind: IncidentKind::Testing {
                n,
                window_ms,
                large_at,
            },
        })
    }

    /// Records a planned incident: marks the merchant compromised or the card busy (and, for
    /// a takeover, locks the owner out), and adds it to the active incidents.
    pub(crate) fn commit(&mut self, inc: Incident) {
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
}
