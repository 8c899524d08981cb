//! Writing query results: an aligned table, CSV, JSON lines or Parquet.
//!
//! CSV, JSON and Parquet stream batch by batch; the table format holds the result to align its
//! columns (use CSV for large results). CSV has no nested values, so list and struct columns
//! (`_before`, `_changed`, `_unavailable`) are written as their display text.

use std::io::Write;
use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, RecordBatch, StringBuilder};
use deltalake::arrow::csv;
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::json::{LineDelimitedWriter, WriterBuilder};
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::arrow::util::pretty::pretty_format_batches;
use deltalake::parquet::arrow::ArrowWriter;

use super::QueryError;

/// How `walaudit query` writes its result (`--format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for a terminal.
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON object per row and line; nulls are written as `null`.
    Json,
    /// A Parquet file (needs a file to write to).
    Parquet,
}

type Sink = Box<dyn Write + Send>;

/// Writes record batches in one [`OutputFormat`].
pub struct ResultWriter {
    inner: Inner,
}

enum Inner {
    Table {
        out: Sink,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    },
    Csv(Box<csv::Writer<Sink>>),
    Json(Box<LineDelimitedWriter<Sink>>),
    Parquet(Box<ArrowWriter<Sink>>),
}

fn output_err(err: impl std::error::Error + Send + Sync + 'static) -> QueryError {
    QueryError::Output(Box::new(err))
}

impl ResultWriter {
    pub fn new(format: OutputFormat, schema: SchemaRef, out: Sink) -> Result<Self, QueryError> {
        let inner = match format {
            OutputFormat::Table => Inner::Table {
                out,
                schema,
                batches: Vec::new(),
            },
            OutputFormat::Csv => Inner::Csv(Box::new(
                csv::WriterBuilder::new().with_header(true).build(out),
            )),
            OutputFormat::Json => Inner::Json(Box::new(
                WriterBuilder::new().with_explicit_nulls(true).build(out),
            )),
            OutputFormat::Parquet => Inner::Parquet(Box::new(
                ArrowWriter::try_new(out, schema, None).map_err(output_err)?,
            )),
        };
        Ok(ResultWriter { inner })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), QueryError> {
        match &mut self.inner {
            Inner::Table { batches, .. } => {
                batches.push(batch.clone());
                Ok(())
            }
            Inner::Csv(w) => w
                .write(&flatten_nested(batch).map_err(output_err)?)
                .map_err(output_err),
            Inner::Json(w) => w.write(batch).map_err(output_err),
            Inner::Parquet(w) => w.write(batch).map_err(output_err),
        }
    }

    /// Writes what is buffered and flushes; the output is complete afterwards.
    pub fn finish(self) -> Result<(), QueryError> {
        match self.inner {
            Inner::Table {
                mut out,
                schema,
                mut batches,
            } => {
                if batches.is_empty() {
                    batches.push(RecordBatch::new_empty(schema));
                }
                let table = pretty_format_batches(&batches).map_err(output_err)?;
                writeln!(out, "{table}").map_err(output_err)?;
                out.flush().map_err(output_err)
            }
            Inner::Csv(w) => w.into_inner().flush().map_err(output_err),
            Inner::Json(mut w) => {
                w.finish().map_err(output_err)?;
                w.into_inner().flush().map_err(output_err)
            }
            Inner::Parquet(w) => {
                let mut out = w.into_inner().map_err(output_err)?;
                out.flush().map_err(output_err)
            }
        }
    }
}

fn is_nested(ty: &DataType) -> bool {
    matches!(
        ty,
        DataType::List(_)
            | DataType::LargeList(_)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
            | DataType::FixedSizeList(..)
            | DataType::Struct(_)
            | DataType::Map(..)
            | DataType::Union(..)
    )
}

/// `batch` with every nested column replaced by its display text (nulls stay null).
fn flatten_nested(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| is_nested(f.data_type()))
    {
        return Ok(batch.clone());
    }
    let options = FormatOptions::default();
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !is_nested(field.data_type()) {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
            continue;
        }
        let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
        let mut text = StringBuilder::with_capacity(column.len(), column.len() * 16);
        for i in 0..column.len() {
            if column.is_null(i) {
                text.append_null();
            } else {
                text.append_value(formatter.value(i).to_string());
            }
        }
        fields.push(Field::new(field.name(), DataType::Utf8, true));
        columns.push(Arc::new(text.finish()));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}
