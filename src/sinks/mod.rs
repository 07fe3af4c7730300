//! Sinks: where scores, alerts and dead letters go. Record sinks run on their
//! own thread and receive batches over a crossbeam channel; the batch vectors
//! travel back for reuse, so the engine thread neither blocks on I/O nor
//! allocates a batch per send.
//!
//! The end-of-run summary and JSON report live in [`report`].

pub mod fluvio;
pub mod report;

use crate::config::{FileFormat, SinkConfig, SinkKind};
use crate::event::{DeadLetter, Score};
use crossbeam::channel::{bounded, Receiver, Sender};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

/// Something the engine emits.
#[derive(Clone, Debug)]
pub enum Output {
    /// A scored transaction.
    Score(Score),
    /// A rejected record.
    DeadLetter(DeadLetter),
}

/// A file of scores, alerts or dead letters.
struct RecordFile {
    kind: SinkKind,
    format: FileFormat,
    path: PathBuf,
    out: BufWriter<File>,
    written: u64,
    line: String,
}

/// Create the parent folders of `path` and the file itself.
pub fn create_file(path: &Path) -> anyhow::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create folder {}: {e}", dir.display()))?;
    }
    File::create(path).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))
}

fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

impl RecordFile {
    fn open(cfg: &SinkConfig) -> anyhow::Result<Self> {
        let path = cfg
            .path
            .clone()
            .expect("validated: record sinks have a path");
        let mut f = RecordFile {
            kind: cfg.kind,
            format: cfg.format,
            out: BufWriter::with_capacity(1 << 16, create_file(&path)?),
            path,
            written: 0,
            line: String::with_capacity(256),
        };
        if f.format == FileFormat::Csv {
            let header = match f.kind {
                SinkKind::DeadLetters => "source,line,kind,reason,raw\n",
                _ => "tx_id,ts,card_id,score,alert,model_version,top_features\n",
            };
            f.out.write_all(header.as_bytes())?;
        }
        Ok(f)
    }

    fn write_score(&mut self, s: &Score) -> std::io::Result<()> {
        self.written += 1;
        match self.format {
            FileFormat::Jsonl => {
                serde_json::to_writer(&mut self.out, s)?;
                self.out.write_all(b"\n")
            }
            FileFormat::Csv => {
                use std::fmt::Write as _;
                let l = &mut self.line;
                l.clear();
                match &s.tx_id {
                    crate::event::TxId::Int(n) => {
                        let _ = write!(l, "{n}");
                    }
                    crate::event::TxId::Str(id) => csv_field(l, id),
                }
                let _ = write!(l, ",{},", s.ts);
                csv_field(l, &s.card_id);
                let _ = write!(l, ",{},{},{},", s.score, s.alert, s.model_version);
                let top: Vec<String> = s
                    .top_features
                    .iter()
                    .map(|c| format!("{}={}", c.feature, c.value))
                    .collect();
                csv_field(l, &top.join(";"));
                l.push('\n');
                self.out.write_all(l.as_bytes())
            }
        }
    }

    fn write_dead(&mut self, d: &DeadLetter) -> std::io::Result<()> {
        self.written += 1;
        match self.format {
            FileFormat::Jsonl => {
                serde_json::to_writer(&mut self.out, d)?;
                self.out.write_all(b"\n")
            }
            FileFormat::Csv => {
                let l = &mut self.line;
                l.clear();
                csv_field(l, &d.source);
                l.push(',');
                if let Some(n) = d.line {
                    l.push_str(&n.to_string());
                }
                l.push(',');
                l.push_str(d.kind.as_str());
                l.push(',');
                csv_field(l, &d.reason);
                l.push(',');
                csv_field(l, &d.raw);
                l.push('\n');
                self.out.write_all(l.as_bytes())
            }
        }
    }

    fn accept(&mut self, o: &Output) -> std::io::Result<()> {
        match (self.kind, o) {
            (SinkKind::Scores, Output::Score(s)) => self.write_score(s),
            (SinkKind::Alerts, Output::Score(s)) if s.alert => self.write_score(s),
            (SinkKind::DeadLetters, Output::DeadLetter(d)) => self.write_dead(d),
            _ => Ok(()),
        }
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

/// What the writer thread wrote, per sink id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written(pub Vec<(String, PathBuf, u64)>);

/// Handle to the writer thread.
pub struct SinkWriter {
    /// This thread's own producer end.
    main: SinkHandle,
    handle: Option<JoinHandle<anyhow::Result<Written>>>,
}

impl SinkWriter {
    /// Open every record sink of `sinks` and start the writer thread.
    pub fn start(sinks: &[SinkConfig], batch_size: usize) -> anyhow::Result<Self> {
        let mut files = Vec::new();
        let mut ids = Vec::new();
        for s in sinks {
            if s.topic.is_none()
                && matches!(
                    s.kind,
                    SinkKind::Scores | SinkKind::Alerts | SinkKind::DeadLetters
                )
            {
                files.push(RecordFile::open(s)?);
                ids.push(s.id.clone());
            }
        }
        let (tx, rx) = bounded::<Vec<Output>>(8);
        let (back_tx, back_rx) = bounded::<Vec<Output>>(10);
        let handle = std::thread::Builder::new()
            .name("fraudstream-sinks".into())
            .spawn(move || -> anyhow::Result<Written> {
                for mut batch in rx {
                    for o in &batch {
                        for f in files.iter_mut() {
                            f.accept(o).map_err(|e| {
                                anyhow::anyhow!("writing {}: {e}", f.path.display())
                            })?;
                        }
                    }
                    batch.clear();
                    let _ = back_tx.try_send(batch);
                }
                let mut written = Written::default();
                for (f, id) in files.iter_mut().zip(ids) {
                    f.out
                        .flush()
                        .map_err(|e| anyhow::anyhow!("writing {}: {e}", f.path.display()))?;
                    written.0.push((id, f.path.clone(), f.written));
                }
                Ok(written)
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
