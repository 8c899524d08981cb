//! Read-only SQL over the lake (DataFusion): change logs, current state, as-of reconstruction.
//!
//! ```text
//!  <lake>/<schema>/<table>  ──► lake.<schema>.<table>      the change log, one row per change
//!                           ──► current.<schema>.<table>   latest image per key (a view)
//!                           ──► as_of('<schema>.<table>', TIMESTAMP '…')   image at a moment
//!  <lake>/_walaudit/<name>  ──► lake._walaudit.<name>      engine tables (transactions, messages)
//!  functions: pg_lsn(bigint) -> text, lsn(text) -> bigint, walaudit_hash60(text) -> bigint
//! ```
//!
//! `lake` is the default catalog and `public` the default schema, so `orders`,
//! `public.orders` and `lake.public.orders` are the same table. Names keep their Postgres case:
//! quote mixed-case names as in Postgres (`"Sales"."Orders"`).
//!
//! # Invariants
//! * Read-only: DDL, DML (including `COPY`) and session statements (`SET`, ...) are refused
//!   before anything runs ([`QueryError::ReadOnly`]). The DataFusion session never leaves
//!   this module: every statement goes through the one read-only planning path (`sql`,
//!   `collect`, and the query seam's [`crate::sql::LakeTarget`]).
//! * Bounded memory: the session's memory pool has a fixed size; operators that can spill do,
//!   the others fail with a resources-exhausted error rather than grow.
//! * A session sees the table versions of the moment it was opened: open a new one to see
//!   newer commits.

mod error;
mod functions;
pub mod images;
mod output;
mod views;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use deltalake::ObjectStore;
use deltalake::arrow::array::AsArray;
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::datatypes::{DataType, Int64Type};
use deltalake::datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider,
};
use deltalake::datafusion::execution::SendableRecordBatchStream;
use deltalake::datafusion::execution::memory_pool::MemoryLimit;
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures_util::TryStreamExt;

/// The folder of the engine's own tables (its SQL schema).
pub use crate::lake::catalog::ENGINE_DIR as ENGINE_SCHEMA;
/// Delta property: JSON array of the key column names, in key order.
pub use crate::lake::catalog::PROP_KEY_COLUMNS as KEY_COLUMNS_KEY;
/// Delta property: `schema.table` of the source table a change table captures.
pub use crate::lake::catalog::PROP_SOURCE_TABLE as SOURCE_TABLE_KEY;
pub use crate::lake::catalog::TableKind;
use crate::lake::catalog::{self, LOADS_TABLE};
use crate::lake::storage::LakeLocation;
pub use error::QueryError;
pub use functions::{hash60, lsn_udf, pg_lsn_udf};
pub use output::{OutputFormat, ResultWriter};
pub use views::{AS_OF, quote_ident};

/// The catalog of the tables as stored (change logs and engine tables); the default catalog.
pub const LAKE_CATALOG: &str = "lake";
/// The catalog of the current-state views.
pub const CURRENT_CATALOG: &str = "current";
/// The default schema for unqualified table names.
pub const DEFAULT_SCHEMA: &str = "public";
/// Default size of the session's memory pool.
pub const DEFAULT_MEMORY_LIMIT: usize = 1 << 30;

/// How to open a [`LakeQuery`].
#[derive(Clone, Debug)]
pub struct LakeOptions {
    /// object_store / delta-rs storage options (credentials, endpoint, region, ...).
    pub storage_options: HashMap<String, String>,
    /// A store rooted at the bucket (or filesystem root) to read through instead of one built
    /// from the URL and `storage_options`.
    pub object_store: Option<Arc<dyn ObjectStore>>,
    /// Size of the memory pool shared by the session's queries, in bytes.
    pub memory_limit: usize,
    /// Longest a query may take, planning and reading its whole result included.
    pub timeout: Option<Duration>,
}

impl Default for LakeOptions {
    fn default() -> Self {
        LakeOptions {
            storage_options: HashMap::new(),
            object_store: None,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            timeout: None,
        }
    }
}

/// A table the session exposes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSummary {
    /// SQL schema (the Postgres schema, or `_walaudit`).
    pub schema: String,
    pub name: String,
    pub kind: TableKind,
    /// Where the Delta table is.
    pub url: String,
    /// Delta version the session reads.
    pub version: Option<deltalake::kernel::Version>,
    /// Key columns of a change table (all source columns when the table has no key).
    pub key_columns: Vec<String>,
}

/// A read-only DataFusion session over one lake.
pub struct LakeQuery {
    ctx: SessionContext,
    lake: String,
    tables: Vec<TableSummary>,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for LakeQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeQuery")
            .field("lake", &self.lake)
            .field("tables", &self.tables.len())
            .finish_non_exhaustive()
    }
}

impl LakeQuery {
    /// Opens the lake at `lake` (a path, `file://`, or an object-store URL) and registers its
    /// tables, views and functions. A local lake must exist ([`QueryError::LakeNotFound`]).
    pub async fn open(lake: &str, options: LakeOptions) -> Result<LakeQuery, QueryError> {
        let mut location = LakeLocation::existing(lake, options.storage_options)?;
        if let Some(store) = options.object_store {
            location = location.with_object_store(store);
        }
        let found = catalog::discover(&location).await?;

        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(options.memory_limit, 1.0)
            .build_arc()?;
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(LAKE_CATALOG, DEFAULT_SCHEMA)
            .with_create_default_catalog_and_schema(true)
            .with_information_schema(true);
        // `amount = 42.10` on a decimal column must compare decimals, as in Postgres: a float
        // literal would silently match nothing when the value is not exact in binary.
        config.options_mut().sql_parser.parse_float_as_decimal = true;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        ctx.register_udf(pg_lsn_udf());
        ctx.register_udf(lsn_udf());
        ctx.register_udf(functions::hash60_udf());

        let lake_catalog = ctx
            .catalog(LAKE_CATALOG)
            .expect("the default catalog is created with the session");
        let current_catalog = Arc::new(MemoryCatalogProvider::new());
        ctx.register_catalog(CURRENT_CATALOG, current_catalog.clone());

        let mut tables = Vec::with_capacity(found.len());
        for table in &found {
            let provider = table
                .table
                .table_provider()
                .await
                .map_err(|e| QueryError::from_datafusion(e, lake))?;
            schema_of(lake_catalog.as_ref(), &table.schema)
                .register_table(table.name.clone(), provider)?;
            tables.push(TableSummary {
                schema: table.schema.clone(),
                name: table.name.clone(),
                kind: table.kind,
                url: table.url(),
                version: table.table.version(),
                key_columns: table.key_columns.clone(),
            });
        }

        let resets = load_starts(&ctx, &tables).await?;
        let mut as_of_plans = HashMap::new();
        for table in found.iter().filter(|t| t.kind == TableKind::Change) {
            let starts = resets.get(&table.qualified_name());
            let spec = views::image_spec(table, starts.cloned().unwrap_or_default());
            let current = ctx
                .sql(&views::changes_sql(LAKE_CATALOG, table, false))
                .await?
                .into_unoptimized_plan();
            let view = Arc::new(images::ImageTable::new(current, spec.clone())?);
            schema_of(current_catalog.as_ref(), &table.schema)
                .register_table(table.name.clone(), view)?;
            let as_of = ctx
                .sql(&views::changes_sql(LAKE_CATALOG, table, true))
                .await?
                .into_unoptimized_plan();
            as_of_plans.insert(table.qualified_name(), (as_of, spec));
        }
        ctx.register_udtf(
            AS_OF,
            Arc::new(views::AsOf::new(as_of_plans, lake.to_owned())),
        );

        tracing::debug!(lake, tables = tables.len(), "lake opened for queries");
        Ok(LakeQuery {
            ctx,
            lake: lake.to_owned(),
            tables,
            timeout: options.timeout,
        })
    }

    /// The tables of the lake, sorted by schema and name.
    pub fn tables(&self) -> &[TableSummary] {
        &self.tables
    }

    /// The size of the memory pool the session's queries share.
    pub fn memory_limit(&self) -> MemoryLimit {
        self.ctx.runtime_env().memory_pool.memory_limit()
    }

    /// The longest a query of [`LakeQuery::sql`] may take ([`LakeOptions::timeout`]).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Runs read-only `sql`, handing each result batch to `on_batch` as it arrives; returns the
    /// result's schema. The timeout, if any, covers planning and the whole result.
    pub async fn sql<F>(&self, sql: &str, mut on_batch: F) -> Result<SchemaRef, QueryError>
    where
        F: FnMut(&RecordBatch) -> Result<(), QueryError>,
    {
        let run = async {
            let mut stream = self.stream(sql).await?;
            let schema = stream.schema();
            while let Some(batch) = stream
                .try_next()
                .await
                .map_err(|e| QueryError::from_datafusion(e, &self.lake))?
            {
                on_batch(&batch)?;
            }
            Ok(schema)
        };
        match self.timeout {
            None => run.await,
            Some(limit) => tokio::time::timeout(limit, run)
                .await
                .unwrap_or(Err(QueryError::Timeout(limit))),
        }
    }

    /// Runs read-only `sql` and writes its result to `out` in `format`, batch by batch (the
    /// schema comes with the first batch, or the end for an empty result).
    pub async fn write_result(
        &self,
        sql: &str,
        format: OutputFormat,
        out: Box<dyn std::io::Write + Send>,
    ) -> Result<(), QueryError> {
        let mut out = Some(out);
        let mut writer: Option<ResultWriter> = None;
        let schema = self
            .sql(sql, |batch| {
                if writer.is_none() {
                    let sink = out.take().expect("the output is taken once");
                    writer = Some(ResultWriter::new(format, batch.schema(), sink)?);
                }
                writer.as_mut().expect("created above").write(batch)
            })
            .await?;
        let writer = match (writer, out) {
            (Some(writer), _) => writer,
            (None, Some(sink)) => ResultWriter::new(format, schema, sink)?,
            (None, None) => unreachable!("the output is only taken to create the writer"),
        };
        writer.finish()
    }

    /// Runs read-only `sql` and returns its whole result.
    pub async fn collect(&self, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
        let mut batches = Vec::new();
        self.sql(sql, |batch| {
            batches.push(batch.clone());
            Ok(())
        })
        .await?;
        Ok(batches)
    }

    /// Plans and starts read-only `sql`: the only way SQL reaches the session. Dropping the
    /// stream stops the query's tasks.
    pub(crate) async fn stream(&self, sql: &str) -> Result<SendableRecordBatchStream, QueryError> {
        self.plan(sql)
            .await?
            .execute_stream()
            .await
            .map_err(|e| QueryError::from_datafusion(e, &self.lake))
    }

    /// The location the session was opened on, as given.
    pub fn lake(&self) -> &str {
        &self.lake
    }

    /// Plans `sql`, refusing anything but queries.
    async fn plan(
        &self,
        sql: &str,
    ) -> Result<deltalake::datafusion::dataframe::DataFrame, QueryError> {
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        self.ctx
            .sql_with_options(sql, options)
            .await
            .map_err(|e| QueryError::from_datafusion(e, &self.lake))
    }
}

/// The first consistent point of every finished historical load, by `schema.table`, from
/// `_walaudit.snapshots` (none when the lake has no loads).
async fn load_starts(
    ctx: &SessionContext,
    tables: &[TableSummary],
) -> Result<HashMap<String, Vec<i64>>, QueryError> {
    let mut starts: HashMap<String, Vec<i64>> = HashMap::new();
    if !tables
        .iter()
        .any(|t| t.schema == ENGINE_SCHEMA && t.name == LOADS_TABLE)
    {
        return Ok(starts);
    }
    let batches = ctx
        .sql(&format!(
            "SELECT source_table, min(snapshot_lsn) FROM {LAKE_CATALOG}.{ENGINE_SCHEMA}.{LOADS_TABLE} \
             GROUP BY source_table, load_id \
             HAVING bool_or(status = 'done') AND min(snapshot_lsn) IS NOT NULL"
        ))
        .await?
        .collect()
        .await?;
    for batch in batches {
        let names = deltalake::arrow::compute::cast(batch.column(0), &DataType::Utf8)
            .map_err(deltalake::datafusion::error::DataFusionError::from)?;
        let names = names.as_string::<i32>();
        let lsns = batch.column(1).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            starts
                .entry(names.value(i).to_owned())
                .or_default()
                .push(lsns.value(i));
        }
    }
    starts.values_mut().for_each(|v| v.sort_unstable());
    Ok(starts)
}

/// The schema `name` of `catalog`, created when missing.
fn schema_of(
    catalog: &dyn CatalogProvider,
    name: &str,
) -> Arc<dyn deltalake::datafusion::catalog::SchemaProvider> {
    if let Some(schema) = catalog.schema(name) {
        return schema;
    }
    let schema = Arc::new(MemorySchemaProvider::new());
    catalog
        .register_schema(name, schema.clone())
        .expect("a memory catalog accepts new schemas");
    schema
}
