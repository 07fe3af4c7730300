//! The service's HTTP endpoint: `GET /health` (or `/healthz`; JSON, 200
//! while the service runs, 503 while it starts or stops), `GET /metrics`
//! (Prometheus text format; 503 without a recorder) and, given a feed, the
//! live dashboard (`GET /`, `/events`, `/api/dashboard`:
//! [`crate::exec::dashboard::routes`]). Any other path is 404 with the paths
//! that exist; another method on these paths is 405 with `Allow`.
//!
//! axum routes the requests (the stack the scoring API will use) on hyper's
//! HTTP/1 connections, each a task on the service's I/O runtime, so the
//! engine loop never waits for a client. Our own accept loop rather than
//! `axum::serve`, which has no connection cap or timeouts:
//!
//! - a connection holds one of [`Limits::max_connections`] slots; beyond
//!   them, clients wait in the kernel's accept queue (no file descriptor is
//!   taken) until a connection closes;
//! - a connection that sends no complete request head within
//!   [`Limits::idle_timeout`] (after connecting or between keep-alive
//!   requests) is closed by hyper's header timeout, and so is one whose
//!   client takes none of a response for that long (a write timeout);
//! - a failed accept (out of file descriptors, say) is retried after a pause
//!   that doubles up to a second, not at once in a loop.

use crate::config::ServiceSettings;
use crate::exec::dashboard::{self, DashboardFeed};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;

/// First pause after a failed accept; it doubles while accepts keep failing.
const ACCEPT_PAUSE: Duration = Duration::from_millis(10);
/// Longest pause between accept attempts.
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);
/// Most bytes buffered for one request head (probes and scrapers send well
/// under 1 KiB; hyper's default, ~400 KiB, times the connection cap is a lot
/// of memory to hand to clients).
const MAX_REQUEST_BUFFER: usize = 16 * 1024;

/// Service phase, for `/health`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Restoring, connecting.
    Starting = 0,
    /// Consuming and scoring.
    Running = 1,
    /// Draining, flushing, checkpointing.
    Stopping = 2,
}

/// What `/health` reports; updated by the service loop.
#[derive(Debug, Default)]
pub struct Health {
    phase: AtomicU8,
    /// Wall-clock ms of the last checkpoint (0: none).
    pub last_checkpoint_ms: AtomicI64,
    /// Transactions scored.
    pub scored: AtomicI64,
}

impl Health {
    /// Set the phase.
    pub fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Relaxed);
    }

    fn body(&self) -> (StatusCode, String) {
        let phase = match self.phase.load(Relaxed) {
            1 => "running",
            2 => "stopping",
            _ => "starting",
        };
        let last = self.last_checkpoint_ms.load(Relaxed);
        let age = if last > 0 {
            format!("{:.3}", (now_ms() - last) as f64 / 1000.0)
        } else {
            "null".into()
        };
        let code = if phase == "running" {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (
            code,
            format!(
                "{{\"status\":\"{phase}\",\"transactions_scored\":{},\"checkpoint_age_seconds\":{age}}}\n",
                self.scored.load(Relaxed)
            ),
        )
    }
}

/// Wall-clock time in ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Limits on the endpoint's connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most connections held at once.
    pub max_connections: usize,
    /// Longest wait for a request head, and for a client to take any of a
    /// response.
    pub idle_timeout: Duration,
}

impl Limits {
    /// The limits `[service]` sets, the connection cap lowered to half the
    /// process's open-file limit: clients of the endpoint can never take the
    /// file descriptors that checkpoints and the Fluvio connections need.
    pub fn of(s: &ServiceSettings) -> Limits {
        Limits {
            max_connections: s.http_max_connections.min(file_descriptor_budget()),
            idle_timeout: Duration::from_millis(s.http_idle_timeout_ms.max(1) as u64),
        }
    }
}

/// Half the soft limit on open files (no bound where it is unknown).
fn file_descriptor_budget() -> usize {
    #[cfg(target_os = "linux")]
    {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes into the struct it is given.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } == 0;
        if ok && l.rlim_cur != libc::RLIM_INFINITY {
            return usize::try_from(l.rlim_cur / 2).unwrap_or(usize::MAX).max(1);
        }
    }
    usize::MAX
}

/// Bind `addr` and serve until the runtime stops. Binding errors are returned
/// (a port in use is a configuration problem the user must see).
/// `api`: the scoring API's routes, served beside these; `dashboard`: the
/// feed of the live dashboard, served at `/`.
pub async fn serve(
    addr: &str,
    health: Arc<Health>,
    metrics: Option<PrometheusHandle>,
    limits: Limits,
    api: Option<Router>,
    dashboard: Option<DashboardFeed>,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("service.listen = {addr}: cannot bind: {e}"))?;
    let bound = listener.local_addr()?;
    let paths = paths(api.is_some(), dashboard.is_some());
    let mut app = routes(health, metrics, paths);
    if let Some(api) = api {
        app = app.merge(api);
    }
    if let Some(feed) = dashboard {
        app = app.merge(dashboard::routes::routes(feed));
    }
    tokio::spawn(accept_loop(listener, app, limits));
    Ok(bound)
}

/// The paths a 404 names.
const PATHS: &str = "GET /health, GET /healthz and GET /metrics";
/// The scoring API's paths.
const API_PATHS: &str = "POST /v1/score, POST /v1/labels, GET /v1/cards/{id}/features, \
     GET /v1/merchants/{id}/features";

/// The paths a 404 names, with the scoring API's and the dashboard's when
/// they are served.
fn paths(api: bool, dashboard: bool) -> String {
    let mut p = String::new();
    if dashboard {
        p += dashboard::routes::PATHS;
        p += ", ";
    }
    if api {
        p += API_PATHS;
        p += ", ";
    }
    p + PATHS
}

/// What the handlers read.
#[derive(Clone)]
struct Endpoint {
    health: Arc<Health>,
    metrics: Option<PrometheusHandle>,
}

/// The paths and their handlers; `get` also answers `HEAD`, and axum
/// answers another method with 405 and `Allow`.
fn routes(health: Arc<Health>, metrics: Option<PrometheusHandle>, paths: String) -> Router {
    let paths: Arc<str> = paths.into();
    Router::new()
        .route("/health", get(health_status))
        .route("/healthz", get(health_status))
        .route("/metrics", get(metrics_text))
        .fallback(move || not_found(paths.clone()))
        .with_state(Endpoint { health, metrics })
}

async fn health_status(State(e): State<Endpoint>) -> Response {
    let (code, body) = e.health.body();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn metrics_text(State(e): State<Endpoint>) -> Response {
    match &e.metrics {
        Some(m) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            super::prometheus::render(m),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder not installed\n",
        )
            .into_response(),
    }
}

async fn not_found(paths: Arc<str>) -> (StatusCode, String) {
    (
        StatusCode::NOT_FOUND,
        format!("no such path: this endpoint serves {paths}\n"),
    )
}

/// Accept connections while a slot is free and serve each in its own task.
async fn accept_loop(listener: TcpListener, app: Router, limits: Limits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .max_buf_size(MAX_REQUEST_BUFFER);
    let mut pause = ACCEPT_PAUSE;
    loop {
        // A slot first, then the connection: beyond the cap, clients wait in
        // the kernel's accept queue rather than in our file descriptors.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return; // never closed
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                pause = ACCEPT_PAUSE;
                stream
            }
            Err(e) if is_one_connection(&e) => continue,
            Err(e) => {
                metrics::counter!("fraudstream_http_accept_errors_total").increment(1);
                if pause == ACCEPT_PAUSE {
                    eprintln!("fraudstream: health and metrics endpoint: accept failed ({e}); retrying with a pause");
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(ACCEPT_PAUSE_MAX);
                continue;
            }
        };
        // Answers are small and awaited: send each at once.
        let _ = stream.set_nodelay(true);
        let mut io = TimeoutStream::new(stream);
        io.set_write_timeout(Some(limits.idle_timeout));
        let conn = http.serve_connection(
            TokioIo::new(Box::pin(io)),
            TowerToHyperService::new(app.clone()),
        );
        tokio::spawn(async move {
            let open = metrics::gauge!("fraudstream_http_connections");
            open.increment(1.0);
            // An error here is the client's (a timeout, a reset, a malformed
            // request): the connection ends either way.
            let _ = conn.await;
            open.decrement(1.0);
            drop(slot);
        });
    }
}

/// An accept error about one connection (the client gave up before it was
/// accepted), not about the listener or the process.
fn is_one_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpSocket, TcpStream};

    /// An endpoint on a free port, with `extra` routes beside the real ones.
    async fn start(health: Arc<Health>, limits: Limits, extra: Router) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(accept_loop(
            listener,
            routes(health, None, PATHS.into()).merge(extra),
            limits,
        ));
        addr
    }

    fn limits(max_connections: usize, idle_ms: u64) -> Limits {
        Limits {
            max_connections,
            idle_timeout: Duration::from_millis(idle_ms),
        }
    }

    /// Send `request` (`"METHOD /path"`) on `conn`, closing after the
    /// answer; returns the status, the head and the body.
    async fn ask(mut conn: TcpStream, request: &str) -> (u16, String, String) {
        let text = format!("{request} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        conn.write_all(text.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        let answer = String::from_utf8(answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
        let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (code, head.to_lowercase(), body.to_string())
    }

    async fn request(addr: SocketAddr, request: &str) -> (u16, String, String) {
        ask(TcpStream::connect(addr).await.unwrap(), request).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_and_metrics_answer_as_before() {
        let health = Arc::new(Health::default());
        let addr = start(health.clone(), limits(8, 5000), Router::new()).await;
        let (code, head, body) = request(addr, "GET /health").await;
        assert_eq!(code, 503, "starting");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(body.starts_with("{\"status\":\"starting\""), "{body}");
        health.set_phase(Phase::Running);
        health.scored.store(42, Relaxed);
        for path in ["/health", "/healthz"] {
            let (code, _, body) = request(addr, &format!("GET {path}")).await;
            assert_eq!(code, 200);
            assert_eq!(
                body,
                "{\"status\":\"running\",\"transactions_scored\":42,\"checkpoint_age_seconds\":null}\n"
            );
        }
        let (code, _, body) = request(addr, "HEAD /health").await;
        assert_eq!(
            (code, body.as_str()),
            (200, ""),
            "HEAD is GET without a body"
        );
        let (code, _, body) = request(addr, "GET /metrics").await;
        assert_eq!(code, 503, "no recorder");
        assert_eq!(body, "metrics recorder not installed\n");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metrics_are_prometheus_text() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("example_requests_total").increment(3)
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = routes(
            Arc::new(Health::default()),
            Some(recorder.handle()),
            PATHS.into(),
        );
        tokio::spawn(accept_loop(listener, app, limits(8, 5000)));
        let (code, head, body) = request(addr, "GET /metrics").await;
        assert_eq!(code, 200);
        assert!(
            head.contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(body.contains("example_requests_total 3"), "{body}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_method_is_405_with_allow() {
        let addr = start(Arc::default(), limits(8, 5000), Router::new()).await;
        for req in ["POST /metrics", "DELETE /health", "PUT /healthz"] {
            let (code, head, _) = request(addr, req).await;
            assert_eq!(code, 405, "{req}");
            let allow = head
                .lines()
                .find_map(|l| l.strip_prefix("allow: "))
                .unwrap_or_else(|| panic!("{req}: no Allow header in {head}"));
            assert!(allow.contains("GET") || allow.contains("get"), "{allow}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unknown_path_is_404_naming_the_paths() {
        let addr = start(Arc::default(), limits(8, 5000), Router::new()).await;
        for req in ["GET /", "GET /metricz", "POST /nowhere"] {
            let (code, _, body) = request(addr, req).await;
            assert_eq!(code, 404, "{req}");
            assert!(
                body.contains("/health") && body.contains("/metrics"),
                "{body}"
            );
        }
    }

    /// Read from `conn` into `got` until `text` is in it `times` times
    /// (panics after 10 s).
    async fn read_until(conn: &mut TcpStream, got: &mut Vec<u8>, text: &str, times: usize) {
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(10);
        while String::from_utf8_lossy(got).matches(text).count() < times {
            let left = deadline.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, conn.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("{times} × {text:?} within 10 s"))
                .unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(got));
            got.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_dashboard_is_served_beside_health_and_metrics() {
        use crate::exec::dashboard::Snapshot;
        let (feed, rx) = tokio::sync::watch::channel(Arc::new(Snapshot {
            tick: 1,
            ..Snapshot::default()
        }));
        let addr = serve(
            "127.0.0.1:0",
            Arc::default(),
            None,
            limits(8, 5000),
            None,
            Some(rx),
        )
        .await
        .unwrap();
        let (code, head, body) = request(addr, "GET /").await;
        assert_eq!(code, 200);
        assert!(head.contains("content-type: text/html"), "{head}");
        assert!(
            head.contains("content-security-policy: default-src 'none'"),
            "{head}"
        );
        assert!(body.contains("data-counter=\"transactions\""));
        let (code, head, body) = request(addr, "GET /api/dashboard").await;
        assert_eq!(code, 200);
        assert!(head.contains("content-type: application/json"), "{head}");
        let snap: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(snap["tick"], 1);
        let (code, _, body) = request(addr, "GET /nowhere").await;
        assert_eq!(code, 404);
        assert!(
            body.contains("GET /events") && body.contains("GET /metrics"),
            "{body}"
        );

        // Server-sent events: the latest snapshot at once, then each new one.
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /events HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        read_until(&mut conn, &mut got, "}\n\n", 1).await;
        feed.send_replace(Arc::new(Snapshot {
            tick: 2,
            ..Snapshot::default()
        }));
        read_until(&mut conn, &mut got, "}\n\n", 2).await;
        let both = String::from_utf8(got).unwrap();
        assert!(
            both.to_lowercase()
                .contains("content-type: text/event-stream"),
            "{both}"
        );
        let ticks: Vec<serde_json::Value> = both
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str::<serde_json::Value>(d).unwrap()["tick"].clone())
            .collect();
        assert_eq!(ticks, [1, 2], "{both}");
    }

    /// Read until the server closes; how long that took.
    async fn wait_for_close(conn: &mut TcpStream) -> Duration {
        let began = Instant::now();
        let mut sink = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut sink))
            .await
            .expect("closed by the server within 10 s")
            .ok(); // a reset is a close too
        began.elapsed()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_connection_is_closed_after_the_timeout() {
        let addr = start(Arc::default(), limits(8, 300), Router::new()).await;
        // Silent from the start.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let waited = wait_for_close(&mut silent).await;
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        // Silent after a keep-alive request: the answer, then a close.
        let mut kept = TcpStream::connect(addr).await.unwrap();
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let began = Instant::now();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), kept.read_to_end(&mut answer))
            .await
            .expect("closed by the server within 10 s")
            .unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 503"), "starting");
        assert!(began.elapsed() >= Duration::from_millis(250));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_beyond_the_cap_wait_for_a_slot() {
        let addr = start(Arc::default(), limits(2, 60_000), Router::new()).await;
        let first = TcpStream::connect(addr).await.unwrap();
        let _second = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await; // both accepted
        let waiting = tokio::spawn(async move {
            let conn = TcpStream::connect(addr).await.unwrap();
            ask(conn, "GET /health").await
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!waiting.is_finished(), "a third connection was served");
        drop(first);
        let (code, _, _) = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("served once a slot is free")
            .unwrap();
        assert_eq!(code, 503, "answered (starting)");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_takes_no_response_loses_its_slot() {
        // A response far larger than the socket buffers, to a client with a
        // tiny receive buffer that reads nothing.
        const BIG: usize = 64 << 20;
        let big = Router::new().route("/big", get(|| async { vec![b'x'; BIG] }));
        let addr = start(Arc::default(), limits(1, 300), big).await;
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stalled = socket.connect(addr).await.unwrap();
        stalled
            .write_all(b"GET /big HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        // The only slot is taken until the write times out.
        let began = Instant::now();
        let (code, _, _) = request(addr, "GET /health").await;
        assert_eq!(code, 503);
        assert!(began.elapsed() >= Duration::from_millis(250));
        let mut got = Vec::new();
        let _ = stalled.read_to_end(&mut got).await; // a reset is fine
        assert!(got.len() < BIG, "the whole response arrived");
    }

    #[test]
    fn the_cap_leaves_file_descriptors_to_the_engine() {
        let mut s = ServiceSettings {
            http_max_connections: 1_000_000,
            ..ServiceSettings::default()
        };
        let l = Limits::of(&s);
        assert!(l.max_connections <= file_descriptor_budget());
        assert!(l.max_connections < 1_000_000 || file_descriptor_budget() == usize::MAX);
        s.http_max_connections = 1;
        s.http_idle_timeout_ms = 250;
        assert_eq!(Limits::of(&s), limits(1, 250));
    }
}
