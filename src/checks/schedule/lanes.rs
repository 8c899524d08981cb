//! Due runs waiting for a slot: one ordered queue per connection, and the set of queue heads
//! that may start now (their connection below its cap). Every operation is O(log n).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// A waiting run: its scheduled time, then its job's name (the order runs start in).
pub(super) type Key = (DateTime<Utc>, Arc<str>);

#[derive(Debug)]
struct Lane {
    name: Arc<str>,
    cap: usize,
    running: usize,
    queue: BTreeSet<Key>,
    /// The entry of this lane in [`Lanes::ready`], if any.
    head: Option<Key>,
}

/// Per-connection queues under per-connection caps.
#[derive(Debug)]
pub(super) struct Lanes {
    lanes: HashMap<Arc<str>, Lane>,
    /// The head of every lane with waiting runs and a free slot.
    ready: BTreeSet<(Key, Arc<str>)>,
    queued: usize,
}

impl Lanes {
    pub(super) fn new() -> Self {
        Lanes {
            lanes: HashMap::new(),
            ready: BTreeSet::new(),
            queued: 0,
        }
    }

    /// Runs waiting, over all lanes.
    pub(super) fn queued(&self) -> usize {
        self.queued
    }

    /// Queues `key` on `connection` (whose cap is `cap` when the lane is new).
    pub(super) fn push(&mut self, connection: &Arc<str>, cap: usize, key: Key) {
        let lane = self
            .lanes
            .entry(connection.clone())
            .or_insert_with(|| Lane {
                name: connection.clone(),
                cap,
                running: 0,
                queue: BTreeSet::new(),
                head: None,
            });
        if lane.queue.insert(key) {
            self.queued += 1;
        }
        self.refresh(connection);
    }

    /// Takes `key` out of `connection`'s queue; whether it was there.
    pub(super) fn remove(&mut self, connection: &str, key: &Key) -> bool {
        let Some(lane) = self.lanes.get_mut(connection) else {
            return false;
        };
        let removed = lane.queue.remove(key);
        if removed {
            self.queued -= 1;
            self.refresh(connection);
        }
        removed
    }

    /// Takes the earliest waiting run whose connection has a free slot (the slot is taken
    /// only by [`Lanes::started`]).
    pub(super) fn pop_ready(&mut self) -> Option<(Arc<str>, Key)> {
        let (key, connection) = self.ready.pop_first()?;
        let lane = self.lanes.get_mut(&connection)?;
        lane.head = None;
        lane.queue.remove(&key);
        self.queued -= 1;
        self.refresh(&connection);
        Some((connection, key))
    }

    /// A run on `connection` started.
    pub(super) fn started(&mut self, connection: &Arc<str>, cap: usize) {
        let lane = self
            .lanes
            .entry(connection.clone())
            .or_insert_with(|| Lane {
                name: connection.clone(),
                cap,
                running: 0,
                queue: BTreeSet::new(),
                head: None,
            });
        lane.running += 1;
        self.refresh(connection);
    }

    /// A run on `connection` ended.
    pub(super) fn finished(&mut self, connection: &str) {
        if let Some(lane) = self.lanes.get_mut(connection) {
            lane.running = lane.running.saturating_sub(1);
            self.refresh(connection);
        }
    }

    /// Runs running on `connection`.
    #[cfg(test)]
    pub(super) fn running(&self, connection: &str) -> usize {
        self.lanes.get(connection).map_or(0, |l| l.running)
    }

    /// Puts `connection`'s head in `ready` exactly when it has one and a free slot; forgets
    /// an idle empty lane.
    fn refresh(&mut self, connection: &str) {
        let Some(lane) = self.lanes.get_mut(connection) else {
            return;
        };
        let want = if lane.running < lane.cap {
            lane.queue.first().cloned()
        } else {
            None
        };
        if want != lane.head {
            if let Some(old) = lane.head.take() {
                self.ready.remove(&(old, lane.name.clone()));
            }
            if let Some(new) = want {
                self.ready.insert((new.clone(), lane.name.clone()));
                lane.head = Some(new);
            }
        }
        if lane.running == 0 && lane.queue.is_empty() {
            self.lanes.remove(connection);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(minute: i64, job: &str) -> Key {
        (
            DateTime::from_timestamp(minute * 60, 0).unwrap(),
            Arc::from(job),
        )
    }

    #[test]
    fn heads_come_out_in_order_and_a_full_lane_holds_back_only_itself() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let mut lanes = Lanes::new();
        lanes.push(&a, 1, key(1, "x"));
        lanes.push(&a, 1, key(1, "w"));
        lanes.push(&b, 1, key(2, "y"));
        lanes.push(&a, 1, key(0, "z"));
        assert_eq!(lanes.queued(), 4);
        // Earliest time first.
        assert_eq!(lanes.pop_ready(), Some((a.clone(), key(0, "z"))));
        lanes.started(&a, 1);
        // `a` is at its cap: `b`'s later run goes first.
        assert_eq!(lanes.pop_ready(), Some((b.clone(), key(2, "y"))));
        lanes.started(&b, 1);
        assert_eq!(lanes.pop_ready(), None);
        lanes.finished(&a);
        // Same time: by job name.
        assert_eq!(lanes.pop_ready(), Some((a.clone(), key(1, "w"))));
        lanes.started(&a, 1);
        assert!(lanes.remove(&a, &key(1, "x")));
        assert!(!lanes.remove(&a, &key(1, "x")));
        lanes.finished(&a);
        lanes.finished(&b);
        assert_eq!(lanes.pop_ready(), None);
        assert_eq!(lanes.queued(), 0);
        assert_eq!(lanes.running(&a), 0);
        // Idle empty lanes are forgotten.
        assert!(lanes.lanes.is_empty() && lanes.ready.is_empty());
    }
}
