//! Errors of the query layer: each says what went wrong and what to do about it.

use std::time::Duration;

use deltalake::datafusion::error::DataFusionError;

use crate::lake::LakeError;

/// A query over the lake that could not be opened, planned or run.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(
        "the lake at {lake} does not exist: check --lake (or WALAUDIT_LAKE), or run `walaudit run` \
         first to capture into it"
    )]
    LakeNotFound { lake: String },
    /// The lake's location is invalid, or its tables cannot be listed, opened or understood
    /// (the lake layer's message says what to do).
    #[error(transparent)]
    Lake(Box<LakeError>),
    #[error(
        "table {table} is not in the lake at {lake}: has `walaudit run` captured it? (list the \
         lake's tables with: walaudit query \"SHOW TABLES\")"
    )]
    TableNotFound { table: String, lake: String },
    #[error(
        "walaudit query is read-only: {what} is not allowed; use SELECT (or EXPLAIN) over the \
         lake's tables"
    )]
    ReadOnly { what: String },
    #[error(
        "the query did not finish within {}s: narrow it (a WHERE on _commit_ts or _lsn) or \
         raise --timeout",
        .0.as_secs_f64()
    )]
    Timeout(Duration),
    #[error("the query failed")]
    DataFusion(#[source] Box<DataFusionError>),
    #[error("cannot write the query result")]
    Output(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the parquet format writes binary data: give a file with --output")]
    ParquetNeedsOutput,
}

impl QueryError {
    /// Classifies a DataFusion error from planning or running user SQL: a table the lake does
    /// not hold becomes [`QueryError::TableNotFound`], a refused statement
    /// [`QueryError::ReadOnly`]; anything else is kept as is.
    pub(crate) fn from_datafusion(err: DataFusionError, lake: &str) -> Self {
        let root = err.find_root();
        if let DataFusionError::External(inner) = root
            && let Some(QueryError::TableNotFound { table, lake }) =
                inner.downcast_ref::<QueryError>()
        {
            return QueryError::TableNotFound {
                table: table.clone(),
                lake: lake.clone(),
            };
        }
        if let DataFusionError::Plan(msg) = root {
            if let Some(table) = missing_table(msg) {
                return QueryError::TableNotFound {
                    table,
                    lake: lake.to_owned(),
                };
            }
            for refused in [
                "DDL not supported: ",
                "DML not supported: ",
                "Statement not supported: ",
            ] {
                if let Some(what) = msg.strip_prefix(refused) {
                    return QueryError::ReadOnly {
                        what: what.to_owned(),
                    };
                }
            }
        }
        QueryError::DataFusion(Box::new(err))
    }
}

impl From<LakeError> for QueryError {
    fn from(err: LakeError) -> Self {
        match err {
            LakeError::NotFound { location } => QueryError::LakeNotFound { lake: location },
            other => QueryError::Lake(Box::new(other)),
        }
    }
}

impl From<DataFusionError> for QueryError {
    fn from(err: DataFusionError) -> Self {
        QueryError::DataFusion(Box::new(err))
    }
}

/// The table named by DataFusion's "table 'catalog.schema.table' not found", without the
/// catalog when it is the change-log one.
fn missing_table(msg: &str) -> Option<String> {
    let name = msg.strip_prefix("table '")?.strip_suffix("' not found")?;
    let name = name
        .strip_prefix(&format!("{}.", super::LAKE_CATALOG))
        .unwrap_or(name);
    Some(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_table_names() {
        assert_eq!(
            missing_table("table 'lake.public.orders' not found").as_deref(),
            Some("public.orders")
        );
        assert_eq!(
            missing_table("table 'current.public.orders' not found").as_deref(),
            Some("current.public.orders")
        );
        assert_eq!(missing_table("column 'x' not found"), None);
    }

    #[test]
    fn classifies_datafusion_errors() {
        let err = QueryError::from_datafusion(
            DataFusionError::Plan("table 'lake.public.nope' not found".into()),
            "./lake",
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "table public.nope is not in the lake at ./lake: has `walaudit run` captured it?"
            ),
            "{msg}"
        );
        let err = QueryError::from_datafusion(
            DataFusionError::Plan("DML not supported: Insert Into".into()),
            "./lake",
        );
        assert_eq!(
            err.to_string(),
            "walaudit query is read-only: Insert Into is not allowed; use SELECT (or EXPLAIN) over \
             the lake's tables"
        );
        let err = QueryError::from_datafusion(DataFusionError::Plan("other".into()), "./lake");
        assert!(matches!(err, QueryError::DataFusion(_)));
    }
}
