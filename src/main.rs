//! The `fraudstream` command: parses flags, runs the library, reports errors.

use anyhow::Context;
use clap::Parser;
use fraudstream::cli::{Cli, Command, Format, Target, TopicsAction};
use fraudstream::config::{FileFormat, SourceConfig, Topology};
use fraudstream::pipeline::{run, RunOptions};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

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
            run(&t, &RunOptions { quiet, pace: None })
                .with_context(|| format!("running {}", t.file))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            topology,
            set,
            workers,
            rate_fraction,
            out,
            no_paced,
            export_stream,
            fluvio,
            fluvio_rate,
            fluvio_latency_transactions,
            fluvio_days,
        } => {
            anyhow::ensure!(
                rate_fraction > 0.0 && rate_fraction <= 1.0,
                "--rate-fraction must be in (0, 1]"
            );
            let t = load(topology.as_ref(), &set)?;
            if fluvio {
                anyhow::ensure!(
                    fluvio_rate.is_finite() && fluvio_rate > 0.0,
                    "--fluvio-rate must be a positive number of transactions per second"
                );
                let opts = fraudstream::bench_fluvio::FluvioBenchOptions {
                    sim: fraudstream_sim::SimConfig {
                        days: fluvio_days.max(1),
                        ..Default::default()
                    },
                    rate: fluvio_rate,
                    latency_transactions: fluvio_latency_transactions.max(1),
                };
                let r = fraudstream::bench_fluvio::bench_fluvio(&t, &opts, |m| eprintln!("{m}"))?;
                std::fs::create_dir_all(&out)?;
                let path = out.join("bench-fluvio.json");
                std::fs::write(&path, serde_json::to_vec_pretty(&r)?)?;
                let l = &r.end_to_end;
                println!(
                    "cluster {}: {} transactions + {} labels\n  \
                     publish            {:>10.0} records/s\n  \
                     plain consumer     {:>10.0} records/s (transaction topic)\n  \
                     engine             {:>10.0} transactions/s ({:.0} events/s) consume-score-produce\n  \
                     end to end, offered {:.0} events/s, {} transactions timed: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms\n  \
                     input topic alone (publish -> readable): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms\n\
                     wrote {}",
                    r.cluster,
                    r.transactions,
                    r.labels,
                    r.publish_records_per_sec,
                    r.plain_consumer_records_per_sec,
                    r.engine_transactions_per_sec,
                    r.engine_events_per_sec,
                    r.latency_offered_per_sec,
                    r.latency_transactions,
                    l.p50_ns as f64 / 1e6,
                    l.p90_ns as f64 / 1e6,
                    l.p99_ns as f64 / 1e6,
                    l.p999_ns as f64 / 1e6,
                    l.max_ns as f64 / 1e6,
                    r.input_topic.p50_ns as f64 / 1e6,
                    r.input_topic.p90_ns as f64 / 1e6,
                    r.input_topic.p99_ns as f64 / 1e6,
                    path.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(path) = export_stream {
                let rows = fraudstream::bench::export_stream(&t, &path)?;
                eprintln!("wrote {rows} rows to {}", path.display());
                let mut one = t.clone();
                one.engine.workers = 1;
                one.sinks.clear();
                let r = run(
                    &one,
                    &RunOptions {
                        quiet: true,
                        pace: None,
                    },
                )?;
                let line = serde_json::json!({
                    "engine": "fraudstream",
                    "transactions": r.input.transactions,
                    "labels": r.input.labels,
                    "seconds": r.throughput.seconds,
                    "transactions_per_sec": r.throughput.transactions_per_sec,
                    "roc_auc": r.metrics.overall.roc_auc,
                    "average_precision": r.metrics.overall.average_precision,
                    "last_days_roc_auc": r.metrics.last_days.roc_auc,
                    "last_days_average_precision": r.metrics.last_days.average_precision,
                });
                println!("{line}");
                return Ok(ExitCode::SUCCESS);
            }
            let cores = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            let mut workers = if workers.is_empty() {
                vec![1, cores]
            } else {
                workers
            };
            workers.dedup();
            anyhow::ensure!(
                workers.iter().all(|&w| (1..=256).contains(&w)),
                "--workers takes counts from 1 to 256"
            );
            let report = fraudstream::bench::bench(
                &t,
                &fraudstream::bench::BenchOptions {
                    workers,
                    rate_fraction,
                    out: out.clone(),
                    paced: !no_paced,
                },
                |m| eprintln!("{m}"),
            )?;
            print!("{}", fraudstream::bench::table(&report));
            println!(
                "wrote {} and {}",
                out.join("bench.json").display(),
                out.join("bench.svg").display()
            );
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
        Command::Topics {
            action: TopicsAction::Create { topology, set },
        } => {
            let t = load(Some(&topology), &set)?;
            let needs = fraudstream::cluster::topics_of(&t);
            anyhow::ensure!(!needs.is_empty(), "{}: names no Fluvio topic", t.file);
            let rt = tokio::runtime::Runtime::new()?;
            let done = rt.block_on(async {
                let (fluvio, address) = fraudstream::cluster::connect(&t.fluvio).await?;
                let done = fraudstream::cluster::create_topics(&fluvio, &needs).await?;
                anyhow::Ok((done, address))
            })?;
            let (done, address) = done;
            let mut mismatched = false;
            for (need, outcome) in done {
                use fraudstream::cluster::TopicOutcome;
                let what = match outcome {
                    TopicOutcome::Created => "created".to_string(),
                    TopicOutcome::Exists => "exists".to_string(),
                    TopicOutcome::ExistsWithPartitions(n) => {
                        mismatched = true;
                        format!("exists with {n} partitions (left as is)")
                    }
                };
                println!(
                    "{}: {} partition(s), for {}: {what}",
                    need.name, need.partitions, need.role
                );
            }
            println!("cluster: {address}");
            Ok(if mismatched {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Simulate {
            to,
            topic,
            labels_topic,
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
            if to == Target::Fluvio {
                let labels = (labels_topic != "none").then_some(labels_topic.as_str());
                let rt = tokio::runtime::Runtime::new()?;
                let started = std::time::Instant::now();
                let done = rt.block_on(async {
                    let (fluvio, address) = fraudstream::cluster::connect(&t.fluvio).await?;
                    if !bar.is_hidden() {
                        bar.println(format!("publishing to {address}"));
                    }
                    let all = |_| true;
                    fraudstream::simulate::publish(
                        cfg,
                        &fluvio,
                        &topic,
                        labels,
                        rate,
                        all,
                        |p, n| {
                            bar.set_position((p * 1000.0) as u64);
                            let secs = started.elapsed().as_secs_f64().max(1e-9);
                            bar.set_message(format!("{n} events, {:.0}/s", n as f64 / secs));
                        },
                    )
                    .await
                })?;
                bar.finish_and_clear();
                println!(
                    "published {} transactions ({} fraud) to {topic} and {} labels to {} in {:.1} s",
                    done.transactions,
                    done.frauds,
                    done.labels,
                    labels.unwrap_or("(none)"),
                    started.elapsed().as_secs_f64()
                );
                return Ok(ExitCode::SUCCESS);
            }
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
