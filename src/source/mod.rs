//! The replication source: connection, protocol frames, slot and publication management.
//!
//! ```text
//!  ConnParams (URL / key=value, sslmode) ──► transport: TCP | Unix | TLS (rustls)
//!      │                                        │
//!      ├─ connect_sql() ─► tokio_postgres::Client ─► setup: check_server, check_role_can_replicate,
//!      │                                            ensure_publication, check_replica_identity,
//!      │                                            slot_state / ensure_slot, load_type_catalog
//!      └─ ReplicationClient::connect() (replication=database; trust | password | md5 | SCRAM)
//!             │  identify_system, create_slot, drop_slot, simple_query
//!             ▼  start_replication(slot, lsn, pgoutput options)
//!         ReplicationStream ──next_frame()──► Frame::XLogData { data: Bytes } ──► decode
//!             ▲                               Frame::Keepalive { reply_requested }
//!             └── send_status(write, flush, apply) ◄── durable LSN from the sink
//! ```
//!
//! `tokio-postgres` cannot open replication connections, so [`ReplicationClient`] is a thin
//! client over `postgres-protocol`'s encoders and SCRAM plus our reader ([`wire`]); ordinary
//! SQL goes through `tokio-postgres` over the same transport.
//!
//! # Invariants
//! * Every session runs with the settings in [`params::SESSION_OPTIONS`] (ISO dates, UTC,
//!   hex bytea, round-trip floats, postgres intervals): the value parsers depend on them.
//! * Nothing here confirms a position on its own: [`ReplicationStream::send_status`] reports
//!   exactly what the caller passes.
//! * Frame payloads are zero-copy; reading is cancel-safe; absurd lengths (> 1 GiB) are errors.
//! * Errors are split by consequence ([`SourceError::recovery`]); permanent ones carry the
//!   fix. Passwords never reach `Debug`, `Display` or logs.

pub mod conn;
mod conninfo;
pub mod error;
pub mod params;
pub mod quote;
pub mod setup;
pub mod stream;
mod tls;
pub mod transport;
pub mod wire;

pub use conn::{CreatedSlot, ReplicationClient, SnapshotAction, SystemIdentity};
pub use error::{FrameError, ServerError, SourceError};
pub use params::{ConnParams, Host, Password, SslMode};
pub use quote::{publication_names, quote_ident, quote_literal};
pub use setup::{
    EnsuredSlot, PublicationTable, ServerInfo, SlotState, check_replica_identity,
    check_role_can_replicate, check_server, drop_slot, ensure_publication, ensure_slot,
    ensure_slot_with_snapshot, load_type_catalog, publication_tables, slot_state,
};
pub use stream::{Frame, ReplicationStream, encode_frame, parse_frame};
