//! Outputs pinned to hashes: the restructuring of the code base (and any
//! change meant to keep behaviour) must leave every score, alert, dead letter,
//! report metric and exported feature byte-identical.
//!
//! Each case runs the `fraudstream` binary (so the test does not depend on the
//! library's layout) and hashes what it wrote. The expected hashes live in
//! `tests/data/golden.txt`; a change that is meant to alter outputs rewrites
//! them with `FRAUDSTREAM_BLESS=1 cargo test --release --test integration golden`
//! and says why in its commit.

use crate::util::{fraudstream, repo, sinks_into, text};
use std::collections::BTreeMap;
use std::path::Path;

const GOLDEN: &str = "tests/data/golden.txt";

/// FNV-1a, 64 bits: enough to notice any change, and needs no dependency.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The report without what describes this process rather than the stream
/// (speed, latency, file paths and the topology's path).
fn report_digest(path: &Path) -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("report written")).unwrap();
    let o = v.as_object_mut().unwrap();
    for k in [
        "topology",
        "throughput",
        "latency",
        "latency_with_queueing",
        "outputs",
    ] {
        o.remove(k);
    }
    serde_json::to_vec(&v).unwrap()
}

/// Run `args` (a `run` command) in `cwd` with sinks in `out`; hash each output.
fn run_case(name: &str, args: &[&str], cwd: &Path, out: &Path, got: &mut BTreeMap<String, u64>) {
    let sinks = sinks_into(out);
    let mut all: Vec<&str> = args.to_vec();
    for s in &sinks {
        all.extend(["--set", s]);
    }
    all.push("-q");
    let run = fraudstream(&all, cwd);
    let (_, stderr) = text(&run);
    assert!(run.status.success(), "{name}: {stderr}");
    for file in ["scores.jsonl", "alerts.jsonl", "dead_letters.jsonl"] {
        let bytes = std::fs::read(out.join(file)).unwrap_or_default();
        got.insert(format!("{name}/{file}"), fnv(&bytes));
    }
    got.insert(
        format!("{name}/report"),
        fnv(&report_digest(&out.join("report.json"))),
    );
}

fn read_golden() -> BTreeMap<String, u64> {
    std::fs::read_to_string(repo().join(GOLDEN))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), u64::from_str_radix(v, 16).ok()?))
        })
        .collect()
}

#[test]
fn outputs_match_the_golden_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut got = BTreeMap::new();
    let case = |n: &str| {
        let p = d.join("out").join(n);
        std::fs::create_dir_all(&p).unwrap();
        p
    };

    // The embedded default run: 60 days, `auto` (its switches, and its
    // scales and detector taking in the stored (f32) scores).
    run_case("embedded", &["run"], d, &case("embedded"), &mut got);
    // The same with the logistic model alone, the default until 2026-12-01.
    run_case(
        "logistic",
        &["run", "--set", "model.type=\"logistic\""],
        d,
        &case("logistic"),
        &mut got,
    );

    // The CSV replay of the same simulation written to files.
    let sim = fraudstream(&["simulate", "--out", "data/sim"], d);
    assert!(sim.status.success(), "{}", text(&sim).1);
    let replay = repo().join("topologies/replay-csv.toml");
    let replay = replay.to_str().unwrap();
    run_case("replay-csv", &["run", replay], d, &case("replay"), &mut got);

    // The model portfolio: each served model, and the blend with every member compared.
    for (name, model) in [
        ("forest", "model.type=\"forest\""),
        ("hst", "model.type=\"hst\""),
        ("batch", "model.type=\"batch\""),
        ("blend", "model.type=\"blend\""),
    ] {
        run_case(
            name,
            &[
                "run",
                "--set",
                "source.days=15",
                "--set",
                model,
                "--set",
                "model.compare=true",
            ],
            d,
            &case(name),
            &mut got,
        );
    }

    // Malformed records: every dead letter and every score of the valid ones.
    let bad = repo().join("tests/data/bad_input.toml");
    run_case(
        "bad-input",
        &["run", bad.to_str().unwrap()],
        &repo(),
        &case("bad"),
        &mut got,
    );

    // The stream export for River (feature vectors of every transaction).
    let export = d.join("stream.csv");
    let run = fraudstream(
        &[
            "bench",
            "--set",
            "source.days=20",
            "--export-stream",
            export.to_str().unwrap(),
        ],
        d,
    );
    assert!(run.status.success(), "{}", text(&run).1);
    got.insert(
        "export-stream".into(),
        fnv(&std::fs::read(&export).unwrap()),
    );

    if std::env::var_os("FRAUDSTREAM_BLESS").is_some() {
        let text: String = got.iter().map(|(k, v)| format!("{k} {v:016x}\n")).collect();
        std::fs::write(repo().join(GOLDEN), text).unwrap();
        println!("wrote {GOLDEN}");
        return;
    }
    let want = read_golden();
    assert!(
        !want.is_empty(),
        "{GOLDEN} is missing: write it with FRAUDSTREAM_BLESS=1"
    );
    let differ: Vec<String> = want
        .keys()
        .chain(got.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| want.get(*k) != got.get(*k))
        .map(|k| format!("{k}: golden {:?}, now {:?}", want.get(k), got.get(k)))
        .collect();
    assert!(differ.is_empty(), "outputs changed:\n{}", differ.join("\n"));
}
