//! The health and metrics endpoint: `GET /health` (JSON, 200 while the
//! service runs, 503 while it starts or stops) and `GET /metrics`
//! (Prometheus text format). One request per connection; enough for probes
//! and scrapers, and no web framework on the engine's dependency list.

use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

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

    fn body(&self) -> (u16, String) {
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
        let code = if phase == "running" { 200 } else { 503 };
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

/// Bind `addr` and serve until the runtime stops. Binding errors are returned
/// (a port in use is a configuration problem the user must see).
pub async fn serve(
    addr: &str,
    health: Arc<Health>,
    metrics: Option<PrometheusHandle>,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("service.listen = {addr}: cannot bind: {e}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let health = health.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let n = match tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    conn.read(&mut buf),
                )
                .await
                {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
                let request = String::from_utf8_lossy(&buf[..n]);
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let (code, ctype, body) = match path {
                    "/health" | "/healthz" => {
                        let (c, b) = health.body();
                        (c, "application/json", b)
                    }
                    "/metrics" => match &metrics {
                        Some(m) => (200, "text/plain; version=0.0.4", m.render()),
                        None => (503, "text/plain", "metrics recorder not installed\n".into()),
                    },
                    _ => (404, "text/plain", "try /health or /metrics\n".into()),
                };
                let reason = match code {
                    200 => "OK",
                    404 => "Not Found",
                    _ => "Service Unavailable",
                };
                let head = format!(
                    "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    Ok(bound)
}
