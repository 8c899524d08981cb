//! Errors of the lake layer, split by consequence: transient storage trouble is retried with
//! backoff; everything else stops the engine with a hint for the operator.

use deltalake::DeltaTableError;

use super::SchemaError;
use crate::sink::SinkError;

/// The lake could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("invalid lake location {location:?}: {reason}")]
    Location { location: String, reason: String },
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

    /// Worth retrying with backoff: the object store or the network failed, not the data.
    pub fn is_transient(&self) -> bool {
        match self {
            LakeError::Delta { source, .. } => matches!(
                source.as_ref(),
                DeltaTableError::ObjectStore { .. }
                    | DeltaTableError::Io { .. }
                    | DeltaTableError::Transaction { .. }
            ),
            _ => false,
        }
    }
}

impl From<LakeError> for SinkError {
    fn from(err: LakeError) -> Self {
        SinkError {
            message: "writing to the lake failed".into(),
            transient: err.is_transient(),
            source: Some(Box::new(err)),
        }
    }
}
