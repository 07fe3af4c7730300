//! Sources: where events come from. Each yields [`SourceItem`]s in processing
//! order: valid events, and rejected records with their reason (which the
//! pipeline sends to the dead letters; the stream goes on).
//!
//! - [`simulator`]: the in-process traffic simulator;
//! - [`file`](mod@file): CSV and JSONL files with a field mapping ([`csv_reader`]: CSV
//!   records held within a byte bound);
//! - [`merge`]: interleaves labels with transactions at their arrival time;
//! - [`fluvio`]: Fluvio topic partitions merged in event-time order (the service).
//!
//! Every source is a [`Source`]: pulled one item at a time, waiting at most
//! a given time. The finite sources are also plain iterators
//! ([`EventSource`]), which the file pipeline's hot loop uses directly.

pub mod csv_reader;
pub mod decode;
pub mod file;
pub mod fluvio;
pub mod merge;
pub mod simulator;

use fraudstream_engine::event::{DeadLetter, Event};
use serde::{Deserialize, Serialize};

/// Where a source is in one topic partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Offset of the next record to read (every record before it was
    /// processed and its outputs produced).
    pub next: i64,
}

/// What a source yields.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceItem {
    /// A valid event.
    Event(Event),
    /// A record that could not be accepted.
    Rejected(DeadLetter),
}

/// What one pull from a [`Source`] gives.
#[derive(Debug)]
pub enum Pulled {
    /// The next event.
    Event(Event),
    /// The next record from another stage (a stage or learn topic).
    Stage(crate::connectors::stage::StageRecord),
    /// A record that could not be accepted.
    Rejected(DeadLetter),
    /// Nothing arrived within the wait (live sources).
    Idle,
    /// The source has no more items (finite sources).
    End,
}

impl From<Option<SourceItem>> for Pulled {
    fn from(item: Option<SourceItem>) -> Self {
        match item {
            Some(SourceItem::Event(e)) => Pulled::Event(e),
            Some(SourceItem::Rejected(d)) => Pulled::Rejected(d),
            None => Pulled::End,
        }
    }
}

/// Where events come from, one item at a time: a finite source answers at
/// once and ends; a topic source waits up to `wait` for a record and never
/// ends. Cancel-safe: an item is not lost when a pull is dropped.
#[allow(async_fn_in_trait)] // used with concrete types, never boxed
pub trait Source {
    /// The next item, or `Idle` when none arrives within `wait`.
    async fn pull(&mut self, wait: std::time::Duration) -> anyhow::Result<Pulled>;
}

/// A finite source never waits: its next item, or the end.
impl<S: EventSource + ?Sized> Source for S {
    async fn pull(&mut self, _wait: std::time::Duration) -> anyhow::Result<Pulled> {
        Ok(self.next().into())
    }
}

/// A stream of events with a notion of how far along it is.
pub trait EventSource: Iterator<Item = SourceItem> + Send {
    /// Share of the input consumed, in [0, 1], when known.
    fn progress(&self) -> Option<f64>;
}

impl<S: EventSource + ?Sized> EventSource for Box<S> {
    fn progress(&self) -> Option<f64> {
        (**self).progress()
    }
}
