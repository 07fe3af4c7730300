//! Rules reloaded without a restart, in the scoring API and the Fluvio
//! service alike: a thread polls the rules file that `[decisions] rules`
//! names; a change of its time or size is read and validated, a valid file
//! goes to the engine thread with the next version, an invalid one is
//! reported (every error) and the rules in force stay. Each reload is a line
//! on stderr and in the metrics (`fraudstream_rules_version`,
//! `fraudstream_rules_reloads_total`).

use crate::config::Topology;
use compact_str::CompactString;
use crossbeam::channel::{bounded, Receiver, Sender};
use fraudstream_engine::decide::RuleSet;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The watcher thread of a topology's rules file (none without a rules
/// file, or with `reload = 0`).
pub struct RulesWatch {
    thread: Option<std::thread::JoinHandle<()>>,
    watching: Arc<AtomicBool>,
}

impl RulesWatch {
    /// Start watching `t`'s rules file; the engine thread takes the new
    /// rule sets from the receiver (between two transactions, never in
    /// the middle of one).
    pub fn start(t: &Topology) -> anyhow::Result<(RulesWatch, Receiver<RuleSet>)> {
        let (tx, rx) = bounded::<RuleSet>(4);
        let watching = Arc::new(AtomicBool::new(true));
        let decisions = &t.decisions;
        if decisions.rules_path.is_some() {
            metrics::gauge!("fraudstream_rules_version").set(1.0);
        }
        let thread = match (&decisions.rules_path, decisions.reload_ms) {
            (Some(path), ms) if ms > 0 => Some(watch(
                path.clone(),
                fraudstream_engine::features::feature_space(&t.features)
                    .names()
                    .to_vec(),
                Duration::from_millis(ms as u64),
                tx,
                watching.clone(),
            )?),
            _ => None,
        };
        Ok((RulesWatch { thread, watching }, rx))
    }

    /// Stop the thread and wait for it (within one nap, 50 ms).
    pub fn stop(mut self) {
        self.watching.store(false, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RulesWatch {
    /// The thread ends at its next nap, unwaited.
    fn drop(&mut self) {
        self.watching.store(false, Relaxed);
    }
}

/// The watcher thread: polls `path` every `every` while `watching`.
fn watch(
    path: std::path::PathBuf,
    features: Vec<CompactString>,
    every: Duration,
    to_engine: Sender<RuleSet>,
    watching: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let stamp = |p: &std::path::Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    let mut seen = stamp(&path);
    let mut version = 1u64;
    Ok(std::thread::Builder::new()
        .name("fraudstream-rules".into())
        .spawn(move || {
            let mut checked = Instant::now();
            while watching.load(Relaxed) {
                // Short naps, so a stopping service is not kept waiting.
                std::thread::sleep(every.min(Duration::from_millis(50)));
                if checked.elapsed() < every {
                    continue;
                }
                checked = Instant::now();
                let now = stamp(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                match crate::config::rules::read_rules(&path, &features, version + 1) {
                    Ok(set) => {
                        version += 1;
                        eprintln!(
                            "fraudstream: rules {} reloaded: version {version}, {} rules",
                            path.display(),
                            set.rules.len()
                        );
                        metrics::counter!("fraudstream_rules_reloads_total", "result" => "ok")
                            .increment(1);
                        metrics::gauge!("fraudstream_rules_version").set(version as f64);
                        if to_engine.send(set).is_err() {
                            return;
                        }
                    }
                    Err(errors) => {
                        metrics::counter!("fraudstream_rules_reloads_total", "result" => "refused")
                            .increment(1);
                        eprint!(
                            "fraudstream: rules {} not reloaded, version {version} stays: {}",
                            path.display(),
                            crate::config::ConfigErrors(errors)
                        );
                    }
                }
            }
        })?)
}
