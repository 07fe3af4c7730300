//! Fluvio topics as sinks: scores, alerts and dead letters as JSON records,
//! scores keyed by card id, dead letters without a key. `write` encodes a
//! record into the sink's queue; `send` hands the queue, as one batch, to the
//! sink's producer task, whose Fluvio producer batches records (`batch_bytes`)
//! and sends a batch when it is full or has waited `linger`; `flush` waits until everything sent so far is
//! acknowledged, and checks every record's own result: a record the cluster
//! rejected fails the flush (naming the sink, the topic and the cause), so a
//! checkpoint, which flushes before it stores offsets, never moves past an
//! output that was not written. The service writes each record with its
//! [`Provenance`] and reads the acknowledged offsets back at checkpoints
//! (effectively-once outputs, `exec::service::delivery`).

use super::{Output, Provenance, Sink};
use crate::config::{FluvioOutput, RecordTarget, Records, SinkConfig};
use anyhow::Context;
use fluvio::{Fluvio, ProduceOutput, RecordKey, TopicProducerConfigBuilder, TopicProducerPool};
use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;
use std::collections::BTreeMap;
use std::time::Duration;

/// Records sent before their results are checked even without a checkpoint
/// (each result is a few dozen bytes).
const MAX_UNACKED: usize = 65_536;

/// Batches a sink may have queued for its producer task.
const PRODUCER_QUEUE: usize = 64;

/// Encoded records: (key, value).
type Batch = Vec<(Option<Vec<u8>>, Vec<u8>)>;

/// What a sink asks of its producer task.
enum ToProducer {
    /// Hand these records to the producer.
    Send(Batch),
    /// Wait until everything sent is acknowledged; answer with each
    /// partition's offset after its last acknowledged record, or the first
    /// failure since the last flush.
    Flush(tokio::sync::oneshot::Sender<anyhow::Result<BTreeMap<u32, i64>>>),
}

/// One topic sink. Encoding happens where it is written (the engine's
/// thread); the Fluvio producer runs in a task of its own on the I/O
/// runtime, fed whole batches over a bounded channel.
pub struct TopicSink {
    id: String,
    records: Records,
    topic: String,
    /// To the producer task.
    tx: tokio::sync::mpsc::Sender<ToProducer>,
    producer: tokio::task::JoinHandle<()>,
    /// Encoded records not yet handed to the producer task.
    queue: Batch,
    /// Encoding buffer, reused (each record then gets one exact-size copy).
    buf: Vec<u8>,
    /// Per partition, the offset after the last acknowledged record.
    acked: BTreeMap<u32, i64>,
    written: u64,
}

impl Drop for TopicSink {
    fn drop(&mut self) {
        self.producer.abort();
    }
}

/// The producer task of sink `id`: sends every batch it is given, keeps
/// each record's result, and checks them all at a flush (or every
/// [`MAX_UNACKED`] records). After a failure it drops what it is sent
/// until the flush that reports it.
async fn produce(
    id: String,
    topic: String,
    producer: TopicProducerPool,
    mut rx: tokio::sync::mpsc::Receiver<ToProducer>,
) {
    let mut unacked: Vec<ProduceOutput> = Vec::new();
    let mut acked: BTreeMap<u32, i64> = BTreeMap::new();
    let mut failed: Option<anyhow::Error> = None;
    while let Some(msg) = rx.recv().await {
        match msg {
            ToProducer::Send(batch) => {
                if failed.is_some() {
                    continue;
                }
                for (key, value) in batch {
                    let key = key.map_or(RecordKey::NULL, RecordKey::from);
                    match producer.send(key, value).await {
                        Ok(output) => unacked.push(output),
                        Err(e) => {
                            failed = Some(e.context(format!("sinks.{id}: sending to {topic}")));
                            break;
                        }
                    }
                }
                if failed.is_none() && unacked.len() >= MAX_UNACKED {
                    // Bounded without checkpoints too: check the results so far.
                    if let Err(e) =
                        wait_acks(&id, &topic, &producer, &mut unacked, &mut acked).await
                    {
                        failed = Some(e);
                    }
                }
            }
            ToProducer::Flush(reply) => {
                let result = match failed.take() {
                    Some(e) => Err(e),
                    None => wait_acks(&id, &topic, &producer, &mut unacked, &mut acked)
                        .await
                        .map(|()| acked.clone()),
                };
                let _ = reply.send(result);
            }
        }
    }
}

/// Flush the producer and check the result of every record sent since the
/// last check.
async fn wait_acks(
    id: &str,
    topic: &str,
    producer: &TopicProducerPool,
    unacked: &mut Vec<ProduceOutput>,
    acked: &mut BTreeMap<u32, i64>,
) -> anyhow::Result<()> {
    producer
        .flush()
        .await
        .with_context(|| format!("sinks.{id}: flushing {topic}"))?;
    let n = unacked.len();
    for (i, output) in unacked.drain(..).enumerate() {
        let meta = output.wait().await.with_context(|| {
            format!(
                "sinks.{id}: the cluster did not accept record {} of the {n} sent to {topic} since the last flush",
                i + 1
            )
        })?;
        let next = acked.entry(meta.partition_id()).or_insert(0);
        *next = (*next).max(meta.offset() + 1);
    }
    Ok(())
}

impl TopicSink {
    /// Open a producer on `o.topic` for sink `id` (on the current tokio
    /// runtime, which runs its task).
    pub async fn open(
        fluvio: &Fluvio,
        id: &str,
        records: Records,
        o: &FluvioOutput,
    ) -> anyhow::Result<Self> {
        let mut cfg = TopicProducerConfigBuilder::default();
        cfg.batch_size(o.batch_bytes)
            .linger(Duration::from_millis(o.linger_ms.max(0) as u64));
        if matches!(records, Records::Stage | Records::Learn) {
            // The merchant stage chooses each record's partition.
            cfg.partitioner(std::sync::Arc::new(crate::connectors::stage::KeyPartition));
        }
        let cfg = cfg
            .build()
            .map_err(|e| anyhow::anyhow!("sinks.{id}: producer settings: {e}"))?;
        let producer = fluvio
            .topic_producer_with_config(o.topic.clone(), cfg)
            .await
            .with_context(|| format!("sinks.{id}: opening a producer on {}", o.topic))?;
        let (tx, rx) = tokio::sync::mpsc::channel(PRODUCER_QUEUE);
        let task = tokio::spawn(produce(id.to_string(), o.topic.clone(), producer, rx));
        Ok(TopicSink {
            id: id.to_string(),
            records,
            topic: o.topic.clone(),
            tx,
            producer: task,
            queue: Vec::new(),
            buf: Vec::with_capacity(512),
            acked: BTreeMap::new(),
            written: 0,
        })
    }

    /// The producer task stopped (it only does when its sink is dropped, or
    /// it panicked).
    fn stopped(&self) -> anyhow::Error {
        anyhow::anyhow!("sinks.{}: the producer of {} stopped", self.id, self.topic)
    }
}

/// Open a [`TopicSink`] for every record sink of `sinks` that names a topic.
pub async fn open_topic_sinks(
    fluvio: &Fluvio,
    sinks: &[SinkConfig],
) -> anyhow::Result<Vec<Box<dyn Sink>>> {
    let mut out: Vec<Box<dyn Sink>> = Vec::new();
    for s in sinks {
        if let SinkConfig::Records {
            id,
            records,
            to: RecordTarget::Topic(o),
        } = s
        {
            out.push(Box::new(TopicSink::open(fluvio, id, *records, o).await?));
        }
    }
    Ok(out)
}

/// Append `o`'s record value, as a topic sink writes it, to `buf`: JSON
/// for scores and dead letters, the stage encoding for stage records.
pub fn encode_value(o: &Output, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    match o {
        Output::Score(s) => serde_json::to_writer(&mut *buf, s)?,
        Output::DeadLetter(d) => serde_json::to_writer(&mut *buf, d)?,
        Output::Stage(r) => crate::connectors::stage::encode(r, buf)?,
    }
    Ok(())
}

/// `o`'s record key: the card id of a score, the card partition of a stage
/// record, none for a dead letter.
fn key_of(o: &Output) -> Option<Vec<u8>> {
    match o {
        Output::Score(s) => Some(s.card_id.as_bytes().to_vec()),
        Output::DeadLetter(_) => None,
        Output::Stage(r) => Some(crate::connectors::stage::key_of(r.partition())),
    }
}

impl TopicSink {
    /// Encode `o` into `buf`; its record key.
    fn encode(&mut self, o: &Output) -> anyhow::Result<Option<Vec<u8>>> {
        self.buf.clear();
        encode_value(o, &mut self.buf)?;
        Ok(key_of(o))
    }

    /// Queue the record in `buf` with `key`, its provenance appended.
    fn queue_from(&mut self, key: Option<Vec<u8>>, from: &Provenance) -> anyhow::Result<()> {
        use std::io::Write as _;
        // The record is a JSON object: its provenance goes before the `}`.
        // Topic names are [a-z0-9-], so they need no escaping.
        debug_assert_eq!(self.buf.last(), Some(&b'}'));
        self.buf.pop();
        write!(
            self.buf,
            r#","input":"{}@{}","lineage":"{:016x}"}}"#,
            from.input, from.offset, from.lineage
        )?;
        self.queue.push((key, self.buf.clone()));
        Ok(())
    }
}

impl Sink for TopicSink {
    fn id(&self) -> &str {
        &self.id
    }

    fn records(&self) -> Records {
        self.records
    }

    fn location(&self) -> String {
        format!("fluvio:{}", self.topic)
    }

    fn write(&mut self, o: &Output) -> anyhow::Result<()> {
        let key = self.encode(o)?;
        self.queue.push((key, self.buf.clone()));
        Ok(())
    }

    fn write_from(&mut self, o: &Output, from: &Provenance) -> anyhow::Result<()> {
        let key = self.encode(o)?;
        self.queue_from(key, from)
    }

    fn write_encoded_from(
        &mut self,
        o: &Output,
        value: &[u8],
        from: &Provenance,
    ) -> anyhow::Result<()> {
        self.buf.clear();
        self.buf.extend_from_slice(value);
        self.queue_from(key_of(o), from)
    }

    fn topic(&self) -> Option<&str> {
        Some(&self.topic)
    }

    fn acknowledged(&self) -> Vec<(u32, i64)> {
        self.acked.iter().map(|(&p, &o)| (p, o)).collect()
    }

    fn send(&mut self) -> LocalBoxFuture<'_, anyhow::Result<()>> {
        async move {
            if self.queue.is_empty() {
                return Ok(());
            }
            let batch = std::mem::take(&mut self.queue);
            self.written += batch.len() as u64;
            if self.tx.send(ToProducer::Send(batch)).await.is_err() {
                return Err(self.stopped());
            }
            Ok(())
        }
        .boxed_local()
    }

    fn flush(&mut self) -> LocalBoxFuture<'_, anyhow::Result<()>> {
        async move {
            self.send().await?;
            let (reply, answer) = tokio::sync::oneshot::channel();
            if self.tx.send(ToProducer::Flush(reply)).await.is_err() {
                return Err(self.stopped());
            }
            self.acked = answer.await.map_err(|_| self.stopped())??;
            Ok(())
        }
        .boxed_local()
    }

    fn written(&self) -> u64 {
        self.written
    }
}
