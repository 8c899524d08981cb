//! Errors of the replication source, split by consequence.
//!
//! * [`Recovery::Reconnect`] ([`SourceError::recovery`]): the connection was lost, the server
//!   is restarting or busy, the slot is still held by a dying session. The engine reconnects
//!   with backoff and resumes from the confirmed position; nothing is lost.
//! * [`Recovery::Fatal`]: configuration, authentication, privileges, a missing or unusable slot or
//!   publication, a protocol violation. Retrying cannot help; the message says what to do.
//!
//! Server errors keep the server's own message as the `source` of the chain (see
//! [`ServerError`]); our message adds the consequence and the fix.

use std::fmt;
use std::io;
use std::time::Duration;

use tokio_postgres::error::SqlState;

use super::params::SslMode;
use crate::recovery::Recovery;

/// An `ErrorResponse` (or `NoticeResponse`) from the server, with the fields we use.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ServerError {
    /// Non-localized severity (`ERROR`, `FATAL`, `PANIC`, `WARNING`, `NOTICE`, ...).
    pub severity: String,
    /// The SQLSTATE code, e.g. `42704`.
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl ServerError {
    /// [`Recovery::Reconnect`] for connection exceptions, server shutdown or start-up, too many
    /// connections, an object (slot) still in use, serialization failures; else
    /// [`Recovery::Fatal`].
    pub fn recovery(&self) -> Recovery {
        let state = self.state();
        // Classes 08 (connection exception) and 57P (operator intervention: shutdown,
        // crash, cannot connect now) as a whole.
        let passes = self.code.starts_with("08")
            || self.code.starts_with("57P")
            || [
                SqlState::TOO_MANY_CONNECTIONS,
                SqlState::OBJECT_IN_USE,
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::QUERY_CANCELED,
            ]
            .contains(&state);
        if passes {
            Recovery::Reconnect
        } else {
            Recovery::Fatal
        }
    }

    /// The SQLSTATE, for matching against [`SqlState`]'s constants.
    pub fn state(&self) -> SqlState {
        SqlState::from_code(&self.code)
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server said: {} {}: {}",
            self.severity, self.code, self.message
        )?;
        if let Some(detail) = &self.detail {
            write!(f, " (detail: {detail})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServerError {}

impl From<&tokio_postgres::error::DbError> for ServerError {
    fn from(db: &tokio_postgres::error::DbError) -> Self {
        ServerError {
            severity: db
                .parsed_severity()
                .map_or_else(|| db.severity().to_owned(), |s| s.to_string()),
            code: db.code().code().to_owned(),
            message: db.message().to_owned(),
            detail: db.detail().map(str::to_owned),
            hint: db.hint().map(str::to_owned),
        }
    }
}

/// A replication data frame (the payload of a `CopyData` message) is malformed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("empty replication frame")]
    Empty,
    #[error("replication frame of kind {kind:?} is {len} bytes long, expected at least {need}")]
    Truncated { kind: char, len: usize, need: usize },
    #[error("unknown replication frame kind {kind:#04x}")]
    UnknownKind { kind: u8 },
}

/// Everything that can go wrong in the replication source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    // ---- configuration: permanent ----
    #[error("invalid source connection string: {reason}")]
    InvalidParams { reason: String },

    #[error(
        "cannot use the TLS root certificates from {path}: check sslrootcert in the source URL \
         (a PEM file with the CA that signed the server's certificate)"
    )]
    RootCert {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error(
        "no trusted root certificates found for sslmode={mode}: set sslrootcert=/path/to/root.crt \
         in the source URL"
    )]
    NoRootCerts { mode: SslMode },

    // ---- reaching the server: transient ----
    #[error("cannot reach {addr}: is the server running and is the address right?")]
    Unreachable {
        addr: String,
        #[source]
        source: io::Error,
    },

    #[error(
        "timed out after {timeout:?} connecting to {addr}: is the server running and reachable? \
         (raise connect_timeout in the source URL for a slow network)"
    )]
    ConnectTimeout { addr: String, timeout: Duration },

    #[error("connection to the source lost while {context}")]
    Io {
        context: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("the source closed the connection while {context}")]
    Closed { context: &'static str },

    // ---- TLS: permanent ----
    #[error(
        "the server at {addr} does not accept TLS, but sslmode={mode} requires it: enable ssl = on \
         on the server, or use sslmode=prefer or sslmode=disable"
    )]
    TlsRefused { addr: String, mode: SslMode },

    #[error("TLS handshake with {addr} failed (sslmode={mode}): {hint}")]
    Tls {
        addr: String,
        mode: SslMode,
        hint: &'static str,
        #[source]
        source: io::Error,
    },

    // ---- authentication: permanent ----
    #[error(
        "authentication failed for user {user}: check the user and password in --source / \
         WALAUDIT_SOURCE"
    )]
    AuthFailed {
        user: String,
        #[source]
        server: Box<ServerError>,
    },

    #[error(
        "the server refused user {user} for database {database}: check that pg_hba.conf has an \
         entry for this user, database and client address, and that the role can LOGIN"
    )]
    AuthRejected {
        user: String,
        database: String,
        #[source]
        server: Box<ServerError>,
    },

    #[error(
        "the server asked for a password for user {user} but none was given: put it in the source \
         URL (postgres://user:password@host/db) or set PGPASSWORD"
    )]
    PasswordMissing { user: String },

    #[error(
        "the server asked for authentication method {method}, which walaudit does not support: \
         use scram-sha-256, md5, password or trust for this user in pg_hba.conf"
    )]
    AuthUnsupported { method: String },

    #[error("the server's SCRAM proof did not verify: {reason}; is this the right server?")]
    ScramFailed { reason: String },

    #[error("database {database} does not exist: check the database name in the source URL")]
    DatabaseMissing {
        database: String,
        #[source]
        server: Box<ServerError>,
    },

    // ---- server state and privileges: permanent, with the fix ----
    #[error(
        "PostgreSQL {version} is too old: walaudit needs PostgreSQL 10 or newer (14 or newer for \
         streaming of large transactions)"
    )]
    ServerTooOld { version: String },

    #[error(
        "wal_level is {current}; logical replication needs wal_level=logical: run ALTER SYSTEM SET \
         wal_level = logical; and restart the server"
    )]
    WalLevel { current: String },

    #[error("the server is not ready to {command}{}", wal_level_fix(server))]
    NotReady {
        command: String,
        #[source]
        server: Box<ServerError>,
    },

    #[error(
        "the server has no free {what} ({used} of {max} in use): raise {setting} (then restart \
         the server) or drop unused replication slots"
    )]
    NoFree {
        what: &'static str,
        setting: &'static str,
        used: u32,
        max: u32,
    },

    #[error(
        "the server ran out of replication slots or WAL senders trying to {command}: raise \
         max_replication_slots / max_wal_senders (then restart the server) or drop unused slots"
    )]
    LimitReached {
        command: String,
        #[source]
        server: Box<ServerError>,
    },

    #[error("user {user} may not {command}: {hint}")]
    InsufficientPrivilege {
        user: String,
        command: String,
        hint: String,
        #[source]
        server: Option<Box<ServerError>>,
    },

    #[error(
        "role {role} has neither REPLICATION nor SUPERUSER: run ALTER ROLE {role} REPLICATION;"
    )]
    RoleCannotReplicate { role: String },

    #[error(
        "publication {publication} does not exist: create it with {create_sql} or set \
         source.create_publication = true"
    )]
    PublicationMissing {
        publication: String,
        create_sql: String,
    },

    #[error(
        "a publication named in publication_names does not exist: create it or fix \
         source.publication; the slot did not advance, so nothing is lost"
    )]
    PublicationGone {
        #[source]
        server: Box<ServerError>,
    },

    #[error(
        "{} published table(s) have no replica identity, so Postgres refuses UPDATE and DELETE \
         on them while they are published; run: {}",
        fixes.len(),
        fixes.join(" ")
    )]
    ReplicaIdentity { fixes: Vec<String> },

    // ---- slots: permanent unless noted ----
    #[error(
        "replication slot {slot} does not exist: create it with SELECT \
         pg_create_logical_replication_slot('{slot}', 'pgoutput') or set source.create_slot = true"
    )]
    SlotMissing { slot: String },

    #[error(
        "replication slot {slot} already exists: reuse it (source.create_slot = false) or drop it \
         with SELECT pg_drop_replication_slot('{slot}')"
    )]
    SlotExists { slot: String },

    /// Transient: a stale session usually lets go within `wal_sender_timeout`.
    #[error(
        "replication slot {slot} is in use by another connection: stop the other consumer; a \
         stale session ends within wal_sender_timeout, or run SELECT pg_terminate_backend(active_pid) \
         FROM pg_replication_slots WHERE slot_name = '{slot}'"
    )]
    SlotInUse {
        slot: String,
        #[source]
        server: Option<Box<ServerError>>,
    },

    #[error(
        "replication slot {slot} is {problem}: drop it with SELECT pg_drop_replication_slot('{slot}') \
         and let walaudit create it (source.create_slot = true), or choose another slot name"
    )]
    SlotUnusable { slot: String, problem: String },

    /// Permanent: the server removed WAL the slot still needed (`max_slot_wal_keep_size`), or
    /// invalidated the slot otherwise. Retrying cannot bring the WAL back.
    #[error(
        "replication slot {slot} was invalidated (wal_status = lost): the server removed WAL it \
         still needed, so changes after {} are missing from the lake; run SELECT \
         pg_drop_replication_slot('{slot}'), start walaudit again (it creates the slot) and \
         re-snapshot the tables; to prevent it, keep walaudit running, alert on \
         walaudit_slot_retained_wal_bytes and raise max_slot_wal_keep_size",
        confirmed.map_or_else(|| "the last confirmed position".to_owned(), |l| l.to_string())
    )]
    SlotLost {
        slot: String,
        /// The slot's last confirmed position, when known: nothing after it reached the lake.
        confirmed: Option<crate::Lsn>,
        #[source]
        server: Option<Box<ServerError>>,
    },

    // ---- everything else the server said ----
    #[error("the server refused to {command}")]
    Server {
        command: String,
        #[source]
        server: Box<ServerError>,
    },

    #[error("SQL on the source failed while {context}")]
    Sql {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },

    // ---- protocol: permanent ----
    #[error(
        "unexpected reply from the server while {context}: {detail}; is this PostgreSQL (a pooler \
         cannot carry a replication connection)?"
    )]
    Protocol {
        context: &'static str,
        detail: String,
    },

    #[error("malformed replication frame from the server")]
    Frame(#[from] FrameError),
}

fn wal_level_fix(server: &ServerError) -> &'static str {
    if server.message.contains("wal_level") {
        ": logical replication needs wal_level=logical: run ALTER SYSTEM SET wal_level = logical; \
         and restart the server"
    } else {
        " (see the server's message below)"
    }
}

impl SourceError {
    /// [`Recovery::Reconnect`] when a reconnect with backoff can succeed without anyone
    /// changing anything; else [`Recovery::Fatal`].
    pub fn recovery(&self) -> Recovery {
        match self {
            SourceError::Unreachable { .. }
            | SourceError::ConnectTimeout { .. }
            | SourceError::Io { .. }
            | SourceError::Closed { .. }
            | SourceError::SlotInUse { .. } => Recovery::Reconnect,
            SourceError::Server { server, .. } => server.recovery(),
            SourceError::Sql { source, .. } => match source.as_db_error() {
                Some(db) => ServerError::from(db).recovery(),
                // Not a server error: the connection broke, or a client-side refusal
                // (configuration, type mismatches).
                None if source.is_closed()
                    || std::error::Error::source(source).is_some_and(|s| s.is::<io::Error>()) =>
                {
                    Recovery::Reconnect
                }
                None => Recovery::Fatal,
            },
            _ => Recovery::Fatal,
        }
    }

    pub(crate) fn protocol(context: &'static str, detail: impl Into<String>) -> Self {
        SourceError::Protocol {
            context,
            detail: detail.into(),
        }
    }
}

/// What was being done when the server answered with an error; picks the precise variant.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ErrorContext<'a> {
    /// What was attempted, as a verb phrase: `run START_REPLICATION`, `open a replication
    /// connection`, `stream changes`.
    pub command: &'a str,
    /// A replication connection: missing privileges mean a missing REPLICATION attribute.
    pub replication: bool,
    pub user: &'a str,
    pub database: &'a str,
    /// The slot the command works on, if any.
    pub slot: Option<&'a str>,
    /// True while streaming: a 42704 then means a missing publication.
    pub streaming: bool,
}

/// Maps a server `ErrorResponse` to the precise [`SourceError`] for its SQLSTATE.
pub(crate) fn map_server_error(server: ServerError, ctx: &ErrorContext<'_>) -> SourceError {
    let user = ctx.user.to_owned();
    let command = ctx.command.to_owned();
    let state = server.state();
    let invalidated = slot_invalidated(&server);
    let server = Box::new(server);
    let slot = ctx.slot.map(str::to_owned);
    if state == SqlState::INVALID_PASSWORD {
        SourceError::AuthFailed { user, server }
    } else if state == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
        SourceError::AuthRejected {
            user,
            database: ctx.database.to_owned(),
            server,
        }
    } else if state == SqlState::INVALID_CATALOG_NAME {
        SourceError::DatabaseMissing {
            database: ctx.database.to_owned(),
            server,
        }
    } else if state == SqlState::UNDEFINED_OBJECT && ctx.streaming {
        SourceError::PublicationGone { server }
    } else if let (true, Some(slot)) = (state == SqlState::UNDEFINED_OBJECT, &slot) {
        SourceError::SlotMissing { slot: slot.clone() }
    } else if let (true, Some(slot)) = (state == SqlState::DUPLICATE_OBJECT, &slot) {
        SourceError::SlotExists { slot: slot.clone() }
    } else if let (true, Some(slot)) = (invalidated, &slot) {
        SourceError::SlotLost {
            slot: slot.clone(),
            confirmed: None,
            server: Some(server),
        }
    } else if let (true, Some(slot)) = (state == SqlState::OBJECT_IN_USE, &slot) {
        SourceError::SlotInUse {
            slot: slot.clone(),
            server: Some(server),
        }
    } else if state == SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE {
        SourceError::NotReady { command, server }
    } else if state == SqlState::CONFIGURATION_LIMIT_EXCEEDED {
        SourceError::LimitReached { command, server }
    } else if state == SqlState::INSUFFICIENT_PRIVILEGE {
        SourceError::InsufficientPrivilege {
            hint: if ctx.replication {
                format!(
                    "run ALTER ROLE {} REPLICATION; (or use a role that has it)",
                    ctx.user
                )
            } else {
                format!("grant {} the privilege the server names below", ctx.user)
            },
            user,
            command,
            server: Some(server),
        }
    } else {
        SourceError::Server { command, server }
    }
}

/// The server refuses a slot it invalidated: "can no longer get changes from replication slot"
/// (55000, detail "This slot has been invalidated ..."), or the WAL it needs is gone ("requested
/// WAL segment ... has already been removed", 58P01).
fn slot_invalidated(server: &ServerError) -> bool {
    let detail = server.detail.as_deref().unwrap_or_default();
    let state = server.state();
    (state == SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE
        && (server
            .message
            .contains("can no longer get changes from replication slot")
            || detail.contains("has been invalidated")))
        || (state == SqlState::UNDEFINED_FILE
            && server.message.contains("has already been removed"))
}

/// Maps a `tokio_postgres` error from an ordinary SQL connection.
pub(crate) fn map_sql_error(
    err: tokio_postgres::Error,
    context: &'static str,
    ctx: &ErrorContext<'_>,
) -> SourceError {
    match err.as_db_error() {
        Some(db) => {
            match map_server_error(ServerError::from(db), ctx) {
                // Keep tokio-postgres' error (and its chain) for the codes we have no story for.
                SourceError::Server { .. } => SourceError::Sql {
                    context,
                    source: err,
                },
                precise => precise,
            }
        }
        // tokio-postgres has no public kind for this one; its message is stable.
        None if std::error::Error::source(&err)
            .is_some_and(|s| s.to_string() == "password missing") =>
        {
            SourceError::PasswordMissing {
                user: ctx.user.to_owned(),
            }
        }
        None => SourceError::Sql {
            context,
            source: err,
        },
    }
}

#[cfg(test)]
mod tests;
