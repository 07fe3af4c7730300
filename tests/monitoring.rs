//! The operators' view: the Grafana dashboard and the Prometheus alert rules
//! in `deploy/` query only metrics fraudstream exports, and a running
//! scoring API serves its metrics with `# HELP`, `# TYPE` and real
//! histograms (no quantile gauges, no rate gauges).
//!
//! The list of exported metrics is `fraudstream::exec::service::prometheus::METRICS`.
//! A metric the dashboard or the rules query must be listed; when the
//! scoring API emits it, it must also be in a real scrape of a running API
//! after transactions, labels and a bad record were posted. The metrics only
//! the Fluvio service emits (consumer lag, checkpoints, offset commits)
//! need a Fluvio cluster, which these tests do not start: for those the
//! checks are that they are listed as the service's and that the code emits
//! every listed name, and only those (`the_code_emits_exactly_the_listed_metrics`).

use crate::api::{batch_of, Service, T0};
use crate::util::repo;
use fraudstream::exec::service::prometheus::{metric, Emitter, Kind, METRICS, SCORE_LATENCY};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// Series Prometheus itself makes (not fraudstream's).
const PROMETHEUS_SERIES: &[&str] = &["up"];

/// Every PromQL expression of the dashboard (panels, rows' panels,
/// template variables), with the title of the panel it is in.
fn dashboard_queries() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(repo().join("deploy/grafana/dashboards/fraudstream.json")).unwrap();
    let d: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(
        d["uid"], "fraudstream",
        "a fixed uid: links survive reloads"
    );
    let mut out = Vec::new();
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().expect("each target has a PromQL expr");
                out.push((title.clone(), expr.to_string()));
            }
            walk(&p["panels"], out);
        }
    }
    walk(&d["panels"], &mut out);
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = v["query"].as_str() {
            out.push((format!("variable {}", v["name"]), q.to_string()));
        }
    }
    out
}

/// Every rule's expression of the alert rules, checked for the structure
/// Prometheus requires (groups of named rules with an expr) and the
/// labels and annotations an operator reads.
fn alert_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("alerts.yml is YAML");
    let groups = doc["groups"].as_sequence().expect("groups: a list");
    assert!(!groups.is_empty());
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for g in groups {
        let group = g["name"].as_str().expect("each group is named");
        for r in g["rules"].as_sequence().expect("rules: a list") {
            let alert = r["alert"].as_str().expect("alerting rules only");
            assert!(names.insert(alert.to_string()), "{alert} twice");
            let expr = r["expr"].as_str().expect("an expr string");
            if let Some(f) = r.get("for") {
                let f = f.as_str().unwrap_or_default();
                assert!(
                    is_duration(f),
                    "{group}/{alert}: `for: {f}` is a Prometheus duration"
                );
            }
            assert!(
                ["critical", "warning", "info"]
                    .contains(&r["labels"]["severity"].as_str().unwrap_or("")),
                "{group}/{alert}: a severity label"
            );
            for a in ["summary", "description"] {
                assert!(
                    r["annotations"][a].as_str().is_some_and(|s| !s.is_empty()),
                    "{group}/{alert}: annotation {a}"
                );
            }
            let known = [
                "alert",
                "expr",
                "for",
                "labels",
                "annotations",
                "keep_firing_for",
            ];
            for k in r.as_mapping().unwrap().keys() {
                let k = k.as_str().unwrap();
                assert!(
                    known.contains(&k),
                    "{group}/{alert}: unknown rule field {k}"
                );
            }
            out.push((alert.to_string(), expr.to_string()));
        }
    }
    out
}

/// A Prometheus duration: digits and a unit, one or more times ("1m", "1h30m").
fn is_duration(s: &str) -> bool {
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ms", "s", "m", "h", "d", "w", "y"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

/// The metric names a PromQL expression selects: every identifier that is
/// not a function (followed by `(`), an aggregation, a keyword, a label
/// (in `{}`, or the list after `by`, `without`, `on`, `ignoring`,
/// `group_left`, `group_right`), a duration (`[]`), a string or a number.
/// Grafana's `$variables` are skipped.
fn selected_metrics(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        // Aggregations, which may come before `by (...)` rather than `(`.
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let b: Vec<char> = expr.chars().collect();
    let mut found = BTreeSet::new();
    let mut i = 0;
    let skip_to = |from: usize, close: char| -> usize {
        let mut j = from;
        let mut quote = None;
        while j < b.len() {
            match (quote, b[j]) {
                (Some(q), c) if c == q && b[j - 1] != '\\' => quote = None,
                (None, '"' | '\'' | '`') => quote = Some(b[j]),
                (None, c) if c == close => return j + 1,
                _ => {}
            }
            j += 1;
        }
        j
    };
    while i < b.len() {
        let c = b[i];
        if c == '{' {
            i = skip_to(i + 1, '}');
        } else if c == '[' {
            i = skip_to(i + 1, ']');
        } else if c == '"' || c == '\'' || c == '`' {
            i = skip_to(i + 1, c);
        } else if c == '$' || c.is_ascii_digit() || c == '.' {
            // A Grafana variable or a number (1e-3, 0.99): skip the token.
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_' || b[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_' || b[i] == ':') {
                i += 1;
            }
            let word: String = b[start..i].iter().collect();
            let mut next = i;
            while next < b.len() && b[next].is_whitespace() {
                next += 1;
            }
            let call = next < b.len() && b[next] == '(';
            if LABEL_LISTS.contains(&word.as_str()) {
                if call {
                    i = skip_to(next + 1, ')');
                }
            } else if !call && !KEYWORDS.contains(&word.as_str()) {
                found.insert(word);
            }
        } else {
            i += 1;
        }
    }
    found
}

/// The listed metric a selected series belongs to: itself, or the
/// histogram whose `_bucket`, `_sum` or `_count` it is.
fn family_of(series: &str) -> Option<&'static fraudstream::exec::service::prometheus::Metric> {
    metric(series).or_else(|| {
        ["_bucket", "_sum", "_count"].iter().find_map(|s| {
            series
                .strip_suffix(s)
                .and_then(metric)
                .filter(|m| m.kind == Kind::Histogram)
        })
    })
}

#[test]
fn promql_names_are_found_and_labels_functions_and_durations_are_not() {
    let e = r#"histogram_quantile(0.99, sum by (instance, le) (rate(fraudstream_score_latency_seconds_bucket{job="x", le!="+Inf"}[$__rate_interval])))
        / on(instance) group_left(topic) sum(fraudstream_consumer_lag offset 5m) without (partition) > 1e-3 and up == 0
        or max by (instance) (fraudstream_cards)"#;
    let want: BTreeSet<String> = [
        "fraudstream_score_latency_seconds_bucket",
        "fraudstream_consumer_lag",
        "up",
        "fraudstream_cards",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(selected_metrics(e), want);
    assert_eq!(
        family_of("fraudstream_score_latency_seconds_bucket").map(|m| m.name),
        Some(SCORE_LATENCY)
    );
    assert!(
        family_of("fraudstream_cards_bucket").is_none(),
        "a gauge has no buckets"
    );
    assert!(is_duration("1h30m") && is_duration("5m") && !is_duration("5") && !is_duration("m"));
}

/// The Prometheus text of a running scoring API after transactions (with
/// decisions), labels (joined and unknown) and a bad record were posted,
/// once the engine thread has published them (it does every tick).
fn scrape_after_traffic() -> String {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start("topologies/api.toml", dir.path(), &[]);
    let batch = batch_of(1..=40, |i| {
        (
            T0 + i as i64 * 60_000,
            format!("C{}", i % 4),
            15.0 * i as f64,
        )
    });
    let (status, v) = s.post("/v1/score", &batch);
    assert_eq!(status, 200, "{v}");
    let labels = format!(
        r#"[{{"tx_id":3,"ts":{t},"is_fraud":true}},{{"tx_id":4,"ts":{t},"is_fraud":false}},{{"tx_id":999,"ts":{t},"is_fraud":false}}]"#,
        t = T0 + 86_400_000
    );
    let (status, v) = s.post("/v1/labels", &labels);
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["joined"].as_u64(), v["unknown"].as_u64()),
        (Some(2), Some(1)),
        "{v}"
    );
    // An amount that is not a number: refused, counted, dead-lettered.
    let (status, v) = s.post(
        "/v1/score",
        r#"{"tx_id":41,"ts":1767225600000,"card_id":"C1","merchant_id":"M1","amount":"lots"}"#,
    );
    assert_eq!(status, 422, "{v}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let (status, text) = s.ask("GET", "/metrics", "");
        assert_eq!(status, 200, "{text}");
        let done = value_of(&text, "fraudstream_transactions_scored_total") == Some(40.0)
            && value_of(&text, &format!("{SCORE_LATENCY}_count")) == Some(40.0)
            && text.contains("fraudstream_dead_letters_total{");
        if done {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the engine's metrics were not published within 20 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    s.stop();
    text
}

/// The value of the sample line `series` (exactly, labels included).
fn value_of(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Series names of the sample lines (comments skipped, labels stripped).
fn sampled(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

#[test]
fn every_metric_the_dashboard_and_the_alerts_query_is_exported() {
    let mut queried: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let queries: Vec<(String, String)> = dashboard_queries()
        .into_iter()
        .map(|(p, e)| (format!("dashboard panel {p:?}"), e))
        .chain(
            alert_queries()
                .into_iter()
                .map(|(a, e)| (format!("alert {a}"), e)),
        )
        .collect();
    assert!(queries.len() >= 20, "{} queries", queries.len());
    for (whose, expr) in &queries {
        let names = selected_metrics(expr);
        assert!(!names.is_empty(), "{whose}: no metric in {expr}");
        for n in names {
            queried.entry(n).or_default().push(whose.clone());
        }
    }
    let scrape = scrape_after_traffic();
    let served = sampled(&scrape);
    let mut service_only = Vec::new();
    for (series, whose) in &queried {
        if PROMETHEUS_SERIES.contains(&series.as_str()) {
            continue;
        }
        let m = family_of(series)
            .unwrap_or_else(|| panic!("{series} (queried by {whose:?}) is not an exported metric"));
        match m.emitter {
            Emitter::Service => service_only.push(m.name),
            Emitter::Both | Emitter::Api => assert!(
                served.contains(series),
                "{series} (queried by {whose:?}) is not in the scoring API's scrape:\n{scrape}"
            ),
        }
    }
    // What only the Fluvio service can show; the code emits each
    // (the_code_emits_exactly_the_listed_metrics).
    service_only.dedup();
    assert!(
        service_only.contains(&"fraudstream_consumer_lag"),
        "{service_only:?}"
    );
    // The operators' essentials are on the dashboard.
    for needed in [
        "fraudstream_transactions_scored_total",
        "fraudstream_score_latency_seconds_bucket",
        "fraudstream_consumer_lag",
        "fraudstream_alerts_total",
        "fraudstream_decisions_total",
        "fraudstream_dead_letters_total",
        "fraudstream_labels_joined_total",
        "fraudstream_labels_unknown_total",
        "fraudstream_model_version",
        "fraudstream_checkpoint_age_seconds",
        "fraudstream_cards",
        "fraudstream_merchants",
        "fraudstream_pending_entries",
    ] {
        assert!(
            queried
                .get(needed)
                .is_some_and(|w| w.iter().any(|w| w.starts_with("dashboard"))),
            "the dashboard shows {needed}"
        );
    }
}

#[test]
fn the_api_serves_help_and_type_for_every_metric_and_real_histograms() {
    let text = scrape_after_traffic();
    let mut help = BTreeSet::new();
    let mut types = BTreeMap::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# HELP ") {
            let (name, h) = rest.split_once(' ').expect("# HELP name text");
            assert!(!h.trim().is_empty(), "{l}");
            help.insert(name.to_string());
        } else if let Some(rest) = l.strip_prefix("# TYPE ") {
            let (name, t) = rest.split_once(' ').unwrap();
            types.insert(name.to_string(), t.to_string());
        }
        assert!(!l.contains("quantile="), "a quantile series: {l}");
    }
    for series in sampled(&text) {
        if !series.starts_with("fraudstream_") {
            continue;
        }
        assert!(!series.ends_with("_per_second"), "a rate gauge: {series}");
        let m = family_of(&series).unwrap_or_else(|| panic!("{series} is not listed"));
        assert!(help.contains(m.name), "no # HELP for {}", m.name);
        let want = match m.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        assert_eq!(
            types.get(m.name).map(String::as_str),
            Some(want),
            "# TYPE of {}",
            m.name
        );
    }
    // Score latency: cumulative buckets ending in +Inf = _count = the 40
    // transactions scored, and a sum of their times.
    let buckets: Vec<(String, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{SCORE_LATENCY}_bucket{{le=\"")))
        .map(|r| {
            let (le, v) = r.split_once("\"} ").unwrap();
            (le.to_string(), v.parse().unwrap())
        })
        .collect();
    assert!(buckets.len() >= 10, "{text}");
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "cumulative: {buckets:?}"
    );
    assert_eq!(buckets.last().unwrap(), &("+Inf".to_string(), 40.0));
    assert_eq!(
        value_of(&text, &format!("{SCORE_LATENCY}_count")),
        Some(40.0)
    );
    let sum = value_of(&text, &format!("{SCORE_LATENCY}_sum")).unwrap();
    assert!(sum > 0.0 && sum < 40.0, "40 scores took {sum} s");
    // The decisions of the topology's bands, every one named.
    let decided: f64 = ["approve", "review", "decline"]
        .iter()
        .map(|d| {
            value_of(
                &text,
                &format!("fraudstream_decisions_total{{decision=\"{d}\"}}"),
            )
            .unwrap_or_else(|| panic!("decision {d} in:\n{text}"))
        })
        .sum();
    assert_eq!(decided, 40.0);
    // Events the API saw, counted where they happened.
    assert_eq!(
        value_of(&text, "fraudstream_labels_joined_total"),
        Some(2.0)
    );
    assert_eq!(
        value_of(&text, "fraudstream_labels_unknown_total"),
        Some(1.0)
    );
    assert!(text.contains("fraudstream_api_rejected_total{"), "{text}");
    // The batch champion keeps every fraud label's vector and a share of
    // the genuine ones': the fraud, and perhaps the genuine label.
    let rows = value_of(&text, "fraudstream_batch_rows").expect("the batch rows gauge");
    assert!((1.0..=2.0).contains(&rows), "batch rows {rows}");
}

/// Rust files under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn the_code_emits_exactly_the_listed_metrics() {
    let list_file = repo().join("src/exec/service/prometheus.rs");
    let mut files = Vec::new();
    rust_files(&repo().join("src"), &mut files);
    rust_files(&repo().join("crates"), &mut files);
    // name -> the macros that emit it (counter, gauge, histogram).
    let mut emitted: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for f in files.iter().filter(|f| **f != list_file) {
        let text = std::fs::read_to_string(f).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("\"fraudstream_") {
            let before = &rest[..at];
            let after = &rest[at + 1..];
            let end = after.find('"').unwrap();
            let name = &after[..end];
            rest = &after[end..];
            if !name
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
            {
                continue;
            }
            // The macro this name is the first argument of.
            let tail = before.trim_end();
            let kind = ["counter!(", "gauge!(", "histogram!("]
                .into_iter()
                .find(|m| tail.ends_with(m))
                .unwrap_or_else(|| {
                    panic!(
                        "{}: {name} is not the first argument of a metrics macro",
                        f.display()
                    )
                });
            emitted.entry(name.to_string()).or_default().insert(kind);
        }
    }
    for (name, kinds) in &emitted {
        let m = metric(name).unwrap_or_else(|| {
            panic!("{name} is emitted but not listed in src/exec/service/prometheus.rs")
        });
        let want = match m.kind {
            Kind::Counter => "counter!(",
            Kind::Gauge => "gauge!(",
            Kind::Histogram => "histogram!(",
        };
        assert_eq!(kinds.iter().copied().collect::<Vec<_>>(), [want], "{name}");
    }
    for m in METRICS {
        // The score-latency histogram is rendered by the list's own module.
        if m.name != SCORE_LATENCY {
            assert!(
                emitted.contains_key(m.name),
                "{} is listed but never emitted",
                m.name
            );
        }
    }
}

#[test]
fn the_jobs_queried_are_the_scrape_jobs_of_the_prometheus_config() {
    let text = std::fs::read_to_string(repo().join("deploy/prometheus/prometheus.yml")).unwrap();
    let cfg: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let jobs: BTreeSet<&str> = cfg["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|j| j["job_name"].as_str().unwrap())
        .collect();
    let mut seen = 0;
    for (whose, expr) in dashboard_queries().into_iter().chain(alert_queries()) {
        for part in expr.split("job=\"").skip(1) {
            let job = part.split('"').next().unwrap();
            assert!(
                jobs.contains(job),
                "{whose}: job {job:?} is not scraped ({jobs:?})"
            );
            seen += 1;
        }
    }
    assert!(
        seen >= 2,
        "the dashboard and the rules watch `up` of the scrape job"
    );
}

/// `promtool` (Prometheus's own checker) on the rules and the config, when
/// it is installed (Debian's `prometheus` package has it); skipped, saying
/// so, otherwise. The config's rule file path is the container's, so both
/// are checked from a copy that names the repository's file.
#[test]
fn promtool_accepts_the_rules_and_the_config_when_installed() {
    let Ok(version) = std::process::Command::new("promtool")
        .arg("--version")
        .output()
    else {
        eprintln!(
            "promtool is not installed: the rules and config are checked by the YAML tests only"
        );
        return;
    };
    assert!(version.status.success());
    let deploy = repo().join("deploy/prometheus");
    let rules = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(deploy.join("alerts.yml"))
        .output()
        .unwrap();
    assert!(
        rules.status.success(),
        "{}",
        String::from_utf8_lossy(&rules.stdout)
    );
    let dir = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(deploy.join("prometheus.yml"))
        .unwrap()
        .replace(
            "/etc/prometheus/alerts.yml",
            &deploy.join("alerts.yml").display().to_string(),
        );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let checked = std::process::Command::new("promtool")
        .args(["check", "config"])
        .arg(dir.path().join("prometheus.yml"))
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}
