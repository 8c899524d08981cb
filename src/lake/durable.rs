//! Durable-LSN bookkeeping across many tables flushed at different times.
//!
//! ```text
//!  txn T1 ─ rows in A, B ─┐   pending(A), pending(B): floor = end of the txn before T1
//!  txn T2 ─ rows in B ────┤   committed(end T1), committed(end T2)
//!  flush A ───────────────┤   flushed(A): A has nothing pending
//!  durable = min(floors of tables with pending rows) or, when none, end of the last txn
//! ```
//!
//! # Invariants
//! * `durable()` is the `end_lsn` of a transaction all of whose rows, in every table, are durable,
//!   together with every transaction before it; it never moves backward.
//! * A table's floor is the end of the last transaction before its oldest pending row; a partial
//!   flush (part of the open transaction written) moves the floor to just before that
//!   transaction, and the transaction's commit settles it when nothing more was added.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use crate::Lsn;

/// Tracks, per table with pending rows, the position up to which that table is durable.
#[derive(Debug)]
pub struct DurableTracker<K> {
    /// `end_lsn` of the last transaction received completely.
    last_end: Lsn,
    /// Tables with rows not yet durable → end of the last transaction before their first one.
    floors: HashMap<K, Lsn>,
    /// Tables partly flushed during the open transaction with nothing pending since.
    partial: HashSet<K>,
    durable: Lsn,
}

impl<K: Hash + Eq + Clone> DurableTracker<K> {
    /// Start with nothing pending; `start` is what is known durable (or [`Lsn::ZERO`]).
    pub fn new(start: Lsn) -> Self {
        DurableTracker {
            last_end: start,
            floors: HashMap::new(),
            partial: HashSet::new(),
            durable: start,
        }
    }

    /// A row of the transaction being received was added to `table`.
    pub fn pending(&mut self, table: &K) {
        self.partial.remove(table);
        if !self.floors.contains_key(table) {
            self.floors.insert(table.clone(), self.last_end);
        }
        self.advance();
    }

    /// The transaction being received ended at `end`: all its rows have been added.
    pub fn committed(&mut self, end: Lsn) {
        for table in self.partial.drain() {
            self.floors.remove(&table);
        }
        self.last_end = self.last_end.max(end);
        self.advance();
    }

    /// Every row added to `table` is durable. With `open_txn_rows`, the batch ended with rows of
    /// the transaction still being received (more of its rows may follow).
    pub fn flushed(&mut self, table: &K, open_txn_rows: bool) {
        if open_txn_rows {
            self.floors.insert(table.clone(), self.last_end);
            self.partial.insert(table.clone());
        } else {
            self.floors.remove(table);
            self.partial.remove(table);
        }
        self.advance();
    }

    /// Tables with rows that are not durable.
    pub fn pending_tables(&self) -> impl Iterator<Item = &K> {
        self.floors.keys()
    }

    /// The durable position (see the module docs).
    pub fn durable(&self) -> Lsn {
        self.durable
    }

    fn advance(&mut self) {
        let now = self.floors.values().copied().min().unwrap_or(self.last_end);
        self.durable = self.durable.max(now);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn slowest_table_holds_durability_back() {
        let mut t = DurableTracker::new(Lsn::ZERO);
        t.pending(&"a");
        t.pending(&"b");
        t.committed(Lsn(10));
        t.pending(&"b");
        t.committed(Lsn(20));
        assert_eq!(t.durable(), Lsn::ZERO);
        t.flushed(&"b", false);
        assert_eq!(
            t.durable(),
            Lsn::ZERO,
            "a still holds the first transaction"
        );
        t.flushed(&"a", false);
        assert_eq!(t.durable(), Lsn(20));
        // A partial flush of the open transaction: durable stays before it until its commit.
        t.pending(&"a");
        t.flushed(&"a", true);
        assert_eq!(t.durable(), Lsn(20));
        t.committed(Lsn(30));
        assert_eq!(t.durable(), Lsn(30));
    }

    #[derive(Clone, Debug)]
    enum Step {
        /// A transaction touching these tables (bit set), with a flush of some tables
        /// (bit set) in the middle of it (a partial flush).
        Txn { tables: u8, mid_flush: u8 },
        /// Flush these tables (bit set) between transactions.
        Flush(u8),
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            prop_oneof![
                (1u8..16, 0u8..16).prop_map(|(tables, mid_flush)| Step::Txn { tables, mid_flush }),
                (0u8..16).prop_map(Step::Flush),
            ],
            1..60,
        )
    }

    proptest! {
        /// durable = end of the longest prefix of transactions whose rows are all durable.
        #[test]
        fn durable_is_the_longest_durable_prefix(steps in steps()) {
            let mut tracker = DurableTracker::new(Lsn::ZERO);
            // Per transaction: (end, tables whose rows of it are not yet durable).
            let mut txns: Vec<(Lsn, u8)> = Vec::new();
            // Per table: does it hold undurable rows of the open transaction?
            let mut last = Lsn::ZERO;
            for step in steps {
                match step {
                    Step::Txn { tables, mid_flush } => {
                        let end = Lsn((txns.len() as u64 + 1) * 10);
                        let mut undurable = 0u8;
                        for t in 0..4u8 {
                            if tables & (1 << t) != 0 {
                                tracker.pending(&t);
                                undurable |= 1 << t;
                            }
                        }
                        for t in 0..4u8 {
                            if mid_flush & (1 << t) != 0 && tracker.floors.contains_key(&t) {
                                tracker.flushed(&t, true);
                                for (_, u) in txns.iter_mut() { *u &= !(1 << t); }
                                undurable &= !(1 << t);
                            }
                        }
                        tracker.committed(end);
                        txns.push((end, undurable));
                    }
                    Step::Flush(set) => {
                        for t in 0..4u8 {
                            if set & (1 << t) != 0 {
                                tracker.flushed(&t, false);
                                for (_, u) in txns.iter_mut() { *u &= !(1 << t); }
                            }
                        }
                    }
                }
                let expected = txns
                    .iter()
                    .take_while(|(_, u)| *u == 0)
                    .last()
                    .map_or(Lsn::ZERO, |(end, _)| *end);
                let got = tracker.durable();
                prop_assert_eq!(got, expected);
                prop_assert!(got >= last);
                last = got;
            }
        }
    }
}
