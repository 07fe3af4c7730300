//! Fraudulent traffic: the transactions the active incidents produce on one day.

use rand::Rng;

use crate::day::{poisson, DayGen};
use crate::incident::{Incident, IncidentKind};
use crate::world::{Card, World, NC};
use crate::{Channel, FraudPattern, SimTransaction, DAY_MS};

impl DayGen {
    /// Appends the fraudulent transactions of every active incident on the day at `day_start`
    /// (compromised-merchant fraud is marked during genuine generation), then drops the
    /// incidents that end with this day.
    pub(crate) fn fraud_day(
        &mut self,
        world: &World,
        buf: &mut Vec<SimTransaction>,
        day_start: i64,
    ) {
        let day_end = day_start + DAY_MS;
        for k in 0..self.incidents.len() {
            let inc = self.incidents[k];
            let card = &world.cards[inc.card.min(world.cards.len() as u32 - 1) as usize];
            match inc.kind {
                IncidentKind::Stolen { .. } => {
                    self.stolen_card_day(world, buf, &inc, card, day_start, day_end)
                }
                IncidentKind::Merchant { .. } => {} // marked during genuine generation
                IncidentKind::Takeover { .. } => {
                    self.takeover_day(world, buf, &inc, card, day_start, day_end)
                }
                IncidentKind::Testing { .. } => {
                    self.card_testing_day(world, buf, &inc, day_start, day_end)
                }
            }
        }
        self.incidents.retain(|x| x.end > day_end);
    }

    /// Stolen card (`inc` must be one): the planned purchases of the day near the thief's
    /// location (ATM, risky or ordinary terminals), with amounts well above the holder's usual.
    fn stolen_card_day(
        &mut self,
        world: &World,
        buf: &mut Vec<SimTransaction>,
        inc: &Incident,
        card: &Card,
        day_start: i64,
        day_end: i64,
    ) {
        let IncidentKind::Stolen {
            n,
            times,
            country,
            lat,
            lon,
        } = inc.kind
        else {
            return;
        };
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
                ((card.median * self.rng.gen_range(3.0..10.0) / 10.0).round() * 10.0).max(50.0)
            } else {
                let k = self.rng.gen_range(3.0..10.0);
                self.lognormal(card.median * k, 0.2)
            };
            let p = Some(FraudPattern::StolenCard);
            self.push(world, buf, inc.card, merchant, ts, amount, p);
        }
    }

    /// Account takeover (`inc` must be one): a Poisson number of larger purchases over the
    /// part of the day inside the takeover window, mostly at (risky) ecom merchants.
    fn takeover_day(
        &mut self,
        world: &World,
        buf: &mut Vec<SimTransaction>,
        inc: &Incident,
        card: &Card,
        day_start: i64,
        day_end: i64,
    ) {
        let IncidentKind::Takeover { rate } = inc.kind else {
            return;
        };
        let a = inc.start.max(day_start);
        let b = inc.end.min(day_end);
        if b <= a {
            return;
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
                world.links[(card.usual_start + self.rng.gen_range(0..card.usual_len)) as usize]
            };
            let k = self.rng.gen_range(3.0..6.0);
            let amount = self.lognormal(card.median * k, 0.25);
            let p = Some(FraudPattern::AccountTakeover);
            self.push(world, buf, inc.card, merchant, ts, amount, p);
        }
    }

    /// Card testing (`inc` must be one), on the day it starts: tiny amounts at distinct
    /// (mostly ecom) merchants within the window, then one large purchase.
    fn card_testing_day(
        &mut self,
        world: &World,
        buf: &mut Vec<SimTransaction>,
        inc: &Incident,
        day_start: i64,
        day_end: i64,
    ) {
        let IncidentKind::Testing {
            n,
            window_ms,
            large_at,
        } = inc.kind
        else {
            return;
        };
        if inc.start < day_start || inc.start >= day_end {
            return;
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
