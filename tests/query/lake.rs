//! A fabricated lake: real Delta tables laid out as the lake format says (README, "The lake on
//! storage"), with rows built by
//! `ChangeBatchBuilder` from hand-made transactions, so the query layer is tested without the
//! writer or a Postgres server.

use std::sync::Arc;

use bytes::Bytes;
use deltalake::DeltaTable;
use deltalake::arrow::array::{
    Int64Array, ListBuilder, RecordBatch, StringArray, StringBuilder, TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, SchemaRef};
use deltalake::kernel::StructType;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
use tempfile::TempDir;
use walaudit::Lsn;
use walaudit::capture::{AuditContext, Before, Change, ColumnInfo, Op, TableInfo, TxnMeta};
use walaudit::decode::{Cell, PgType, ReplicaIdentity};
use walaudit::lake::{ChangeBatchBuilder, transactions_schema};
use walaudit::query::{KEY_COLUMNS_KEY, SOURCE_TABLE_KEY};

/// 2024-01-01T10:00:00Z in microseconds.
pub const T0: i64 = 1_704_103_200_000_000;
pub const MINUTE: i64 = 60_000_000;

/// A `_walaudit/transactions` row: commit LSN, xid, commit time (µs), tables, actor.
pub type TxnRow<'a> = (u64, u32, i64, &'a [&'a str], Option<&'a str>);

/// A lake in a temporary directory.
pub struct TestLake {
    dir: TempDir,
}

impl TestLake {
    pub fn new() -> TestLake {
        TestLake {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 temp path")
    }

    /// Appends `txns` to the change table of `table` as one Delta commit, creating the table
    /// (with the walaudit properties) on first use.
    pub async fn append(
        &self,
        table: &Arc<TableInfo>,
        keys: &[&str],
        txns: &[(TxnMeta, Vec<Change>)],
    ) {
        let mut builder = ChangeBatchBuilder::new(table.clone(), 16).expect("valid table");
        for (txn, changes) in txns {
            for change in changes {
                builder.append(txn, change);
            }
        }
        let batch = builder.finish();
        let config = [
            (SOURCE_TABLE_KEY.to_owned(), table.qualified_name()),
            (
                KEY_COLUMNS_KEY.to_owned(),
                serde_json::to_string(keys).expect("json"),
            ),
        ];
        self.write(&format!("{}/{}", table.schema, table.name), batch, &config)
            .await;
    }

    /// Appends rows to `_walaudit/transactions`.
    pub async fn append_transactions(&self, rows: &[TxnRow<'_>]) {
        let schema = transactions_schema();
        let DataType::List(item) = schema
            .field_with_name("tables")
            .unwrap()
            .data_type()
            .clone()
        else {
            panic!("tables is a list");
        };
        let mut tables = ListBuilder::new(StringBuilder::new()).with_field(item);
        for (_, _, _, names, _) in rows {
            for name in *names {
                tables.values().append_value(name);
            }
            tables.append(true);
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|r| r.0 as i64),
                )),
                Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|r| i64::from(r.1)),
                )),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.2))
                        .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(vec![None::<&str>; rows.len()])),
                Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|r| r.3.len() as i64),
                )),
                Arc::new(tables.finish()),
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.4))),
                Arc::new(StringArray::from(vec![None::<&str>; rows.len()])),
            ],
        )
        .expect("transactions batch");
        self.write("_walaudit/transactions", batch, &[]).await;
    }

    async fn write(&self, folder: &str, batch: RecordBatch, config: &[(String, String)]) {
        let dir = self.dir.path().join(folder);
        std::fs::create_dir_all(&dir).expect("table dir");
        let url = deltalake::ensure_table_uri(dir.to_str().unwrap()).expect("table url");
        let mut table = DeltaTable::try_from_url(url).await.expect("table handle");
        if table.version().is_none() {
            table = create(&table, batch.schema(), config).await;
        }
        table.write(vec![batch]).await.expect("delta write");
    }
}

async fn create(table: &DeltaTable, schema: SchemaRef, config: &[(String, String)]) -> DeltaTable {
    let delta: StructType = schema.as_ref().try_into_kernel().expect("delta schema");
    table
        .create()
        .with_columns(delta.fields().cloned())
        .with_configuration(config.iter().map(|(k, v)| (k.clone(), Some(v.clone()))))
        .with_raise_if_key_not_exists(false)
        .await
        .expect("delta create")
}

/// A source table; `keys` marks key columns.
pub fn table(
    schema: &str,
    name: &str,
    columns: &[(&str, PgType)],
    keys: &[&str],
) -> Arc<TableInfo> {
    Arc::new(TableInfo {
        oid: 16400,
        schema: schema.into(),
        name: name.into(),
        replica_identity: if keys.is_empty() {
            ReplicaIdentity::Full
        } else {
            ReplicaIdentity::Default
        },
        columns: columns
            .iter()
            .map(|(n, ty)| ColumnInfo {
                name: (*n).into(),
                type_oid: 0,
                type_modifier: -1,
                is_key: keys.contains(n),
                pg_type: ty.clone(),
            })
            .collect(),
    })
}

/// A committed transaction at `lsn`, `minutes` after [`T0`], attributed to `actor`.
pub fn txn(lsn: u64, minutes: i64, actor: Option<&str>) -> TxnMeta {
    TxnMeta {
        xid: lsn as u32,
        commit_lsn: Lsn(lsn),
        end_lsn: Lsn(lsn + 8),
        commit_ts_micros: T0 + minutes * MINUTE,
        origin: None,
        context: actor.map(|a| AuditContext {
            raw: format!(r#"{{"actor":"{a}"}}"#),
            actor: Some(a.into()),
            well_formed: true,
        }),
        change_count: 0,
        streamed: false,
    }
}

pub fn cells(values: &[Option<&str>]) -> Vec<Cell> {
    values
        .iter()
        .map(|v| match v {
            Some(s) => Cell::Text(Bytes::copy_from_slice(s.as_bytes())),
            None => Cell::Null,
        })
        .collect()
}

/// A change of `op` at `seq` with the row image `row`.
pub fn change(table: &Arc<TableInfo>, op: Op, seq: u64, row: &[Option<&str>]) -> Change {
    Change {
        table: table.clone(),
        op,
        seq,
        row: cells(row),
        before: None,
        changed: None,
        unavailable: Vec::new(),
        truncate_options: 0,
    }
}

/// An update with a before image (`key_only` for a key change under DEFAULT identity).
pub fn update_with_before(
    table: &Arc<TableInfo>,
    seq: u64,
    before: &[Option<&str>],
    key_only: bool,
    row: &[Option<&str>],
) -> Change {
    Change {
        before: Some(Before {
            key_only,
            row: cells(before),
        }),
        ..change(table, Op::Update, seq, row)
    }
}

pub fn truncate(table: &Arc<TableInfo>, seq: u64) -> Change {
    change(table, Op::Truncate, seq, &[])
}
