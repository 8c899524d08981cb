//! The query parameters of `GET /audit_events`, checked one by one: every bad value is a 400
//! that names the parameter and says what it accepts.

use utoipa::IntoParams;

use crate::api::error::ApiError;

/// Most events a page holds.
pub const MAX_PER_PAGE: u64 = 100;
/// The highest page number (deeper: follow cursors, or export).
pub const MAX_PAGE: u64 = 10_000_000;
/// Events a page holds when `per_page` is not given.
pub const DEFAULT_PER_PAGE: u64 = 10;

/// The filters and paging of `GET /audit_events` (as documented; parsed by [`parse`]).
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct EventParams {
    /// Page number, from 1 (default 1) to 10,000,000. Not together with `cursor`.
    #[param(minimum = 1, maximum = 10_000_000)]
    page: Option<u64>,
    /// Events per page, 1 to 100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    per_page: Option<u64>,
    /// Earliest commit time, epoch seconds (inclusive).
    timestamp_from: Option<i64>,
    /// Latest commit time, epoch seconds (inclusive); needs `timestamp_from`.
    timestamp_to: Option<i64>,
    /// The actor who made the change (`_actor`).
    user_id: Option<String>,
    /// The company field of the audit context (`api.company_field`).
    company_id: Option<String>,
    /// `insert`, `update`, `delete`, `truncate` or `snapshot`.
    #[param(inline, value_type = Option<EventType>)]
    event_type: Option<String>,
    /// The table: `schema.table`, or `table` for `public`.
    event_resource_type: Option<String>,
    /// The primary key value; a compound key as `a,b` in key order.
    resource_id: Option<String>,
    /// Opaque: `meta.next_cursor` of the previous page.
    cursor: Option<String>,
}

/// What an event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Insert,
    Update,
    Delete,
    Truncate,
    Snapshot,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        EventType::Insert,
        EventType::Update,
        EventType::Delete,
        EventType::Truncate,
        EventType::Snapshot,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Insert => "insert",
            EventType::Update => "update",
            EventType::Delete => "delete",
            EventType::Truncate => "truncate",
            EventType::Snapshot => "snapshot",
        }
    }

    /// The lake's `_op` of this event type.
    pub fn op(self) -> &'static str {
        match self {
            EventType::Insert => "c",
            EventType::Update => "u",
            EventType::Delete => "d",
            EventType::Truncate => "t",
            EventType::Snapshot => "r",
        }
    }

    /// The event type of an `_op`.
    pub fn of_op(op: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.op() == op)
    }
}

/// The checked parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub page: Option<u64>,
    pub per_page: u64,
    pub filter: EventFilter,
    pub cursor: Option<String>,
}

/// What selects events (everything but paging).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct EventFilter {
    /// Commit time bounds in epoch seconds, both inclusive.
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub user_id: Option<String>,
    pub company_id: Option<String>,
    pub event_type: Option<&'static str>,
    pub table: Option<String>,
    pub resource_id: Option<String>,
}

const NAMES: [&str; 10] = [
    "page",
    "per_page",
    "timestamp_from",
    "timestamp_to",
    "user_id",
    "company_id",
    "event_type",
    "event_resource_type",
    "resource_id",
    "cursor",
];

/// Checks the raw query string of a request.
pub fn parse(raw: Option<&str>) -> Result<EventQuery, ApiError> {
    let mut seen: Vec<(String, String)> = Vec::new();
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !NAMES.contains(&name.as_ref()) {
            return Err(ApiError::unknown_parameter(
                &name,
                format!(
                    "`{name}` is not a parameter of /audit_events; use {}",
                    NAMES.join(", ")
                ),
            ));
        }
        if seen.iter().any(|(n, _)| *n == name) {
            return Err(ApiError::parameter(
                &name,
                format!("`{name}` is given twice: give it once"),
            ));
        }
        seen.push((name.into_owned(), value.into_owned()));
    }
    let get = |name: &str| {
        seen.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let text = |name: &str| get(name).map(str::to_owned);
    let page = match get("page") {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .ok()
                .filter(|p| (1..=MAX_PAGE).contains(p))
                .ok_or_else(|| {
                    ApiError::parameter(
                        "page",
                        format!(
                            "{v:?} is not a page: give an integer from 1 to {MAX_PAGE} (deeper: \
                             follow meta.next_cursor, or export with Accept: application/x-ndjson)"
                        ),
                    )
                })?,
        ),
    };
    let per_page = match get("per_page") {
        None => DEFAULT_PER_PAGE,
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|p| (1..=MAX_PER_PAGE).contains(p))
            .ok_or_else(|| {
                ApiError::parameter(
                    "per_page",
                    format!("{v:?} is not a page size: give an integer from 1 to {MAX_PER_PAGE}"),
                )
            })?,
    };
    let seconds = |name: &str| -> Result<Option<i64>, ApiError> {
        get(name)
            .map(|v| {
                v.parse::<i64>()
                    .ok()
                    .filter(|s| s.unsigned_abs() < 1 << 40)
                    .ok_or_else(|| {
                        ApiError::parameter(
                            name,
                            format!("{v:?} is not a time: give epoch seconds, e.g. 1767225600"),
                        )
                    })
            })
            .transpose()
    };
    let from = seconds("timestamp_from")?;
    let to = seconds("timestamp_to")?;
    match (from, to) {
        (None, Some(_)) => {
            return Err(ApiError::parameter(
                "timestamp_to",
                "timestamp_to needs timestamp_from: give both, or only timestamp_from",
            ));
        }
        (Some(f), Some(t)) if t < f => {
            return Err(ApiError::parameter(
                "timestamp_to",
                format!("timestamp_to ({t}) is before timestamp_from ({f})"),
            ));
        }
        _ => {}
    }
    let event_type = match get("event_type") {
        None => None,
        Some(v) => Some(
            EventType::ALL
                .into_iter()
                .find(|t| t.as_str() == v)
                .map(|t| t.op())
                .ok_or_else(|| {
                    ApiError::parameter(
                        "event_type",
                        format!(
                            "{v:?} is not an event type: use insert, update, delete, truncate \
                             or snapshot"
                        ),
                    )
                })?,
        ),
    };
    let cursor = text("cursor");
    if cursor.is_some() && page.is_some() {
        return Err(ApiError::parameter(
            "page",
            "give either page or cursor: a cursor already knows its page",
        ));
    }
    Ok(EventQuery {
        page,
        per_page,
        cursor,
        filter: EventFilter {
            from,
            to,
            user_id: text("user_id"),
            company_id: text("company_id"),
            event_type,
            table: text("event_resource_type"),
            resource_id: text("resource_id"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(raw: &str) -> (String, String) {
        let e = parse(Some(raw)).unwrap_err();
        assert_eq!(e.status.as_u16(), 400, "{raw}");
        (e.parameter.unwrap(), e.message)
    }

    #[test]
    fn the_seed_examples_parse() {
        assert_eq!(parse(None).unwrap().per_page, 10);
        let q = parse(Some("page=2&per_page=20")).unwrap();
        assert_eq!((q.page, q.per_page), (Some(2), 20));
        assert_eq!(
            parse(Some("user_id=123"))
                .unwrap()
                .filter
                .user_id
                .as_deref(),
            Some("123")
        );
        let q = parse(Some(
            "event_type=update&timestamp_from=1700000000&timestamp_to=1700086400",
        ))
        .unwrap();
        assert_eq!(q.filter.event_type, Some("u"));
        assert_eq!(
            (q.filter.from, q.filter.to),
            (Some(1_700_000_000), Some(1_700_086_400))
        );
        assert_eq!(
            parse(Some("resource_id=a%2Cb"))
                .unwrap()
                .filter
                .resource_id
                .as_deref(),
            Some("a,b")
        );
    }

    #[test]
    fn every_bad_parameter_is_named() {
        assert_eq!(bad("page=0").0, "page");
        assert_eq!(bad("page=x").0, "page");
        assert_eq!(bad("page=-1").0, "page");
        assert_eq!(bad("page=9223372036854775808").0, "page");
        assert_eq!(bad("per_page=0").0, "per_page");
        assert_eq!(bad("per_page=101").0, "per_page");
        assert_eq!(bad("timestamp_from=yesterday").0, "timestamp_from");
        assert_eq!(bad("timestamp_from=1&timestamp_to=1.5").0, "timestamp_to");
        assert_eq!(bad("timestamp_to=5").0, "timestamp_to");
        assert_eq!(bad("timestamp_from=5&timestamp_to=4").0, "timestamp_to");
        assert_eq!(bad("event_type=upsert").0, "event_type");
        assert_eq!(bad("page=1&cursor=abc").0, "page");
        assert_eq!(bad("user_id=1&user_id=2").0, "user_id");
        let (name, message) = bad("sort=asc");
        assert_eq!(name, "sort");
        assert!(message.contains("not a parameter"), "{message}");
        assert_eq!(
            parse(Some("sort=asc")).unwrap_err().code,
            "unknown_parameter"
        );
        // Equal bounds are one second.
        assert!(parse(Some("timestamp_from=5&timestamp_to=5")).is_ok());
    }
}
