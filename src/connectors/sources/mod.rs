//! Sources: where events come from. Each yields [`SourceItem`]s in processing
//! order: valid events, and rejected records with their reason (which the
//! pipeline sends to the dead letters; the stream goes on).
//!
//! - [`simulator`]: the in-process traffic simulator;
//! - [`file`]: CSV and JSONL files with a field mapping;
//! - [`merge`]: interleaves labels with transactions at their arrival time;
//! - [`fluvio`]: Fluvio topic partitions merged in event-time order (the service).

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
