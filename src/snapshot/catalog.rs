//! What a historical load needs to know about a source table, read from the catalog: its
//! columns exactly as pgoutput describes them (so snapshot rows and streamed changes share one
//! change table), where its rows are (a partitioned table published via its root holds none
//! itself), the publication's row filter, its chunking key, and its size.
//!
//! The publication's view of the table comes from `pg_publication_tables`, the server's own
//! answer to "what does this publication publish": it lists a partitioned table only when the
//! publication publishes via the root (else its leaf partitions, each once, however many
//! levels lie between), and gives the column list and (15+) the row filter the server applies
//! to the stream of that table (none under FOR ALL TABLES or FOR TABLES IN SCHEMA).

use std::sync::Arc;

use tokio_postgres::Client;

use super::SnapshotError;
use crate::capture::{ColumnInfo, TableInfo};
use crate::decode::ReplicaIdentity;
use crate::decode::pgtype::{is_builtin, map_type};
use crate::source::setup::load_type_catalog;

/// A source table as a load sees it.
#[derive(Clone, Debug)]
pub struct SourceTable {
    /// Columns in attribute order, limited to the publication's column list, with the
    /// replica-identity flags pgoutput sets (all columns for FULL).
    pub info: Arc<TableInfo>,
    /// Indices (into `info.columns`) of the primary key, in key order (its INCLUDE columns are
    /// not key columns, as pgoutput says too); empty: chunk by ctid.
    pub chunk_key: Vec<usize>,
    /// `format_type` of every column, for typed literals in chunk bounds.
    pub sql_types: Vec<String>,
    /// A partitioned table (published via its root): its rows are those of its partitions, so
    /// it is read without `ONLY`, and its sizes are its leaves'.
    pub partitioned: bool,
    /// The publication's row filter (`pg_get_expr` text, columns unqualified), if any: the
    /// stream publishes only rows matching it, so the load copies only those.
    pub row_filter: Option<String>,
    /// The planner's row estimate (`reltuples`; of a partitioned table, the sum of its leaves'),
    /// or `None` when the table (or a leaf) was never analyzed.
    pub estimated_rows: Option<u64>,
    /// Heap pages (`pg_relation_size / block_size`); of a partitioned table, those of its
    /// largest leaf, since ctid page bounds apply to every leaf at once.
    pub pages: u64,
}

impl SourceTable {
    pub fn name(&self) -> String {
        self.info.qualified_name()
    }
}

/// Reads `schema.table` from the catalog; `publication` gives its column list and row filter.
pub async fn describe(
    client: &Client,
    publication: &str,
    schema: &str,
    table: &str,
) -> Result<SourceTable, SnapshotError> {
    let sql = |context| {
        move |source| SnapshotError::Sql {
            context,
            source: Box::new(source),
        }
    };
    let row = client
        .query_opt(
            "SELECT c.oid, c.relreplident::text, c.reltuples::float8, \
                    (pg_relation_size(c.oid) / current_setting('block_size')::int8)::int8, \
                    coalesce((SELECT array_agg(k ORDER BY o) FROM pg_index i, \
                        unnest(i.indkey::int2[]) WITH ORDINALITY u(k, o) \
                        WHERE i.indrelid = c.oid AND i.indisprimary \
                          AND u.o <= i.indnkeyatts), '{}'::int2[]), \
                    coalesce((SELECT array_agg(k ORDER BY o) FROM pg_index i, \
                        unnest(i.indkey::int2[]) WITH ORDINALITY u(k, o) \
                        WHERE i.indrelid = c.oid AND i.indisreplident \
                          AND u.o <= i.indnkeyatts), '{}'::int2[]), \
                    (pub.entry -> 'attnames')::text, pub.entry ->> 'rowfilter', \
                    c.relkind = 'p' \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN LATERAL (SELECT to_jsonb(pt) AS entry FROM pg_publication_tables pt \
                 WHERE pt.pubname = $3 AND pt.schemaname = n.nspname \
                   AND pt.tablename = c.relname) pub ON true \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&schema, &table, &publication],
        )
        .await
        .map_err(sql("describing a table to snapshot"))?
        .ok_or_else(|| SnapshotError::TableMissing {
            table: format!("{schema}.{table}"),
        })?;
    let oid: u32 = row.get(0);
    let identity: String = row.get(1);
    let mut reltuples: f64 = row.get(2);
    let mut pages: i64 = row.get(3);
    let primary: Vec<i16> = row.get(4);
    let replident_index: Vec<i16> = row.get(5);
    let published: Option<Vec<String>> = row
        .get::<_, Option<String>>(6)
        .and_then(|json| serde_json::from_str(&json).ok());
    // Before 15 the view has no `rowfilter`: no filter.
    let row_filter: Option<String> = row.get(7);
    let partitioned: bool = row.get(8);
    if partitioned {
        // A partitioned table has no storage (reltuples -1, no pages): size it by its leaves.
        (reltuples, pages) = leaf_sizes(client, oid).await?;
    }

    let attrs = client
        .query(
            "SELECT a.attnum, a.attname::text, a.atttypid, a.atttypmod, \
                    format_type(a.atttypid, a.atttypmod) \
             FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 \
               AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(sql("reading a table's columns"))?;
    let attrs: Vec<(i16, String, u32, i32, String)> = attrs
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .filter(|(_, name, ..)| published.as_ref().is_none_or(|p| p.contains(name)))
        .collect();

    let custom: Vec<u32> = attrs
        .iter()
        .map(|a| a.2)
        .filter(|oid| !is_builtin(*oid))
        .collect();
    let catalog = load_type_catalog(client, &custom).await?;
    let replica_identity = match identity.as_str() {
        "f" => ReplicaIdentity::Full,
        "i" => ReplicaIdentity::Index,
        "n" => ReplicaIdentity::Nothing,
        _ => ReplicaIdentity::Default,
    };
    let identity_columns: &[i16] = match replica_identity {
        ReplicaIdentity::Default => &primary,
        ReplicaIdentity::Index => &replident_index,
        _ => &[],
    };
    let columns: Vec<ColumnInfo> = attrs
        .iter()
        .map(|(num, name, type_oid, typmod, _)| ColumnInfo {
            name: name.clone(),
            type_oid: *type_oid,
            type_modifier: *typmod,
            is_key: replica_identity == ReplicaIdentity::Full || identity_columns.contains(num),
            pg_type: map_type(*type_oid, *typmod, &catalog),
        })
        .collect();
    // Chunk by the primary key only when every key column is captured.
    let chunk_key: Vec<usize> = primary
        .iter()
        .map(|k| attrs.iter().position(|a| a.0 == *k))
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default();
    Ok(SourceTable {
        info: Arc::new(TableInfo {
            oid,
            schema: schema.to_owned(),
            name: table.to_owned(),
            replica_identity,
            columns,
        }),
        chunk_key,
        sql_types: attrs.into_iter().map(|a| a.4).collect(),
        partitioned,
        row_filter,
        estimated_rows: (reltuples >= 0.0).then_some(reltuples as u64),
        pages: u64::try_from(pages).unwrap_or(0),
    })
}

/// The rows (sum of `reltuples`, or -1 when a leaf was never analyzed) and the pages of the
/// largest leaf of the partitioned table `oid`, at any depth. `pg_inherits` rather than
/// `pg_partition_tree`, which PostgreSQL 10 and 11 lack.
async fn leaf_sizes(client: &Client, oid: u32) -> Result<(f64, i64), SnapshotError> {
    let row = client
        .query_one(
            "WITH RECURSIVE tree(oid) AS ( \
                 SELECT inhrelid FROM pg_inherits WHERE inhparent = $1 \
                 UNION ALL SELECT i.inhrelid FROM pg_inherits i \
                     JOIN tree t ON i.inhparent = t.oid) \
             SELECT CASE WHEN bool_and(c.reltuples >= 0) IS FALSE THEN -1 \
                         ELSE coalesce(sum(c.reltuples), 0) END::float8, \
                    (coalesce(max(pg_relation_size(c.oid)), 0) \
                        / current_setting('block_size')::int8)::int8 \
             FROM tree JOIN pg_class c ON c.oid = tree.oid WHERE c.relkind <> 'p'",
            &[&oid],
        )
        .await
        .map_err(|e| SnapshotError::sql("sizing the partitions of a table to snapshot", e))?;
    Ok((row.get(0), row.get(1)))
}
