//! CSV and JSONL file readers: records in file order, decoded through a field
//! mapping, each bad one turned into a dead letter with its line number.
//! Neither holds more of a record than `max_record_bytes` (and the 4 KiB a
//! dead letter keeps): a longer line or record is read past and rejected as
//! oversized, so memory stays bounded whatever the file holds.

use super::csv_reader::{CsvReader, CsvRecord, Held, Truncated};
use super::decode::{truncate, Decoder, RawRecord, RecordKind, Reject};
use crate::config::{FileFormat, FileInput};
use compact_str::CompactString;
use fraudstream_engine::event::{DeadLetter, Label, RejectKind, Transaction};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

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

/// What a file source reads: the file, or any reader given to
/// [`FileReader::from_reader`] (boxed: it is read 64 KiB at a time, so the
/// indirection costs nothing measurable).
type Input = Box<dyn Read + Send>;

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

/// What reading one line or row gave.
enum Next {
    /// A record (a dead letter among them).
    Record(FileRecord),
    /// A blank line or row: not a record.
    Blank,
    /// The end of the file; with the dead letter of the read error that ended it.
    End(Option<FileRecord>),
}

/// Turns decoded fields into records, and rejects into dead letters.
struct RecordBuilder {
    source: CompactString,
    decoder: Decoder,
    kind: RecordKind,
}

impl RecordBuilder {
    /// The dead letter of a record at `line`.
    fn dead(&self, line: u64, reject: Reject, raw: &str) -> FileRecord {
        FileRecord::Rejected(DeadLetter {
            source: self.source.clone(),
            line: Some(line),
            kind: reject.kind,
            reason: reject.reason,
            raw: truncate(raw, DEAD_LETTER_RAW_BYTES).to_string(),
        })
    }

    /// The transaction or label of `rec`.
    fn build(&self, rec: &RawRecord<'_>) -> Result<FileRecord, Reject> {
        Ok(match self.kind {
            RecordKind::Transaction => {
                let (t, l) = self.decoder.transaction(rec)?;
                FileRecord::Transaction(t, l)
            }
            RecordKind::Label => FileRecord::Label(self.decoder.label(rec)?),
        })
    }

    /// The record of one JSON line, or its dead letter.
    fn json_line(&self, line: u64, text: &str) -> FileRecord {
        let mut rec = RawRecord::default();
        let result = self
            .decoder
            .decode_json(text, &mut rec)
            .and_then(|_| self.build(&rec));
        result.unwrap_or_else(|reject| self.dead(line, reject, text))
    }
}

/// The lines of a JSONL file.
struct JsonlLines {
    reader: BufReader<Counting<Input>>,
    line: Vec<u8>,
}

impl JsonlLines {
    fn new(counting: Counting<Input>) -> Self {
        JsonlLines {
            reader: BufReader::with_capacity(1 << 16, counting),
            line: Vec::with_capacity(1024),
        }
    }

    /// Read and decode the next line (numbered through `line_no`); lines over
    /// `max` bytes are rejected unread.
    fn next_record(&mut self, b: &RecordBuilder, line_no: &mut u64, max: usize) -> Next {
        let (n, any) = match read_bounded_line(&mut self.reader, &mut self.line, max) {
            Ok(r) => r,
            Err(e) => {
                *line_no += 1;
                let r = Reject::new(
                    RejectKind::Malformed,
                    format!("read error, rest of file skipped: {e}"),
                );
                return Next::End(Some(b.dead(*line_no, r, "")));
            }
        };
        if !any {
            return Next::End(None);
        }
        *line_no += 1;
        self.decode(b, *line_no, n, max)
    }

    /// Decode the line just read, `n` bytes in the file with its newline.
    fn decode(&self, b: &RecordBuilder, line_no: u64, n: usize, max: usize) -> Next {
        let line = &self.line;
        let content_len = if line.last() == Some(&b'\n') && n > 0 {
            n - 1
        } else {
            n
        };
        if content_len > max {
            let raw = String::from_utf8_lossy(&line[..line.len().min(DEAD_LETTER_RAW_BYTES)])
                .into_owned();
            let r = Reject::new(
                RejectKind::Oversized,
                format!("record of {content_len} bytes exceeds max_record_bytes = {max}"),
            );
            return Next::Record(b.dead(line_no, r, &raw));
        }
        let text = match std::str::from_utf8(line) {
            Ok(t) => t.trim_end_matches(['\n', '\r']),
            Err(e) => {
                let raw = String::from_utf8_lossy(line).into_owned();
                let r = Reject::new(RejectKind::Malformed, format!("not UTF-8: {e}"));
                return Next::Record(b.dead(line_no, r, raw.trim_end()));
            }
        };
        if text.trim().is_empty() {
            return Next::Blank;
        }
        Next::Record(b.json_line(line_no, text))
    }
}

/// The rows of a CSV file with a header, each held within
/// `max_record_bytes` (see [`csv_reader`](super::csv_reader)).
struct CsvRows {
    /// Boxed: the parser's tables are most of a kilobyte.
    reader: Box<CsvReader<Counting<Input>>>,
    /// Slot of each column, by position.
    slots: Vec<Option<usize>>,
    width: usize,
}

/// Bytes of a record's text held: enough for any record within `max`, and
/// for the raw text a dead letter keeps (cut at a character boundary).
fn csv_hold(max: usize) -> usize {
    max.max(DEAD_LETTER_RAW_BYTES + 3) + 1
}

impl CsvRows {
    /// Read the header and map its columns to the decoder's slots. Fails when
    /// the header cannot be read or lacks a mapped required column.
    fn open(
        counting: Counting<Input>,
        decoder: &Decoder,
        path: &Path,
        source: &str,
        max: usize,
    ) -> anyhow::Result<Self> {
        let mut reader = Box::new(CsvReader::new(counting, csv_hold(max)));
        let unreadable = |e: &dyn std::fmt::Display| {
            anyhow::anyhow!("{}: cannot read the CSV header: {e}", path.display())
        };
        match reader.read() {
            Err(e) => return Err(unreadable(&e)),
            Ok(Some(Held::Truncated(t))) => {
                return Err(unreadable(&format!(
                    "{} bytes, more than max_record_bytes = {max}",
                    t.bytes
                )))
            }
            Ok(Some(Held::Whole)) | Ok(None) => {} // an empty file has no columns
        }
        let headers: Vec<String> = match reader.record() {
            Ok(r) => r.iter().map(String::from).collect(),
            Err(e) => return Err(unreadable(&e.describe(reader.position()))),
        };
        let missing = decoder.missing_columns(headers.iter().map(String::as_str));
        if !missing.is_empty() {
            anyhow::bail!(missing_columns_message(&missing, &headers, path, source));
        }
        let slots = headers.iter().map(|h| decoder.slot_of(h)).collect();
        Ok(CsvRows {
            reader,
            slots,
            width: headers.len(),
        })
    }

    /// Read and decode the next row (numbered through `line_no`).
    fn next_record(&mut self, b: &RecordBuilder, line_no: &mut u64, max: usize) -> Next {
        let res = self.reader.read();
        let at = self.reader.position();
        let line = at.line;
        *line_no = line;
        match res {
            Ok(None) => return Next::End(None),
            Err(e) => {
                let r = Reject::new(RejectKind::Malformed, format!("unreadable CSV record: {e}"));
                return Next::End(Some(b.dead(line, r, "")));
            }
            Ok(Some(Held::Truncated(t))) => {
                let raw = self.reader.raw_prefix(DEAD_LETTER_RAW_BYTES + 3);
                return Next::Record(b.dead(line, oversized(&t, line, max), &raw));
            }
            Ok(Some(Held::Whole)) => {}
        }
        let record = match self.reader.record() {
            Ok(r) => r,
            Err(e) => {
                let reason = format!("unreadable CSV record: {}", e.describe(at));
                return Next::Record(b.dead(line, Reject::new(RejectKind::Malformed, reason), ""));
            }
        };
        if is_blank(record) {
            return Next::Blank;
        }
        let raw = || record.iter().collect::<Vec<_>>().join(",");
        if let Some(r) = self.shape_error(record, max) {
            return Next::Record(b.dead(line, r, &raw()));
        }
        Next::Record(
            b.build(&self.fields(record))
                .unwrap_or_else(|reject| b.dead(line, reject, &raw())),
        )
    }

    /// Why the row cannot be a record: over `max` bytes, or not as wide as the header.
    fn shape_error(&self, record: CsvRecord<'_>, max: usize) -> Option<Reject> {
        let bytes = record.bytes();
        if bytes > max {
            return Some(Reject::new(
                RejectKind::Oversized,
                format!("record of {bytes} bytes exceeds max_record_bytes = {max}"),
            ));
        }
        if record.field_count() != self.width {
            return Some(Reject::new(
                RejectKind::Malformed,
                format!(
                    "expected {} fields as in the header, found {}",
                    self.width,
                    record.field_count()
                ),
            ));
        }
        None
    }

    /// The row's mapped fields in their slots.
    fn fields<'a>(&self, record: CsvRecord<'a>) -> RawRecord<'a> {
        let mut rec = RawRecord::default();
        for (value, slot) in record.iter().zip(self.slots.iter()) {
            if let Some(s) = slot {
                rec.set(
                    *s,
                    super::decode::Raw::Str(std::borrow::Cow::Borrowed(value)),
                );
            }
        }
        rec
    }
}

/// The row is one empty field: a blank line.
fn is_blank(record: CsvRecord<'_>) -> bool {
    record.field_count() == 1 && record.iter().all(|f| f.trim().is_empty())
}

/// Why a record too large to hold was rejected; one that ran to the end of
/// the file inside a quote says so (the rest of the file is this record).
fn oversized(t: &Truncated, line: u64, max: usize) -> Reject {
    let mut reason = format!(
        "record of {} bytes exceeds max_record_bytes = {max}",
        t.bytes
    );
    if t.unclosed_quote {
        reason.push_str(&format!(
            "; a quote opened in it is never closed, so it runs from line {line} to the end of the file"
        ));
    }
    Reject::new(RejectKind::Oversized, reason)
}

/// The error of a CSV header without the mapped columns `missing` (field, column).
fn missing_columns_message(
    missing: &[(&'static str, String)],
    headers: &[String],
    path: &Path,
    source: &str,
) -> String {
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
    format!(
        "{}: the CSV header has no column {}; its columns are: {}. Map them under [{source}.fields].",
        path.display(),
        list.join(", "),
        headers.join(", ")
    )
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

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

enum Inner {
    Csv(CsvRows),
    Jsonl(JsonlLines),
}

/// Reads one file of transactions or labels.
pub struct FileReader {
    records: RecordBuilder,
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
        Self::from_reader(source, input, kind, label_column, file, total_bytes)
    }

    /// As [`open`](Self::open), reading `reader` (of `total_bytes`, for
    /// progress) in place of the file at `input.path`, which only names it in
    /// messages. Used to read records held in memory (the fuzz targets).
    pub fn from_reader(
        source: &str,
        input: &FileInput,
        kind: RecordKind,
        label_column: Option<&str>,
        reader: impl Read + Send + 'static,
        total_bytes: u64,
    ) -> anyhow::Result<Self> {
        let path = &input.path;
        let counting = Counting {
            inner: Box::new(reader) as Input,
            bytes: 0,
        };
        let decoder = Decoder::new(kind, &input.fields, label_column, input.timestamp.clone());
        let inner = match input.format {
            FileFormat::Csv => Inner::Csv(CsvRows::open(
                counting,
                &decoder,
                path,
                source,
                input.max_record_bytes,
            )?),
            FileFormat::Jsonl => Inner::Jsonl(JsonlLines::new(counting)),
        };
        Ok(FileReader {
            records: RecordBuilder {
                source: source.into(),
                decoder,
                kind,
            },
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
            Inner::Csv(rows) => rows.reader.get_ref().bytes,
            Inner::Jsonl(lines) => lines.reader.get_ref().bytes,
        };
        if self.total_bytes == 0 {
            1.0
        } else {
            (read as f64 / self.total_bytes as f64).min(1.0)
        }
    }

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

    /// The next record in file order; blank lines are skipped.
    fn next_in_file(&mut self) -> Option<FileRecord> {
        while !self.done {
            let (b, max) = (&self.records, self.max_record_bytes);
            let next = match &mut self.inner {
                Inner::Jsonl(lines) => lines.next_record(b, &mut self.line_no, max),
                Inner::Csv(rows) => rows.next_record(b, &mut self.line_no, max),
            };
            match next {
                Next::Record(r) => return Some(r),
                Next::Blank => {}
                Next::End(last) => {
                    self.done = true;
                    return last;
                }
            }
        }
        None
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
    fn records_in_memory_read_as_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let body = b"tx_id,ts,card_id,merchant_id,amount\n1,1000,c,m,5\n2,x,c,m,5\n";
        let inp = input(&dir, "t.csv", body, 1000);
        let file = FileReader::open("source", &inp, RecordKind::Transaction, None).unwrap();
        let memory = FileReader::from_reader(
            "source",
            &inp,
            RecordKind::Transaction,
            None,
            &body[..],
            body.len() as u64,
        )
        .unwrap();
        assert_eq!(kinds(memory), kinds(file));
    }

    #[test]
    fn csv_unclosed_quote_is_one_oversized_record_to_the_end_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut body =
            b"tx_id,ts,card_id,merchant_id,amount\n1,1000,c,m,5\n2,1000,c,m,\"5\n".to_vec();
        body.extend(b"3,1000,c,m,5\n".repeat(1000));
        let inp = input(&dir, "t.csv", &body, 64);
        let r = FileReader::open("source", &inp, RecordKind::Transaction, None).unwrap();
        assert_eq!(kinds(r), ["tx 1", "dead 3 oversized"]);
        let mut r = FileReader::open("source", &inp, RecordKind::Transaction, None).unwrap();
        match r.nth(1).unwrap() {
            FileRecord::Rejected(d) => {
                assert!(
                    d.reason.contains("exceeds max_record_bytes = 64"),
                    "{}",
                    d.reason
                );
                assert!(d.reason.contains("never closed"), "{}", d.reason);
                assert!(d.raw.starts_with("2,1000,c,m,5\n3,1000") && d.raw.len() == 4096);
            }
            other => panic!("{other:?}"),
        }
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
