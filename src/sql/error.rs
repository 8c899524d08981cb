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

    /// Classifies an error of a query on a Postgres connection.
    pub(crate) fn from_postgres(
        err: tokio_postgres::Error,
        target: &str,
        deadline: Duration,
    ) -> Self {
        let Some(db) = err.as_db_error() else {
            return SqlError::Connection {
                target: target.to_owned(),
                source: Box::new(err),
            };
        };
        classify(
            target,
            db.code(),
            db.message(),
            db.hint(),
            deadline,
            Box::new(ServerMessage(format!(
                "{} {}: {}",
                db.severity(),
                db.code().code(),
                db.message()
            ))),
        )
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

/// The seam's error for a server error with `code`.
fn classify(
    target: &str,
    code: &SqlState,
    message: &str,
    server_hint: Option<&str>,
    deadline: Duration,
    source: BoxError,
) -> SqlError {
    let target = target.to_owned();
    if *code == SqlState::QUERY_CANCELED {
        return SqlError::Timeout { target, deadline };
    }
    if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        return SqlError::ReadOnlyViolation {
            target,
            what: message.to_owned(),
        };
    }
    if [
        SqlState::INSUFFICIENT_RESOURCES,
        SqlState::OUT_OF_MEMORY,
        SqlState::DISK_FULL,
        SqlState::CONFIGURATION_LIMIT_EXCEEDED,
        SqlState::PROGRAM_LIMIT_EXCEEDED,
    ]
    .contains(code)
    {
        return SqlError::ResourcesExhausted {
            target,
            what: format!("more than the server allows ({message})"),
        };
    }
    // Class 08 (connection exception), 57P (operator intervention: shutdown, terminated).
    let class = &code.code()[..2];
    if class == "08" || code.code().starts_with("57P") || *code == SqlState::TOO_MANY_CONNECTIONS {
        return SqlError::Connection { target, source };
    }
    let hint = match server_hint {
        Some(hint) => hint.to_owned(),
        None if *code == SqlState::INSUFFICIENT_PRIVILEGE => {
            "grant the role SELECT on what the query reads (or the pg_read_all_data role)"
                .to_owned()
        }
        None if *code == SqlState::UNDEFINED_TABLE => {
            "check the table's name, its schema and the role's search_path".to_owned()
        }
        None if class == "42" => "fix the query's syntax or names".to_owned(),
        None => "fix the query or the data it reads".to_owned(),
    };
    SqlError::Sql {
        target,
        sqlstate: Some(code.clone()),
        message: message.to_owned(),
        hint,
    }
}

/// The server's words, without `DETAIL`: the source of a connection error.
#[derive(Debug)]
struct ServerMessage(String);

impl std::fmt::Display for ServerMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "server said: {}", self.0)
    }
}

impl std::error::Error for ServerMessage {}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(code: SqlState) -> SqlError {
        classify(
            "postgres x",
            &code,
            "msg",
            None,
            Duration::from_millis(300),
            "src".into(),
        )
    }

    #[test]
    fn sqlstates_map_to_variants() {
        assert!(matches!(
            class(SqlState::QUERY_CANCELED),
            SqlError::Timeout { deadline, .. } if deadline == Duration::from_millis(300)
        ));
        assert!(matches!(
            class(SqlState::READ_ONLY_SQL_TRANSACTION),
            SqlError::ReadOnlyViolation { what, .. } if what == "msg"
        ));
        for code in [SqlState::OUT_OF_MEMORY, SqlState::DISK_FULL] {
            assert!(matches!(class(code), SqlError::ResourcesExhausted { .. }));
        }
        for code in [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CONNECTION_FAILURE,
            SqlState::TOO_MANY_CONNECTIONS,
        ] {
            assert!(matches!(class(code), SqlError::Connection { .. }));
        }
        let err = class(SqlState::UNDEFINED_TABLE);
        assert_eq!(err.sqlstate(), Some(&SqlState::UNDEFINED_TABLE));
        assert_eq!(
            err.to_string(),
            "postgres x: the query failed (SQLSTATE 42P01): msg; check the table's name, its \
             schema and the role's search_path"
        );
        let err = classify(
            "t",
            &SqlState::UNDEFINED_FUNCTION,
            "no f",
            Some("add casts"),
            Duration::ZERO,
            "src".into(),
        );
        assert!(err.to_string().ends_with("no f; add casts"), "{err}");
        assert_eq!(err.target(), "t");
    }

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
