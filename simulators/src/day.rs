//! The per-day generator state (`DayGen`) shared by genuine and fraud traffic, its sampling
//! helpers, and the daily / weekly rhythm.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::incident::Incident;
use crate::world::{World, COUNTRIES, WEEKEND_FACTOR};
use crate::{Channel, FraudPattern, SimConfig, SimTransaction, DAY_MS, HOUR_MS};

/// Relative transaction intensity per hour of day.
const HOUR_WEIGHTS: [f64; 24] = [
    0.15, 0.08, 0.05, 0.04, 0.05, 0.12, 0.35, 0.7, 1.0, 1.1, 1.2, 1.5, 1.8, 1.5, 1.2, 1.1, 1.2,
    1.5, 1.8, 1.9, 1.6, 1.1, 0.7, 0.35,
];

/// Rounds an amount to cents, at least 0.01.
pub(crate) fn cents(x: f64) -> f64 {
    ((x * 100.0).round() / 100.0).max(0.01)
}

/// A Poisson(`lambda`) draw: Knuth's product method below 30, a rounded normal above.
pub(crate) fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> u32 {
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

/// Volume factor of the day starting at `day_start`: [`WEEKEND_FACTOR`] on Saturday and
/// Sunday (UTC), 1.0 on weekdays.
pub(crate) fn dow_factor(day_start: i64) -> f64 {
    // 1970-01-01 was a Thursday; Monday = 0.
    let dow = (day_start.div_euclid(DAY_MS) + 3).rem_euclid(7);
    if dow >= 5 {
        WEEKEND_FACTOR
    } else {
        1.0
    }
}

#[derive(Clone, Copy)]
/// Per-card dynamic state: incidents in progress and trips abroad.
pub(crate) struct CardState {
    /// No new incident may start on this card before this time.
    pub(crate) busy_until: i64,
    /// Account-takeover window: genuine transactions stop.
    pub(crate) ato_from: i64,
    pub(crate) ato_until: i64,
    pub(crate) trip_from: i64,
    pub(crate) trip_until: i64,
    pub(crate) trip_country: u8,
    pub(crate) trip_lat: f64,
    pub(crate) trip_lon: f64,
}

/// Everything that changes while days are generated.
pub(crate) struct DayGen {
    pub(crate) rng: ChaCha8Rng,
    pub(crate) cards: Vec<CardState>,
    /// Per merchant: compromised window [from, until).
    pub(crate) compromised: Vec<(i64, i64)>,
    pub(crate) incidents: Vec<Incident>,
    pub(crate) realised: [f64; 4],
    pub(crate) cum_target: [f64; 4],
    pub(crate) hour_cdf: [f64; 24],
    pub(crate) seq: u64,
    pub(crate) end_ms: i64,
}

impl DayGen {
    /// Fresh state for a run of `cfg` ending at `end_ms`, drawing from `rng` (after the world
    /// has been built from it).
    pub(crate) fn new(rng: ChaCha8Rng, cfg: &SimConfig, end_ms: i64) -> Self {
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
        DayGen {
            rng,
            cards: vec![card_state; cfg.cards as usize],
            compromised: vec![(i64::MIN, i64::MIN); cfg.merchants as usize],
            incidents: Vec::new(),
            realised: [0.0; 4],
            cum_target: [0.0; 4],
            hour_cdf,
            seq: 0,
            end_ms,
        }
    }

    /// A timestamp on the day at `day_start`, its hour drawn from [`HOUR_WEIGHTS`].
    pub(crate) fn time_of_day(&mut self, day_start: i64) -> i64 {
        let total = self.hour_cdf[23];
        let u = self.rng.gen::<f64>() * total;
        let h = self.hour_cdf.partition_point(|&c| c <= u).min(23) as i64;
        day_start + h * HOUR_MS + self.rng.gen_range(0..HOUR_MS)
    }

    /// Appends a transaction at `merchant` (its country, mcc, channel and location) unless
    /// `ts` is past the end of the run; its tx_id is the generation order within the day, and
    /// a fraudulent one counts toward its pattern's realised volume.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn push(
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

    /// A lognormal draw with the given median and sigma.
    pub(crate) fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        let z: f64 = self.rng.sample(StandardNormal);
        median * (sigma * z).exp()
    }

    /// An ATM withdrawal around `median`: a multiple of 10, at least 20.
    pub(crate) fn cash(&mut self, median: f64) -> f64 {
        let x = self.lognormal(median, 0.5);
        ((x / 10.0).round() * 10.0).max(20.0)
    }

    /// A uniformly random ecom merchant, from the risky ones if `risky` (and there are any).
    pub(crate) fn random_ecom(&mut self, world: &World, risky: bool) -> u32 {
        let list = if risky && !world.ecom_risky.is_empty() {
            &world.ecom_risky
        } else {
            &world.ecom
        };
        list[self.rng.gen_range(0..list.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DEFAULT_START_MS;
    use rand::SeedableRng;

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
}
