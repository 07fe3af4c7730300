//! The Fluvio cluster: where it is (topology, then `FLUVIO_SC_ADDR`, then the
//! user's Fluvio profile), connecting with retries, and the admin calls the
//! engine needs (creating topics, partition counts and high watermarks) or a
//! deployment needs (registering a custom SPU).

use crate::config::{FluvioSettings, LabelSource, SourceConfig, Topology};
use anyhow::{bail, Context};
use fluvio::metadata::customspu::{CustomSpuKey, CustomSpuSpec};
use fluvio::metadata::partition::PartitionSpec;
use fluvio::metadata::topic::TopicSpec;
use fluvio::{Fluvio, FluvioClusterConfig};
use fluvio_controlplane_metadata::spu::{Endpoint, IngressPort};
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
    /// A flag of the command (`--sc`).
    CommandLine,
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
            AddressSource::CommandLine => "the command line",
        };
        write!(f, "{} (from {from})", self.config.endpoint)
    }
}

/// Resolve the cluster address: topology, then `FLUVIO_SC_ADDR`, then profile.
/// `fluvio.use_spu_local_address = true` makes the client reach SPUs at
/// their registered local address (a profile may also say so itself).
pub fn resolve(settings: &FluvioSettings) -> anyhow::Result<ClusterAddress> {
    let mut address = resolve_endpoint(settings)?;
    if settings.use_spu_local_address {
        address.config.use_spu_local_address = true;
    }
    Ok(address)
}

fn resolve_endpoint(settings: &FluvioSettings) -> anyhow::Result<ClusterAddress> {
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
    connect_to(resolve(settings)?, settings).await
}

/// Connect to `address`, with the retries of `settings`.
pub async fn connect_to(
    address: ClusterAddress,
    settings: &FluvioSettings,
) -> anyhow::Result<(Fluvio, ClusterAddress)> {
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
    if let Some(s) = &t.stages {
        add(&s.input.topic, s.input.topic_partitions, "stages".into());
        if let Some((learn, _)) = &s.learn {
            add(&learn.topic, 1, "stages.learn_topic".into());
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

/// A `host:port` address of an SPU server (checked when parsed, so a bad
/// command line fails before anything connects).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or IP address, as clients will dial it.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl std::str::FromStr for HostPort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?}: expected HOST:PORT"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{s:?}: the port {port:?} is not a number from 1 to 65535"))?;
        if host.is_empty() || port == 0 {
            return Err(format!(
                "{s:?}: expected HOST:PORT with a host and a port above 0"
            ));
        }
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A custom SPU to register with the SC: what `fluvio cluster spu register`
/// does, for deployments whose images have no `fluvio` CLI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpuRegistration {
    /// The SPU's id (its `fluvio-run spu -i`).
    pub id: i32,
    /// Its name in the SC (`custom-spu-ID` by default, as the Fluvio CLI names it).
    pub name: String,
    /// Where clients reach its public server.
    pub public: HostPort,
    /// Where clients that set `use_spu_local_address` reach it instead.
    pub local: Option<HostPort>,
    /// Where other SPUs reach its private server.
    pub private: HostPort,
}

impl SpuRegistration {
    /// The SC's spec of this registration.
    pub fn spec(&self) -> CustomSpuSpec {
        CustomSpuSpec {
            id: self.id,
            public_endpoint: IngressPort::from_port_host(
                self.public.port,
                self.public.host.clone(),
            ),
            public_endpoint_local: self
                .local
                .as_ref()
                .map(|l| Endpoint::from_port_host(l.port, l.host.clone())),
            private_endpoint: Endpoint::from_port_host(
                self.private.port,
                self.private.host.clone(),
            ),
            rack: None,
        }
    }
}

/// One registered custom SPU, described for messages.
pub fn describe_spu(name: &str, spec: &CustomSpuSpec) -> String {
    let local = match &spec.public_endpoint_local {
        Some(l) => format!("{}:{}", l.host, l.port),
        None => "none".into(),
    };
    format!(
        "{name} (id {}): public {}, local {local}, private {}:{}",
        spec.id,
        spec.public_endpoint.addr(),
        spec.private_endpoint.host,
        spec.private_endpoint.port
    )
}

/// What `register_spu` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpuOutcome {
    /// Registered now.
    Registered,
    /// Already registered with the same id, name and addresses.
    Exists,
    /// A custom SPU with this id or name is registered with other settings
    /// (left as it is); its description.
    Conflicts(String),
}

/// Register `spu` as a custom SPU unless it is already (idempotent).
pub async fn register_spu(fluvio: &Fluvio, spu: &SpuRegistration) -> anyhow::Result<SpuOutcome> {
    let admin = fluvio.admin().await;
    let want = spu.spec();
    let registered = |list: &[fluvio::metadata::objects::Metadata<CustomSpuSpec>]| {
        list.iter()
            .find(|m| m.name == spu.name || m.spec.id == spu.id)
            .map(|m| {
                if m.name == spu.name && m.spec == want {
                    SpuOutcome::Exists
                } else {
                    SpuOutcome::Conflicts(describe_spu(&m.name, &m.spec))
                }
            })
    };
    let list = admin
        .all::<CustomSpuSpec>()
        .await
        .context("listing the custom SPUs")?;
    if let Some(outcome) = registered(&list) {
        return Ok(outcome);
    }
    if let Err(e) = admin.create(spu.name.clone(), false, want.clone()).await {
        // Another registration may have won the race: say what is there.
        let list = admin.all::<CustomSpuSpec>().await.unwrap_or_default();
        return match registered(&list) {
            Some(outcome) => Ok(outcome),
            None => Err(e).with_context(|| format!("registering custom SPU {}", spu.name)),
        };
    }
    Ok(SpuOutcome::Registered)
}

/// Remove the custom SPU `name` (tests clean up with it).
pub async fn unregister_spu(fluvio: &Fluvio, name: &str) -> anyhow::Result<()> {
    fluvio
        .admin()
        .await
        .delete::<CustomSpuSpec>(CustomSpuKey::Name(name.to_string()))
        .await
        .with_context(|| format!("unregistering custom SPU {name}"))
}

/// How long [`end_offset`] waits for a partition's last record.
const END_PROBE_WAIT: std::time::Duration = std::time::Duration::from_millis(300);

/// A partition's end as its leader sees it now: the offset after its last
/// record, found by reading that record (the partition list that
/// [`high_watermarks`] reads can lag behind the leader by a moment). `None`
/// when no record arrives within a short wait: the partition is empty.
pub async fn end_offset(
    fluvio: &Fluvio,
    topic: &str,
    partition: u32,
) -> anyhow::Result<Option<i64>> {
    use fluvio::consumer::ConsumerConfigExt;
    use futures_util::StreamExt;
    let cfg = ConsumerConfigExt::builder()
        .topic(topic.to_string())
        .partition(partition)
        .offset_start(fluvio::Offset::from_end(1))
        .build()?;
    let mut stream = fluvio
        .consumer_with_config(cfg)
        .await
        .with_context(|| format!("opening {topic} partition {partition}"))?;
    Ok(
        match tokio::time::timeout(END_PROBE_WAIT, stream.next()).await {
            Ok(Some(Ok(r))) => Some(r.offset() + 1),
            Ok(Some(Err(e))) => anyhow::bail!("reading {topic} partition {partition}: {e:?}"),
            Ok(None) | Err(_) => None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_and_learn_topics_are_created_with_the_rest() {
        let text = "[source]\ntype = \"fluvio\"\ntopic = \"tx\"\ntopic_partitions = 3\n\
                    [stages]\ntopic = \"st\"\ncard_partitions = 4\nlearn_topic = \"learn\"\n";
        let t = Topology::from_toml("st.toml", text, &[]).unwrap_or_else(|e| panic!("{e}"));
        let needs: Vec<(String, u32)> = topics_of(&t)
            .into_iter()
            .map(|n| (n.name, n.partitions))
            .collect();
        assert_eq!(
            needs,
            [("tx".into(), 3), ("st".into(), 12), ("learn".into(), 1)]
        );
    }

    #[test]
    fn host_port_parses_and_rejects() {
        let hp: HostPort = "spu:9010".parse().unwrap();
        assert_eq!((hp.host.as_str(), hp.port), ("spu", 9010));
        assert_eq!(hp.to_string(), "spu:9010");
        for bad in ["spu", "spu:", ":9010", "spu:0", "spu:70000", "spu:x"] {
            assert!(bad.parse::<HostPort>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn registration_spec_carries_every_address() {
        let r = SpuRegistration {
            id: 5001,
            name: "custom-spu-5001".into(),
            public: "127.0.0.1:9110".parse().unwrap(),
            local: Some("spu:9010".parse().unwrap()),
            private: "spu:9011".parse().unwrap(),
        };
        let spec = r.spec();
        assert_eq!(spec.id, 5001);
        assert_eq!(spec.public_endpoint.addr(), "127.0.0.1:9110");
        let local = spec.public_endpoint_local.as_ref().unwrap();
        assert_eq!((local.host.as_str(), local.port), ("spu", 9010));
        assert_eq!(
            (
                spec.private_endpoint.host.as_str(),
                spec.private_endpoint.port
            ),
            ("spu", 9011)
        );
        assert_eq!(
            describe_spu(&r.name, &spec),
            "custom-spu-5001 (id 5001): public 127.0.0.1:9110, local spu:9010, private spu:9011"
        );
    }
}
