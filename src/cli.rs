//! The command line: every subcommand and flag of `fraudstream`, parsed by
//! clap. In the library so tests can check that a command line (for example
//! one in docker-compose.yml) is accepted without running it.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "fraudstream",
    version,
    about = "Streaming online-learning fraud detection engine"
)]
pub struct Cli {
    #[command(subcommand)]
    /// What to do.
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a topology (the built-in simulator → engine → summary when none is given).
    Run {
        /// Topology file (TOML).
        topology: Option<PathBuf>,
        /// Override a key, e.g. --set source.days=10 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// No progress or summary on the terminal.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Check topology files and report every error at once.
    Validate {
        /// Topology files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Benchmark the pipeline on a generated stream (no output files but the results).
    Bench {
        /// Topology to benchmark (default: the built-in one); its file sinks are ignored.
        topology: Option<PathBuf>,
        /// Override a key, e.g. --set source.days=10 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Worker counts to measure, comma-separated (default: 1 and the number of cores).
        #[arg(long, value_delimiter = ',')]
        workers: Vec<usize>,
        /// Offered rate of the latency run, as a share of the measured maximum.
        #[arg(long, default_value_t = 0.5)]
        rate_fraction: f64,
        /// Folder for bench.json and bench.svg.
        #[arg(long, default_value = "out/bench")]
        out: PathBuf,
        /// Skip the paced (latency with queueing) runs.
        #[arg(long)]
        no_paced: bool,
        /// Instead: benchmark the service against the Fluvio cluster of a
        /// Fluvio topology (plain consumer vs engine rate, end-to-end latency
        /// at --fluvio-rate), on fresh topics; writes OUT/bench-fluvio.json.
        #[arg(long)]
        fluvio: bool,
        /// Offered events (transactions and their labels) per second of the
        /// --fluvio latency run.
        #[arg(long, default_value_t = 2000.0)]
        fluvio_rate: f64,
        /// Transactions timed in the --fluvio latency run.
        #[arg(long, default_value_t = 20_000)]
        fluvio_latency_transactions: u64,
        /// Simulated days of the --fluvio throughput stream (5000 cards).
        #[arg(long, default_value_t = 11)]
        fluvio_days: u32,
        /// Instead: write the stream with its feature vectors as CSV (for
        /// benches/river_compare.py), then print one JSON line of fraudstream's
        /// figures on the same stream.
        #[arg(long, value_name = "PATH")]
        export_stream: Option<PathBuf>,
    },
    /// Write simulated transactions and labels to files, or publish them to Fluvio.
    Simulate {
        /// Where to: files under --out, or Fluvio topics (address from
        /// --set fluvio.address=..., FLUVIO_SC_ADDR, or the Fluvio profile).
        #[arg(long, value_enum, default_value_t = Target::Files)]
        to: Target,
        /// Fluvio topic for transactions (with --to fluvio).
        #[arg(long, default_value = "transactions")]
        topic: String,
        /// Fluvio topic for labels (with --to fluvio); "none" publishes no labels.
        #[arg(long, default_value = "labels")]
        labels_topic: String,
        /// Take the simulator settings from this topology's [source] (default: the built-in one).
        #[arg(long)]
        topology: Option<PathBuf>,
        /// Override a key of the topology, e.g. --set source.cards=1000 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Output folder.
        #[arg(long, default_value = "data/sim")]
        out: PathBuf,
        /// File format.
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
        /// Simulated days (overrides the topology).
        #[arg(long)]
        days: Option<u32>,
        /// Number of cards (overrides the topology).
        #[arg(long)]
        cards: Option<u32>,
        /// Seed (overrides the topology).
        #[arg(long)]
        seed: Option<u64>,
        /// Events per second (default: as fast as possible).
        #[arg(long)]
        rate: Option<f64>,
    },
    /// Manage the Fluvio topics of a topology.
    Topics {
        #[command(subcommand)]
        action: TopicsAction,
    },
}

#[derive(Subcommand)]
pub enum TopicsAction {
    /// Create the topics a topology reads and writes, with their partition
    /// counts (topics that exist are left as they are).
    Create {
        /// Topology file.
        topology: PathBuf,
        /// Override a key, e.g. --set fluvio.address=127.0.0.1:9003 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Files under --out.
    Files,
    /// Fluvio topics.
    Fluvio,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// Comma-separated values.
    Csv,
    /// JSON lines.
    Jsonl,
}
