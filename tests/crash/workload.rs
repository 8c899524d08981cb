//! A seeded OLTP-ish workload over two tables that keeps its own ledger of what it committed,
//! and the checks that compare a lake with that ledger and with the source.
//!
//! The ledger is the source-side truth: the rows each statement affected (from the server's
//! command tag), kept only for transactions that committed, with each transaction's xid and an
//! upper bound of its end LSN (`pg_current_wal_insert_lsn()` right after `COMMIT`). No
//! triggers, no extra tables: the captured tables carry only the workload's own changes.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, ensure};
use tokio_postgres::Client;

use crate::lake_s3::lake::{LakeReader, TextRows, single_int};
use crate::support::TestDb;

/// The captured tables (schema `public`), created empty before the slot exists.
pub const DDL: &str = "
    CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance bigint NOT NULL,
                           note text);
    CREATE TABLE events (id bigint PRIMARY KEY, account int NOT NULL, kind text NOT NULL,
                         amount numeric(12,2));";

/// Table name → the source columns, in order, as text, for comparing current state.
pub const TABLES: [(&str, &str, &str); 2] = [
    (
        "accounts",
        "id, owner, balance, note",
        "id::text, owner, balance::text, note",
    ),
    (
        "events",
        "id, account, kind, amount",
        "id::text, account::text, kind, amount::text",
    ),
];

/// One committed transaction of the workload.
#[derive(Clone, Debug)]
pub struct TxnRecord {
    /// 32-bit transaction id, as pgoutput reports it.
    pub xid: i64,
    /// `pg_current_wal_insert_lsn()` after COMMIT returned: ≥ the commit record's end.
    pub after_lsn: i64,
    pub tables: BTreeSet<&'static str>,
}

/// What the workload committed.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    /// (table, op) → rows changed, op in `c`, `u`, `d`.
    pub changes: BTreeMap<(&'static str, char), i64>,
    pub txns: Vec<TxnRecord>,
    pub rolled_back: u64,
}

impl Ledger {
    pub fn total(&self) -> i64 {
        self.changes.values().sum()
    }
}

/// SplitMix64: small, seeded, good enough for choosing statements and sleeps.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// The workload's state: live keys per table and the ledger.
pub struct Workload {
    rng: Rng,
    accounts: Vec<i64>,
    events: Vec<i64>,
    next_id: i64,
    pub ledger: Ledger,
}

impl Workload {
    pub fn new(seed: u64) -> Workload {
        Workload {
            rng: Rng::new(seed),
            accounts: Vec::new(),
            events: Vec::new(),
            next_id: 1,
            ledger: Ledger::default(),
        }
    }

    /// One transaction of 1–5 single-row statements across both tables; one in ten rolls back.
    pub async fn step(&mut self, client: &mut Client) -> Result<()> {
        let statements = self.rng.range(1, 5);
        let rollback = self.rng.range(0, 9) == 0;
        let (mut accounts, mut events, mut next_id) =
            (self.accounts.clone(), self.events.clone(), self.next_id);
        let mut changes: Vec<(&'static str, char)> = Vec::new();
        let txn = client.transaction().await?;
        let xid: i64 = txn
            .query_one(
                "SELECT (pg_current_xact_id()::text::bigint % 4294967296)",
                &[],
            )
            .await?
            .get(0);
        for _ in 0..statements {
            let on_accounts = self.rng.range(0, 1) == 0;
            let (table, live) = if on_accounts {
                ("accounts", &mut accounts)
            } else {
                ("events", &mut events)
            };
            let roll = self.rng.range(0, 99);
            let op = if live.is_empty() || roll < 50 {
                'c'
            } else if roll < 80 {
                'u'
            } else {
                'd'
            };
            let n = self.rng.next();
            let affected = match (table, op) {
                ("accounts", 'c') => {
                    let id = next_id;
                    next_id += 1;
                    live.push(id);
                    txn.execute(
                        "INSERT INTO accounts VALUES ($1::int, $2, $3, $4)",
                        &[
                            &(id as i32),
                            &format!("owner {}", n % 97),
                            &((n % 10_000) as i64),
                            &note(n),
                        ],
                    )
                    .await?
                }
                ("events", 'c') => {
                    let id = next_id;
                    next_id += 1;
                    live.push(id);
                    txn.execute(
                        "INSERT INTO events VALUES ($1, $2, $3, ($4::bigint / 100.0)::numeric(12,2))",
                        &[&id, &((n % 1000) as i32), &kind(n), &((n % 1_000_000) as i64)],
                    )
                    .await?
                }
                ("accounts", 'u') => {
                    let id = live[(n % live.len() as u64) as usize];
                    txn.execute(
                        "UPDATE accounts SET balance = balance + $2, note = $3 \
                         WHERE id = $1::bigint::int",
                        &[&id, &((n >> 8) as i64 % 100), &note(n)],
                    )
                    .await?
                }
                (_, 'u') => {
                    let id = live[(n % live.len() as u64) as usize];
                    txn.execute(
                        "UPDATE events SET amount = amount + 1, kind = $2 WHERE id = $1",
                        &[&id, &kind(n)],
                    )
                    .await?
                }
                (_, _) => {
                    let i = (n % live.len() as u64) as usize;
                    let id = live.swap_remove(i);
                    let sql = if table == "accounts" {
                        "DELETE FROM accounts WHERE id = $1::bigint::int"
                    } else {
                        "DELETE FROM events WHERE id = $1"
                    };
                    txn.execute(sql, &[&id]).await?
                }
            };
            ensure!(
                affected == 1,
                "{table} {op}: {affected} rows affected, 1 expected"
            );
            changes.push((table, op));
        }
        if rollback {
            txn.rollback().await?;
            self.ledger.rolled_back += 1;
            return Ok(());
        }
        txn.commit().await?;
        let after_lsn: i64 = client
            .query_one("SELECT (pg_current_wal_insert_lsn() - '0/0')::bigint", &[])
            .await?
            .get(0);
        (self.accounts, self.events, self.next_id) = (accounts, events, next_id);
        for c in &changes {
            *self.ledger.changes.entry(*c).or_default() += 1;
        }
        self.ledger.txns.push(TxnRecord {
            xid,
            after_lsn,
            tables: changes.iter().map(|(t, _)| *t).collect(),
        });
        Ok(())
    }
}

fn note(n: u64) -> Option<String> {
    (!n.is_multiple_of(5)).then(|| format!("note {} ünïcødé '\"", n % 1013))
}

fn kind(n: u64) -> String {
    ["open", "deposit", "withdrawal", "close"][(n % 4) as usize].to_owned()
}

/// The xids present in the lake's change tables (tables not yet created count as empty).
pub async fn lake_xids(lake: &LakeReader) -> Result<BTreeMap<&'static str, BTreeSet<i64>>> {
    let mut out = BTreeMap::new();
    for (table, _, _) in TABLES {
        let rel = format!("public/{table}");
        let mut xids = BTreeSet::new();
        if lake.exists(&rel).await {
            for row in lake
                .sql(&[("t", &rel)], "SELECT DISTINCT _xid FROM t")
                .await?
            {
                xids.insert(row[0].as_deref().context("_xid is never null")?.parse()?);
            }
        }
        out.insert(table, xids);
    }
    Ok(out)
}

/// Nothing confirmed that is not committed: every workload transaction that ended at or
/// before `confirmed` has its changes in every lake table it touched.
pub async fn check_confirmed_is_durable(
    lake: &LakeReader,
    txns: &[TxnRecord],
    confirmed: i64,
) -> Result<usize> {
    let xids = lake_xids(lake).await?;
    let mut checked = 0;
    for txn in txns.iter().filter(|t| t.after_lsn <= confirmed) {
        for table in &txn.tables {
            ensure!(
                xids[table].contains(&txn.xid),
                "transaction xid {} ended before the slot's confirmed position {:X}/{:X} but \
                 its changes to {table} are not in the lake",
                txn.xid,
                confirmed >> 32,
                confirmed & 0xFFFF_FFFF
            );
        }
        checked += 1;
    }
    Ok(checked)
}

/// The lake holds every committed change exactly once, nothing rolled back, and each table's
/// latest image per key equals the source table.
pub async fn verify_lake(lake: &LakeReader, db: &TestDb, ledger: &Ledger) -> Result<String> {
    let mut report = Vec::new();
    let committed: BTreeSet<i64> = ledger.txns.iter().map(|t| t.xid).collect();
    for (table, columns, source_columns) in TABLES {
        let rel = format!("public/{table}");
        let ctx = lake.session(&[("t", &rel)]).await?;
        let q = |sql: String| {
            let ctx = ctx.clone();
            async move { crate::lake_s3::lake::text_rows(&ctx, &sql).await }
        };
        let rows = single_int(&q("SELECT count(*) FROM t".into()).await?);
        let distinct = single_int(
            &q("SELECT count(*) FROM (SELECT DISTINCT _lsn, _seq FROM t)".into()).await?,
        );
        let duplicates: TextRows = q("SELECT _lsn, _seq, count(*) FROM t GROUP BY _lsn, _seq \
                                      HAVING count(*) > 1 ORDER BY _lsn, _seq LIMIT 5"
            .into())
        .await?;
        ensure!(
            rows == distinct && duplicates.is_empty(),
            "{table}: {rows} rows but {distinct} distinct (_lsn, _seq): doubled changes, e.g. \
             {duplicates:?}"
        );
        let mut by_op = BTreeMap::new();
        for row in q("SELECT _op, count(*) FROM t GROUP BY _op".into()).await? {
            let op = row[0]
                .as_deref()
                .unwrap_or("?")
                .chars()
                .next()
                .unwrap_or('?');
            by_op.insert(op, row[1].as_deref().unwrap_or("0").parse::<i64>()?);
        }
        let expected: BTreeMap<char, i64> = ledger
            .changes
            .iter()
            .filter(|((t, _), _)| *t == table)
            .map(|((_, op), n)| (*op, *n))
            .collect();
        ensure!(
            by_op == expected,
            "{table}: changes per operation in the lake {by_op:?}, committed at the source \
             {expected:?}"
        );
        let stray: TextRows = q("SELECT DISTINCT _xid FROM t".into()).await?;
        let stray: Vec<i64> = stray
            .iter()
            .filter_map(|r| r[0].as_deref()?.parse().ok())
            .filter(|x| !committed.contains(x))
            .collect();
        ensure!(
            stray.is_empty(),
            "{table}: changes of transactions never committed: {stray:?}"
        );
        let latest = q(format!(
            "SELECT {columns} FROM (SELECT *, row_number() OVER \
               (PARTITION BY id ORDER BY _lsn DESC, _seq DESC) AS rn FROM t) AS x \
             WHERE rn = 1 AND _op <> 'd' ORDER BY id"
        ))
        .await?;
        let source: TextRows = db
            .client()
            .query(
                &format!("SELECT {source_columns} FROM {table} AS s ORDER BY s.id"),
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| r.get::<_, Option<String>>(i))
                    .collect()
            })
            .collect();
        if latest != source {
            let first_diff = latest.iter().zip(&source).position(|(a, b)| a != b);
            anyhow::bail!(
                "{table}: latest image per key differs from the source ({} lake rows, {} source \
                 rows; first difference at {first_diff:?}: lake {:?} source {:?})",
                latest.len(),
                source.len(),
                first_diff.and_then(|i| latest.get(i)),
                first_diff.and_then(|i| source.get(i)),
            );
        }
        report.push(format!(
            "{table}: {rows} changes {by_op:?}, {} live rows",
            source.len()
        ));
    }
    Ok(report.join("; "))
}
