//! `fraudstream bench --fluvio`: the service against a real cluster, in one
//! run, on fresh topics (names get a unique suffix; they are left behind for
//! inspection):
//!
//! 1. publish a simulated stream (transactions and labels) at full speed;
//! 2. a plain consumer reads the transaction topic start to end (the
//!    ceiling any consumer of that topic on this cluster has);
//! 3. the engine consumes, scores and produces the same stream (its rate over
//!    the time it was busy, first to last event), and so does the null
//!    pipeline: the service with no engine work (see
//!    [`ServiceOptions::null_pipeline`](crate::exec::service::ServiceOptions)),
//!    the floor of this path;
//! 4. latency: with the engine running, publish transactions at a fixed rate
//!    and time each one from `send` to its score record being readable; the
//!    same again with the null pipeline.

use crate::commands::cli::BenchArgs;
use crate::config::{LabelSource, SourceConfig, Topology};
use crate::connectors::sinks::report::Latency;
use anyhow::Context;
use fluvio::consumer::ConsumerConfigExt;
use fluvio::{Fluvio, Offset};
use fraudstream_sim::SimConfig;
use futures_util::StreamExt;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Settings of a Fluvio bench.
#[derive(Clone, Debug)]
pub struct FluvioBenchOptions {
    /// Simulator settings of the throughput stream.
    pub sim: SimConfig,
    /// Offered rate (events per second: transactions and labels) of the latency run.
    pub rate: f64,
    /// Transactions in the latency run.
    pub latency_transactions: u64,
}

/// What a Fluvio bench measured.
#[derive(Clone, Debug, Serialize)]
pub struct FluvioBenchReport {
    /// SC address.
    pub cluster: String,
    /// Transactions in the throughput stream.
    pub transactions: u64,
    /// Labels in the throughput stream.
    pub labels: u64,
    /// Publishing rate (records per second, both topics).
    pub publish_records_per_sec: f64,
    /// Plain consumer: records per second reading the transaction topic.
    pub plain_consumer_records_per_sec: f64,
    /// Engine: transactions per second consumed, scored and produced.
    pub engine_transactions_per_sec: f64,
    /// Engine: events (transactions and labels) per second.
    pub engine_events_per_sec: f64,
    /// The null pipeline (the service without engine work): transactions
    /// per second on the same stream.
    pub null_pipeline_transactions_per_sec: f64,
    /// Engine transactions/s over the null pipeline's.
    pub engine_over_null_throughput: f64,
    /// Offered events per second of the latency run.
    pub latency_offered_per_sec: f64,
    /// Transactions timed.
    pub latency_transactions: u64,
    /// Publish → score readable, in ns.
    pub end_to_end: Latency,
    /// Publish → the transaction itself readable on the input topic (the
    /// cluster's own latency, without the engine), in ns.
    pub input_topic: Latency,
    /// Publish → score readable with the null pipeline instead of the
    /// engine, same offered rate, in ns.
    pub null_pipeline_end_to_end: Latency,
}

fn with_topics(t: &Topology, suffix: &str) -> anyhow::Result<Topology> {
    let mut t = t.clone();
    if let SourceConfig::Fluvio(f) = &mut t.source {
        f.topic = format!("{}-{suffix}", f.topic);
        f.partitions.clear();
        f.consumer = None;
        f.start = crate::config::StartAt::Beginning;
    } else {
        anyhow::bail!(
            "{}: bench --fluvio needs a topology with source.type = \"fluvio\"",
            t.file
        );
    }
    if let LabelSource::Fluvio(f) = &mut t.labels.source {
        f.topic = format!("{}-{suffix}", f.topic);
        f.partitions.clear();
        f.consumer = None;
        f.start = crate::config::StartAt::Beginning;
    }
    for s in &mut t.sinks {
        if let crate::config::SinkConfig::Records {
            to: crate::config::RecordTarget::Topic(o),
            ..
        } = s
        {
            o.topic = format!("{}-{suffix}", o.topic);
        }
    }
    t.record_sinks_only();
    t.checkpoint = None;
    t.service.listen = None;
    t.service.stop_when_idle_ms = 1000;
    t.model.save = None;
    Ok(t)
}

fn topics(t: &Topology) -> (String, Option<String>, String) {
    let SourceConfig::Fluvio(f) = &t.source else {
        unreachable!("checked by with_topics")
    };
    let labels = match &t.labels.source {
        LabelSource::Fluvio(l) => Some(l.topic.clone()),
        _ => None,
    };
    let scores = t
        .sinks
        .iter()
        .find(|s| {
            matches!(
                s,
                crate::config::SinkConfig::Records {
                    records: crate::config::Records::Scores,
                    ..
                }
            )
        })
        .and_then(|s| s.topic())
        .map(|o| o.topic.clone())
        .unwrap_or_default();
    (f.topic.clone(), labels, scores)
}

/// Read `n` records of `topic` (all partitions) from the beginning; returns
/// the seconds from the first record to the n-th.
async fn read_records(fluvio: &Fluvio, topic: &str, n: u64) -> anyhow::Result<f64> {
    let cfg = ConsumerConfigExt::builder()
        .topic(topic.to_string())
        .offset_start(Offset::beginning())
        .max_bytes(64 << 20)
        .build()?;
    let mut stream = fluvio.consumer_with_config(cfg).await?;
    let mut seen = 0u64;
    let mut first = None;
    while seen < n {
        match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
            Ok(Some(Ok(_))) => {
                first.get_or_insert_with(Instant::now);
                seen += 1;
            }
            Ok(Some(Err(e))) => anyhow::bail!("reading {topic}: {e:?}"),
            Ok(None) | Err(_) => anyhow::bail!("reading {topic}: {seen} of {n} records arrived"),
        }
    }
    Ok(first.map_or(0.0, |f| f.elapsed().as_secs_f64()))
}

#[derive(serde::Deserialize)]
struct TxIdOnly {
    tx_id: u64,
}

/// Time from each transaction's send (`sent`, ns since `origin`) to its
/// record (by `tx_id`) arriving on `stream`, for the first `n` ids.
async fn time_records(
    mut stream: impl futures_util::Stream<
            Item = Result<fluvio::consumer::Record, fluvio::dataplane::link::ErrorCode>,
        > + Unpin,
    sent: Arc<Vec<AtomicU64>>,
    n: u64,
    origin: Instant,
    what: &str,
) -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3)
        .expect("valid bounds");
    let mut got = 0u64;
    while got < n {
        match tokio::time::timeout(Duration::from_secs(60), stream.next()).await {
            Ok(Some(Ok(r))) => {
                let now = origin.elapsed().as_nanos() as u64;
                let Ok(s) = serde_json::from_slice::<TxIdOnly>(r.value()) else {
                    continue;
                };
                let t0 = sent.get(s.tx_id as usize).map_or(0, |t| t.load(Relaxed));
                if t0 > 0 {
                    h.saturating_record(now.saturating_sub(t0).max(1));
                    got += 1;
                }
            }
            _ => anyhow::bail!("latency run: {got} of {n} {what} records arrived"),
        }
    }
    Ok(h)
}

/// What the throughput phases measured (steps 1 to 3).
struct ThroughputRun {
    published: crate::commands::simulate::Published,
    publish_secs: f64,
    plain_secs: f64,
    engine: crate::connectors::sinks::report::RunReport,
    null: crate::connectors::sinks::report::RunReport,
}

/// Steps 1 to 3 on the topics of `tp`: publish the simulated stream, read it
/// with a plain consumer, then run the engine on it.
fn throughput_run(
    rt: &tokio::runtime::Runtime,
    fluvio: &Fluvio,
    address: &impl std::fmt::Display,
    tp: &Topology,
    opts: &FluvioBenchOptions,
    log: &mut impl FnMut(&str),
) -> anyhow::Result<ThroughputRun> {
    // 1. Publish the throughput stream.
    let (tx_topic, label_topic, _) = topics(tp);
    log(&format!(
        "publishing the simulated stream to {tx_topic} on {address}"
    ));
    let began = Instant::now();
    let published = rt.block_on(crate::commands::simulate::publish(
        opts.sim.clone(),
        fluvio,
        crate::commands::simulate::PublishTo {
            tx_topic: &tx_topic,
            label_topic: label_topic.as_deref(),
            rate: None,
            key: crate::commands::simulate::KeyBy::Card,
        },
        |_| true,
        |_, _| {},
    ))?;
    let publish_secs = began.elapsed().as_secs_f64();

    // 2. Plain consumer.
    log("plain consumer: reading the transaction topic");
    let plain_secs = rt.block_on(read_records(fluvio, &tx_topic, published.transactions))?;

    // 3. The engine on the same stream, then the null pipeline.
    log("engine: consume, score, produce");
    let engine = crate::exec::service::run(tp, &service_options(false))
        .context("the engine on the throughput stream")?;
    log("null pipeline: consume, produce (no engine work)");
    let null_tp = with_outputs(tp, "null");
    rt.block_on(crate::connectors::cluster::create_topics(
        fluvio,
        &crate::connectors::cluster::topics_of(&null_tp),
    ))?;
    let null = crate::exec::service::run(&null_tp, &service_options(true))
        .context("the null pipeline on the throughput stream")?;
    Ok(ThroughputRun {
        published,
        publish_secs,
        plain_secs,
        engine,
        null,
    })
}

/// Quiet service options, with or without the engine.
fn service_options(null_pipeline: bool) -> crate::exec::service::ServiceOptions {
    crate::exec::service::ServiceOptions {
        quiet: true,
        null_pipeline,
    }
}

/// `t` with its output topics renamed `TOPIC-suffix`.
fn with_outputs(t: &Topology, suffix: &str) -> Topology {
    let mut t = t.clone();
    for s in &mut t.sinks {
        if let crate::config::SinkConfig::Records {
            to: crate::config::RecordTarget::Topic(o),
            ..
        } = s
        {
            o.topic = format!("{}-{suffix}", o.topic);
        }
    }
    t
}

/// Step 4 on the topics of `tl`, with the engine running on them: the
/// latency to the input topic and to the score topic, in ns.
fn latency_run(
    rt: &tokio::runtime::Runtime,
    fluvio: &Fluvio,
    tl: &Topology,
    opts: &FluvioBenchOptions,
    null_pipeline: bool,
    log: &mut impl FnMut(&str),
) -> anyhow::Result<(hdrhistogram::Histogram<u64>, hdrhistogram::Histogram<u64>)> {
    let (ltx, llabels, lscores) = topics(tl);
    log(&format!(
        "latency{}: {} transactions timed, {} events per second offered, through {ltx} -> {lscores}",
        if null_pipeline { " (null pipeline)" } else { "" },
        opts.latency_transactions, opts.rate
    ));
    let n = opts.latency_transactions;
    let sent_ns: Arc<Vec<AtomicU64>> = Arc::new((0..=n).map(|_| AtomicU64::new(0)).collect());
    let origin = Instant::now();
    let tl_engine = tl.clone();
    let engine = std::thread::spawn(move || {
        crate::exec::service::run(&tl_engine, &service_options(null_pipeline))
    });
    let timing = LatencyTiming {
        fluvio,
        sent_ns,
        n,
        origin,
    };
    let hists = rt.block_on(timing.run(&ltx, llabels.as_deref(), &lscores, opts));
    let _ = engine.join();
    hists
}

/// The paced publish of the latency run and the two timed readers.
struct LatencyTiming<'a> {
    fluvio: &'a Fluvio,
    /// Send time of each transaction (ns since `origin`; 0 = not sent).
    sent_ns: Arc<Vec<AtomicU64>>,
    /// Transactions timed.
    n: u64,
    origin: Instant,
}

impl LatencyTiming<'_> {
    /// Publish at `opts.rate` to `ltx` (labels to `llabels`) while timing
    /// each transaction's arrival on `ltx` and its score's on `lscores`.
    async fn run(
        &self,
        ltx: &str,
        llabels: Option<&str>,
        lscores: &str,
        opts: &FluvioBenchOptions,
    ) -> anyhow::Result<(hdrhistogram::Histogram<u64>, hdrhistogram::Histogram<u64>)> {
        let (n, origin) = (self.n, self.origin);
        let plain = time_records(
            self.open(ltx).await?,
            self.sent_ns.clone(),
            n,
            origin,
            "transactions",
        );
        let scored = time_records(
            self.open(lscores).await?,
            self.sent_ns.clone(),
            n,
            origin,
            "scores",
        );
        let sent = self.sent_ns.clone();
        let writer = crate::commands::simulate::publish(
            opts.sim.clone(),
            self.fluvio,
            crate::commands::simulate::PublishTo {
                tx_topic: ltx,
                label_topic: llabels,
                rate: Some(opts.rate),
                key: crate::commands::simulate::KeyBy::Card,
            },
            move |tx_id| {
                if let Some(slot) = sent.get(tx_id as usize) {
                    slot.store(origin.elapsed().as_nanos() as u64, Relaxed);
                }
                tx_id < n
            },
            |_, _| {},
        );
        let (p, s, w) = tokio::join!(plain, scored, writer);
        w?;
        anyhow::Ok((p?, s?))
    }

    /// A consumer of `topic` from the beginning.
    async fn open(
        &self,
        topic: &str,
    ) -> anyhow::Result<
        impl futures_util::Stream<
                Item = Result<fluvio::consumer::Record, fluvio::dataplane::link::ErrorCode>,
            > + Unpin,
    > {
        let cfg = ConsumerConfigExt::builder()
            .topic(topic.to_string())
            .offset_start(Offset::beginning())
            .build()?;
        self.fluvio.consumer_with_config(cfg).await
    }
}

/// Run the bench; `log` gets progress lines.
pub fn bench_fluvio(
    t: &Topology,
    opts: &FluvioBenchOptions,
    mut log: impl FnMut(&str),
) -> anyhow::Result<FluvioBenchReport> {
    let suffix = format!("bench{}", crate::exec::service::http::now_ms());
    let rt = tokio::runtime::Runtime::new()?;
    let tp = with_topics(t, &format!("{suffix}-t"))?;
    let tl = with_topics(t, &format!("{suffix}-l"))?;
    let tn = with_topics(t, &format!("{suffix}-n"))?;
    let (fluvio, address) = rt.block_on(crate::connectors::cluster::connect(&t.fluvio))?;
    for top in [&tp, &tl, &tn] {
        rt.block_on(crate::connectors::cluster::create_topics(
            &fluvio,
            &crate::connectors::cluster::topics_of(top),
        ))?;
    }
    let th = throughput_run(&rt, &fluvio, &address, &tp, opts, &mut log)?;
    let (plain_hist, hist) = latency_run(&rt, &fluvio, &tl, opts, false, &mut log)?;
    let (_, null_hist) = latency_run(&rt, &fluvio, &tn, opts, true, &mut log)?;
    let published = &th.published;
    let null_tps = th.null.throughput.transactions_per_sec;
    Ok(FluvioBenchReport {
        cluster: address.to_string(),
        transactions: published.transactions,
        labels: published.labels,
        publish_records_per_sec: (published.transactions + published.labels) as f64
            / th.publish_secs.max(1e-9),
        plain_consumer_records_per_sec: published.transactions as f64 / th.plain_secs.max(1e-9),
        engine_transactions_per_sec: th.engine.throughput.transactions_per_sec,
        engine_events_per_sec: th.engine.throughput.events_per_sec,
        null_pipeline_transactions_per_sec: null_tps,
        engine_over_null_throughput: th.engine.throughput.transactions_per_sec / null_tps.max(1e-9),
        latency_offered_per_sec: opts.rate,
        latency_transactions: opts.latency_transactions,
        end_to_end: Latency::of(&hist),
        input_topic: Latency::of(&plain_hist),
        null_pipeline_end_to_end: Latency::of(&null_hist),
    })
}

/// `fraudstream bench --fluvio`: run [`bench_fluvio`] for `t`, write
/// `bench-fluvio.json` and print the figures.
pub fn command(t: &Topology, a: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.fluvio_rate.is_finite() && a.fluvio_rate > 0.0,
        "--fluvio-rate must be a positive number of transactions per second"
    );
    let opts = FluvioBenchOptions {
        sim: SimConfig {
            days: a.fluvio_days.max(1),
            ..Default::default()
        },
        rate: a.fluvio_rate,
        latency_transactions: a.fluvio_latency_transactions.max(1),
    };
    let r = bench_fluvio(t, &opts, |m| eprintln!("{m}"))?;
    std::fs::create_dir_all(&a.out)?;
    let path = a.out.join("bench-fluvio.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&r)?)?;
    let l = &r.end_to_end;
    println!(
        "cluster {}: {} transactions + {} labels\n  \
         publish            {:>10.0} records/s\n  \
         plain consumer     {:>10.0} records/s (transaction topic)\n  \
         engine             {:>10.0} transactions/s ({:.0} events/s) consume-score-produce\n  \
         null pipeline      {:>10.0} transactions/s (engine at {:.0} % of it)\n  \
         end to end, offered {:.0} events/s, {} transactions timed: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms\n  \
         null pipeline end to end: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms\n  \
         input topic alone (publish -> readable): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms\n\
         wrote {}",
        r.cluster,
        r.transactions,
        r.labels,
        r.publish_records_per_sec,
        r.plain_consumer_records_per_sec,
        r.engine_transactions_per_sec,
        r.engine_events_per_sec,
        r.null_pipeline_transactions_per_sec,
        100.0 * r.engine_over_null_throughput,
        r.latency_offered_per_sec,
        r.latency_transactions,
        l.p50_ns as f64 / 1e6,
        l.p90_ns as f64 / 1e6,
        l.p99_ns as f64 / 1e6,
        l.p999_ns as f64 / 1e6,
        l.max_ns as f64 / 1e6,
        r.null_pipeline_end_to_end.p50_ns as f64 / 1e6,
        r.null_pipeline_end_to_end.p90_ns as f64 / 1e6,
        r.null_pipeline_end_to_end.p99_ns as f64 / 1e6,
        r.input_topic.p50_ns as f64 / 1e6,
        r.input_topic.p90_ns as f64 / 1e6,
        r.input_topic.p99_ns as f64 / 1e6,
        path.display()
    );
    Ok(())
}
