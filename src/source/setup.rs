//! Preflight checks and slot/publication management over an ordinary SQL connection.
//!
//! ```text
//!  check_server ─► check_role_can_replicate ─► ensure_publication ─► check_replica_identity
//!               ─► ensure_slot (creates through the ReplicationClient when allowed)
//!               ─► load_type_catalog (for the decoder)
//! ```
//!
//! Every refusal names the statement that fixes it. All queries here read catalogs only,
//! except `CREATE PUBLICATION` and slot creation/drop when the operator allowed them.

use std::collections::HashSet;

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::conn::{CreatedSlot, ReplicationClient, SnapshotAction};
use super::error::SourceError;
use super::quote::{quote_ident, quote_qualified};
use crate::Lsn;
use crate::decode::{CatalogType, TypeCatalog};

/// Oldest server with pgoutput.
const MIN_VERSION: u32 = 100_000;

/// What [`check_server`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// `server_version_num`, e.g. 150008.
    pub version_num: u32,
    pub version: String,
    pub wal_level: String,
    pub max_replication_slots: u32,
    pub replication_slots_used: u32,
    pub max_wal_senders: u32,
    pub wal_senders_used: u32,
}

impl ServerInfo {
    pub fn free_replication_slots(&self) -> u32 {
        self.max_replication_slots
            .saturating_sub(self.replication_slots_used)
    }

    /// pgoutput protocol v2 (streaming of in-progress transactions) and `messages`: 14+.
    pub fn supports_streaming(&self) -> bool {
        self.version_num >= 140_000
    }
}

fn sql(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> SourceError {
    move |source| SourceError::Sql { context, source }
}

/// Checks the version, `wal_level = logical` and that a WAL sender is free.
pub async fn check_server(client: &Client) -> Result<ServerInfo, SourceError> {
    let info = server_info(client).await?;
    check_server_info(info)
}

/// The server's version and replication settings, unchecked.
pub async fn server_info(client: &Client) -> Result<ServerInfo, SourceError> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int4, \
                    current_setting('server_version'), \
                    current_setting('wal_level'), \
                    current_setting('max_replication_slots')::int4, \
                    (SELECT count(*) FROM pg_replication_slots)::int4, \
                    current_setting('max_wal_senders')::int4, \
                    (SELECT count(*) FROM pg_stat_replication)::int4",
            &[],
        )
        .await
        .map_err(sql("checking the server settings"))?;
    let count = |i: usize| row.get::<_, i32>(i).max(0) as u32;
    let info = ServerInfo {
        version_num: count(0),
        version: row.get(1),
        wal_level: row.get(2),
        max_replication_slots: count(3),
        replication_slots_used: count(4),
        max_wal_senders: count(5),
        wal_senders_used: count(6),
    };
    Ok(info)
}

/// [`check_server`]'s verdict on settings already read.
pub fn check_server_info(info: ServerInfo) -> Result<ServerInfo, SourceError> {
    if info.version_num < MIN_VERSION {
        return Err(SourceError::ServerTooOld {
            version: info.version,
        });
    }
    if info.wal_level != "logical" {
        return Err(SourceError::WalLevel {
            current: info.wal_level,
        });
    }
    if info.wal_senders_used >= info.max_wal_senders {
        return Err(SourceError::NoFree {
            what: "WAL sender",
            setting: "max_wal_senders",
            used: info.wal_senders_used,
            max: info.max_wal_senders,
        });
    }
    Ok(info)
}

/// The connecting role must have REPLICATION (or be a superuser).
pub async fn check_role_can_replicate(client: &Client) -> Result<(), SourceError> {
    let row = client
        .query_one(
            "SELECT rolname::text, rolreplication OR rolsuper FROM pg_roles \
             WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(sql("checking the role's privileges"))?;
    if row.get::<_, bool>(1) {
        Ok(())
    } else {
        Err(SourceError::RoleCannotReplicate {
            role: quote_ident(row.get(0)),
        })
    }
}

/// `CREATE PUBLICATION name FOR ALL TABLES` or `... FOR TABLE a, b` for `tables`
/// (`schema.table` names).
pub fn create_publication_sql(name: &str, tables: Option<&[String]>) -> String {
    match tables {
        Some(tables) if !tables.is_empty() => {
            let list: Vec<String> = tables.iter().map(|t| quote_qualified(t)).collect();
            format!(
                "CREATE PUBLICATION {} FOR TABLE {}",
                quote_ident(name),
                list.join(", ")
            )
        }
        _ => format!("CREATE PUBLICATION {} FOR ALL TABLES", quote_ident(name)),
    }
}

/// What capture and the historical load both need of a source before they start: a server
/// with `wal_level = logical` and free slots, a role allowed to replicate, the publication
/// (created when `create_publication` and missing), and a replica identity on every
/// published table. Each failure names its fix. `publication_tables` are the tables of a
/// publication walaudit creates (empty: all tables).
pub async fn prepare_source(
    client: &Client,
    publication: &str,
    create_publication: bool,
    publication_tables: &[String],
) -> Result<ServerInfo, SourceError> {
    let server = check_server(client).await?;
    check_role_can_replicate(client).await?;
    let tables = Some(publication_tables).filter(|t| !t.is_empty());
    ensure_publication(client, publication, create_publication, tables).await?;
    let published = self::publication_tables(client, publication).await?;
    check_replica_identity(&published)?;
    Ok(server)
}

/// Makes sure the publication exists; creates it when `create` is set. Returns whether it was
/// created. An existing publication is used as it is (tables it lacks are logged).
pub async fn ensure_publication(
    client: &Client,
    name: &str,
    create: bool,
    tables: Option<&[String]>,
) -> Result<bool, SourceError> {
    let exists = client
        .query_opt(
            "SELECT puballtables FROM pg_publication WHERE pubname = $1",
            &[&name],
        )
        .await
        .map_err(sql("looking up the publication"))?;
    let create_sql = create_publication_sql(name, tables);
    if let Some(row) = exists {
        if let (false, Some(wanted)) = (row.get::<_, bool>(0), tables) {
            let published: HashSet<String> = publication_tables(client, name)
                .await?
                .into_iter()
                .map(|t| format!("{}.{}", t.schema, t.table))
                .collect();
            for table in wanted
                .iter()
                .filter(|t| t.contains('.') && !published.contains(*t))
            {
                tracing::warn!(publication = name, table = %table,
                    "table is configured but not in the publication; its changes are not captured");
            }
        }
        return Ok(false);
    }
    if !create {
        return Err(SourceError::PublicationMissing {
            publication: name.to_owned(),
            create_sql: format!("{create_sql};"),
        });
    }
    match client.batch_execute(&create_sql).await {
        Ok(()) => {
            tracing::info!(publication = name, "created publication");
            Ok(true)
        }
        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
            let user = match client.query_one("SELECT current_user::text", &[]).await {
                Ok(row) => row.get(0),
                Err(_) => "the source user".to_owned(),
            };
            Err(SourceError::InsufficientPrivilege {
                user,
                command: "run CREATE PUBLICATION".to_owned(),
                hint: format!(
                    "FOR ALL TABLES needs a superuser and FOR TABLE needs ownership of the tables: \
                     ask an administrator to run {create_sql}; and set \
                     source.create_publication = false"
                ),
                server: e.as_db_error().map(|db| Box::new(db.into())),
            })
        }
        Err(e) => Err(SourceError::Sql {
            context: "creating the publication",
            source: e,
        }),
    }
}

/// One table of a publication, with what decides whether updates and deletes can be published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicationTable {
    pub schema: String,
    pub table: String,
    /// `relreplident`: d default (primary key), n nothing, f full, i index.
    pub replica_identity: char,
    pub has_primary_key: bool,
    /// The publication publishes UPDATE or DELETE (else no replica identity is needed).
    pub publishes_update_delete: bool,
}

/// The tables a publication publishes, ordered by schema and name.
pub async fn publication_tables(
    client: &Client,
    publication: &str,
) -> Result<Vec<PublicationTable>, SourceError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, c.relreplident::text, \
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary), \
                    p.pubupdate OR p.pubdelete \
             FROM pg_publication_tables pt \
             JOIN pg_publication p ON p.pubname = pt.pubname \
             JOIN pg_namespace n ON n.nspname = pt.schemaname \
             JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename \
             WHERE pt.pubname = $1 ORDER BY 1, 2",
            &[&publication],
        )
        .await
        .map_err(sql("listing the publication's tables"))?;
    Ok(rows
        .iter()
        .map(|r| PublicationTable {
            schema: r.get(0),
            table: r.get(1),
            replica_identity: r.get::<_, String>(2).chars().next().unwrap_or('d'),
            has_primary_key: r.get(3),
            publishes_update_delete: r.get(4),
        })
        .collect())
}

/// The fix for each table that has no usable replica identity.
pub fn replica_identity_fixes(tables: &[PublicationTable]) -> Vec<String> {
    tables
        .iter()
        .filter(|t| t.publishes_update_delete)
        .filter_map(|t| {
            let why = match (t.replica_identity, t.has_primary_key) {
                ('d', false) => "no primary key and REPLICA IDENTITY DEFAULT",
                ('n', _) => "REPLICA IDENTITY NOTHING",
                _ => return None,
            };
            Some(format!(
                "ALTER TABLE {}.{} REPLICA IDENTITY FULL; (it has {why}; or add a primary key)",
                quote_ident(&t.schema),
                quote_ident(&t.table)
            ))
        })
        .collect()
}

/// Refuses to start when a published table cannot publish updates/deletes: Postgres rejects
/// UPDATE and DELETE on such a table on the source while it is published. Tables of
/// publications that publish neither updates nor deletes are fine.
pub fn check_replica_identity(tables: &[PublicationTable]) -> Result<(), SourceError> {
    let fixes = replica_identity_fixes(tables);
    if fixes.is_empty() {
        Ok(())
    } else {
        Err(SourceError::ReplicaIdentity { fixes })
    }
}

/// A row of `pg_replication_slots`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotState {
    pub name: String,
    pub plugin: Option<String>,
    /// `logical` or `physical`.
    pub slot_type: String,
    pub database: Option<String>,
    pub temporary: bool,
    pub active: bool,
    pub active_pid: Option<i32>,
    /// `reserved`, `extended`, `unreserved`, `lost` (13+; `None` before).
    pub wal_status: Option<String>,
    /// Where streaming resumes; `0/0` if the server reports none.
    pub confirmed_flush: Lsn,
    /// The oldest WAL the slot retains.
    pub restart_lsn: Option<Lsn>,
}

/// The slot, if it exists.
pub async fn slot_state(client: &Client, slot: &str) -> Result<Option<SlotState>, SourceError> {
    let row = client
        .query_opt(
            "SELECT plugin::text, slot_type, database::text, temporary, active, active_pid, \
                    to_jsonb(s) ->> 'wal_status', confirmed_flush_lsn::text, restart_lsn::text \
             FROM pg_replication_slots s WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(sql("looking up the replication slot"))?;
    Ok(row.map(|r| {
        let lsn = |i: usize| {
            r.get::<_, Option<String>>(i)
                .and_then(|v| v.parse::<Lsn>().ok())
        };
        SlotState {
            name: slot.to_owned(),
            plugin: r.get(0),
            slot_type: r.get(1),
            database: r.get(2),
            temporary: r.get(3),
            active: r.get(4),
            active_pid: r.get(5),
            wal_status: r.get(6),
            confirmed_flush: lsn(7).unwrap_or(Lsn::ZERO),
            restart_lsn: lsn(8),
        }
    }))
}

/// The slot walaudit streams from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnsuredSlot {
    Existing(SlotState),
    Created(CreatedSlot),
}

/// Finds the slot and checks it is a usable pgoutput slot of this database, or creates it
/// (permanent, no exported snapshot) when `create` is set.
pub async fn ensure_slot(
    client: &Client,
    repl: &mut ReplicationClient,
    slot: &str,
    create: bool,
) -> Result<EnsuredSlot, SourceError> {
    ensure_slot_with_snapshot(client, repl, slot, create, SnapshotAction::NoExport).await
}

/// [`ensure_slot`], creating the slot with the given snapshot action (an exported snapshot
/// lets the initial copy see exactly the data before the slot's consistent point; keep `repl`
/// idle while it is in use).
pub async fn ensure_slot_with_snapshot(
    client: &Client,
    repl: &mut ReplicationClient,
    slot: &str,
    create: bool,
    snapshot: SnapshotAction,
) -> Result<EnsuredSlot, SourceError> {
    let Some(state) = slot_state(client, slot).await? else {
        if !create {
            return Err(SourceError::SlotMissing {
                slot: slot.to_owned(),
            });
        }
        let created = repl.create_slot(slot, false, snapshot).await?;
        tracing::info!(slot, consistent_point = %created.consistent_point, "created replication slot");
        return Ok(EnsuredSlot::Created(created));
    };
    let database: String = client
        .query_one("SELECT current_database()::text", &[])
        .await
        .map_err(sql("looking up the database name"))?
        .get(0);
    check_slot(&state, &database)?;
    Ok(EnsuredSlot::Existing(state))
}

/// Why an existing slot cannot serve walaudit on `database`, if it cannot.
pub fn check_slot(state: &SlotState, database: &str) -> Result<(), SourceError> {
    let unusable = |problem: String| SourceError::SlotUnusable {
        slot: state.name.clone(),
        problem,
    };
    if state.slot_type != "logical" {
        return Err(unusable(format!(
            "a {} slot, not a logical one",
            state.slot_type
        )));
    }
    let plugin = state.plugin.as_deref().unwrap_or("none");
    if plugin != "pgoutput" {
        return Err(unusable(format!(
            "for output plugin {plugin}, but walaudit needs pgoutput"
        )));
    }
    let slot_db = state.database.as_deref().unwrap_or("none");
    if slot_db != database {
        return Err(unusable(format!("for database {slot_db}, not {database}")));
    }
    if state.wal_status.as_deref() == Some("lost") {
        return Err(SourceError::SlotLost {
            slot: state.name.clone(),
            confirmed: Some(state.confirmed_flush).filter(|l| !l.is_zero()),
            server: None,
        });
    }
    if state.wal_status.as_deref() == Some("unreserved") {
        tracing::warn!(slot = %state.name,
            "slot is about to lose WAL it needs (wal_status = unreserved); catch up quickly");
    }
    Ok(())
}

/// Drops the slot if it exists; returns whether it did. An active slot is a transient error.
pub async fn drop_slot(client: &Client, slot: &str) -> Result<bool, SourceError> {
    match client
        .query(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE slot_name = $1",
            &[&slot],
        )
        .await
    {
        Ok(rows) => Ok(!rows.is_empty()),
        Err(e) if e.code() == Some(&SqlState::OBJECT_IN_USE) => Err(SourceError::SlotInUse {
            slot: slot.to_owned(),
            server: e.as_db_error().map(|db| Box::new(db.into())),
        }),
        Err(e) => Err(SourceError::Sql {
            context: "dropping the replication slot",
            source: e,
        }),
    }
}

/// Loads `pg_type` rows for `oids` and, transitively, the base types of domains and the
/// element types of arrays.
pub async fn load_type_catalog(client: &Client, oids: &[u32]) -> Result<TypeCatalog, SourceError> {
    let mut catalog = TypeCatalog::new();
    let mut wanted: Vec<u32> = oids.to_vec();
    // Domains over arrays of domains are rare; a few rounds reach any real chain.
    for _ in 0..16 {
        wanted.retain(|oid| *oid != 0 && !catalog.contains_key(oid));
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            break;
        }
        let rows = client
            .query(
                "SELECT oid, typtype::text, typbasetype, \
                        CASE WHEN typcategory = 'A' THEN typelem ELSE 0::oid END, typtypmod \
                 FROM pg_type WHERE oid = ANY($1)",
                &[&wanted],
            )
            .await
            .map_err(sql("loading type definitions"))?;
        wanted.clear();
        for r in rows {
            let ty = CatalogType {
                oid: r.get(0),
                typtype: r.get::<_, String>(1).bytes().next().unwrap_or(b'b'),
                base_type: r.get(2),
                elem_type: r.get(3),
                base_typmod: r.get(4),
            };
            wanted.extend([ty.base_type, ty.elem_type]);
            catalog.insert(ty.oid, ty);
        }
    }
    Ok(catalog)
}

#[cfg(test)]
mod tests;
