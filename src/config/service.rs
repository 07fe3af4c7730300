//! Settings of the long-running service: the Fluvio cluster (`[fluvio]`),
//! Fluvio topic inputs and outputs, checkpoints (`[checkpoint]`) and the
//! HTTP endpoint (`[service]`).

use super::reader::Section;
use fraudstream_engine::Named;

/// Default address of the health and metrics endpoint.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

/// The Fluvio cluster (`[fluvio]`).
#[derive(Clone, Debug, PartialEq)]
pub struct FluvioSettings {
    /// SC address; when absent, `FLUVIO_SC_ADDR`, then the Fluvio profile.
    pub address: Option<String>,
    /// Connection attempts before giving up.
    pub connect_attempts: u32,
    /// Wait before the first retry (doubling each time, at most 10 s).
    pub connect_backoff_ms: i64,
    /// Reach SPUs at the local address they were registered with (for
    /// clients on the SPU's own network, e.g. the compose demo's containers).
    pub use_spu_local_address: bool,
}

impl Default for FluvioSettings {
    fn default() -> Self {
        FluvioSettings {
            address: None,
            connect_attempts: 6,
            connect_backoff_ms: 500,
            use_spu_local_address: false,
        }
    }
}

/// Where a consumer starts when no checkpoint says otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The first record still held.
    Beginning,
    /// Only records produced from now on.
    End,
    /// After the last offset the named consumer committed (the beginning when
    /// it never committed).
    Committed,
}

impl Named for StartAt {
    const ALL: &'static [Self] = &[StartAt::Beginning, StartAt::End, StartAt::Committed];
    fn name(self) -> &'static str {
        match self {
            StartAt::Beginning => "beginning",
            StartAt::End => "end",
            StartAt::Committed => "committed",
        }
    }
}

/// A Fluvio topic read by the engine (`[source]` or `[labels]` with
/// `type = "fluvio"`).
#[derive(Clone, Debug, PartialEq)]
pub struct FluvioInput {
    /// Topic.
    pub topic: String,
    /// Partitions to read; empty: all of them.
    pub partitions: Vec<u32>,
    /// Partitions the topic is created with (`fraudstream topics create`).
    pub topic_partitions: u32,
    /// Where to start without a checkpoint.
    pub start: StartAt,
    /// Consumer name offsets are committed under (after each checkpoint).
    pub consumer: Option<String>,
    /// A partition that has delivered nothing for this long no longer holds
    /// back the event-time merge of the others.
    pub idle_ms: i64,
    /// Records larger than this go to the dead letters.
    pub max_record_bytes: usize,
    /// Most bytes the cluster sends per fetch response.
    pub fetch_bytes: usize,
}

impl Default for FluvioInput {
    fn default() -> Self {
        FluvioInput {
            topic: String::new(),
            partitions: Vec::new(),
            topic_partitions: 1,
            start: StartAt::Beginning,
            consumer: None,
            idle_ms: 20,
            max_record_bytes: 1 << 20,
            fetch_bytes: 1 << 20,
        }
    }
}

/// A Fluvio topic a sink writes to (`topic = ...` in `[sinks.ID]`).
#[derive(Clone, Debug, PartialEq)]
pub struct FluvioOutput {
    /// Topic.
    pub topic: String,
    /// Partitions the topic is created with.
    pub topic_partitions: u32,
    /// Most bytes in one producer batch.
    pub batch_bytes: usize,
    /// Longest a record waits in the producer before its batch is sent.
    pub linger_ms: i64,
}

impl Default for FluvioOutput {
    fn default() -> Self {
        FluvioOutput {
            topic: String::new(),
            topic_partitions: 1,
            batch_bytes: 16_384,
            linger_ms: 5,
        }
    }
}

/// Checkpoints (`[checkpoint]`).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointSettings {
    /// Directory holding the checkpoints (one per instance).
    pub dir: std::path::PathBuf,
    /// Wall-clock time between checkpoints.
    pub interval_ms: i64,
    /// Checkpoints kept, the newest; a restore falls back to an older one
    /// when the newest is damaged. The files a kept one builds on are kept too.
    pub keep: usize,
    /// Most deltas (checkpoints of what changed) written after a whole
    /// checkpoint before the next whole one; 0: every checkpoint whole.
    pub max_deltas: u32,
}

impl Default for CheckpointSettings {
    fn default() -> Self {
        CheckpointSettings {
            dir: std::path::PathBuf::new(),
            interval_ms: 10_000,
            keep: 3,
            max_deltas: 50,
        }
    }
}

/// The service (`[service]`).
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceSettings {
    /// Health and Prometheus metrics endpoint (`host:port`); `None`: off.
    pub listen: Option<String>,
    /// Most connections the endpoint holds at once; more wait in the
    /// kernel's accept queue until one closes.
    pub http_max_connections: usize,
    /// An endpoint connection is closed when it sends no complete request
    /// for this long, or its client reads none of the response for this long.
    pub http_idle_timeout_ms: i64,
    /// Stop (drain, flush, checkpoint, exit 0) once every input has been
    /// idle this long; 0: run until SIGINT/SIGTERM. For backfills and tests.
    pub stop_when_idle_ms: i64,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            listen: Some(DEFAULT_LISTEN.to_string()),
            http_max_connections: 1024,
            http_idle_timeout_ms: 5_000,
            stop_when_idle_ms: 0,
        }
    }
}

/// `[fluvio]`.
pub fn read_fluvio(s: &Section) -> FluvioSettings {
    let d = FluvioSettings::default();
    let f = FluvioSettings {
        address: s.opt_str("address").filter(|a| !a.is_empty()),
        connect_attempts: s.int("connect_attempts", d.connect_attempts as i64, 1, 1000) as u32,
        connect_backoff_ms: s.duration("connect_backoff", d.connect_backoff_ms, 1),
        use_spu_local_address: s.bool("use_spu_local_address", d.use_spu_local_address),
    };
    s.finish();
    f
}

/// The keys of a Fluvio input; `defaults` supplies partition settings
/// (the transaction source's, for labels).
pub fn read_fluvio_input(s: &Section, defaults: Option<&FluvioInput>) -> FluvioInput {
    let own = FluvioInput::default();
    // Partition settings follow the transaction source's, when given.
    let inherited = defaults.unwrap_or(&own);
    let topic = s.opt_str("topic").unwrap_or_default();
    if topic.is_empty() {
        s.error("topic", "the name of the Fluvio topic to read", None);
    }
    let topic_partitions = s.int(
        "topic_partitions",
        inherited.topic_partitions as i64,
        1,
        10_000,
    ) as u32;
    let partitions = match s.value("partitions") {
        None => inherited.partitions.clone(),
        Some(toml::Value::Array(items)) => {
            let mut out = Vec::new();
            for (i, v) in items.iter().enumerate() {
                match v {
                    toml::Value::Integer(p) if (0..topic_partitions as i64).contains(p) => {
                        out.push(*p as u32)
                    }
                    other => s.error(
                        &format!("partitions[{i}]"),
                        format!("a partition number in 0..{topic_partitions}"),
                        Some(super::reader::describe(other)),
                    ),
                }
            }
            let mut sorted = out.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != out.len() {
                s.error("partitions", "distinct partition numbers", None);
            }
            sorted
        }
        Some(v) => {
            s.error(
                "partitions",
                "an array of partition numbers such as [0, 1] ([] for all)",
                Some(super::reader::describe(v)),
            );
            Vec::new()
        }
    };
    let start = s.named("start", inherited.start);
    let consumer = s.opt_str("consumer").or_else(|| inherited.consumer.clone());
    if start == StartAt::Committed && consumer.is_none() {
        s.error(
            "consumer",
            "a consumer name (start = \"committed\" resumes that consumer)",
            None,
        );
    }
    FluvioInput {
        topic,
        partitions,
        topic_partitions,
        start,
        consumer,
        idle_ms: s.duration("idle", inherited.idle_ms, 1),
        max_record_bytes: s.int("max_record_bytes", own.max_record_bytes as i64, 64, 1 << 30)
            as usize,
        fetch_bytes: s.int("fetch_bytes", inherited.fetch_bytes as i64, 1024, 1 << 30) as usize,
    }
}

/// The Fluvio keys of a sink (`topic`, `topic_partitions`, `batch_bytes`, `linger`).
pub fn read_fluvio_output(s: &Section, default_partitions: u32) -> Option<FluvioOutput> {
    let topic = s.opt_str("topic")?;
    if topic.is_empty() {
        s.error("topic", "the name of the Fluvio topic to write", None);
    }
    let d = FluvioOutput::default();
    Some(FluvioOutput {
        topic,
        topic_partitions: s.int("topic_partitions", default_partitions as i64, 1, 10_000) as u32,
        batch_bytes: s.int("batch_bytes", d.batch_bytes as i64, 64, 1 << 30) as usize,
        linger_ms: s.duration("linger", d.linger_ms, 0),
    })
}

/// The stage(s) a process of a topology runs (`stages.role`, or
/// `fraudstream run --role`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Both stages in one process (no stage topic).
    All,
    /// The merchant stage: reads transactions and labels, publishes each
    /// transaction with its merchant features, and each label, to the stage
    /// topic, keyed by the card stage that owns the card.
    Merchant,
    /// A card stage: reads its partitions of the stage topic, scores, learns
    /// and writes scores, alerts and dead letters.
    Card,
}

impl Named for Role {
    const ALL: &'static [Self] = &[Role::All, Role::Merchant, Role::Card];
    fn name(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Merchant => "merchant",
            Role::Card => "card",
        }
    }
}

/// A topology repartitioned through Fluvio (`[stages]`), the way Kafka
/// Streams does it: merchant stages, keyed by merchant, publish to a stage
/// topic keyed by card; card stages read it. Each stage scales by its own
/// topic's partitions.
#[derive(Clone, Debug, PartialEq)]
pub struct Stages {
    /// What this process runs.
    pub role: Role,
    /// Card partitions: the stage topic has this many partitions per
    /// partition of the transaction topic (a lane per input partition, so
    /// each stage partition has one producer and keeps its event-time order).
    pub card_partitions: u32,
    /// The stage topic as a card stage reads it: every lane's partitions of
    /// this instance's card partitions (`stages.partitions`; all when empty).
    pub input: FluvioInput,
    /// The stage topic as a merchant stage writes it.
    pub output: FluvioOutput,
    /// The learn topic, through which card stages share what they learn
    /// (one partition, read whole by every card stage); `None`: each card
    /// stage learns from its own cards' labels only.
    pub learn: Option<(FluvioInput, FluvioOutput)>,
}

/// `[stages]` (absent: both stages in every process); `lanes` is the
/// number of partitions of the transaction topic.
pub fn read_stages(s: &Section, lanes: u32) -> Option<Stages> {
    if !s.present() {
        return None;
    }
    let role = s.named("role", Role::All);
    if let Some(v) = s.value("topic_partitions") {
        s.error(
            "topic_partitions",
            "no such key: the stage topic has card_partitions partitions per \
             partition of the source topic",
            Some(super::reader::describe(v)),
        );
    }
    let card_partitions = s.int("card_partitions", 1, 1, 256) as u32;
    // `partitions` names card partitions (0..card_partitions).
    let defaults = FluvioInput {
        topic_partitions: card_partitions,
        ..FluvioInput::default()
    };
    let mut input = read_fluvio_input(s, Some(&defaults));
    let lanes = lanes.max(1);
    let total = lanes.saturating_mul(card_partitions);
    if total > 256 {
        s.error(
            "card_partitions",
            format!(
                "at most {} with a source of {lanes} partitions (the stage topic has \
                 source partitions × card_partitions partitions, at most 256: a label \
                 route keeps its stage partition in one byte)",
                256 / lanes
            ),
            Some(card_partitions.to_string()),
        );
    }
    let cards = if input.partitions.is_empty() {
        (0..card_partitions).collect()
    } else {
        std::mem::take(&mut input.partitions)
    };
    input.partitions = (0..lanes)
        .flat_map(|lane| cards.iter().map(move |c| lane * card_partitions + c))
        .collect();
    input.topic_partitions = total;
    let d = FluvioOutput::default();
    let output = FluvioOutput {
        topic: input.topic.clone(),
        topic_partitions: total,
        batch_bytes: s.int("batch_bytes", d.batch_bytes as i64, 64, 1 << 30) as usize,
        linger_ms: s.duration("linger", d.linger_ms, 0),
    };
    let learn = s.opt_str("learn_topic").map(|topic| {
        if topic.is_empty() || topic == input.topic {
            s.error(
                "learn_topic",
                "the name of a topic of its own (card stages replicate their scored vectors \
                 through it)",
                Some(format!("\"{topic}\"")),
            );
        }
        let read = FluvioInput {
            topic: topic.clone(),
            partitions: Vec::new(),
            topic_partitions: 1,
            consumer: None,
            // Vectors are held until their label comes (which waits for
            // a late one): the learn topic never holds back the merge.
            idle_ms: 1,
            ..input.clone()
        };
        let write = FluvioOutput {
            topic,
            topic_partitions: 1,
            ..output.clone()
        };
        (read, write)
    });
    s.finish();
    Some(Stages {
        role,
        card_partitions,
        input,
        output,
        learn,
    })
}

/// `[checkpoint]` (absent: no checkpoints).
pub fn read_checkpoint(s: &Section) -> Option<CheckpointSettings> {
    if !s.present() {
        return None;
    }
    let dir = s.opt_str("dir").unwrap_or_default();
    if dir.is_empty() {
        s.error("dir", "the directory checkpoints are written to", None);
    }
    let d = CheckpointSettings::default();
    let c = CheckpointSettings {
        dir: dir.into(),
        interval_ms: s.duration("interval", d.interval_ms, 100),
        keep: s.int("keep", d.keep as i64, 1, 100) as usize,
        max_deltas: s.int("max_deltas", i64::from(d.max_deltas), 0, 10_000) as u32,
    };
    s.finish();
    Some(c)
}

/// `[service]`.
pub fn read_service(s: &Section) -> ServiceSettings {
    let listen = s.str("listen", DEFAULT_LISTEN);
    let listen = match listen.as_str() {
        "" | "off" => None,
        a if a.parse::<std::net::SocketAddr>().is_ok() => Some(a.to_string()),
        a => {
            s.error(
                "listen",
                "an address such as \"127.0.0.1:9464\", or \"off\"",
                Some(format!("\"{a}\"")),
            );
            None
        }
    };
    let d = ServiceSettings::default();
    let out = ServiceSettings {
        listen,
        http_max_connections: s.int(
            "http_max_connections",
            d.http_max_connections as i64,
            1,
            1_000_000,
        ) as usize,
        http_idle_timeout_ms: s.duration("http_idle_timeout", d.http_idle_timeout_ms, 10),
        stop_when_idle_ms: s.duration("stop_when_idle", d.stop_when_idle_ms, 0),
    };
    s.finish();
    out
}
