//! Files as sinks: scores, alerts or dead letters as JSON lines or CSV
//! (with a header row), written through a 64 KiB buffer. A file is written
//! from the start on every run. Every I/O error names the sink, its path and
//! the operating system's error (`sinks.scores: writing out/s.jsonl: No space
//! left on device`), the `io::Error` kept in the chain.

use super::{Output, Sink};
use crate::config::{FileFormat, Records};
use anyhow::Context;
use fraudstream_engine::event::{DeadLetter, Score, TxId};
use futures_util::future::{ready, LocalBoxFuture};
use futures_util::FutureExt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

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

/// A file of scores, alerts or dead letters.
pub struct FileSink {
    id: String,
    records: Records,
    format: FileFormat,
    path: PathBuf,
    out: BufWriter<File>,
    written: u64,
    line: String,
}

impl FileSink {
    /// Create the file (and its folders) and write the CSV header if any.
    pub fn open(
        id: &str,
        records: Records,
        path: &Path,
        format: FileFormat,
    ) -> anyhow::Result<Self> {
        let file = create_file(path).with_context(|| format!("sinks.{id}"))?;
        let mut f = FileSink {
            id: id.to_string(),
            records,
            format,
            out: BufWriter::with_capacity(1 << 16, file),
            path: path.to_path_buf(),
            written: 0,
            line: String::with_capacity(256),
        };
        if f.format == FileFormat::Csv {
            let header = match f.records {
                Records::DeadLetters => "source,line,kind,reason,raw\n",
                // Stage records travel through topics only.
                Records::Stage | Records::Learn => "",
                Records::Scores | Records::Alerts => {
                    "tx_id,ts,card_id,score,alert,model_version,top_features\n"
                }
            };
            f.out
                .write_all(header.as_bytes())
                .map_err(|e| f.io_error("writing", e))?;
        }
        Ok(f)
    }

    /// `e`, met while `doing` something to the file, with the sink and path.
    fn io_error(&self, doing: &str, e: std::io::Error) -> anyhow::Error {
        anyhow::Error::new(e).context(format!(
            "sinks.{}: {doing} {}",
            self.id,
            self.path.display()
        ))
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
                    TxId::Int(n) => {
                        let _ = write!(l, "{n}");
                    }
                    TxId::Str(id) => csv_field(l, id),
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
}

impl Sink for FileSink {
    fn id(&self) -> &str {
        &self.id
    }

    fn records(&self) -> Records {
        self.records
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn write(&mut self, o: &Output) -> anyhow::Result<()> {
        match o {
            Output::Score(s) => self.write_score(s),
            Output::DeadLetter(d) => self.write_dead(d),
            Output::Stage(_) => anyhow::bail!(
                "sinks.{}: stage records travel through Fluvio topics, not files",
                self.id
            ),
        }
        .map_err(|e| self.io_error("writing", e))
    }

    fn send(&mut self) -> LocalBoxFuture<'_, anyhow::Result<()>> {
        // Writes went to the buffer already; it drains as it fills.
        ready(Ok(())).boxed_local()
    }

    fn flush(&mut self) -> LocalBoxFuture<'_, anyhow::Result<()>> {
        let done = self.out.flush().map_err(|e| self.io_error("flushing", e));
        ready(done).boxed_local()
    }

    fn written(&self) -> u64 {
        self.written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fraudstream_engine::event::TxId;

    #[test]
    fn csv_scores_quote_what_needs_quoting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.csv");
        let mut f = FileSink::open("s", Records::Scores, &path, FileFormat::Csv).unwrap();
        let score = Score {
            tx_id: TxId::Str("a,b".into()),
            ts: 5,
            card_id: "c\"1".into(),
            score: 0.25,
            alert: false,
            model_version: 3,
            top_features: Vec::new(),
            decision: None,
            reasons: Vec::new(),
        };
        f.write(&Output::Score(score)).unwrap();
        f.flush().now_or_never().unwrap().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "tx_id,ts,card_id,score,alert,model_version,top_features\n\"a,b\",5,\"c\"\"1\",0.25,false,3,\n"
        );
        assert_eq!(f.written(), 1);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_device_is_reported_with_sink_path_and_cause() {
        let mut f = FileSink::open(
            "scores",
            Records::Scores,
            Path::new("/dev/full"),
            FileFormat::Csv,
        )
        .unwrap();
        let err = f.flush().now_or_never().unwrap().unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "sinks.scores: flushing /dev/full: No space left on device (os error 28)"
        );
        assert!(err.downcast_ref::<std::io::Error>().is_some(), "{err:?}");
    }
}
