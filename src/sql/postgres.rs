//! The seam over a Postgres connection (tokio-postgres, same transport and TLS rules as the
//! source's SQL connections).
//!
//! ```text
//!  query(sql, limits) ─► refuse non-queries ─► wait for the connection (within the deadline)
//!     ─► connect if needed: SET default_transaction_read_only = on; pg_backend_pid()
//!     ─► BEGIN READ ONLY; SET LOCAL statement_timeout = <time left>
//!     ─► prepare(sql)                one statement only; column types and typmods
//!     ─► SET LOCAL statement_timeout = <time left>; simple query: text rows ─► batches
//!     ─► ROLLBACK                    even on success: nothing the statement did outlives it
//!
//!  deadline passed, limit hit, value without an exact form, future dropped:
//!     ─► cancel request for the backend (its cancel token, over a fresh socket)
//!     ─► ROLLBACK within the grace ─► idle, ready for the next query
//!                                  └► else pg_terminate_backend from a new connection; the
//!                                     next query reconnects
//! ```
//!
//! Preparing first is what keeps the text protocol safe: the server parses the statement as
//! one (a second statement, e.g. `SELECT 1; COMMIT; DELETE …`, fails to prepare) and reports
//! each column's type and typmod, which the simple query protocol does not. The values then
//! come in the text protocol, typed as in [`super::pg_arrow`].
//!
//! `CancelToken::cancel_query` needs the connection's socket configuration, which a
//! connection made over our own transport does not have: the cancel request goes through
//! `cancel_query_raw` over a socket opened by [`crate::source::transport`], so it uses the
//! same address and TLS as the connection (see [`super::cancel`]).
//!
//! # Invariants
//! * Every statement of a query runs inside `BEGIN READ ONLY` … `ROLLBACK`; the session also
//!   defaults to read-only transactions. A write fails with `READ_ONLY_SQL_TRANSACTION`.
//! * One query at a time per handle: the connection is behind an async mutex held from the
//!   first statement until the backend is idle again (recovery included, in the background
//!   when the caller's future was dropped).
//! * When [`SqlError::Timeout`] is returned the backend is idle or terminated.
//! * Logs carry the target and the backend pid, never SQL text, values or passwords.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio::time::{Instant, timeout_at};
use tokio_postgres::{CancelToken, Client, SimpleQueryMessage};

use super::cancel::{send_cancel, terminate};
use super::pg_arrow::{self, BatchBuilder};
use super::{Collector, Dialect, Limits, ReadOnlySql, ResultSet, SqlError, statement};
use crate::source::ConnParams;

/// Rows per result batch.
const BATCH_ROWS: usize = 8192;
/// Text bytes after which a batch is finished early.
const BATCH_TEXT_BYTES: usize = 8 << 20;

/// How to run queries on a Postgres connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostgresOptions {
    /// How long a cancelled backend may take to become idle before it is terminated (and how
    /// long connecting for the cancel request or the termination may take).
    pub cancel_grace: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            cancel_grace: Duration::from_secs(5),
        }
    }
}

/// A read-only handle on one Postgres database: one connection, made on first use and again
/// after it is lost. Set `application_name` in the [`ConnParams`] to find its backend in
/// `pg_stat_activity`.
pub struct PostgresTarget {
    params: ConnParams,
    options: PostgresOptions,
    target: String,
    session: Arc<Mutex<Option<Session>>>,
}

/// An open connection and what is needed to stop its backend.
struct Session {
    client: Client,
    cancel: CancelToken,
    pid: i32,
}

impl std::fmt::Debug for PostgresTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresTarget")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PostgresTarget {
    /// A handle that connects on its first query.
    pub fn new(params: ConnParams, options: PostgresOptions) -> Self {
        let target = format!(
            "postgres {}@{}/{}",
            params.user,
            params.address(),
            params.dbname
        );
        PostgresTarget {
            params,
            options,
            target,
            session: Arc::new(Mutex::new(None)),
        }
    }

    /// A handle connected now, so that a wrong address or password shows at once.
    pub async fn connect(
        params: ConnParams,
        options: PostgresOptions,
    ) -> Result<PostgresTarget, SqlError> {
        let handle = PostgresTarget::new(params, options);
        let session = open_session(&handle.params, &handle.target).await?;
        *handle.session.lock().await = Some(session);
        Ok(handle)
    }

    /// The statements of one query on `session`; see the module docs.
    async fn run(
        &self,
        session: &Session,
        sql: &str,
        limits: &Limits,
        deadline: Instant,
    ) -> Result<ResultSet, Failure> {
        let done = |in_flight| {
            let target = self.target.clone();
            move |err| Failure {
                error: SqlError::from_postgres(err, &target, limits.deadline),
                in_flight,
            }
        };
        let client = &session.client;
        client
            .batch_execute(&format!(
                "BEGIN READ ONLY; SET LOCAL statement_timeout = {}",
                millis_left(deadline)
            ))
            .await
            .map_err(done(false))?;
        let columns = pg_arrow::columns(client.prepare(sql).await.map_err(done(false))?.columns());
        client
            .batch_execute(&format!(
                "SET LOCAL statement_timeout = {}",
                millis_left(deadline)
            ))
            .await
            .map_err(done(false))?;

        let mut builder = BatchBuilder::new(&columns, BATCH_ROWS.min(limits.max_rows));
        let mut collector = Collector::new(&self.target, limits);
        let aborted = |error| Failure {
            error,
            in_flight: true,
        };
        let mut rows = pin!(client.simple_query_raw(sql).await.map_err(done(false))?);
        while let Some(message) = rows.next().await {
            let SimpleQueryMessage::Row(row) = message.map_err(done(false))? else {
                continue;
            };
            collector
                .check(builder.rows() + 1, builder.text_bytes())
                .map_err(aborted)?;
            builder
                .append_row(|i| row.try_get(i).map_err(|_| ()))
                .map_err(|i| {
                    aborted(SqlError::Conversion {
                        target: self.target.clone(),
                        column: columns[i].name.clone(),
                        pg_type: columns[i].type_name.clone(),
                    })
                })?;
            if builder.rows() >= BATCH_ROWS || builder.text_bytes() >= BATCH_TEXT_BYTES {
                collector
                    .push(
                        builder
                            .finish()
                            .map_err(|e| aborted(arrow_error(&self.target, e)))?,
                    )
                    .map_err(aborted)?;
            }
        }
        let last = builder
            .finish()
            .map_err(|e| aborted(arrow_error(&self.target, e)))?;
        collector.push(last).map_err(aborted)?;
        client
            .batch_execute("ROLLBACK")
            .await
            .map_err(done(false))?;
        Ok(collector.finish(builder.schema()))
    }
}

#[async_trait]
impl ReadOnlySql for PostgresTarget {
    fn target(&self) -> &str {
        &self.target
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn query(&self, sql: &str, limits: &Limits) -> Result<ResultSet, SqlError> {
        statement::refuse_non_query(&self.target, sql)?;
        let started = Instant::now();
        let deadline = started + limits.deadline;
        let timed_out = || SqlError::Timeout {
            target: self.target.clone(),
            deadline: limits.deadline,
        };
        let slot = timeout_at(deadline, self.session.clone().lock_owned())
            .await
            .map_err(|_| timed_out())?;
        let mut guard = InFlight {
            slot: Some(slot),
            params: self.params.clone(),
            target: self.target.clone(),
            grace: self.options.cancel_grace,
            armed: false,
        };
        let slot = guard.slot.as_mut().expect("set above");
        if slot.as_ref().is_none_or(|s| s.client.is_closed()) {
            **slot = None;
            let session = timeout_at(deadline, open_session(&self.params, &self.target))
                .await
                .map_err(|_| timed_out())??;
            **slot = Some(session);
        }
        guard.armed = true;
        let session = guard
            .slot
            .as_ref()
            .and_then(|s| s.as_ref())
            .expect("connected above");
        let outcome = timeout_at(deadline, self.run(session, sql, limits, deadline)).await;
        match outcome {
            Ok(Ok(result)) => {
                guard.armed = false;
                tracing::debug!(target = %self.target, rows = result.num_rows(),
                    elapsed_ms = started.elapsed().as_millis() as u64, "read-only query done");
                Ok(result)
            }
            Ok(Err(failure)) => {
                guard.recover(failure.in_flight).await;
                Err(failure.error)
            }
            Err(_) => {
                guard.recover(true).await;
                Err(timed_out())
            }
        }
    }
}

/// A query that stopped early; `in_flight` when its statement may still run on the server.
struct Failure {
    error: SqlError,
    in_flight: bool,
}

/// The connection while a query uses it. Dropped while armed (the caller's future was
/// dropped mid-query), it cancels the backend and rolls back in the background, holding the
/// connection until the backend is idle.
struct InFlight {
    slot: Option<OwnedMutexGuard<Option<Session>>>,
    params: ConnParams,
    target: String,
    grace: Duration,
    armed: bool,
}

impl InFlight {
    async fn recover(&mut self, cancel: bool) {
        if let Some(slot) = self.slot.as_mut() {
            recover(&self.params, &self.target, slot, cancel, self.grace).await;
        }
        self.armed = false;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Some(mut slot) = self.slot.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let (params, target, grace) =
                    (self.params.clone(), self.target.clone(), self.grace);
                runtime.spawn(async move {
                    recover(&params, &target, &mut slot, true, grace).await;
                });
            }
            // No runtime to cancel from: close the connection; the next query reconnects.
            Err(_) => *slot = None,
        }
    }
}

/// Brings the connection in `slot` back to idle after an interrupted query: a cancel request
/// when the statement may still run, then `ROLLBACK`; a backend still busy after `grace` is
/// terminated and the connection dropped.
async fn recover(
    params: &ConnParams,
    target: &str,
    slot: &mut Option<Session>,
    cancel: bool,
    grace: Duration,
) {
    let Some(session) = slot.as_ref() else {
        return;
    };
    let pid = session.pid;
    if cancel {
        match send_cancel(params, &session.cancel, grace).await {
            Ok(()) => tracing::debug!(target, pid, "cancel request sent"),
            Err(error) => tracing::warn!(target, pid, %error, "cancel request failed"),
        }
    }
    // The rollback queues behind the cancelled statement; a cancel arriving just as the
    // statement ends can hit the first rollback instead, hence a second try.
    let until = Instant::now() + grace;
    for _ in 0..2 {
        match timeout_at(until, session.client.batch_execute("ROLLBACK")).await {
            Ok(Ok(())) => return,
            Ok(Err(_)) if session.client.is_closed() => {
                tracing::debug!(target, pid, "connection closed while recovering");
                *slot = None;
                return;
            }
            Ok(Err(_)) => continue,
            Err(_) => break,
        }
    }
    tracing::warn!(
        target,
        pid,
        grace_ms = grace.as_millis() as u64,
        "backend still busy after a cancel request: terminating it"
    );
    if let Err(error) = terminate(params, pid, grace).await {
        tracing::warn!(target, pid, %error, "terminating the backend failed");
    }
    *slot = None;
}

/// Connects and makes read-only transactions the session's default.
async fn open_session(params: &ConnParams, target: &str) -> Result<Session, SqlError> {
    let client = params
        .connect_sql()
        .await
        .map_err(|e| SqlError::Connection {
            target: target.to_owned(),
            source: Box::new(e),
        })?;
    let messages = client
        .simple_query("SET default_transaction_read_only = on; SELECT pg_backend_pid()")
        .await
        .map_err(|e| SqlError::from_postgres(e, target, Duration::ZERO))?;
    let pid = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0)?.parse().ok(),
            _ => None,
        })
        .ok_or_else(|| SqlError::Connection {
            target: target.to_owned(),
            source: "the server did not report its backend pid".into(),
        })?;
    tracing::debug!(target, pid, "read-only connection open");
    Ok(Session {
        cancel: client.cancel_token(),
        client,
        pid,
    })
}

/// Milliseconds until `deadline`, at least 1 (`statement_timeout = 0` would mean none).
fn millis_left(deadline: Instant) -> u128 {
    deadline
        .saturating_duration_since(Instant::now())
        .as_millis()
        .max(1)
}

fn arrow_error(target: &str, err: arrow_schema::ArrowError) -> SqlError {
    SqlError::Sql {
        target: target.to_owned(),
        sqlstate: None,
        message: format!("the result could not be built: {err}"),
        hint: "cast the columns to text in the query".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_left_is_never_zero() {
        assert_eq!(millis_left(Instant::now()), 1);
        let later = Instant::now() + Duration::from_secs(3);
        assert!((2900..=3000).contains(&millis_left(later)));
    }

    #[test]
    fn targets_name_user_address_and_database() {
        let params =
            ConnParams::parse("postgres://checker:secret@db.example.com:6543/shop").unwrap();
        let handle = PostgresTarget::new(params, PostgresOptions::default());
        assert_eq!(handle.target(), "postgres checker@db.example.com:6543/shop");
        assert!(!format!("{handle:?}").contains("secret"));
    }

    #[tokio::test]
    async fn writes_are_refused_before_connecting() {
        // Nothing listens there: a refusal must come before any connection attempt.
        let params = ConnParams::parse("postgres://u@127.0.0.1:1/db?connect_timeout=1").unwrap();
        let handle = PostgresTarget::new(params, PostgresOptions::default());
        let err = handle
            .query("DELETE FROM t", &Limits::default())
            .await
            .unwrap_err();
        assert!(matches!(err, SqlError::ReadOnlyViolation { .. }), "{err:?}");
        let err = handle
            .query("SELECT 1", &Limits::default())
            .await
            .unwrap_err();
        assert!(matches!(err, SqlError::Connection { .. }), "{err:?}");
    }
}
