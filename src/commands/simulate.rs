//! `fraudstream simulate`: write simulated transactions and labels to files,
//! in the layout `topologies/replay-csv.toml` reads back.

use crate::commands::cli::{Format, SimulateArgs, Target};
use crate::config::{FileFormat, SourceConfig};
use crate::connectors::sinks::create_file;
use fraudstream_engine::time::DAY_MS;
use fraudstream_sim::{SimConfig, SimEvent, SimLabel, SimTransaction, Simulator};
use std::io::IsTerminal;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What `simulate` wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Simulated {
    /// Transactions file.
    pub transactions_path: PathBuf,
    /// Labels file.
    pub labels_path: PathBuf,
    /// Transactions written.
    pub transactions: u64,
    /// Labels written.
    pub labels: u64,
    /// Frauds among the transactions.
    pub frauds: u64,
}

/// Columns of the transactions file.
pub const TRANSACTION_COLUMNS: &str =
    "tx_id,ts,card_id,merchant_id,amount,currency,mcc,country,channel,lat,lon";

/// Write `YYYY-MM-DDTHH:MM:SS.sssZ` for epoch ms (no allocation).
pub fn write_rfc3339(out: &mut impl Write, ms: i64) -> std::io::Result<()> {
    let days = ms.div_euclid(DAY_MS);
    let rem = ms.rem_euclid(DAY_MS);
    // civil_from_days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    write!(
        out,
        "{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z"
    )
}

/// One record's fields written in order: CSV cells, or the members of a
/// JSON object (text quoted; an absent optional value is an empty cell in
/// CSV and no member in JSON).
struct Fields<'a, W: Write> {
    out: &'a mut W,
    json: bool,
    written: usize,
}

impl<'a, W: Write> Fields<'a, W> {
    fn new(out: &'a mut W, format: FileFormat) -> Self {
        Fields {
            out,
            json: format == FileFormat::Jsonl,
            written: 0,
        }
    }

    fn start(&mut self, name: &str) -> std::io::Result<()> {
        let lead = match (self.json, self.written) {
            (true, 0) => "{",
            (false, 0) => "",
            _ => ",",
        };
        self.written += 1;
        if self.json {
            write!(self.out, "{lead}\"{name}\":")
        } else {
            write!(self.out, "{lead}")
        }
    }

    fn number(&mut self, name: &str, v: impl std::fmt::Display) -> std::io::Result<()> {
        self.start(name)?;
        write!(self.out, "{v}")
    }

    fn text(&mut self, name: &str, v: impl std::fmt::Display) -> std::io::Result<()> {
        self.start(name)?;
        let q = if self.json { "\"" } else { "" };
        write!(self.out, "{q}{v}{q}")
    }

    fn time(&mut self, name: &str, ts_ms: i64) -> std::io::Result<()> {
        self.start(name)?;
        let q = if self.json { "\"" } else { "" };
        write!(self.out, "{q}")?;
        write_rfc3339(self.out, ts_ms)?;
        write!(self.out, "{q}")
    }

    fn optional(&mut self, name: &str, v: Option<f64>) -> std::io::Result<()> {
        match v {
            Some(v) => self.number(name, v),
            None if self.json => Ok(()),
            None => self.start(name),
        }
    }

    fn end(self) -> std::io::Result<()> {
        writeln!(self.out, "{}", if self.json { "}" } else { "" })
    }
}

/// One transaction in `format` (a JSON line is the topics' and the API's schema).
pub(crate) fn write_tx(
    out: &mut impl Write,
    t: &SimTransaction,
    format: FileFormat,
) -> std::io::Result<()> {
    let mut f = Fields::new(out, format);
    f.number("tx_id", t.tx_id)?;
    f.time("ts", t.ts_ms)?;
    f.text("card_id", format_args!("C{:07}", t.card))?;
    f.text("merchant_id", format_args!("T{:06}", t.merchant))?;
    f.number("amount", t.amount)?;
    f.text("currency", t.currency)?;
    f.text("mcc", t.mcc)?;
    f.text("country", t.country)?;
    f.text("channel", t.channel.as_str())?;
    f.optional("lat", t.location.map(|l| l.0))?;
    f.optional("lon", t.location.map(|l| l.1))?;
    f.end()
}

fn write_label(out: &mut impl Write, l: &SimLabel, format: FileFormat) -> std::io::Result<()> {
    let mut f = Fields::new(out, format);
    f.number("tx_id", l.tx_id)?;
    f.time("ts", l.ts_ms)?;
    match format {
        FileFormat::Csv => f.number("is_fraud", l.is_fraud as u8)?,
        FileFormat::Jsonl => f.number("is_fraud", l.is_fraud)?,
    }
    f.end()
}

/// How long to wait so that `events` sent since `started` keep to `rate`
/// events per second (`None`: no limit, or already behind).
fn ahead_of_rate(started: Instant, events: u64, rate: Option<f64>) -> Option<Duration> {
    let due = Duration::from_secs_f64(events as f64 / rate?);
    due.checked_sub(started.elapsed()).filter(|d| !d.is_zero())
}

/// Write the simulation `cfg` into `dir` as `transactions.EXT` and
/// `labels.EXT`. `rate` limits events per second (None: full speed);
/// `progress` is called with the share done now and then.
pub fn simulate(
    cfg: SimConfig,
    dir: &Path,
    format: FileFormat,
    rate: Option<f64>,
    mut progress: impl FnMut(f64, u64),
) -> anyhow::Result<Simulated> {
    let sim =
        Simulator::new(cfg).map_err(|e| anyhow::anyhow!("simulator settings: {}", e.join("; ")))?;
    let ext = format.as_str();
    let transactions_path = dir.join(format!("transactions.{ext}"));
    let labels_path = dir.join(format!("labels.{ext}"));
    let mut txs = BufWriter::with_capacity(1 << 16, create_file(&transactions_path)?);
    let mut labels = BufWriter::with_capacity(1 << 16, create_file(&labels_path)?);
    if format == FileFormat::Csv {
        writeln!(txs, "{TRANSACTION_COLUMNS}")?;
        writeln!(labels, "tx_id,ts,is_fraud")?;
    }
    let mut out = Simulated {
        transactions_path,
        labels_path,
        transactions: 0,
        labels: 0,
        frauds: 0,
    };
    let started = Instant::now();
    let mut events = 0u64;
    let mut sim = sim;
    while let Some(e) = sim.next() {
        events += 1;
        match e {
            SimEvent::Transaction(t) => {
                out.transactions += 1;
                out.frauds += t.fraud.is_some() as u64;
                write_tx(&mut txs, &t, format)?;
            }
            SimEvent::Label(l) => {
                out.labels += 1;
                write_label(&mut labels, &l, format)?;
            }
        }
        if let Some(wait) = ahead_of_rate(started, events, rate) {
            std::thread::sleep(wait);
        }
        if events % 65_536 == 0 {
            progress(sim.progress(), events);
        }
    }
    txs.flush()?;
    labels.flush()?;
    progress(1.0, events);
    Ok(out)
}

/// What [`publish`] sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Published {
    /// Transactions sent.
    pub transactions: u64,
    /// Labels sent.
    pub labels: u64,
    /// Frauds among the transactions.
    pub frauds: u64,
}

/// Where and how [`publish`] writes.
#[derive(Clone, Copy, Debug)]
pub struct PublishTo<'a> {
    /// Transactions topic.
    pub tx_topic: &'a str,
    /// Labels topic (none: labels are not published).
    pub label_topic: Option<&'a str>,
    /// Events per second (none: full speed).
    pub rate: Option<f64>,
    /// What records are keyed by.
    pub key: KeyBy,
}

/// What the records of `simulate --to fluvio` are keyed by, so which
/// transactions share a partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyBy {
    /// The card: instances that each own partitions see whole cards.
    #[default]
    Card,
    /// The merchant: merchant stages (`[stages]`) that each own partitions
    /// see whole merchants.
    Merchant,
}

/// Publish the simulation `cfg` to Fluvio: transactions to `tx_topic` and,
/// at their arrival times in the stream, labels to `label_topic` (when
/// given), as JSON records keyed by card (or merchant, `key`) id, so a
/// card's transactions and labels land in the same partition number of
/// equally partitioned topics.
/// `rate` limits events per second; `on_sent` is called with each
/// transaction's id once it is handed to the producer and stops the
/// stream when it returns false; `progress` is called now and then.
pub async fn publish(
    cfg: SimConfig,
    fluvio: &fluvio::Fluvio,
    to: PublishTo<'_>,
    mut on_sent: impl FnMut(u64) -> bool,
    mut progress: impl FnMut(f64, u64),
) -> anyhow::Result<Published> {
    use anyhow::Context;
    let PublishTo {
        tx_topic,
        label_topic,
        rate,
        key,
    } = to;
    let sim =
        Simulator::new(cfg).map_err(|e| anyhow::anyhow!("simulator settings: {}", e.join("; ")))?;
    let producer_cfg = fluvio::TopicProducerConfigBuilder::default()
        .linger(Duration::from_millis(5))
        .build()
        .map_err(|e| anyhow::anyhow!("producer settings: {e}"))?;
    let txp = fluvio
        .topic_producer_with_config(tx_topic, producer_cfg.clone())
        .await
        .with_context(|| format!("opening a producer on {tx_topic}"))?;
    let lp = match label_topic {
        Some(t) => Some(
            fluvio
                .topic_producer_with_config(t, producer_cfg)
                .await
                .with_context(|| format!("opening a producer on {t}"))?,
        ),
        None => None,
    };
    // Key of every transaction still waiting for its label (labels carry no card).
    let mut card_of: nohash_hasher::IntMap<u64, u32> = Default::default();
    let mut out = Published {
        transactions: 0,
        labels: 0,
        frauds: 0,
    };
    let started = Instant::now();
    let mut events = 0u64;
    let mut sim = sim;
    let mut buf = Vec::with_capacity(256);
    while let Some(e) = sim.next() {
        events += 1;
        buf.clear();
        match e {
            SimEvent::Transaction(t) => {
                out.transactions += 1;
                out.frauds += t.fraud.is_some() as u64;
                write_tx(&mut buf, &t, FileFormat::Jsonl)?;
                buf.pop(); // newline
                let entity = match key {
                    KeyBy::Card => t.card,
                    KeyBy::Merchant => t.merchant,
                };
                if lp.is_some() {
                    card_of.insert(t.tx_id, entity);
                }
                txp.send(record_key(key, entity), buf.clone())
                    .await
                    .with_context(|| format!("sending to {tx_topic}"))?;
                if !on_sent(t.tx_id) {
                    break;
                }
            }
            SimEvent::Label(l) => {
                let Some(lp) = &lp else { continue };
                out.labels += 1;
                write_label(&mut buf, &l, FileFormat::Jsonl)?;
                buf.pop(); // newline
                let key = match card_of.get(&l.tx_id).copied() {
                    Some(entity) => record_key(key, entity),
                    None => String::new(),
                };
                lp.send(key, buf.clone()).await.context("sending a label")?;
            }
        }
        if let Some(wait) = ahead_of_rate(started, events, rate) {
            tokio::time::sleep(wait).await;
        }
        if events % 16_384 == 0 {
            progress(sim.progress(), events);
        }
    }
    txp.flush().await.context("flushing transactions")?;
    if let Some(lp) = &lp {
        lp.flush().await.context("flushing labels")?;
    }
    progress(1.0, events);
    Ok(out)
}

/// `fraudstream simulate`: the simulator settings of a topology, overridden
/// by the flags, written to files or published to Fluvio, with progress.
pub fn command(a: &SimulateArgs) -> anyhow::Result<()> {
    if let Some(r) = a.rate {
        anyhow::ensure!(
            r.is_finite() && r > 0.0,
            "--rate must be a positive number of events per second"
        );
    }
    let t = super::load(a.topology.as_deref(), &a.set)?;
    let SourceConfig::Simulator(mut cfg) = t.source.clone() else {
        anyhow::bail!(
            "{}: [source] is not a simulator; simulate needs simulator settings",
            t.file
        );
    };
    cfg.days = a.days.unwrap_or(cfg.days);
    cfg.cards = a.cards.unwrap_or(cfg.cards);
    cfg.seed = a.seed.unwrap_or(cfg.seed);
    let format = match a.format {
        Format::Csv => FileFormat::Csv,
        Format::Jsonl => FileFormat::Jsonl,
    };
    let bar = crate::exec::pipeline::styled_bar(std::io::stderr().is_terminal());
    if a.to == Target::Fluvio {
        return publish_command(a, cfg, &t, &bar);
    }
    let done = simulate(cfg, &a.out, format, a.rate, |p, n| {
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
    Ok(())
}

/// The record key of a transaction of card (or merchant) `entity`.
fn record_key(key: KeyBy, entity: u32) -> String {
    match key {
        KeyBy::Card => format!("C{entity:07}"),
        KeyBy::Merchant => format!("M{entity:06}"),
    }
}

/// `simulate --to fluvio`: publish the stream keyed by card (or merchant) id.
fn publish_command(
    a: &SimulateArgs,
    cfg: SimConfig,
    t: &crate::config::Topology,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let labels = (a.labels_topic != "none").then_some(a.labels_topic.as_str());
    let rt = tokio::runtime::Runtime::new()?;
    let started = std::time::Instant::now();
    let done = rt.block_on(async {
        let (fluvio, address) = crate::connectors::cluster::connect(&t.fluvio).await?;
        if !bar.is_hidden() {
            bar.println(format!("publishing to {address}"));
        }
        let all = |_| true;
        let to = PublishTo {
            tx_topic: &a.topic,
            label_topic: labels,
            rate: a.rate,
            key: a.key,
        };
        publish(cfg, &fluvio, to, all, |p, n| {
            bar.set_position((p * 1000.0) as u64);
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("{n} events, {:.0}/s", n as f64 / secs));
        })
        .await
    })?;
    bar.finish_and_clear();
    println!(
        "published {} transactions ({} fraud) to {} and {} labels to {} in {:.1} s",
        done.transactions,
        done.frauds,
        a.topic,
        done.labels,
        labels.unwrap_or("(none)"),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_writer_matches_the_parser() {
        for ms in [0i64, 1_767_225_601_500, 951_782_400_000, 4_102_444_799_999] {
            let mut buf = Vec::new();
            write_rfc3339(&mut buf, ms).unwrap();
            let s = String::from_utf8(buf).unwrap();
            assert_eq!(
                crate::connectors::sources::decode::parse_rfc3339(&s),
                Some(ms),
                "{s}"
            );
            assert_eq!(s, crate::connectors::sources::decode::format_rfc3339(ms));
        }
    }
}
