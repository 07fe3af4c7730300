//! Fraud volume and mix: turns the drift schedule ([`SimConfig::drift_at`]) into a daily
//! target per pattern and starts incidents so that realised volume tracks it.

use crate::day::DayGen;
use crate::world::World;
use crate::{FraudPattern, SimConfig};

/// Days of target volume the active incidents of a pattern should cover beyond today
/// (`E[D²]/2E[D]` of the incident duration), so that incident starts keep pace with the target.
const LOOKAHEAD_DAYS: [f64; 4] = [1.0, 7.6, 2.5, 0.0];

impl DayGen {
    /// Starts incidents so that each pattern's realised + committed volume tracks its target.
    pub(crate) fn start_incidents(
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
}

#[cfg(test)]
mod tests {
    use crate::{DriftConfig, DriftMode, SimConfig};

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
