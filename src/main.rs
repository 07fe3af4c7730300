//! The `fraudstream` command: parses flags, runs the library, reports errors.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use fraudstream::config::{FileFormat, SourceConfig, Topology};
use fraudstream::pipeline::{run, RunOptions};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "fraudstream",
    version,
    about = "Streaming online-learning fraud detection engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    /// Write simulated transactions and labels to files.
    Simulate {
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
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Csv,
    Jsonl,
}

fn load(topology: Option<&PathBuf>, set: &[String]) -> anyhow::Result<Topology> {
    let t = match topology {
        Some(p) => Topology::from_file(p, set),
        None => Topology::embedded(set),
    };
    t.map_err(|e| anyhow::anyhow!("{e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run {
            topology,
            set,
            quiet,
        } => {
            let t = load(topology.as_ref(), &set)?;
            run(&t, &RunOptions { quiet }).with_context(|| format!("running {}", t.file))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { files } => {
            let mut failed = false;
            for f in &files {
                match Topology::from_file(f, &[]) {
                    Ok(_) => println!("{}: ok", f.display()),
                    Err(e) => {
                        failed = true;
                        eprint!("{e}");
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Simulate {
            topology,
            set,
            out,
            format,
            days,
            cards,
            seed,
            rate,
        } => {
            if let Some(r) = rate {
                anyhow::ensure!(
                    r.is_finite() && r > 0.0,
                    "--rate must be a positive number of events per second"
                );
            }
            let t = load(topology.as_ref(), &set)?;
            let SourceConfig::Simulator(mut cfg) = t.source else {
                anyhow::bail!(
                    "{}: [source] is not a simulator; simulate needs simulator settings",
                    t.file
                );
            };
            cfg.days = days.unwrap_or(cfg.days);
            cfg.cards = cards.unwrap_or(cfg.cards);
            cfg.seed = seed.unwrap_or(cfg.seed);
            let format = match format {
                Format::Csv => FileFormat::Csv,
                Format::Jsonl => FileFormat::Jsonl,
            };
            let bar = if std::io::stderr().is_terminal() {
                let b = ProgressBar::new(1000);
                b.set_style(
                    ProgressStyle::with_template(
                        "{bar:30} {percent:>3}% {msg} [{elapsed_precise}, ETA {eta}]",
                    )
                    .expect("valid template"),
                );
                b
            } else {
                ProgressBar::hidden()
            };
            let done = fraudstream::simulate::simulate(cfg, &out, format, rate, |p, n| {
                bar.set_position((p * 1000.0) as u64);
                bar.set_message(format!("{n} events"));
            })?;
            bar.finish_and_clear();
            println!(
                "wrote {} transactions ({} fraud) to {} and {} labels to {}",
                done.transactions,
                done.frauds,
                done.transactions_path.display(),
                done.labels,
                done.labels_path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
