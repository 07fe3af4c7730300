//! The simulator as a source: converts simulated events into engine events.

use super::{EventSource, SourceItem};
use compact_str::{format_compact, CompactString};
use fraudstream_engine::event::{Event, Label, Transaction, TxId};
use fraudstream_sim::{SimEvent, SimTransaction, Simulator};

/// Simulated transactions, and their labels when `with_labels`.
pub struct SimulatorSource {
    sim: Simulator,
    with_labels: bool,
}

impl SimulatorSource {
    /// Wrap a simulator.
    pub fn new(sim: Simulator, with_labels: bool) -> Self {
        SimulatorSource { sim, with_labels }
    }
}

/// The engine's view of a simulated transaction (ids as the simulator's files write them).
pub fn to_transaction(t: &SimTransaction) -> Transaction {
    Transaction {
        tx_id: TxId::Int(t.tx_id),
        ts: t.ts_ms,
        card_id: format_compact!("C{:07}", t.card),
        merchant_id: format_compact!("T{:06}", t.merchant),
        amount: t.amount,
        currency: Some(CompactString::const_new(t.currency)),
        mcc: Some(format_compact!("{}", t.mcc)),
        country: Some(CompactString::const_new(t.country)),
        channel: Some(CompactString::const_new(t.channel.as_str())),
        location: t.location,
    }
}

impl Iterator for SimulatorSource {
    type Item = SourceItem;

    fn next(&mut self) -> Option<SourceItem> {
        loop {
            match self.sim.next()? {
                SimEvent::Transaction(t) => {
                    return Some(SourceItem::Event(Event::Transaction(to_transaction(&t))))
                }
                SimEvent::Label(l) if self.with_labels => {
                    return Some(SourceItem::Event(Event::Label(Label {
                        tx_id: TxId::Int(l.tx_id),
                        ts: l.ts_ms,
                        is_fraud: l.is_fraud,
                    })))
                }
                SimEvent::Label(_) => continue,
            }
        }
    }
}

impl EventSource for SimulatorSource {
    fn progress(&self) -> Option<f64> {
        Some(self.sim.progress())
    }
}
