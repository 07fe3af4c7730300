//! Checkpoints: the engine's state and the source offsets it depends on,
//! each in its own file written atomically (temporary file, fsync, rename,
//! fsync of the directory), so a crash leaves every earlier checkpoint whole.
//! The newest [`CheckpointSettings::keep`] are kept.
//!
//! A file (`checkpoint-<sequence>.bin`, sequence zero-padded to 12 digits):
//!
//! ```text
//! FSCKPT3\n            8 bytes, the format
//! payload length       u64, little-endian
//! payload checksum     u64, little-endian, xxh3-64 of the payload
//! payload              a bincode CheckpointHeader (offsets, counters, settings
//!                      key by key), then Engine::save_state's snapshot
//! ```
//!
//! A restore trusts nothing before it is checked: the length against the
//! file's size, the checksum over the payload, and only then decoding, with
//! no length inside allowed to claim more than the payload holds. A damaged
//! newest checkpoint falls back to the next older one, saying so; a
//! checkpoint for other settings or another format is refused, not passed
//! over, since an older one would be no better.

use crate::config::{CheckpointSettings, Topology};
use crate::connectors::sinks::report::InputCounts;
pub use crate::connectors::sources::SourceOffset;
use anyhow::Context;
use bincode::Options as _;
use fraudstream_engine::engine::{Engine, SNAPSHOT_VERSION};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::Xxh3Default;

/// Format line; the digit is the format version.
const MAGIC: &[u8; 8] = b"FSCKPT3\n";
/// Bytes before the payload: format line, length, checksum.
const PREAMBLE: u64 = 24;
/// The one file of formats before FSCKPT3.
const LEGACY_NAME: &str = "checkpoint.bin";
/// A checkpoint being written (one writer per directory).
const TMP_NAME: &str = "checkpoint.tmp";

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
/// the admission bounds on amounts and event time, and the caps on what is
/// held, which a restore applies to the state it reads).
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
                | "max_cards"
                | "max_merchants"
                | "eval_retention_ms"
                | "eval_max_records"
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

/// The file of checkpoint `sequence` in `dir`.
pub fn path_of(dir: &Path, sequence: u64) -> PathBuf {
    dir.join(format!("checkpoint-{sequence:012}.bin"))
}

/// The sequence number in a checkpoint's file name.
fn sequence_in(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("checkpoint-")?.strip_suffix(".bin")?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The checkpoints in `dir`, newest first: numbered files by sequence, and a
/// `checkpoint.bin` of an older format where its modification time puts it
/// (last, unless an older build wrote it after the newest numbered one).
pub fn list(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut numbered = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        if let Some(seq) = entry.file_name().to_str().and_then(sequence_in) {
            numbered.push((seq, entry.path()));
        }
    }
    numbered.sort_unstable_by_key(|(seq, _)| std::cmp::Reverse(*seq));
    let mut out: Vec<PathBuf> = numbered.into_iter().map(|(_, p)| p).collect();
    let legacy = dir.join(LEGACY_NAME);
    if let Ok(meta) = std::fs::metadata(&legacy) {
        let modified = |m: &std::fs::Metadata| m.modified().ok();
        let newer = match out.first() {
            None => true,
            Some(newest) => {
                let newest = std::fs::metadata(newest).ok();
                matches!((modified(&meta), newest.as_ref().and_then(modified)),
                    (Some(a), Some(b)) if a > b)
            }
        };
        if newer {
            out.insert(0, legacy);
        } else {
            out.push(legacy);
        }
    }
    Ok(out)
}

/// Write `engine`'s state with `header` into `c.dir` as checkpoint
/// `header.sequence`, then remove all but the newest `c.keep`. Returns the
/// file's size in bytes. A file of the same sequence (a damaged one a
/// restore passed over) is replaced.
pub fn write(
    c: &CheckpointSettings,
    header: &CheckpointHeader,
    engine: &Engine,
) -> anyhow::Result<u64> {
    let dir = &c.dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("checkpoint directory {}", dir.display()))?;
    let path = path_of(dir, header.sequence);
    let tmp = dir.join(TMP_NAME);
    let mut file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    // The length and checksum are known at the end; their place is kept.
    file.write_all(MAGIC)
        .and_then(|()| file.write_all(&[0; 16]))
        .with_context(|| format!("writing {}", tmp.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, Hashing::new(file));
    bincode::serialize_into(&mut w, header).context("writing the checkpoint header")?;
    engine
        .save_state(&mut w)
        .context("writing the engine state")?;
    let hashing = w
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", tmp.display()))?;
    let (len, checksum) = (hashing.len, hashing.hash.digest());
    let mut file = hashing.inner;
    file.seek(SeekFrom::Start(MAGIC.len() as u64))
        .and_then(|_| file.write_all(&len.to_le_bytes()))
        .and_then(|()| file.write_all(&checksum.to_le_bytes()))
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    drop(file);
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    // The rename is durable once the directory is synced.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    // The new checkpoint is safe: a failure to remove an old one costs disk
    // space, not correctness, so it is reported and the stream goes on.
    for old in list(dir)?.into_iter().skip(c.keep.max(1)) {
        if let Err(e) = std::fs::remove_file(&old) {
            eprintln!(
                "fraudstream: removing the old checkpoint {}: {e}",
                old.display()
            );
        }
    }
    Ok(PREAMBLE + len)
}

/// Counts and hashes the bytes written through it.
struct Hashing<W> {
    inner: W,
    hash: Xxh3Default,
    len: u64,
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hash: Xxh3Default::new(),
            len: 0,
        }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A checkpoint read back.
#[derive(Debug)]
pub struct Restored {
    /// What it says about itself.
    pub header: CheckpointHeader,
    /// The file it was read from.
    pub path: PathBuf,
    /// Newer checkpoints passed over as damaged, newest first, each with why.
    pub damaged: Vec<(PathBuf, String)>,
}

impl Restored {
    /// One line per checkpoint passed over: the file, why, and the one it
    /// fell back to.
    pub fn fallbacks(&self) -> Vec<String> {
        let next = self
            .damaged
            .iter()
            .skip(1)
            .map(|(p, _)| p)
            .chain([&self.path]);
        self.damaged
            .iter()
            .zip(next)
            .map(|((p, why), next)| {
                format!(
                    "{}: damaged ({why}), falling back to {}",
                    p.display(),
                    name_of(next)
                )
            })
            .collect()
    }
}

/// Why a checkpoint file cannot be restored.
#[derive(Debug)]
enum Unreadable {
    /// Not what was written (cut short, altered, not a checkpoint): an older
    /// checkpoint may serve instead.
    Damaged(String),
    /// Whole, but not for this build or these settings: an older checkpoint
    /// would be refused for the same reason.
    Refused(String),
}

/// Restore the newest valid checkpoint in `dir` into `engine` (built from
/// `t`); `None` when there is none. Damaged ones are passed over, newest
/// first (see [`Restored::fallbacks`]); when every one is damaged, or one is
/// refused (other settings, named key by key, or another format), the error
/// says so for each file. It never starts afresh when checkpoints exist:
/// that would lose the state and read each input again from its `start`.
pub fn restore(dir: &Path, t: &Topology, engine: &mut Engine) -> anyhow::Result<Option<Restored>> {
    let files = list(dir)?;
    if files.is_empty() {
        return Ok(None);
    }
    let mut damaged: Vec<(PathBuf, String)> = Vec::new();
    let passed_over = |damaged: &[(PathBuf, String)]| {
        damaged
            .iter()
            .map(|(p, why)| format!("{}: damaged ({why}); ", p.display()))
            .collect::<String>()
    };
    for path in files {
        match read_one(&path, t, engine) {
            Ok(header) => {
                return Ok(Some(Restored {
                    header,
                    path,
                    damaged,
                }))
            }
            Err(Unreadable::Damaged(why)) => damaged.push((path, why)),
            Err(Unreadable::Refused(why)) => {
                anyhow::bail!("{}{}: {why}", passed_over(&damaged), path.display())
            }
        }
    }
    anyhow::bail!(
        "no valid checkpoint in {}: {}not starting from a fresh state, which would lose the \
         state and read each input again from its `start`; to do that deliberately, move the \
         checkpoints out of {}",
        dir.display(),
        passed_over(&damaged),
        dir.display()
    )
}

/// The file name alone, for messages that already name the directory.
fn name_of(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The decoding `bincode::serialize_into`'s encoding needs, reading at most
/// `limit` bytes.
fn bounded(limit: u64) -> impl bincode::Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(limit)
}

/// Decode a checkpoint header from at most `limit` bytes of `r`.
fn decode_header<R: Read>(r: R, limit: u64) -> bincode::Result<CheckpointHeader> {
    bounded(limit).deserialize_from(r)
}

/// Check and read one checkpoint file into `engine`.
fn read_one(
    path: &Path,
    t: &Topology,
    engine: &mut Engine,
) -> Result<CheckpointHeader, Unreadable> {
    let io = |what: &str, e: std::io::Error| Unreadable::Damaged(format!("{what}: {e}"));
    let file = File::open(path).map_err(|e| io("cannot be opened", e))?;
    let size = file.metadata().map_err(|e| io("cannot be read", e))?.len();
    // Nothing is allocated from what the file says; the buffer is at most its size.
    let r = BufReader::with_capacity((size as usize).clamp(1, 1 << 20), file);
    read_checkpoint(r, size, path, t, engine)
}

/// Check and read the checkpoint in `bytes` into `engine` (built from `t`)
/// exactly as [`restore`] reads one file, named `checkpoint.bin` in
/// messages; the error says why it is damaged or refused. For tests and the
/// fuzz targets: a restore always reads files.
pub fn read_bytes(
    bytes: &[u8],
    t: &Topology,
    engine: &mut Engine,
) -> anyhow::Result<CheckpointHeader> {
    let path = Path::new(LEGACY_NAME);
    read_checkpoint(
        std::io::Cursor::new(bytes),
        bytes.len() as u64,
        path,
        t,
        engine,
    )
    .map_err(|e| match e {
        Unreadable::Damaged(why) => anyhow::anyhow!("damaged ({why})"),
        Unreadable::Refused(why) => anyhow::anyhow!("{why}"),
    })
}

/// Check and read the checkpoint of `size` bytes in `r` (the file at `path`,
/// named in messages) into `engine`.
fn read_checkpoint<R: BufRead + Seek>(
    mut r: R,
    size: u64,
    path: &Path,
    t: &Topology,
    engine: &mut Engine,
) -> Result<CheckpointHeader, Unreadable> {
    use Unreadable::{Damaged, Refused};
    let io = |what: &str, e: std::io::Error| Damaged(format!("{what}: {e}"));
    let mut magic = [0u8; 8];
    if size < magic.len() as u64 {
        return Err(Damaged(format!(
            "cut short: {size} bytes, not even the format line"
        )));
    }
    r.read_exact(&mut magic)
        .map_err(|e| io("cannot be read", e))?;
    check_format(&magic, path)?;
    if size < PREAMBLE {
        return Err(Damaged(format!(
            "cut short: {size} bytes, shorter than the {PREAMBLE}-byte preamble"
        )));
    }
    let mut fixed = [0u8; 16];
    r.read_exact(&mut fixed)
        .map_err(|e| io("cannot be read", e))?;
    let len = u64::from_le_bytes(fixed[..8].try_into().expect("8 bytes"));
    let checksum = u64::from_le_bytes(fixed[8..].try_into().expect("8 bytes"));
    let held = size - PREAMBLE;
    if len != held {
        let what = if len > held {
            "cut short or its length damaged"
        } else {
            "its length damaged or bytes appended"
        };
        return Err(Damaged(format!(
            "{what}: the preamble announces {len} payload bytes, the file holds {held}"
        )));
    }
    let mut hash = Xxh3Default::new();
    let mut left = held;
    while left > 0 {
        let chunk = r.fill_buf().map_err(|e| io("cannot be read", e))?;
        if chunk.is_empty() {
            return Err(Damaged(format!(
                "cut short while being read: {left} bytes missing"
            )));
        }
        let n = chunk.len().min(left as usize);
        hash.update(&chunk[..n]);
        r.consume(n);
        left -= n as u64;
    }
    if hash.digest() != checksum {
        return Err(Damaged(format!(
            "checksum mismatch: the payload hashes to {:016x}, the preamble says {checksum:016x}",
            hash.digest()
        )));
    }
    r.seek(SeekFrom::Start(PREAMBLE))
        .map_err(|e| io("cannot be read", e))?;
    let mut payload = r.take(held);
    let header = decode_header(&mut payload, held)
        .map_err(|e| Damaged(format!("the header does not decode: {e}")))?;
    let changed = changed_settings(&header.settings, &settings_of(t));
    if !changed.is_empty() {
        return Err(Refused(format!(
            "written under other settings than {} has now: {}; restore the old settings, \
             or move the checkpoints out of {} to start from a fresh state",
            t.file,
            changed.join(", "),
            dir_of(path)
        )));
    }
    // The snapshot begins with its layout version (a u32): a snapshot of
    // another layout is refused as such rather than misread as damage.
    let mut version = [0u8; 4];
    payload
        .read_exact(&mut version)
        .map_err(|e| Damaged(format!("the engine state is missing: {e}")))?;
    let v = u32::from_le_bytes(version);
    if v != SNAPSHOT_VERSION {
        let (by, todo) = if v < SNAPSHOT_VERSION {
            ("an older", "run the version that wrote it")
        } else {
            ("a newer", "run that version or a newer one")
        };
        return Err(Refused(format!(
            "written by {by} fraudstream (engine state layout {v}); this version reads \
             layout {SNAPSHOT_VERSION}: {todo}, or move the checkpoints out of {} to start \
             from a fresh state",
            dir_of(path)
        )));
    }
    let left = payload.limit();
    engine
        .restore_state(
            &t.engine_config(),
            (&version[..]).chain(&mut payload),
            left + 4,
        )
        .map_err(|e| Damaged(format!("the engine state does not decode: {e:#}")))?;
    if payload.limit() != 0 {
        return Err(Damaged(format!(
            "{} bytes after the engine state",
            payload.limit()
        )));
    }
    Ok(header)
}

/// The directory holding `path`, for messages.
fn dir_of(path: &Path) -> String {
    path.parent()
        .map_or_else(|| ".".to_string(), |d| d.display().to_string())
}

/// Check the format line: another version is refused by name, anything
/// else is not a checkpoint (damaged).
fn check_format(magic: &[u8; 8], path: &Path) -> Result<(), Unreadable> {
    if magic == MAGIC {
        return Ok(());
    }
    let ours = String::from_utf8_lossy(&MAGIC[..7]);
    let version = (magic[..6] == MAGIC[..6] && magic[7] == b'\n')
        .then(|| (magic[6] as char).to_digit(10))
        .flatten();
    let Some(v) = version else {
        return Err(Unreadable::Damaged(
            "not a fraudstream checkpoint: it does not begin with a FSCKPT format line".into(),
        ));
    };
    let theirs = String::from_utf8_lossy(&magic[..7]);
    let older = v < u32::from(MAGIC[6] - b'0');
    let todo = if older {
        format!(
            "run the version that wrote it to go on from it, or move it out of {} to start \
             from a fresh state (each input then begins where its `start` says)",
            dir_of(path)
        )
    } else {
        "run that version or a newer one".to_string()
    };
    let by = if older { "an older" } else { "a newer" };
    Err(Unreadable::Refused(format!(
        "written by {by} fraudstream (format {theirs}); this version reads {ours}: {todo}"
    )))
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

    fn keep_in(dir: &Path, keep: usize) -> CheckpointSettings {
        CheckpointSettings {
            dir: dir.to_path_buf(),
            keep,
            ..CheckpointSettings::default()
        }
    }

    fn header(t: &Topology, sequence: u64) -> CheckpointHeader {
        CheckpointHeader {
            written_ms: 1,
            sequence,
            offsets: vec![],
            totals: InputCounts::default(),
            settings: settings_of(t),
        }
    }

    /// Change a file's bytes in place.
    fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
        let mut bytes = std::fs::read(path).unwrap();
        f(&mut bytes);
        std::fs::write(path, bytes).unwrap();
    }

    /// Make the preamble agree with the payload again (length and checksum),
    /// so that what a test altered inside is what gets decoded.
    fn reseal(bytes: &mut [u8]) {
        let p = PREAMBLE as usize;
        let len = (bytes.len() - p) as u64;
        let sum = xxhash_rust::xxh3::xxh3_64(&bytes[p..]);
        bytes[8..16].copy_from_slice(&len.to_le_bytes());
        bytes[16..24].copy_from_slice(&sum.to_le_bytes());
    }

    fn restore_error(dir: &Path, t: &Topology) -> String {
        let mut e = start_engine(t).unwrap();
        format!("{:#}", restore(dir, t, &mut e).unwrap_err())
    }

    /// Two checkpoints of a run, 1 after a third of the stream and 2 after
    /// two thirds, with the transactions scored at each.
    fn two_checkpoints(t: &Topology, dir: &Path) -> [u64; 2] {
        let items: Vec<SourceItem> = build_source(t).unwrap().collect();
        let mut e = start_engine(t).unwrap();
        let mut scores = Vec::new();
        let third = items.len() / 3;
        feed(&mut e, &items[..third], &mut scores);
        write(&keep_in(dir, 3), &header(t, 1), &e).unwrap();
        let first = e.counters().scored;
        feed(&mut e, &items[third..2 * third], &mut scores);
        write(&keep_in(dir, 3), &header(t, 2), &e).unwrap();
        assert!(e.counters().scored > first);
        [first, e.counters().scored]
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
        write(&keep_in(dir.path(), 3), &header, &first).unwrap();
        drop(first);

        let mut second = start_engine(&t).unwrap();
        let back = restore(dir.path(), &t, &mut second).unwrap().unwrap();
        assert_eq!(back.header, header);
        assert_eq!(back.path, path_of(dir.path(), 7));
        assert!(back.damaged.is_empty());
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
    fn bytes_read_as_a_restore_reads_the_file() {
        let t = topology();
        let dir = tempfile::tempdir().unwrap();
        let [first, _] = two_checkpoints(&t, dir.path());
        let mut bytes = std::fs::read(path_of(dir.path(), 1)).unwrap();
        let mut e = start_engine(&t).unwrap();
        assert_eq!(read_bytes(&bytes, &t, &mut e).unwrap(), header(&t, 1));
        assert_eq!(e.counters().scored, first);
        bytes.pop();
        let err = format!("{:#}", read_bytes(&bytes, &t, &mut e).unwrap_err());
        assert!(
            err.starts_with("damaged (cut short or its length damaged"),
            "{err}"
        );
    }

    #[test]
    fn no_checkpoint_is_none_and_other_settings_are_refused_by_name() {
        let t = topology();
        let dir = tempfile::tempdir().unwrap();
        let mut e = start_engine(&t).unwrap();
        assert!(restore(dir.path(), &t, &mut e).unwrap().is_none());
        assert!(restore(&dir.path().join("absent"), &t, &mut e)
            .unwrap()
            .is_none());
        write(&keep_in(dir.path(), 3), &header(&t, 1), &e).unwrap();
        write(&keep_in(dir.path(), 3), &header(&t, 2), &e).unwrap();
        let other = Topology::embedded(&[
            "source.days=6".into(),
            "features.buckets=6".into(),
            "pending.capacity=10".into(),
        ])
        .unwrap();
        // Refused at the newest: an older checkpoint has the same settings.
        let err = restore_error(dir.path(), &other);
        assert!(
            err.contains("checkpoint-000000000002.bin: written under other settings")
                && err.contains("features.buckets (was 4, now 6)")
                && err.contains("pending_capacity (was 2000000, now 10)")
                && !err.contains("checkpoint-000000000001.bin"),
            "{err}"
        );
    }

    #[test]
    fn a_truncated_newest_checkpoint_falls_back_to_the_previous_one() {
        let t = topology();
        let dir = tempfile::tempdir().unwrap();
        let [first, _] = two_checkpoints(&t, dir.path());
        let newest = path_of(dir.path(), 2);
        let size = std::fs::metadata(&newest).unwrap().len();
        edit(&newest, |b| b.truncate(b.len() / 2));
        let mut e = start_engine(&t).unwrap();
        let back = restore(dir.path(), &t, &mut e).unwrap().unwrap();
        assert_eq!(back.header.sequence, 1);
        assert_eq!(back.path, path_of(dir.path(), 1));
        assert_eq!(e.counters().scored, first, "the first checkpoint's state");
        let held = size / 2 - PREAMBLE;
        assert_eq!(
            back.fallbacks(),
            [format!(
                "{}: damaged (cut short or its length damaged: the preamble announces {} \
                 payload bytes, the file holds {held}), falling back to checkpoint-000000000001.bin",
                newest.display(),
                size - PREAMBLE
            )]
        );
        // Cut inside the preamble, or inside the format line.
        for keep in [10, 3, 0] {
            edit(&newest, |b| b.truncate(keep));
            let back = restore(dir.path(), &t, &mut e).unwrap().unwrap();
            assert_eq!(back.header.sequence, 1);
            assert!(back.damaged[0].1.starts_with("cut short"), "{back:?}");
        }
    }

    #[test]
    fn a_flipped_byte_fails_the_checksum_and_falls_back() {
        let t = topology();
        let dir = tempfile::tempdir().unwrap();
        let [first, _] = two_checkpoints(&t, dir.path());
        edit(&path_of(dir.path(), 2), |b| {
            let i = b.len() / 2;
            b[i] ^= 0x10;
        });
        let mut e = start_engine(&t).unwrap();
        let back = restore(dir.path(), &t, &mut e).unwrap().unwrap();
        assert_eq!(back.header.sequence, 1);
        assert_eq!(e.counters().scored, first);
        let line = &back.fallbacks()[0];
        assert!(
            line.contains("checkpoint-000000000002.bin: damaged (checksum mismatch: ")
                && line.ends_with("falling back to checkpoint-000000000001.bin"),
            "{line}"
        );
    }

    #[test]
    fn a_damaged_length_is_checked_against_the_file_size_not_allocated() {
        let t = topology();
        let dir = tempfile::tempdir().unwrap();
        two_checkpoints(&t, dir.path());
        let newest = path_of(dir.path(), 2);
        let held = std::fs::metadata(&newest).unwrap().len() - PREAMBLE;
        for (len, what) in [
            (u64::MAX, "cut short or its length damaged"),
            (held - 1, "its length damaged or bytes appended"),
        ] {
            edit(&newest, |b| b[8..16].copy_from_slice(&len.to_le_bytes()));
            let mut e = start_engine(&t).unwrap();
            let back = restore(dir.path(), &t, &mut e).unwrap().unwrap();
            assert_eq!(back.header.sequence, 1);
            assert_eq!(
                back.damaged[0].1,
                format!(
                    "{what}: the preamble announces {len} payload bytes, the file holds {held}"
                )
            );
        }
    }

    /// A length inside the payload that the checksum vouches for (a writer's
    /// bug, or a crafted file) still cannot claim more than the payload holds.
    #[test]
    fn a_huge_length_inside_the_payload_stops_at_the_size_limit() {
        let is_size_limit = |e: &bincode::Error| matches!(**e, bincode::ErrorKind::SizeLimit);
        // written_ms, sequence, one offset whose topic claims 2^60 bytes.
        let mut payload = Vec::new();
        for x in [1u64, 1, 1, 1 << 60] {
            payload.extend_from_slice(&x.to_le_bytes());
        }
        payload.extend_from_slice(b"tx");
        let err = decode_header(&payload[..], payload.len() as u64).unwrap_err();
        assert!(is_size_limit(&err), "{err}");
        let err = decode_header(&payload[..], 4).unwrap_err();
        assert!(is_size_limit(&err), "{err}");

        // The engine's snapshot: a merchant map claiming u64::MAX entries.
        let t = topology();
        let mut e = start_engine(&t).unwrap();
        let mut snapshot = SNAPSHOT_VERSION.to_le_bytes().to_vec();
        snapshot.extend_from_slice(&u64::MAX.to_le_bytes());
        let err = e
            .restore_state(&t.engine_config(), &snapshot[..], snapshot.len() as u64)
            .unwrap_err();
        let inner = err
            .downcast_ref::<bincode::Error>()
            .expect("a bincode error");
        assert!(is_size_limit(inner), "{err:#}");

        // The same header in a whole, correctly sealed file.
        let dir = tempfile::tempdir().unwrap();
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&[0; 16]);
        file.extend_from_slice(&payload);
        reseal(&mut file);
        std::fs::write(path_of(dir.path(), 1), file).unwrap();
        let began = std::time::Instant::now();
        let err = restore_error(dir.path(), &t);
        assert!(began.elapsed() < std::time::Duration::from_secs(1));
        assert!(
            err.contains("damaged (the header does not decode: the size limit has been reached)"),
            "{err}"
        );
    }

    #[test]
    fn every_checkpoint_damaged_is_an_error_naming_each_never_a_fresh_start() {
        let t = topology();
        let dir = tempfile::tempdir().unwrap();
        two_checkpoints(&t, dir.path());
        edit(&path_of(dir.path(), 2), |b| b.truncate(b.len() - 1));
        edit(&path_of(dir.path(), 1), |b| b[PREAMBLE as usize + 3] ^= 1);
        let err = restore_error(dir.path(), &t);
        let (newest, older) = (path_of(dir.path(), 2), path_of(dir.path(), 1));
        assert!(
            err.starts_with(&format!(
                "no valid checkpoint in {}: ",
                dir.path().display()
            )) && err.contains(&format!(
                "{}: damaged (cut short or its length damaged",
                newest.display()
            )) && err.contains(&format!("{}: damaged (checksum mismatch", older.display()))
                && err.contains("not starting from a fresh state"),
            "{err}"
        );
        std::fs::write(&newest, b"garbage, not a checkpoint").unwrap();
        let err = restore_error(dir.path(), &t);
        assert!(
            err.contains("checkpoint-000000000002.bin: damaged (not a fraudstream checkpoint"),
            "{err}"
        );
    }

    #[test]
    fn another_format_is_refused_by_name_with_what_to_do() {
        let t = topology();
        let dir = tempfile::tempdir().unwrap();
        for (magic, file, by) in [
            ("FSCKPT1", LEGACY_NAME, "an older"),
            ("FSCKPT2", LEGACY_NAME, "an older"),
            ("FSCKPT4", "checkpoint-000000000009.bin", "a newer"),
        ] {
            let path = dir.path().join(file);
            std::fs::write(&path, format!("{magic}\nolder layout")).unwrap();
            let err = restore_error(dir.path(), &t);
            assert_eq!(
                err.split(": run").next().unwrap(),
                format!(
                    "{}: written by {by} fraudstream (format {magic}); this version reads FSCKPT3",
                    path.display()
                )
            );
            std::fs::remove_file(path).unwrap();
        }
        // An engine snapshot of another layout, in an intact file.
        let mut e = start_engine(&t).unwrap();
        write(&keep_in(dir.path(), 3), &header(&t, 1), &e).unwrap();
        let at = PREAMBLE as usize + bincode::serialized_size(&header(&t, 1)).unwrap() as usize;
        edit(&path_of(dir.path(), 1), |b| {
            b[at..at + 4].copy_from_slice(&(SNAPSHOT_VERSION + 1).to_le_bytes());
            reseal(b);
        });
        let err = format!("{:#}", restore(dir.path(), &t, &mut e).unwrap_err());
        assert!(
            err.contains(&format!(
                "written by a newer fraudstream (engine state layout {}); this version reads \
                 layout {SNAPSHOT_VERSION}",
                SNAPSHOT_VERSION + 1
            )),
            "{err}"
        );
    }

    #[test]
    fn the_newest_keep_checkpoints_are_kept() {
        let t = topology();
        let dir = tempfile::tempdir().unwrap();
        let legacy = dir.path().join(LEGACY_NAME);
        std::fs::write(&legacy, b"FSCKPT2\nolder layout").unwrap();
        let e = start_engine(&t).unwrap();
        for seq in 1..=5 {
            write(&keep_in(dir.path(), 3), &header(&t, seq), &e).unwrap();
        }
        let want: Vec<PathBuf> = [5, 4, 3].map(|s| path_of(dir.path(), s)).into();
        assert_eq!(list(dir.path()).unwrap(), want);
        let mut files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let mut want = want;
        want.reverse();
        assert_eq!(
            files, want,
            "nothing else left: no temporary file, no checkpoint.bin"
        );
    }

    #[test]
    fn a_legacy_checkpoint_newer_than_the_numbered_ones_comes_first() {
        let t = topology();
        let dir = tempfile::tempdir().unwrap();
        let e = start_engine(&t).unwrap();
        write(&keep_in(dir.path(), 3), &header(&t, 1), &e).unwrap();
        let legacy = dir.path().join(LEGACY_NAME);
        std::fs::write(&legacy, b"FSCKPT2\nolder layout").unwrap();
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        File::options()
            .write(true)
            .open(path_of(dir.path(), 1))
            .unwrap()
            .set_modified(past)
            .unwrap();
        // An older build ran after the numbered checkpoint: its state is the
        // newer one, so it is refused rather than silently skipped.
        assert_eq!(list(dir.path()).unwrap()[0], legacy);
        let err = restore_error(dir.path(), &t);
        assert!(err.contains("(format FSCKPT2)"), "{err}");
    }
}
