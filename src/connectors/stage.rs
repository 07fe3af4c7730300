//! The records one stage hands another through Fluvio when a topology is
//! repartitioned (`[stages]`): what a merchant stage publishes to the stage
//! topic, keyed by the card stage that owns the card, and the vectors card
//! stages replicate to each other through the learn topic.
//!
//! ```text
//! merchant stage ── {"stage":"tx", transaction, merchant features, …} ──► stage topic, partition = card's stage
//!                ── {"stage":"label", owner, tx_key, ts, is_fraud} ─────► the owner's partition (and, learning
//!                                                                          replicated, every card partition of its lane)
//! card stage     ── {"stage":"vector", owner, tx_key, features} ───────► learn topic (one partition): every other
//!                                                                          card stage holds it for the label
//! ```
//!
//! Each record is one JSON object; the record key is the partition it
//! belongs in, in decimal, which [`KeyPartition`] reads. The service
//! appends its provenance (`"input"`, `"lineage"`) like on every output, so
//! a merchant stage that restarts does not publish a record twice.

use crate::connectors::sources::decode::Reject;
use compact_str::CompactString;
use fluvio::{Partitioner, PartitionerConfig};
use fraudstream_engine::engine::{LabelContext, Replica, TxContext};
use fraudstream_engine::event::{RejectKind, Transaction, TxId};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// One record of the stage or the learn topic.
#[derive(Clone, Debug)]
pub enum StageRecord {
    /// A transaction with what the merchant stage computed for it.
    Transaction(Box<StagedTransaction>),
    /// A label, routed to the partition of its transaction's card (and,
    /// learning replicated, to the other card partitions of its lane).
    Label {
        /// Stage-topic partition it is written to.
        partition: u32,
        /// Stage-topic partition of the card stage that scored the
        /// transaction (which evaluates the label and flags the card).
        owner: u32,
        /// The label as the card stage takes it.
        label: LabelContext,
    },
    /// A scored vector, replicated to the other card stages (the learn topic).
    Vector {
        /// Stage-topic partition of the card stage that scored it.
        owner: u32,
        /// The vector.
        replica: Box<Replica>,
    },
}

/// A transaction and its merchant context.
#[derive(Clone, Debug)]
pub struct StagedTransaction {
    /// The transaction.
    pub tx: Transaction,
    /// Its merchant features, lateness and keys; `ctx.worker` is its
    /// stage-topic partition.
    pub ctx: TxContext,
}

impl StageRecord {
    /// Event time (labels: when the label arrived; vectors: their
    /// transaction's).
    pub fn ts(&self) -> i64 {
        match self {
            StageRecord::Transaction(t) => t.tx.ts,
            StageRecord::Label { label, .. } => label.ts,
            StageRecord::Vector { replica, .. } => replica.ts,
        }
    }

    /// The partition it belongs in (vectors: the learn topic's one).
    pub fn partition(&self) -> u32 {
        match self {
            StageRecord::Transaction(t) => u32::from(t.ctx.worker),
            StageRecord::Label { partition, .. } => *partition,
            StageRecord::Vector { .. } => 0,
        }
    }
}

/// A record's JSON form. Encoding borrows the record's features (no copy
/// per record); decoding owns them.
#[derive(Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
enum Wire<'a> {
    Tx(WireTx<'a>),
    Label(WireLabel),
    Vector(WireVector<'a>),
}

#[derive(Serialize, Deserialize)]
struct WireTx<'a> {
    partition: u32,
    tx_id: TxId,
    ts: i64,
    card_id: CompactString,
    merchant_id: CompactString,
    amount: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    currency: Option<CompactString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mcc: Option<CompactString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    country: Option<CompactString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    channel: Option<CompactString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    location: Option<(f64, f64)>,
    card: u64,
    merchant: u64,
    tx_key: u64,
    late: bool,
    now: i64,
    merchant_features: Cow<'a, [f32]>,
}

#[derive(Serialize, Deserialize)]
struct WireVector<'a> {
    owner: u32,
    #[serde(flatten)]
    replica: Cow<'a, Replica>,
}

#[derive(Serialize, Deserialize)]
struct WireLabel {
    partition: u32,
    owner: u32,
    tx_key: u64,
    ts: i64,
    is_fraud: bool,
}

/// Write `r` as one JSON object to `buf`.
pub fn encode(r: &StageRecord, buf: &mut Vec<u8>) -> serde_json::Result<()> {
    let wire = match r {
        StageRecord::Transaction(t) => {
            let (tx, ctx) = (&t.tx, &t.ctx);
            Wire::Tx(WireTx {
                partition: u32::from(ctx.worker),
                tx_id: tx.tx_id.clone(),
                ts: tx.ts,
                card_id: tx.card_id.clone(),
                merchant_id: tx.merchant_id.clone(),
                amount: tx.amount,
                currency: tx.currency.clone(),
                mcc: tx.mcc.clone(),
                country: tx.country.clone(),
                channel: tx.channel.clone(),
                location: tx.location,
                card: ctx.card,
                merchant: ctx.merchant,
                tx_key: ctx.tx_key,
                late: ctx.late,
                now: ctx.now,
                merchant_features: Cow::Borrowed(ctx.merchant_features()),
            })
        }
        StageRecord::Label {
            partition,
            owner,
            label,
        } => Wire::Label(WireLabel {
            partition: *partition,
            owner: *owner,
            tx_key: label.tx_key,
            ts: label.ts,
            is_fraud: label.is_fraud,
        }),
        StageRecord::Vector { owner, replica } => Wire::Vector(WireVector {
            owner: *owner,
            replica: Cow::Borrowed(&**replica),
        }),
    };
    serde_json::to_writer(buf, &wire)
}

/// The record `bytes` hold, or why it cannot be one (over `max_bytes`, not
/// JSON, not a stage record).
pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<StageRecord, Reject> {
    Reject::over_size(bytes.len(), max_bytes)?;
    let wire: Wire = serde_json::from_slice(bytes).map_err(|e| {
        Reject::new(
            RejectKind::Malformed,
            format!("not a stage record (written by a merchant or card stage): {e}"),
        )
    })?;
    Ok(match wire {
        Wire::Tx(w) => {
            let invalid = |why: String| Reject::new(RejectKind::InvalidField, why);
            if !(w.amount.is_finite() && w.amount > 0.0) {
                return Err(invalid(format!(
                    "amount {} is not a positive number",
                    w.amount
                )));
            }
            let partition = u16::try_from(w.partition)
                .map_err(|_| invalid(format!("partition {} is over 65535", w.partition)))?;
            let mut ctx = TxContext::from_stage(
                w.card,
                w.merchant,
                w.tx_key,
                w.late,
                w.now,
                &w.merchant_features,
            )
            .ok_or_else(|| {
                invalid(format!(
                    "{} merchant features, more than the engine carries",
                    w.merchant_features.len()
                ))
            })?;
            ctx.worker = partition;
            StageRecord::Transaction(Box::new(StagedTransaction {
                tx: Transaction {
                    tx_id: w.tx_id,
                    ts: w.ts,
                    card_id: w.card_id,
                    merchant_id: w.merchant_id,
                    amount: w.amount,
                    currency: w.currency,
                    mcc: w.mcc,
                    country: w.country,
                    channel: w.channel,
                    location: w.location,
                },
                ctx,
            }))
        }
        Wire::Label(w) => StageRecord::Label {
            partition: w.partition,
            owner: w.owner,
            label: LabelContext {
                tx_key: w.tx_key,
                ts: w.ts,
                is_fraud: w.is_fraud,
            },
        },
        Wire::Vector(w) => StageRecord::Vector {
            owner: w.owner,
            replica: Box::new(w.replica.into_owned()),
        },
    })
}

/// The record key of a record for `partition`.
pub fn key_of(partition: u32) -> Vec<u8> {
    partition.to_string().into_bytes()
}

/// Sends each record to the partition its key names ([`key_of`]), so the
/// merchant stage, not the client's hash, decides which card stage gets
/// it. A key that names no partition of the topic (the topic has fewer
/// partitions than the stage was started with) wraps around.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyPartition;

impl Partitioner for KeyPartition {
    fn partition(&self, config: &PartitionerConfig, key: Option<&[u8]>, _value: &[u8]) -> u32 {
        let n = config.partition_count.max(1);
        key.and_then(|k| std::str::from_utf8(k).ok())
            .and_then(|k| k.parse::<u32>().ok())
            .map_or(0, |p| p % n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx() -> Transaction {
        Transaction {
            tx_id: TxId::Str("t-1".into()),
            ts: 1_700_000_000_123,
            card_id: "card-7".into(),
            merchant_id: "m-3".into(),
            amount: 12.5,
            currency: Some("EUR".into()),
            mcc: None,
            country: Some("FR".into()),
            channel: None,
            location: Some((48.85, 2.35)),
        }
    }

    fn round_trip(r: &StageRecord) -> StageRecord {
        let mut buf = Vec::new();
        encode(r, &mut buf).unwrap();
        decode(&buf, 1 << 20).unwrap()
    }

    #[test]
    fn every_record_reads_back_as_written() {
        let mut ctx = TxContext::from_stage(
            1,
            2,
            3,
            true,
            1_700_000_000_000,
            &[0.1, 7.0, f32::MIN_POSITIVE],
        )
        .unwrap();
        ctx.worker = 5;
        let staged = StageRecord::Transaction(Box::new(StagedTransaction { tx: tx(), ctx }));
        let back = round_trip(&staged);
        let (StageRecord::Transaction(a), StageRecord::Transaction(b)) = (&staged, &back) else {
            panic!("a transaction reads back as {back:?}");
        };
        assert_eq!(a.tx, b.tx);
        assert_eq!(a.ctx.merchant_features(), b.ctx.merchant_features());
        assert_eq!(
            (
                a.ctx.card,
                a.ctx.merchant,
                a.ctx.tx_key,
                a.ctx.late,
                a.ctx.now,
                a.ctx.worker
            ),
            (
                b.ctx.card,
                b.ctx.merchant,
                b.ctx.tx_key,
                b.ctx.late,
                b.ctx.now,
                b.ctx.worker
            )
        );
        assert_eq!(back.partition(), 5);
        let label = StageRecord::Label {
            partition: 2,
            owner: 3,
            label: LabelContext {
                tx_key: u64::MAX,
                ts: 9,
                is_fraud: true,
            },
        };
        assert!(matches!(
            round_trip(&label),
            StageRecord::Label { partition: 2, owner: 3, label: l } if l == LabelContext { tx_key: u64::MAX, ts: 9, is_fraud: true }
        ));
        let replica = Replica {
            tx_key: 8,
            ts: 4,
            card: u64::MAX - 1,
            merchant: 6,
            dense: vec![1.5, -0.25, f32::MAX],
            cats: [1, 2, 3, 4, 5, 6, 7],
        };
        let vector = StageRecord::Vector {
            owner: 7,
            replica: Box::new(replica.clone()),
        };
        let StageRecord::Vector {
            owner: 7,
            replica: back,
        } = round_trip(&vector)
        else {
            panic!("a vector reads back as something else");
        };
        assert_eq!(*back, replica);
    }

    #[test]
    fn provenance_after_the_fields_is_ignored_and_bad_records_say_why() {
        let mut buf = Vec::new();
        let label = StageRecord::Label {
            partition: 0,
            owner: 0,
            label: LabelContext {
                tx_key: 1,
                ts: 2,
                is_fraud: false,
            },
        };
        encode(&label, &mut buf).unwrap();
        buf.pop();
        buf.extend_from_slice(br#","input":"t/0@3","lineage":"00000000000000ff"}"#);
        assert!(matches!(
            decode(&buf, 1 << 20).unwrap(),
            StageRecord::Label { partition: 0, owner: 0, label: l } if l.tx_key == 1 && l.ts == 2
        ));
        let bad = decode(br#"{"stage":"tx","partition":0}"#, 1 << 20).unwrap_err();
        assert_eq!(bad.kind, RejectKind::Malformed);
        assert!(bad.reason.contains("missing field"), "{}", bad.reason);
        let big = decode(&[b' '; 100], 10).unwrap_err();
        assert_eq!(big.kind, RejectKind::Oversized);
    }

    #[test]
    fn the_key_names_the_partition() {
        let cfg = |n| PartitionerConfig {
            partition_count: n,
            available_partitions: (0..n).collect(),
        };
        let p = KeyPartition;
        assert_eq!(p.partition(&cfg(4), Some(&key_of(3)), b""), 3);
        assert_eq!(p.partition(&cfg(2), Some(&key_of(3)), b""), 1);
        assert_eq!(p.partition(&cfg(4), None, b""), 0);
        assert_eq!(p.partition(&cfg(4), Some(b"x"), b""), 0);
    }
}
