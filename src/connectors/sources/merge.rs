//! Interleaves labels with transactions in event-time order: a label is
//! released before the first transaction that is not earlier than its arrival
//! time (labels first at equal times), the same rule the simulator follows, so
//! a replayed simulation is processed in the same order as the live one.

use super::decode::Reject;
use super::file::{FileReader, FileRecord};
use super::{EventSource, SourceItem};
use fraudstream_engine::event::{DeadLetter, Event, Label};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// Where labels come from in a file replay.
pub enum FileLabels {
    /// None.
    None,
    /// A separate label file (arrival times in its `ts`).
    File(Box<FileReader>),
    /// The transaction file's label column, released after a fixed delay.
    Column {
        /// Delay from transaction time to label arrival.
        delay_ms: i64,
    },
}

/// Transactions from a file with their labels interleaved.
pub struct FileSource {
    txs: FileReader,
    labels: FileLabels,
    source_id: compact_str::CompactString,
    next_tx: Option<FileRecord>,
    next_label: Option<Label>,
    delayed: BinaryHeap<Reverse<(i64, u64, LabelSlot)>>,
    seq: u64,
    queue: VecDeque<SourceItem>,
    tx_done: bool,
}

/// A delayed label, ordered only by (time, sequence) in the heap.
#[derive(Debug)]
struct LabelSlot(Label);
impl PartialEq for LabelSlot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for LabelSlot {}
impl PartialOrd for LabelSlot {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for LabelSlot {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl FileSource {
    /// Combine a transaction reader with its labels.
    pub fn new(txs: FileReader, labels: FileLabels, source_id: &str) -> Self {
        FileSource {
            txs,
            labels,
            source_id: source_id.into(),
            next_tx: None,
            next_label: None,
            delayed: BinaryHeap::new(),
            seq: 0,
            queue: VecDeque::new(),
            tx_done: false,
        }
    }

    /// Make sure the next transaction (if any) is peeked; rejected records
    /// met on the way are queued in file order.
    fn fill_tx(&mut self) {
        while self.next_tx.is_none() && !self.tx_done {
            match self.txs.next() {
                None => self.tx_done = true,
                Some(FileRecord::Rejected(d)) => self.queue.push_back(SourceItem::Rejected(d)),
                Some(r) => self.next_tx = Some(r),
            }
        }
    }

    fn fill_label(&mut self) {
        if self.next_label.is_some() {
            return;
        }
        if let FileLabels::File(reader) = &mut self.labels {
            for r in reader.by_ref() {
                match r {
                    FileRecord::Label(l) => {
                        self.next_label = Some(l);
                        return;
                    }
                    FileRecord::Rejected(d) => self.queue.push_back(SourceItem::Rejected(d)),
                    FileRecord::Transaction(..) => unreachable!("label reader yields labels"),
                }
            }
        }
    }

    fn label_dead_letter(&self, tx_line: String, reject: Reject) -> DeadLetter {
        DeadLetter {
            source: self.source_id.clone(),
            line: None,
            kind: reject.kind,
            reason: format!("label column: {}", reject.reason),
            raw: tx_line,
        }
    }
}

impl Iterator for FileSource {
    type Item = SourceItem;

    fn next(&mut self) -> Option<SourceItem> {
        if let Some(item) = self.queue.pop_front() {
            return Some(item);
        }
        self.fill_tx();
        self.fill_label();
        if let Some(item) = self.queue.pop_front() {
            return Some(item);
        }
        let tx_ts = match &self.next_tx {
            Some(FileRecord::Transaction(t, _)) => Some(t.ts),
            _ => None,
        };
        let file_label_ts = self.next_label.as_ref().map(|l| l.ts);
        let delayed_ts = self.delayed.peek().map(|Reverse((ts, _, _))| *ts);
        // Earliest label; the file's before the column's at equal times.
        let label_ts = match (file_label_ts, delayed_ts) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let label_first = match (label_ts, tx_ts) {
            (Some(l), Some(t)) => l <= t,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if label_first {
            let from_file = match (file_label_ts, delayed_ts) {
                (Some(a), Some(b)) => a <= b,
                (Some(_), None) => true,
                _ => false,
            };
            let label = if from_file {
                self.next_label.take().expect("peeked")
            } else {
                self.delayed.pop().expect("peeked").0 .2 .0
            };
            return Some(SourceItem::Event(Event::Label(label)));
        }
        match self.next_tx.take() {
            Some(FileRecord::Transaction(t, verdict)) => {
                if let (FileLabels::Column { delay_ms }, Some(v)) = (&self.labels, verdict) {
                    match v {
                        Ok(is_fraud) => {
                            self.seq += 1;
                            let label = Label {
                                tx_id: t.tx_id.clone(),
                                ts: t.ts.saturating_add(*delay_ms),
                                is_fraud,
                            };
                            self.delayed
                                .push(Reverse((label.ts, self.seq, LabelSlot(label))));
                        }
                        Err(reject) => {
                            let d = self.label_dead_letter(format!("tx_id {}", t.tx_id), reject);
                            self.queue.push_back(SourceItem::Rejected(d));
                        }
                    }
                }
                Some(SourceItem::Event(Event::Transaction(t)))
            }
            Some(_) => unreachable!("only transactions are peeked"),
            None => None,
        }
    }
}

impl EventSource for FileSource {
    fn progress(&self) -> Option<f64> {
        Some(self.txs.progress())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FileFormat, FileInput, TimestampFormat};
    use crate::connectors::sources::decode::RecordKind;
    use std::collections::BTreeMap;

    fn write(dir: &tempfile::TempDir, name: &str, body: &str) -> FileInput {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        FileInput {
            format: FileFormat::Csv,
            path,
            timestamp: TimestampFormat::EpochMs,
            fields: BTreeMap::new(),
            max_record_bytes: 4096,
            sort_by_time: false,
        }
    }

    fn order(src: FileSource) -> Vec<String> {
        src.map(|i| match i {
            SourceItem::Event(Event::Transaction(t)) => format!("t{}@{}", t.tx_id, t.ts),
            SourceItem::Event(Event::Label(l)) => format!("l{}@{}", l.tx_id, l.ts),
            SourceItem::Rejected(d) => format!("dead:{}", d.kind.as_str()),
        })
        .collect()
    }

    #[test]
    fn label_file_interleaves_by_arrival_time_labels_first() {
        let dir = tempfile::tempdir().unwrap();
        let txs = write(
            &dir,
            "t.csv",
            "tx_id,ts,card_id,merchant_id,amount\n1,10,c,m,1\n2,20,c,m,1\n3,30,c,m,1\n",
        );
        let labels = write(
            &dir,
            "l.csv",
            "tx_id,ts,is_fraud\n1,20,1\n2,25,0\nbad,x,1\n3,99,0\n",
        );
        let t = FileReader::open("source", &txs, RecordKind::Transaction, None).unwrap();
        let l = FileReader::open("labels", &labels, RecordKind::Label, None).unwrap();
        let got = order(FileSource::new(t, FileLabels::File(Box::new(l)), "source"));
        assert_eq!(
            got,
            [
                "t1@10",
                "l1@20",
                "t2@20",
                "l2@25",
                "dead:bad_timestamp",
                "t3@30",
                "l3@99"
            ]
        );
    }

    #[test]
    fn order_time_sorts_an_unsorted_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut txs = write(
            &dir,
            "t.csv",
            "tx_id,ts,card_id,merchant_id,amount\n3,30,c,m,1\n1,10,c,m,1\nbad,x,c,m,1\n2,20,c,m,1\n4,20,c,m,1\n",
        );
        let labels = write(&dir, "l.csv", "tx_id,ts,is_fraud\n1,25,1\n");
        txs.sort_by_time = true;
        let t = FileReader::open("source", &txs, RecordKind::Transaction, None).unwrap();
        let l = FileReader::open("labels", &labels, RecordKind::Label, None).unwrap();
        let got = order(FileSource::new(t, FileLabels::File(Box::new(l)), "source"));
        assert_eq!(
            got,
            [
                "dead:bad_timestamp",
                "t1@10",
                "t2@20",
                "t4@20",
                "l1@25",
                "t3@30"
            ]
        );
        // in file order (the default) the same file streams as written
        txs.sort_by_time = false;
        let t = FileReader::open("source", &txs, RecordKind::Transaction, None).unwrap();
        let got = order(FileSource::new(t, FileLabels::None, "source"));
        assert_eq!(
            got,
            ["t3@30", "t1@10", "dead:bad_timestamp", "t2@20", "t4@20"]
        );
    }

    #[test]
    fn label_column_is_released_after_the_delay() {
        let dir = tempfile::tempdir().unwrap();
        let txs = write(
            &dir,
            "t.csv",
            "tx_id,ts,card_id,merchant_id,amount,fraud\n1,10,c,m,1,1\n2,20,c,m,1,maybe\n3,30,c,m,1,0\n",
        );
        let t = FileReader::open("source", &txs, RecordKind::Transaction, Some("fraud")).unwrap();
        let got = order(FileSource::new(
            t,
            FileLabels::Column { delay_ms: 15 },
            "source",
        ));
        assert_eq!(
            got,
            [
                "t1@10",
                "t2@20",
                "dead:invalid_field",
                "l1@25",
                "t3@30",
                "l3@45"
            ]
        );
    }
}
