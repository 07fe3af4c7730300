//! The service against a real Fluvio cluster. Each test runs when
//! `FLUVIO_SC_ADDR` names one and says it skipped otherwise. Every test
//! works on its own topics (unique names), so they can share a cluster.

use crate::util::{cluster, repo};
use fluvio::consumer::ConsumerConfigExt;
use fluvio::{Fluvio, FluvioClusterConfig, Offset, RecordKey};
use fraudstream::connectors::sinks::report::RunReport;
use fraudstream::connectors::sources::decode::parse_rfc3339;
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Topic names and files of one test instance.
struct Setup {
    prefix: String,
    addr: String,
}

impl Setup {
    fn new(test: &str, addr: String) -> Self {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        Setup {
            prefix: format!("t{}-{test}", stamp % 100_000_000),
            addr,
        }
    }

    fn topic(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// Overrides for topologies/fluvio.toml: inputs `tx`/`labels`, outputs
    /// under `out`, state in `dir`.
    fn sets(&self, out: &str, dir: &Path, partitions: u32) -> Vec<String> {
        vec![
            format!("fluvio.address={}", self.addr),
            format!("source.topic={}", self.topic("tx")),
            format!("source.topic_partitions={partitions}"),
            format!("labels.topic={}", self.topic("labels")),
            format!(
                "sinks.scores.topic={}",
                self.topic(&format!("{out}-scores"))
            ),
            format!(
                "sinks.alerts.topic={}",
                self.topic(&format!("{out}-alerts"))
            ),
            format!(
                "sinks.dead_letters.topic={}",
                self.topic(&format!("{out}-dead"))
            ),
            format!("checkpoint.dir={}", dir.display()),
            "checkpoint.interval=500ms".into(),
            format!("sinks.report.path={}", dir.join("report.json").display()),
            format!("model.save={}", dir.join("model.json").display()),
            "service.listen=off".into(),
            "service.stop_when_idle=2s".into(),
            "source.consumer=none-for-tests".into(),
        ]
    }
}

fn command(args: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fraudstream"));
    c.args(args).current_dir(repo());
    c
}

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn with_sets(mut args: Vec<String>, sets: &[String]) -> Vec<String> {
    for s in sets {
        args.push("--set".into());
        args.push(s.clone());
    }
    args
}

fn create_topics(sets: &[String]) {
    let args = with_sets(
        vec![
            "topics".into(),
            "create".into(),
            "topologies/fluvio.toml".into(),
        ],
        sets,
    );
    ok(command(&args).output().unwrap(), "topics create");
}

/// Publish `days` of the default simulation (5000 cards) to the test's input topics.
fn publish(s: &Setup, days: u32) -> (u64, u64) {
    published(spawn_publisher(s, days, None))
}

/// [`publish`] at `rate` events/s, records keyed by merchant.
fn publish_by_merchant(s: &Setup, days: u32, rate: u32) -> (u64, u64) {
    let mut c = publisher(s, days, Some(rate));
    c.args(["--key", "merchant"]);
    published(c.spawn().unwrap())
}

fn engine_args(sets: &[String]) -> Vec<String> {
    with_sets(vec!["run".into(), "topologies/fluvio.toml".into()], sets)
}

fn run_engine(sets: &[String]) -> (RunReport, String) {
    let out = ok(
        command(&engine_args(sets)).output().unwrap(),
        "fraudstream run",
    );
    // The last override wins, as on the command line.
    let dir = sets
        .iter()
        .rev()
        .find_map(|s| s.strip_prefix("checkpoint.dir="))
        .unwrap();
    let report = RunReport::read_json(&Path::new(dir).join("report.json")).unwrap();
    (report, String::from_utf8_lossy(&out.stderr).to_string())
}

fn spawn_engine(sets: &[String]) -> Child {
    command(&engine_args(sets))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

async fn connect(addr: &str) -> Fluvio {
    Fluvio::connect_with_config(&FluvioClusterConfig::new(addr))
        .await
        .expect("connect to the test cluster")
}

/// Every record of `topic` (all partitions), in offset order per partition;
/// stops after `quiet` without a record. Fails on an offset gap.
fn read_topic(addr: &str, topic: &str, quiet: Duration) -> Vec<Vec<u8>> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let f = connect(addr).await;
        let cfg = ConsumerConfigExt::builder()
            .topic(topic.to_string())
            .offset_start(Offset::beginning())
            .max_bytes(256 << 20)
            .build()
            .unwrap();
        let mut stream = f.consumer_with_config(cfg).await.unwrap();
        let mut out = Vec::new();
        let mut next: HashMap<u32, i64> = HashMap::new();
        while let Ok(Some(r)) = tokio::time::timeout(quiet, stream.next()).await {
            let r = r.expect("record");
            let p = r.partition();
            let want = next.entry(p).or_insert(0);
            assert_eq!(r.offset(), *want, "{topic}/{p}: offsets must be contiguous");
            *want += 1;
            out.push(r.value().to_vec());
        }
        out
    })
}

fn tx_ids(records: &[Vec<u8>]) -> Vec<u64> {
    records
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(r).unwrap();
            v["tx_id"].as_u64().expect("integer tx_id")
        })
        .collect()
}

/// Read the score topic `out`-scores and check that every transaction
/// 1..=`transactions` has exactly one score record; returns how many there are.
fn assert_scored_once(s: &Setup, out: &str, transactions: u64) -> usize {
    let scores = tx_ids(&read_topic(
        &s.addr,
        &s.topic(&format!("{out}-scores")),
        Duration::from_secs(3),
    ));
    let unique: HashSet<u64> = scores.iter().copied().collect();
    assert_eq!(
        unique,
        (1..=transactions).collect(),
        "every transaction scored"
    );
    assert_eq!(scores.len(), unique.len(), "no score written twice");
    scores.len()
}

#[test]
fn every_published_transaction_is_scored_exactly_once() {
    let Some(addr) = cluster("every_published_transaction_is_scored_exactly_once") else {
        return;
    };
    let _cores = shared_cores();
    let s = Setup::new("once", addr);
    let dir = tempfile::tempdir().unwrap();
    let sets = s.sets("a", dir.path(), 1);
    create_topics(&sets);
    let (transactions, labels) = publish(&s, 11);
    assert!(
        transactions >= 100_000,
        "{transactions} transactions published"
    );
    let (report, _) = run_engine(&sets);
    assert_eq!(report.input.transactions, transactions);
    assert_eq!(report.input.labels, labels);
    let scores = tx_ids(&read_topic(
        &s.addr,
        &s.topic("a-scores"),
        Duration::from_secs(3),
    ));
    let unique: HashSet<u64> = scores.iter().copied().collect();
    assert_eq!(
        scores.len() as u64,
        transactions,
        "one score per transaction"
    );
    assert_eq!(
        unique.len() as u64,
        transactions,
        "no transaction scored twice"
    );
    assert_eq!(unique, (1..=transactions).collect(), "every id scored");
    assert_eq!(
        report.engine.labels_joined, labels,
        "every label joined its transaction"
    );
}

/// A stream whose last record batch the fluvio client drops (a fetch cut
/// at its byte limit, with no later record to reveal the gap) is still read
/// to its end: the partition is behind its high watermark and silent, so it
/// is reopened. Before that was noticed, this two-day stream stopped after
/// 27 labels and the service never became idle.
#[test]
fn a_stream_is_read_to_its_end_when_the_client_drops_its_last_batch() {
    let Some(addr) = cluster("a_stream_is_read_to_its_end") else {
        return;
    };
    let _cores = shared_cores();
    let s = Setup::new("end", addr);
    let dir = tempfile::tempdir().unwrap();
    let sets = s.sets("a", dir.path(), 1);
    create_topics(&sets);
    let (transactions, labels) = publish(&s, 2);
    for run in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let mut sets = sets.clone();
        sets.push(format!("checkpoint.dir={}", dir.path().display()));
        sets.push(format!(
            "sinks.report.path={}",
            dir.path().join("report.json").display()
        ));
        let (report, _) = run_engine(&sets);
        assert_eq!(report.input.transactions, transactions, "run {run}");
        assert_eq!(report.input.labels, labels, "run {run}");
        assert_eq!(report.engine.labels_joined, labels, "run {run}");
    }
}

#[test]
fn kill_9_and_restart_ends_like_an_uninterrupted_run() {
    let Some(addr) = cluster("kill_9_and_restart_ends_like_an_uninterrupted_run") else {
        return;
    };
    let _cores = shared_cores();
    let s = Setup::new("kill", addr);
    let (whole_dir, crash_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let whole = s.sets("whole", whole_dir.path(), 1);
    let crash = s.sets("crash", crash_dir.path(), 1);
    create_topics(&whole);
    create_topics(&crash);
    let (transactions, _) = publish(&s, 11);
    let (expected, _) = run_engine(&whole);

    // Kill the second engine with SIGKILL right after its first checkpoint
    // with progress (the first, at start, stores where the outputs began).
    let mut child = spawn_engine(&crash);
    let began = Instant::now();
    while fraudstream::exec::checkpoint::list(crash_dir.path())
        .unwrap()
        .len()
        < 2
    {
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "no checkpoint written"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "engine exited before the kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = tx_ids(&read_topic(
        &s.addr,
        &s.topic("crash-scores"),
        Duration::from_secs(2),
    ));
    assert!(
        (before.len() as u64) < transactions,
        "killed mid-stream ({} of {transactions} scored)",
        before.len()
    );

    let (report, stderr) = run_engine(&crash);
    assert!(stderr.contains("restored checkpoint"), "{stderr}");
    let resumed: u64 = stderr
        .split(" events in this run")
        .next()
        .and_then(|s| s.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .expect("events of this run reported");
    assert!(
        resumed < report.input.transactions + report.input.labels,
        "the restart resumed ({resumed} events) rather than starting over"
    );
    assert_scored_once(&s, "crash", transactions);
    assert_eq!(report.engine, expected.engine, "same counters");
    assert_eq!(report.input, expected.input, "same input counts");
    assert_eq!(report.metrics, expected.metrics, "same prequential metrics");
    assert_eq!(report.model_version, expected.model_version);
    let model = |d: &Path| std::fs::read(d.join("model.json")).unwrap();
    assert_eq!(
        model(crash_dir.path()),
        model(whole_dir.path()),
        "the same model, bit for bit"
    );
}

/// Publish `days` of the default simulation (at `rate` events/s, or full
/// speed) in the background; its output is read by [`published`].
fn spawn_publisher(s: &Setup, days: u32, rate: Option<u32>) -> Child {
    publisher(s, days, rate).spawn().unwrap()
}

fn publisher(s: &Setup, days: u32, rate: Option<u32>) -> Command {
    let mut args = vec![
        "simulate".to_string(),
        "--to".into(),
        "fluvio".into(),
        "--topic".into(),
        s.topic("tx"),
        "--labels-topic".into(),
        s.topic("labels"),
        "--days".into(),
        days.to_string(),
        "--set".into(),
        format!("fluvio.address={}", s.addr),
    ];
    if let Some(rate) = rate {
        args.extend(["--rate".to_string(), rate.to_string()]);
    }
    let mut c = command(&args);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// (transactions, labels) a finished publisher says it published.
fn published(child: Child) -> (u64, u64) {
    let out = ok(child.wait_with_output().unwrap(), "simulate --to fluvio");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let num = |after: &str| -> u64 {
        text.split(after)
            .next()
            .unwrap()
            .split_whitespace()
            .last()
            .unwrap()
            .parse()
            .unwrap()
    };
    (num(" transactions"), num(" labels"))
}

/// Outputs a restarted engine (now ended) found already written, from its
/// progress line (0 if it was killed before that).
fn outputs_skipped(child: &mut Child) -> u64 {
    use std::io::Read;
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err.split(" of them from inputs this restart replays")
        .next()
        .filter(|head| head.len() < err.len())
        .and_then(|head| head.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0) // killed before it had read back
}

/// The cluster tests share the machine's cores. Most can run beside one
/// another; the one that compares a repartitioned live run's ROC AUC with
/// one instance's runs alone: its stages learn from labels in the order
/// they arrive, and beside another test's processes on two cores they lag
/// one another (measured: 0.8308 against 0.8478 beside another test, 0.8478
/// and 0.8460 alone).
static CORES: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Share the cores with other cluster tests.
fn shared_cores() -> std::sync::RwLockReadGuard<'static, ()> {
    CORES.read().unwrap_or_else(|e| e.into_inner())
}

/// Have the cores to this test alone (the other cluster tests wait).
fn all_cores() -> std::sync::RwLockWriteGuard<'static, ()> {
    CORES.write().unwrap_or_else(|e| e.into_inner())
}

/// Wait until an engine has written `n` checkpoints.
fn await_checkpoints(dir: &Path, n: usize, child: &mut Child) {
    let began = Instant::now();
    while fraudstream::exec::checkpoint::list(dir).unwrap().len() < n {
        assert!(began.elapsed() < Duration::from_secs(60), "no checkpoint");
        assert_running(dir, child);
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Fail if the engine writing checkpoints to `dir` has exited, with its
/// messages (stages spawned by [`spawn_logged`] keep them there).
fn assert_running(dir: &Path, child: &mut Child) {
    if let Some(status) = child.try_wait().unwrap() {
        let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
        panic!("engine exited early ({status}): {log}");
    }
}

/// Wait until an engine writes a checkpoint newer than the newest in `dir`
/// now. Not a count: pruning removes a delta chain once a newer base has
/// `checkpoint.keep` checkpoints after it, so the count can fall.
fn await_newer_checkpoint(dir: &Path, child: &mut Child) {
    let newest = || {
        fraudstream::exec::checkpoint::list(dir)
            .unwrap()
            .first()
            .cloned()
    };
    let (now, began) = (newest(), Instant::now());
    while newest() == now {
        assert!(began.elapsed() < Duration::from_secs(60), "no checkpoint");
        assert_running(dir, child);
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Issue 10's acceptance: `kill -9` at 10 random moments of one stream
/// while it is being published, restarting each time. Every transaction
/// is scored once, no output record is written twice, no label is learnt
/// twice, and the end (counters, metrics, model) is that of an
/// uninterrupted run of the same stream beside it.
///
/// Both engines wait up to 5 s (`source.idle`) for a silent partition, so
/// the live merge of transactions and labels is the order a replay gives
/// (the publisher writes both without pauses), and the comparison is exact.
#[test]
fn ten_kill_9s_while_publishing_end_like_an_uninterrupted_run() {
    use rand::{Rng, SeedableRng};
    let Some(addr) = cluster("ten_kill_9s_while_publishing") else {
        return;
    };
    let _cores = shared_cores();
    let s = Setup::new("kills", addr);
    let (whole_dir, crash_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let live = |out: &str, dir: &Path| {
        let mut sets = s.sets(out, dir, 1);
        sets.push("source.idle=5s".into());
        sets.push("service.stop_when_idle=6s".into());
        sets
    };
    let (whole, crash) = (
        live("whole", whole_dir.path()),
        live("crash", crash_dir.path()),
    );
    create_topics(&whole);
    create_topics(&crash);
    let mut uninterrupted = spawn_engine(&whole);
    let mut engine = spawn_engine(&crash);
    await_checkpoints(whole_dir.path(), 1, &mut uninterrupted);
    await_checkpoints(crash_dir.path(), 1, &mut engine);
    let publisher = spawn_publisher(&s, 11, Some(12_000));

    // Kill moments drawn from a fixed seed (printed, to reproduce a failure).
    let seed: u64 = std::env::var("FRAUDSTREAM_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    eprintln!("kill moments from seed {seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (mut kills, mut skipped) = (0, 0u64);
    while kills < 10 {
        std::thread::sleep(Duration::from_millis(rng.gen_range(300..2_000)));
        assert!(
            engine.try_wait().unwrap().is_none(),
            "the engine stopped on its own after {kills} kills"
        );
        engine.kill().unwrap(); // SIGKILL
        engine.wait().unwrap();
        if kills > 0 {
            skipped += outputs_skipped(&mut engine);
        }
        kills += 1;
        engine = spawn_engine(&crash);
    }
    let (transactions, labels) = published(publisher);
    for (child, what) in [
        (&mut engine, "restarted"),
        (&mut uninterrupted, "uninterrupted"),
    ] {
        let status = child.wait().unwrap();
        assert!(status.success(), "the {what} engine failed");
    }
    skipped += outputs_skipped(&mut engine);
    eprintln!("restarts found {skipped} outputs already written and did not write them again");
    assert!(
        skipped > 0,
        "the kills fell where outputs had to be skipped"
    );
    let report = |d: &Path| RunReport::read_json(&d.join("report.json")).unwrap();
    let (got, expected) = (report(crash_dir.path()), report(whole_dir.path()));

    let records = assert_scored_once(&s, "crash", transactions);
    eprintln!("{kills} kills: {records} score records for {transactions} transactions");
    let alerts = tx_ids(&read_topic(
        &s.addr,
        &s.topic("crash-alerts"),
        Duration::from_secs(2),
    ));
    let unique_alerts: HashSet<u64> = alerts.iter().copied().collect();
    assert_eq!(alerts.len(), unique_alerts.len(), "no alert written twice");

    assert_eq!(got.input.labels, labels, "every label read once");
    assert_eq!(got.engine.labels_learnt, labels, "every label learnt once");
    assert_eq!(got.engine.labels_duplicate, 0);
    assert_eq!(got.engine, expected.engine, "same counters");
    assert_eq!(got.input, expected.input, "same input counts");
    assert_eq!(got.metrics, expected.metrics, "same prequential metrics");
    let model = |d: &Path| std::fs::read(d.join("model.json")).unwrap();
    assert_eq!(
        model(crash_dir.path()),
        model(whole_dir.path()),
        "the same model, bit for bit"
    );
    let expected_alerts = read_topic(&s.addr, &s.topic("whole-alerts"), Duration::from_secs(2));
    assert_eq!(alerts.len(), expected_alerts.len(), "the same alerts");
}

/// Takeover: an instance's state lives in its checkpoint directory (a
/// mounted volume in production), so when its machine is lost, a fresh
/// process elsewhere, with nothing of the first one's local files, goes on
/// from it: every transaction scored once, every label learnt once.
#[test]
fn a_fresh_process_elsewhere_takes_over_an_instance_from_its_checkpoints() {
    let Some(addr) = cluster("a_fresh_process_elsewhere_takes_over") else {
        return;
    };
    let _cores = shared_cores();
    let s = Setup::new("takeover", addr);
    let volume = tempfile::tempdir().unwrap();
    let local = |dir: &Path| {
        let mut sets = s.sets("moved", volume.path(), 1);
        sets.push(format!(
            "sinks.report.path={}",
            dir.join("report.json").display()
        ));
        sets.push(format!("model.save={}", dir.join("model.json").display()));
        sets
    };
    let (first_local, second_local) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = local(first_local.path());
    create_topics(&first);
    let (transactions, labels) = publish(&s, 11);

    let mut child = spawn_engine(&first);
    await_checkpoints(volume.path(), 2, &mut child);
    child.kill().unwrap(); // the machine is lost
    child.wait().unwrap();
    std::fs::remove_dir_all(first_local.path()).unwrap();

    let out = ok(
        command(&engine_args(&local(second_local.path())))
            .output()
            .unwrap(),
        "the taking-over process",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("restored checkpoint"), "{stderr}");
    let report = RunReport::read_json(&second_local.path().join("report.json")).unwrap();
    assert_scored_once(&s, "moved", transactions);
    assert_eq!(report.input.transactions, transactions);
    assert_eq!(
        report.engine.labels_learnt, labels,
        "every label learnt once"
    );
    assert_eq!(report.engine.labels_duplicate, 0);
}

#[test]
fn malformed_records_go_to_the_dead_letter_topic_and_the_rest_is_scored() {
    let Some(addr) = cluster("malformed_records_go_to_the_dead_letter_topic") else {
        return;
    };
    let _cores = shared_cores();
    let s = Setup::new("dead", addr);
    let dir = tempfile::tempdir().unwrap();
    let sets = s.sets("a", dir.path(), 1);
    create_topics(&sets);
    let bad = [
        ("not json at all", "malformed", "JSON"),
        (
            r#"{"tx_id": 9000001, "ts": "2026-01-01T00:00:00Z", "merchant_id": "T1", "amount": 5}"#,
            "missing_field",
            "card_id",
        ),
        (
            r#"{"tx_id": 9000002, "ts": "2026-01-01T00:00:00Z", "card_id": "C1", "merchant_id": "T1", "amount": -3}"#,
            "invalid_field",
            "amount",
        ),
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    let send = |records: &[&str]| {
        rt.block_on(async {
            let f = connect(&s.addr).await;
            let p = f.topic_producer(s.topic("tx")).await.unwrap();
            for r in records {
                p.send(RecordKey::NULL, r.as_bytes().to_vec())
                    .await
                    .unwrap();
            }
            p.flush().await.unwrap();
        })
    };
    send(&[bad[0].0]);
    let (transactions, _) = publish(&s, 1);
    send(&[bad[1].0, bad[2].0]);
    let (report, _) = run_engine(&sets);
    assert_eq!(report.input.dead_letters, 3);
    let dead = read_topic(&s.addr, &s.topic("a-dead"), Duration::from_secs(3));
    assert_eq!(dead.len(), 3, "three dead letters");
    for (record, (raw, kind, reason)) in dead.iter().zip(bad) {
        let v: serde_json::Value = serde_json::from_slice(record).unwrap();
        assert_eq!(v["raw"], raw, "the raw record is kept");
        assert_eq!(v["kind"], kind);
        assert!(
            v["reason"].as_str().unwrap().contains(reason),
            "reason {} mentions {reason}",
            v["reason"]
        );
        assert!(
            v["source"].as_str().unwrap().ends_with("-tx/0"),
            "{}",
            v["source"]
        );
    }
    let scores = tx_ids(&read_topic(
        &s.addr,
        &s.topic("a-scores"),
        Duration::from_secs(3),
    ));
    assert_eq!(
        scores.len() as u64,
        transactions,
        "every valid transaction scored"
    );
}

/// ROC AUC of the scores in `scores` against the labels of `labels`.
fn auc_of(scores: &[Vec<u8>], labels: &[Vec<u8>]) -> f64 {
    let truth: HashMap<u64, bool> = labels
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(r).unwrap();
            (
                v["tx_id"].as_u64().unwrap(),
                v["is_fraud"].as_bool().unwrap(),
            )
        })
        .collect();
    let pairs: Vec<(f32, bool)> = scores
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(r).unwrap();
            let id = v["tx_id"].as_u64().unwrap();
            (
                v["score"].as_f64().unwrap() as f32,
                truth.get(&id).copied().unwrap_or(false),
            )
        })
        .collect();
    fraudstream_engine::eval::roc_auc(&pairs).expect("both classes present")
}

#[test]
fn two_instances_on_two_partitions_score_every_transaction() {
    let Some(addr) = cluster("two_instances_on_two_partitions_score_every_transaction") else {
        return;
    };
    let _cores = shared_cores();
    let s = Setup::new("scale", addr);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // The quality bound below is the logistic model's. Instances by
    // partition each learn from their own cards' labels only; `auto` (the
    // default) loses more to that on this 11-day stream, its forest and
    // batch model being starved of labels early: 0.7543 against 0.8165
    // (logistic 0.8045 against 0.8336), measured 2026-12-02. Repartitioned
    // stages (`two_merchant_and_two_card_stages_score_like_one_instance`,
    // with the default) are the way to scale out without that loss.
    let sets = |out: &str, dir: &Path| {
        let mut v = s.sets(out, dir, 2);
        v.push("model.type=\"logistic\"".into());
        v
    };
    let mut p0 = sets("two", dirs[0].path());
    p0.push("source.partitions=[0]".into());
    let mut p1 = sets("two", dirs[1].path());
    p1.push("source.partitions=[1]".into());
    let single = sets("one", dirs[2].path());
    create_topics(&p0);
    create_topics(&single);
    let (transactions, _) = publish(&s, 11);

    let (a, b) = (spawn_engine(&p0), spawn_engine(&p1));
    for (mut child, what) in [(a, "instance 0"), (b, "instance 1")] {
        let status = child.wait().unwrap();
        assert!(status.success(), "{what} failed");
    }
    let r0 = RunReport::read_json(&dirs[0].path().join("report.json")).unwrap();
    let r1 = RunReport::read_json(&dirs[1].path().join("report.json")).unwrap();
    assert!(
        r0.input.transactions > 0 && r1.input.transactions > 0,
        "both had work"
    );
    assert_eq!(r0.input.transactions + r1.input.transactions, transactions);
    let two = read_topic(&s.addr, &s.topic("two-scores"), Duration::from_secs(3));
    let ids = tx_ids(&two);
    let unique: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(ids.len() as u64, transactions, "one score per transaction");
    assert_eq!(
        unique,
        (1..=transactions).collect(),
        "together they score every transaction"
    );

    // Quality against one instance reading both partitions.
    run_engine(&single);
    let one = read_topic(&s.addr, &s.topic("one-scores"), Duration::from_secs(3));
    let labels = read_topic(&s.addr, &s.topic("labels"), Duration::from_secs(3));
    let (auc_two, auc_one) = (auc_of(&two, &labels), auc_of(&one, &labels));
    eprintln!("scale-out quality: ROC AUC two instances {auc_two:.4}, one instance {auc_one:.4}");
    assert!(
        auc_two >= auc_one - 0.05,
        "two instances {auc_two:.4} vs one {auc_one:.4}"
    );
}

/// Overrides for one process of a repartitioned topology (output `four`,
/// stage topic `by-card` of two card partitions per transaction partition,
/// learn topic `learn`): `role` merchant owning transaction partition
/// `partition`, or card owning card partition `partition`. Every merge
/// waits up to 1 s for a silent partition (or lane): six processes share
/// two cores, and a stalled one must not reorder its inputs (the stream
/// itself never pauses that long).
fn staged_sets(s: &Setup, dir: &Path, role: &str, partition: u32) -> Vec<String> {
    let mut v = s.sets("four", dir, 2);
    v.extend([
        "source.idle=1s".into(),
        format!("stages.topic={}", s.topic("by-card")),
        "stages.card_partitions=2".into(),
        format!("stages.learn_topic={}", s.topic("learn")),
        format!("stages.role={role}"),
        "stages.idle=1s".into(),
    ]);
    v.push(match role {
        "merchant" => format!("source.partitions=[{partition}]"),
        _ => format!("stages.partitions=[{partition}]"),
    });
    v
}

/// Start the engine with `sets`, its messages appended to `dir`/stderr.log
/// (a pipe nobody reads would stall it).
fn spawn_logged(sets: &[String], dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("stderr.log"))
        .unwrap();
    command(&engine_args(sets))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Every transaction record of a stage topic, by id: each must be there
/// once; and each copy of a label (one per card partition) at most once.
fn assert_staged_once(s: &Setup, transactions: u64) {
    let records: Vec<serde_json::Value> =
        read_topic(&s.addr, &s.topic("by-card"), Duration::from_secs(3))
            .iter()
            .map(|r| serde_json::from_slice(r).unwrap())
            .collect();
    let copies: Vec<(String, u64)> = records
        .iter()
        .filter(|v| v["stage"] == "label")
        .map(|v| {
            let input = v["input"].as_str().expect("a label's input").to_string();
            (input, v["partition"].as_u64().unwrap())
        })
        .collect();
    let unique: HashSet<&(String, u64)> = copies.iter().collect();
    assert_eq!(
        copies.len(),
        unique.len(),
        "no copy of a label staged twice"
    );
    let staged: Vec<u64> = records
        .iter()
        .filter(|v| v["stage"] == "tx")
        .map(|v| v["tx_id"].as_u64().unwrap())
        .collect();
    let unique: HashSet<u64> = staged.iter().copied().collect();
    assert_eq!(
        unique,
        (1..=transactions).collect(),
        "every transaction staged"
    );
    assert_eq!(staged.len(), unique.len(), "no transaction staged twice");
}

/// A merchant stage and a card stage of a repartitioned topology killed
/// with SIGKILL mid-stream (twice each) and restarted: the stage topic
/// holds every transaction once, the score topic every score once, and
/// every label is joined once by the card stage that scored its
/// transaction.
#[test]
fn killed_stages_restart_and_every_transaction_is_scored_once() {
    let Some(addr) = cluster("killed_stages_restart_and_every_transaction_is_scored_once") else {
        return;
    };
    let _cores = shared_cores();
    let s = Setup::new("stagekill", addr);
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let sets = [
        staged_sets(&s, dirs[0].path(), "merchant", 0),
        staged_sets(&s, dirs[1].path(), "merchant", 1),
        staged_sets(&s, dirs[2].path(), "card", 0),
        staged_sets(&s, dirs[3].path(), "card", 1),
    ];
    create_topics(&sets[0]);
    let mut children: Vec<Child> = sets
        .iter()
        .zip(&dirs)
        .map(|(p, dir)| spawn_logged(p, dir.path()))
        .collect();
    for (dir, child) in dirs.iter().zip(children.iter_mut()) {
        await_checkpoints(dir.path(), 1, child);
    }
    let mut publisher = publisher(&s, 11, Some(6_000));
    publisher.args(["--key", "merchant"]);
    let publisher = publisher.spawn().unwrap();
    // Outputs the restarts found written and did not write again.
    let skipped = || -> u64 {
        [0, 3]
            .iter()
            .map(|&i| std::fs::read_to_string(dirs[i].path().join("stderr.log")).unwrap())
            .flat_map(|log| {
                log.split(" of them from inputs this restart replays")
                    .map(|head| head.split_whitespace().last().and_then(|n| n.parse().ok()))
                    .collect::<Vec<Option<u64>>>()
            })
            .flatten()
            .sum()
    };
    // Merchant stage 0, then card stage 1, twice, each after a checkpoint
    // with progress; on a loaded machine a kill can land where nothing was
    // written since the checkpoint, so up to four more until one restart
    // had outputs to skip.
    let mut kills = 0;
    while kills < 4 || (skipped() == 0 && kills < 8) {
        let victim = [0, 3][kills % 2];
        kills += 1;
        std::thread::sleep(Duration::from_secs(4));
        let dir = dirs[victim].path();
        await_newer_checkpoint(dir, &mut children[victim]);
        // Between two checkpoints (every 500 ms): outputs since the last.
        std::thread::sleep(Duration::from_millis(300));
        children[victim].kill().unwrap(); // SIGKILL
        children[victim].wait().unwrap();
        children[victim] = spawn_logged(&sets[victim], dir);
        // Its restart has read the outputs back once it checkpoints again.
        await_newer_checkpoint(dir, &mut children[victim]);
    }
    let (transactions, labels) = published(publisher);
    for (i, child) in children.iter_mut().enumerate() {
        let status = child.wait().unwrap();
        let log = std::fs::read_to_string(dirs[i].path().join("stderr.log")).unwrap();
        assert!(status.success(), "process {i} failed: {log}");
    }
    // Each restart says how many outputs it found written and skipped.
    let skipped = skipped();
    eprintln!("{kills} kills: {skipped} outputs found written and not written again");
    for i in [0, 3] {
        let log = std::fs::read_to_string(dirs[i].path().join("stderr.log")).unwrap();
        for line in log.lines().filter(|l| l.contains("output records")) {
            eprintln!("process {i}: {line}");
        }
    }
    assert!(
        skipped > 0,
        "the kills fell where outputs had to be skipped"
    );
    assert_staged_once(&s, transactions);
    assert_scored_once(&s, "four", transactions);
    let report = |i: usize| RunReport::read_json(&dirs[i].path().join("report.json")).unwrap();
    let (c0, c1) = (report(2), report(3));
    assert_eq!(c0.engine.labels_duplicate + c1.engine.labels_duplicate, 0);
    assert_eq!(
        c0.engine.labels_joined + c1.engine.labels_joined,
        labels,
        "every label joined once, by its transaction's card stage"
    );
}

/// Issue 11's acceptance: a topology repartitioned through Fluvio, two
/// merchant stages (each owning one partition of transactions keyed by
/// merchant) and two card stages (each owning one card partition of the
/// stage topic, replicating their vectors through the learn topic), four
/// processes, score every transaction once, and as well as one process
/// running both stages over the same stream beside them.
///
/// The stream is live (published at 3,000 events/s while the stages run),
/// as a payment system's is. 11 days pass in 70 s, so a few milliseconds
/// between processes are minutes of event time: stages that race through a
/// backlog learn each other's labels late (docs/operations.md gives the
/// figures). At 6,000 events/s, five processes each serving `auto` on two
/// cores, the stages lag one another by more event time, and since the
/// learning rate of 2026-12-03 that cost 2 + 2 stages 0.013-0.015 (0.8333
/// to 0.8355 against 0.8486 over three runs; at 3,000, 0.8486 and 0.8506
/// against 0.8486 in two).
#[test]
fn two_merchant_and_two_card_stages_score_like_one_instance() {
    let Some(addr) = cluster("two_merchant_and_two_card_stages_score_like_one_instance") else {
        return;
    };
    let _cores = all_cores();
    let s = Setup::new("stages", addr);
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let staged =
        |i: usize, role: &str, partition: u32| staged_sets(&s, dirs[i].path(), role, partition);
    let processes = [
        staged(0, "merchant", 0),
        staged(1, "merchant", 1),
        staged(2, "card", 0),
        staged(3, "card", 1),
    ];
    // One process with both stages, live on the same stream beside them.
    let mut single = s.sets("one", dirs[4].path(), 2);
    single.push("source.idle=1s".into());
    create_topics(&processes[0]);
    create_topics(&single);
    let mut children: Vec<Child> = processes
        .iter()
        .chain([&single])
        .zip(&dirs)
        .map(|(p, dir)| spawn_logged(p, dir.path()))
        .collect();
    // Each has its partitions open once it has written its first checkpoint.
    for (dir, child) in dirs.iter().zip(children.iter_mut()) {
        await_checkpoints(dir.path(), 1, child);
    }
    let (transactions, _) = publish_by_merchant(&s, 11, 3_000);

    for (i, mut child) in children.into_iter().enumerate() {
        let status = child.wait().unwrap();
        let log = std::fs::read_to_string(dirs[i].path().join("stderr.log")).unwrap();
        assert!(status.success(), "process {i} failed: {log}");
    }
    let report = |i: usize| RunReport::read_json(&dirs[i].path().join("report.json")).unwrap();
    let (m0, m1, c0, c1) = (report(0), report(1), report(2), report(3));
    assert!(
        m0.input.transactions > 0 && m1.input.transactions > 0,
        "both merchant stages had work"
    );
    assert!(
        c0.input.transactions > 0 && c1.input.transactions > 0,
        "both card stages had work"
    );
    assert_eq!(m0.input.transactions + m1.input.transactions, transactions);
    assert_staged_once(&s, transactions);
    assert_eq!(c0.input.transactions + c1.input.transactions, transactions);
    let four = read_topic(&s.addr, &s.topic("four-scores"), Duration::from_secs(3));
    let ids = tx_ids(&four);
    let unique: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(ids.len() as u64, transactions, "one score per transaction");
    assert_eq!(
        unique,
        (1..=transactions).collect(),
        "every transaction scored"
    );

    let one = read_topic(&s.addr, &s.topic("one-scores"), Duration::from_secs(3));
    let labels = read_topic(&s.addr, &s.topic("labels"), Duration::from_secs(3));
    let (auc_four, auc_one) = (auc_of(&four, &labels), auc_of(&one, &labels));
    eprintln!(
        "repartitioned quality: ROC AUC 2 merchant + 2 card stages {auc_four:.4}, one instance {auc_one:.4}"
    );
    // Live merges interleave labels and transactions a little differently
    // in each process, so the two differ either way; scaling out must not
    // cost more than 0.005 (it has come out above as often as below).
    assert!(
        auc_four >= auc_one - 0.005,
        "four processes {auc_four:.4} vs one {auc_one:.4}"
    );
}

/// Overrides (output `a`, `extra` added) for a service on HTTP at a free
/// port until it is stopped, its topics created and two days published;
/// with the number of transactions published.
fn two_days_to_serve(s: &Setup, dir: &Path, extra: &[&str]) -> (Vec<String>, u64) {
    let mut sets = s.sets("a", dir, 1);
    sets.push("service.listen=\"127.0.0.1:0\"".into());
    sets.push("service.stop_when_idle=\"0s\"".into());
    sets.extend(extra.iter().map(|e| e.to_string()));
    create_topics(&sets);
    let (transactions, _) = publish(s, 2);
    (sets, transactions)
}

#[test]
fn the_scoring_api_beside_a_fluvio_source_scores_with_the_stream_s_history() {
    let Some(addr) =
        cluster("the_scoring_api_beside_a_fluvio_source_scores_with_the_stream_s_history")
    else {
        return;
    };
    let _cores = shared_cores();
    let s = Setup::new("api", addr);
    let dir = tempfile::tempdir().unwrap();
    let (sets, transactions) = two_days_to_serve(&s, dir.path(), &["api.queue=16"]);
    // The stream's last card: how many transactions it made, and when the
    // stream ends.
    let records: Vec<serde_json::Value> =
        read_topic(&s.addr, &s.topic("tx"), Duration::from_secs(3))
            .iter()
            .map(|r| serde_json::from_slice(r).unwrap())
            .collect();
    assert_eq!(records.len() as u64, transactions);
    let card = records.last().unwrap()["card_id"]
        .as_str()
        .unwrap()
        .to_string();
    let of_card = records
        .iter()
        .filter(|r| r["card_id"] == card.as_str())
        .count();
    let end = records
        .iter()
        .map(|r| parse_rfc3339(r["ts"].as_str().unwrap()).unwrap())
        .max()
        .unwrap();

    let service = crate::api::Service::spawn(&engine_args(&sets), &repo());
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (status, health) = service.ask("GET", "/health", "");
        let health: serde_json::Value = serde_json::from_str(&health).unwrap();
        if status == 200 && health["transactions_scored"].as_u64() >= Some(transactions) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stream was not scored: {health}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The API sees the card's history from the topic (`card_count_30d` is
    // ln(1 + the card's transactions in 30 days) for a transaction then).
    let at = end + 60_000;
    let (status, looked) = service.ask("GET", &format!("/v1/cards/{card}/features?at={at}"), "");
    assert_eq!(status, 200, "{looked}");
    let looked: serde_json::Value = serde_json::from_str(&looked).unwrap();
    let count = looked["features"]["card_count_30d"].as_f64().unwrap();
    assert_eq!((count.exp() - 1.0).round() as usize, of_card, "{looked}");
    // A transaction scored through the API goes to the scores topic too.
    let id = transactions + 1;
    let (status, answer) = service.post("/v1/score", &crate::api::tx(id, at, &card, 42.0));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["tx_id"], id, "{answer}");
    assert!(answer["decision"].is_string(), "{answer}");
    service.stop();

    let report = RunReport::read_json(&dir.path().join("report.json")).unwrap();
    assert_eq!(report.input.transactions, transactions + 1);
    assert_scored_once(&s, "a", transactions + 1);
    let scores = read_topic(&s.addr, &s.topic("a-scores"), Duration::from_secs(3));
    for r in &scores {
        let v: serde_json::Value = serde_json::from_slice(r).unwrap();
        // Stream scores name their input record; the API's has none.
        assert_eq!(v["input"].is_string(), v["tx_id"] != id, "{v}");
    }
}

#[test]
fn the_dashboard_of_a_fluvio_service_shows_its_consumer_lag() {
    let Some(addr) = cluster("the_dashboard_of_a_fluvio_service_shows_its_consumer_lag") else {
        return;
    };
    let _cores = shared_cores();
    let s = Setup::new("board", addr);
    let dir = tempfile::tempdir().unwrap();
    let (sets, transactions) = two_days_to_serve(&s, dir.path(), &[]);
    let service = crate::api::Service::spawn(&engine_args(&sets), &repo());
    let snapshot = || -> serde_json::Value {
        let (status, body) = service.ask("GET", "/api/dashboard", "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    // One row per input partition, each of the test's two topics, down to
    // no lag once the stream is scored.
    let deadline = Instant::now() + Duration::from_secs(120);
    let last = loop {
        let snap = snapshot();
        let caught_up = snap["totals"]["transactions"].as_u64() == Some(transactions)
            && snap["lag"].as_array().is_some_and(|rows| {
                rows.len() == 2 && rows.iter().all(|r| r["lag"].as_u64() == Some(0))
            });
        if caught_up {
            break snap;
        }
        assert!(Instant::now() < deadline, "not caught up: {snap}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(last["service"], "fluvio");
    let topics: HashSet<&str> = last["lag"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["topic"].as_str().unwrap())
        .collect();
    let expected = [s.topic("tx"), s.topic("labels")];
    assert_eq!(topics, expected.iter().map(|t| t.as_str()).collect());
    // The page shows the same rows (where a browser runs: see tests/browser.rs).
    if let Some(page) = crate::browser::Page::open(&format!("http://{}/", service.addr)) {
        let rows = "document.querySelectorAll('[data-table=\"lag\"] tbody tr').length";
        assert!(
            page.wait_until(&format!("{rows} === 2"), Duration::from_secs(20)),
            "the lag table: {}",
            page.eval(rows)
        );
        let shot = page.screenshot("screenshots/dashboard-fluvio.png");
        assert!(
            page.console_errors().is_empty(),
            "{:?}",
            page.console_errors()
        );
        eprintln!("screenshot: {}", shot.display());
    }
    service.stop();
}
