//! Read a lake the way any Delta reader would: deltalake + DataFusion, no walaudit code.
//!
//! Local lakes open by path. S3 lakes open through `object_store`'s `AmazonS3` pointed at the
//! test server (`with_storage_backend`) and deltalake's default log store: the same client and
//! options a Spark or DuckDB job would be given.

use std::sync::Arc;

use anyhow::{Context, Result};
use deltalake::arrow::array::{Array, StringArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreRef, StorageConfig, default_logstore, logstore_factories,
};
use deltalake::{DeltaResult, DeltaTable, DeltaTableBuilder};
use url::Url;

use crate::support::s3::S3Server;

/// A lake root and how to reach its storage.
#[derive(Clone)]
pub struct LakeReader {
    root: Url,
    store: Option<ObjectStoreRef>,
}

/// Rows as text: each value cast to a string by Arrow (`None` for null).
pub type TextRows = Vec<Vec<Option<String>>>;

impl LakeReader {
    /// A lake in local directory `dir`.
    pub fn local(dir: &std::path::Path) -> LakeReader {
        let root = Url::from_directory_path(dir).expect("an absolute lake directory");
        LakeReader { root, store: None }
    }

    /// The lake at `s3://<bucket>/<prefix>` on the test server.
    pub fn s3(server: &S3Server, prefix: &str) -> Result<LakeReader> {
        register_s3_log_store();
        let root = Url::parse(&format!("{}/", server.url(prefix).trim_end_matches('/')))?;
        Ok(LakeReader {
            root,
            store: Some(Arc::new(server.store()?)),
        })
    }

    /// `<lake>/<rel>/`, e.g. `rel = "public/orders"` or `"_walaudit/transactions"`.
    pub fn table_url(&self, rel: &str) -> Url {
        self.root
            .join(&format!("{}/", rel.trim_matches('/')))
            .expect("a relative table path joins")
    }

    /// Open the latest version of table `rel`.
    pub async fn open(&self, rel: &str) -> Result<DeltaTable> {
        let url = self.table_url(rel);
        let mut builder = DeltaTableBuilder::from_url(url.clone())?;
        if let Some(store) = &self.store {
            builder = builder.with_storage_backend(Arc::clone(store), url.clone());
        }
        builder
            .load()
            .await
            .with_context(|| format!("open Delta table {url}"))
    }

    /// Whether table `rel` exists (has a Delta log with a version).
    pub async fn exists(&self, rel: &str) -> bool {
        self.open(rel).await.is_ok_and(|t| t.version().is_some())
    }

    /// A session with each `(name, rel)` registered as table `name`.
    pub async fn session(&self, tables: &[(&str, &str)]) -> Result<SessionContext> {
        let ctx = SessionContext::new();
        for (name, rel) in tables {
            let table = self.open(rel).await?;
            table.update_datafusion_session(&ctx.state())?;
            let provider = table.table_provider().await?;
            ctx.register_table(*name, provider)?;
        }
        Ok(ctx)
    }

    /// Run `sql` over `tables`; every value as text.
    pub async fn sql(&self, tables: &[(&str, &str)], sql: &str) -> Result<TextRows> {
        let ctx = self.session(tables).await?;
        text_rows(&ctx, sql).await
    }
}

/// Run `sql` in `ctx`; every value cast to text.
pub async fn text_rows(ctx: &SessionContext, sql: &str) -> Result<TextRows> {
    let batches = ctx
        .sql(sql)
        .await
        .with_context(|| sql.to_owned())?
        .collect()
        .await?;
    let mut rows = Vec::new();
    for batch in batches {
        let columns: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| cast(c, &DataType::Utf8))
            .collect::<Result<_, _>>()?;
        for r in 0..batch.num_rows() {
            rows.push(
                columns
                    .iter()
                    .map(|c| {
                        let text = c
                            .as_any()
                            .downcast_ref::<StringArray>()
                            .expect("cast to Utf8");
                        (!text.is_null(r)).then(|| text.value(r).to_owned())
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

/// The single integer a query returns (e.g. a count).
pub fn single_int(rows: &TextRows) -> i64 {
    assert_eq!(rows.len(), 1, "one row expected: {rows:?}");
    rows[0][0]
        .as_deref()
        .unwrap_or("0")
        .parse()
        .expect("an integer")
}

/// deltalake has a log store only for `file://` and `memory://` out of the box; S3 tables use
/// its default log store (commits by put-if-absent) over the store we hand it. Does not replace
/// a registration the engine made in this process.
fn register_s3_log_store() {
    struct Default_;
    impl LogStoreFactory for Default_ {
        fn with_options(
            &self,
            prefixed_store: ObjectStoreRef,
            root_store: ObjectStoreRef,
            location: &Url,
            options: &StorageConfig,
        ) -> DeltaResult<Arc<dyn LogStore>> {
            Ok(default_logstore(
                prefixed_store,
                root_store,
                location,
                options,
            ))
        }
    }
    let url = Url::parse("s3://").expect("a scheme URL");
    logstore_factories()
        .entry(url)
        .or_insert_with(|| Arc::new(Default_));
}
