//! The scoring API (`source.type = "api"`), end to end: the service started
//! on a loopback port with an API-only topology, asked over plain HTTP/1.1.

use crate::util::{fraudstream, repo, sinks_into, text};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `fraudstream run` of an API topology (the dashboard and
/// monitoring tests use it too).
pub struct Service {
    child: Child,
    /// Where it listens (`127.0.0.1:PORT`).
    pub addr: String,
}

impl Service {
    /// Start `topology` (a file of the repository) with sinks in `out`, on a
    /// free loopback port; waits for the line that gives the address.
    pub fn start(topology: &str, out: &Path, extra: &[&str]) -> Service {
        let mut args: Vec<String> = vec!["run".into(), repo().join(topology).display().to_string()];
        let mut set = sinks_into(out);
        set.push("service.listen=\"127.0.0.1:0\"".into());
        set.extend(extra.iter().map(|s| s.to_string()));
        for s in set {
            args.push("--set".into());
            args.push(s);
        }
        Service::spawn(&args, out)
    }

    /// `fraudstream ARGS` in `cwd`, serving HTTP; waits for the line that
    /// gives the address.
    pub fn spawn(args: &[String], cwd: &Path) -> Service {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fraudstream"))
            .args(args)
            .current_dir(cwd)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("binary runs");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("the service says where it listens before it ends")
                .unwrap();
            if let Some(rest) = line.split("http://").nth(1) {
                break rest
                    .split(|c: char| c.is_whitespace() || c == '/')
                    .next()
                    .unwrap()
                    .to_string();
            }
        };
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Service { child, addr }
    }

    /// Send one request; returns the status and the body.
    pub fn ask(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut conn = TcpStream::connect(&self.addr).expect("connects");
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(req.as_bytes()).unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").expect("a full answer");
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, body.to_string())
    }

    /// `ask` a JSON body; the status and the parsed answer.
    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let (status, text) = self.ask("POST", path, body);
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (status, v)
    }

    /// SIGTERM, then wait: the service drains and writes its report.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the service exits 0 on SIGTERM: {status}");
    }
}

impl Drop for Service {
    /// A test that fails before [`Service::stop`] does not leave its
    /// service running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A transaction of the topics' JSON schema.
pub fn tx(id: u64, ts: i64, card: &str, amount: f64) -> String {
    format!(
        r#"{{"tx_id":{id},"ts":{ts},"card_id":"{card}","merchant_id":"M1","amount":{amount},"mcc":"5411","country":"FR","channel":"pos"}}"#
    )
}

/// A JSON batch of the transactions `ids`, each `(ts, card, amount)` by `of`.
pub fn batch_of(
    ids: impl IntoIterator<Item = u64>,
    of: impl Fn(u64) -> (i64, String, f64),
) -> String {
    let items: Vec<String> = ids
        .into_iter()
        .map(|i| {
            let (ts, card, amount) = of(i);
            tx(i, ts, &card, amount)
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// A time well in the past of the wall clock (events may not run ahead).
pub const T0: i64 = 1_767_225_600_000; // 2026-01-01

#[test]
fn valid_transactions_get_scores_decisions_and_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start("topologies/api.toml", dir.path(), &[]);
    let (status, one) = s.post("/v1/score", &tx(1, T0, "C1", 42.0));
    assert_eq!(status, 200, "{one}");
    let score = one["score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&score), "{one}");
    // The topology's bands: review from 0.5, decline from 0.9.
    let want = if score >= 0.9 {
        "decline"
    } else if score >= 0.5 {
        "review"
    } else {
        "approve"
    };
    assert_eq!(one["decision"], want, "{one}");
    assert!(!one["reasons"].as_array().unwrap().is_empty(), "{one}");
    assert_eq!(one["tx_id"], 1);
    assert_eq!(one["card_id"], "C1");
    assert!(one["model_version"].is_u64(), "{one}");
    assert!(one["engine_us"].as_f64().unwrap() > 0.0, "{one}");

    let batch = batch_of(2..=101, |i| {
        (T0 + i as i64 * 1000, format!("C{}", i % 7), 10.0 + i as f64)
    });
    let (status, many) = s.post("/v1/score", &batch);
    assert_eq!(status, 200, "{many}");
    let results = many["results"].as_array().unwrap();
    assert_eq!(results.len(), 100);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["tx_id"], i as u64 + 2, "answers in request order");
        assert!(r["decision"].is_string(), "{r}");
    }
    s.stop();
    let report: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(report["input"]["transactions"], 101, "{report}");
    let scores = std::fs::read_to_string(dir.path().join("scores.jsonl")).unwrap();
    assert_eq!(
        scores.lines().count(),
        101,
        "every answer is in the scores sink too"
    );
    let first: Value = serde_json::from_str(scores.lines().next().unwrap()).unwrap();
    assert_eq!(
        first["decision"], one["decision"],
        "with its decision: {first}"
    );
    assert_eq!(first["reasons"], one["reasons"], "{first}");
}

#[test]
fn each_kind_of_bad_request_gets_a_4xx_with_the_field_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(
        "topologies/api.toml",
        dir.path(),
        &["source.max_batch=10", "source.max_body_bytes=4096"],
    );
    // Not JSON.
    let (status, v) = s.post("/v1/score", "{not json");
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["errors"][0]["kind"], "malformed", "{v}");
    // A field missing, and one invalid, in one batch: both named at once.
    let batch = format!(
        r#"[{}, {{"tx_id":3,"ts":{T0},"card_id":"C1","amount":5}}, {}]"#,
        tx(2, T0, "C1", 5.0),
        tx(4, T0, "C1", -3.0)
    );
    let (status, v) = s.post("/v1/score", &batch);
    assert_eq!(status, 422, "{v}");
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{v}");
    assert_eq!(errors[0]["index"], 1);
    assert_eq!(errors[0]["kind"], "missing_field");
    assert!(
        errors[0]["reason"]
            .as_str()
            .unwrap()
            .contains("merchant_id"),
        "{v}"
    );
    assert_eq!(errors[1]["index"], 2);
    assert_eq!(errors[1]["kind"], "invalid_field");
    assert!(
        errors[1]["reason"].as_str().unwrap().contains("amount"),
        "{v}"
    );
    // A timestamp far in the future: the engine's own refusal.
    let (status, v) = s.post("/v1/score", &tx(5, 32_000_000_000_000, "C1", 5.0));
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["kind"], "future_timestamp", "{v}");
    // Too many records, too large a body.
    let eleven = format!(
        "[{}]",
        (0..11)
            .map(|i| tx(10 + i, T0, "C1", 1.0))
            .collect::<Vec<_>>()
            .join(",")
    );
    let (status, v) = s.post("/v1/score", &eleven);
    assert_eq!(status, 413, "{v}");
    assert!(
        v["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("max_batch"),
        "{v}"
    );
    let (status, v) = s.post("/v1/score", &format!("[{}]", " ".repeat(5000)));
    assert_eq!(status, 413, "{v}");
    assert!(
        v["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("max_body_bytes"),
        "{v}"
    );
    // A label missing its verdict.
    let (status, v) = s.post("/v1/labels", &format!(r#"{{"tx_id":1,"ts":{T0}}}"#));
    assert_eq!(status, 422, "{v}");
    assert!(
        v["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("is_fraud"),
        "{v}"
    );
    // Wrong method, unknown path.
    assert_eq!(s.ask("GET", "/v1/score", "").0, 405);
    let (status, body) = s.ask("GET", "/v1/nothing", "");
    assert_eq!(status, 404);
    assert!(body.contains("POST /v1/score"), "{body}");
    // The service is still answering.
    assert_eq!(s.post("/v1/score", &tx(99, T0, "C1", 5.0)).0, 200);
    s.stop();
    let dead = std::fs::read_to_string(dir.path().join("dead_letters.jsonl")).unwrap();
    assert_eq!(
        dead.lines().count(),
        5,
        "the record that is not JSON, the two invalid ones, the future one and the label \
         are dead letters: {dead}"
    );
}

#[test]
fn labels_posted_are_learnt() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start("topologies/api.toml", dir.path(), &[]);
    let batch = batch_of(1..=50, |i| {
        (
            T0 + i as i64 * 60_000,
            format!("C{}", i % 5),
            20.0 * i as f64,
        )
    });
    let (status, first) = s.post("/v1/score", &batch);
    assert_eq!(status, 200, "{first}");
    let before = first["results"][49]["model_version"].as_u64().unwrap();
    let labels = format!(
        "[{}]",
        (1..=50)
            .map(|i| format!(
                r#"{{"tx_id":{i},"ts":{},"is_fraud":{}}}"#,
                T0 + 86_400_000,
                i % 10 == 0
            ))
            .chain([format!(
                r#"{{"tx_id":777,"ts":{},"is_fraud":true}}"#,
                T0 + 86_400_000
            )])
            .collect::<Vec<_>>()
            .join(",")
    );
    let (status, v) = s.post("/v1/labels", &labels);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["labels"], 51, "{v}");
    assert_eq!(v["joined"], 50, "{v}");
    assert_eq!(
        v["unknown"], 1,
        "a label for a transaction never scored: {v}"
    );
    let (_, again) = s.post("/v1/labels", &labels);
    assert_eq!(again["duplicate"], 50, "{again}");
    let (status, next) = s.post("/v1/score", &tx(51, T0 + 86_400_001, "C1", 30.0));
    assert_eq!(status, 200, "{next}");
    let after = next["model_version"].as_u64().unwrap();
    // Every answer is explained, alert or not (engine.explain_top = 3), once
    // the model has weights to explain with.
    assert_eq!(next["alert"], false, "{next}");
    let top = next["top_features"].as_array().expect("explained");
    assert!(!top.is_empty() && top.len() <= 3, "{next}");
    assert!(
        top[0]["feature"].is_string() && top[0]["value"].is_f64(),
        "{next}"
    );
    assert!(
        after >= before + 50,
        "the model learnt the 50 labels: version {before} -> {after}"
    );
    s.stop();
}

#[test]
fn the_same_stream_scores_the_same_through_the_api_and_a_file_replay() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    let made = fraudstream(
        &[
            "simulate",
            "--format",
            "jsonl",
            "--days",
            "3",
            "--cards",
            "300",
            "--out",
            sim.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(made.status.success(), "{}", text(&made).1);
    let stream = std::fs::read_to_string(sim.join("transactions.jsonl")).unwrap();
    let lines: Vec<&str> = stream.lines().collect();
    assert!(lines.len() > 1000, "{} transactions", lines.len());

    // Through the API, in batches of 100 and one by one.
    let api_out = dir.path().join("api");
    std::fs::create_dir_all(&api_out).unwrap();
    let s = Service::start("topologies/api.toml", &api_out, &[]);
    for (i, chunk) in lines.chunks(100).enumerate() {
        if i % 2 == 0 {
            let (status, v) = s.post("/v1/score", &format!("[{}]", chunk.join(",")));
            assert_eq!(status, 200, "{v}");
        } else {
            for line in chunk {
                let (status, v) = s.post("/v1/score", line);
                assert_eq!(status, 200, "{v}");
            }
        }
    }
    s.stop();

    // The same file replayed, with the API topology's engine settings and
    // its decisions (the default bands), which scores then carry too.
    let replay_out = dir.path().join("replay");
    std::fs::create_dir_all(&replay_out).unwrap();
    let topology = replay_out.join("replay.toml");
    std::fs::write(
        &topology,
        format!(
            "[source]\ntype = \"file\"\npath = \"{}\"\n[labels]\ntype = \"none\"\n\
             [decisions]\n[sinks.scores]\ntype = \"scores\"\npath = \"{}\"\n",
            sim.join("transactions.jsonl").display(),
            replay_out.join("scores.jsonl").display()
        ),
    )
    .unwrap();
    let ran = fraudstream(&["run", "-q", topology.to_str().unwrap()], dir.path());
    assert!(ran.status.success(), "{}", text(&ran).1);

    let via_api = std::fs::read_to_string(api_out.join("scores.jsonl")).unwrap();
    let replayed = std::fs::read_to_string(replay_out.join("scores.jsonl")).unwrap();
    assert_eq!(via_api.lines().count(), lines.len());
    assert!(
        via_api == replayed,
        "the API's scores differ from the replay's (first difference at line {:?})",
        via_api
            .lines()
            .zip(replayed.lines())
            .position(|(a, b)| a != b)
    );
}

#[test]
fn the_load_generator_counts_every_request_and_answer() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start("topologies/api.toml", dir.path(), &[]);
    for (batch, rate) in [("1", "300"), ("10", "50")] {
        let out = dir.path().join(format!("load-{batch}.json"));
        let ran = fraudstream(
            &[
                "load",
                "--target",
                &s.addr,
                "--rate",
                rate,
                "--duration",
                "1",
                "--warmup",
                "0.2",
                "--connections",
                "4",
                "--batch",
                batch,
                "--cards",
                "500",
                "--out",
                out.to_str().unwrap(),
            ],
            dir.path(),
        );
        let (stdout, stderr) = text(&ran);
        assert!(ran.status.success(), "{stderr}");
        assert!(stdout.contains("requests/s"), "{stdout}");
        let r: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        let requests = r["requests"].as_u64().unwrap();
        let due = rate.parse::<u64>().unwrap();
        assert!(
            requests >= due - 2 && requests <= due + 2,
            "about {due} requests due in the measured second: {r}"
        );
        assert_eq!(r["ok"], requests, "{r}");
        assert_eq!(r["transport_errors"], 0, "{r}");
        assert!(r["errors_by_status"].as_object().unwrap().is_empty(), "{r}");
        let p50 = r["latency"]["p50_us"].as_f64().unwrap();
        let p99 = r["latency"]["p99_us"].as_f64().unwrap();
        assert!(p50 > 0.0 && p99 >= p50, "{r}");
        assert_eq!(
            r["transactions_per_sec"].as_f64().unwrap(),
            r["requests_per_sec"].as_f64().unwrap() * batch.parse::<f64>().unwrap()
        );
    }
    s.stop();
    let report: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    let scored = report["input"]["transactions"].as_u64().unwrap();
    assert!(
        scored >= 360 + 600,
        "warm-up and measured requests all scored: {scored}"
    );
}

#[test]
fn a_rule_reload_changes_the_next_decision() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[rules.blocked_cards]\ndecision = \"decline\"\ncards = [\"C666\"]\n",
    )
    .unwrap();
    let s = Service::start(
        "topologies/api.toml",
        dir.path(),
        &[
            &format!("decisions.rules=\"{}\"", rules.display()),
            "decisions.reload=\"100ms\"",
        ],
    );
    let (status, v) = s.post("/v1/score", &tx(1, T0, "C666", 10.0));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["decision"], "decline", "{v}");
    assert_eq!(v["reasons"][0], "blocked_cards", "{v}");
    assert_eq!(v["rules_version"], 1, "{v}");

    // Unblock the card, review large amounts.
    std::fs::write(
        &rules,
        "[rules.large]\ndecision = \"review\"\nwhen = [\"amount >= 500\"]\n",
    )
    .unwrap();
    let mut id = 2;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let v = loop {
        id += 1;
        let (_, v) = s.post("/v1/score", &tx(id, T0 + id as i64, "C666", 10.0));
        if v["rules_version"] == 2 || std::time::Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(v["rules_version"], 2, "reloaded within 10 s: {v}");
    assert_eq!(v["decision"], "approve", "{v}");
    let (_, big) = s.post("/v1/score", &tx(1000, T0 + 1000, "C666", 600.0));
    assert_eq!(big["decision"], "review", "{big}");
    assert_eq!(big["reasons"][0], "large", "{big}");

    // An invalid file is refused: version 2 stays in force.
    std::fs::write(&rules, "[rules.large]\ndecision = \"block\"\n").unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let (_, still) = s.post("/v1/score", &tx(1001, T0 + 1001, "C666", 600.0));
    assert_eq!(still["rules_version"], 2, "{still}");
    assert_eq!(still["decision"], "review", "{still}");
    s.stop();
}

#[test]
fn feature_lookups_match_what_the_engine_used() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start("topologies/api.toml", dir.path(), &[]);
    let history = batch_of(1..=20, |i| {
        (
            T0 + i as i64 * 45_000,
            (if i % 3 == 0 { "C2" } else { "C1" }).to_string(),
            10.0 * i as f64,
        )
    });
    assert_eq!(s.post("/v1/score", &history).0, 200);
    let at = T0 + 30 * 60_000;
    let (status, card) = s.ask("GET", &format!("/v1/cards/C1/features?at={at}"), "");
    assert_eq!(status, 200, "{card}");
    let card: Value = serde_json::from_str(&card).unwrap();
    let (status, merchant) = s.ask("GET", &format!("/v1/merchants/M1/features?at={at}"), "");
    assert_eq!(status, 200, "{merchant}");
    let merchant: Value = serde_json::from_str(&merchant).unwrap();
    assert_eq!(card["at"], at);
    assert!(
        card["features"]["card_count_1h"].as_f64().unwrap() > 0.0,
        "{card}"
    );

    // The next transaction of that card at that merchant, at that time.
    let (status, used) = s.post("/v1/score?features=true", &tx(21, at, "C1", 55.0));
    assert_eq!(status, 200, "{used}");
    let used = &used["features"];
    for looked in [&card, &merchant] {
        let features = looked["features"].as_object().unwrap();
        assert!(features.len() >= 9, "{looked}");
        for (name, v) in features {
            assert_eq!(
                &used[name], v,
                "{name}: lookup {v}, scored with {}",
                used[name]
            );
        }
    }

    let (status, body) = s.ask("GET", "/v1/cards/NOPE/features", "");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("never seen"), "{body}");
    let (status, body) = s.ask("GET", "/v1/cards/C1/features?at=soon", "");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("at:"), "{body}");
    s.stop();
}

#[test]
fn a_sigterm_right_after_the_address_line_stops_the_service_cleanly() {
    // Signals are caught from before the address is printed: a supervisor
    // (or a test) that stops the service as soon as it is up gets a clean
    // exit 0 with its report, never a process killed by the signal.
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        Service::start("topologies/api.toml", dir.path(), &[]).stop();
        assert!(dir.path().join("report.json").exists());
    }
}
