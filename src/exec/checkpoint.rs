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
use fraudstream_engine::Named as _;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::Xxh3Default;

/// Format line; the digit is the format version.
const MAGIC: &[u8; 8] = b"FSCKPT4\n";
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
    /// The state's lineage: drawn when a state starts fresh, kept by every
    /// checkpoint after it; the service's output records carry it.
    pub lineage: u64,
    /// Per output topic partition, the offset after the last of this
    /// lineage's records acknowledged before the checkpoint (or, for a
    /// partition it had not written to, the partition's end when the
    /// lineage began): a restart reads its outputs from there.
    pub outputs: Vec<SourceOffset>,
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
    // A stage's state is not the other's, and label routes follow the
    // stage topic's partitions.
    if let Some(stages) = &t.stages {
        out.push(("stages.role".into(), stages.role.name().into()));
        if stages.role == crate::config::Role::Merchant {
            out.push((
                "stages.topic_partitions".into(),
                stages.input.topic_partitions.to_string(),
            ));
        }
    }
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

/// Where a checkpoint stands in its chain; written right after the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The whole checkpoint (base) the chain starts from: this one's own
    /// sequence for a base.
    pub base: u64,
    /// For a delta, the checkpoint it applies on (the one written before
    /// it); 0 for a base.
    pub previous: u64,
    /// The payload checksum of `previous` (0 for a base): a delta applies
    /// only on the very file it was written after, not on another file that
    /// took its sequence number.
    pub previous_checksum: u64,
}

impl Link {
    fn is_base(&self) -> bool {
        self.previous == 0
    }

    fn base_of(sequence: u64) -> Self {
        Link {
            base: sequence,
            previous: 0,
            previous_checksum: 0,
        }
    }
}

/// Write `engine`'s whole state with `header` into `c.dir` as checkpoint
/// `header.sequence` (a base, which no delta follows: see [`Chain`] for
/// that), then remove the checkpoints no longer needed (see [`prune`]).
/// Returns the file's size in bytes. A file of the same sequence (a damaged
/// one a restore passed over) is replaced.
pub fn write(
    c: &CheckpointSettings,
    header: &CheckpointHeader,
    engine: &Engine,
) -> anyhow::Result<u64> {
    let link = Link::base_of(header.sequence);
    let (bytes, _) = write_file(c, header, &link, |w| engine.save_state(w))?;
    prune(c);
    Ok(bytes)
}

/// The chain a writer extends: a whole checkpoint (base), then deltas of
/// what changed since the checkpoint before, until a new base is due:
///
/// - the first checkpoint of a process (its engine lists no changes yet),
///   and the one after a failed write, are bases;
/// - so is the one after `checkpoint.max_deltas` deltas (bounding the files
///   a restore reads), or once the deltas since the base add up to the
///   base's own size (a restore then reads at most twice the state).
#[derive(Debug, Default)]
pub struct Chain {
    end: Option<ChainEnd>,
}

/// The newest checkpoint of a chain and what the chain holds.
#[derive(Clone, Copy, Debug)]
struct ChainEnd {
    base: u64,
    base_bytes: u64,
    delta_bytes: u64,
    deltas: u32,
    sequence: u64,
    checksum: u64,
}

/// What [`Chain::write`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// Bytes of the file.
    pub bytes: u64,
    /// A delta (else a base).
    pub delta: bool,
}

impl Chain {
    /// Write checkpoint `header.sequence` of `engine`: a delta on the chain's
    /// newest checkpoint, or a new base when one is due; then remove the
    /// checkpoints no longer needed (see [`prune`]).
    pub fn write(
        &mut self,
        c: &CheckpointSettings,
        header: &CheckpointHeader,
        engine: &mut Engine,
    ) -> anyhow::Result<Written> {
        let due = |e: &ChainEnd| {
            e.deltas >= c.max_deltas
                || e.delta_bytes >= e.base_bytes
                || e.sequence >= header.sequence
        };
        // Until this write is safe, the next one is a base.
        let end = self.end.take().filter(|e| !due(e) && engine.delta_ready());
        let written = match end {
            Some(end) => {
                let link = Link {
                    base: end.base,
                    previous: end.sequence,
                    previous_checksum: end.checksum,
                };
                let (bytes, checksum) = write_file(c, header, &link, |w| engine.save_delta(w))?;
                self.end = Some(ChainEnd {
                    delta_bytes: end.delta_bytes + bytes,
                    deltas: end.deltas + 1,
                    sequence: header.sequence,
                    checksum,
                    ..end
                });
                Written { bytes, delta: true }
            }
            None => {
                let link = Link::base_of(header.sequence);
                let (bytes, checksum) = write_file(c, header, &link, |w| engine.save_state(w))?;
                engine.start_tracking();
                self.end = Some(ChainEnd {
                    base: header.sequence,
                    base_bytes: bytes,
                    delta_bytes: 0,
                    deltas: 0,
                    sequence: header.sequence,
                    checksum,
                });
                Written {
                    bytes,
                    delta: false,
                }
            }
        };
        prune(c);
        Ok(written)
    }
}

/// Write one checkpoint file atomically: the header, `link`, then what
/// `body` writes. Returns the file's size and its payload checksum.
fn write_file(
    c: &CheckpointSettings,
    header: &CheckpointHeader,
    link: &Link,
    body: impl FnOnce(&mut BufWriter<Hashing<File>>) -> bincode::Result<()>,
) -> anyhow::Result<(u64, u64)> {
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
    bincode::serialize_into(&mut w, link).context("writing the checkpoint header")?;
    body(&mut w).context("writing the engine state")?;
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
    Ok((PREAMBLE + len, checksum))
}

/// Remove the checkpoints no longer needed: all but the newest `c.keep`,
/// except the files those build on (a kept delta needs its base and every
/// delta between). The new checkpoint is safe: a failure to remove an old
/// one costs disk space, not correctness, so it is reported and the stream
/// goes on.
pub fn prune(c: &CheckpointSettings) {
    let files = match list(&c.dir) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fraudstream: listing old checkpoints: {e:#}");
            return;
        }
    };
    let keep = c.keep.max(1);
    // The oldest sequence a kept checkpoint needs: its base's (a file whose
    // link cannot be read needs nothing older than itself).
    let oldest_needed = files
        .iter()
        .take(keep)
        .filter_map(|p| {
            let seq = sequence_in(&name_of(p))?;
            Some(read_link(p).map_or(seq, |l| l.base.min(seq)))
        })
        .min();
    for (i, old) in files.iter().enumerate() {
        let needed = match sequence_in(&name_of(old)) {
            Some(seq) => i < keep || oldest_needed.is_some_and(|n| seq >= n),
            None => i < keep,
        };
        if !needed {
            if let Err(e) = std::fs::remove_file(old) {
                eprintln!(
                    "fraudstream: removing the old checkpoint {}: {e}",
                    old.display()
                );
            }
        }
    }
}

/// The link of a checkpoint file, read without checking its checksum
/// (which [`prune`] does not need: it only decides what to keep).
fn read_link(path: &Path) -> Option<Link> {
    let file = File::open(path).ok()?;
    let size = file.metadata().ok()?.len();
    let mut r = BufReader::with_capacity(4096, file);
    let mut preamble = [0u8; PREAMBLE as usize];
    r.read_exact(&mut preamble).ok()?;
    if &preamble[..8] != MAGIC {
        return None;
    }
    let limit = size - PREAMBLE;
    let mut payload = r.take(limit);
    decode_header(&mut payload, limit).ok()?;
    let left = payload.limit();
    bounded(left).deserialize_from(&mut payload).ok()
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
    /// The deltas applied on its base to reach it (0 for a base).
    pub deltas: usize,
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
#[derive(Clone, Debug)]
enum Unreadable {
    /// Not what was written (cut short, altered, not a checkpoint), or a
    /// delta whose chain is broken: an older checkpoint may serve instead.
    Damaged(String),
    /// Whole, but not for this build or these settings: an older checkpoint
    /// would be refused for the same reason.
    Refused(String),
}

/// A checkpoint file whose length and checksum hold, with its header read.
#[derive(Clone, Debug)]
struct Checked {
    header: CheckpointHeader,
    link: Link,
    checksum: u64,
    /// Where the engine's state begins, and its bytes.
    body_at: u64,
    body_len: u64,
}

/// Restore the newest valid checkpoint in `dir` into `engine` (built from
/// `t`); `None` when there is none. A delta is restored as its base and the
/// deltas up to it. Damaged ones are passed over, newest first (see
/// [`Restored::fallbacks`]): a damaged delta falls back to the checkpoint
/// before it, the newest whole prefix of its chain, and a delta whose base
/// or an earlier delta is damaged or missing counts as damaged, saying which.
/// When every one is damaged, or one is refused (other settings, named key
/// by key, or another format), the error says so for each file. It never
/// starts afresh when checkpoints exist: that would lose the state and read
/// each input again from its `start`.
pub fn restore(dir: &Path, t: &Topology, engine: &mut Engine) -> anyhow::Result<Option<Restored>> {
    let files = list(dir)?;
    if files.is_empty() {
        return Ok(None);
    }
    let mut checked: std::collections::HashMap<PathBuf, Result<Checked, Unreadable>> =
        std::collections::HashMap::new();
    let mut damaged: Vec<(PathBuf, String)> = Vec::new();
    let passed_over = |damaged: &[(PathBuf, String)]| {
        damaged
            .iter()
            .map(|(p, why)| format!("{}: damaged ({why}); ", p.display()))
            .collect::<String>()
    };
    for path in files {
        let chain = match chain_of(&path, t, &mut checked) {
            Ok(chain) => chain,
            Err(Unreadable::Damaged(why)) => {
                damaged.push((path, why));
                continue;
            }
            Err(Unreadable::Refused(why)) => {
                anyhow::bail!("{}{}: {why}", passed_over(&damaged), path.display())
            }
        };
        match load_chain(&chain, t, engine) {
            Ok(()) => {
                let (_, newest) = chain.last().expect("a chain holds its checkpoint");
                return Ok(Some(Restored {
                    header: newest.header.clone(),
                    path,
                    deltas: chain.len() - 1,
                    damaged,
                }));
            }
            Err((at, why)) => {
                // That file is damaged in a way its checksum did not show
                // (a writer's bug): so is every checkpoint built on it.
                checked.insert(at.clone(), Err(Unreadable::Damaged(why.clone())));
                let why = if at == path {
                    why
                } else {
                    format!("it builds on {}, which is damaged ({why})", name_of(&at))
                };
                damaged.push((path, why));
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

/// The files to read to restore checkpoint `path`: its base first, each
/// delta after the one it was written after, each checked (`memo` keeps
/// what was checked, for the next candidate).
fn chain_of(
    path: &Path,
    t: &Topology,
    memo: &mut std::collections::HashMap<PathBuf, Result<Checked, Unreadable>>,
) -> Result<Vec<(PathBuf, Checked)>, Unreadable> {
    let mut chain: Vec<(PathBuf, Checked)> = Vec::new();
    let mut at = path.to_path_buf();
    let mut expected: Option<u64> = None;
    loop {
        let c = memo
            .entry(at.clone())
            .or_insert_with(|| check(&at, t))
            .clone();
        let c = match (c, chain.is_empty()) {
            (Ok(c), _) => c,
            (Err(e), true) => return Err(e),
            (Err(Unreadable::Damaged(why)), false) => {
                return Err(Unreadable::Damaged(format!(
                    "it builds on {}, which is damaged ({why})",
                    name_of(&at)
                )))
            }
            (Err(refused), false) => return Err(refused),
        };
        if let Some(sum) = expected {
            if c.checksum != sum {
                return Err(Unreadable::Damaged(format!(
                    "it builds on {}, which is another file than it was written after \
                     (checksum {:016x}, expected {sum:016x})",
                    name_of(&at),
                    c.checksum
                )));
            }
        }
        let link = c.link;
        chain.push((at.clone(), c));
        if link.is_base() {
            chain.reverse();
            return Ok(chain);
        }
        if link.previous >= chain.last().map_or(u64::MAX, |(_, c)| c.header.sequence)
            || link.base > link.previous
        {
            return Err(Unreadable::Damaged(format!(
                "its chain link is inconsistent (base {}, previous {})",
                link.base, link.previous
            )));
        }
        at = path_of(path.parent().unwrap_or(Path::new(".")), link.previous);
        if !at.exists() {
            return Err(Unreadable::Damaged(format!(
                "it builds on {}, which is missing",
                name_of(&at)
            )));
        }
        expected = Some(link.previous_checksum);
    }
}

/// Check and read the checkpoint in `bytes` into `engine` (built from `t`)
/// exactly as [`restore`] reads it as the one file of a directory (written
/// to a fresh temporary directory, removed afterwards); the error says why
/// it is damaged or refused. For tests and the fuzz targets: a restore
/// always reads files. A delta alone is damaged (its base is missing).
pub fn read_bytes(
    bytes: &[u8],
    t: &Topology,
    engine: &mut Engine,
) -> anyhow::Result<CheckpointHeader> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "fraudstream-read-bytes-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).context("a temporary directory")?;
    let read = std::fs::write(path_of(&dir, 1), bytes)
        .context("writing the bytes to a temporary file")
        .and_then(|()| restore(&dir, t, engine));
    let _ = std::fs::remove_dir_all(&dir);
    match read? {
        Some(r) if r.damaged.is_empty() => Ok(r.header),
        Some(r) => anyhow::bail!("{}", r.fallbacks().join("; ")),
        None => anyhow::bail!("no checkpoint"),
    }
}

/// Read a chain (base first) into `engine`; on failure, the file that did
/// not decode and why.
fn load_chain(
    chain: &[(PathBuf, Checked)],
    t: &Topology,
    engine: &mut Engine,
) -> Result<(), (PathBuf, String)> {
    let cfg = t.engine_config();
    for (i, (path, c)) in chain.iter().enumerate() {
        let fail = |e: String| (path.clone(), e);
        let file = File::open(path).map_err(|e| fail(format!("cannot be opened: {e}")))?;
        let mut r = BufReader::with_capacity((c.body_len as usize).clamp(1, 1 << 20), file);
        r.seek(SeekFrom::Start(c.body_at))
            .map_err(|e| fail(format!("cannot be read: {e}")))?;
        let mut body = r.take(c.body_len);
        let read = if i == 0 {
            engine.restore_state(&cfg, &mut body, c.body_len)
        } else {
            engine.apply_delta(&cfg, &mut body, c.body_len)
        };
        read.map_err(|e| fail(format!("the engine state does not decode: {e:#}")))?;
        if body.limit() != 0 {
            return Err(fail(format!(
                "{} bytes after the engine state",
                body.limit()
            )));
        }
    }
    Ok(())
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

/// Check one checkpoint file: its length and checksum, then its header,
/// settings, link and the engine state's layout version.
fn check(path: &Path, t: &Topology) -> Result<Checked, Unreadable> {
    use Unreadable::{Damaged, Refused};
    let io = |what: &str, e: std::io::Error| Damaged(format!("{what}: {e}"));
    let file = File::open(path).map_err(|e| io("cannot be opened", e))?;
    let size = file.metadata().map_err(|e| io("cannot be read", e))?.len();
    // Nothing is allocated from what the file says; the buffer is at most its size.
    let mut r = BufReader::with_capacity((size as usize).clamp(1, 1 << 20), file);
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
    let left = payload.limit();
    let link: Link = bounded(left)
        .deserialize_from(&mut payload)
        .map_err(|e| Damaged(format!("the chain link does not decode: {e}")))?;
    // The engine state begins with its layout version (a u32): one of
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
    let body_len = payload.limit() + 4;
    Ok(Checked {
        header,
        link,
        checksum,
        body_at: size - body_len,
        body_len,
    })
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
            lineage: 0,
            outputs: vec![],
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
            lineage: 0,
            outputs: vec![],
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
            err.contains("damaged (cut short or its length damaged"),
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
            ("FSCKPT3", "checkpoint-000000000008.bin", "an older"),
            ("FSCKPT5", "checkpoint-000000000009.bin", "a newer"),
        ] {
            let path = dir.path().join(file);
            std::fs::write(&path, format!("{magic}\nolder layout")).unwrap();
            let err = restore_error(dir.path(), &t);
            assert_eq!(
                err.split(": run").next().unwrap(),
                format!(
                    "{}: written by {by} fraudstream (format {magic}); this version reads FSCKPT4",
                    path.display()
                )
            );
            std::fs::remove_file(path).unwrap();
        }
        // An engine snapshot of another layout, in an intact file.
        let mut e = start_engine(&t).unwrap();
        write(&keep_in(dir.path(), 3), &header(&t, 1), &e).unwrap();
        let at = PREAMBLE as usize
            + bincode::serialized_size(&header(&t, 1)).unwrap() as usize
            + bincode::serialized_size(&Link::base_of(1)).unwrap() as usize;
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

    fn state_of(e: &Engine) -> Vec<u8> {
        let mut v = Vec::new();
        e.save_state(&mut v).unwrap();
        v
    }

    /// A run with checkpoints 1..=n written through a [`Chain`] under `c`:
    /// the first after half of the transactions, then one every twentieth;
    /// the live engine's whole state at each checkpoint, the
    /// items, where checkpoint n was written, and the live engine.
    fn chained(
        t: &Topology,
        c: &CheckpointSettings,
        n: u64,
    ) -> (Vec<Vec<u8>>, Vec<SourceItem>, usize, Engine) {
        let items: Vec<SourceItem> = build_source(t).unwrap().collect();
        let mut e = start_engine(t).unwrap();
        let mut chain = Chain::default();
        // Over the transactions (the labels still due come after them).
        let scored = items
            .iter()
            .rposition(|i| matches!(i, SourceItem::Event(Event::Transaction(_))))
            .unwrap();
        let (half, step) = (scored / 2, scored / 20);
        let (mut states, mut scores) = (Vec::new(), Vec::new());
        for seq in 1..=n {
            let (from, to) = match seq {
                1 => (0, half),
                _ => (
                    half + (seq as usize - 2) * step,
                    half + (seq as usize - 1) * step,
                ),
            };
            feed(&mut e, &items[from..to], &mut scores);
            let w = chain.write(c, &header(t, seq), &mut e).unwrap();
            assert_eq!(
                w.bytes,
                std::fs::metadata(path_of(&c.dir, seq)).unwrap().len()
            );
            states.push(state_of(&e));
        }
        (states, items, half + (n as usize - 1) * step, e)
    }

    fn link_of(dir: &Path, seq: u64) -> Link {
        read_link(&path_of(dir, seq)).unwrap()
    }

    #[test]
    fn a_chain_restores_its_newest_checkpoint_byte_for_byte_and_scores_on_alike() {
        let t = topology();
        let dir = tempfile::tempdir().unwrap();
        let c = keep_in(dir.path(), 3);
        let (states, items, at, mut live) = chained(&t, &c, 4);
        assert_eq!(link_of(dir.path(), 1), Link::base_of(1));
        let l4 = link_of(dir.path(), 4);
        assert_eq!((l4.base, l4.previous), (1, 3), "deltas on the base");
        let size = |s| std::fs::metadata(path_of(dir.path(), s)).unwrap().len();
        assert!(
            size(4) < size(1),
            "a delta {} vs its base {}",
            size(4),
            size(1)
        );

        let mut back = start_engine(&t).unwrap();
        let r = restore(dir.path(), &t, &mut back).unwrap().unwrap();
        assert_eq!((r.header.sequence, r.deltas), (4, 3));
        assert!(r.damaged.is_empty());
        assert_eq!(state_of(&back), states[3], "the live state, byte for byte");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        feed(&mut live, &items[at..], &mut a);
        feed(&mut back, &items[at..], &mut b);
        assert!(!a.is_empty());
        assert_eq!(a, b, "same scores, bit for bit");
        assert_eq!(state_of(&back), state_of(&live));
    }

    #[test]
    fn a_damaged_delta_falls_back_to_the_newest_whole_prefix_of_its_chain() {
        let t = topology();
        let dir = tempfile::tempdir().unwrap();
        let (states, ..) = chained(&t, &keep_in(dir.path(), 5), 4);
        edit(&path_of(dir.path(), 3), |b| {
            let i = b.len() - 5;
            b[i] ^= 0x01;
        });
        let mut back = start_engine(&t).unwrap();
        let r = restore(dir.path(), &t, &mut back).unwrap().unwrap();
        assert_eq!((r.header.sequence, r.deltas), (2, 1));
        assert_eq!(state_of(&back), states[1], "the state of checkpoint 2");
        let lines = r.fallbacks();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].contains("checkpoint-000000000004.bin: damaged (it builds on checkpoint-000000000003.bin, which is damaged (checksum mismatch")
                && lines[0].ends_with("falling back to checkpoint-000000000003.bin"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].contains("checkpoint-000000000003.bin: damaged (checksum mismatch")
                && lines[1].ends_with("falling back to checkpoint-000000000002.bin"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn deltas_whose_base_is_missing_are_passed_over_saying_so() {
        let t = topology();
        let dir = tempfile::tempdir().unwrap();
        chained(&t, &keep_in(dir.path(), 5), 3);
        std::fs::remove_file(path_of(dir.path(), 1)).unwrap();
        let err = restore_error(dir.path(), &t);
        for seq in [3, 2] {
            let file = path_of(dir.path(), seq);
            assert!(
                err.contains(&format!(
                    "{}: damaged (it builds on checkpoint-000000000001.bin, which is missing)",
                    file.display()
                )) || err.contains(&format!(
                    "{}: damaged (it builds on checkpoint-000000000002.bin, which is damaged (it builds on checkpoint-000000000001.bin, which is missing))",
                    file.display()
                )),
                "{err}"
            );
        }
        assert!(err.contains("not starting from a fresh state"), "{err}");
    }

    #[test]
    fn a_delta_applies_only_on_the_file_it_was_written_after() {
        let t = topology();
        let dir = tempfile::tempdir().unwrap();
        chained(&t, &keep_in(dir.path(), 5), 2);
        // Another base takes sequence 1 (a restore fell back past it and the
        // writer went on from there, say): delta 2 must not apply on it.
        let other = start_engine(&t).unwrap();
        write(&keep_in(dir.path(), 5), &header(&t, 1), &other).unwrap();
        let mut back = start_engine(&t).unwrap();
        let r = restore(dir.path(), &t, &mut back).unwrap().unwrap();
        assert_eq!(r.header.sequence, 1);
        assert_eq!(state_of(&back), state_of(&other));
        assert!(
            r.damaged[0].1.starts_with(
                "it builds on checkpoint-000000000001.bin, which is another file than it was \
                 written after"
            ),
            "{:?}",
            r.damaged
        );
    }

    #[test]
    fn a_base_is_kept_while_a_kept_delta_needs_it() {
        let t = topology();
        let dir = tempfile::tempdir().unwrap();
        let c = CheckpointSettings {
            max_deltas: 3,
            ..keep_in(dir.path(), 2)
        };
        let items: Vec<SourceItem> = build_source(&t).unwrap().collect();
        let mut e = start_engine(&t).unwrap();
        let mut chain = Chain::default();
        let files = |dir: &Path| -> Vec<u64> {
            let mut v: Vec<u64> = list(dir)
                .unwrap()
                .iter()
                .filter_map(|p| sequence_in(&name_of(p)))
                .collect();
            v.sort_unstable();
            v
        };
        let mut kinds = Vec::new();
        feed(&mut e, &items[..items.len() / 2], &mut Vec::new());
        for seq in 1..=6u64 {
            let at = items.len() / 2 + seq as usize * 50;
            feed(&mut e, &items[at - 50..at], &mut Vec::new());
            kinds.push(chain.write(&c, &header(&t, seq), &mut e).unwrap().delta);
            if seq == 4 {
                assert_eq!(files(dir.path()), [1, 2, 3, 4], "3 and 4 need 1 and 2");
            }
        }
        assert_eq!(
            kinds,
            [false, true, true, true, false, true],
            "a base after 3 deltas"
        );
        assert_eq!(
            files(dir.path()),
            [5, 6],
            "the first chain is no longer needed"
        );
        // A base at every checkpoint: keep the newest two.
        let every = CheckpointSettings { max_deltas: 0, ..c };
        for seq in 7..=9 {
            assert!(!chain.write(&every, &header(&t, seq), &mut e).unwrap().delta);
        }
        assert_eq!(files(dir.path()), [8, 9]);
    }
}
