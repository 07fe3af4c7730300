//! The Fluvio cluster: where it is (topology, then `FLUVIO_SC_ADDR`, then the
//! user's Fluvio profile), connecting with retries, and the admin calls the
//! engine needs (creating topics, partition counts and high watermarks).

use crate::config::{FluvioSettings, LabelSource, SourceConfig, Topology};
use anyhow::{bail, Context};
use fluvio::metadata::partition::PartitionSpec;
use fluvio::metadata::topic::TopicSpec;
use fluvio::{Fluvio, FluvioClusterConfig};
use std::time::Duration;

/// Environment variable naming the SC address when the topology does not.
pub const ADDRESS_ENV: &str = "FLUVIO_SC_ADDR";

/// Where the cluster address came from (for messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressSource {
    /// `[fluvio] address`.
    Topology,
    /// `FLUVIO_SC_ADDR`.
    Environment,
    /// The current Fluvio profile.
    Profile,
}

/// The cluster to connect to and where that was decided.
#[derive(Clone, Debug)]
pub struct ClusterAddress {
    /// Client configuration.
    pub config: FluvioClusterConfig,
    /// Its origin.
    pub source: AddressSource,
}

impl std::fmt::Display for ClusterAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let from = match self.source {
            AddressSource::Topology => "fluvio.address in the topology",
            AddressSource::Environment => ADDRESS_ENV,
            AddressSource::Profile => "the current Fluvio profile",
        };
        write!(f, "{} (from {from})", self.config.endpoint)
    }
}

/// Resolve the cluster address: topology, then `FLUVIO_SC_ADDR`, then profile.
pub fn resolve(settings: &FluvioSettings) -> anyhow::Result<ClusterAddress> {
    if let Some(a) = &settings.address {
        return Ok(ClusterAddress {
            config: FluvioClusterConfig::new(a.clone()),
            source: AddressSource::Topology,
        });
    }
    if let Some(a) = std::env::var(ADDRESS_ENV)
        .ok()
        .filter(|a| !a.trim().is_empty())
    {
        return Ok(ClusterAddress {
            config: FluvioClusterConfig::new(a.trim().to_string()),
            source: AddressSource::Environment,
        });
    }
    match FluvioClusterConfig::load() {
        Ok(config) => Ok(ClusterAddress {
            config,
            source: AddressSource::Profile,
        }),
        Err(e) => bail!(
            "no Fluvio cluster address: set fluvio.address in the topology, or {ADDRESS_ENV}, \
             or create a Fluvio profile (`fluvio profile add`) ({e})"
        ),
    }
}

/// Connect, retrying with exponential backoff; the error names the address.
pub async fn connect(settings: &FluvioSettings) -> anyhow::Result<(Fluvio, ClusterAddress)> {
    let address = resolve(settings)?;
    let mut wait = Duration::from_millis(settings.connect_backoff_ms.max(1) as u64);
    let attempts = settings.connect_attempts.max(1);
    let mut last = String::new();
    for attempt in 1..=attempts {
        match Fluvio::connect_with_config(&address.config).await {
            Ok(f) => return Ok((f, address)),
            Err(e) => {
                last = format!("{e:#}");
                if attempt < attempts {
                    eprintln!(
                        "fraudstream: cannot reach the Fluvio cluster at {address} \
                         (attempt {attempt} of {attempts}): {last}; retrying in {wait:?}"
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
    bail!("cannot reach the Fluvio cluster at {address} after {attempts} attempts: {last}")
}

/// A topic a topology reads or writes, with its partition count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicNeed {
    /// Topic.
    pub name: String,
    /// Partitions.
    pub partitions: u32,
    /// Who needs it (`source`, `labels`, `sinks.ID`).
    pub role: String,
}

/// Every Fluvio topic a topology names (first mention wins for a topic named twice).
pub fn topics_of(t: &Topology) -> Vec<TopicNeed> {
    let mut out: Vec<TopicNeed> = Vec::new();
    let mut add = |name: &str, partitions: u32, role: String| {
        if !out.iter().any(|n| n.name == name) {
            out.push(TopicNeed {
                name: name.to_string(),
                partitions,
                role,
            });
        }
    };
    if let SourceConfig::Fluvio(f) = &t.source {
        add(&f.topic, f.topic_partitions, "source".into());
    }
    if let LabelSource::Fluvio(f) = &t.labels.source {
        add(&f.topic, f.topic_partitions, "labels".into());
    }
    for s in &t.sinks {
        if let Some(o) = s.topic() {
            add(&o.topic, o.topic_partitions, format!("sinks.{}", s.id()));
        }
    }
    out
}

/// What `create_topics` did with one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicOutcome {
    /// Created now.
    Created,
    /// Already there with the wanted partition count.
    Exists,
    /// Already there with another partition count (left alone).
    ExistsWithPartitions(u32),
}

/// Create the topics `needs` lists that do not exist yet (idempotent).
pub async fn create_topics(
    fluvio: &Fluvio,
    needs: &[TopicNeed],
) -> anyhow::Result<Vec<(TopicNeed, TopicOutcome)>> {
    let admin = fluvio.admin().await;
    let mut out = Vec::new();
    for need in needs {
        let existing = admin
            .list::<TopicSpec, String>(vec![need.name.clone()])
            .await
            .with_context(|| format!("listing topic {}", need.name))?;
        let outcome = match existing.iter().find(|m| m.name == need.name) {
            Some(m) => {
                let have = m.spec.partitions();
                if have == need.partitions {
                    TopicOutcome::Exists
                } else {
                    TopicOutcome::ExistsWithPartitions(have)
                }
            }
            None => {
                admin
                    .create(
                        need.name.clone(),
                        false,
                        TopicSpec::new_computed(need.partitions, 1, None),
                    )
                    .await
                    .with_context(|| format!("creating topic {}", need.name))?;
                TopicOutcome::Created
            }
        };
        out.push((need.clone(), outcome));
    }
    Ok(out)
}

/// Partition count of `topic`; an error naming the topic when it is missing.
pub async fn partition_count(fluvio: &Fluvio, topic: &str) -> anyhow::Result<u32> {
    let admin = fluvio.admin().await;
    let list = admin
        .list::<TopicSpec, String>(vec![topic.to_string()])
        .await
        .with_context(|| format!("looking up topic {topic}"))?;
    match list.iter().find(|m| m.name == topic) {
        Some(m) => Ok(m.spec.partitions()),
        None => bail!(
            "topic {topic} does not exist (create it with `fraudstream topics create TOPOLOGY`)"
        ),
    }
}

/// (partition, first offset held, high watermark = offset of the next record)
/// of each partition of `topic`, by partition.
pub async fn high_watermarks(fluvio: &Fluvio, topic: &str) -> anyhow::Result<Vec<(u32, i64, i64)>> {
    let admin = fluvio.admin().await;
    let parts = admin
        .all::<PartitionSpec>()
        .await
        .with_context(|| format!("listing the partitions of {topic}"))?;
    let prefix = format!("{topic}-");
    let mut out: Vec<(u32, i64, i64)> = parts
        .iter()
        .filter_map(|m| {
            let p: u32 = m.name.strip_prefix(&prefix)?.parse().ok()?;
            Some((p, m.status.base_offset.max(0), m.status.leader.hw.max(0)))
        })
        .collect();
    out.sort_unstable();
    Ok(out)
}
