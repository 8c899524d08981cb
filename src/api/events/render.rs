//! Change rows of the lake as audit events (JSON), with the fields the caller's role may read.

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Int64Type};
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::json::{WriterBuilder, writer::JsonArray};
use serde::Serialize;
use serde_json::{Map, Value};

use super::cursor::Position;
use super::params::EventType;
use crate::api::lake::EventTable;
use crate::lake::schema::{ACTOR, BEFORE, CHANGED, COMMIT_TS, CONTEXT, LSN, OP, SEQ, XID};

/// One change of a change table.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// Stable: `schema.table:LSN:seq`.
    pub id: String,
    /// Commit time, epoch seconds.
    pub timestamp: i64,
    /// Commit time, RFC 3339 (UTC, microseconds).
    pub committed_at: String,
    /// The actor of the transaction's audit context.
    pub user_id: Option<String>,
    /// The company field of the audit context (`api.company_field`).
    #[schema(value_type = Option<serde_json::Value>)]
    pub company_id: Option<Value>,
    pub event_type: EventType,
    /// `schema.table`.
    pub event_resource_type: String,
    /// The key value (a compound key as `a,b`); null for a table without a key in the lake.
    pub resource_id: Option<String>,
    /// Commit LSN in Postgres notation.
    pub lsn: String,
    pub xid: Option<i64>,
    /// Columns whose value changed (updates with a before image); null when unknown.
    pub changed_columns: Option<Vec<String>>,
    /// The transaction's audit context (an object; its raw text when it was not JSON).
    #[schema(value_type = serde_json::Value)]
    pub context: Value,
    /// Row values: only for the roles auditor and above.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub values: Option<RowValues>,
}

/// The row images of an event.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RowValues {
    /// The row before the change (updates with a before image, deletes); null otherwise.
    #[schema(value_type = Option<Object>)]
    pub before: Value,
    /// The row after the change (inserts, updates, snapshot reads); null otherwise.
    #[schema(value_type = Option<Object>)]
    pub after: Value,
    /// `{column: [old, new]}`; null when the old values are unknown.
    #[schema(value_type = Option<Object>)]
    pub changes: Value,
}

/// An event and where it sorts.
pub struct Rendered {
    pub position: Position,
    pub event: AuditEvent,
}

/// The events of `batch`, a projection of `table` holding at least the metadata columns and
/// the key columns (and every source column when `values`).
pub fn render(
    table: &EventTable,
    index: u32,
    batch: &RecordBatch,
    values: bool,
    company_field: &str,
) -> Result<Vec<Rendered>, ArrowError> {
    let name = table.qualified_name();
    let ts = column_i64(batch, COMMIT_TS)?;
    let lsn = column_i64(batch, LSN)?;
    let seq = column_i64(batch, SEQ)?;
    let rows = json_rows(batch)?;
    let mut out = Vec::with_capacity(rows.len());
    for (i, mut row) in rows.into_iter().enumerate() {
        let (ts, lsn, seq) = (ts.value(i), lsn.value(i), seq.value(i));
        let op = row.get(OP).and_then(Value::as_str).unwrap_or("");
        let event_type = EventType::of_op(op).unwrap_or(EventType::Update);
        let context_text = row.get(CONTEXT).and_then(Value::as_str).map(str::to_owned);
        let context = match &context_text {
            Some(t) => serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.clone())),
            None => Value::Object(Map::new()),
        };
        let company_id = context_text
            .as_deref()
            .and_then(|_| context.get(company_field).cloned())
            .filter(|v| !v.is_null());
        let resource_id = resource_id(table, &row);
        let changed_columns = row.get(CHANGED).and_then(|v| {
            v.as_array().map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
        });
        let values = values.then(|| {
            let before = row.remove(BEFORE).unwrap_or(Value::Null);
            let image = Value::Object(
                table
                    .source_columns
                    .iter()
                    .map(|c| (c.clone(), row.remove(c).unwrap_or(Value::Null)))
                    .collect(),
            );
            images(event_type, before, image, changed_columns.as_deref())
        });
        out.push(Rendered {
            position: Position {
                ts,
                lsn,
                seq,
                table: index,
            },
            event: AuditEvent {
                id: format!("{name}:{}:{seq}", crate::Lsn(lsn as u64)),
                timestamp: ts.div_euclid(1_000_000),
                committed_at: rfc3339(ts),
                user_id: row.get(ACTOR).and_then(Value::as_str).map(str::to_owned),
                company_id,
                event_type,
                event_resource_type: name.clone(),
                resource_id,
                lsn: crate::Lsn(lsn as u64).to_string(),
                xid: row.get(XID).and_then(Value::as_i64),
                changed_columns,
                context,
                values,
            },
        });
    }
    Ok(out)
}

/// Before, after and changes of one event from its stored image (`before` is the stored
/// `_before`, null unless the source sent one).
pub fn images(
    event_type: EventType,
    before: Value,
    image: Value,
    changed: Option<&[String]>,
) -> RowValues {
    match event_type {
        EventType::Insert | EventType::Snapshot => RowValues {
            changes: diff(&Value::Null, &image, None),
            before: Value::Null,
            after: image,
        },
        EventType::Delete => RowValues {
            changes: diff(&image, &Value::Null, None),
            before: image,
            after: Value::Null,
        },
        EventType::Update => RowValues {
            changes: if before.is_null() {
                Value::Null
            } else {
                diff(&before, &image, changed)
            },
            before,
            after: image,
        },
        EventType::Truncate => RowValues {
            before: Value::Null,
            after: Value::Null,
            changes: Value::Null,
        },
    }
}

/// `{column: [old, new]}` for the columns that differ between two images (either may be
/// null: every column of the other), limited to `only` when given.
pub fn diff(old: &Value, new: &Value, only: Option<&[String]>) -> Value {
    let empty = Map::new();
    let old = old.as_object().unwrap_or(&empty);
    let new = new.as_object().unwrap_or(&empty);
    let mut names: Vec<&String> = new.keys().chain(old.keys()).collect();
    names.dedup();
    let mut out = Map::new();
    for name in names {
        if out.contains_key(name) || only.is_some_and(|o| !o.contains(name)) {
            continue;
        }
        let (a, b) = (
            old.get(name).unwrap_or(&Value::Null),
            new.get(name).unwrap_or(&Value::Null),
        );
        if a != b {
            out.insert(name.clone(), Value::Array(vec![a.clone(), b.clone()]));
        }
    }
    Value::Object(out)
}

/// The key of a row as `a,b`; null without a key or when every key value is null (a
/// truncate).
fn resource_id(table: &EventTable, row: &Map<String, Value>) -> Option<String> {
    if table.key_columns.is_empty() {
        return None;
    }
    let parts: Vec<Option<String>> = table
        .key_columns
        .iter()
        .map(|k| match row.get(k) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        })
        .collect();
    if parts.iter().all(Option::is_none) {
        return None;
    }
    Some(
        parts
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// The rows of `batch` as JSON objects (nulls written as null). Decimals become their exact
/// text (`"10.50"`), never a binary float.
pub fn json_rows(batch: &RecordBatch) -> Result<Vec<Map<String, Value>>, ArrowError> {
    let batch = &decimals_as_text(batch)?;
    let mut buf = Vec::with_capacity(batch.num_rows() * 128);
    {
        let mut writer = WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, JsonArray>(&mut buf);
        writer.write(batch)?;
        writer.finish()?;
    }
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&buf).map_err(|e| ArrowError::JsonError(e.to_string()))
}

fn decimals_as_text(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    use deltalake::arrow::datatypes::{Field, Fields, Schema};
    fn text_type(t: &DataType) -> Option<DataType> {
        match t {
            DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..) => Some(DataType::Utf8),
            DataType::Struct(fields) => {
                let mut changed = false;
                let new: Vec<Field> = fields
                    .iter()
                    .map(|f| match text_type(f.data_type()) {
                        Some(t) => {
                            changed = true;
                            f.as_ref().clone().with_data_type(t)
                        }
                        None => f.as_ref().clone(),
                    })
                    .collect();
                changed.then(|| DataType::Struct(Fields::from(new)))
            }
            _ => None,
        }
    }
    let schema = batch.schema();
    if !schema
        .fields()
        .iter()
        .any(|f| text_type(f.data_type()).is_some())
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        match text_type(f.data_type()) {
            Some(t) => {
                columns.push(cast(c, &t)?);
                fields.push(f.as_ref().clone().with_data_type(t));
            }
            None => {
                columns.push(c.clone());
                fields.push(f.as_ref().clone());
            }
        }
    }
    RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)
}

fn column_i64(
    batch: &RecordBatch,
    name: &str,
) -> Result<deltalake::arrow::array::PrimitiveArray<Int64Type>, ArrowError> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| ArrowError::SchemaError(format!("the column {name} is missing")))?;
    let column = match column.data_type() {
        DataType::Timestamp(_, _) => cast(
            &cast(
                column,
                &DataType::Timestamp(deltalake::arrow::datatypes::TimeUnit::Microsecond, None),
            )?,
            &DataType::Int64,
        )?,
        _ => cast(column, &DataType::Int64)?,
    };
    Ok(column.as_primitive::<Int64Type>().clone())
}

/// RFC 3339 with microseconds, UTC.
pub fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_of_each_kind() {
        let row = json!({"id": 1, "status": "new"});
        let v = images(EventType::Insert, Value::Null, row.clone(), None);
        assert_eq!(v.changes, json!({"id": [null, 1], "status": [null, "new"]}));
        let paid = json!({"id": 1, "status": "paid"});
        let v = images(EventType::Update, row.clone(), paid.clone(), None);
        assert_eq!(v.changes, json!({"status": ["new", "paid"]}));
        assert_eq!(v.before, row);
        let v = images(EventType::Update, Value::Null, paid.clone(), None);
        assert_eq!(v.changes, Value::Null);
        let v = images(
            EventType::Delete,
            Value::Null,
            json!({"id": 1, "status": null}),
            None,
        );
        assert_eq!(
            (v.after, v.changes),
            (Value::Null, json!({"id": [1, null]}))
        );
        let only = ["status".to_owned()];
        assert_eq!(
            diff(
                &json!({"a": 1, "status": 1}),
                &json!({"a": 2, "status": 2}),
                Some(&only)
            ),
            json!({"status": [1, 2]})
        );
        assert_eq!(
            rfc3339(1_767_225_600_000_001),
            "2026-01-01T00:00:00.000001Z"
        );
    }
}
