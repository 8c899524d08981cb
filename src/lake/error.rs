//! Errors of the lake layer, split by consequence ([`LakeError::recovery`]): storage trouble
//! is retried with backoff ([`Recovery::Retry`]); everything else stops the engine with a hint
//! for the operator ([`Recovery::Fatal`]).

use deltalake::DeltaTableError;

use super::SchemaError;
use crate::recovery::Recovery;
use crate::sink::SinkError;

/// The lake could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("invalid lake location {location:?}: {reason}")]
    Location { location: String, reason: String },
    #[error(
        "the lake at {location} does not exist: check --lake (or WALAUDIT_LAKE), or run \
         `walaudit run` first to capture into it"
    )]
    NotFound { location: String },
    #[error(
        "no Delta table {table} in the lake {lake}: give `schema.table` or `_walaudit/name` (list \
         them with: walaudit query \"SHOW TABLES\")"
    )]
    NoSuchTable { lake: String, table: String },
    #[error("cannot list the tables of the lake at {lake}: check the location and its credentials")]
    List {
        lake: String,
        #[source]
        source: Box<deltalake::ObjectStoreError>,
    },
    #[error(
        "the Delta table at {url} has an invalid {key} property ({detail}): it was not written \
         by a compatible walaudit; move it out of the lake or fix its metadata"
    )]
    BadMetadata {
        url: String,
        key: &'static str,
        detail: String,
    },
    #[error("cannot {action} Delta table {table}")]
    Delta {
        action: &'static str,
        table: String,
        #[source]
        source: Box<DeltaTableError>,
    },
    #[error(
        "Delta table {table} exists but is not a walaudit {kind} table (column {column:?}): \
         move it away or point --lake somewhere else"
    )]
    Foreign {
        table: String,
        kind: &'static str,
        column: String,
    },
    #[error(
        "Delta table {table} holds version {stored} for {app_id}, newer than the commit being \
         written ({attempted}): another engine writes this lake with the same slot name; stop it"
    )]
    VersionWentBack {
        table: String,
        app_id: String,
        stored: i64,
        attempted: i64,
    },
    #[error("cannot build the batch of table {table}")]
    Arrow {
        table: String,
        #[source]
        source: arrow_schema::ArrowError,
    },
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

impl LakeError {
    pub fn delta(action: &'static str, table: impl Into<String>, source: DeltaTableError) -> Self {
        LakeError::Delta {
            action,
            table: table.into(),
            source: Box::new(source),
        }
    }

    /// [`Recovery::Retry`] when the object store or the network failed (or a commit raced
    /// another), not the data; else [`Recovery::Fatal`].
    pub fn recovery(&self) -> Recovery {
        match self {
            LakeError::Delta { source, .. }
                if matches!(
                    source.as_ref(),
                    DeltaTableError::ObjectStore { .. }
                        | DeltaTableError::Io { .. }
                        | DeltaTableError::Transaction { .. }
                ) =>
            {
                Recovery::Retry
            }
            _ => Recovery::Fatal,
        }
    }
}

impl From<LakeError> for SinkError {
    fn from(err: LakeError) -> Self {
        SinkError {
            message: "writing to the lake failed".into(),
            recovery: err.recovery(),
            source: Some(Box::new(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(source: DeltaTableError) -> LakeError {
        LakeError::delta("append to", "public.t", source)
    }

    #[test]
    fn storage_trouble_is_retried_and_data_trouble_is_fatal() {
        let store = object_store::Error::Generic {
            store: "S3",
            source: "503 Slow Down".into(),
        };
        assert_eq!(delta(store.into()).recovery(), Recovery::Retry);
        let io = DeltaTableError::Io {
            source: std::io::Error::other("connection reset"),
        };
        assert_eq!(delta(io).recovery(), Recovery::Retry);
        let conflict = deltalake::kernel::transaction::TransactionError::MaxCommitAttempts(15);
        assert_eq!(delta(conflict.into()).recovery(), Recovery::Retry);

        assert_eq!(
            delta(DeltaTableError::generic("bad schema")).recovery(),
            Recovery::Fatal
        );
        assert_eq!(
            delta(DeltaTableError::NotATable("x".into())).recovery(),
            Recovery::Fatal
        );
        let foreign = LakeError::Foreign {
            table: "public.t".into(),
            kind: "change",
            column: "_op".into(),
        };
        assert_eq!(foreign.recovery(), Recovery::Fatal);
        let back = LakeError::VersionWentBack {
            table: "public.t".into(),
            app_id: "walaudit:s".into(),
            stored: 2,
            attempted: 1,
        };
        assert_eq!(back.recovery(), Recovery::Fatal);
    }

    #[test]
    fn the_sink_error_keeps_the_decision() {
        let io = DeltaTableError::Io {
            source: std::io::Error::other("connection reset"),
        };
        assert_eq!(SinkError::from(delta(io)).recovery(), Recovery::Retry);
        let fatal = SinkError::from(delta(DeltaTableError::generic("bad")));
        assert_eq!(fatal.recovery(), Recovery::Fatal);
        assert_eq!(SinkError::permanent("x").recovery(), Recovery::Fatal);
    }
}
