//! The API's view of the lake: the change tables at known Delta versions, reused for
//! [`ApiConfig::refresh_interval`](super::config::ApiConfig::refresh_interval), and DataFusion
//! sessions over one such view.
//!
//! ```text
//!  latest()          ─► the view of at most refresh_interval ago (one listing at a time)
//!  pinned(versions)  ─► the tables at the versions a cursor names (time travel), cached
//!  session(view)     ─► a SessionContext over exactly those versions; one memory pool for all
//! ```
//!
//! # Invariants
//! * A response reads one view: its page and its count see the same versions.
//! * A view never changes; newer commits make a new view.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deltalake::arrow::array::{Array, ArrayRef, StringArray};
use deltalake::arrow::datatypes::{DataType, SchemaRef};
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::error::{DataFusionError, Result as DfResult};
use deltalake::datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use deltalake::datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
use tokio::time::Instant;

use crate::lake::LakeError;
use crate::lake::catalog::{self, TableKind};
use crate::lake::storage::LakeLocation;

/// Most pinned (cursor) table versions kept open.
const PINNED_CACHE: usize = 64;

/// One change table at one version.
pub struct EventTable {
    pub schema: String,
    pub name: String,
    /// The key columns, in key order; empty when the lake has no key for the table (no
    /// primary key, or REPLICA IDENTITY FULL, whose key is every column).
    pub key_columns: Vec<String>,
    pub source_columns: Vec<String>,
    pub version: i64,
    pub provider: Arc<dyn TableProvider>,
    url: url::Url,
}

impl EventTable {
    /// `schema.table`.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// The table's Arrow schema (source columns, then the metadata columns).
    pub fn arrow_schema(&self) -> SchemaRef {
        self.provider.schema()
    }
}

/// The change tables at fixed versions, sorted by `schema.table`.
pub struct LakeView {
    pub tables: Vec<Arc<EventTable>>,
}

impl LakeView {
    /// The position of the table named `schema.table`, or `table` for `public`.
    pub fn position(&self, name: &str) -> Option<usize> {
        let (schema, table) = name.split_once('.').unwrap_or(("public", name));
        self.tables
            .iter()
            .position(|t| t.schema == schema && t.name == table)
    }

    /// The table named `schema.table`, or `table` for `public`.
    pub fn find(&self, name: &str) -> Option<&Arc<EventTable>> {
        self.position(name).map(|i| &self.tables[i])
    }

    /// `(schema.table, version)` of every table.
    pub fn versions(&self) -> Vec<(String, i64)> {
        self.tables
            .iter()
            .map(|t| (t.qualified_name(), t.version))
            .collect()
    }
}

/// A cursor names a version the lake no longer has (its log was cleaned up, or the table is
/// gone): start again from the first page.
#[derive(Debug, thiserror::Error)]
#[error("{table} at version {version} is no longer in the lake")]
pub struct Expired {
    pub table: String,
    pub version: i64,
}

/// Why a view could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Expired(#[from] Expired),
    #[error("cannot read the lake table {table}: {source}")]
    Delta {
        table: String,
        #[source]
        source: deltalake::DeltaTableError,
    },
}

/// The lake as the API reads it.
pub struct ApiLake {
    location: LakeLocation,
    runtime: Arc<RuntimeEnv>,
    refresh: Duration,
    company_field: String,
    latest: tokio::sync::Mutex<Option<(Instant, Arc<LakeView>)>>,
    pinned: Mutex<HashMap<(String, i64), Arc<EventTable>>>,
}

impl ApiLake {
    pub fn new(
        location: LakeLocation,
        memory: u64,
        refresh: Duration,
        company_field: &str,
    ) -> Result<ApiLake, DataFusionError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(memory as usize, 1.0)
            .build_arc()?;
        Ok(ApiLake {
            location,
            runtime,
            refresh,
            company_field: company_field.to_owned(),
            latest: tokio::sync::Mutex::new(None),
            pinned: Mutex::new(HashMap::new()),
        })
    }

    pub fn location(&self) -> &LakeLocation {
        &self.location
    }

    /// The latest view, at most `refresh` old.
    pub async fn latest(&self) -> Result<Arc<LakeView>, ViewError> {
        let mut latest = self.latest.lock().await;
        if let Some((at, view)) = &*latest
            && at.elapsed() < self.refresh
        {
            return Ok(view.clone());
        }
        let mut tables = Vec::new();
        for found in catalog::discover(&self.location).await? {
            if found.kind != TableKind::Change {
                continue;
            }
            let name = found.qualified_name();
            let provider = found
                .table
                .table_provider()
                .await
                .map_err(|e| ViewError::Delta {
                    table: name.clone(),
                    source: e.into(),
                })?;
            tables.push(Arc::new(EventTable {
                key_columns: if found.multiset {
                    Vec::new()
                } else {
                    found.key_columns.clone()
                },
                source_columns: found.source_columns.clone(),
                version: found.table.version().unwrap_or(0) as i64,
                provider,
                url: found.table.table_url().clone(),
                schema: found.schema,
                name: found.name,
            }));
        }
        tables.sort_by_key(|t| t.qualified_name());
        let view = Arc::new(LakeView { tables });
        *latest = Some((Instant::now(), view.clone()));
        Ok(view)
    }

    /// The tables at `versions` (what a cursor names).
    pub async fn pinned(&self, versions: &[(String, i64)]) -> Result<Arc<LakeView>, ViewError> {
        let latest = self.latest().await?;
        let mut tables = Vec::with_capacity(versions.len());
        for (name, version) in versions {
            let Some(now) = latest.find(name) else {
                return Err(Expired {
                    table: name.clone(),
                    version: *version,
                }
                .into());
            };
            if now.version == *version {
                tables.push(now.clone());
                continue;
            }
            let key = (name.clone(), *version);
            let cached = self.pinned.lock().expect("pinned lock").get(&key).cloned();
            let table = match cached {
                Some(t) => t,
                None => {
                    let t = Arc::new(self.load_version(now, *version).await?);
                    let mut cache = self.pinned.lock().expect("pinned lock");
                    if cache.len() >= PINNED_CACHE {
                        cache.clear();
                    }
                    cache.insert(key, t.clone());
                    t
                }
            };
            tables.push(table);
        }
        Ok(Arc::new(LakeView { tables }))
    }

    async fn load_version(&self, now: &EventTable, version: i64) -> Result<EventTable, ViewError> {
        let name = now.qualified_name();
        let delta_err = |source| ViewError::Delta {
            table: name.clone(),
            source,
        };
        let builder = self
            .location
            .table_builder(&now.url)
            .map_err(delta_err)?
            .with_version(version.max(0) as u64);
        let table = match builder.load().await {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(table = %name, version, error = %e, "cursor version not loadable");
                return Err(Expired {
                    table: name.clone(),
                    version,
                }
                .into());
            }
        };
        let provider = table
            .table_provider()
            .await
            .map_err(|e| delta_err(e.into()))?;
        Ok(EventTable {
            schema: now.schema.clone(),
            name: now.name.clone(),
            key_columns: now.key_columns.clone(),
            source_columns: now.source_columns.clone(),
            version,
            provider,
            url: now.url.clone(),
        })
    }

    /// A session sharing the API's memory pool, with `walaudit_context_field(_context)`.
    pub fn session(&self) -> SessionContext {
        let config = SessionConfig::new().with_target_partitions(2);
        let ctx = SessionContext::new_with_config_rt(config, self.runtime.clone());
        ctx.register_udf(context_field_udf(&self.company_field));
        ctx
    }
}

/// Name of the function that reads the company field from `_context`.
pub const CONTEXT_FIELD: &str = "walaudit_context_field";

/// `walaudit_context_field(_context) -> text`: the configured field of the audit context as
/// text (a string as it is, a number or boolean as JSON writes it; NULL when absent or when
/// the context is not a JSON object).
fn context_field_udf(field: &str) -> ScalarUDF {
    let field = field.to_owned();
    create_udf(
        CONTEXT_FIELD,
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let [arg] = args else {
                return Err(DataFusionError::Plan(format!(
                    "{CONTEXT_FIELD} takes one argument"
                )));
            };
            let array = arg.to_array(1)?;
            let out = context_field_array(&array, &field)?;
            Ok(match arg {
                ColumnarValue::Array(_) => ColumnarValue::Array(out),
                ColumnarValue::Scalar(_) => {
                    ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
                }
            })
        }),
    )
}

fn context_field_array(array: &ArrayRef, field: &str) -> DfResult<ArrayRef> {
    let array = deltalake::arrow::compute::cast(array, &DataType::Utf8)?;
    let texts = array
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to Utf8 gives a StringArray");
    let out: StringArray = texts
        .iter()
        .map(|t| t.and_then(|t| context_field(t, field)))
        .collect();
    Ok(Arc::new(out))
}

/// The text of `field` in the JSON object `context`.
pub fn context_field(context: &str, field: &str) -> Option<String> {
    // A cheap test first: most contexts of a page filter do not hold the value at all.
    if !context.contains(field) {
        return None;
    }
    match serde_json::from_str::<serde_json::Value>(context)
        .ok()?
        .get(field)?
    {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_company_field_as_text() {
        assert_eq!(
            context_field(r#"{"company_id": 42, "actor": "a"}"#, "company_id").as_deref(),
            Some("42")
        );
        assert_eq!(
            context_field(r#"{"company_id": "acme"}"#, "company_id").as_deref(),
            Some("acme")
        );
        assert_eq!(context_field(r#"{"company_id": null}"#, "company_id"), None);
        assert_eq!(context_field("not json company_id", "company_id"), None);
        assert_eq!(context_field(r#"{"actor": "a"}"#, "company_id"), None);
    }
}
