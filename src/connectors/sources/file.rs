//! CSV and JSONL file readers: records in file order, decoded through a field
//! mapping, each bad one turned into a dead letter with its line number.

use super::decode::{truncate, Decoder, RawRecord, RecordKind, Reject};
use crate::config::{FileFormat, FileInput};
use compact_str::CompactString;
use fraudstream_engine::event::{DeadLetter, Label, RejectKind, Transaction};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};

/// Raw bytes of a rejected record kept in its dead letter.
pub const DEAD_LETTER_RAW_BYTES: usize = 4096;

/// One record read from a file.
#[derive(Debug)]
pub enum FileRecord {
    /// A transaction, with its label-column verdict when one is mapped.
    Transaction(Transaction, Option<Result<bool, Reject>>),
    /// A label.
    Label(Label),
    /// A rejected record.
    Rejected(DeadLetter),
}

/// Counts bytes read, for progress.
struct Counting<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

enum Inner {
    Csv {
        reader: Box<csv::Reader<Counting<File>>>,
        /// Slot of each column, by position.
        slots: Vec<Option<usize>>,
        record: csv::StringRecord,
        width: usize,
    },
    Jsonl {
        reader: BufReader<Counting<File>>,
        line: Vec<u8>,
    },
}

/// Reads one file of transactions or labels.
pub struct FileReader {
    source: CompactString,
    decoder: Decoder,
    kind: RecordKind,
    inner: Inner,
    total_bytes: u64,
    line_no: u64,
    max_record_bytes: usize,
    done: bool,
    /// `order = "time"`: the whole file, sorted, once read.
    sort_by_time: bool,
    sorted: Option<std::vec::IntoIter<FileRecord>>,
}

impl FileReader {
    /// Open `input` as a source named `source`. Fails (with the path and the
    /// reason) when the file cannot be opened or a CSV header lacks a mapped
    /// required column.
    pub fn open(
        source: &str,
        input: &FileInput,
        kind: RecordKind,
        label_column: Option<&str>,
    ) -> anyhow::Result<Self> {
        let path = &input.path;
        let file = File::open(path)
            .map_err(|e| anyhow::anyhow!("cannot open {} ({source}): {e}", path.display()))?;
        let total_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        let counting = Counting {
            inner: file,
            bytes: 0,
        };
        let decoder = Decoder::new(kind, &input.fields, label_column, input.timestamp.clone());
        let inner = match input.format {
            FileFormat::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .flexible(true)
                    .from_reader(counting);
                let headers = reader
                    .headers()
                    .map_err(|e| {
                        anyhow::anyhow!("{}: cannot read the CSV header: {e}", path.display())
                    })?
                    .clone();
                let missing = decoder.missing_columns(headers.iter());
                if !missing.is_empty() {
                    let list: Vec<String> = missing
                        .iter()
                        .map(|(f, c)| {
                            if f == c {
                                c.to_string()
                            } else {
                                format!("{c} (for {f})")
                            }
                        })
                        .collect();
                    anyhow::bail!(
                        "{}: the CSV header has no column {}; its columns are: {}. Map them under [{source}.fields].",
                        path.display(),
                        list.join(", "),
                        headers.iter().collect::<Vec<_>>().join(", ")
                    );
                }
                let slots = headers.iter().map(|h| decoder.slot_of(h)).collect();
                Inner::Csv {
                    reader: Box::new(reader),
                    slots,
                    record: csv::StringRecord::new(),
                    width: headers.len(),
                }
            }
            FileFormat::Jsonl => Inner::Jsonl {
                reader: BufReader::with_capacity(1 << 16, counting),
                line: Vec::with_capacity(1024),
            },
        };
        Ok(FileReader {
            source: source.into(),
            decoder,
            kind,
            inner,
            total_bytes,
            line_no: 0,
            max_record_bytes: input.max_record_bytes,
            done: false,
            sort_by_time: input.sort_by_time,
            sorted: None,
        })
    }

    /// Share of the file read.
    pub fn progress(&self) -> f64 {
        let read = match &self.inner {
            Inner::Csv { reader, .. } => reader.get_ref().bytes,
            Inner::Jsonl { reader, .. } => reader.get_ref().bytes,
        };
        if self.total_bytes == 0 {
            1.0
        } else {
            (read as f64 / self.total_bytes as f64).min(1.0)
        }
    }

    fn dead(source: &CompactString, line: u64, reject: Reject, raw: &str) -> FileRecord {
        FileRecord::Rejected(DeadLetter {
            source: source.clone(),
            line: Some(line),
            kind: reject.kind,
            reason: reject.reason,
            raw: truncate(raw, DEAD_LETTER_RAW_BYTES).to_string(),
        })
    }

    fn build(
        decoder: &Decoder,
        kind: RecordKind,
        rec: &RawRecord<'_>,
    ) -> Result<FileRecord, Reject> {
        Ok(match kind {
            RecordKind::Transaction => {
                let (t, l) = decoder.transaction(rec)?;
                FileRecord::Transaction(t, l)
            }
            RecordKind::Label => FileRecord::Label(decoder.label(rec)?),
        })
    }

    /// Read one line of at most `max` bytes into `buf`; returns (bytes in the
    /// line, whether anything was read). Longer lines are consumed but not kept.
    fn read_bounded_line(
        reader: &mut impl BufRead,
        buf: &mut Vec<u8>,
        max: usize,
    ) -> io::Result<(usize, bool)> {
        buf.clear();
        let mut total = 0usize;
        let mut any = false;
        loop {
            let chunk = reader.fill_buf()?;
            if chunk.is_empty() {
                return Ok((total, any));
            }
            any = true;
            let (take, end) = match memchr(b'\n', chunk) {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            if buf.len() <= max {
                let keep = take.min(max + 1 - buf.len().min(max + 1));
                buf.extend_from_slice(&chunk[..keep]);
            }
            total += take;
            reader.consume(take);
            if end {
                return Ok((total, any));
            }
        }
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

impl FileReader {
    /// Read everything, then order it: rejected records first (they have no
    /// time), then by event time, ties in file order.
    fn load_sorted(&mut self) -> std::vec::IntoIter<FileRecord> {
        let mut all: Vec<FileRecord> = std::iter::from_fn(|| self.next_in_file()).collect();
        let ts = |r: &FileRecord| match r {
            FileRecord::Transaction(t, _) => t.ts,
            FileRecord::Label(l) => l.ts,
            FileRecord::Rejected(_) => i64::MIN,
        };
        all.sort_by_key(ts);
        all.into_iter()
    }
}

impl Iterator for FileReader {
    type Item = FileRecord;

    fn next(&mut self) -> Option<FileRecord> {
        if self.sort_by_time {
            if self.sorted.is_none() {
                self.sorted = Some(self.load_sorted());
            }
            return self.sorted.as_mut().and_then(|it| it.next());
        }
        self.next_in_file()
    }
}

impl FileReader {
    /// The next record in file order.
    fn next_in_file(&mut self) -> Option<FileRecord> {
        if self.done {
            return None;
        }
        let FileReader {
            source,
            decoder,
            kind,
            inner,
            line_no: self_line_no,
            max_record_bytes,
            done,
            ..
        } = self;
        let kind = *kind;
        loop {
            match inner {
                Inner::Jsonl { reader, line } => {
                    let max = *max_record_bytes;
                    let (n, any) = match Self::read_bounded_line(reader, line, max) {
                        Ok(r) => r,
                        Err(e) => {
                            *done = true;
                            *self_line_no += 1;
                            let r = Reject::new(
                                RejectKind::Malformed,
                                format!("read error, rest of file skipped: {e}"),
                            );
                            return Some(Self::dead(source, *self_line_no, r, ""));
                        }
                    };
                    if !any {
                        *done = true;
                        return None;
                    }
                    *self_line_no += 1;
                    let content_len = {
                        let mut l = n;
                        if line.last() == Some(&b'\n') && l > 0 {
                            l -= 1;
                        }
                        l
                    };
                    let line_no = *self_line_no;
                    if content_len > max {
                        let raw =
                            String::from_utf8_lossy(&line[..line.len().min(DEAD_LETTER_RAW_BYTES)])
                                .into_owned();
                        let r = Reject::new(
                            RejectKind::Oversized,
                            format!(
                                "record of {content_len} bytes exceeds max_record_bytes = {max}"
                            ),
                        );
                        return Some(Self::dead(source, line_no, r, &raw));
                    }
                    let text = match std::str::from_utf8(line) {
                        Ok(t) => t.trim_end_matches(['\n', '\r']),
                        Err(e) => {
                            let raw = String::from_utf8_lossy(line).into_owned();
                            let r = Reject::new(RejectKind::Malformed, format!("not UTF-8: {e}"));
                            return Some(Self::dead(source, line_no, r, raw.trim_end()));
                        }
                    };
                    if text.trim().is_empty() {
                        continue; // blank lines are not records
                    }
                    let mut rec = RawRecord::default();
                    let result = decoder
                        .decode_json(text, &mut rec)
                        .and_then(|_| Self::build(decoder, kind, &rec));
                    return Some(match result {
                        Ok(r) => r,
                        Err(reject) => {
                            let raw = text.to_string();
                            Self::dead(source, line_no, reject, &raw)
                        }
                    });
                }
                Inner::Csv {
                    reader,
                    slots,
                    record,
                    width,
                } => {
                    let res = reader.read_record(record);
                    let line_no = record
                        .position()
                        .map(|p| p.line())
                        .unwrap_or(*self_line_no + 1);
                    *self_line_no = line_no;
                    match res {
                        Ok(false) => {
                            *done = true;
                            return None;
                        }
                        Err(e) => {
                            let line = e.position().map(|p| p.line()).unwrap_or(line_no);
                            let r = Reject::new(
                                RejectKind::Malformed,
                                format!("unreadable CSV record: {e}"),
                            );
                            return Some(Self::dead(source, line, r, ""));
                        }
                        Ok(true) => {}
                    }
                    let raw = || record.iter().collect::<Vec<_>>().join(",");
                    if record.len() == 1 && record.get(0).is_some_and(|f| f.trim().is_empty()) {
                        continue;
                    }
                    let bytes = record.as_slice().len() + record.len();
                    if bytes > *max_record_bytes {
                        let r = Reject::new(
                            RejectKind::Oversized,
                            format!(
                                "record of {bytes} bytes exceeds max_record_bytes = {}",
                                *max_record_bytes
                            ),
                        );
                        let raw = raw();
                        return Some(Self::dead(source, line_no, r, &raw));
                    }
                    if record.len() != *width {
                        let r = Reject::new(
                            RejectKind::Malformed,
                            format!(
                                "expected {} fields as in the header, found {}",
                                width,
                                record.len()
                            ),
                        );
                        let raw = raw();
                        return Some(Self::dead(source, line_no, r, &raw));
                    }
                    let mut rec = RawRecord::default();
                    for (value, slot) in record.iter().zip(slots.iter()) {
                        if let Some(s) = slot {
                            rec.set(
                                *s,
                                super::decode::Raw::Str(std::borrow::Cow::Borrowed(value)),
                            );
                        }
                    }
                    let result = Self::build(decoder, kind, &rec);
                    return Some(match result {
                        Ok(r) => r,
                        Err(reject) => {
                            let raw = raw();
                            Self::dead(source, line_no, reject, &raw)
                        }
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TimestampFormat;
    use std::collections::BTreeMap;
    use std::io::Write;

    fn input(dir: &tempfile::TempDir, name: &str, body: &[u8], max: usize) -> FileInput {
        let path = dir.path().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(body)
            .unwrap();
        FileInput {
            format: if name.ends_with(".csv") {
                FileFormat::Csv
            } else {
                FileFormat::Jsonl
            },
            path,
            timestamp: TimestampFormat::Auto,
            fields: BTreeMap::new(),
            max_record_bytes: max,
            sort_by_time: false,
        }
    }

    fn kinds(r: FileReader) -> Vec<String> {
        r.map(|x| match x {
            FileRecord::Transaction(t, _) => format!("tx {}", t.tx_id),
            FileRecord::Label(l) => format!("label {}", l.tx_id),
            FileRecord::Rejected(d) => format!("dead {} {}", d.line.unwrap(), d.kind.as_str()),
        })
        .collect()
    }

    #[test]
    fn jsonl_lines_oversized_and_invalid_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let good = br#"{"tx_id":1,"ts":5,"card_id":"c","merchant_id":"m","amount":2}"#;
        let mut body = Vec::new();
        body.extend_from_slice(good);
        body.extend_from_slice(b"\n\n");
        body.extend_from_slice(format!("{{\"pad\":\"{}\"}}\n", "x".repeat(500)).as_bytes());
        body.extend_from_slice(b"\xff\xfe\n");
        body.extend_from_slice(&good[..good.len() - 1]);
        body.extend_from_slice(b"}"); // last line without newline
        let r = FileReader::open(
            "source",
            &input(&dir, "t.jsonl", &body, 100),
            RecordKind::Transaction,
            None,
        )
        .unwrap();
        assert_eq!(
            kinds(r),
            ["tx 1", "dead 3 oversized", "dead 4 malformed", "tx 1"]
        );
    }

    #[test]
    fn csv_with_mapping_wrong_width_and_missing_columns() {
        let dir = tempfile::tempdir().unwrap();
        let body = b"ID,TS,CUST,TERM,AMT,FRAUD\n1,1000,c,m,5.5,0\n2,1000,c,m\n3,1000,c,m,-1,1\n";
        let mut inp = input(&dir, "t.csv", body, 1000);
        for (f, c) in [
            ("tx_id", "ID"),
            ("ts", "TS"),
            ("card_id", "CUST"),
            ("merchant_id", "TERM"),
            ("amount", "AMT"),
        ] {
            inp.fields.insert(f.into(), c.into());
        }
        let r = FileReader::open("source", &inp, RecordKind::Transaction, Some("FRAUD")).unwrap();
        assert_eq!(
            kinds(r),
            ["tx 1", "dead 3 malformed", "dead 4 invalid_field"]
        );
        let mut r =
            FileReader::open("source", &inp, RecordKind::Transaction, Some("FRAUD")).unwrap();
        match r.next().unwrap() {
            FileRecord::Transaction(t, Some(Ok(false))) => assert_eq!(t.amount, 5.5),
            other => panic!("{other:?}"),
        }
        inp.fields.insert("card_id".into(), "CUSTOMER".into());
        let err = FileReader::open("source", &inp, RecordKind::Transaction, None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("no column CUSTOMER (for card_id)"), "{err}");
    }
}
