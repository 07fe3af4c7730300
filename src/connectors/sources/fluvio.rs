//! Fluvio topics as a source: one consumer stream per topic partition
//! (transactions and labels), merged in event-time order.
//!
//! Each partition holds at most one decoded record (its head). The merge
//! releases the earliest head (labels first at equal times, then by input
//! order) once every partition has a head or is idle: caught up with the
//! high watermark it had when opened and silent for `idle`. So a replay of
//! records already in the topics is processed in the same order on every run
//! and after every restart; live traffic waits at most `idle` for a quiet
//! partition. The offset of each partition's next unprocessed record is what
//! a checkpoint stores.

use crate::config::{FluvioInput, StartAt, TimestampFormat};
use crate::connectors::sources::decode::{truncate, Decoder, RawRecord, RecordKind, Reject};
use crate::connectors::sources::{Pulled, Source, SourceOffset};
use anyhow::Context;
use compact_str::{format_compact, CompactString};
use fluvio::consumer::{ConsumerConfigExt, ConsumerStream, OffsetManagementStrategy};
use fluvio::{Fluvio, Offset};
use fraudstream_engine::event::{DeadLetter, Event, RejectKind};
use futures_util::future::select_all;
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes of a rejected record kept in its dead letter.
const DEAD_LETTER_RAW_BYTES: usize = 4096;

type Stream = Pin<Box<dyn ConsumerStream + Send>>;

struct Head {
    ts: i64,
    offset: i64,
    event: Event,
}

/// One topic partition being read.
struct Partition {
    topic: String,
    partition: u32,
    kind: RecordKind,
    /// Source id in dead letters: `topic/partition`.
    id: CompactString,
    stream: Stream,
    head: Option<Head>,
    /// Offset after the last record read; `None` before the first.
    read_next: Option<i64>,
    /// Offset of the first record when it was opened at an explicit offset.
    started_at: Option<i64>,
    /// High watermark when opened: the merge never treats the partition as
    /// idle before reaching it.
    end_at_open: i64,
    last_record: Instant,
    idle: Duration,
    max_bytes: usize,
    /// Records read.
    records: u64,
    /// Latest high watermark seen (for lag).
    hw_latest: i64,
    /// How the stream was opened (to reopen it after a gap).
    config: ConsumerConfigExt,
}

impl Partition {
    /// Offset of the next record not yet processed, if known.
    fn next_unprocessed(&self) -> Option<i64> {
        match &self.head {
            Some(h) => Some(h.offset),
            None => self.read_next.or(self.started_at),
        }
    }

    fn caught_up(&self) -> bool {
        self.read_next.or(self.started_at).unwrap_or(0) >= self.end_at_open
    }

    fn idle(&self, now: Instant) -> bool {
        self.head.is_none() && self.caught_up() && now.duration_since(self.last_record) >= self.idle
    }
}

/// Every assigned partition of the transaction and label topics.
pub struct FluvioSource {
    /// The cluster the partitions are read from (reopened from, on a gap).
    fluvio: Arc<Fluvio>,
    parts: Vec<Partition>,
    decoders: [Decoder; 2],
    /// The consumer name offsets are committed under, if any.
    consumer: Option<String>,
}

/// How a partition is opened.
pub struct OpenPlan<'a> {
    /// Input settings.
    pub input: &'a FluvioInput,
    /// Transactions or labels.
    pub kind: RecordKind,
    /// Offsets from a checkpoint (take precedence over `start`).
    pub resume: &'a [SourceOffset],
}

impl Source for FluvioSource {
    async fn pull(&mut self, wait: Duration) -> anyhow::Result<Pulled> {
        self.pull_merged(wait).await
    }
}

impl FluvioSource {
    /// Open every assigned partition of each plan's topic.
    pub async fn open(client: Arc<Fluvio>, plans: &[OpenPlan<'_>]) -> anyhow::Result<Self> {
        let fluvio: &Fluvio = &client;
        let mut parts = Vec::new();
        let mut consumer = None;
        for plan in plans {
            let input = plan.input;
            let count = crate::connectors::cluster::partition_count(fluvio, &input.topic).await?;
            let wanted: Vec<u32> = if input.partitions.is_empty() {
                (0..count).collect()
            } else {
                input.partitions.clone()
            };
            if let Some(&p) = wanted.iter().find(|&&p| p >= count) {
                anyhow::bail!(
                    "topic {} has {count} partitions, the topology reads partition {p}",
                    input.topic
                );
            }
            let hws = crate::connectors::cluster::high_watermarks(fluvio, &input.topic).await?;
            for p in wanted {
                let (base, hw) = hws.iter().find(|w| w.0 == p).map_or((0, 0), |w| (w.1, w.2));
                let resume = plan
                    .resume
                    .iter()
                    .find(|o| o.topic == input.topic && o.partition == p)
                    .map(|o| o.next)
                    .filter(|&n| n >= 0);
                let (offset, started_at) = match (resume, &input.start) {
                    (Some(n), _) => (Offset::absolute(n)?, Some(n)),
                    (None, StartAt::End) => (Offset::absolute(hw)?, Some(hw)),
                    // Absolute, so a named consumer's commits do not apply.
                    (None, StartAt::Beginning) => (Offset::absolute(base)?, Some(base)),
                    // Resolved by the cluster: after the commit, or the log start.
                    (None, StartAt::Committed) => (Offset::beginning(), None),
                };
                let mut cfg = ConsumerConfigExt::builder();
                cfg.topic(input.topic.clone())
                    .partition(p)
                    .offset_start(offset)
                    .max_bytes(input.fetch_bytes.max(input.max_record_bytes) as i32);
                if let Some(name) = &input.consumer {
                    cfg.offset_consumer(name.clone())
                        .offset_strategy(OffsetManagementStrategy::Manual);
                    consumer = Some(name.clone());
                }
                let cfg = cfg.build().context("consumer settings")?;
                let cfg_for_reopen = cfg.clone();
                let stream = fluvio
                    .consumer_with_config(cfg)
                    .await
                    .with_context(|| format!("opening {} partition {p}", input.topic))?;
                parts.push(Partition {
                    topic: input.topic.clone(),
                    partition: p,
                    kind: plan.kind,
                    id: format_compact!("{}/{}", input.topic, p),
                    stream: Box::pin(stream),
                    head: None,
                    read_next: None,
                    started_at,
                    end_at_open: hw,
                    last_record: Instant::now(),
                    idle: Duration::from_millis(input.idle_ms.max(1) as u64),
                    max_bytes: input.max_record_bytes,
                    records: 0,
                    hw_latest: hw,
                    config: cfg_for_reopen,
                });
            }
        }
        Ok(FluvioSource {
            parts,
            decoders: [
                record_decoder(RecordKind::Transaction),
                record_decoder(RecordKind::Label),
            ],
            consumer,
            fluvio: client.clone(),
        })
    }

    /// The partition whose head is released next, if the merge may release one.
    fn releasable(&self, now: Instant) -> Option<usize> {
        let mut best: Option<(i64, u8, usize)> = None;
        for (i, p) in self.parts.iter().enumerate() {
            match &p.head {
                Some(h) => {
                    let rank = (h.ts, u8::from(p.kind == RecordKind::Transaction), i);
                    if best.map_or(true, |b| rank < b) {
                        best = Some(rank);
                    }
                }
                None if p.idle(now) => {}
                None => return None,
            }
        }
        best.map(|(_, _, i)| i)
    }

    /// The next event, a rejected record, or `Idle` when nothing can be
    /// released within `wait`. Cancel-safe: a record read is kept as its
    /// partition's head until released.
    async fn pull_merged(&mut self, wait: Duration) -> anyhow::Result<Pulled> {
        let fluvio = self.fluvio.clone();
        let fluvio: &Fluvio = &fluvio;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let now = Instant::now();
            if let Some(i) = self.releasable(now) {
                let p = &mut self.parts[i];
                let h = p.head.take().expect("releasable has a head");
                return Ok(Pulled::Event(h.event));
            }
            // Wait for a record from any partition without a head, at most
            // until the earliest moment one of them turns idle (or the deadline).
            let mut until = deadline;
            for p in self
                .parts
                .iter()
                .filter(|p| p.head.is_none() && p.caught_up())
            {
                let t = tokio::time::Instant::from_std(p.last_record + p.idle);
                if t > tokio::time::Instant::now() && t < until {
                    until = t;
                }
            }
            let waiting: Vec<usize> = (0..self.parts.len())
                .filter(|&i| self.parts[i].head.is_none())
                .collect();
            if waiting.is_empty() {
                continue;
            }
            let got = {
                let futs = self
                    .parts
                    .iter_mut()
                    .filter(|p| p.head.is_none())
                    .map(|p| p.stream.next());
                tokio::time::timeout_at(until, select_all(futs)).await
            };
            match got {
                Err(_) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(Pulled::Idle);
                    }
                }
                Ok((None, k, _)) => {
                    let p = &self.parts[waiting[k]];
                    anyhow::bail!("the stream of {} partition {} ended", p.topic, p.partition);
                }
                Ok((Some(Err(code)), k, _)) => {
                    let p = &self.parts[waiting[k]];
                    anyhow::bail!("reading {} partition {}: {code:?}", p.topic, p.partition);
                }
                Ok((Some(Ok(record)), k, _)) => {
                    let i = waiting[k];
                    let offset = record.offset();
                    if let Some(expected) = self.parts[i].read_next.or(self.parts[i].started_at) {
                        if offset < expected {
                            continue; // already read (a reopened stream's first batch)
                        }
                        if offset > expected {
                            self.reopen(fluvio, i, expected).await?;
                            continue;
                        }
                    }
                    let decoded = self.decode(i, record.value());
                    let p = &mut self.parts[i];
                    p.read_next = Some(offset + 1);
                    p.last_record = Instant::now();
                    p.records += 1;
                    match decoded {
                        Ok(event) => {
                            p.head = Some(Head {
                                ts: event.ts(),
                                offset,
                                event,
                            })
                        }
                        Err(reject) => {
                            return Ok(Pulled::Rejected(DeadLetter {
                                source: p.id.clone(),
                                line: Some(offset as u64),
                                kind: reject.kind,
                                reason: reject.reason,
                                raw: truncate(
                                    &String::from_utf8_lossy(record.value()),
                                    DEAD_LETTER_RAW_BYTES,
                                )
                                .to_string(),
                            }))
                        }
                    }
                }
            }
        }
    }

    /// Reopen partition `i` at `offset` after its stream skipped records.
    ///
    /// The fluvio 0.50 client drops a batch cut short by a fetch response's
    /// byte limit and continues after it (fixed upstream in
    /// fluvio-community/fluvio#4627, not yet released); Fluvio offsets in a
    /// partition are contiguous, so a jump means records were skipped.
    async fn reopen(&mut self, fluvio: &Fluvio, i: usize, offset: i64) -> anyhow::Result<()> {
        let p = &mut self.parts[i];
        metrics::counter!(
            "fraudstream_fluvio_reopened_total",
            "topic" => p.topic.clone(),
            "partition" => p.partition.to_string()
        )
        .increment(1);
        let mut cfg = p.config.clone();
        // An absolute offset wins over a named consumer's committed one.
        cfg.offset_start = Offset::absolute(offset)?;
        let stream = fluvio
            .consumer_with_config(cfg)
            .await
            .with_context(|| format!("reopening {} partition {}", p.topic, p.partition))?;
        p.stream = Box::pin(stream);
        p.started_at = Some(offset);
        Ok(())
    }

    fn decode(&self, i: usize, bytes: &[u8]) -> Result<Event, Reject> {
        let p = &self.parts[i];
        let decoder = &self.decoders[usize::from(p.kind == RecordKind::Label)];
        decode_record(decoder, p.kind, p.max_bytes, bytes)
    }

    /// Offsets of the next unprocessed record of every partition read so far
    /// (`-1`: none read, start as configured).
    pub fn offsets(&self) -> Vec<SourceOffset> {
        self.parts
            .iter()
            .map(|p| SourceOffset {
                topic: p.topic.clone(),
                partition: p.partition,
                next: p.next_unprocessed().unwrap_or(-1),
            })
            .collect()
    }

    /// Whether offsets are committed under a consumer name (see
    /// [`commit`](Self::commit)): a partition whose every read
    /// record was processed commits its last one (Fluvio commits the last
    /// record a stream yielded, so a partition holding an unprocessed head
    /// keeps its previous commit: the committed offset never runs ahead of
    /// processing).
    pub fn commits_enabled(&self) -> bool {
        self.consumer.is_some()
    }

    /// Stop committing offsets for the rest of this run.
    pub fn disable_commits(&mut self) {
        self.consumer = None;
    }

    /// Commit offsets under the consumer name: see [`commit`](Self::commit).
    pub async fn commit(&mut self) -> anyhow::Result<()> {
        if self.consumer.is_none() {
            return Ok(());
        }
        for p in self
            .parts
            .iter_mut()
            .filter(|p| p.head.is_none() && p.read_next.is_some())
        {
            p.stream
                .offset_commit()
                .await
                .map_err(|e| anyhow::anyhow!("committing {}/{}: {e:?}", p.topic, p.partition))?;
            p.stream.offset_flush().await.map_err(|e| {
                anyhow::anyhow!("flushing offsets of {}/{}: {e:?}", p.topic, p.partition)
            })?;
        }
        Ok(())
    }

    /// Ask the cluster for every partition's high watermark (for lag).
    pub async fn refresh_watermarks(&mut self) -> anyhow::Result<()> {
        let fluvio: &Fluvio = &self.fluvio;
        let mut topics: Vec<String> = self.parts.iter().map(|p| p.topic.clone()).collect();
        topics.dedup();
        for t in topics {
            for (partition, _, hw) in
                crate::connectors::cluster::high_watermarks(fluvio, &t).await?
            {
                for p in self
                    .parts
                    .iter_mut()
                    .filter(|p| p.topic == t && p.partition == partition)
                {
                    p.hw_latest = p.hw_latest.max(hw);
                }
            }
        }
        Ok(())
    }

    /// Consumer lag per partition: (topic, partition, records between the
    /// next unprocessed one and the latest high watermark seen).
    pub fn lag(&self) -> impl Iterator<Item = (&str, u32, i64)> {
        self.parts.iter().map(|p| {
            let at = p.next_unprocessed().unwrap_or(0);
            (p.topic.as_str(), p.partition, (p.hw_latest - at).max(0))
        })
    }

    /// Whether every partition is idle.
    pub fn all_idle_for(&self, d: Duration) -> bool {
        let now = Instant::now();
        self.parts
            .iter()
            .all(|p| p.head.is_none() && p.caught_up() && now.duration_since(p.last_record) >= d)
    }
}

/// The decoder of a topic's records of `kind`: JSON objects with the event's
/// own field names, timestamps in any form [`TimestampFormat::Auto`] reads.
pub fn record_decoder(kind: RecordKind) -> Decoder {
    Decoder::new(kind, &BTreeMap::new(), None, TimestampFormat::Auto)
}

/// The event of one topic record (`bytes`, its value), decoded by `decoder`
/// (see [`record_decoder`]), or why it is rejected: over `max_bytes`, not
/// UTF-8, or not a valid JSON record of `kind`.
pub fn decode_record(
    decoder: &Decoder,
    kind: RecordKind,
    max_bytes: usize,
    bytes: &[u8],
) -> Result<Event, Reject> {
    if bytes.len() > max_bytes {
        return Err(Reject::new(
            RejectKind::Oversized,
            format!(
                "record of {} bytes, more than max_record_bytes = {max_bytes}",
                bytes.len()
            ),
        ));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Reject::new(RejectKind::Malformed, format!("not UTF-8: {e}")))?;
    let mut rec = RawRecord::default();
    decoder.decode_json(text.trim(), &mut rec)?;
    Ok(match kind {
        RecordKind::Transaction => Event::Transaction(decoder.transaction(&rec)?.0),
        RecordKind::Label => Event::Label(decoder.label(&rec)?),
    })
}
