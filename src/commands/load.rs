//! `fraudstream load`: a load generator for the scoring API
//! ([`crate::exec::api`]).
//!
//! Open loop by default: request `i` is due at `start + i / rate`, whatever
//! the answers' pace, and a request sent late because its connection was
//! still waiting for an answer counts its latency from when it was due, so
//! a stall of the server shows in the percentiles instead of slowing the
//! offer (no coordinated omission, as wrk2). One sent on time counts from
//! when it was sent (the timer's millisecond tick is the generator's delay). Each connection owns every
//! `connections`-th request: a request waits only for its own connection.
//! With `--rate 0` it runs closed loop instead (each connection sends as
//! soon as its answer is in): the saturation throughput.
//!
//! The requests carry simulated transactions (the built-in simulator,
//! `--cards`, `--seed`), `--batch` per request, in event-time order across
//! the connections, so the engine sees realistic features.

use crate::commands::cli::LoadArgs;
use anyhow::Context;
use axum::body::{Body, Bytes};
use fraudstream_sim::{SimConfig, SimEvent, Simulator};
use hdrhistogram::Histogram;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Latency percentiles, microseconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50_us: f64,
    /// 90th.
    pub p90_us: f64,
    /// 99th.
    pub p99_us: f64,
    /// 99.9th.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
}

/// What a load run measured (`--out` writes it as JSON).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct LoadReport {
    /// The API's address.
    pub target: String,
    /// Offered requests per second (0: closed loop).
    pub offered_rate: f64,
    /// Transactions per request.
    pub batch: usize,
    /// Connections.
    pub connections: usize,
    /// Seconds measured (after the warm-up).
    pub seconds: f64,
    /// Requests due in the measured window.
    pub requests: u64,
    /// Answered 200.
    pub ok: u64,
    /// Answered otherwise, by status.
    pub errors_by_status: BTreeMap<u16, u64>,
    /// Failed without an answer (connection refused or reset).
    pub transport_errors: u64,
    /// Requests answered 200 per second.
    pub requests_per_sec: f64,
    /// Transactions answered 200 per second.
    pub transactions_per_sec: f64,
    /// Latency of the requests answered 200, from when each was due.
    pub latency: Percentiles,
}

impl LoadReport {
    /// The terminal summary.
    pub fn summary(&self) -> String {
        let errors: u64 = self.errors_by_status.values().sum::<u64>() + self.transport_errors;
        let l = &self.latency;
        format!(
            "fraudstream load: {} ({}, batch {}, {} connections, {:.1} s)\n  \
             answered     {} ok of {} requests, {} errors {:?} (+{} transport)\n  \
             throughput   {:.0} requests/s, {:.0} transactions/s\n  \
             latency      p50 {:.0} µs, p90 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs (from when each request was sent, or due when sent late)",
            self.target,
            if self.offered_rate > 0.0 {
                format!("offered {:.0} requests/s", self.offered_rate)
            } else {
                "closed loop".to_string()
            },
            self.batch,
            self.connections,
            self.seconds,
            self.ok,
            self.requests,
            errors,
            self.errors_by_status,
            self.transport_errors,
            self.requests_per_sec,
            self.transactions_per_sec,
            l.p50_us,
            l.p90_us,
            l.p99_us,
            l.p999_us,
            l.max_us,
        )
    }
}

/// Request bodies of `requests` requests of `batch` simulated transactions.
fn bodies(requests: usize, batch: usize, cards: u32, seed: u64) -> anyhow::Result<Vec<Bytes>> {
    let cfg = SimConfig {
        cards,
        seed,
        // Enough days for the transactions asked for: the simulator makes
        // about 1.9 a card a day, 1.5 leaves a margin.
        days: ((requests * batch) as f64 / (cards as f64 * 1.5))
            .ceil()
            .clamp(1.0, 3650.0) as u32,
        ..SimConfig::default()
    };
    let sim = Simulator::new(cfg).map_err(|e| anyhow::anyhow!("simulator: {}", e.join("; ")))?;
    let mut out = Vec::with_capacity(requests);
    let mut body = Vec::new();
    let mut in_body = 0;
    for e in sim {
        let SimEvent::Transaction(t) = e else {
            continue;
        };
        body.push(if in_body == 0 && batch > 1 {
            b'['
        } else if batch > 1 {
            b','
        } else {
            b' '
        });
        crate::commands::simulate::write_tx(&mut body, &t, crate::config::FileFormat::Jsonl)?;
        in_body += 1;
        if in_body == batch {
            if batch > 1 {
                body.push(b']');
            }
            out.push(Bytes::from(std::mem::take(&mut body)));
            in_body = 0;
            if out.len() == requests {
                break;
            }
        }
    }
    anyhow::ensure!(!out.is_empty(), "the simulator made no transactions");
    Ok(out)
}

/// What one connection saw.
struct Seen {
    latency: Histogram<u64>,
    ok: u64,
    requests: u64,
    errors: BTreeMap<u16, u64>,
    transport: u64,
}

/// When a connection sends: the schedule's start, the start of the
/// measured window, the end, and the offered rate (0: closed loop).
#[derive(Clone, Copy)]
struct Schedule {
    start: tokio::time::Instant,
    from: tokio::time::Instant,
    end: tokio::time::Instant,
    rate: f64,
}

/// One connection: send requests `first`, `first + step`, ... of the
/// schedule (or, closed loop, as fast as answers come) until its end;
/// count only those due in the measured window.
async fn connection(
    addr: String,
    bodies: Arc<Vec<Bytes>>,
    first: usize,
    step: usize,
    at: Schedule,
) -> anyhow::Result<Seen> {
    let Schedule {
        start,
        from,
        end,
        rate,
    } = at;
    let mut seen = Seen {
        latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        ok: 0,
        requests: 0,
        errors: BTreeMap::new(),
        transport: 0,
    };
    let mut sender = None;
    let mut i = first;
    loop {
        let due = if rate > 0.0 {
            start + Duration::from_secs_f64(i as f64 / rate)
        } else {
            tokio::time::Instant::now()
        };
        if due >= end {
            break;
        }
        // Ahead of schedule: wait, and count from when the timer woke (it
        // wakes on a millisecond tick: up to 1 ms late, the generator's
        // delay, not the server's). Behind schedule (this connection's last
        // answer came late): send now, and count from when it was due.
        let sent = if tokio::time::Instant::now() < due {
            tokio::time::sleep_until(due).await;
            tokio::time::Instant::now()
        } else {
            due
        };
        let counted = due >= from;
        if sender.is_none() {
            let stream = tokio::net::TcpStream::connect(&addr)
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            stream.set_nodelay(true)?;
            let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            sender = Some(s);
        }
        let s = sender.as_mut().expect("connected above");
        let req = hyper::Request::post("/v1/score")
            .header(hyper::header::HOST, addr.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Body::from(bodies[i % bodies.len()].clone()))?;
        let answer = match s.send_request(req).await {
            Ok(r) => {
                let status = r.status().as_u16();
                // Read the whole answer: the request is done when it is in.
                match axum::body::to_bytes(Body::new(r.into_body()), usize::MAX).await {
                    Ok(_) => Some(status),
                    Err(_) => None,
                }
            }
            Err(_) => None,
        };
        let took = sent.elapsed();
        if counted {
            seen.requests += 1;
            match answer {
                Some(200) => {
                    seen.ok += 1;
                    seen.latency
                        .saturating_record(took.as_micros().max(1) as u64);
                }
                Some(code) => *seen.errors.entry(code).or_default() += 1,
                None => seen.transport += 1,
            }
        }
        if answer.is_none() {
            sender = None; // reconnect
        }
        i += step;
    }
    Ok(seen)
}

/// Run a load against a scoring API; returns what it measured.
pub fn run(a: &LoadArgs) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(a.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(a.batch > 0, "--batch must be at least 1");
    anyhow::ensure!(a.duration > 0.0, "--duration must be above 0 seconds");
    let addr = a
        .target
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let total = a.warmup + a.duration;
    let requests = if a.rate > 0.0 {
        (a.rate * total).ceil() as usize
    } else {
        // Closed loop: a pool, sent round and round.
        200_000 / a.batch.min(200_000)
    };
    let bodies = Arc::new(bodies(requests.max(1), a.batch, a.cards, a.seed)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads.max(1))
        .enable_all()
        .build()?;
    let seen = rt.block_on(async {
        let start = tokio::time::Instant::now() + Duration::from_millis(50);
        let from = start + Duration::from_secs_f64(a.warmup);
        let end = start + Duration::from_secs_f64(total);
        let at = Schedule {
            start,
            from,
            end,
            rate: a.rate,
        };
        let tasks: Vec<_> = (0..a.connections)
            .map(|k| {
                tokio::spawn(connection(
                    addr.clone(),
                    bodies.clone(),
                    k,
                    a.connections,
                    at,
                ))
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await??);
        }
        anyhow::Ok(all)
    })?;
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut report = LoadReport {
        target: addr,
        offered_rate: a.rate,
        batch: a.batch,
        connections: a.connections,
        seconds: a.duration,
        ..LoadReport::default()
    };
    for s in seen {
        latency.add(&s.latency).expect("same bounds");
        report.ok += s.ok;
        report.requests += s.requests;
        report.transport_errors += s.transport;
        for (k, v) in s.errors {
            *report.errors_by_status.entry(k).or_default() += v;
        }
    }
    report.requests_per_sec = report.ok as f64 / a.duration;
    report.transactions_per_sec = report.requests_per_sec * a.batch as f64;
    let q = |p: f64| latency.value_at_quantile(p) as f64;
    report.latency = Percentiles {
        p50_us: q(0.5),
        p90_us: q(0.9),
        p99_us: q(0.99),
        p999_us: q(0.999),
        max_us: latency.max() as f64,
    };
    Ok(report)
}

/// `fraudstream load`: run, print, and write `--out` when asked.
pub fn command(a: &LoadArgs) -> anyhow::Result<()> {
    let report = run(a)?;
    println!("{}", report.summary());
    if let Some(path) = &a.out {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
