//! The command line: every subcommand and flag of `fraudstream`, parsed by
//! clap. In the library so tests can check that a command line (for example
//! one in docker-compose.yml) is accepted without running it.

use crate::connectors::cluster::HostPort;
use clap::{Args, Parser, Subcommand, ValueEnum};
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
    Run(RunArgs),
    /// Check topology files and report every error at once.
    Validate(ValidateArgs),
    /// Benchmark the pipeline on a generated stream (no output files but the results).
    Bench(BenchArgs),
    /// Write simulated transactions and labels to files, or publish them to Fluvio.
    Simulate(SimulateArgs),
    /// Every model type on the three simulator families under several label
    /// delays and fraud rates (the robustness matrix).
    Matrix(MatrixArgs),
    /// Load the scoring API (a running `source.type = "api"` service) at a
    /// fixed offered rate, or closed loop; latency percentiles and errors.
    Load(LoadArgs),
    /// Draw the HTML report of a run from its JSON report.
    Report(ReportArgs),
    /// Manage the Fluvio topics of a topology.
    Topics {
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// Set up a Fluvio cluster whose images have no `fluvio` CLI.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
}

/// Flags of `fraudstream run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Topology file (TOML).
    pub topology: Option<PathBuf>,
    /// Override a key, e.g. --set source.days=10 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// The stage(s) this process runs in a topology with `[stages]`:
    /// all, merchant or card (the same as --set stages.role=ROLE).
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// No progress or summary on the terminal.
    #[arg(long, short)]
    pub quiet: bool,
    /// A Fluvio service without the engine: consume, decode and merge the
    /// inputs and produce one score record (score 0) per transaction. The
    /// transport's floor, to measure the engine's cost against.
    #[arg(long)]
    pub null_pipeline: bool,
}

/// Flags of `fraudstream report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A JSON report written by a run (`sinks.report`).
    pub report: PathBuf,
    /// Where the HTML page goes (default: beside the JSON, as `.html`).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

/// Flags of `fraudstream load`.
#[derive(Args, Debug)]
pub struct LoadArgs {
    /// The API's address.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub target: String,
    /// Offered requests per second (open loop); 0: closed loop, each
    /// connection sending as soon as its answer is in (saturation).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds sent first and not measured.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Transactions per request.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Connections (each with one request in flight at a time).
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Threads of the load generator.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Cards of the simulated transactions sent.
    #[arg(long, default_value_t = 20_000)]
    pub cards: u32,
    /// Seed of the simulated transactions.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Write the figures here as JSON.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Flags of `fraudstream matrix`.
#[derive(Args, Debug)]
pub struct MatrixArgs {
    /// Topology file (TOML) whose engine, features and model settings every
    /// run uses (the built-in one when none is given); its source is replaced
    /// by the simulator of each cell.
    pub topology: Option<PathBuf>,
    /// Override a key of the topology (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Simulator families.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "cards,categories,handbook"
    )]
    pub families: Vec<String>,
    /// Model types (`model.type`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "logistic,forest,blend,auto"
    )]
    pub models: Vec<String>,
    /// Mean label delays in days, each at a fraud rate of 0.7 %.
    #[arg(long, value_delimiter = ',', default_value = "0.25,7,30")]
    pub delays: Vec<f64>,
    /// Fraud rates, each at a label delay of 7 days.
    #[arg(
        long = "fraud-rates",
        value_delimiter = ',',
        default_value = "0.001,0.007,0.03"
    )]
    pub fraud_rates: Vec<f64>,
    /// Simulated days per stream (the final window is `evaluation.last_days`).
    #[arg(long, default_value_t = 60)]
    pub days: u32,
    /// Cards per stream (merchants: a fifth of it).
    #[arg(long, default_value_t = 2000)]
    pub cards: u32,
    /// Simulator seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where matrix.json and matrix.md go.
    #[arg(long, default_value = "out/matrix")]
    pub out: PathBuf,
}

/// Flags of `fraudstream validate`.
#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Topology files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Flags of `fraudstream bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Topology to benchmark (default: the built-in one); its file sinks are ignored.
    pub topology: Option<PathBuf>,
    /// Override a key, e.g. --set source.days=10 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Worker counts to measure, comma-separated (default: 1 and the number of cores).
    #[arg(long, value_delimiter = ',')]
    pub workers: Vec<usize>,
    /// Offered rate of the latency run, as a share of the measured maximum.
    #[arg(long, default_value_t = 0.5)]
    pub rate_fraction: f64,
    /// Folder for bench.json and bench.svg.
    #[arg(long, default_value = "out/bench")]
    pub out: PathBuf,
    /// Skip the paced (latency with queueing) runs.
    #[arg(long)]
    pub no_paced: bool,
    /// Instead: benchmark the service against the Fluvio cluster of a
    /// Fluvio topology (plain consumer vs engine rate, end-to-end latency
    /// at --fluvio-rate), on fresh topics; writes OUT/bench-fluvio.json.
    #[arg(long)]
    pub fluvio: bool,
    /// Offered events (transactions and their labels) per second of the
    /// --fluvio latency run.
    #[arg(long, default_value_t = 2000.0)]
    pub fluvio_rate: f64,
    /// Transactions timed in the --fluvio latency run.
    #[arg(long, default_value_t = 20_000)]
    pub fluvio_latency_transactions: u64,
    /// Simulated days of the --fluvio throughput stream (5000 cards).
    #[arg(long, default_value_t = 11)]
    pub fluvio_days: u32,
    /// Instead: a soak run. The service's engine (the topology's engine
    /// settings) takes --soak-days of event time at --soak-tx-per-day over
    /// cards and merchants that keep changing; each day's entry counts and
    /// RSS go to OUT/soak.csv and OUT/soak.svg, with a summary.
    #[arg(long)]
    pub soak: bool,
    /// Days of event time of the --soak run.
    #[arg(long, default_value_t = 365)]
    pub soak_days: u32,
    /// Transactions per day of the --soak run (constant).
    #[arg(long, default_value_t = 20_000)]
    pub soak_tx_per_day: u64,
    /// Seed of the --soak stream.
    #[arg(long, default_value_t = 42)]
    pub soak_seed: u64,
    /// Instead: write the stream with its feature vectors as CSV (for
    /// benches/river_compare.py), then print one JSON line of fraudstream's
    /// figures on the same stream.
    #[arg(long, value_name = "PATH")]
    pub export_stream: Option<PathBuf>,
}

/// Flags of `fraudstream simulate`.
#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Where to: files under --out, or Fluvio topics (address from
    /// --set fluvio.address=..., FLUVIO_SC_ADDR, or the Fluvio profile).
    #[arg(long, value_enum, default_value_t = Target::Files)]
    pub to: Target,
    /// Fluvio topic for transactions (with --to fluvio).
    #[arg(long, default_value = "transactions")]
    pub topic: String,
    /// Fluvio topic for labels (with --to fluvio); "none" publishes no labels.
    #[arg(long, default_value = "labels")]
    pub labels_topic: String,
    /// Take the simulator settings from this topology's `[source]` (default: the built-in one).
    #[arg(long)]
    pub topology: Option<PathBuf>,
    /// Override a key of the topology, e.g. --set source.cards=1000 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Output folder.
    #[arg(long, default_value = "data/sim")]
    pub out: PathBuf,
    /// File format.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,
    /// Simulated days (overrides the topology).
    #[arg(long)]
    pub days: Option<u32>,
    /// Number of cards (overrides the topology).
    #[arg(long)]
    pub cards: Option<u32>,
    /// Seed (overrides the topology).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Events per second (default: as fast as possible).
    #[arg(long)]
    pub rate: Option<f64>,
    /// With --to fluvio: key records by card (default) or by merchant (for
    /// merchant stages that each own partitions of the transactions).
    #[arg(long, value_enum, default_value_t = crate::commands::simulate::KeyBy::Card)]
    pub key: crate::commands::simulate::KeyBy,
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

#[derive(Subcommand)]
pub enum ClusterAction {
    /// Register a custom SPU with the SC, as `fluvio cluster spu register`
    /// does (idempotent; exits 1 if its id or name is registered with other
    /// addresses). Waits for the SC while it starts.
    RegisterSpu(RegisterSpuArgs),
}

/// Flags of `fraudstream cluster register-spu`.
#[derive(Args, Debug)]
pub struct RegisterSpuArgs {
    /// SPU id (the `-i` of `fluvio-run spu`).
    #[arg(long)]
    pub id: i32,
    /// Name in the SC (default: custom-spu-ID, as the Fluvio CLI names it).
    #[arg(long)]
    pub name: Option<String>,
    /// Public address clients dial (HOST:PORT).
    #[arg(long, value_name = "HOST:PORT")]
    pub public: HostPort,
    /// Address that clients with `use_spu_local_address` dial instead
    /// (HOST:PORT; e.g. the SPU's name on a Docker network).
    #[arg(long, value_name = "HOST:PORT")]
    pub local: Option<HostPort>,
    /// Private address other SPUs dial (HOST:PORT).
    #[arg(long, value_name = "HOST:PORT")]
    pub private: HostPort,
    /// SC address (default: FLUVIO_SC_ADDR, then the Fluvio profile).
    #[arg(long, value_name = "HOST:PORT")]
    pub sc: Option<String>,
    /// Connection attempts while the SC starts (backoff from 500 ms,
    /// doubling, at most 10 s).
    #[arg(long, default_value_t = 20)]
    pub attempts: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Files under --out.
    Files,
    /// Fluvio topics.
    Fluvio,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// Comma-separated values.
    Csv,
    /// JSON lines.
    Jsonl,
}
