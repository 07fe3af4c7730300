//! Fluvio topics as a source: one reader task per topic partition
//! (transactions and labels), merged in event-time order.
//!
//! Each partition's reader runs on the I/O runtime: it fetches record
//! batches, decodes every record (or builds its dead letter) and hands them
//! on in chunks over a bounded channel, so the thread that runs the engine
//! neither polls the client's streams nor parses JSON. The merge holds at
//! most one decoded record per partition (its head) and releases the
//! earliest head (labels first at equal times, then by input order) once
//! every partition has a head or is idle: caught up with the newest high
//! watermark known (when opened, or refreshed since) and silent for `idle`.
//! So a replay of records already in the topics is processed in the same
//! order on every run and after every restart; live traffic waits at most
//! `idle` for a quiet partition. The offset of each partition's next
//! unprocessed record is what a checkpoint stores, and what is committed
//! under a consumer name.

use crate::config::{FluvioInput, StartAt, TimestampFormat};
use crate::connectors::sinks::Provenance;
use crate::connectors::sources::decode::{truncate, Decoder, RawRecord, RecordKind, Reject};
use crate::connectors::sources::{Pulled, Source, SourceOffset};
use crate::connectors::stage::StageRecord;
use anyhow::Context;
use compact_str::{format_compact, CompactString};
use fluvio::consumer::{ConsumerConfigExt, ConsumerStream, OffsetManagementStrategy};
use fluvio::{ConsumerConfig, Fluvio, Offset};
use fraudstream_engine::event::{DeadLetter, Event, RejectKind};
use futures_util::future::select_all;
use futures_util::{FutureExt, StreamExt};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Bytes of a rejected record kept in its dead letter.
const DEAD_LETTER_RAW_BYTES: usize = 4096;

/// A partition behind its high watermark that yields nothing this long has
/// its reader restarted where it stands (see [`FluvioSource::restart_reader`]):
/// a healthy stream delivers records that already exist within milliseconds.
const STALL: Duration = Duration::from_secs(1);

/// Chunks a reader may have decoded ahead of the merge, each at most about
/// `fetch_bytes` of records: with one being gathered and one response in
/// flight, the reader holds at most about six fetches' worth per partition.
const READ_AHEAD_CHUNKS: usize = 4;

/// What a topic holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputRecords {
    /// Transactions or labels, as payment systems publish them.
    Events(RecordKind),
    /// Records one stage hands another (a stage or learn topic).
    Stage,
}

/// A decoded record.
enum Decoded {
    Event(Event),
    Stage(StageRecord),
}

impl Decoded {
    fn ts(&self) -> i64 {
        match self {
            Decoded::Event(e) => e.ts(),
            Decoded::Stage(r) => r.ts(),
        }
    }

    /// Transactions come after labels (and replicated vectors) of the same
    /// time.
    fn is_transaction(&self) -> bool {
        matches!(
            self,
            Decoded::Event(Event::Transaction(_)) | Decoded::Stage(StageRecord::Transaction(_))
        )
    }
}

/// One record as a reader hands it on: its offset and its record, or its
/// dead letter.
struct Fetched {
    offset: i64,
    item: Result<Decoded, DeadLetter>,
}

struct Head {
    ts: i64,
    offset: i64,
    item: Decoded,
}

/// What a reader task needs.
#[derive(Clone)]
struct ReaderSpec {
    fluvio: Arc<Fluvio>,
    topic: String,
    partition: u32,
    kind: InputRecords,
    id: CompactString,
    max_bytes: usize,
    fetch_bytes: i32,
}

/// One topic partition being read.
struct Partition {
    topic: String,
    partition: u32,
    /// Source id in dead letters: `topic/partition`.
    id: CompactString,
    spec: ReaderSpec,
    /// Decoded chunks from the reader.
    rx: mpsc::Receiver<Vec<Fetched>>,
    reader: JoinHandle<anyhow::Result<()>>,
    /// Records received and not yet taken, in offset order.
    buf: VecDeque<Fetched>,
    head: Option<Head>,
    /// Offset after the last record taken; `None` before the first.
    read_next: Option<i64>,
    /// Offset the reader started at.
    started_at: i64,
    /// High watermark when opened: the merge never treats the partition as
    /// idle before reaching it.
    end_at_open: i64,
    /// When the last chunk arrived (or the reader started).
    last_record: Instant,
    idle: Duration,
    /// Records taken.
    records: u64,
    /// Latest high watermark seen (for lag).
    hw_latest: i64,
    /// Offset after the last record committed under the consumer name.
    committed: i64,
}

impl Partition {
    /// Offset of the next record not yet processed.
    fn next_unprocessed(&self) -> Option<i64> {
        match &self.head {
            Some(h) => Some(h.offset),
            None => Some(self.read_next.unwrap_or(self.started_at)),
        }
    }

    /// Read up to every record known to exist (the high watermark when
    /// opened, or a newer one seen since).
    fn caught_up(&self) -> bool {
        self.read_next.unwrap_or(self.started_at) >= self.end_at_open.max(self.hw_latest)
    }

    /// Take in a chunk from the reader.
    fn receive(&mut self, chunk: Vec<Fetched>, now: Instant) {
        self.buf.extend(chunk);
        self.last_record = now;
    }

    /// Take in a chunk the reader has already sent, if any; whether one came.
    fn receive_ready(&mut self, now: Instant) -> bool {
        match self.rx.try_recv() {
            Ok(chunk) => {
                self.receive(chunk, now);
                true
            }
            Err(_) => false,
        }
    }

    fn idle(&self, now: Instant) -> bool {
        self.head.is_none()
            && self.buf.is_empty()
            && self.caught_up()
            && now.duration_since(self.last_record) >= self.idle
    }

    /// Where the reader should be and is not: nothing in hand, behind the
    /// newest high watermark known, and silent for [`STALL`]. The offset to
    /// read on from, if so.
    fn stalled(&self, now: Instant) -> Option<i64> {
        let at = self.read_next.unwrap_or(self.started_at);
        let behind = at < self.end_at_open.max(self.hw_latest);
        (self.head.is_none()
            && self.buf.is_empty()
            && behind
            && now.duration_since(self.last_record) >= STALL)
            .then_some(at)
    }
}

/// Bits of a [`Provenance::key`] that hold the offset (the rest hold the
/// partition's index in the source).
const OFFSET_MASK: u64 = (1 << 48) - 1;

/// One number for record `offset` of the source's partition `i`.
fn position_key(i: usize, offset: i64) -> u64 {
    ((i as u64) << 48) | (offset as u64 & OFFSET_MASK)
}

/// Every assigned partition of the transaction and label topics.
pub struct FluvioSource {
    /// The cluster the partitions are read from.
    fluvio: Arc<Fluvio>,
    parts: Vec<Partition>,
    /// The consumer name offsets are committed under, if any.
    consumer: Option<String>,
    /// Partition and offset of the item the last pull returned.
    last: Option<(usize, i64)>,
}

impl Drop for FluvioSource {
    fn drop(&mut self) {
        for p in &self.parts {
            p.reader.abort();
        }
    }
}

/// How a partition is opened.
pub struct OpenPlan<'a> {
    /// Input settings.
    pub input: &'a FluvioInput,
    /// Transactions, labels or stage records.
    pub kind: InputRecords,
    /// Offsets from a checkpoint (take precedence over `start`).
    pub resume: &'a [SourceOffset],
}

impl Source for FluvioSource {
    async fn pull(&mut self, wait: Duration) -> anyhow::Result<Pulled> {
        self.pull_merged(wait).await
    }
}

/// Read `spec`'s partition from `next` on, decoding every record, until the
/// merge hangs up. Fluvio offsets in a partition are contiguous: a jump
/// means the client skipped records (the fluvio 0.50 client drops a batch
/// cut short by a fetch response's byte limit and goes on after it; fixed
/// upstream in fluvio-community/fluvio#4627, not yet released), so the
/// stream is reopened where the skipped records begin.
async fn read_partition(
    spec: ReaderSpec,
    mut next: i64,
    tx: mpsc::Sender<Vec<Fetched>>,
) -> anyhow::Result<()> {
    let (kind, stage) = match spec.kind {
        InputRecords::Events(kind) => (kind, false),
        InputRecords::Stage => (RecordKind::Transaction, true),
    };
    let decoder = record_decoder(kind);
    loop {
        // The partition consumer streams whole batches, without the
        // per-record lock and timer of the retrying record stream.
        #[allow(deprecated)]
        let consumer = spec
            .fluvio
            .partition_consumer(spec.topic.clone(), spec.partition)
            .await
            .with_context(|| format!("opening {}", spec.id))?;
        let cfg = ConsumerConfig::builder()
            .max_bytes(spec.fetch_bytes)
            .build()
            .context("consumer settings")?;
        #[allow(deprecated)]
        let mut batches = consumer
            .stream_batches_with_config(Offset::absolute(next)?, cfg)
            .await
            .with_context(|| format!("opening {} at offset {next}", spec.id))?;
        // A chunk gathers every batch already at hand, up to `fetch_bytes`
        // of records: about one fetch response, so the reader is a few
        // responses ahead of the merge and the next fetch is requested
        // while the engine still works through the last one.
        let mut ended = false;
        'batches: while !ended {
            let Some(mut batch) = batches.next().await else {
                break;
            };
            let mut out = Vec::new();
            let mut bytes = 0usize;
            let mut skipped = false;
            loop {
                let b = batch.map_err(|e| anyhow::anyhow!("reading {}: {e:?}", spec.id))?;
                out.reserve(b.records().len());
                for record in b.into_consumer_records_iter(spec.partition) {
                    let offset = record.offset();
                    if offset < next {
                        continue;
                    }
                    if offset > next {
                        skipped = true;
                        break;
                    }
                    next = offset + 1;
                    bytes += record.value().len();
                    out.push(Fetched {
                        offset,
                        item: decode_fetched(&spec, &decoder, kind, stage, offset, record.value()),
                    });
                }
                if skipped || bytes >= spec.fetch_bytes as usize {
                    break;
                }
                match batches.next().now_or_never() {
                    Some(Some(b)) => batch = b,
                    Some(None) => {
                        ended = true;
                        break;
                    }
                    None => break,
                }
            }
            if !out.is_empty() && tx.send(out).await.is_err() {
                return Ok(()); // the source was dropped
            }
            if skipped {
                count_reopen(&spec);
                break 'batches;
            }
        }
        if tx.is_closed() {
            return Ok(());
        }
        // The stream ended or skipped: read on from `next`.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One record as the merge gets it: decoded, or its dead letter.
fn decode_fetched(
    spec: &ReaderSpec,
    decoder: &Decoder,
    kind: RecordKind,
    stage: bool,
    offset: i64,
    value: &[u8],
) -> Result<Decoded, DeadLetter> {
    let item = if stage {
        crate::connectors::stage::decode(value, spec.max_bytes).map(Decoded::Stage)
    } else {
        decode_record(decoder, kind, spec.max_bytes, value).map(Decoded::Event)
    };
    item.map_err(|reject| DeadLetter {
        source: spec.id.clone(),
        line: Some(offset as u64),
        kind: reject.kind,
        reason: reject.reason,
        raw: truncate(&String::from_utf8_lossy(value), DEAD_LETTER_RAW_BYTES).to_string(),
    })
}

fn count_reopen(spec: &ReaderSpec) {
    metrics::counter!(
        "fraudstream_fluvio_reopened_total",
        "topic" => spec.topic.clone(),
        "partition" => spec.partition.to_string()
    )
    .increment(1);
}

/// Start a reader for `spec` at `offset`.
fn spawn_reader(
    spec: &ReaderSpec,
    offset: i64,
) -> (mpsc::Receiver<Vec<Fetched>>, JoinHandle<anyhow::Result<()>>) {
    let (tx, rx) = mpsc::channel(READ_AHEAD_CHUNKS);
    (rx, tokio::spawn(read_partition(spec.clone(), offset, tx)))
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
            let commits = match (&input.consumer, &input.start) {
                (Some(_), StartAt::Committed) => fluvio
                    .consumer_offsets()
                    .await
                    .context("reading the committed consumer offsets")?,
                _ => Vec::new(),
            };
            if input.consumer.is_some() {
                consumer = input.consumer.clone();
            }
            // The leader's own ends: the partition list can lag behind it, and
            // a partition must not look caught up before its last record.
            let ends = futures_util::future::join_all(
                wanted
                    .iter()
                    .map(|&p| crate::connectors::cluster::end_offset(fluvio, &input.topic, p)),
            )
            .await;
            for (p, end) in wanted.into_iter().zip(ends) {
                let (base, hw) = hws.iter().find(|w| w.0 == p).map_or((0, 0), |w| (w.1, w.2));
                let hw = hw.max(end?.unwrap_or(0));
                let resume = plan
                    .resume
                    .iter()
                    .find(|o| o.topic == input.topic && o.partition == p)
                    .map(|o| o.next)
                    .filter(|&n| n >= 0);
                let committed = commits
                    .iter()
                    .find(|c| {
                        Some(&c.consumer_id) == input.consumer.as_ref()
                            && c.topic == input.topic
                            && c.partition == p
                    })
                    .map(|c| c.offset + 1);
                let start = match (resume, &input.start) {
                    (Some(n), _) => n,
                    (None, StartAt::End) => hw,
                    (None, StartAt::Beginning) => base,
                    // After the last committed record, or the log start.
                    (None, StartAt::Committed) => committed.unwrap_or(base).max(base),
                };
                let id = format_compact!("{}/{}", input.topic, p);
                let spec = ReaderSpec {
                    fluvio: client.clone(),
                    topic: input.topic.clone(),
                    partition: p,
                    kind: plan.kind,
                    id: id.clone(),
                    max_bytes: input.max_record_bytes,
                    fetch_bytes: input.fetch_bytes.max(input.max_record_bytes) as i32,
                };
                let (rx, reader) = spawn_reader(&spec, start);
                parts.push(Partition {
                    topic: input.topic.clone(),
                    partition: p,
                    id,
                    spec,
                    rx,
                    reader,
                    buf: VecDeque::new(),
                    head: None,
                    read_next: None,
                    started_at: start,
                    end_at_open: hw,
                    last_record: Instant::now(),
                    idle: Duration::from_millis(input.idle_ms.max(1) as u64),
                    records: 0,
                    hw_latest: hw,
                    committed: committed.unwrap_or(-1),
                });
            }
        }
        Ok(FluvioSource {
            parts,
            consumer,
            fluvio: client.clone(),
            last: None,
        })
    }

    /// The partition whose head is released next, if the merge may release one.
    fn releasable(&self, now: Instant) -> Option<usize> {
        let mut best: Option<(i64, u8, usize)> = None;
        for (i, p) in self.parts.iter().enumerate() {
            match &p.head {
                Some(h) => {
                    let rank = (h.ts, u8::from(h.item.is_transaction()), i);
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

    /// Give every partition without a head the next record it has in hand
    /// (or one its reader has already sent); a dead letter met on the way
    /// is returned at once.
    fn fill_heads(&mut self) -> Option<Pulled> {
        for i in 0..self.parts.len() {
            let p = &mut self.parts[i];
            while p.head.is_none() {
                if p.buf.is_empty() && !p.receive_ready(Instant::now()) {
                    break;
                }
                let Some(f) = p.buf.pop_front() else { break };
                p.read_next = Some(f.offset + 1);
                p.records += 1;
                match f.item {
                    Ok(item) => {
                        p.head = Some(Head {
                            ts: item.ts(),
                            offset: f.offset,
                            item,
                        })
                    }
                    Err(dead) => {
                        self.last = Some((i, f.offset));
                        return Some(Pulled::Rejected(dead));
                    }
                }
            }
        }
        None
    }

    /// The next event, a rejected record, or `Idle` when nothing can be
    /// released within `wait`. Cancel-safe: records received are kept in
    /// their partition until released.
    async fn pull_merged(&mut self, wait: Duration) -> anyhow::Result<Pulled> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(dead) = self.fill_heads() {
                return Ok(dead);
            }
            let now = Instant::now();
            if let Some(i) = self.releasable(now) {
                let h = self.parts[i].head.take().expect("releasable has a head");
                self.last = Some((i, h.offset));
                return Ok(match h.item {
                    Decoded::Event(e) => Pulled::Event(e),
                    Decoded::Stage(r) => Pulled::Stage(r),
                });
            }
            // Wait for a chunk for any partition without a head, at most
            // until the earliest moment one of them turns idle or counts as
            // stalled (or the deadline).
            let mut until = deadline;
            for p in self.parts.iter().filter(|p| p.head.is_none()) {
                let wait = if p.caught_up() { p.idle } else { STALL };
                let t = tokio::time::Instant::from_std(p.last_record + wait);
                if t > tokio::time::Instant::now() && t < until {
                    until = t;
                }
            }
            let waiting: Vec<usize> = (0..self.parts.len())
                .filter(|&i| self.parts[i].head.is_none())
                .collect();
            let got = {
                let futs = self
                    .parts
                    .iter_mut()
                    .filter(|p| p.head.is_none())
                    .map(|p| Box::pin(p.rx.recv()));
                tokio::time::timeout_at(until, select_all(futs))
                    .await
                    .map(|(chunk, k, _rest)| (chunk, k))
            };
            match got {
                Err(_) => {
                    self.revive_stalled();
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(Pulled::Idle);
                    }
                }
                Ok((Some(chunk), k)) => {
                    self.parts[waiting[k]].receive(chunk, Instant::now());
                }
                Ok((None, k)) => {
                    // The reader ended: its error says why.
                    let p = &mut self.parts[waiting[k]];
                    let id = p.id.clone();
                    return match (&mut p.reader).await {
                        Ok(Err(e)) => Err(e.context(format!("reading {id}"))),
                        Ok(Ok(())) => Err(anyhow::anyhow!("the reader of {id} stopped")),
                        Err(e) => Err(anyhow::anyhow!("the reader of {id} failed: {e}")),
                    };
                }
            }
        }
    }

    /// Whether the next pull can answer without waiting: every partition
    /// has a record in hand or is idle, and one has a record. (Chunks the
    /// readers already sent are taken in.)
    pub fn ready(&mut self) -> bool {
        let now = Instant::now();
        let mut any = false;
        let mut all = true;
        for p in &mut self.parts {
            if p.head.is_none() && p.buf.is_empty() {
                p.receive_ready(now);
            }
            let has = p.head.is_some() || !p.buf.is_empty();
            any |= has;
            all &= has || p.idle(now);
        }
        any && all
    }

    /// Restart the reader of every partition that [stalled](Partition::stalled).
    ///
    /// When the batch the client drops ends the partition, no later record
    /// reveals the gap: the stream waits for new records while older ones
    /// are unread.
    fn revive_stalled(&mut self) {
        let now = Instant::now();
        for i in 0..self.parts.len() {
            if let Some(at) = self.parts[i].stalled(now) {
                count_reopen(&self.parts[i].spec);
                self.restart_reader(i, at);
            }
        }
    }

    /// Replace partition `i`'s reader with one starting at `offset`.
    fn restart_reader(&mut self, i: usize, offset: i64) {
        let p = &mut self.parts[i];
        p.reader.abort();
        let (rx, reader) = spawn_reader(&p.spec, offset);
        p.rx = rx;
        p.reader = reader;
        p.buf.clear();
        // Give the new reader its own STALL before judging it.
        p.last_record = Instant::now();
    }

    /// Where the item the last pull returned came from, as its outputs
    /// record it.
    pub fn provenance(&self, lineage: u64) -> Option<Provenance<'_>> {
        Some(self.provenance_at(self.origin()?, lineage))
    }

    /// The input position of the item the last pull returned: the
    /// partition's index in this source and the record's offset.
    pub fn origin(&self) -> Option<(usize, i64)> {
        self.last
    }

    /// [`provenance`](Self::provenance) of the record at `origin` (from
    /// [`origin`](Self::origin)).
    pub fn provenance_at(&self, (i, offset): (usize, i64), lineage: u64) -> Provenance<'_> {
        Provenance {
            input: &self.parts[i].id,
            offset,
            lineage,
            key: position_key(i, offset),
        }
    }

    /// The [`Provenance::key`] of record `offset` of `input`
    /// (`topic/partition`), if this source reads that partition.
    pub fn key_of(&self, input: &str, offset: i64) -> Option<u64> {
        let i = self.parts.iter().position(|p| p.id == input)?;
        (offset >= 0).then(|| position_key(i, offset))
    }

    /// Whether the input record of `key` is behind this source's position
    /// (processed, with its outputs produced, if it had any).
    pub fn passed(&self, key: u64) -> bool {
        let (i, offset) = ((key >> 48) as usize, (key & OFFSET_MASK) as i64);
        self.parts
            .get(i)
            .and_then(Partition::next_unprocessed)
            .is_some_and(|next| offset < next)
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
    /// [`commit`](Self::commit)).
    pub fn commits_enabled(&self) -> bool {
        self.consumer.is_some()
    }

    /// Stop committing offsets for the rest of this run.
    pub fn disable_commits(&mut self) {
        self.consumer = None;
    }

    /// Commit, under the consumer name, each partition's last processed
    /// record (the committed offset never runs ahead of processing). Fluvio
    /// commits the last record a consumer stream yielded, so each commit
    /// opens a stream at that record, reads it, and commits.
    pub async fn commit(&mut self) -> anyhow::Result<()> {
        let Some(name) = self.consumer.clone() else {
            return Ok(());
        };
        for p in &mut self.parts {
            let Some(next) = p.next_unprocessed() else {
                continue;
            };
            if next <= 0 || next == p.committed {
                continue;
            }
            let cfg = ConsumerConfigExt::builder()
                .topic(p.topic.clone())
                .partition(p.partition)
                .offset_start(Offset::absolute(next - 1)?)
                .offset_consumer(name.clone())
                .offset_strategy(OffsetManagementStrategy::Manual)
                .build()
                .context("consumer settings")?;
            let mut stream = self.fluvio.consumer_with_config(cfg).await?;
            match stream.next().await {
                Some(Ok(r)) if r.offset() == next - 1 => {}
                other => anyhow::bail!(
                    "committing {}: record {} could not be read back ({:?})",
                    p.id,
                    next - 1,
                    other.map(|r| r.map(|r| r.offset()))
                ),
            }
            stream
                .offset_commit()
                .await
                .map_err(|e| anyhow::anyhow!("committing {}: {e:?}", p.id))?;
            stream
                .offset_flush()
                .await
                .map_err(|e| anyhow::anyhow!("flushing offsets of {}: {e:?}", p.id))?;
            p.committed = next;
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

    /// The partition number of the record released last.
    pub fn last_partition(&self) -> Option<u32> {
        self.last.map(|(i, _)| self.parts[i].partition)
    }

    /// The topics read, each once, in opening order.
    pub fn topics(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in &self.parts {
            if !out.contains(&p.topic) {
                out.push(p.topic.clone());
            }
        }
        out
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
        self.parts.iter().all(|p| {
            p.head.is_none()
                && p.buf.is_empty()
                && p.caught_up()
                && now.duration_since(p.last_record) >= d
        })
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
    Reject::over_size(bytes.len(), max_bytes)?;
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Reject::new(RejectKind::Malformed, format!("not UTF-8: {e}")))?;
    let mut rec = RawRecord::default();
    decoder.decode_json(text.trim(), &mut rec)?;
    Ok(match kind {
        RecordKind::Transaction => Event::Transaction(decoder.transaction(&rec)?.0),
        RecordKind::Label => Event::Label(decoder.label(&rec)?),
    })
}
