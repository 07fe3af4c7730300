//! The live dashboard, end to end: the scoring API started on a loopback
//! port (`topologies/api.toml`), traffic from `fraudstream load` or posted
//! batches, the page read over plain HTTP and rendered in headless Chromium
//! ([`crate::browser`]).

use crate::api::{tx, Service, T0};
use crate::browser::Page;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `fraudstream load` against `addr` for `seconds`, in the background.
fn load(addr: &str, seconds: u32) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fraudstream"))
        .args(["load", "--target", addr, "--rate", "100", "--batch", "10"])
        .args(["--connections", "4", "--cards", "300", "--warmup", "0"])
        .args(["--duration", &seconds.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("fraudstream load runs")
}

/// A batch of `n` transactions from id `from` on (amounts vary, a few
/// large), as one request body.
fn batch(from: u64, n: u64) -> String {
    let items: Vec<String> = (from..from + n)
        .map(|i| {
            let amount = if i % 7 == 0 {
                4_000.0
            } else {
                12.0 + (i % 50) as f64
            };
            tx(
                i,
                T0 + i as i64 * 1_000,
                &format!("4111000011{:06}", i % 40),
                amount,
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// Whether transaction `i` of [`labelled_round`] is a fraud (one in five).
fn is_fraud(i: u64) -> bool {
    i % 5 == 0
}

/// Round `round` of labelled traffic: 100 transactions, a fifth of them
/// frauds that look it (large amounts at a few merchants, online, abroad),
/// and their labels, as two request bodies. The load generator sends no
/// labels, and a model that learnt nothing scores every transaction alike
/// and never alerts; these teach it within a few rounds.
fn labelled_round(round: u64) -> (String, String) {
    let ids = 10_000_000 + round * 100..10_000_000 + (round + 1) * 100;
    let mut txs = Vec::new();
    let mut labels = Vec::new();
    for i in ids {
        let ts = T0 + (i as i64 - 10_000_000) * 200;
        let fraud = is_fraud(i);
        let (merchant, amount, mcc, country, channel) = if fraud {
            (
                format!("MX{}", i % 3),
                4_000.0 + (i % 1_000) as f64,
                "7995",
                "NG",
                "ecom",
            )
        } else {
            (
                format!("M{}", i % 30),
                10.0 + (i % 90) as f64,
                "5411",
                "FR",
                "pos",
            )
        };
        txs.push(format!(
            r#"{{"tx_id":{i},"ts":{ts},"card_id":"4111000011{:06}","merchant_id":"{merchant}","amount":{amount},"mcc":"{mcc}","country":"{country}","channel":"{channel}"}}"#,
            i % 500
        ));
        labels.push(format!(
            r#"{{"tx_id":{i},"ts":{},"is_fraud":{fraud}}}"#,
            ts + 1_000
        ));
    }
    (
        format!("[{}]", txs.join(",")),
        format!("[{}]", labels.join(",")),
    )
}

/// Post `rounds` rounds of labelled traffic, `pause` apart.
fn teach(s: &Service, rounds: u64, pause: Duration) {
    for round in 0..rounds {
        let (txs, labels) = labelled_round(round);
        let (status, answer) = s.post("/v1/score", &txs);
        assert_eq!(status, 200, "{answer}");
        let (status, answer) = s.post("/v1/labels", &labels);
        assert_eq!(status, 200, "{answer}");
        std::thread::sleep(pause);
    }
}

/// The body of `GET path` (status 200 asserted).
fn get(addr: &str, path: &str) -> (String, String) {
    let mut conn = TcpStream::connect(addr).expect("connects");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a full answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    (head.to_lowercase(), body.to_string())
}

/// The next `n` server-sent events of `/events` on `addr`, parsed; `between`
/// runs after the first.
fn events(addr: &str, n: usize, mut between: impl FnMut()) -> Vec<Value> {
    let mut conn = TcpStream::connect(addr).expect("connects");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(conn, "GET /events HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut parsed = Vec::new();
    let mut ran_between = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while parsed.len() < n {
        assert!(Instant::now() < deadline, "{n} events within 20 s");
        let k = conn.read(&mut buf).expect("the stream goes on");
        assert!(k > 0, "the stream ended");
        got.extend_from_slice(&buf[..k]);
        // Chunked: an event is a `data: {...}` line ending in a blank line.
        let text = String::from_utf8_lossy(&got).into_owned();
        parsed = text
            .split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .collect();
        if !ran_between && !parsed.is_empty() {
            ran_between = true;
            between();
        }
    }
    assert!(
        String::from_utf8_lossy(&got)
            .to_lowercase()
            .contains("content-type: text/event-stream"),
        "server-sent events"
    );
    parsed.truncate(n);
    parsed
}

#[test]
fn events_stream_one_snapshot_per_tick_with_counters_that_only_grow() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start("topologies/api.toml", dir.path(), &[]);
    let mut next = 1;
    let mut post = || {
        let (status, _) = s.post("/v1/score", &batch(next, 50));
        assert_eq!(status, 200);
        next += 50;
    };
    post();
    let snaps = events(&s.addr, 3, &mut post);
    let ticks: Vec<u64> = snaps.iter().map(|v| v["tick"].as_u64().unwrap()).collect();
    assert!(ticks.windows(2).all(|w| w[0] < w[1]), "{ticks:?}");
    for key in ["transactions", "labels", "alerts", "dead_letters"] {
        let seen: Vec<u64> = snaps
            .iter()
            .map(|v| v["totals"][key].as_u64().unwrap())
            .collect();
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{key}: {seen:?}");
    }
    let last = snaps.last().unwrap();
    assert_eq!(last["service"], "api");
    assert!(
        last["totals"]["transactions"].as_u64().unwrap() >= 50,
        "{last}"
    );
    let mix = &last["decisions"];
    let decided: u64 = ["approve", "review", "decline"]
        .iter()
        .map(|d| mix[d].as_u64().unwrap())
        .sum();
    assert_eq!(
        decided,
        last["totals"]["transactions"].as_u64().unwrap(),
        "{mix}"
    );
    assert_eq!(last["lag"], serde_json::json!([]), "no topics, no lag");
    // The snapshot JSON holds no whole card id.
    assert!(!last.to_string().contains("4111000011"), "{last}");
    let (head, body) = get(&s.addr, "/api/dashboard");
    assert!(head.contains("application/json"), "{head}");
    let now: Value = serde_json::from_str(&body).unwrap();
    assert!(now["tick"].as_u64().unwrap() >= ticks[2]);
    s.stop();
}

#[test]
fn the_page_loads_nothing_from_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start("topologies/api.toml", dir.path(), &[]);
    let (head, page) = get(&s.addr, "/");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    for scheme in ["http://", "https://", "ws://", "wss://"] {
        assert!(!page.contains(scheme), "the page names {scheme}...");
    }
    // Every src, href and url(...) is relative to the server, or inline.
    for attr in ["src=\"", "href=\"", "url("] {
        for (i, _) in page.match_indices(attr) {
            let value = &page[i + attr.len()..];
            assert!(
                !value.starts_with("//") && (!value.contains(':') || value.starts_with("data:")),
                "{attr}{}",
                &value[..value.len().min(40)]
            );
        }
    }
    s.stop();
}

#[test]
fn the_dashboard_renders_a_running_stream_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start("topologies/api.toml", dir.path(), &[]);
    let Some(page) = Page::open(&format!("http://{}/", s.addr)) else {
        s.stop();
        return;
    };
    std::thread::scope(|scope| {
        let mut traffic = load(&s.addr, 8);
        scope.spawn(|| teach(&s, 30, Duration::from_millis(200)));
        watch_the_page(&page);
        assert!(
            traffic.wait().unwrap().success(),
            "fraudstream load succeeds"
        );
    });
    drop(page);
    s.stop();
}

/// What the dashboard of a running stream shows: counters that advance,
/// charts with points, decisions, alerts with their explanations; no
/// console error. Writes the screenshot.
fn watch_the_page(page: &Page) {
    let chart = |name: &str| {
        format!(
            "(() => {{ const c = document.querySelector('svg[data-chart=\"{name}\"]'); \
             return c ? [Number(c.dataset.points), c.querySelectorAll('circle, rect[data-decision]').length] : [0, 0]; }})()"
        )
    };
    let counter =
        "Number(document.querySelector('[data-counter=\"transactions\"]').dataset.value || 0)";
    assert!(
        page.wait_until(&format!("{counter} > 0"), Duration::from_secs(20)),
        "transactions counted on the page: {:?}",
        page.console_errors()
    );
    let first = page.eval(counter).as_f64().unwrap();
    assert!(
        page.wait_until(&format!("{counter} > {first}"), Duration::from_secs(10)),
        "the counter advances while the stream runs"
    );
    // Two ticks of traffic give every time chart two points.
    for name in ["throughput", "latency", "alert_rate"] {
        assert!(
            page.wait_until(&format!("{}[0] >= 2", chart(name)), Duration::from_secs(15)),
            "{name}: {}",
            page.eval(&chart(name))
        );
        let [points, marks] = [0, 1].map(|i| page.eval(&chart(name))[i].as_u64().unwrap());
        assert!(
            points >= 2 && marks >= 2,
            "{name}: {points} points, {marks} marks"
        );
        let axis = page.eval(&format!(
            "Array.from(document.querySelectorAll('svg[data-chart=\"{name}\"] text')).map(t => t.textContent)"
        ));
        assert!(
            axis.as_array()
                .unwrap()
                .iter()
                .any(|t| t.as_str().unwrap().contains(':')),
            "{name}: a time axis in {axis}"
        );
    }
    // The decision mix: three bars, and counts that add up to something.
    assert_eq!(page.eval(&chart("decisions")), serde_json::json!([3, 3]));
    let decided = page.eval(
        "Array.from(document.querySelectorAll('rect[data-decision]')).reduce((a, r) => a + Number(r.dataset.value), 0)",
    );
    assert!(decided.as_f64().unwrap() > 0.0, "{decided}");
    // Latest alerts, each with its explanation and a masked card.
    assert!(
        page.wait_until(
            "document.querySelectorAll('[data-table=\"alerts\"] tbody tr').length > 0",
            Duration::from_secs(15)
        ),
        "alerts listed"
    );
    let rows = page.eval(
        "Array.from(document.querySelectorAll('[data-table=\"alerts\"] tbody tr')).map(r => \
         [Number(r.querySelector('[data-explanation]').dataset.explanation), r.children[2].textContent])",
    );
    for row in rows.as_array().unwrap() {
        assert!(row[0].as_u64().unwrap() > 0, "an explanation: {row}");
        assert!(
            row[1].as_str().unwrap().starts_with("****"),
            "masked: {row}"
        );
    }
    assert_eq!(
        page.eval("document.getElementById('status').dataset.state"),
        "live"
    );
    let shot = page.screenshot("screenshots/dashboard.png");
    eprintln!("dashboard screenshot: {}", shot.display());
    let errors = page.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}
