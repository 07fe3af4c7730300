//! `fraudstream bench --soak`: does memory stay flat in a service that runs
//! for a year? The sequential [`Engine`] the service runs (built by the same
//! `start_engine`, each event through `admit` first) takes a churning
//! population at constant traffic ([`stream`]) for `days` of event time;
//! once per simulated day the entry count of every bounded structure and the
//! process RSS are sampled. Written as CSV and an SVG chart ([`chart`]),
//! summarised as each count at the end of the fill period (the longest
//! retention window) against its range after it.
//!
//! RSS includes the generator's own memory (one day of events and the labels
//! not yet due, both constant in steady state) and the allocator's slack.

pub mod chart;
pub mod stream;

use crate::config::Topology;
use crate::connectors::sinks::create_file;
use anyhow::Context as _;
use fraudstream_engine::engine::Engine;
use fraudstream_engine::event::Event;
use fraudstream_engine::time::DAY_MS;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::Instant;
use stream::{ChurnStream, StreamShape};

/// How long and how much.
#[derive(Clone, Copy, Debug)]
pub struct SoakOptions {
    /// Days of event time.
    pub days: u32,
    /// Transactions per day (constant).
    pub tx_per_day: u64,
    /// Seed of the generated stream.
    pub seed: u64,
}

/// What the engine holds after one simulated day, and the process's RSS.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DaySample {
    /// Days of event time processed (1 after the first day).
    pub day: u32,
    /// Cards held (card windows).
    pub cards: u64,
    /// Merchants held (merchant windows).
    pub merchants: u64,
    /// Feature vectors waiting for their label.
    pub pending: u64,
    /// Per-transaction evaluation records.
    pub eval_records: u64,
    /// Routes of scored transactions to their card stage.
    pub label_routes: u64,
    /// Days of evaluation kept as aggregates.
    pub compacted_days: u64,
    /// Labelled vectors the batch champion keeps (0 without one).
    pub batch_rows: u64,
    /// Resident set size of the process (VmRSS), MiB.
    pub rss_mib: f64,
}

/// A bounded structure: its name in the CSV, the chart and the summary, and
/// its count in a sample.
pub type Structure = (&'static str, fn(&DaySample) -> u64);

/// Every structure sampled, in the order columns and legends list them.
pub const STRUCTURES: [Structure; 7] = [
    ("cards", |s| s.cards),
    ("merchants", |s| s.merchants),
    ("pending", |s| s.pending),
    ("eval_records", |s| s.eval_records),
    ("label_routes", |s| s.label_routes),
    ("compacted_days", |s| s.compacted_days),
    ("batch_rows", |s| s.batch_rows),
];

/// A whole soak run.
#[derive(Clone, Debug)]
pub struct SoakReport {
    /// The topology whose engine settings ran.
    pub topology: String,
    /// What was asked.
    pub options: SoakOptions,
    /// Transactions scored.
    pub transactions: u64,
    /// Labels passed to the engine.
    pub labels: u64,
    /// Events the engine's gate refused (the generator makes none).
    pub refused: u64,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
    /// Days after which every window has filled: the longest of
    /// `engine.idle_eviction`, `pending.ttl` and `evaluation.retention`
    /// (at most the run's days).
    pub fill_days: u32,
    /// That longest window, in days (whether or not the run reached it).
    pub longest_window_days: u32,
    /// Card and merchant ids active over the run (what the maps would hold
    /// without eviction).
    pub ids_active: (u64, u64),
    /// One sample per day.
    pub samples: Vec<DaySample>,
}

/// Resident set size of this process (VmRSS), in bytes.
pub fn current_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn sample(day: u32, engine: &Engine) -> DaySample {
    let (cards, merchants, _, _) = engine.state();
    DaySample {
        day,
        cards: cards as u64,
        merchants: merchants as u64,
        pending: engine.pending().len() as u64,
        eval_records: engine.evaluation().records() as u64,
        label_routes: engine.label_routes() as u64,
        compacted_days: engine.evaluation().compacted_days() as u64,
        batch_rows: engine.portfolio().map_or(0, |p| p.batch_rows()) as u64,
        rss_mib: current_rss().unwrap_or(0) as f64 / (1u64 << 20) as f64,
    }
}

/// Run the soak on `t`'s engine settings (its source and sinks are not
/// used); `progress` sees each day's sample.
pub fn soak(
    t: &Topology,
    opts: &SoakOptions,
    mut progress: impl FnMut(&DaySample),
) -> anyhow::Result<SoakReport> {
    anyhow::ensure!(opts.days >= 1, "a soak needs at least one day");
    anyhow::ensure!(opts.tx_per_day >= 1, "a soak needs traffic");
    let cfg = t.engine_config();
    let mut engine = crate::exec::outputs::start_engine(t)?;
    let mut stream = ChurnStream::new(StreamShape {
        // Evaluation days then start with the stream's days.
        start_ms: cfg.eval_origin_ms,
        tx_per_day: opts.tx_per_day,
        seed: opts.seed,
    });
    let longest = cfg
        .stage
        .idle_eviction_ms
        .max(cfg.pending_ttl_ms)
        .max(cfg.eval_retention_ms);
    let longest_window_days =
        u32::try_from(longest.saturating_add(DAY_MS - 1) / DAY_MS).unwrap_or(u32::MAX);
    let started = Instant::now();
    let (mut transactions, mut labels, mut refused) = (0, 0, 0);
    let mut samples = Vec::with_capacity(opts.days as usize);
    let mut events = Vec::new();
    for day in 1..=opts.days {
        stream.day(&mut events);
        for event in events.drain(..) {
            // As the service does: the gate first, then score or learn.
            if engine.admit(&event).is_err() {
                refused += 1;
                continue;
            }
            match event {
                Event::Transaction(tx) => {
                    transactions += 1;
                    drop(engine.score(tx));
                }
                Event::Label(l) => {
                    labels += 1;
                    engine.label(&l);
                }
            }
        }
        engine.publish_metrics();
        let s = sample(day, &engine);
        progress(&s);
        samples.push(s);
    }
    Ok(SoakReport {
        topology: t.file.clone(),
        options: *opts,
        transactions,
        labels,
        refused,
        seconds: started.elapsed().as_secs_f64(),
        fill_days: longest_window_days.min(opts.days),
        longest_window_days,
        ids_active: stream.ids_active(u64::from(opts.days)),
        samples,
    })
}

/// One structure's count at the end of the fill period and over the days after.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AfterFill {
    /// At the end of the fill period.
    pub at_fill: f64,
    /// Smallest after it.
    pub min: f64,
    /// Largest after it.
    pub max: f64,
    /// On the last day.
    pub last: f64,
}

impl SoakReport {
    /// `value`'s figures from the end of the fill period on (the fill day
    /// itself included, so a run no longer than it still has one sample).
    pub fn after_fill(&self, value: impl Fn(&DaySample) -> f64) -> AfterFill {
        let from = self.fill_days.max(1) as usize - 1;
        let rest = &self.samples[from..];
        AfterFill {
            at_fill: value(&rest[0]),
            min: rest.iter().map(&value).fold(f64::INFINITY, f64::min),
            max: rest.iter().map(&value).fold(f64::NEG_INFINITY, f64::max),
            last: value(rest.last().expect("one sample at least")),
        }
    }

    /// The terminal summary: each count and the RSS at the end of the fill
    /// period against their range after it, and the RSS growth after it.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let (fill, last) = (self.fill_days, self.options.days);
        let _ = writeln!(
            s,
            "fraudstream bench --soak: {} ({last} days at {} transactions/day: {} transactions, \
             {} labels, {} refused) in {:.1} s",
            self.topology,
            self.options.tx_per_day,
            self.transactions,
            self.labels,
            self.refused,
            self.seconds
        );
        let filled = if self.longest_window_days <= last {
            format!("windows filled by day {fill}")
        } else {
            format!(
                "the run ends before the windows fill (day {})",
                self.longest_window_days
            )
        };
        let _ = writeln!(
            s,
            "  {filled} (the longest of idle_eviction, pending.ttl, evaluation.retention); \
             {} card and {} merchant ids were active in all",
            self.ids_active.0, self.ids_active.1
        );
        let _ = writeln!(
            s,
            "  {:<16} {:>12} {:>12} {:>12} {:>12}",
            "structure",
            format!("day {fill}"),
            "min after",
            "max after",
            format!("day {last}")
        );
        for (name, count) in STRUCTURES {
            let a = self.after_fill(|x| count(x) as f64);
            let _ = writeln!(
                s,
                "  {name:<16} {:>12} {:>12} {:>12} {:>12}{}",
                a.at_fill,
                a.min,
                a.max,
                a.last,
                match name {
                    "compacted_days" => "  (one per day past evaluation.retention, at most 400)",
                    "batch_rows" => "  (at most model.batch.buffer per class)",
                    _ => "",
                }
            );
        }
        let rss = self.after_fill(|x| x.rss_mib);
        let _ = writeln!(
            s,
            "  {:<16} {:>12.1} {:>12.1} {:>12.1} {:>12.1}",
            "RSS (MiB)", rss.at_fill, rss.min, rss.max, rss.last
        );
        let pct = |v: f64| (v / rss.at_fill - 1.0) * 100.0;
        let _ = writeln!(
            s,
            "  RSS after day {fill}: {:+.1} % at day {last}, at most {:+.1} %",
            pct(rss.last),
            pct(rss.max)
        );
        s
    }

    /// The samples as CSV, one row per day.
    pub fn csv(&self) -> String {
        let mut s = String::from("day");
        for (name, _) in STRUCTURES {
            s.push(',');
            s.push_str(name);
        }
        s.push_str(",rss_mib\n");
        for x in &self.samples {
            let _ = write!(s, "{}", x.day);
            for (_, count) in STRUCTURES {
                let _ = write!(s, ",{}", count(x));
            }
            let _ = writeln!(s, ",{:.1}", x.rss_mib);
        }
        s
    }
}

/// `fraudstream bench --soak`: run, write `soak.csv` and `soak.svg` under
/// `out`, print the summary.
pub fn command(t: &Topology, opts: &SoakOptions, out: &Path) -> anyhow::Result<()> {
    let report = soak(t, opts, |s| {
        if s.day % 30 == 0 {
            eprintln!(
                "day {}: {} cards, {} merchants, {} pending, {} evaluation records, \
                 {} label routes, {} compacted days, {} batch rows, RSS {:.1} MiB",
                s.day,
                s.cards,
                s.merchants,
                s.pending,
                s.eval_records,
                s.label_routes,
                s.compacted_days,
                s.batch_rows,
                s.rss_mib
            );
        }
    })?;
    let (csv, svg) = (out.join("soak.csv"), out.join("soak.svg"));
    for (path, text) in [(&csv, report.csv()), (&svg, chart::svg(&report)?)] {
        create_file(path)?
            .write_all(text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print!("{}", report.summary());
    println!("wrote {} and {}", csv.display(), svg.display());
    Ok(())
}
