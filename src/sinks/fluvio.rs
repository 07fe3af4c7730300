//! Fluvio topics as sinks: scores, alerts and dead letters as JSON records,
//! keyed by card id (dead letters by their source partition). The producer
//! batches records (`batch_bytes`) and sends a batch when it is full or has
//! waited `linger`; [`FluvioSinks::flush`] waits until everything sent so far
//! is acknowledged, which a checkpoint does before it stores offsets.

use crate::config::{SinkConfig, SinkKind};
use crate::event::{DeadLetter, Score};
use anyhow::Context;
use fluvio::{Fluvio, RecordKey, TopicProducerConfigBuilder, TopicProducerPool};
use std::time::Duration;

struct Output {
    id: String,
    kind: SinkKind,
    topic: String,
    producer: TopicProducerPool,
    written: u64,
}

/// Every Fluvio sink of a topology.
pub struct FluvioSinks {
    outputs: Vec<Output>,
    buf: Vec<u8>,
}

impl FluvioSinks {
    /// Open a producer for every sink with a topic.
    pub async fn open(fluvio: &Fluvio, sinks: &[SinkConfig]) -> anyhow::Result<Self> {
        let mut outputs = Vec::new();
        for s in sinks {
            let Some(o) = &s.topic else { continue };
            let cfg = TopicProducerConfigBuilder::default()
                .batch_size(o.batch_bytes)
                .linger(Duration::from_millis(o.linger_ms.max(0) as u64))
                .build()
                .map_err(|e| anyhow::anyhow!("sinks.{}: producer settings: {e}", s.id))?;
            let producer = fluvio
                .topic_producer_with_config(o.topic.clone(), cfg)
                .await
                .with_context(|| format!("sinks.{}: opening a producer on {}", s.id, o.topic))?;
            outputs.push(Output {
                id: s.id.clone(),
                kind: s.kind,
                topic: o.topic.clone(),
                producer,
                written: 0,
            });
        }
        Ok(FluvioSinks {
            outputs,
            buf: Vec::with_capacity(512),
        })
    }

    /// Whether any sink writes to Fluvio.
    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    /// Send a score to the score sinks, and to the alert sinks when it alerted.
    pub async fn score(&mut self, s: &Score) -> anyhow::Result<()> {
        let mut encoded = false;
        for o in self.outputs.iter_mut() {
            let wanted = match o.kind {
                SinkKind::Scores => true,
                SinkKind::Alerts => s.alert,
                _ => false,
            };
            if !wanted {
                continue;
            }
            if !encoded {
                self.buf.clear();
                serde_json::to_writer(&mut self.buf, s)?;
                encoded = true;
            }
            o.producer
                .send(s.card_id.as_bytes().to_vec(), self.buf.clone())
                .await
                .with_context(|| format!("sinks.{}: sending to {}", o.id, o.topic))?;
            o.written += 1;
        }
        Ok(())
    }

    /// Send a dead letter to the dead-letter sinks.
    pub async fn dead_letter(&mut self, d: &DeadLetter) -> anyhow::Result<()> {
        let mut encoded = false;
        for o in self
            .outputs
            .iter_mut()
            .filter(|o| o.kind == SinkKind::DeadLetters)
        {
            if !encoded {
                self.buf.clear();
                serde_json::to_writer(&mut self.buf, d)?;
                encoded = true;
            }
            o.producer
                .send(RecordKey::NULL, self.buf.clone())
                .await
                .with_context(|| format!("sinks.{}: sending to {}", o.id, o.topic))?;
            o.written += 1;
        }
        Ok(())
    }

    /// Send every queued batch and wait for the cluster to acknowledge them.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        for o in &self.outputs {
            o.producer
                .flush()
                .await
                .with_context(|| format!("sinks.{}: flushing {}", o.id, o.topic))?;
        }
        Ok(())
    }

    /// Records sent per sink: (id, topic, records).
    pub fn written(&self) -> Vec<(String, String, u64)> {
        self.outputs
            .iter()
            .map(|o| (o.id.clone(), o.topic.clone(), o.written))
            .collect()
    }
}
