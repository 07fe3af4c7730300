//! Sinks: where scores, alerts and dead letters go. Each record sink is a
//! [`Sink`], a file ([`file`](mod@file)) or a Fluvio topic ([`fluvio`]); a
//! [`SinkRouter`] hands every output to the sinks whose [`Records`] take it
//! (the one routing rule, [`takes`]). The file pipeline runs its router on a
//! writer thread fed with batches over a bounded crossbeam channel (the batch
//! vectors travel back for reuse, so the engine thread neither blocks on I/O
//! nor allocates a batch per send); the service owns its router.
//!
//! A sink that fails (a full disk, a lost topic) stops the run with its
//! error, which names the sink, where it writes and the cause. The other
//! sinks are flushed first, so they keep what they were given.
//!
//! The end-of-run summary and JSON report live in [`report`].

pub mod file;
pub mod fluvio;
pub mod report;

pub use file::create_file;

use crate::config::{RecordTarget, Records, SinkConfig};
use crate::connectors::stage::StageRecord;
use crossbeam::channel::{bounded, Receiver, Sender};
use fraudstream_engine::event::{DeadLetter, Score};
use futures_executor::block_on;
use futures_util::future::LocalBoxFuture;
use std::collections::HashMap;
use std::thread::JoinHandle;

/// A producer found the writer thread stopped. Not the cause: the writer's
/// own error, returned by [`SinkWriter::finish`] or [`SinkWriter::abandon`],
/// says why it stopped.
#[derive(Debug, thiserror::Error)]
#[error("the sink writer stopped")]
pub struct WriterStopped;

/// Something the engine emits.
#[derive(Clone, Debug)]
pub enum Output {
    /// A scored transaction.
    Score(Score),
    /// A rejected record.
    DeadLetter(DeadLetter),
    /// A record for another stage (a repartitioned topology).
    Stage(crate::connectors::stage::StageRecord),
}

impl Output {
    /// The partition this output chooses for itself: a stage record's card
    /// partition (a label has a copy in each card partition of its lane);
    /// 0 for the rest, whose one record per sink goes where its key hashes.
    ///
    /// Outputs already written are counted per input *and* this partition:
    /// a crash between two partitions' produce requests leaves some copies
    /// of a label written and others not, while one partition keeps its
    /// records in order (what was written of it is a prefix).
    pub fn own_partition(&self) -> u32 {
        match self {
            Output::Stage(r) => r.partition(),
            Output::Score(_) | Output::DeadLetter(_) => 0,
        }
    }
}

/// An output a sink already holds, as read back after a restart: its
/// input ([`Provenance::key`]) and [`Output::own_partition`].
pub type HeldKey = (u64, u32);

/// Whether a sink of `records` takes `o`: a score sink every score, an alert
/// sink the scores that alerted, a dead-letter sink the rejected records.
pub fn takes(records: Records, o: &Output) -> bool {
    match (records, o) {
        (Records::Scores, Output::Score(_)) => true,
        (Records::Alerts, Output::Score(s)) => s.alert,
        (Records::DeadLetters, Output::DeadLetter(_)) => true,
        (Records::Stage, Output::Stage(r)) => !matches!(r, StageRecord::Vector { .. }),
        (Records::Learn, Output::Stage(r)) => matches!(r, StageRecord::Vector { .. }),
        _ => false,
    }
}

/// A destination of records: encodes what it takes and hands it to its
/// transport. Writing only queues or buffers; [`send`](Sink::send) passes the
/// queue on, [`flush`](Sink::flush) waits until everything is durable.
pub trait Sink: Send {
    /// Id in the topology.
    fn id(&self) -> &str;
    /// Which records it takes.
    fn records(&self) -> Records;
    /// Where it writes: a path, or `fluvio:TOPIC`.
    fn location(&self) -> String;
    /// Encode one record (one it takes) and queue or buffer it.
    fn write(&mut self, o: &Output) -> anyhow::Result<()>;
    /// [`write`](Sink::write), for a sink that records where an output
    /// came from (a topic, see [`Provenance`]); others ignore `from`.
    fn write_from(&mut self, o: &Output, _from: &Provenance) -> anyhow::Result<()> {
        self.write(o)
    }
    /// [`write_from`](Sink::write_from) with `o`'s record value already
    /// encoded as a topic sink encodes it
    /// ([`fluvio::encode_value`]); other sinks encode `o` themselves.
    fn write_encoded_from(
        &mut self,
        o: &Output,
        _value: &[u8],
        from: &Provenance,
    ) -> anyhow::Result<()> {
        self.write_from(o, from)
    }
    /// The topic it produces to, if it is a topic sink.
    fn topic(&self) -> Option<&str> {
        None
    }
    /// For a topic: per partition, the offset after the last record the
    /// cluster acknowledged (at the last [`flush`](Sink::flush)).
    fn acknowledged(&self) -> Vec<(u32, i64)> {
        Vec::new()
    }
    /// Pass what is queued to the transport, without waiting for acknowledgement.
    fn send(&mut self) -> LocalBoxFuture<'_, anyhow::Result<()>>;
    /// Wait until everything written is durable (a file flushed, a topic acknowledged).
    fn flush(&mut self) -> LocalBoxFuture<'_, anyhow::Result<()>>;
    /// Records written so far.
    fn written(&self) -> u64;
}

/// Where an output came from, as the service records it in each output
/// record (`"input": "TOPIC/PARTITION@OFFSET"`, `"lineage": "HEX"`), so that
/// after a crash it can tell which outputs were already produced (see
/// `exec::service::delivery`).
#[derive(Clone, Copy, Debug)]
pub struct Provenance<'a> {
    /// The input record's partition, as `topic/partition`.
    pub input: &'a str,
    /// The input record's offset.
    pub offset: i64,
    /// The state lineage that produced it (a fresh state draws a new one;
    /// restores keep it).
    pub lineage: u64,
    /// `input` and `offset` as one number, unique within the service.
    pub key: u64,
}

/// Take one of the records counted for `key`; whether there was one.
fn take_one(counts: &mut HashMap<HeldKey, u32>, key: HeldKey) -> bool {
    match counts.get_mut(&key) {
        Some(n) if *n > 1 => {
            *n -= 1;
            true
        }
        Some(_) => {
            counts.remove(&key);
            true
        }
        None => false,
    }
}

/// What the sinks wrote: (id, location, records) per sink.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written(pub Vec<(String, String, u64)>);

/// Every record sink of a run, each output routed to those that take it.
#[derive(Default)]
pub struct SinkRouter {
    sinks: Vec<Box<dyn Sink>>,
    /// Bit i: sink i was written to since the last send (at most 64 sinks
    /// are tracked; the rest are always sent).
    queued: u64,
    /// Per sink, the outputs it already holds (read back after a restart),
    /// with how many records each: not written again.
    suppressed: Vec<HashMap<HeldKey, u32>>,
}

impl SinkRouter {
    /// Route to `sinks`.
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> Self {
        let suppressed = sinks.iter().map(|_| HashMap::new()).collect();
        SinkRouter {
            sinks,
            queued: 0,
            suppressed,
        }
    }

    /// The sinks, in routing order.
    pub fn sinks(&self) -> impl Iterator<Item = &dyn Sink> {
        self.sinks.iter().map(|s| s.as_ref())
    }

    /// Outputs sink `i` already holds, by input and partition, with how
    /// many records each: [`route_from`](Self::route_from) skips that many.
    pub fn suppress(&mut self, i: usize, keys: HashMap<HeldKey, u32>) {
        self.suppressed[i] = keys;
    }

    /// Outputs still to be skipped, over all sinks.
    pub fn suppressed(&self) -> usize {
        self.suppressed
            .iter()
            .flat_map(|m| m.values())
            .map(|&n| n as usize)
            .sum()
    }

    /// Forget the outputs to skip that `keep` refuses (inputs the stream
    /// has passed without producing them again).
    pub fn prune_suppressed(&mut self, keep: impl Fn(u64) -> bool) {
        for set in &mut self.suppressed {
            set.retain(|&(k, _), _| keep(k));
        }
    }

    /// Write `o`, produced from the input `from`, to every sink that takes
    /// it and does not hold it already.
    #[inline]
    pub fn route_from(&mut self, o: &Output, from: &Provenance) -> anyhow::Result<()> {
        self.route_each(o, from, |s| s.write_from(o, from))
    }

    /// [`route_from`](Self::route_from) with `o`'s record value already
    /// encoded ([`fluvio::encode_value`]): topic sinks take the bytes as
    /// they are.
    #[inline]
    pub fn route_encoded_from(
        &mut self,
        o: &Output,
        value: &[u8],
        from: &Provenance,
    ) -> anyhow::Result<()> {
        self.route_each(o, from, |s| s.write_encoded_from(o, value, from))
    }

    /// `write` to every sink that takes `o` and does not hold it already.
    #[inline]
    fn route_each(
        &mut self,
        o: &Output,
        from: &Provenance,
        mut write: impl FnMut(&mut dyn Sink) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        for (i, s) in self.sinks.iter_mut().enumerate() {
            if takes(s.records(), o) {
                let set = &mut self.suppressed[i];
                if !set.is_empty() && take_one(set, (from.key, o.own_partition())) {
                    metrics::counter!("fraudstream_outputs_suppressed_total", "sink" => s.id().to_string())
                        .increment(1);
                    continue;
                }
                write(s.as_mut())?;
                self.queued |= 1u64.checked_shl(i as u32).unwrap_or(0);
            }
        }
        Ok(())
    }

    /// Open the file record sinks of `sinks` (topics are the service's).
    pub fn open_files(sinks: &[SinkConfig]) -> anyhow::Result<Self> {
        let mut out: Vec<Box<dyn Sink>> = Vec::new();
        for s in sinks {
            if let SinkConfig::Records {
                id,
                records,
                to: RecordTarget::File { path, format },
            } = s
            {
                out.push(Box::new(file::FileSink::open(id, *records, path, *format)?));
            }
        }
        Ok(Self::new(out))
    }

    /// Whether no sink is open.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    /// Write `o` to every sink that takes it.
    #[inline]
    pub fn route(&mut self, o: &Output) -> anyhow::Result<()> {
        for (i, s) in self.sinks.iter_mut().enumerate() {
            if takes(s.records(), o) {
                s.write(o)?;
                self.queued |= 1u64.checked_shl(i as u32).unwrap_or(0);
            }
        }
        Ok(())
    }

    /// Pass every sink's queue to its transport.
    pub async fn send(&mut self) -> anyhow::Result<()> {
        let queued = std::mem::take(&mut self.queued);
        for (i, s) in self.sinks.iter_mut().enumerate() {
            if i >= 64 || queued & (1 << i) != 0 {
                s.send().await?;
            }
        }
        Ok(())
    }

    /// Wait until every sink's records are durable. A sink that fails does
    /// not keep the others from flushing; the first error is returned.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        let mut first = self.send().await.err();
        for s in self.sinks.iter_mut() {
            if let Err(e) = s.flush().await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Records written, per sink.
    pub fn written(&self) -> Written {
        Written(
            self.sinks
                .iter()
                .map(|s| (s.id().to_string(), s.location(), s.written()))
                .collect(),
        )
    }
}

/// A producer's end of the writer thread, for a parallel worker.
pub struct SinkHandle {
    tx: Option<Sender<Vec<Output>>>,
    recycled: Receiver<Vec<Output>>,
    batch: Vec<Output>,
    batch_size: usize,
}

impl SinkHandle {
    /// Queue one output; sends a full batch. `false` when the writer has
    /// stopped (its error is reported by [`SinkWriter::finish`] or
    /// [`SinkWriter::abandon`]).
    #[inline]
    pub fn push(&mut self, o: Output) -> bool {
        self.batch.push(o);
        self.batch.len() < self.batch_size || self.flush()
    }

    /// Send what is queued; `false` when the writer has stopped.
    pub fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let next = self
            .recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(self.batch_size));
        let full = std::mem::replace(&mut self.batch, next);
        self.tx
            .as_ref()
            .map(|t| t.send(full).is_ok())
            .unwrap_or(false)
    }
}

/// Handle to the writer thread.
pub struct SinkWriter {
    /// This thread's own producer end.
    main: SinkHandle,
    handle: Option<JoinHandle<anyhow::Result<Written>>>,
}

impl SinkWriter {
    /// Open every file record sink of `sinks` and start the writer thread.
    pub fn start(sinks: &[SinkConfig], batch_size: usize) -> anyhow::Result<Self> {
        let mut router = SinkRouter::open_files(sinks)?;
        let (tx, rx) = bounded::<Vec<Output>>(8);
        let (back_tx, back_rx) = bounded::<Vec<Output>>(10);
        let handle = std::thread::Builder::new()
            .name("fraudstream-sinks".into())
            .spawn(move || -> anyhow::Result<Written> {
                // File sinks complete their futures at once: nothing to wait for.
                for mut batch in rx {
                    for o in &batch {
                        if let Err(e) = router.route(o) {
                            // Stop (producers then fail fast), but let the
                            // other sinks keep what they were given.
                            let _ = block_on(router.flush());
                            return Err(e);
                        }
                    }
                    batch.clear();
                    let _ = back_tx.try_send(batch);
                }
                block_on(router.flush())?;
                Ok(router.written())
            })?;
        Ok(SinkWriter {
            main: SinkHandle {
                tx: Some(tx),
                recycled: back_rx,
                batch: Vec::with_capacity(batch_size),
                batch_size,
            },
            handle: Some(handle),
        })
    }

    /// Queue one output; sends a full batch to the writer thread. Fails with
    /// [`WriterStopped`] when the writer has stopped.
    #[inline]
    pub fn push(&mut self, o: Output) -> anyhow::Result<()> {
        if self.main.push(o) {
            Ok(())
        } else {
            Err(WriterStopped.into())
        }
    }

    /// Another producer on the same writer thread, with its own batch (one
    /// per parallel worker). Drop every handle before [`finish`](Self::finish).
    pub fn handle(&self) -> SinkHandle {
        SinkHandle {
            tx: self.main.tx.clone(),
            recycled: self.main.recycled.clone(),
            batch: Vec::with_capacity(self.main.batch_size),
            batch_size: self.main.batch_size,
        }
    }

    /// Send the rest, close this producer and wait for the writer (every
    /// other handle must be dropped): what it wrote, or why it stopped.
    fn join(&mut self) -> anyhow::Result<Written> {
        self.main.flush();
        self.main.tx = None;
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            Some(Err(panic)) => anyhow::bail!(
                "the sink writer thread panicked: {}",
                crate::panic_message(&*panic)
            ),
            None => anyhow::bail!("the sink writer was already stopped"),
        }
    }

    /// Send the rest, wait for the writer and report what it wrote, or the
    /// error it stopped on.
    pub fn finish(mut self) -> anyhow::Result<Written> {
        self.join()
    }

    /// End a run that failed with `cause`: send the rest, wait for the
    /// writer (so every sink keeps what it was given, flushed), and return
    /// the error to report. When the run failed because the writer had
    /// stopped ([`WriterStopped`]), the writer's own error is the cause.
    pub fn abandon(mut self, cause: anyhow::Error) -> anyhow::Error {
        match self.join() {
            Ok(_) => cause,
            Err(own) if cause.is::<WriterStopped>() => own,
            Err(own) => anyhow::anyhow!("{cause:#}; and the sinks failed: {own:#}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FileFormat;
    use fraudstream_engine::event::{RejectKind, TxId};
    use std::path::Path;

    fn file_sink(id: &str, records: Records, path: &Path) -> SinkConfig {
        SinkConfig::Records {
            id: id.into(),
            records,
            to: RecordTarget::File {
                path: path.to_path_buf(),
                format: FileFormat::Jsonl,
            },
        }
    }

    fn score(n: u64) -> Output {
        Output::Score(Score {
            tx_id: TxId::Int(n),
            ts: 1_700_000_000_000,
            card_id: "card".into(),
            score: 0.25,
            alert: false,
            model_version: 0,
            top_features: Vec::new(),
            decision: None,
            reasons: Vec::new(),
        })
    }

    fn dead_letter() -> Output {
        Output::DeadLetter(DeadLetter {
            source: "source".into(),
            line: Some(3),
            kind: RejectKind::Malformed,
            reason: "not JSON".into(),
            raw: "{".into(),
        })
    }

    fn lines(path: &Path) -> usize {
        std::fs::read_to_string(path).unwrap().lines().count()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_failing_sink_is_the_cause_and_the_others_keep_what_they_were_given() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join("dead.jsonl");
        let sinks = [
            file_sink("scores", Records::Scores, Path::new("/dev/full")),
            file_sink("dead", Records::DeadLetters, &dead),
        ];
        let mut w = SinkWriter::start(&sinks, 64).unwrap();
        w.push(dead_letter()).unwrap();
        // More scores than the 64 KiB buffer holds: a write fails.
        let stopped = (0..100_000)
            .find_map(|n| w.push(score(n)).err())
            .expect("the writer stops");
        assert!(stopped.is::<WriterStopped>(), "{stopped:#}");
        let err = w.abandon(stopped);
        assert_eq!(
            format!("{err:#}"),
            "sinks.scores: writing /dev/full: No space left on device (os error 28)"
        );
        assert_eq!(lines(&dead), 1, "the dead letter was flushed");
    }

    #[test]
    fn an_input_with_several_records_in_a_sink_is_skipped_as_often() {
        let mut counts = HashMap::from([((7, 0), 2), ((9, 0), 1), ((9, 1), 1)]);
        assert!(take_one(&mut counts, (7, 0)));
        assert!(
            take_one(&mut counts, (7, 0)),
            "a second vector of one input"
        );
        assert!(!take_one(&mut counts, (7, 0)), "a third was never written");
        assert!(
            take_one(&mut counts, (9, 1)),
            "a label's copy in partition 1"
        );
        assert!(
            !take_one(&mut counts, (9, 2)),
            "its copy in partition 2 was not"
        );
        assert!(take_one(&mut counts, (9, 0)));
        assert!(counts.is_empty());
    }

    #[test]
    fn a_run_that_failed_elsewhere_keeps_its_cause_and_every_output() {
        let dir = tempfile::tempdir().unwrap();
        let scores = dir.path().join("scores.jsonl");
        let mut w =
            SinkWriter::start(&[file_sink("scores", Records::Scores, &scores)], 64).unwrap();
        for n in 0..3 {
            w.push(score(n)).unwrap();
        }
        let err = w.abandon(anyhow::anyhow!("card stage 1 panicked: boom"));
        assert_eq!(format!("{err:#}"), "card stage 1 panicked: boom");
        assert_eq!(lines(&scores), 3, "what was queued is written");
    }
}
