//! The fuzz targets' saved inputs as regression tests: every file of each
//! target's corpus (`fuzz/corpus/<target>/`) and findings
//! (`fuzz/regressions/<target>/`) goes through the same checks the fuzz
//! target runs (`fuzz/src/lib.rs`, included here), without libFuzzer.
//! Fuzzing itself is a documented command, not part of the tests: see
//! docs/fuzzing.md.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::{Path, PathBuf};

/// What a target runs on one input: returns, or panics naming the property.
type Check = fn(&[u8]);

/// Each target, with the check it runs on one input.
const TARGETS: [(&str, Check); 5] = [
    ("jsonl_record", harness::jsonl_record),
    ("csv_file", harness::csv_file),
    ("fluvio_record", harness::fluvio_record),
    ("topology", harness::topology),
    ("checkpoint", harness::checkpoint),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files saved for `target`: its corpus, then its findings.
fn saved_inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(dir).join(target)) else {
            continue;
        };
        let mut here: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        here.sort();
        files.extend(here.into_iter().filter(|p| p.is_file()));
    }
    files
}

/// Run `check` on each input; a panic fails the test naming the file.
fn replay(target: &str, check: Check, files: &[PathBuf]) {
    for path in files {
        let data = std::fs::read(path).unwrap();
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            panic!(
                "{target}: {} fails: {}",
                path.display(),
                fraudstream::panic_message(&*panic)
            );
        }
    }
}

#[test]
fn every_saved_fuzz_input_passes_its_target_checks() {
    for (target, check) in TARGETS {
        let files = saved_inputs(target);
        assert!(
            !files.is_empty(),
            "no saved inputs for {target} in {}",
            fuzz_dir().display()
        );
        replay(target, check, &files);
    }
}

/// Checkpoints written now, under the checkpoint target's settings, restore
/// (the base alone, the delta on it), and the target seals a payload as the
/// engine frames a file: the corpus's seeds stay meaningful when the layout
/// changes, and this fails until `seal` follows a new preamble.
#[test]
fn fresh_checkpoints_restore_through_the_checkpoint_target() {
    use fraudstream::exec::checkpoint;
    for blend in [false, true] {
        let [base, delta] = harness::real_checkpoints(blend);
        let t = harness::checkpoint_topology(blend);
        let mut engine = fraudstream::exec::outputs::start_engine(t).unwrap();
        let header = checkpoint::read_bytes(base, t, &mut engine).unwrap();
        assert_eq!(header.sequence, 1);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(checkpoint::path_of(dir.path(), 1), base).unwrap();
        std::fs::write(checkpoint::path_of(dir.path(), 2), delta).unwrap();
        let restored = checkpoint::restore(dir.path(), t, &mut engine)
            .unwrap()
            .unwrap();
        assert_eq!((restored.header.sequence, restored.deltas), (2, 1));
        assert!(restored.damaged.is_empty(), "{restored:?}");
        for (file, chained) in [(base, 0), (delta, 4)] {
            assert_eq!(&harness::seal(&file[24..]), file);
            let mode = (2 * u8::from(blend)) | chained;
            harness::checkpoint(&[&[mode][..], file].concat());
            harness::checkpoint(&[&[mode | 1][..], &file[24..]].concat());
        }
    }
}

/// Write the seed corpora into `fuzz/corpus/` from the test data, the
/// topologies and a fresh checkpoint; `cargo fuzz cmin` then keeps what adds
/// coverage. Run on purpose only (docs/fuzzing.md):
/// `cargo test --test integration fuzz_corpus::write_seed_corpora -- --ignored`.
#[test]
#[ignore = "writes into fuzz/corpus; run by hand to seed the corpora"]
fn write_seed_corpora() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = |name: &str| std::fs::read(root.join("tests/data").join(name)).unwrap();
    let mut seeds: Vec<(&str, String, Vec<u8>)> = Vec::new();
    let jsonl = data("bad_input.jsonl");
    // Settings bytes: Auto/RFC 3339/epoch ms timestamps, with and without a
    // mapping and label column, small and default bounds.
    for cfg in [0x00u8, 0x03, 0x11, 0x19, 0x60, 0x21] {
        seeds.push((
            "jsonl_record",
            format!("seed-file-{cfg:02x}"),
            [&[cfg][..], &jsonl].concat(),
        ));
    }
    for (i, line) in jsonl.split(|&b| b == b'\n').enumerate() {
        seeds.push((
            "jsonl_record",
            format!("seed-line-{i:02}"),
            [&[0x60][..], line].concat(),
        ));
        seeds.push((
            "fluvio_record",
            format!("seed-line-{i:02}"),
            [&[2][..], line].concat(),
        ));
    }
    for (i, line) in [
        r#"{"tx_id":"x","ts":5,"is_fraud":true}"#,
        r#"{"tx_id":7,"ts":"2026-01-01 00:00:01.5","is_fraud":"no"}"#,
        r#"{"TRANSACTION_ID":1,"TX_DATETIME":"2018-04-01 00:00:31","CUSTOMER_ID":"c","merchant_id":"m","TX_AMOUNT":"1.5","TX_FRAUD":1}"#,
    ]
    .iter()
    .enumerate()
    {
        seeds.push((
            "jsonl_record",
            format!("seed-label-{i}"),
            [&[0x7c][..], line.as_bytes()].concat(),
        ));
        seeds.push((
            "fluvio_record",
            format!("seed-label-{i}"),
            [&[2][..], line.as_bytes()].concat(),
        ));
    }
    let csv = data("bad_input.csv");
    for cfg in [0x00u8, 0x03, 0x60, 0x21, 0x80] {
        seeds.push((
            "csv_file",
            format!("seed-file-{cfg:02x}"),
            [&[cfg][..], &csv].concat(),
        ));
    }
    seeds.push((
        "csv_file",
        "seed-mapped".into(),
        [
            &[0x7c][..],
            b"TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,merchant_id,TX_AMOUNT,TX_FRAUD\n\
              1,2018-04-01 00:00:31,c,m,1.5,0\n2,2018-04-01 00:00:32,\"c\nd\",m,\"2\",1\n",
        ]
        .concat(),
    ));
    seeds.push((
        "csv_file",
        "seed-labels".into(),
        [
            &[0x01][..],
            b"\xef\xbb\xbftx_id,ts,is_fraud\r\n1,5,true\r\n\r\n2,6,maybe\r\n3,\"7\"\"\",0",
        ]
        .concat(),
    ));
    let mut topologies = vec![("bad_input".to_string(), data("bad_input.toml"))];
    for entry in std::fs::read_dir(root.join("topologies")).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue; // topologies/rules/: rules files, not topologies
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        topologies.push((name, std::fs::read(&path).unwrap()));
    }
    for (name, text) in topologies {
        seeds.push(("topology", format!("seed-{name}"), text));
    }
    seeds.push((
        "topology",
        "seed-overrides".into(),
        b"#set source.days=3\n#set model.type=\"blend\"\n#set sinks.x.path=out/a.jsonl\n\
          [engine]\nseed = 1\n"
            .to_vec(),
    ));
    for blend in [false, true] {
        let model = if blend { "blend" } else { "logistic" };
        let [base, delta] = harness::real_checkpoints(blend);
        // Bit 1: the topology; bit 2: read after the base; bit 0: sealed.
        for (file, name, chained) in [(base, "base", 0), (delta, "delta", 4)] {
            let mode = (2 * u8::from(blend)) | chained;
            seeds.push((
                "checkpoint",
                format!("seed-{model}-{name}-file"),
                [&[mode][..], file].concat(),
            ));
            seeds.push((
                "checkpoint",
                format!("seed-{model}-{name}-sealed"),
                [&[mode | 1][..], &file[24..]].concat(),
            ));
        }
    }
    seeds.push((
        "checkpoint",
        "seed-older".into(),
        b"\x00FSCKPT3\nolder".to_vec(),
    ));
    for (target, name, bytes) in seeds {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
