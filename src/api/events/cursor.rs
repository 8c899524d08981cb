//! Opaque cursors of `GET /audit_events`: the lake versions of the first page, the position
//! of the last event given, the page number and a fingerprint of the filters.
//!
//! Following a cursor reads the same table versions as the first page did, so events that
//! arrive meanwhile never shift a page: walking every page yields every event that existed at
//! the first page exactly once.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::params::EventFilter;
use crate::api::error::ApiError;

/// Where a page ends, in the order of events (newest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    /// Commit time, µs since the epoch.
    pub ts: i64,
    pub lsn: i64,
    pub seq: i64,
    /// Index of the table in the cursor's table list (sorted by name).
    pub table: u32,
}

/// A decoded cursor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// `(schema.table, version)` of the view the first page read.
    #[serde(rename = "v")]
    pub versions: Vec<(String, i64)>,
    /// The last event of the previous page.
    #[serde(rename = "k")]
    pub after: Position,
    /// The page this cursor opens.
    #[serde(rename = "p")]
    pub page: u64,
    /// The filters it belongs to.
    #[serde(rename = "f")]
    pub filters: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a cursor serializes");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// Decodes `text` for `filter`; a malformed cursor, or one of other filters, is a 400.
    pub fn decode(text: &str, filter: &EventFilter) -> Result<Cursor, ApiError> {
        let malformed = || {
            ApiError::parameter(
                "cursor",
                "the cursor is malformed: pass meta.next_cursor of the previous page as it is",
            )
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| malformed())?;
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
        if cursor.page < 2 || cursor.versions.is_empty() {
            return Err(malformed());
        }
        if cursor.after.table as usize >= cursor.versions.len() {
            return Err(malformed());
        }
        if cursor.filters != fingerprint(filter) {
            return Err(ApiError::parameter(
                "cursor",
                "the cursor belongs to other filters: keep the filters of the first page, or \
                 start again without a cursor",
            ));
        }
        Ok(cursor)
    }
}

/// A short digest of the filters (a cursor must be followed with the same ones).
pub fn fingerprint(filter: &EventFilter) -> String {
    let canonical = serde_json::json!([
        filter.from,
        filter.to,
        filter.user_id,
        filter.company_id,
        filter.event_type,
        filter.table,
        filter.resource_id,
    ]);
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    crate::api::auth::hex(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let filter = EventFilter {
            user_id: Some("alice".into()),
            ..EventFilter::default()
        };
        let cursor = Cursor {
            versions: vec![("public.orders".into(), 7)],
            after: Position {
                ts: 1,
                lsn: 2,
                seq: 3,
                table: 0,
            },
            page: 2,
            filters: fingerprint(&filter),
        };
        let text = cursor.encode();
        assert_eq!(Cursor::decode(&text, &filter).unwrap(), cursor);
        let other = EventFilter::default();
        let err = Cursor::decode(&text, &other).unwrap_err();
        assert!(err.message.contains("other filters"), "{}", err.message);
        for bad in ["", "%%%", "e30", &text[..text.len() - 3]] {
            let err = Cursor::decode(bad, &filter).unwrap_err();
            assert_eq!(err.parameter.as_deref(), Some("cursor"), "{bad}");
        }
    }
}
