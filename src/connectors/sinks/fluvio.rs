//! Fluvio topics as sinks: scores, alerts and dead letters as JSON records,
//! scores keyed by card id, dead letters without a key. `write` encodes a
//! record into the sink's queue; `send` hands the queue to the producer,
//! which batches records (`batch_bytes`) and sends a batch when it is full or
//! has waited `linger`; `flush` waits until everything sent so far is
//! acknowledged, and checks every record's own result: a record the cluster
//! rejected fails the flush (naming the sink, the topic and the cause), so a
//! checkpoint, which flushes before it stores offsets, never moves past an
//! output that was not written.

use super::{Output, Sink};
use crate::config::{FluvioOutput, RecordTarget, Records, SinkConfig};
use anyhow::Context;
use fluvio::{Fluvio, ProduceOutput, RecordKey, TopicProducerConfigBuilder, TopicProducerPool};
use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;
use std::time::Duration;

/// Records sent before their results are checked even without a checkpoint
/// (each result is a few dozen bytes).
const MAX_UNACKED: usize = 65_536;

/// One topic sink.
pub struct TopicSink {
    id: String,
    records: Records,
    topic: String,
    producer: TopicProducerPool,
    /// Encoded records not yet handed to the producer: (key, value).
    queue: Vec<(Option<Vec<u8>>, Vec<u8>)>,
    /// Encoding buffer, reused (each record then gets one exact-size copy).
    buf: Vec<u8>,
    /// The result of each record sent since the last flush.
    unacked: Vec<ProduceOutput>,
    written: u64,
}

impl TopicSink {
    /// Open a producer on `o.topic` for sink `id`.
    pub async fn open(
        fluvio: &Fluvio,
        id: &str,
        records: Records,
        o: &FluvioOutput,
    ) -> anyhow::Result<Self> {
        let cfg = TopicProducerConfigBuilder::default()
            .batch_size(o.batch_bytes)
            .linger(Duration::from_millis(o.linger_ms.max(0) as u64))
            .build()
            .map_err(|e| anyhow::anyhow!("sinks.{id}: producer settings: {e}"))?;
        let producer = fluvio
            .topic_producer_with_config(o.topic.clone(), cfg)
            .await
            .with_context(|| format!("sinks.{id}: opening a producer on {}", o.topic))?;
        Ok(TopicSink {
            id: id.to_string(),
            records,
            topic: o.topic.clone(),
            producer,
            queue: Vec::new(),
            buf: Vec::with_capacity(512),
            unacked: Vec::new(),
            written: 0,
        })
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
        self.buf.clear();
        let key = match o {
            Output::Score(s) => {
                serde_json::to_writer(&mut self.buf, s)?;
                Some(s.card_id.as_bytes().to_vec())
            }
            Output::DeadLetter(d) => {
                serde_json::to_writer(&mut self.buf, d)?;
                None
            }
        };
        self.queue.push((key, self.buf.clone()));
        Ok(())
    }

    fn send(&mut self) -> LocalBoxFuture<'_, anyhow::Result<()>> {
        async move {
            for (key, value) in self.queue.drain(..) {
                let key = key.map_or(RecordKey::NULL, RecordKey::from);
                let output = self
                    .producer
                    .send(key, value)
                    .await
                    .with_context(|| format!("sinks.{}: sending to {}", self.id, self.topic))?;
                self.unacked.push(output);
                self.written += 1;
            }
            if self.unacked.len() >= MAX_UNACKED {
                // Bounded without checkpoints too: check the results so far.
                self.flush().await?;
            }
            Ok(())
        }
        .boxed_local()
    }

    fn flush(&mut self) -> LocalBoxFuture<'_, anyhow::Result<()>> {
        async move {
            self.producer
                .flush()
                .await
                .with_context(|| format!("sinks.{}: flushing {}", self.id, self.topic))?;
            let unacked = self.unacked.len();
            for (i, output) in self.unacked.drain(..).enumerate() {
                output.wait().await.with_context(|| {
                    format!(
                        "sinks.{}: the cluster did not accept record {} of the {unacked} sent to {} since the last flush",
                        self.id,
                        i + 1,
                        self.topic
                    )
                })?;
            }
            Ok(())
        }
        .boxed_local()
    }

    fn written(&self) -> u64 {
        self.written
    }
}
