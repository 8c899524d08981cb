//! Reading measured values and sample rows out of Arrow results.

use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};

use crate::sql::ResultSet;

/// The number in `column` of the only row of `result`. `Ok(None)`: the value is NULL.
pub fn number_at(batch: &RecordBatch, column: usize) -> Result<Option<f64>, String> {
    let col = batch.column(column);
    if batch.num_rows() == 0 || col.is_null(0) {
        return Ok(None);
    }
    let cast = arrow_cast::cast(&col.slice(0, 1), &DataType::Float64).map_err(|_| {
        format!(
            "column {} is {}, not a number",
            batch.schema().field(column).name(),
            col.data_type()
        )
    })?;
    let f = cast
        .as_any()
        .downcast_ref::<Float64Array>()
        .ok_or("the value is not a number")?;
    Ok((!f.is_null(0)).then(|| f.value(0)))
}

/// Microseconds since the Unix epoch of a timestamp or date in `column` of row 0.
pub fn micros_at(batch: &RecordBatch, column: usize) -> Result<Option<i64>, String> {
    let col: &ArrayRef = batch.column(column);
    if batch.num_rows() == 0 || col.is_null(0) {
        return Ok(None);
    }
    let target = DataType::Timestamp(TimeUnit::Microsecond, None);
    let as_ts = match col.data_type() {
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => {
            arrow_cast::cast(&col.slice(0, 1), &target)
        }
        other => {
            return Err(format!(
                "freshness needs a timestamp or date column; `{}` is {other}",
                batch.schema().field(column).name()
            ));
        }
    }
    .map_err(|e| e.to_string())?;
    let ints = arrow_cast::cast(&as_ts, &DataType::Int64).map_err(|e| e.to_string())?;
    let ints = ints
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or("not a timestamp")?;
    Ok(Some(ints.value(0)))
}

/// The single number a metric query returns.
pub fn single_number(result: &ResultSet) -> Result<Option<f64>, String> {
    let rows = result.num_rows();
    let cols = result.schema.fields().len();
    if rows != 1 || cols != 1 {
        return Err(format!(
            "the query returned {rows} row(s) of {cols} column(s): it must return one row with \
             one number (e.g. SELECT count(*) FROM ...)"
        ));
    }
    let batch = result.concat().map_err(|e| e.to_string())?;
    number_at(&batch, 0)
}

/// The rows of `result` as a JSON array of objects (for samples).
pub fn rows_json(result: &ResultSet) -> serde_json::Value {
    let mut writer = arrow_json::ArrayWriter::new(Vec::new());
    for b in &result.batches {
        if writer.write(b).is_err() {
            return serde_json::Value::Null;
        }
    }
    if writer.finish().is_err() {
        return serde_json::Value::Null;
    }
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return serde_json::Value::Array(Vec::new());
    }
    serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
}

/// Each row of `result` as its text columns (for key comparisons), with column `n` (a count)
/// read apart when `count` is set.
pub fn text_rows(result: &ResultSet, count: bool) -> Result<Vec<(Vec<String>, u64)>, String> {
    let mut out = Vec::new();
    for b in &result.batches {
        let keys = if count {
            b.num_columns() - 1
        } else {
            b.num_columns()
        };
        let mut cols = Vec::new();
        for i in 0..keys {
            let c = arrow_cast::cast(b.column(i), &DataType::Utf8).map_err(|e| e.to_string())?;
            cols.push(c);
        }
        let n = if count {
            Some(arrow_cast::cast(b.column(keys), &DataType::Int64).map_err(|e| e.to_string())?)
        } else {
            None
        };
        for r in 0..b.num_rows() {
            let key = cols
                .iter()
                .map(|c| {
                    c.as_any()
                        .downcast_ref::<arrow_array::StringArray>()
                        .map(|s| s.value(r).to_owned())
                        .unwrap_or_default()
                })
                .collect();
            let rows = n
                .as_ref()
                .and_then(|n| n.as_any().downcast_ref::<Int64Array>().map(|a| a.value(r)))
                .unwrap_or(1);
            out.push((key, u64::try_from(rows).unwrap_or(0)));
        }
    }
    Ok(out)
}

/// Every value of `column` of `result` in its text form (`None` for NULL).
pub fn strings(result: &ResultSet, column: usize) -> Result<Vec<Option<String>>, String> {
    let mut out = Vec::with_capacity(result.num_rows());
    for batch in &result.batches {
        let col = arrow_cast::cast(batch.column(column), &DataType::Utf8)
            .map_err(|e| format!("column {column} has no text form: {e}"))?;
        let text = col
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .ok_or("the column is not text")?;
        out.extend((0..text.len()).map(|i| (!text.is_null(i)).then(|| text.value(i).to_owned())));
    }
    Ok(out)
}
