//! The read-only query seam: one trait for running read-only SQL, with a deadline and limits,
//! against any target that validation checks and reconciliation read from.
//!
//! ```text
//!  checks / reconciliation ──► dyn ReadOnlySql ──┬─► LakeTarget      LakeQuery (DataFusion), read-only SQLOptions
//!   (many targets in a map)    query(sql, limits)├─► PostgresTarget  tokio-postgres: BEGIN READ ONLY,
//!                                   │            │                   SET LOCAL statement_timeout, cancel token
//!                                   │            └─► MemoryTarget    canned results, for tests
//!                                   ▼
//!                  ResultSet { schema, batches: Vec<RecordBatch> }  or  SqlError (with a hint)
//! ```
//!
//! The seam lives in its own module, not in [`crate::query`] or [`crate::source`]: those are
//! two of its targets (the lake's DataFusion engine, the replication source's connections),
//! and later ones (Snowflake, files) are peers of them. Checks depend on this module only.
//!
//! # Invariants
//! * Nothing a target runs can write: every implementation refuses statements that are not
//!   queries before they run ([`SqlError::ReadOnlyViolation`]), and the database enforces it
//!   again where it can (a `READ ONLY` transaction, DataFusion's `SQLOptions`).
//! * A deadline covers the whole call, result included, and on expiry the work is stopped
//!   where it runs (the Postgres backend is cancelled, DataFusion's tasks are dropped), not
//!   merely abandoned by the client.
//! * A result is never silently truncated or rounded: past a limit the query fails with
//!   [`SqlError::ResourcesExhausted`], a value without an exact Arrow form fails it with
//!   [`SqlError::Conversion`].
//! * Logs name the target, never the SQL text, a value or a password.

mod cancel;
mod error;
mod lake;
mod memory;
mod pg_arrow;
mod postgres;
pub mod statement;

use std::fmt;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use async_trait::async_trait;

pub use error::SqlError;
pub use lake::LakeTarget;
pub use memory::{MemoryTarget, Reply};
pub use pg_arrow::PG_TYPE_KEY;
pub use postgres::{PostgresOptions, PostgresTarget};
pub use tokio_postgres::error::SqlState;

/// Default [`Limits::deadline`].
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);
/// Default [`Limits::max_rows`].
pub const DEFAULT_MAX_ROWS: usize = 1_000_000;
/// Default [`Limits::max_bytes`].
pub const DEFAULT_MAX_BYTES: usize = 256 << 20;

/// The SQL dialect a target speaks, for callers that generate SQL (reconciliation builds
/// count and checksum queries per target).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// Apache DataFusion (the lake): `current.*`, `as_of(...)`, `lake.*`.
    DataFusion,
}

/// How far one query may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest the call may take, from the call to the last batch (waiting for the handle,
    /// connecting, planning, running, reading and converting the result).
    pub deadline: Duration,
    /// Most rows the result may have; one more fails the query.
    pub max_rows: usize,
    /// Most bytes the result's Arrow arrays may take in memory; more fails the query.
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: DEFAULT_DEADLINE,
            max_rows: DEFAULT_MAX_ROWS,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

impl Limits {
    /// The default limits with `deadline`.
    pub fn with_deadline(deadline: Duration) -> Self {
        Limits {
            deadline,
            ..Limits::default()
        }
    }
}

/// The whole result of a query.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultSet {
    /// The columns, present even when there are no rows.
    pub schema: SchemaRef,
    /// The rows in the order the query returned them, in non-empty batches of `schema`
    /// (none when there are no rows).
    pub batches: Vec<RecordBatch>,
}

impl ResultSet {
    /// A result of `schema` and `batches`; empty batches are left out.
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        let batches = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
        ResultSet { schema, batches }
    }

    /// A result without rows.
    pub fn empty(schema: SchemaRef) -> Self {
        ResultSet {
            schema,
            batches: Vec::new(),
        }
    }

    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// All rows in one batch (of `schema`, with zero rows when there are none).
    pub fn concat(&self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        deltalake::arrow::compute::concat_batches(&self.schema, &self.batches)
    }
}

/// A handle that runs read-only SQL against one target.
///
/// # Contract
/// * **Read-only.** Only queries run: `SELECT`, `WITH … SELECT`, `VALUES`, `TABLE`, `EXPLAIN`,
///   `SHOW` (and DataFusion's `DESCRIBE`). Anything else (DDL, DML, `COPY`, `SET`, transaction control, `CALL`, `DO`,
///   …) fails with [`SqlError::ReadOnlyViolation`] before it reaches the target, and the
///   target refuses writes again on its side (Postgres: every query in its own
///   `BEGIN READ ONLY` transaction, rolled back; the lake: DataFusion without DDL, DML or
///   statements). A query that tries to write through a function fails the same way.
/// * **Deadline.** [`Limits::deadline`] covers the whole call, reading every batch
///   included. On expiry the work is cancelled where it runs (a Postgres cancel request for
///   the backend, which is then idle or terminated when the call returns; DataFusion's tasks
///   are dropped) and the call fails with [`SqlError::Timeout`], a little after the deadline
///   (the time to cancel). A server-side timeout ends the same way.
/// * **Limits.** A result of more than [`Limits::max_rows`] rows or [`Limits::max_bytes`]
///   bytes fails with [`SqlError::ResourcesExhausted`] as soon as it is known (the query is
///   cancelled); so does a target's own memory limit (the lake's memory pool). Nothing is
///   truncated: aggregate in SQL or add a `LIMIT`.
/// * **Errors** are [`SqlError`]s: each names the target and says what to do;
///   [`SqlError::Sql`] carries the SQLSTATE when the target has one.
/// * **Results** are Arrow [`RecordBatch`]es in a [`ResultSet`] whose schema is there even
///   for zero rows. Columns are nullable and keep the query's names and order. The Arrow
///   types are the lake's type mapping (LAKE_FORMAT.md "Type mapping"), so a source column and
///   its lake copy come back with the same type; see [`PostgresTarget`] for the details. No
///   target returns view types (`Utf8View`, `BinaryView`): strings are `Utf8`.
///   A value the type cannot hold exactly fails the query ([`SqlError::Conversion`]).
/// * **Concurrency.** Handles are `Send + Sync` and meant to be shared (`Arc<dyn
///   ReadOnlySql>`). A handle may run queries one at a time ([`PostgresTarget`]: one
///   connection, queries wait for it within their deadline) or several at once
///   ([`LakeTarget`]); open more handles for parallel queries on a one-at-a-time target.
/// * **Cancellation safety.** Dropping the future mid-query is safe: the target is left
///   usable (a Postgres backend is cancelled and its transaction rolled back in the
///   background, before the handle's next query runs).
#[async_trait]
pub trait ReadOnlySql: Send + Sync + fmt::Debug {
    /// What the handle reads, for messages and logs, without secrets: `postgres
    /// app@db.example.com:5432/shop`, `lake s3://bucket/lake`.
    fn target(&self) -> &str;

    /// The SQL dialect of [`ReadOnlySql::query`].
    fn dialect(&self) -> Dialect;

    /// Runs the single read-only statement `sql` within `limits` and returns its whole
    /// result (see the trait's contract).
    async fn query(&self, sql: &str, limits: &Limits) -> Result<ResultSet, SqlError>;
}

/// Gathers a result's batches while enforcing [`Limits::max_rows`] and [`Limits::max_bytes`].
pub(crate) struct Collector<'a> {
    target: &'a str,
    limits: &'a Limits,
    rows: usize,
    bytes: usize,
    batches: Vec<RecordBatch>,
}

impl<'a> Collector<'a> {
    pub(crate) fn new(target: &'a str, limits: &'a Limits) -> Self {
        Collector {
            target,
            limits,
            rows: 0,
            bytes: 0,
            batches: Vec::new(),
        }
    }

    /// Fails when `rows` and `bytes` more than gathered so far would pass a limit.
    pub(crate) fn check(&self, rows: usize, bytes: usize) -> Result<(), SqlError> {
        if self.rows.saturating_add(rows) > self.limits.max_rows {
            return Err(SqlError::ResourcesExhausted {
                target: self.target.to_owned(),
                what: format!("more than {} rows", self.limits.max_rows),
            });
        }
        if self.bytes.saturating_add(bytes) > self.limits.max_bytes {
            return Err(SqlError::ResourcesExhausted {
                target: self.target.to_owned(),
                what: format!(
                    "more than {} MiB of result",
                    self.limits.max_bytes.div_ceil(1 << 20)
                ),
            });
        }
        Ok(())
    }

    /// Adds `batch` (empty batches are dropped), or fails when it passes a limit.
    pub(crate) fn push(&mut self, batch: RecordBatch) -> Result<(), SqlError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let bytes = batch.get_array_memory_size();
        self.check(batch.num_rows(), bytes)?;
        self.rows += batch.num_rows();
        self.bytes += bytes;
        self.batches.push(batch);
        Ok(())
    }

    pub(crate) fn finish(self, schema: SchemaRef) -> ResultSet {
        ResultSet {
            schema,
            batches: self.batches,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::Int32Array;
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn batch(n: i32) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int32, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from_iter_values(0..n))]).unwrap()
    }

    #[test]
    fn collector_enforces_rows_and_bytes() {
        let limits = Limits {
            max_rows: 10,
            ..Limits::default()
        };
        let mut c = Collector::new("t", &limits);
        c.push(batch(6)).unwrap();
        c.push(batch(0)).unwrap();
        c.push(batch(4)).unwrap();
        let err = c.push(batch(1)).unwrap_err();
        assert!(
            matches!(&err, SqlError::ResourcesExhausted { what, .. } if what == "more than 10 rows"),
            "{err:?}"
        );
        let result = c.finish(batch(0).schema());
        assert_eq!(result.num_rows(), 10);
        assert_eq!(result.batches.len(), 2, "no empty batches");

        let limits = Limits {
            max_bytes: 100,
            ..Limits::default()
        };
        let mut c = Collector::new("t", &limits);
        let err = c.push(batch(1000)).unwrap_err();
        assert!(
            err.to_string().contains("more than 1 MiB of result"),
            "{err}"
        );
    }

    #[test]
    fn result_sets_drop_empty_batches_and_keep_the_schema() {
        let empty = ResultSet::new(batch(0).schema(), vec![batch(0)]);
        assert!(empty.batches.is_empty());
        assert_eq!(empty.schema.fields().len(), 1);
        assert_eq!(empty.concat().unwrap().num_rows(), 0);
        let two = ResultSet::new(batch(0).schema(), vec![batch(2), batch(3)]);
        assert_eq!(two.num_rows(), 5);
        assert_eq!(two.concat().unwrap().num_rows(), 5);
    }

    #[test]
    fn handles_are_object_safe() {
        fn shareable(_: &std::collections::HashMap<String, Arc<dyn ReadOnlySql>>) {}
        shareable(&Default::default());
    }
}
