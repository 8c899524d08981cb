//! An in-memory target for tests of what stands on the seam (checks, reconciliation):
//! canned results keyed by SQL or computed by a closure, the statements it saw, and
//! simulated delays, timeouts and errors.
//!
//! ```text
//!  query(sql, limits) ─► record sql ─► refuse non-queries ─► canned reply for sql
//!                                                            └► else the handler, else an error
//!                     ─► wait the reply's delay (a delay past the deadline is a Timeout)
//!                     ─► the result through the same limits as every target
//! ```
//!
//! # Invariants
//! * It keeps the trait's contract where it can: non-queries are refused as by every target,
//!   results pass the same row and byte limits, a delay longer than the deadline ends in
//!   [`SqlError::Timeout`] at the deadline.
//! * Every call is recorded, refused ones included, in call order.
//! * Delays are tokio sleeps (a paused test clock runs them instantly).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{Collector, Dialect, Limits, ReadOnlySql, ResultSet, SqlError, statement};

type Handler = dyn Fn(&str) -> Result<ResultSet, SqlError> + Send + Sync;
type ErrorFn = dyn Fn(&str) -> SqlError + Send + Sync;

/// What the target answers to one statement.
#[derive(Clone)]
pub struct Reply {
    outcome: Outcome,
    delay: Duration,
}

#[derive(Clone)]
enum Outcome {
    Rows(ResultSet),
    Error(Arc<ErrorFn>),
}

impl Reply {
    /// Answers with `result`.
    pub fn rows(result: ResultSet) -> Reply {
        Reply {
            outcome: Outcome::Rows(result),
            delay: Duration::ZERO,
        }
    }

    /// Fails with the error `error` makes for the target's name.
    pub fn error(error: impl Fn(&str) -> SqlError + Send + Sync + 'static) -> Reply {
        Reply {
            outcome: Outcome::Error(Arc::new(error)),
            delay: Duration::ZERO,
        }
    }

    /// Answers only after `delay` (a timeout when the deadline comes first).
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let outcome = match &self.outcome {
            Outcome::Rows(r) => format!("{} rows", r.num_rows()),
            Outcome::Error(_) => "error".to_owned(),
        };
        f.debug_struct("Reply")
            .field("outcome", &outcome)
            .field("delay", &self.delay)
            .finish()
    }
}

/// A target answering from memory; see the module docs.
pub struct MemoryTarget {
    target: String,
    dialect: Dialect,
    replies: Mutex<HashMap<String, Reply>>,
    handler: Option<Box<Handler>>,
    seen: Mutex<Vec<String>>,
}

impl std::fmt::Debug for MemoryTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTarget")
            .field("target", &self.target)
            .field("dialect", &self.dialect)
            .finish_non_exhaustive()
    }
}

impl MemoryTarget {
    /// An empty target named `target` (in messages) speaking `dialect`.
    pub fn new(target: impl Into<String>, dialect: Dialect) -> MemoryTarget {
        MemoryTarget {
            target: target.into(),
            dialect,
            replies: Mutex::new(HashMap::new()),
            handler: None,
            seen: Mutex::new(Vec::new()),
        }
    }

    /// Answers `sql` (compared after trimming blanks) with `reply`, replacing an earlier one.
    pub fn with(self, sql: &str, reply: Reply) -> MemoryTarget {
        self.set(sql, reply);
        self
    }

    /// Answers statements without a canned reply with `handler`.
    pub fn with_handler(
        mut self,
        handler: impl Fn(&str) -> Result<ResultSet, SqlError> + Send + Sync + 'static,
    ) -> MemoryTarget {
        self.handler = Some(Box::new(handler));
        self
    }

    /// Answers `sql` with `reply` from now on.
    pub fn set(&self, sql: &str, reply: Reply) {
        self.replies
            .lock()
            .expect("replies lock")
            .insert(sql.trim().to_owned(), reply);
    }

    /// Every statement queried so far, in order.
    pub fn statements(&self) -> Vec<String> {
        self.seen.lock().expect("seen lock").clone()
    }

    /// How long to wait and what to answer to `sql`.
    fn answer(&self, sql: &str) -> (Duration, Result<ResultSet, SqlError>) {
        let canned = self
            .replies
            .lock()
            .expect("replies lock")
            .get(sql.trim())
            .cloned();
        match (canned, &self.handler) {
            (Some(reply), _) => (
                reply.delay,
                match reply.outcome {
                    Outcome::Rows(result) => Ok(result),
                    Outcome::Error(error) => Err(error(&self.target)),
                },
            ),
            (None, Some(handler)) => (Duration::ZERO, handler(sql)),
            (None, None) => (Duration::ZERO, Err(no_reply(&self.target))),
        }
    }
}

fn no_reply(target: &str) -> SqlError {
    SqlError::Sql {
        target: target.to_owned(),
        sqlstate: None,
        message: "the in-memory target has no reply for this statement".to_owned(),
        hint: "give it one with MemoryTarget::with or with_handler".to_owned(),
    }
}

#[async_trait]
impl ReadOnlySql for MemoryTarget {
    fn target(&self) -> &str {
        &self.target
    }

    fn dialect(&self) -> Dialect {
        self.dialect
    }

    async fn query(&self, sql: &str, limits: &Limits) -> Result<ResultSet, SqlError> {
        self.seen.lock().expect("seen lock").push(sql.to_owned());
        statement::refuse_non_query(&self.target, sql)?;
        let (delay, answer) = self.answer(sql);
        if delay > limits.deadline {
            tokio::time::sleep(limits.deadline).await;
            return Err(SqlError::Timeout {
                target: self.target.clone(),
                deadline: limits.deadline,
            });
        }
        tokio::time::sleep(delay).await;
        let result = answer?;
        let mut collector = Collector::new(&self.target, limits);
        for batch in result.batches {
            collector.push(batch)?;
        }
        Ok(collector.finish(result.schema))
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::{Int64Array, RecordBatch};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn counts(values: &[i64]) -> ResultSet {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(values.to_vec()))],
        )
        .unwrap();
        ResultSet::new(schema, vec![batch])
    }

    #[tokio::test]
    async fn canned_results_and_recorded_statements() {
        let target = MemoryTarget::new("memory src", Dialect::Postgres)
            .with("SELECT count(*) FROM t", Reply::rows(counts(&[3])));
        let got = target
            .query("  SELECT count(*) FROM t\n", &Limits::default())
            .await
            .unwrap();
        assert_eq!(got, counts(&[3]));
        let err = target
            .query("SELECT 2", &Limits::default())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("no reply for this statement"),
            "{err}"
        );
        let err = target
            .query("DELETE FROM t", &Limits::default())
            .await
            .unwrap_err();
        assert!(matches!(err, SqlError::ReadOnlyViolation { .. }), "{err:?}");
        assert_eq!(
            target.statements(),
            ["  SELECT count(*) FROM t\n", "SELECT 2", "DELETE FROM t"]
        );
        assert_eq!(target.dialect(), Dialect::Postgres);
        assert_eq!(target.target(), "memory src");
    }

    #[tokio::test]
    async fn handler_answers_the_rest() {
        let target = MemoryTarget::new("m", Dialect::DataFusion).with_handler(|sql| {
            if sql.contains("bad") {
                Err(SqlError::Sql {
                    target: "m".into(),
                    sqlstate: Some(super::super::SqlState::UNDEFINED_COLUMN),
                    message: "column bad does not exist".into(),
                    hint: "fix it".into(),
                })
            } else {
                Ok(counts(&[sql.len() as i64]))
            }
        });
        let got = target.query("SELECT 1", &Limits::default()).await.unwrap();
        assert_eq!(got, counts(&[8]));
        let err = target
            .query("SELECT bad", &Limits::default())
            .await
            .unwrap_err();
        assert_eq!(
            err.sqlstate(),
            Some(&super::super::SqlState::UNDEFINED_COLUMN)
        );
    }

    #[tokio::test]
    async fn delays_and_timeouts() {
        let target = MemoryTarget::new("m", Dialect::Postgres)
            .with(
                "SELECT 1",
                Reply::rows(counts(&[1])).after(Duration::from_millis(200)),
            )
            .with(
                "SELECT 2",
                Reply::error(|target| SqlError::Connection {
                    target: target.to_owned(),
                    source: "reset".into(),
                })
                .after(Duration::from_millis(10)),
            );
        let started = tokio::time::Instant::now();
        let got = target
            .query("SELECT 1", &Limits::with_deadline(Duration::from_secs(3)))
            .await
            .unwrap();
        assert_eq!(got.num_rows(), 1);
        assert!(started.elapsed() >= Duration::from_millis(200));

        let started = tokio::time::Instant::now();
        let err = target
            .query(
                "SELECT 1",
                &Limits::with_deadline(Duration::from_millis(50)),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, SqlError::Timeout { deadline, .. } if deadline == Duration::from_millis(50))
        );
        let took = started.elapsed();
        assert!(
            (Duration::from_millis(50)..Duration::from_millis(190)).contains(&took),
            "at the deadline, not after the delay: {took:?}"
        );

        let err = target
            .query("SELECT 2", &Limits::default())
            .await
            .unwrap_err();
        assert!(matches!(err, SqlError::Connection { .. }), "{err:?}");
        // An error reply can be given more than once.
        let err = target
            .query("SELECT 2", &Limits::default())
            .await
            .unwrap_err();
        assert!(matches!(err, SqlError::Connection { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn limits_apply_to_canned_results() {
        let target = MemoryTarget::new("m", Dialect::Postgres)
            .with("SELECT n", Reply::rows(counts(&[1, 2, 3])));
        let limits = Limits {
            max_rows: 2,
            ..Limits::default()
        };
        let err = target.query("SELECT n", &limits).await.unwrap_err();
        assert!(
            matches!(err, SqlError::ResourcesExhausted { .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn shared_as_a_trait_object() {
        let targets: HashMap<&str, Arc<dyn ReadOnlySql>> = HashMap::from([(
            "a",
            Arc::new(
                MemoryTarget::new("m", Dialect::Postgres)
                    .with("SELECT n", Reply::rows(counts(&[7]))),
            ) as Arc<dyn ReadOnlySql>,
        )]);
        let got = targets["a"]
            .query("SELECT n", &Limits::default())
            .await
            .unwrap();
        assert_eq!(got.num_rows(), 1);
    }
}
