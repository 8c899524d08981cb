//! The Delta lake sink against a real server: every change exactly once, equal to the source.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, RecordBatch, StringArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::prelude::SessionContext;
use tokio_util::sync::CancellationToken;
use walaudit::config::{LakeConfig, S3Config};
use walaudit::lake::{LakeLocation, LakeSink, LakeSinkOptions};
use walaudit::pipeline::{self, RunSummary, SlotMode};
use walaudit::query::LakeQuery;

use crate::capture::{options, prepare};
use crate::support::TestDb;

mod contract;
mod engine;
mod evolution;
mod exactly_once;
mod pruning;
mod signals;
mod through_query;
mod workload;

/// Sink options for a lake in `dir`, with small flush thresholds unless given.
pub fn sink_options(dir: &Path, slot: &str, flush_rows: usize) -> LakeSinkOptions {
    let config = LakeConfig {
        url: dir.to_str().unwrap().to_owned(),
        flush_rows,
        ..LakeConfig::default()
    };
    LakeSinkOptions::new(&config, slot).unwrap()
}

/// Drain the slot into the lake in-process. `confirm = false` reads the slot without confirming
/// (as if every confirmation were lost in a crash).
pub async fn drain_to_lake(
    db: &TestDb,
    slot: &str,
    dir: &Path,
    flush_rows: usize,
    confirm: bool,
) -> Result<RunSummary> {
    let mut opts = options(db, slot, 64 << 20);
    if !confirm {
        opts.slot = SlotMode::ReadOnly { name: slot.into() };
    }
    let sink = LakeSink::open(sink_options(dir, slot, flush_rows)).await?;
    let run = pipeline::run(opts, sink, CancellationToken::new());
    Ok(tokio::time::timeout(Duration::from_secs(120), run).await??)
}

/// A Delta table of the lake in `dir`.
pub async fn open(dir: &Path, schema: &str, table: &str) -> Result<DeltaTable> {
    let lake = LakeLocation::new(dir.to_str().unwrap(), &S3Config::default())?;
    let url = if schema == "_walaudit" {
        lake.engine_table_url(table)
    } else {
        lake.table_url(schema, table)
    };
    Ok(deltalake::open_table(url).await?)
}

/// A session with `t` registered as the given Delta table.
pub async fn session(table: &DeltaTable) -> Result<SessionContext> {
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    ctx.register_table("t", table.table_provider().await?)?;
    Ok(ctx)
}

/// Every row of `sql` as text cells (`NULL` for nulls).
pub async fn rows(ctx: &SessionContext, sql: &str) -> Result<Vec<Vec<String>>> {
    Ok(text_rows(&ctx.sql(sql).await?.collect().await?))
}

/// Every row of `sql` over the lake, through the read-only query path, as text cells (`NULL`
/// for nulls).
pub async fn lake_rows(query: &LakeQuery, sql: &str) -> Result<Vec<Vec<String>>> {
    Ok(text_rows(&query.collect(sql).await?))
}

/// The rows of `batches` as text cells (`NULL` for nulls).
pub fn text_rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for batch in batches {
        let columns: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| cast(c, &DataType::Utf8).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            out.push(
                columns
                    .iter()
                    .map(|c| {
                        let s = c.as_any().downcast_ref::<StringArray>().unwrap();
                        if s.is_null(row) {
                            "NULL".to_owned()
                        } else {
                            s.value(row).to_owned()
                        }
                    })
                    .collect(),
            );
        }
    }
    out
}

/// Rows of a Postgres query, every column cast to text by the query.
pub async fn pg_rows(db: &TestDb, sql: &str) -> Result<Vec<Vec<String>>> {
    let rows = db.client().query(sql, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| {
                    r.get::<_, Option<String>>(i)
                        .unwrap_or_else(|| "NULL".into())
                })
                .collect()
        })
        .collect())
}

/// The table's exactly-once marker for `slot`.
pub async fn marker(table: &DeltaTable, slot: &str) -> Result<Option<i64>> {
    let state = table.snapshot()?;
    Ok(state
        .transaction_version(table.log_store().as_ref(), format!("walaudit:{slot}"))
        .await?)
}

/// Assert no `(_lsn, _seq)` occurs twice in `t`; returns the row count.
pub async fn assert_unique(ctx: &SessionContext) -> Result<i64> {
    let dups = rows(
        ctx,
        "SELECT _lsn, _seq, count(*) FROM t GROUP BY _lsn, _seq HAVING count(*) > 1",
    )
    .await?;
    assert!(dups.is_empty(), "duplicated changes: {dups:?}");
    let n = rows(ctx, "SELECT count(*) FROM t").await?;
    Ok(n[0][0].parse()?)
}

pub async fn setup(db: &TestDb) -> Result<String> {
    prepare(db).await
}
