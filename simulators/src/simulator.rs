//! The public [`Simulator`]: builds the world, generates the run one day at a time and
//! interleaves the day's transactions with the labels that fall due.

use std::fmt;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::categories::CategoryGen;
use crate::day::{dow_factor, DayGen};
use crate::handbook::HandbookGen;
use crate::labels::{LabelQueue, LabelTiming};
use crate::world::{World, COUNTRIES};
use crate::{Family, SimConfig, SimEvent, SimTransaction, DAY_MS};

/// The generator of a family.
enum Generator {
    Cards { world: Box<World>, gen: Box<DayGen> },
    Categories(Box<CategoryGen>),
    Handbook(Box<HandbookGen>),
}

/// Seeded, deterministic, day-by-day generator of transactions and delayed labels.
///
/// Iterate it to get the event stream; see the crate docs for the ordering contract.
pub struct Simulator {
    cfg: SimConfig,
    end_ms: i64,
    gen: Generator,
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
        let end_ms = cfg.start_ms + cfg.days as i64 * DAY_MS;
        let (gen, expected_day) = match cfg.family {
            Family::Cards => {
                let world = Box::new(World::build(&mut rng, cfg.cards, cfg.merchants));
                let expected_day = (world.total_rate * 1.1) as usize + 64;
                let gen = Box::new(DayGen::new(rng, &cfg, end_ms));
                (Generator::Cards { world, gen }, expected_day)
            }
            Family::Categories => {
                let gen = Box::new(CategoryGen::new(rng, &cfg, end_ms));
                (Generator::Categories(gen), cfg.cards as usize * 2 + 64)
            }
            Family::Handbook => {
                let gen = Box::new(HandbookGen::new(rng, &cfg));
                let expected_day = gen.expected_day();
                (Generator::Handbook(gen), expected_day)
            }
        };
        let timing = match cfg.family {
            Family::Cards => LabelTiming::Drawn,
            Family::Categories => LabelTiming::Batched,
            Family::Handbook => LabelTiming::Fixed,
        };
        Ok(Simulator {
            end_ms,
            gen,
            labels: LabelQueue::new(&cfg.labels, label_rng, timing),
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
        match &self.gen {
            Generator::Cards { world, .. } => {
                let m = world.merchants.get(merchant as usize)?;
                Some(COUNTRIES[m.country as usize].code)
            }
            Generator::Categories(_) => (merchant < self.cfg.merchants.max(15)).then_some("ES"),
            Generator::Handbook(_) => (merchant < self.cfg.merchants).then_some("BE"),
        }
    }

    /// Home (lat, lon) and ISO-2 country of a card holder, or `None` if out of range.
    pub fn card_home(&self, card: u32) -> Option<((f64, f64), &'static str)> {
        match &self.gen {
            Generator::Cards { world, .. } => {
                let c = world.cards.get(card as usize)?;
                Some(((c.lat, c.lon), COUNTRIES[c.country as usize].code))
            }
            Generator::Categories(g) => Some((g.home(card)?, "ES")),
            // The book's customers live on an abstract grid, not on a map.
            Generator::Handbook(_) => None,
        }
    }

    /// Generates the next day into `day_buf`: starts incidents, draws genuine and fraud
    /// transactions, sorts them by (ts_ms, generation order) and assigns the final tx ids.
    fn generate_day(&mut self) {
        let day = self.next_day;
        let day_start = self.cfg.start_ms + day as i64 * DAY_MS;
        self.day_buf.clear();
        self.cursor = 0;
        match &mut self.gen {
            Generator::Cards { world, gen } => {
                let dow = dow_factor(day_start);
                gen.seq = 0;
                gen.start_incidents(world, &self.cfg, day, day_start, dow);
                gen.genuine_day(world, &mut self.day_buf, day_start, dow);
                gen.fraud_day(world, &mut self.day_buf, day_start);
            }
            Generator::Categories(gen) => gen.day(&mut self.day_buf, day_start),
            Generator::Handbook(gen) => gen.day(&mut self.day_buf, day_start),
        }
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
