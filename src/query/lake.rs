//! Finding and opening the lake's Delta tables (README, "The lake on storage", "Layout").
//!
//! ```text
//!  <lake>/                list with delimiter ──► schema folders
//!  <lake>/<schema>/       list with delimiter ──► table folders ──► open (Delta) in parallel
//!  <lake>/_walaudit/...   the engine's tables: exposed as they are, no current/as-of views
//! ```
//!
//! A folder without a `_delta_log` is skipped (it is not a table, or its first commit is not
//! written yet). A change table's SQL name comes from its `walaudit.sourceTable` property, so a
//! name that needed escaping in the object store is still the Postgres name in SQL.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::datatypes::SchemaRef;
use deltalake::table::builder::parse_table_uri;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, ObjectStore, Path};
use futures_util::{StreamExt, TryStreamExt};

use super::QueryError;
use crate::lake::schema::METADATA_COLUMNS;

/// The folder of the engine's own tables (its SQL schema).
pub use crate::lake::storage::ENGINE_DIR as ENGINE_SCHEMA;
/// Delta property: JSON array of the key column names, in key order.
pub use crate::lake::table::PROP_KEY_COLUMNS as KEY_COLUMNS_KEY;
use crate::lake::table::PROP_REPLICA_IDENTITY as REPLICA_IDENTITY_KEY;
/// Delta property: `schema.table` of the source table a change table captures.
pub use crate::lake::table::PROP_SOURCE_TABLE as SOURCE_TABLE_KEY;
/// Tables opened at once while discovering (each open reads the table's log).
const OPEN_CONCURRENCY: usize = 16;

/// Where the lake is and how to reach it.
#[derive(Clone, Debug)]
pub struct LakeLocation {
    /// What the user gave (a path or URL), for messages.
    pub display: String,
    /// The lake root URL, always ending with `/`.
    pub url: String,
    pub storage_options: HashMap<String, String>,
    /// A store rooted at the bucket (or filesystem root) to use instead of building one from the
    /// URL and options (the writer's own S3 client, an in-memory store in tests).
    pub object_store: Option<Arc<dyn ObjectStore>>,
}

impl LakeLocation {
    /// Resolves `lake`: a local path (which must exist) or a URL of a scheme delta-rs knows.
    pub fn parse(
        lake: &str,
        storage_options: HashMap<String, String>,
    ) -> Result<LakeLocation, QueryError> {
        let local = match lake.split_once("://") {
            None => Some(std::path::Path::new(lake)),
            Some(("file", path)) => Some(std::path::Path::new(path)),
            Some(_) => None,
        };
        if let Some(path) = &local
            && !path.is_dir()
        {
            return Err(QueryError::LakeNotFound {
                lake: lake.to_owned(),
            });
        }
        // s3://, gs://, az:// go through the same stores (and storage options) as the writer.
        crate::lake::storage::register_object_stores();
        let mut url = parse_table_uri(lake)
            .map_err(|source| QueryError::InvalidLake {
                lake: lake.to_owned(),
                source: Box::new(source),
            })?
            .to_string();
        if !url.ends_with('/') {
            url.push('/');
        }
        Ok(LakeLocation {
            display: lake.to_owned(),
            url,
            storage_options,
            object_store: None,
        })
    }

    /// A table builder for the table (or folder) at `url`.
    fn builder(&self, url: &str) -> Result<DeltaTableBuilder, DeltaTableError> {
        let url = parse_table_uri(url)?;
        let mut builder = DeltaTableBuilder::from_url(url.clone())?
            .with_storage_options(self.storage_options.clone());
        if let Some(store) = &self.object_store {
            builder = builder.with_storage_backend(store.clone(), url);
        }
        Ok(builder)
    }

    /// The store with the lake root as its root.
    fn store(&self) -> Result<Arc<dyn ObjectStore>, QueryError> {
        let log_store = self
            .builder(&self.url)
            .and_then(|b| b.build_storage())
            .map_err(|source| QueryError::InvalidLake {
                lake: self.display.clone(),
                source: Box::new(source),
            })?;
        Ok(log_store.object_store(None))
    }
}

/// Whether a table is a change table (with current and as-of views) or an engine table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableKind {
    Change,
    Engine,
}

/// One opened Delta table of the lake.
#[derive(Debug)]
pub struct LakeTable {
    /// SQL schema: the Postgres schema, or `_walaudit`.
    pub schema: String,
    /// SQL table name: the Postgres table name.
    pub name: String,
    pub kind: TableKind,
    pub table: DeltaTable,
    /// For change tables: the columns that identify a row, in key order; all source columns
    /// when the source table has no key. Empty for engine tables.
    pub key_columns: Vec<String>,
    /// For change tables: the source columns, in table order. Empty for engine tables.
    pub source_columns: Vec<String>,
    /// For change tables: rows are a multiset of whole rows (no key, or REPLICA IDENTITY
    /// FULL, whose key is every column).
    pub multiset: bool,
}

impl LakeTable {
    /// `schema.table` as in Postgres.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// The table's location.
    pub fn url(&self) -> String {
        self.table.table_url().to_string()
    }

    fn arrow_schema(&self) -> Result<SchemaRef, DeltaTableError> {
        Ok(self.table.snapshot()?.snapshot().arrow_schema())
    }
}

/// Lists the lake and opens every Delta table in it, sorted by schema and name.
pub async fn discover(location: &LakeLocation) -> Result<Vec<LakeTable>, QueryError> {
    let store = location.store()?;
    let list_err = |source| QueryError::List {
        lake: location.display.clone(),
        source: Box::new(source),
    };
    let mut folders = Vec::new();
    for schema in store
        .list_with_delimiter(None)
        .await
        .map_err(list_err)?
        .common_prefixes
    {
        let tables = store
            .list_with_delimiter(Some(&schema))
            .await
            .map_err(list_err)?;
        folders.extend(tables.common_prefixes);
    }
    let mut tables: Vec<LakeTable> = futures_util::stream::iter(folders)
        .map(|folder| open(location, folder))
        .buffer_unordered(OPEN_CONCURRENCY)
        .try_filter_map(|table| async move { Ok(table) })
        .try_collect()
        .await?;
    tables.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
    Ok(tables)
}

/// Opens the table in `folder` (`<schema>/<table>` under the lake root); `None` when the folder
/// holds no Delta table.
async fn open(location: &LakeLocation, folder: Path) -> Result<Option<LakeTable>, QueryError> {
    let parts: Vec<String> = folder.parts().map(|p| p.as_ref().to_owned()).collect();
    let [schema_dir, table_dir] = parts.as_slice() else {
        return Ok(None);
    };
    let display = format!("{schema_dir}.{table_dir}");
    let url = format!("{}{folder}/", location.url);
    let open_err = |source| QueryError::OpenTable {
        table: display.clone(),
        url: url.clone(),
        source: Box::new(source),
    };
    let table = match location.builder(&url).map_err(open_err)?.load().await {
        Ok(table) => table,
        Err(DeltaTableError::NotATable(_)) => {
            tracing::debug!(folder = %folder, "no delta table in lake folder: skipped");
            return Ok(None);
        }
        Err(err) => return Err(open_err(err)),
    };
    let mut found = LakeTable {
        schema: schema_dir.clone(),
        name: table_dir.clone(),
        kind: TableKind::Engine,
        table,
        key_columns: Vec::new(),
        source_columns: Vec::new(),
        multiset: false,
    };
    if schema_dir != ENGINE_SCHEMA {
        describe_change_table(&mut found, &url)?;
    }
    Ok(Some(found))
}

/// Reads the walaudit properties and the source columns of a change table.
fn describe_change_table(found: &mut LakeTable, url: &str) -> Result<(), QueryError> {
    let bad = |key, detail: String| QueryError::BadMetadata {
        url: url.to_owned(),
        key,
        detail,
    };
    let config = found
        .table
        .snapshot()
        .map_err(|e| bad(SOURCE_TABLE_KEY, e.to_string()))?
        .metadata()
        .configuration()
        .clone();
    if let Some(source) = config.get(SOURCE_TABLE_KEY) {
        let (schema, name) = source
            .split_once('.')
            .ok_or_else(|| bad(SOURCE_TABLE_KEY, format!("{source:?} is not schema.table")))?;
        found.schema = schema.to_owned();
        found.name = name.to_owned();
    }
    let arrow = found
        .arrow_schema()
        .map_err(|e| bad(SOURCE_TABLE_KEY, e.to_string()))?;
    found.source_columns = arrow
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| !METADATA_COLUMNS.contains(&n.as_str()))
        .collect();
    for required in [
        "_op",
        "_lsn",
        "_seq",
        "_commit_ts",
        "_before",
        "_actor",
        "_unavailable",
    ] {
        if arrow.field_with_name(required).is_err() {
            return Err(bad("schema", format!("the column {required} is missing")));
        }
    }
    let keys: Vec<String> = match config.get(KEY_COLUMNS_KEY) {
        Some(json) => serde_json::from_str(json).map_err(|e| {
            bad(
                KEY_COLUMNS_KEY,
                format!("{json:?} is not a JSON array of names: {e}"),
            )
        })?,
        None => Vec::new(),
    };
    if let Some(unknown) = keys.iter().find(|k| !found.source_columns.contains(k)) {
        return Err(bad(
            KEY_COLUMNS_KEY,
            format!("the key column {unknown:?} is not a column of the table"),
        ));
    }
    // A table created before the replica-identity property existed: REPLICA IDENTITY FULL
    // made every column of that moment a key column.
    let full = config.get(REPLICA_IDENTITY_KEY).map(String::as_str) == Some("full")
        || (!keys.is_empty() && keys.len() == found.source_columns.len());
    found.multiset = keys.is_empty() || full;
    found.key_columns = if keys.is_empty() {
        found.source_columns.clone()
    } else {
        keys
    };
    found.kind = TableKind::Change;
    Ok(())
}
