//! Genuine traffic: each card holder's own transactions of one day, including trips abroad.

use rand::Rng;

use crate::day::{poisson, DayGen};
use crate::world::{city_point, World, COUNTRIES, NC, POOL_SHARE, USUAL_SHARE};
use crate::{Channel, FraudPattern, SimTransaction, DAY_MS};

const TRIP_PROB_PER_DAY: f64 = 1.0 / 150.0;
const BIG_TICKET_SHARE: f64 = 0.02;

impl DayGen {
    /// Appends every card holder's own transactions of the day at `day_start` (`dow` is the
    /// day-of-week factor), starting trips abroad; a transaction at a compromised terminal is
    /// marked as compromised-merchant fraud, none is made while the account is taken over.
    pub(crate) fn genuine_day(
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
}
