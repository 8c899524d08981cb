//! SQL helper functions for the lake: WAL positions in Postgres notation.
//!
//! * `pg_lsn(bigint) -> text`: `_lsn` as Postgres shows it, e.g. `pg_lsn(_lsn)` → `0/16B3748`.
//! * `lsn(text) -> bigint`: the inverse, for filters: `WHERE _lsn > lsn('0/16B3748')`.
//! * `walaudit_hash60(text) -> bigint`: the first 60 bits of the text's MD5, the row hash of
//!   reconciliation checksums (Postgres computes the same bits as
//!   `('x' || substr(md5(t), 1, 15))::bit(60)::bigint`).

use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, Int64Array, StringArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::error::{DataFusionError, Result};
use deltalake::datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};

use crate::Lsn;

/// `pg_lsn(bigint) -> text`.
pub fn pg_lsn_udf() -> ScalarUDF {
    create_udf(
        "pg_lsn",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args| map_single(args, pg_lsn_array)),
    )
}

/// `lsn(text) -> bigint`.
pub fn lsn_udf() -> ScalarUDF {
    create_udf(
        "lsn",
        vec![DataType::Utf8],
        DataType::Int64,
        Volatility::Immutable,
        Arc::new(|args| map_single(args, lsn_array)),
    )
}

/// `walaudit_hash60(text) -> bigint`.
pub fn hash60_udf() -> ScalarUDF {
    create_udf(
        "walaudit_hash60",
        vec![DataType::Utf8],
        DataType::Int64,
        Volatility::Immutable,
        Arc::new(|args| map_single(args, hash60_array)),
    )
}

/// The first 60 bits of the MD5 of `bytes` (the first 15 hex digits), non-negative.
pub fn hash60(bytes: &[u8]) -> i64 {
    use md5::Digest;
    let digest = md5::Md5::digest(bytes);
    let mut top = [0u8; 8];
    top.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(top) >> 4) as i64
}

fn hash60_array(array: &ArrayRef) -> Result<ArrayRef> {
    texts_to_longs(array, |text| Ok(hash60(text.as_bytes())))
}

/// Applies `f` to the single argument, keeping a scalar argument scalar.
fn map_single(
    args: &[ColumnarValue],
    f: fn(&ArrayRef) -> Result<ArrayRef>,
) -> Result<ColumnarValue> {
    let [arg] = args else {
        return Err(DataFusionError::Plan(
            "this function takes exactly one argument".into(),
        ));
    };
    match arg {
        ColumnarValue::Array(array) => Ok(ColumnarValue::Array(f(array)?)),
        ColumnarValue::Scalar(scalar) => {
            let out = f(&scalar.to_array()?)?;
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        }
    }
}

fn pg_lsn_array(array: &ArrayRef) -> Result<ArrayRef> {
    let array = cast(array, &DataType::Int64)?;
    let values = array
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("cast to Int64 gives an Int64Array");
    let out: StringArray = values
        .iter()
        .map(|v| v.map(|v| Lsn(v as u64).to_string()))
        .collect();
    Ok(Arc::new(out))
}

fn lsn_array(array: &ArrayRef) -> Result<ArrayRef> {
    texts_to_longs(array, |text| {
        text.parse::<Lsn>()
            .map(|lsn| lsn.0 as i64)
            .map_err(|e| DataFusionError::Execution(e.to_string()))
    })
}

/// `f` of every text of `array` (NULL stays NULL).
fn texts_to_longs(array: &ArrayRef, f: impl Fn(&str) -> Result<i64>) -> Result<ArrayRef> {
    let array = cast(array, &DataType::Utf8)?;
    let values = array
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to Utf8 gives a StringArray");
    let out: Int64Array = values
        .iter()
        .map(|v| v.map(&f).transpose())
        .collect::<Result<_>>()?;
    Ok(Arc::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        let input: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(0x16B_3748),
            None,
            Some(0x16_B374_D848),
        ]));
        let out = pg_lsn_array(&input).unwrap();
        let out = out.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(out.value(0), "0/16B3748");
        assert!(out.is_null(1));
        assert_eq!(out.value(2), "16/B374D848");
        let back = lsn_array(&(Arc::new(out.clone()) as ArrayRef)).unwrap();
        assert_eq!(
            back.as_any().downcast_ref::<Int64Array>().unwrap(),
            input.as_any().downcast_ref::<Int64Array>().unwrap()
        );
        let bad: ArrayRef = Arc::new(StringArray::from(vec!["16B3748"]));
        let err = lsn_array(&bad).unwrap_err().to_string();
        assert!(err.contains("is not a WAL position"), "{err}");
    }
}
