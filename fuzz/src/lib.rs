//! What the fuzz targets check, one function per target: each takes
//! arbitrary bytes, runs them through the entry point the engine itself uses
//! (the file source, a Fluvio partition, the topology reader, a checkpoint
//! restore) and panics when a property fails. The libFuzzer targets
//! (`fuzz/fuzz_targets/`) call these; so does the replay of the saved corpora
//! in the normal test suite (`tests/fuzz_corpus.rs`, which includes this file).
//!
//! Where a target needs settings, the first input byte chooses them, so the
//! fuzzer explores them too (see each function).

use fraudstream::config::{CheckpointSettings, FileFormat, FileInput, TimestampFormat, Topology};
use fraudstream::connectors::sinks::report::InputCounts;
use fraudstream::connectors::sources::csv_reader::{CsvReader, Held};
use fraudstream::connectors::sources::decode::{
    truncate, Decoder, RawRecord, RecordKind, Reject, MAX_ID_BYTES, MAX_TS_MS,
};
use fraudstream::connectors::sources::file::{FileReader, FileRecord, DEAD_LETTER_RAW_BYTES};
use fraudstream::connectors::sources::fluvio::{decode_record, record_decoder};
use fraudstream::connectors::sources::{SourceItem, SourceOffset};
use fraudstream::exec::checkpoint::{self, CheckpointHeader};
use fraudstream::exec::outputs::start_engine;
use fraudstream::exec::pipeline::build_source;
use fraudstream_engine::engine::Engine;
use fraudstream_engine::event::{DeadLetter, Event, Label, RejectKind, Transaction, TxId};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Both record kinds: every input is read as transactions and as labels.
const KINDS: [RecordKind; 2] = [RecordKind::Transaction, RecordKind::Label];

/// The file-source settings a configuration byte chooses: bits 0-2 the
/// timestamp format, bit 3 a field mapping, bit 4 a label column, bits 5-6
/// `max_record_bytes`, bit 7 `order = "time"`.
struct FileSettings {
    input: FileInput,
    label_column: Option<&'static str>,
}

impl FileSettings {
    fn new(cfg: u8, format: FileFormat) -> Self {
        let timestamp = match cfg & 7 {
            0 | 6 => TimestampFormat::Auto,
            1 | 7 => TimestampFormat::EpochMs,
            2 => TimestampFormat::EpochS,
            3 => TimestampFormat::Rfc3339,
            4 => TimestampFormat::Pattern("%Y-%m-%d %H:%M:%S".into()),
            _ => TimestampFormat::Pattern("%d/%m/%Y".into()),
        };
        let mut fields = BTreeMap::new();
        if cfg & 8 != 0 {
            for (field, column) in [
                ("tx_id", "TRANSACTION_ID"),
                ("ts", "TX_DATETIME"),
                ("card_id", "CUSTOMER_ID"),
                ("amount", "TX_AMOUNT"),
            ] {
                fields.insert(field.to_string(), column.to_string());
            }
        }
        FileSettings {
            input: FileInput {
                path: "fuzz-input".into(),
                format,
                timestamp,
                fields,
                max_record_bytes: [64, 256, 4096, 65_536][usize::from((cfg >> 5) & 3)],
                sort_by_time: cfg & 128 != 0,
            },
            label_column: (cfg & 16 != 0).then_some("TX_FRAUD"),
        }
    }

    fn decoder(&self, kind: RecordKind) -> Decoder {
        Decoder::new(
            kind,
            &self.input.fields,
            self.label_column,
            self.input.timestamp.clone(),
        )
    }

    /// The file source over `body`, or why it cannot be opened.
    fn reader(&self, kind: RecordKind, body: &[u8]) -> anyhow::Result<FileReader> {
        FileReader::from_reader(
            "fuzz",
            &self.input,
            kind,
            self.label_column,
            std::io::Cursor::new(body.to_vec()),
            body.len() as u64,
        )
    }
}

/// JSONL records (`jsonl_record`): the first byte chooses the settings (see
/// [`FileSettings`]), the rest is a JSONL file. Read as transactions and as
/// labels: the file source's records keep their invariants, and a file of
/// one line decodes exactly as the decoder decodes that line.
pub fn jsonl_record(data: &[u8]) {
    let Some((&cfg, body)) = data.split_first() else {
        return;
    };
    let s = FileSettings::new(cfg, FileFormat::Jsonl);
    for kind in KINDS {
        let records = file_records(&s, kind, body, true);
        let Some(records) = records else {
            panic!("a JSONL source always opens");
        };
        assert!(records.len() <= body.split(|&b| b == b'\n').count());
        // One line within the bound: the file source adds nothing to the decoder.
        let Ok(text) = std::str::from_utf8(body) else {
            continue;
        };
        let line = text.trim_end_matches(['\n', '\r']);
        if line.contains('\n') || body.len() > s.input.max_record_bytes || line.trim().is_empty() {
            continue;
        }
        let decoder = s.decoder(kind);
        let mut rec = RawRecord::default();
        let direct = decoder
            .decode_json(line, &mut rec)
            .and_then(|()| match kind {
                RecordKind::Transaction => decoder
                    .transaction(&rec)
                    .map(|(t, l)| FileRecord::Transaction(t, l)),
                RecordKind::Label => decoder.label(&rec).map(FileRecord::Label),
            });
        check_record(&direct);
        match (&records[..], direct) {
            ([FileRecord::Transaction(a, la)], Ok(FileRecord::Transaction(b, lb))) => {
                assert_eq!((a, la), (&b, &lb))
            }
            ([FileRecord::Label(a)], Ok(FileRecord::Label(b))) => assert_eq!(a, &b),
            ([FileRecord::Rejected(d)], Err(r)) => {
                assert_eq!((d.kind, &d.reason), (r.kind, &r.reason))
            }
            (file, direct) => panic!("file source {file:?}, decoder {direct:?}"),
        }
    }
}

/// CSV files (`csv_file`): the first byte chooses the settings (see
/// [`FileSettings`]), the rest is a CSV file with its header. Read as
/// transactions and as labels through the file source (the bounded CSV
/// reader and the decoder), whose records keep their invariants; and the
/// bounded reader reads what the `csv` crate reads.
pub fn csv_file(data: &[u8]) {
    let Some((&cfg, body)) = data.split_first() else {
        return;
    };
    let s = FileSettings::new(cfg, FileFormat::Csv);
    for kind in KINDS {
        file_records(&s, kind, body, false);
    }
    // Records held whole read as with csv::Reader; a small buffer puts
    // reads' ends everywhere (at least 4 bytes: see csv_reader's tests on a BOM).
    let buffer = 4 + usize::from(cfg % 13);
    assert_eq!(
        read_with_csv_reader(body, buffer),
        read_with_csv_crate(body)
    );
    // With a small bound, every record is held or reported as too large.
    let hold = 1 + usize::from(cfg % 61);
    let mut r = CsvReader::with_buffer(body, hold, buffer);
    while let Some(held) = r.read().expect("reading memory") {
        match held {
            Held::Whole => {
                if let Ok(rec) = r.record() {
                    assert!(rec.bytes() <= 2 * hold, "{} > 2 x {hold}", rec.bytes());
                }
            }
            Held::Truncated(t) => {
                assert!(t.bytes > hold as u64);
                // Each byte that is not UTF-8 may become a 3-byte U+FFFD.
                assert!(r.raw_prefix(hold).len() <= 3 * hold);
            }
        }
    }
}

/// A header, or a record with its fields, line and byte offset; or the
/// error met there.
type CsvStep = Result<(Vec<String>, u64, u64), String>;

/// What `csv::Reader` (no header, flexible width) reads from `data`.
fn read_with_csv_crate(data: &[u8]) -> Vec<CsvStep> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(data);
    let mut rec = csv::StringRecord::new();
    let mut steps = Vec::new();
    loop {
        match rdr.read_record(&mut rec) {
            Ok(false) => return steps,
            Ok(true) => {
                let p = rec.position().expect("a record read has a position");
                let fields = rec.iter().map(String::from).collect();
                steps.push(Ok((fields, p.line(), p.byte())));
            }
            Err(e) => match e.kind() {
                csv::ErrorKind::Utf8 { pos: Some(p), err } => steps.push(Err(format!(
                    "line {} byte {}: field {} valid up to {}",
                    p.line(),
                    p.byte(),
                    err.field(),
                    err.valid_up_to()
                ))),
                other => panic!("the csv crate reading memory: {other:?}"),
            },
        }
    }
}

/// The same through [`CsvReader`], with an input buffer of `buffer` bytes.
fn read_with_csv_reader(data: &[u8], buffer: usize) -> Vec<CsvStep> {
    let mut r = CsvReader::with_buffer(data, 1 << 20, buffer);
    let mut steps = Vec::new();
    while let Some(held) = r.read().expect("reading memory") {
        assert_eq!(held, Held::Whole, "records within the bound are held");
        let p = r.position();
        steps.push(match r.record() {
            Ok(rec) => Ok((rec.iter().map(String::from).collect(), p.line, p.byte)),
            Err(e) => Err(format!(
                "line {} byte {}: field {} valid up to {}",
                p.line, p.byte, e.field, e.valid_up_to
            )),
        });
    }
    steps
}

/// Read `body` through the file source with settings `s` as records of
/// `kind`, checking each; `None` when the source does not open (a CSV
/// header without the mapped columns), which must say why. `lines`: each
/// record is on a line of its own (JSONL), so line numbers rise strictly.
fn file_records(
    s: &FileSettings,
    kind: RecordKind,
    body: &[u8],
    lines: bool,
) -> Option<Vec<FileRecord>> {
    let reader = match s.reader(kind, body) {
        Ok(r) => r,
        Err(e) => {
            assert!(!format!("{e:#}").is_empty());
            return None;
        }
    };
    let progress = reader.progress();
    assert!((0.0..=1.0).contains(&progress), "{progress}");
    let records: Vec<FileRecord> = reader.collect();
    let mut last_line = 0;
    for r in &records {
        match r {
            FileRecord::Transaction(t, label) => {
                assert_eq!(kind, RecordKind::Transaction);
                check_transaction(t);
                assert_eq!(label.is_some(), s.label_column.is_some());
                if let Some(Err(reject)) = label {
                    check_reject(reject);
                }
            }
            FileRecord::Label(l) => {
                assert_eq!(kind, RecordKind::Label);
                check_label(l);
            }
            FileRecord::Rejected(d) => {
                check_dead_letter(d);
                let line = d.line.expect("a file's dead letter has its line");
                assert!(line >= 1);
                if !s.input.sort_by_time {
                    assert!(line >= last_line, "line {line} after {last_line}");
                    assert!(!lines || line > last_line, "line {line} twice");
                    last_line = line;
                }
            }
        }
    }
    Some(records)
}

/// Fluvio records (`fluvio_record`): the first byte chooses
/// `max_record_bytes` (64, 1024 or 65536), the rest is one record's value,
/// decoded as a transaction and as a label as a partition decodes it.
pub fn fluvio_record(data: &[u8]) {
    let Some((&cfg, body)) = data.split_first() else {
        return;
    };
    let max = [64, 1024, 65_536][usize::from(cfg % 3)];
    for kind in KINDS {
        match decode_record(&record_decoder(kind), kind, max, body) {
            Ok(Event::Transaction(t)) => {
                assert_eq!(kind, RecordKind::Transaction);
                check_transaction(&t);
            }
            Ok(Event::Label(l)) => {
                assert_eq!(kind, RecordKind::Label);
                check_label(&l);
            }
            Err(reject) => {
                check_reject(&reject);
                assert_eq!(body.len() > max, reject.kind == RejectKind::Oversized);
            }
        }
    }
    // The raw text its dead letter would keep.
    assert!(truncate(&String::from_utf8_lossy(body), 4096).len() <= 4096);
}

/// Topology files (`topology`): the input as a topology file, with its
/// lines that begin `#set ` (comments to TOML) as `--set` overrides. A
/// topology either validates, and then gives an engine configuration and
/// an engine, or is refused with every error named.
pub fn topology(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let overrides: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#set "))
        .map(String::from)
        .collect();
    match Topology::from_toml("fuzz.toml", text, &overrides) {
        Ok(t) => {
            let mut cfg = t.engine_config();
            let settings = checkpoint::settings_of(&t);
            assert!(settings.iter().all(|(k, v)| !k.is_empty() && !v.is_empty()));
            // A valid topology may commit more memory at start than the
            // fuzzer allows (-malloc_limit_mb=256): the logistic model's
            // 4 x 2^hash_bits parameters (512 MiB at 24), the Half-Space
            // Trees' nodes (up to hst::MAX_NODES, 768 MiB). The engine is
            // built with those two shrunk, to check that building it
            // does not panic; everything else as the topology says.
            cfg.features.hash_bits = cfg.features.hash_bits.min(16);
            cfg.portfolio.hst.height = cfg.portfolio.hst.height.min(10);
            let _ = Engine::new(&cfg);
        }
        Err(errors) => {
            assert!(!errors.0.is_empty());
            // Each names its key and what was expected.
            for e in &errors.0 {
                assert!(!e.expected.is_empty(), "{e:?}");
                assert!(!e.key.trim().is_empty(), "{e:?}");
            }
        }
    }
}

/// Checkpoints (`checkpoint`): the first byte's bit 0 says whether the rest
/// is a whole file (0) or a payload to seal with a correct length and
/// checksum (1), so that decoding past them is explored; bit 1 chooses the
/// topology it is restored into (the logistic model, or the blend with a
/// forest); bit 2 whether the file is read alone, as a restore reads a
/// directory holding only it (0), or as checkpoint 2 after a real base
/// checkpoint 1, so that it may be a delta on it (1). Restored into a fresh
/// engine, or refused with a reason; a delta that does not apply is passed
/// over for its base, saying why.
pub fn checkpoint(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let blend = mode & 2 != 0;
    let t = checkpoint_topology(blend);
    let file = if mode & 1 == 1 {
        seal(body)
    } else {
        body.to_vec()
    };
    let mut engine = start_engine(t).expect("the checkpoint topology starts");
    if mode & 4 == 0 {
        match checkpoint::read_bytes(&file, t, &mut engine) {
            Ok(header) => check_settings(&header, t),
            Err(e) => assert!(!format!("{e:#}").is_empty()),
        }
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (base, next) = (
        checkpoint::path_of(dir.path(), 1),
        checkpoint::path_of(dir.path(), 2),
    );
    std::fs::write(&base, &real_checkpoints(blend)[0]).expect("writing the base");
    std::fs::write(&next, &file).expect("writing the input");
    match checkpoint::restore(dir.path(), t, &mut engine) {
        Ok(Some(r)) => {
            check_settings(&r.header, t);
            // The input read (alone, or on its base), or passed over for the base.
            let passed_over = r.path == base
                && r.deltas == 0
                && matches!(&r.damaged[..], [(p, why)] if *p == next && !why.is_empty());
            assert!(
                (r.path == next && r.damaged.is_empty()) || passed_over,
                "{r:?}"
            );
        }
        Ok(None) => panic!("two checkpoints, none found"),
        Err(e) => assert!(!format!("{e:#}").is_empty()),
    }
}

/// A checkpoint is restored only under the settings it was written with.
fn check_settings(header: &CheckpointHeader, t: &Topology) {
    for (key, now) in checkpoint::settings_of(t) {
        let then = header.settings.iter().find(|(k, _)| *k == key);
        assert_eq!(then.map(|(_, v)| v), Some(&now), "{key}");
    }
}

/// A checkpoint file around `payload`: format line, length, xxh3 checksum
/// (`tests/fuzz_corpus.rs` checks that the engine frames its files so).
pub fn seal(payload: &[u8]) -> Vec<u8> {
    let mut file = b"FSCKPT4\n".to_vec();
    file.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    file.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(payload).to_le_bytes());
    file.extend_from_slice(payload);
    file
}

/// The small topologies checkpoints are restored into: the embedded one
/// with a small simulation, with the logistic model or the blend.
pub fn checkpoint_topology(blend: bool) -> &'static Topology {
    static TOPOLOGIES: OnceLock<[Topology; 2]> = OnceLock::new();
    let both = TOPOLOGIES.get_or_init(|| {
        [false, true].map(|blend| {
            // Small, so that its checkpoints are: the fuzzer mutates whole files.
            let mut set: Vec<String> = [
                "source.days=2",
                "source.cards=20",
                "source.merchants=10",
                "features.hash_bits=4",
                "pending.capacity=40",
                "evaluation.max_records=40",
            ]
            .map(String::from)
            .into();
            if blend {
                set.extend(
                    [
                        "model.type=\"blend\"",
                        "model.forest.trees=2",
                        "model.forest.grace_period=20.0",
                        "model.hst.trees=2",
                        "model.hst.height=4",
                        "model.batch.buffer=50",
                        "model.batch.retrain_every=200",
                        "model.batch.swap_after=50",
                        "model.batch.min_frauds=5",
                    ]
                    .map(String::from),
                );
            }
            Topology::embedded(&set).expect("the checkpoint topology validates")
        })
    });
    &both[usize::from(blend)]
}

/// Checkpoints 1 (whole) and 2 (a delta on it), the files as written, of
/// an engine running the simulation of [`checkpoint_topology`]`(blend)`:
/// the first half of its events before the first, the rest before the
/// second. The seeds of the checkpoint corpus, and the base the target reads
/// a delta on; computed once per topology.
pub fn real_checkpoints(blend: bool) -> &'static [Vec<u8>; 2] {
    static CHAINS: OnceLock<[[Vec<u8>; 2]; 2]> = OnceLock::new();
    &CHAINS.get_or_init(|| [false, true].map(write_chain))[usize::from(blend)]
}

fn write_chain(blend: bool) -> [Vec<u8>; 2] {
    let t = checkpoint_topology(blend);
    let mut engine = start_engine(t).expect("the checkpoint topology starts");
    let items: Vec<SourceItem> = build_source(t).expect("the simulation starts").collect();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let settings = CheckpointSettings {
        dir: dir.path().to_path_buf(),
        ..CheckpointSettings::default()
    };
    let mut chain = checkpoint::Chain::default();
    let (first, rest) = items.split_at(items.len() / 2);
    for (sequence, items) in [(1, first), (2, rest)] {
        for item in items {
            match item {
                SourceItem::Event(Event::Transaction(tx)) => {
                    engine.score(tx.clone());
                }
                SourceItem::Event(Event::Label(l)) => {
                    engine.label(l);
                }
                SourceItem::Rejected(_) => {}
            }
        }
        let header = CheckpointHeader {
            written_ms: sequence as i64,
            sequence,
            offsets: vec![SourceOffset {
                topic: "transactions".into(),
                partition: 0,
                next: 42 * sequence as i64,
            }],
            totals: InputCounts::default(),
            settings: checkpoint::settings_of(t),
            lineage: 7,
            outputs: Vec::new(),
        };
        let written = chain
            .write(&settings, &header, &mut engine)
            .expect("writing a checkpoint");
        assert_eq!(written.delta, sequence == 2, "checkpoint {sequence}");
    }
    [1, 2].map(|sequence| {
        std::fs::read(checkpoint::path_of(dir.path(), sequence)).expect("reading it back")
    })
}

/// What every decoded transaction is: an amount finite and not negative, a
/// time in 1970..3000, ids present and within the length limit, a location
/// on the globe.
pub fn check_transaction(t: &Transaction) {
    assert!(
        t.amount.is_finite() && t.amount >= 0.0,
        "amount {}",
        t.amount
    );
    assert!((0..MAX_TS_MS).contains(&t.ts), "ts {}", t.ts);
    check_tx_id(&t.tx_id);
    for id in [&t.card_id, &t.merchant_id] {
        assert!(
            !id.trim().is_empty() && id.len() <= MAX_ID_BYTES,
            "id {id:?}"
        );
    }
    for text in [&t.currency, &t.mcc, &t.country, &t.channel]
        .into_iter()
        .flatten()
    {
        assert!(
            !text.trim().is_empty() && text.len() <= MAX_ID_BYTES,
            "{text:?}"
        );
    }
    if let Some((lat, lon)) = t.location {
        assert!(lat.is_finite() && lat.abs() <= 90.0, "lat {lat}");
        assert!(lon.is_finite() && lon.abs() <= 180.0, "lon {lon}");
    }
}

/// What every decoded label is: a time in 1970..3000 and an id.
pub fn check_label(l: &Label) {
    assert!((0..MAX_TS_MS).contains(&l.ts), "ts {}", l.ts);
    check_tx_id(&l.tx_id);
}

fn check_tx_id(id: &TxId) {
    if let TxId::Str(s) = id {
        assert!(
            !s.trim().is_empty() && s.len() <= MAX_ID_BYTES,
            "tx_id {s:?}"
        );
    }
}

/// A rejected record says why.
pub fn check_reject(r: &Reject) {
    assert!(!r.reason.trim().is_empty(), "{r:?}");
}

/// A dead letter says why, and keeps at most 4 KiB of the record.
fn check_dead_letter(d: &DeadLetter) {
    assert!(!d.reason.trim().is_empty(), "{d:?}");
    assert!(
        d.raw.len() <= DEAD_LETTER_RAW_BYTES,
        "{} bytes",
        d.raw.len()
    );
}

/// A record decoded directly: its invariants, or its reason.
fn check_record(r: &Result<FileRecord, Reject>) {
    match r {
        Ok(FileRecord::Transaction(t, _)) => check_transaction(t),
        Ok(FileRecord::Label(l)) => check_label(l),
        Ok(FileRecord::Rejected(d)) => check_dead_letter(d),
        Err(reject) => check_reject(reject),
    }
}
