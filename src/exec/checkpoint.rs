//! Checkpoints: the engine's state and the source offsets it depends on, in
//! one file written atomically (temporary file, fsync, rename, fsync of the
//! directory), so a restart after a crash finds either the previous
//! checkpoint or the new one, never half of one.
//!
//! Layout: a magic line naming the format version, a bincode
//! [`CheckpointHeader`] (offsets, counters, the settings the state was built
//! under, key by key), then the engine's snapshot as [`Engine::save_state`]
//! writes it (bincode, with its own layout version).

use crate::config::Topology;
use crate::connectors::sinks::report::InputCounts;
pub use crate::connectors::sources::SourceOffset;
use anyhow::{bail, Context};
use bincode::Options as _;
use fraudstream_engine::engine::Engine;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"FSCKPT2\n";
const FILE_NAME: &str = "checkpoint.bin";

/// What a checkpoint says about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointHeader {
    /// Wall-clock time it was written (ms since the epoch).
    pub written_ms: i64,
    /// Sequence number (1 for the first checkpoint of a state).
    pub sequence: u64,
    /// Source positions.
    pub offsets: Vec<SourceOffset>,
    /// Input counters.
    pub totals: InputCounts,
    /// Settings the state depends on, by topology section.
    pub settings: Vec<(String, String)>,
}

/// The settings a checkpointed state depends on, key by key (dotted paths
/// of the engine's settings, values as JSON): a state restored under other
/// settings would be wrong or unreadable. Left out: what shapes outputs but
/// not state (workers, explanations per alert, the report's day origin,
/// the admission bounds on amounts and event time).
pub fn settings_of(t: &Topology) -> Vec<(String, String)> {
    let value = serde_json::to_value(t.engine_config()).expect("settings are plain data");
    let mut out = Vec::new();
    flatten("", &value, &mut out);
    out.retain(|(k, _)| {
        !matches!(
            k.as_str(),
            "workers"
                | "explain_top"
                | "eval_origin_ms"
                | "max_event_skew_ms"
                | "min_amount"
                | "max_amount"
        )
    });
    out
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, x) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Every setting whose value differs between a checkpoint (`then`) and now,
/// as `key (was X, now Y)`.
fn changed_settings(then: &[(String, String)], now: &[(String, String)]) -> Vec<String> {
    let lookup = |list: &[(String, String)], k: &str| {
        list.iter()
            .find(|(key, _)| key == k)
            .map_or_else(|| "unset".to_string(), |(_, v)| v.clone())
    };
    let mut keys: Vec<&str> = then.iter().chain(now).map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (a, b) = (lookup(then, k), lookup(now, k));
            (a != b).then(|| format!("{k} (was {a}, now {b})"))
        })
        .collect()
}

/// The checkpoint file in `dir`.
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Write `engine`'s state with `header` into `dir`, replacing the previous
/// checkpoint atomically. Returns the file's size in bytes.
pub fn write(dir: &Path, header: &CheckpointHeader, engine: &Engine) -> anyhow::Result<u64> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("checkpoint directory {}", dir.display()))?;
    let path = path_in(dir);
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(MAGIC)?;
    bincode::serialize_into(&mut w, header).context("writing the checkpoint header")?;
    engine
        .save_state(&mut w)
        .context("writing the engine state")?;
    let file = w
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    let size = file.metadata()?.len();
    drop(file);
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    // The rename is durable once the directory is synced.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(size)
}

/// Read the checkpoint in `dir` into `engine` (built from `t`), returning its
/// header; `None` when there is none. A checkpoint written under other
/// settings is refused, naming the sections that differ.
pub fn restore(
    dir: &Path,
    t: &Topology,
    engine: &mut Engine,
) -> anyhow::Result<Option<CheckpointHeader>> {
    let path = path_in(dir);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    // No length inside may claim more than the file holds.
    let limit = file.metadata()?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)
        .with_context(|| format!("{}: not a fraudstream checkpoint", path.display()))?;
    if magic[..6] == MAGIC[..6] && magic != *MAGIC {
        bail!(
            "{}: a checkpoint in format {}, this build reads {}; move it away to start \
             from a fresh state (or run the version that wrote it)",
            path.display(),
            String::from_utf8_lossy(&magic[..7]),
            String::from_utf8_lossy(&MAGIC[..7])
        );
    }
    if &magic != MAGIC {
        bail!("{}: not a fraudstream checkpoint", path.display());
    }
    let header: CheckpointHeader = bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(limit)
        .deserialize_from(&mut r)
        .with_context(|| format!("{}: damaged header", path.display()))?;
    let changed = changed_settings(&header.settings, &settings_of(t));
    if !changed.is_empty() {
        bail!(
            "{}: written under other settings than {} has now: {}; restore the old settings, \
             or move the checkpoint away to start from a fresh state",
            path.display(),
            t.file,
            changed.join(", ")
        );
    }
    engine
        .restore_state(&t.engine_config(), &mut r, limit)
        .with_context(|| format!("{}: damaged engine state", path.display()))?;
    Ok(Some(header))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::sources::SourceItem;
    use crate::exec::outputs::start_engine;
    use crate::exec::pipeline::build_source;
    use fraudstream_engine::event::Event;

    fn topology() -> Topology {
        topology_with(&[])
    }

    fn topology_with(extra: &[&str]) -> Topology {
        let mut set: Vec<String> = vec![
            "source.days=6".into(),
            "source.cards=300".into(),
            "source.merchants=60".into(),
        ];
        set.extend(extra.iter().map(|s| s.to_string()));
        Topology::embedded(&set).unwrap()
    }

    fn feed(e: &mut Engine, items: &[SourceItem], scores: &mut Vec<u32>) {
        for it in items {
            match it {
                SourceItem::Event(Event::Transaction(tx)) => {
                    scores.push((e.score(tx.clone()).score as f32).to_bits())
                }
                SourceItem::Event(Event::Label(l)) => {
                    e.label(l);
                }
                SourceItem::Rejected(_) => {}
            }
        }
    }

    #[test]
    fn a_restored_engine_continues_exactly_like_the_uninterrupted_one() {
        continues_exactly(&[]);
    }

    #[test]
    fn a_restored_forest_blend_continues_exactly_too() {
        continues_exactly(&["model.type=\"blend\""]);
    }

    fn continues_exactly(extra: &[&str]) {
        let t = topology_with(extra);
        let items: Vec<SourceItem> = build_source(&t).unwrap().collect();
        let cut = items.len() / 2;
        let mut whole = start_engine(&t).unwrap();
        let mut expected = Vec::new();
        feed(&mut whole, &items, &mut expected);

        let dir = tempfile::tempdir().unwrap();
        let mut first = start_engine(&t).unwrap();
        let mut got = Vec::new();
        feed(&mut first, &items[..cut], &mut got);
        let header = CheckpointHeader {
            written_ms: 1,
            sequence: 7,
            offsets: vec![SourceOffset {
                topic: "tx".into(),
                partition: 0,
                next: cut as i64,
            }],
            totals: InputCounts::default(),
            settings: settings_of(&t),
        };
        write(dir.path(), &header, &first).unwrap();
        drop(first);

        let mut second = start_engine(&t).unwrap();
        let back = restore(dir.path(), &t, &mut second).unwrap().unwrap();
        assert_eq!(back, header);
        feed(&mut second, &items[cut..], &mut got);
        assert_eq!(got, expected, "same scores, bit for bit");
        assert_eq!(second.counters(), whole.counters());
        let model = |e: &Engine| bincode::serialize(&e.model().state()).unwrap();
        assert_eq!(model(&second), model(&whole), "same model, bit for bit");
        let (a, b) = (
            second.evaluation().summary(None),
            whole.evaluation().summary(None),
        );
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }

    #[test]
    fn no_checkpoint_is_none_and_other_settings_are_refused_by_name() {
        let t = topology();
        let dir = tempfile::tempdir().unwrap();
        let mut e = start_engine(&t).unwrap();
        assert!(restore(dir.path(), &t, &mut e).unwrap().is_none());
        let header = CheckpointHeader {
            written_ms: 1,
            sequence: 1,
            offsets: vec![],
            totals: InputCounts::default(),
            settings: settings_of(&t),
        };
        write(dir.path(), &header, &e).unwrap();
        let other = Topology::embedded(&[
            "source.days=6".into(),
            "features.buckets=6".into(),
            "pending.capacity=10".into(),
        ])
        .unwrap();
        let mut e2 = start_engine(&other).unwrap();
        let err = format!("{:#}", restore(dir.path(), &other, &mut e2).unwrap_err());
        assert!(
            err.contains("features.buckets (was 4, now 6)")
                && err.contains("pending_capacity (was 2000000, now 10)"),
            "{err}"
        );
        std::fs::write(path_in(dir.path()), b"garbage").unwrap();
        let err = format!("{:#}", restore(dir.path(), &t, &mut e).unwrap_err());
        assert!(err.contains("not a fraudstream checkpoint"), "{err}");
        std::fs::write(path_in(dir.path()), b"FSCKPT1\nolder layout").unwrap();
        let err = format!("{:#}", restore(dir.path(), &t, &mut e).unwrap_err());
        assert!(
            err.contains("a checkpoint in format FSCKPT1, this build reads FSCKPT2"),
            "{err}"
        );
    }
}
