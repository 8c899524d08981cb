//! The relation cache: the latest shape of every table the stream has described.

use std::collections::HashMap;
use std::sync::Arc;

use crate::capture::{CaptureError, ColumnInfo, TableInfo};
use crate::decode::pgtype::{is_builtin, map_type};
use crate::decode::{Relation, TypeCatalog};

/// Tables by OID, with column types resolved through the type catalog.
#[derive(Debug, Default)]
pub struct RelationCache {
    tables: HashMap<u32, Arc<TableInfo>>,
    catalog: TypeCatalog,
}

impl RelationCache {
    /// Non-built-in type OIDs of `rel` that the catalog does not know yet: load them (see
    /// `source::setup::load_type_catalog`) and [`add_types`](Self::add_types) before
    /// [`update`](Self::update), or they are kept as text.
    pub fn missing_types(&self, rel: &Relation) -> Vec<u32> {
        rel.columns
            .iter()
            .map(|c| c.type_oid)
            .filter(|oid| !is_builtin(*oid) && !self.catalog.contains_key(oid))
            .collect()
    }

    pub fn add_types(&mut self, catalog: TypeCatalog) {
        self.catalog.extend(catalog);
    }

    /// Take the table's new shape. Changes already captured keep the shape they were read with.
    pub fn update(&mut self, rel: &Relation) -> Arc<TableInfo> {
        let columns = rel
            .columns
            .iter()
            .map(|c| ColumnInfo {
                name: c.name.clone(),
                type_oid: c.type_oid,
                type_modifier: c.type_modifier,
                is_key: c.is_key,
                pg_type: map_type(c.type_oid, c.type_modifier, &self.catalog),
            })
            .collect();
        let table = Arc::new(TableInfo {
            oid: rel.oid,
            schema: rel.namespace.clone(),
            name: rel.name.clone(),
            replica_identity: rel.replica_identity,
            columns,
        });
        self.tables.insert(rel.oid, Arc::clone(&table));
        table
    }

    pub fn get(&self, oid: u32) -> Result<&Arc<TableInfo>, CaptureError> {
        self.tables
            .get(&oid)
            .ok_or(CaptureError::UnknownRelation { oid })
    }

    /// Record a table shape without a Relation message (spill files, tests).
    pub fn insert(&mut self, table: Arc<TableInfo>) {
        self.tables.insert(table.oid, table);
    }
}
