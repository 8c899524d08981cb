//! Parquet settings that let key lookups skip row groups: a split-block bloom filter on each key
//! column of a change table, in every file the writer, the historical load and compaction write.
//!
//! ```text
//!  walaudit.keyColumns ──► key_columns ──► writer_properties ──► LakeTable::write (capture)
//!                                                            ├─► snapshot chunks
//!                                                            └─► maintenance::optimize
//!  WHERE id = 42 ──► DataFusion's Parquet scan: file min/max (Delta stats), then row-group
//!                    min/max, then the bloom filter of `id` in each remaining row group
//! ```
//!
//! File min/max statistics already prune serial keys of inserts; they do not help for updates
//! and deletes of old rows (a file of a minute's changes spans the whole key range) nor for
//! random keys (UUID, text). A bloom filter answers "not in this row group" for those.
//!
//! # Invariants
//! * Only columns named in `walaudit.keyColumns` of a table with a real key get a filter: a
//!   table without a key or with `REPLICA IDENTITY FULL` has every column as its "key", and
//!   filters on all of them would cost more than lookups there (by whole-row value) gain.
//! * The filters never change what a query returns, only what it reads: a row group whose filter
//!   says "maybe" is read and filtered as before.

use std::collections::HashMap;

use deltalake::DeltaTable;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::parquet::schema::types::ColumnPath;

use super::catalog::{PROP_KEY_COLUMNS, PROP_REPLICA_IDENTITY};

/// False-positive probability of the key filters: ~9.6 bits per distinct key, about 1.2 MiB per
/// key column for a full row group of 1M distinct keys (the writer folds the filter down to the
/// keys a row group really holds).
pub const BLOOM_FPP: f64 = 0.01;

/// Metadata columns with few distinct values, which keep their dictionaries when the source
/// columns do not (historical loads).
const LOW_CARDINALITY: [&str; 3] = ["_op", "_actor", "_context"];

/// The key columns that get a bloom filter, from a change table's properties (empty for
/// engine tables, tables without a key and `REPLICA IDENTITY FULL`).
pub fn key_columns(configuration: &HashMap<String, String>) -> Vec<String> {
    if configuration.get(PROP_REPLICA_IDENTITY).map(String::as_str) == Some("full") {
        return Vec::new();
    }
    configuration
        .get(PROP_KEY_COLUMNS)
        .and_then(|json| serde_json::from_str::<Vec<String>>(json).ok())
        .unwrap_or_default()
}

/// [`key_columns`] of an open table (empty when its metadata cannot be read).
pub fn table_key_columns(table: &DeltaTable) -> Vec<String> {
    table
        .snapshot()
        .map(|s| key_columns(s.metadata().configuration()))
        .unwrap_or_default()
}

/// Snappy (delta-rs' default) with a bloom filter on each of `keys`. With
/// `source_dictionaries = false` only the low-cardinality metadata columns keep dictionary
/// encoding: the historical load's rows are mostly distinct values, and interning them costs
/// more than it saves.
pub fn writer_properties(keys: &[String], source_dictionaries: bool) -> WriterProperties {
    properties(keys, source_dictionaries, Compression::SNAPPY)
}

/// What compaction writes: delta-rs' optimize default (zstd level 4) with the key filters.
pub fn compaction_properties(keys: &[String]) -> WriterProperties {
    let zstd = ZstdLevel::try_new(4).expect("4 is a valid zstd level");
    properties(keys, true, Compression::ZSTD(zstd))
}

fn properties(
    keys: &[String],
    source_dictionaries: bool,
    compression: Compression,
) -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_created_by(concat!("walaudit ", env!("CARGO_PKG_VERSION")).to_owned())
        .set_compression(compression);
    if !source_dictionaries {
        builder = builder.set_dictionary_enabled(false);
        for column in LOW_CARDINALITY {
            builder = builder.set_column_dictionary_enabled(ColumnPath::from(column), true);
        }
    }
    for key in keys {
        let path = ColumnPath::from(key.as_str());
        builder = builder
            .set_column_bloom_filter_enabled(path.clone(), true)
            .set_column_bloom_filter_fpp(path, BLOOM_FPP);
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn key_columns_of_keyed_full_and_engine_tables() {
        let keyed = config(&[
            (PROP_KEY_COLUMNS, r#"["tenant","id"]"#),
            (PROP_REPLICA_IDENTITY, "default"),
        ]);
        assert_eq!(key_columns(&keyed), ["tenant", "id"]);
        let full = config(&[
            (PROP_KEY_COLUMNS, r#"["a","b","c"]"#),
            (PROP_REPLICA_IDENTITY, "full"),
        ]);
        assert!(key_columns(&full).is_empty());
        assert!(key_columns(&config(&[])).is_empty());
        let broken = config(&[(PROP_KEY_COLUMNS, "not json")]);
        assert!(key_columns(&broken).is_empty());
    }

    #[test]
    fn filters_only_on_key_columns() {
        let props = writer_properties(&["id".to_owned()], false);
        let id = ColumnPath::from("id");
        let other = ColumnPath::from("amount");
        let filter = props.bloom_filter_properties(&id).expect("a filter on id");
        assert_eq!(filter.fpp(), BLOOM_FPP);
        assert!(props.bloom_filter_properties(&other).is_none());
        assert!(!props.dictionary_enabled(&other));
        assert!(props.dictionary_enabled(&ColumnPath::from("_actor")));
        assert_eq!(props.compression(&other), Compression::SNAPPY);
        let compaction = compaction_properties(&["id".to_owned()]);
        assert!(compaction.bloom_filter_properties(&id).is_some());
        assert!(matches!(
            compaction.compression(&other),
            Compression::ZSTD(_)
        ));
        let capture = writer_properties(&[], true);
        assert!(capture.dictionary_enabled(&other));
        assert!(capture.bloom_filter_properties(&id).is_none());
    }
}
