//! Sinks: where scores, alerts and dead letters go. Each record sink is a
//! [`Sink`], a file ([`file`]) or a Fluvio topic ([`fluvio`]); a
//! [`SinkRouter`] hands every output to the sinks whose [`Records`] take it
//! (the one routing rule, [`takes`]). The file pipeline runs its router on a
//! writer thread fed with batches over a bounded crossbeam channel (the batch
//! vectors travel back for reuse, so the engine thread neither blocks on I/O
//! nor allocates a batch per send); the service owns its router.
//!
//! The end-of-run summary and JSON report live in [`report`].

pub mod file;
pub mod fluvio;
pub mod report;

pub use file::create_file;

use crate::config::{RecordTarget, Records, SinkConfig};
use crossbeam::channel::{bounded, Receiver, Sender};
use fraudstream_engine::event::{DeadLetter, Score};
use futures_executor::block_on;
use futures_util::future::LocalBoxFuture;
use std::thread::JoinHandle;

/// Something the engine emits.
#[derive(Clone, Debug)]
pub enum Output {
    /// A scored transaction.
    Score(Score),
    /// A rejected record.
    DeadLetter(DeadLetter),
}

/// Whether a sink of `records` takes `o`: a score sink every score, an alert
/// sink the scores that alerted, a dead-letter sink the rejected records.
pub fn takes(records: Records, o: &Output) -> bool {
    match (records, o) {
        (Records::Scores, Output::Score(_)) => true,
        (Records::Alerts, Output::Score(s)) => s.alert,
        (Records::DeadLetters, Output::DeadLetter(_)) => true,
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
    /// Pass what is queued to the transport, without waiting for acknowledgement.
    fn send(&mut self) -> LocalBoxFuture<'_, anyhow::Result<()>>;
    /// Wait until everything written is durable (a file flushed, a topic acknowledged).
    fn flush(&mut self) -> LocalBoxFuture<'_, anyhow::Result<()>>;
    /// Records written so far.
    fn written(&self) -> u64;
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
}

impl SinkRouter {
    /// Route to `sinks`.
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> Self {
        SinkRouter { sinks, queued: 0 }
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

    /// Wait until every sink's records are durable.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        self.send().await?;
        for s in self.sinks.iter_mut() {
            s.flush().await?;
        }
        Ok(())
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
    /// stopped (its error is reported by [`SinkWriter::finish`]).
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
                        router.route(o)?;
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

    /// Queue one output; sends a full batch to the writer thread.
    #[inline]
    pub fn push(&mut self, o: Output) -> anyhow::Result<()> {
        if self.main.push(o) {
            Ok(())
        } else {
            Err(self.stop_with_error())
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

    /// Send what is queued.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        if self.main.flush() {
            Ok(())
        } else {
            // The writer stopped: its error says why.
            Err(self.stop_with_error())
        }
    }

    fn stop_with_error(&mut self) -> anyhow::Error {
        self.main.tx = None;
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(Err(e))) => e,
            Some(Err(_)) => anyhow::anyhow!("the sink writer thread panicked"),
            _ => anyhow::anyhow!("the sink writer thread stopped"),
        }
    }

    /// Send the rest, wait for the writer and report what it wrote.
    pub fn finish(mut self) -> anyhow::Result<Written> {
        self.flush()?;
        self.main.tx = None;
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => anyhow::bail!("the sink writer thread panicked"),
            None => anyhow::bail!("the sink writer was already stopped"),
        }
    }
}
