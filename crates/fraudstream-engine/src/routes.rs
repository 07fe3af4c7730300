//! Which card stage scored each transaction, so its label (days later) goes
//! to the stage that holds its features and its evaluation record.
//!
//! Bounded two ways: a route is kept for `retention` of event time (a label
//! later than that finds no evaluation record or pending features to join
//! anyway), and at most `max_entries` routes are held (the oldest days go
//! first). Routes live in one map per day of transaction time, oldest day
//! first, so expiring a day drops its map whole: no per-entry timestamps, no
//! sweep. A lookup tries the days newest first (labels mostly concern recent
//! transactions).

use crate::keymap::{key_map, key_map_with_capacity, sorted_entries, KeyMap};
use crate::time::DAY_MS;
use std::collections::VecDeque;

/// Routes of scored transactions to card stages.
#[derive(Debug)]
pub struct LabelRoutes {
    retention_days: i64,
    max_entries: usize,
    /// (day of transaction time, its routes), ascending by day.
    days: VecDeque<(i64, KeyMap<u8>)>,
    len: usize,
    expired: u64,
    /// Routes inserted since the last checkpoint, with the day that holds
    /// them, once tracking has started (`None` before).
    inserted: Option<Vec<(i64, u64)>>,
}

/// What a checkpoint keeps of the routes: each day's entries sorted by key.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct RoutesSnapshot {
    days: Vec<(i64, Vec<(u64, u8)>)>,
}

/// What changed in the routes between two checkpoints: the days held now
/// (a day absent was dropped whole) and the routes inserted since, by day
/// and key.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct RoutesDelta {
    held: Vec<i64>,
    inserted: Vec<(i64, Vec<(u64, u8)>)>,
}

impl LabelRoutes {
    /// Routes kept for `retention_ms` of event time, at most `max_entries`.
    pub fn new(retention_ms: i64, max_entries: usize) -> Self {
        LabelRoutes {
            retention_days: retention_ms.max(1).saturating_add(DAY_MS - 1) / DAY_MS,
            max_entries: max_entries.max(1),
            days: VecDeque::new(),
            len: 0,
            expired: 0,
            inserted: None,
        }
    }

    /// Route `tx_key` (a transaction at `ts`) to `worker`.
    pub fn insert(&mut self, tx_key: u64, ts: i64, worker: u8) {
        let day = ts.div_euclid(DAY_MS);
        if self.days.back().map_or(true, |(d, _)| day > *d) {
            // Sized as the day before: one allocation, not a chain of
            // doublings whose freed blocks fragment the heap.
            let n = self.days.back().map_or(0, |(_, m)| m.len());
            self.days.push_back((day, key_map_with_capacity(n)));
            self.expire_before(day - self.retention_days + 1);
        }
        // A late transaction joins the newest day not after its own (or the
        // oldest day held, when its own has expired).
        let at = self.days.iter().rposition(|(d, _)| *d <= day).unwrap_or(0);
        if self.days[at].1.insert(tx_key, worker).is_none() {
            self.len += 1;
        }
        if let Some(log) = &mut self.inserted {
            log.push((self.days[at].0, tx_key));
        }
        self.enforce_cap();
    }

    /// The card stage that scored `tx_key`, if its route is still held.
    pub fn get(&self, tx_key: u64) -> Option<u8> {
        self.days
            .iter()
            .rev()
            .find_map(|(_, m)| m.get(&tx_key).copied())
    }

    fn expire_before(&mut self, day: i64) {
        while self.days.len() > 1 && self.days.front().is_some_and(|(d, _)| *d < day) {
            self.drop_oldest();
        }
    }

    /// Drop the oldest days while more than `max_entries` are held.
    fn enforce_cap(&mut self) {
        while self.len > self.max_entries && self.days.len() > 1 {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some((_, m)) = self.days.pop_front() {
            self.len -= m.len();
            self.expired += m.len() as u64;
        }
    }

    /// Routes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no route is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Routes dropped by retention or the cap since this instance started.
    pub fn expired(&self) -> u64 {
        self.expired
    }

    /// The routes as a checkpoint keeps them.
    pub fn snapshot(&self) -> RoutesSnapshot {
        RoutesSnapshot {
            days: self
                .days
                .iter()
                .map(|(d, m)| {
                    (
                        *d,
                        sorted_entries(m)
                            .into_iter()
                            .map(|(k, w)| (k, *w))
                            .collect(),
                    )
                })
                .collect(),
        }
    }

    /// What changed since the last call (or since tracking started); from
    /// the first call on, insertions are listed.
    pub fn delta(&mut self) -> RoutesDelta {
        let mut log = self.inserted.take().unwrap_or_default();
        log.sort_unstable();
        log.dedup();
        let mut inserted: Vec<(i64, Vec<(u64, u8)>)> = Vec::new();
        let mut at = 0;
        for (day, key) in log.drain(..) {
            // Both ascending: walk the days along the log.
            while at < self.days.len() && self.days[at].0 < day {
                at += 1;
            }
            let Some(&worker) = self
                .days
                .get(at)
                .filter(|d| d.0 == day)
                .and_then(|d| d.1.get(&key))
            else {
                continue; // its day was dropped since
            };
            match inserted.last_mut() {
                Some((d, v)) if *d == day => v.push((key, worker)),
                _ => inserted.push((day, vec![(key, worker)])),
            }
        }
        self.inserted = Some(log);
        RoutesDelta {
            held: self.days.iter().map(|(d, _)| *d).collect(),
            inserted,
        }
    }

    /// Start listing insertions afresh (the routes were just written whole).
    pub fn start_tracking(&mut self) {
        let mut log = self.inserted.take().unwrap_or_default();
        log.clear();
        self.inserted = Some(log);
    }

    /// Apply a checkpoint's delta to the routes it was written after.
    pub fn apply_delta(&mut self, d: RoutesDelta) -> Result<(), String> {
        if d.held.windows(2).any(|w| w[0] >= w[1]) {
            return Err("label routes: days out of order".into());
        }
        let mut days = VecDeque::with_capacity(d.held.len());
        let mut old = std::mem::take(&mut self.days).into_iter().peekable();
        for day in &d.held {
            while old.next_if(|(o, _)| o < day).is_some() {}
            days.push_back(match old.next_if(|(o, _)| o == day) {
                Some(kept) => kept,
                None => (*day, key_map()),
            });
        }
        self.days = days;
        for (day, entries) in d.inserted {
            let Ok(at) = self.days.binary_search_by_key(&day, |(d, _)| *d) else {
                return Err(format!("label routes: day {day} is not held"));
            };
            self.days[at].1.extend(entries);
        }
        self.len = self.days.iter().map(|(_, m)| m.len()).sum();
        // Under this instance's bounds, as a whole restore.
        if let Some(&(newest, _)) = self.days.back() {
            self.expire_before(newest - self.retention_days + 1);
        }
        self.enforce_cap();
        Ok(())
    }

    /// Replace the routes with a checkpoint's (under this instance's bounds;
    /// [`expired`](Self::expired) counts from here).
    pub fn restore(&mut self, s: RoutesSnapshot) {
        self.days.clear();
        self.len = 0;
        for (day, entries) in s.days {
            let mut m = key_map();
            m.extend(entries);
            self.len += m.len();
            self.days.push_back((day, m));
        }
        self.expired = 0;
        if let Some(&(newest, _)) = self.days.back() {
            self.expire_before(newest - self.retention_days + 1);
        }
        self.enforce_cap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_expire_with_their_day_and_the_cap() {
        let mut r = LabelRoutes::new(3 * DAY_MS, 1_000);
        for day in 0..10i64 {
            for i in 0..10u64 {
                r.insert(day as u64 * 100 + i, day * DAY_MS + i as i64, (i % 4) as u8);
            }
        }
        assert_eq!(r.len(), 30, "the last three days");
        assert_eq!(r.get(905), Some(1));
        assert_eq!(r.get(705), Some(1));
        assert_eq!(r.get(605), None, "expired with its day");
        assert_eq!(r.expired(), 70);

        let mut capped = LabelRoutes::new(100 * DAY_MS, 25);
        for day in 0..10i64 {
            for i in 0..10u64 {
                capped.insert(day as u64 * 100 + i, day * DAY_MS, 0);
            }
        }
        assert!(capped.len() <= 25 && capped.len() >= 15, "{}", capped.len());
        assert_eq!(capped.get(905), Some(0));
    }

    #[test]
    fn a_new_day_is_sized_as_the_day_before_it() {
        let mut r = LabelRoutes::new(3 * DAY_MS, 100_000);
        for i in 0..500u64 {
            r.insert(i, i as i64, 0);
        }
        r.insert(1_000, DAY_MS, 0);
        let (day, map) = r.days.back().expect("day 1 is held");
        assert_eq!((*day, map.len()), (1, 1));
        assert!(map.capacity() >= 500, "{}", map.capacity());
    }

    #[test]
    fn a_late_transaction_is_routed_and_a_snapshot_restores_exactly() {
        let mut r = LabelRoutes::new(10 * DAY_MS, 1_000);
        r.insert(1, 5 * DAY_MS, 1);
        r.insert(2, 3 * DAY_MS, 2); // older than every day held
        r.insert(3, 6 * DAY_MS, 3);
        assert_eq!((r.get(1), r.get(2), r.get(3)), (Some(1), Some(2), Some(3)));
        let mut back = LabelRoutes::new(10 * DAY_MS, 1_000);
        back.restore(r.snapshot());
        assert_eq!(
            (back.get(1), back.get(2), back.get(3)),
            (Some(1), Some(2), Some(3))
        );
        assert_eq!(back.len(), 3);
    }
}
