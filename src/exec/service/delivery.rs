//! Effectively-once outputs: after a crash, no output record is produced
//! twice.
//!
//! A restart replays the inputs from the checkpoint's offsets, and the
//! engine, restored to the checkpoint's state, produces the same outputs
//! for them again. Some of those were produced before the crash. So:
//!
//! - every output record names the input record it came from and the state
//!   lineage that produced it (`"input": "TOPIC/PARTITION@OFFSET"`,
//!   `"lineage": "HEX"`, see [`Provenance`](crate::connectors::sinks::Provenance)); a fresh state draws a new
//!   lineage, restores keep it;
//! - every checkpoint stores, per output partition, the offset after this
//!   lineage's last acknowledged record ([`advance`]), and a fresh state
//!   stores each partition's end as it begins ([`baseline`]);
//! - a restart reads each output partition from there to its end
//!   ([`read_back`]): the inputs named by this lineage's records are
//!   skipped when the replay produces them again, once each, per sink.
//!
//! Records of another lineage (an earlier state of the same directory
//! that was moved away, another instance writing to the same topic) are
//! read and passed over. The cost is one read of what was produced since
//! the last checkpoint, at start.

use crate::config::Records;
use crate::connectors::cluster::{end_offset, high_watermarks, partition_count};
use crate::connectors::sinks::{HeldKey, SinkRouter};
use crate::connectors::sources::fluvio::FluvioSource;
use crate::connectors::sources::SourceOffset;
use anyhow::Context;
use fluvio::consumer::ConsumerConfigExt;
use fluvio::{Fluvio, Offset};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Longest wait for the next record while reading outputs back.
const READ_WAIT: Duration = Duration::from_secs(2);
/// Reopenings of one partition's stream before reading back gives up.
const MAX_REOPEN: u32 = 20;
/// Bytes per fetch while reading back.
const READ_FETCH_BYTES: i32 = 16 << 20;

/// A new lineage id: the wall clock and the process id, mixed.
pub fn new_lineage() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut z = nanos ^ (u64::from(std::process::id()) << 40) ^ 0x9e37_79b9_7f4a_7c15;
    // splitmix64's finaliser
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49eb_133b_a111);
    (z ^ (z >> 31)).max(1)
}

/// Where a fresh lineage begins: the end of every partition of every
/// output topic, now.
pub async fn baseline(fluvio: &Fluvio, sinks: &SinkRouter) -> anyhow::Result<Vec<SourceOffset>> {
    let mut out = Vec::new();
    for topic in topics(sinks) {
        for (partition, _, hw) in high_watermarks(fluvio, &topic).await? {
            out.push(SourceOffset {
                topic: topic.clone(),
                partition,
                next: hw,
            });
        }
    }
    Ok(out)
}

/// Move the stored output positions past every record the sinks had
/// acknowledged (call after a flush, before the checkpoint is written).
pub fn advance(outputs: &mut Vec<SourceOffset>, sinks: &SinkRouter) {
    for s in sinks.sinks() {
        let Some(topic) = s.topic() else { continue };
        for (partition, next) in s.acknowledged() {
            match outputs
                .iter_mut()
                .find(|o| o.topic == topic && o.partition == partition)
            {
                Some(o) => o.next = o.next.max(next),
                None => outputs.push(SourceOffset {
                    topic: topic.to_string(),
                    partition,
                    next,
                }),
            }
        }
    }
}

/// What [`read_back`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ReadBack {
    /// Output records read.
    pub records: u64,
    /// Of them, produced by this lineage after the checkpoint (to skip).
    pub ours: u64,
    /// Time taken.
    pub seconds: f64,
}

/// Read every output partition from the checkpoint's position to its end
/// and tell the router which outputs of this `lineage` it already holds.
pub async fn read_back(
    fluvio: &Fluvio,
    outputs: &[SourceOffset],
    lineage: u64,
    source: &FluvioSource,
    sinks: &mut SinkRouter,
) -> anyhow::Result<ReadBack> {
    let began = Instant::now();
    let mut found = ReadBack::default();
    let ids: Vec<(usize, String, bool)> = sinks
        .sinks()
        .enumerate()
        .filter_map(|(i, s)| {
            // Stage records name their partition (Output::own_partition).
            let own = matches!(s.records(), Records::Stage | Records::Learn);
            Some((i, s.topic()?.to_string(), own))
        })
        .collect();
    for (i, topic, own_partition) in ids {
        let mut keys = HashMap::new();
        let count = partition_count(fluvio, &topic).await?;
        let ends = high_watermarks(fluvio, &topic).await?;
        for partition in 0..count {
            // A partition with no stored position (added since) is read
            // from its start: any record of ours in it is after the checkpoint.
            let (base, admin_end) = ends
                .iter()
                .find(|e| e.0 == partition)
                .map_or((0, 0), |e| (e.1, e.2));
            // Records before the log's start are gone (retention).
            let from = outputs
                .iter()
                .find(|o| o.topic == topic && o.partition == partition)
                .map_or(base, |o| o.next.max(base));
            let end = end_offset(fluvio, &topic, partition)
                .await?
                .unwrap_or(0)
                .max(admin_end);
            let (records, ours) = read_partition(
                fluvio,
                &topic,
                partition,
                from,
                end,
                |value| {
                    let (input, offset) = ours_in(value, lineage)?;
                    let key = source.key_of(input, offset)?;
                    Some((key, if own_partition { partition } else { 0 }))
                },
                &mut keys,
            )
            .await
            .with_context(|| {
                format!("reading back the outputs in {topic} partition {partition}")
            })?;
            found.records += records;
            found.ours += ours;
        }
        sinks.suppress(i, keys);
    }
    found.seconds = began.elapsed().as_secs_f64();
    Ok(found)
}

/// The names of the output topics.
fn topics(sinks: &SinkRouter) -> Vec<String> {
    let mut out: Vec<String> = sinks
        .sinks()
        .filter_map(|s| s.topic())
        .map(String::from)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Read records `from..end` of one partition, passing each value to
/// `key_of`; the keys it gives are counted in `keys` (one input may have
/// several records in one partition: a transaction's vectors). (records
/// read, keys found)
async fn read_partition(
    fluvio: &Fluvio,
    topic: &str,
    partition: u32,
    from: i64,
    end: i64,
    key_of: impl Fn(&[u8]) -> Option<HeldKey>,
    keys: &mut HashMap<HeldKey, u32>,
) -> anyhow::Result<(u64, u64)> {
    let (mut next, mut records, mut ours, mut reopened) = (from, 0u64, 0u64, 0u32);
    'open: while next < end {
        let cfg = ConsumerConfigExt::builder()
            .topic(topic.to_string())
            .partition(partition)
            .offset_start(Offset::absolute(next)?)
            .max_bytes(READ_FETCH_BYTES)
            .build()?;
        let mut stream = fluvio.consumer_with_config(cfg).await?;
        while next < end {
            match tokio::time::timeout(READ_WAIT, stream.next()).await {
                Ok(Some(Ok(r))) => {
                    let offset = r.offset();
                    if offset < next {
                        continue;
                    }
                    if offset > next {
                        // The client skipped a batch (see the Fluvio source): read it again.
                        reopened += 1;
                        anyhow::ensure!(reopened <= MAX_REOPEN, "records {next}.. never arrived");
                        continue 'open;
                    }
                    next = offset + 1;
                    records += 1;
                    if let Some(k) = key_of(r.value()) {
                        *keys.entry(k).or_insert(0) += 1;
                        ours += 1;
                    }
                }
                Ok(Some(Err(e))) => anyhow::bail!("{e:?}"),
                Ok(None) | Err(_) => {
                    // Ended or stalled before the end: read on from where it stopped.
                    reopened += 1;
                    anyhow::ensure!(
                        reopened <= MAX_REOPEN,
                        "records {next}..{end} never arrived"
                    );
                    continue 'open;
                }
            }
        }
    }
    Ok((records, ours))
}

/// The input a record of `lineage` came from: (`topic/partition`, offset).
fn ours_in(value: &[u8], lineage: u64) -> Option<(&str, i64)> {
    #[derive(serde::Deserialize)]
    struct Tagged<'a> {
        #[serde(borrow)]
        input: Option<&'a str>,
        #[serde(borrow)]
        lineage: Option<&'a str>,
    }
    let t: Tagged = serde_json::from_slice(value).ok()?;
    if u64::from_str_radix(t.lineage?, 16).ok()? != lineage {
        return None;
    }
    let (input, offset) = t.input?.rsplit_once('@')?;
    Some((input, offset.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_names_its_input_only_for_its_own_lineage() {
        let rec = br#"{"tx_id":7,"score":0.1,"input":"tx/3@1234","lineage":"00000000000000ab"}"#;
        assert_eq!(ours_in(rec, 0xab), Some(("tx/3", 1234)));
        assert_eq!(ours_in(rec, 0xac), None, "another lineage");
        assert_eq!(ours_in(br#"{"tx_id":7}"#, 0xab), None, "untagged");
        assert_eq!(ours_in(b"not json", 0xab), None);
        let bad = br#"{"input":"tx/3@x","lineage":"ab"}"#;
        assert_eq!(ours_in(bad, 0xab), None, "offset not a number");
    }

    #[test]
    fn lineages_differ_between_draws() {
        let a = new_lineage();
        std::thread::sleep(Duration::from_millis(1));
        assert_ne!(a, new_lineage());
        assert_ne!(a, 0);
    }
}
