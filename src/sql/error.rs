//! Errors of the query seam: one enum for every target, each variant naming the target and
//! saying what to do.
//!
//! ```text
//!  tokio_postgres::Error ──► from_postgres ──► SQLSTATE class ──► Timeout | ReadOnlyViolation
//!  QueryError (lake)     ──► from_lake     ──► variant        ──►  | ResourcesExhausted
//!                                                                  | Connection | Sql
//! ```
//!
//! # Invariants
//! * SQLSTATEs are matched with [`SqlState`] constants, never string literals.
//! * Messages carry the server's message and hint, never the statement's text or the
//!   server's `DETAIL` (which can hold row values, e.g. a key).

use std::time::Duration;

use tokio_postgres::error::SqlState;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a read-only query failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    #[error(
        "{target}: the query did not finish within {}s and was cancelled: narrow it (a WHERE on \
         a time or key range the target can use) or give it a longer deadline",
        deadline.as_secs_f64()
    )]
    Timeout { target: String, deadline: Duration },
    #[error(
        "{target}: {what} is not allowed: this connection only runs read-only queries (SELECT, \
         WITH, VALUES, TABLE, EXPLAIN, SHOW); checks and reconciliation never write"
    )]
    ReadOnlyViolation { target: String, what: String },
    #[error(
        "{target}: the query failed{}: {message}; {hint}",
        sqlstate.as_ref().map(|s| format!(" (SQLSTATE {})", s.code())).unwrap_or_default()
    )]
    Sql {
        target: String,
        /// The SQLSTATE when the target reports one (Postgres always; the lake for a missing
        /// table).
        sqlstate: Option<SqlState>,
        message: String,
        /// What to do: the server's hint, or ours.
        hint: String,
    },
    #[error(
        "{target}: the connection failed: check that the target is up and reachable and that \
         its address and credentials are right; the next query reconnects"
    )]
    Connection {
        target: String,
        #[source]
        source: BoxError,
    },
    #[error(
        "{target}: the query needs {what}: aggregate in SQL (count, sum, GROUP BY) or add a \
         LIMIT, or raise the limit"
    )]
    ResourcesExhausted { target: String, what: String },
    #[error(
        "{target}: a value of column {column:?} ({pg_type}) has no exact Arrow form (out of \
         range, NaN or not in the type's text form): cast the column to text in the query"
    )]
    Conversion {
        target: String,
        column: String,
        pg_type: String,
    },
}

impl SqlError {
    /// The target the error is about.
    pub fn target(&self) -> &str {
        match self {
            SqlError::Timeout { target, .. }
            | SqlError::ReadOnlyViolation { target, .. }
            | SqlError::Sql { target, .. }
            | SqlError::Connection { target, .. }
            | SqlError::ResourcesExhausted { target, .. }
            | SqlError::Conversion { target, .. } => target,
        }
    }

    /// The SQLSTATE, for [`SqlError::Sql`].
    pub fn sqlstate(&self) -> Option<&SqlState> {
        match self {
            SqlError::Sql { sqlstate, .. } => sqlstate.as_ref(),
            _ => None,
        }
    }

    /// Classifies an error of a query over the lake.
    pub(crate) fn from_lake(err: crate::query::QueryError, target: &str) -> Self {
        use crate::query::QueryError;
        use deltalake::datafusion::error::DataFusionError;
        let target = target.to_owned();
        match err {
            QueryError::ReadOnly { what } => SqlError::ReadOnlyViolation { target, what },
            QueryError::Timeout(deadline) => SqlError::Timeout { target, deadline },
            QueryError::TableNotFound { table, .. } => SqlError::Sql {
                target,
                sqlstate: Some(SqlState::UNDEFINED_TABLE),
                message: format!("table {table} is not in the lake"),
                hint: "list the lake's tables with SHOW TABLES".to_owned(),
            },
            QueryError::DataFusion(df) => match df.find_root() {
                DataFusionError::ResourcesExhausted(what) => SqlError::ResourcesExhausted {
                    target,
                    what: format!("more memory than the lake's memory pool holds ({what})"),
                },
                DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => {
                    SqlError::Connection { target, source: df }
                }
                root => SqlError::Sql {
                    target,
                    sqlstate: None,
                    message: root.to_string(),
                    hint: "check the query against the lake's tables (SHOW TABLES, DESCRIBE \
                           <table>)"
                        .to_owned(),
                },
            },
            other => SqlError::Connection {
                target,
                source: Box::new(other),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lake_errors_map_to_variants() {
        use crate::query::QueryError;
        use deltalake::datafusion::error::DataFusionError;
        let err = SqlError::from_lake(
            QueryError::ReadOnly {
                what: "Insert Into".into(),
            },
            "lake l",
        );
        assert!(matches!(err, SqlError::ReadOnlyViolation { .. }), "{err:?}");
        let err = SqlError::from_lake(
            QueryError::DataFusion(Box::new(DataFusionError::ResourcesExhausted("x".into()))),
            "lake l",
        );
        assert!(
            matches!(err, SqlError::ResourcesExhausted { .. }),
            "{err:?}"
        );
        let err = SqlError::from_lake(
            QueryError::TableNotFound {
                table: "public.nope".into(),
                lake: "l".into(),
            },
            "lake l",
        );
        assert_eq!(err.sqlstate(), Some(&SqlState::UNDEFINED_TABLE));
    }
}
