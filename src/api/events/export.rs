//! `Accept: application/x-ndjson` or `text/csv` on `GET /audit_events`: every matching event,
//! streamed batch by batch (memory stays at one batch, whatever the lake holds).
//!
//! The order is by table (`schema.table`), then as the table stores its rows (commit order);
//! a page's newest-first order would need a sort of everything first.

use std::collections::VecDeque;

use axum::body::Body;
use bytes::Bytes;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::SendableRecordBatchStream;
use deltalake::datafusion::prelude::SessionContext;
use futures_util::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::render::{AuditEvent, render};
use super::select::{self, Selected};

/// The export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    NdJson,
    Csv,
}

impl Format {
    /// The format an `Accept` header asks for (none: a JSON page).
    pub fn from_accept(accept: Option<&str>) -> Option<Format> {
        let accept = accept?.to_ascii_lowercase();
        if accept.contains("application/x-ndjson") {
            Some(Format::NdJson)
        } else if accept.contains("text/csv") {
            Some(Format::Csv)
        } else {
            None
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::NdJson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

struct State {
    ctx: SessionContext,
    pending: VecDeque<Selected>,
    current: Option<(Selected, SendableRecordBatchStream)>,
    values: bool,
    company_field: String,
    format: Format,
    header: bool,
}

/// The body that streams every event of `selected`.
pub fn body(
    ctx: SessionContext,
    selected: Vec<Selected>,
    values: bool,
    company_field: String,
    format: Format,
) -> Body {
    let state = State {
        ctx,
        pending: selected.into(),
        current: None,
        values,
        company_field,
        format,
        header: format == Format::Csv,
    };
    let stream = futures_util::stream::try_unfold(state, |mut st| async move {
        loop {
            if st.header {
                st.header = false;
                return Ok(Some((Bytes::from(csv_header(st.values)), st)));
            }
            if st.current.is_none() {
                let Some(next) = st.pending.pop_front() else {
                    return Ok(None);
                };
                let stream = select::stream(&st.ctx, &next, st.values).await?;
                st.current = Some((next, stream));
            }
            let (s, stream) = st.current.as_mut().expect("set above");
            match stream.try_next().await? {
                None => st.current = None,
                Some(batch) if batch.num_rows() == 0 => {}
                Some(batch) => {
                    let events = render(&s.table, s.index, &batch, st.values, &st.company_field)?;
                    let mut out = Vec::with_capacity(events.len() * 256);
                    for r in events {
                        match st.format {
                            Format::NdJson => {
                                serde_json::to_writer(&mut out, &r.event)
                                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                                out.push(b'\n');
                            }
                            Format::Csv => csv_row(&mut out, &r.event),
                        }
                    }
                    return Ok(Some((Bytes::from(out), st)));
                }
            }
        }
    });
    Body::from_stream(
        stream
            .map_err(|e: DataFusionError| {
                tracing::warn!(error = %e, "an export stopped early");
                e
            })
            .boxed(),
    )
}

const CSV_COLUMNS: [&str; 12] = [
    "id",
    "timestamp",
    "committed_at",
    "user_id",
    "company_id",
    "event_type",
    "event_resource_type",
    "resource_id",
    "lsn",
    "xid",
    "changed_columns",
    "context",
];

fn csv_header(values: bool) -> String {
    let mut h = CSV_COLUMNS.join(",");
    if values {
        h.push_str(",before,after,changes");
    }
    h.push('\n');
    h
}

/// One RFC 4180 line; nested values as JSON text.
fn csv_row(out: &mut Vec<u8>, e: &AuditEvent) {
    let json = |v: &Value| {
        if v.is_null() {
            String::new()
        } else {
            v.to_string()
        }
    };
    let mut fields = vec![
        e.id.clone(),
        e.timestamp.to_string(),
        e.committed_at.clone(),
        e.user_id.clone().unwrap_or_default(),
        e.company_id
            .as_ref()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_default(),
        e.event_type.as_str().to_owned(),
        e.event_resource_type.clone(),
        e.resource_id.clone().unwrap_or_default(),
        e.lsn.clone(),
        e.xid.map(|x| x.to_string()).unwrap_or_default(),
        e.changed_columns
            .as_ref()
            .map(|c| serde_json::to_string(c).unwrap_or_default())
            .unwrap_or_default(),
        json(&e.context),
    ];
    if let Some(v) = &e.values {
        fields.extend([json(&v.before), json(&v.after), json(&v.changes)]);
    }
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if f.contains([',', '"', '\n', '\r']) {
            out.push(b'"');
            out.extend_from_slice(f.replace('"', "\"\"").as_bytes());
            out.push(b'"');
        } else {
            out.extend_from_slice(f.as_bytes());
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_and_quoting() {
        assert_eq!(
            Format::from_accept(Some("application/x-ndjson")),
            Some(Format::NdJson)
        );
        assert_eq!(
            Format::from_accept(Some("text/csv, */*")),
            Some(Format::Csv)
        );
        assert_eq!(Format::from_accept(Some("application/json")), None);
        assert_eq!(Format::from_accept(None), None);
        assert_eq!(csv_header(false).split(',').count(), 12);
    }
}
