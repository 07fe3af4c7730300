//! Reading 10k simulated transactions back from JSONL and CSV files through
//! `FileReader` (open, decode every line, validate).

use criterion::{black_box, criterion_group, Criterion, Throughput};
use fraudstream::commands::simulate::simulate;
use fraudstream::config::{FileFormat, FileInput, TimestampFormat, TRANSACTION_FIELDS};
use fraudstream::connectors::sources::decode::RecordKind;
use fraudstream::connectors::sources::file::{FileReader, FileRecord};
use fraudstream_sim::SimConfig;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const LINES: usize = 10_000;

/// Simulate into `dir` in `format` and keep the first 10k transaction lines
/// (plus the CSV header) in a file of their own. Two days of 500 cards make
/// only ~1.8k transactions, so the bench simulates 3k cards (~10.7k).
fn transactions_file(dir: &Path, format: FileFormat) -> PathBuf {
    let sub = dir.join(format.as_str());
    std::fs::create_dir_all(&sub).expect("temp subdirectory");
    let cfg = SimConfig {
        days: 2,
        cards: 3_000,
        ..Default::default()
    };
    let written = simulate(cfg, &sub, format, None, |_, _| {}).expect("simulate");
    let text = std::fs::read_to_string(&written.transactions_path).expect("read simulated file");
    let header = (format == FileFormat::Csv) as usize;
    let lines: Vec<&str> = text.lines().take(LINES + header).collect();
    assert_eq!(
        lines.len(),
        LINES + header,
        "the simulation wrote fewer than {LINES} transactions"
    );
    let path = sub.join(format!("transactions-{LINES}.{}", format.as_str()));
    std::fs::write(&path, lines.join("\n") + "\n").expect("write the bench input");
    path
}

fn input(path: PathBuf, format: FileFormat) -> FileInput {
    FileInput {
        path,
        format,
        timestamp: TimestampFormat::Auto,
        // Identity mapping, as a topology without a `[fields]` table gets.
        fields: TRANSACTION_FIELDS
            .iter()
            .map(|f| (f.to_string(), f.to_string()))
            .collect::<BTreeMap<_, _>>(),
        max_record_bytes: 65_536,
        sort_by_time: false,
    }
}

/// Read the whole file; every record must be a valid transaction.
fn read_all(input: &FileInput) -> usize {
    let reader = FileReader::open("bench", input, RecordKind::Transaction, None).expect("open");
    let mut n = 0;
    for record in reader {
        match record {
            FileRecord::Transaction(tx, _) => {
                black_box(tx);
                n += 1;
            }
            other => panic!("unexpected record: {other:?}"),
        }
    }
    n
}

fn bench_decode(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let inputs = [("jsonl", FileFormat::Jsonl), ("csv", FileFormat::Csv)]
        .map(|(name, format)| (name, input(transactions_file(dir.path(), format), format)));
    for (_, input) in &inputs {
        assert_eq!(read_all(input), LINES);
    }

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(LINES as u64));
    for (name, input) in &inputs {
        group.bench_function(*name, |b| b.iter(|| read_all(black_box(input))));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = crate::config();
    targets = bench_decode
}
