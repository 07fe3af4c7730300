//! The health and metrics endpoint under a flood of idle connections: 5,000
//! of them held open on its port do not stop an engine loop on the same
//! runtime from scoring and checkpointing, and `/health` and `/metrics` still
//! answer. The service itself needs a Fluvio cluster, so the engine loop here
//! is the service's, minus Fluvio: a real engine scoring simulated traffic in
//! `block_on`, a checkpoint written every 250 ms, on a runtime built like the
//! service's (two I/O workers).

use fraudstream::config::Topology;
use fraudstream::connectors::sinks::report::InputCounts;
use fraudstream::connectors::sources::SourceItem;
use fraudstream::exec::checkpoint::{self, CheckpointHeader};
use fraudstream::exec::outputs::start_engine;
use fraudstream::exec::pipeline::build_source;
use fraudstream::exec::service::http::{self, now_ms, Health, Limits, Phase};
use fraudstream_engine::event::Event;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Idle connections the test holds open.
const IDLE: usize = 5_000;
/// Longest wait for an answer from the endpoint during the flood.
const ANSWER_DEADLINE: Duration = Duration::from_secs(2);
/// How long the connections are held while the engine is watched.
const HOLD: Duration = Duration::from_secs(3);

/// What the engine loop has done so far.
#[derive(Default)]
struct Progress {
    scored: AtomicU64,
    checkpoints: AtomicU64,
    /// Longest time between two turns of the loop, in µs.
    longest_gap_us: AtomicU64,
}

/// Raise the open-file limit to its hard limit; how many connections this
/// process can then hold from both ends (two descriptors each) with room left
/// for the engine and the other tests.
fn connections_allowed() -> usize {
    #[cfg(target_os = "linux")]
    {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct given.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
                l.rlim_cur = l.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &l);
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
            }
        }
        if l.rlim_cur != libc::RLIM_INFINITY {
            return (l.rlim_cur as usize).saturating_sub(512) / 2;
        }
    }
    IDLE
}

/// One request on a fresh connection; the status line and the body.
fn ask(addr: SocketAddr, path: &str) -> (String, String) {
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(ANSWER_DEADLINE)).unwrap();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer)
        .unwrap_or_else(|e| panic!("GET {path}: no answer within {ANSWER_DEADLINE:?}: {e}"));
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The service's loop without Fluvio: score simulated events in batches
/// (yielding between them, as the service does while it waits for records),
/// checkpoint every 250 ms, until `stop`.
async fn engine_loop(
    health: &Health,
    progress: &Progress,
    stop: &AtomicBool,
    dir: &std::path::Path,
) {
    let t = Topology::embedded(&["source.days=120".into()]).unwrap();
    let mut engine = start_engine(&t).unwrap();
    let mut source = build_source(&t).unwrap();
    let mut header = CheckpointHeader {
        written_ms: 0,
        sequence: 0,
        offsets: Vec::new(),
        totals: InputCounts::default(),
        settings: checkpoint::settings_of(&t),
        lineage: 0,
        outputs: vec![],
    };
    health.set_phase(Phase::Running);
    let began = Instant::now();
    let mut last_turn = Instant::now();
    let mut last_checkpoint = Instant::now();
    while !stop.load(Relaxed) {
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "the test never ended"
        );
        for _ in 0..64 {
            match source.next().expect("the simulated days outlast the test") {
                SourceItem::Event(Event::Transaction(tx)) => {
                    engine.score(tx);
                    progress.scored.fetch_add(1, Relaxed);
                }
                SourceItem::Event(Event::Label(l)) => {
                    engine.label(&l);
                }
                SourceItem::Rejected(_) => {}
            }
        }
        health
            .scored
            .store(progress.scored.load(Relaxed) as i64, Relaxed);
        if last_checkpoint.elapsed() >= Duration::from_millis(250) {
            header.sequence += 1;
            header.written_ms = now_ms();
            let settings = fraudstream::config::CheckpointSettings {
                dir: dir.to_path_buf(),
                ..Default::default()
            };
            tokio::task::block_in_place(|| checkpoint::write(&settings, &header, &engine)).unwrap();
            health.last_checkpoint_ms.store(header.written_ms, Relaxed);
            progress.checkpoints.fetch_add(1, Relaxed);
            last_checkpoint = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        let gap = last_turn.elapsed().as_micros() as u64;
        progress.longest_gap_us.fetch_max(gap, Relaxed);
        last_turn = Instant::now();
    }
}

/// Sets `stop` when dropped, so the engine loop ends even if the client panics.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Relaxed);
    }
}

#[test]
fn five_thousand_idle_connections_do_not_stop_scoring_or_checkpoints() {
    let allowed = connections_allowed();
    let idle = IDLE.min(allowed);
    if idle < IDLE {
        eprintln!("the open-file limit allows {allowed} connections: holding {idle}, not {IDLE}");
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let health = Arc::new(Health::default());
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let limits = Limits {
        max_connections: idle + 64,
        idle_timeout: Duration::from_secs(60),
    };
    let addr = rt
        .block_on(http::serve(
            "127.0.0.1:0",
            health.clone(),
            Some(recorder.handle()),
            limits,
            None,
            None,
        ))
        .unwrap();
    let progress = Arc::new(Progress::default());
    let stop = Arc::new(AtomicBool::new(false));

    let client = {
        let (progress, stop) = (progress.clone(), stop.clone());
        std::thread::spawn(move || {
            let _stop = StopOnDrop(stop);
            while progress.checkpoints.load(Relaxed) == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
            let opening = Instant::now();
            let conns: Vec<TcpStream> = (0..idle)
                .map(|i| TcpStream::connect(addr).unwrap_or_else(|e| panic!("connection {i}: {e}")))
                .collect();
            let opened_in = opening.elapsed();
            let (scored0, checkpoints0) = (
                progress.scored.load(Relaxed),
                progress.checkpoints.load(Relaxed),
            );
            progress.longest_gap_us.store(0, Relaxed);
            let held = Instant::now();
            // The probes queue behind every idle connection (accepts are in
            // order), so their answers also say the idle ones were accepted.
            let asked = Instant::now();
            let (status, body) = ask(addr, "/health");
            let health_in = asked.elapsed();
            assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
            assert!(body.contains("\"status\":\"running\""), "{body}");
            let asked = Instant::now();
            let (status, _) = ask(addr, "/metrics");
            let metrics_in = asked.elapsed();
            assert_eq!(status, "HTTP/1.1 200 OK");
            std::thread::sleep(HOLD.saturating_sub(held.elapsed()));
            let (scored1, checkpoints1) = (
                progress.scored.load(Relaxed),
                progress.checkpoints.load(Relaxed),
            );
            let gap = Duration::from_micros(progress.longest_gap_us.load(Relaxed));
            let still_open = conns
                .iter()
                .filter(|c| {
                    c.set_nonblocking(true).unwrap();
                    matches!((&**c).read(&mut [0u8; 1]), Err(e) if e.kind() == ErrorKind::WouldBlock)
                })
                .count();
            let held_for = held.elapsed();
            eprintln!(
                "held {still_open} of {idle} idle connections (opened in {opened_in:.2?}) for \
                 {held_for:.2?}: /health answered in {health_in:.2?}, /metrics in \
                 {metrics_in:.2?}; meanwhile the engine scored {} transactions and wrote {} \
                 checkpoints, longest loop turn {gap:.2?}",
                scored1 - scored0,
                checkpoints1 - checkpoints0,
            );
            assert_eq!(still_open, idle, "the endpoint closed idle connections");
            assert!(health_in < ANSWER_DEADLINE && metrics_in < ANSWER_DEADLINE);
            assert!(
                scored1 - scored0 >= 1000,
                "scoring stalled: {} in {held_for:?}",
                scored1 - scored0
            );
            assert!(
                checkpoints1 - checkpoints0 >= 3,
                "checkpoints stalled: {} in {held_for:?}",
                checkpoints1 - checkpoints0
            );
            assert!(
                gap < Duration::from_secs(1),
                "the engine loop stood still for {gap:?}"
            );
        })
    };
    rt.block_on(engine_loop(&health, &progress, &stop, dir.path()));
    client.join().expect("the client's checks pass");
    assert!(!checkpoint::list(dir.path()).unwrap().is_empty());
}
