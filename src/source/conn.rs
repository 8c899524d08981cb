//! The replication connection: startup, authentication and the replication commands.
//!
//! ```text
//!  ConnParams ─► transport::connect ─► StartupMessage (replication=database, session options)
//!             ─► auth: trust | password | md5 | SCRAM-SHA-256 ─► ParameterStatus… ReadyForQuery
//!  ReplicationClient: IDENTIFY_SYSTEM, CREATE/DROP_REPLICATION_SLOT, simple queries
//!             ─► start_replication(self) ─► CopyBoth ─► ReplicationStream
//! ```
//!
//! `tokio-postgres` cannot open this kind of connection, so this is a thin client over
//! `postgres-protocol`'s frontend encoders and SCRAM, and our own backend reader
//! ([`super::wire`]). Methods here are not cancel-safe: if one is cancelled, drop the client.

use std::collections::HashMap;

use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;

use super::error::{ErrorContext, ServerError, SourceError, map_server_error};
use super::params::{ConnParams, SESSION_OPTIONS};
use super::quote::{quote_ident, quote_literal};
use super::stream::ReplicationStream;
use super::transport::{self, Socket};
use super::wire::{Authentication, BackendMessage, Wire};
use crate::Lsn;

const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

/// The answer to `IDENTIFY_SYSTEM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemIdentity {
    /// The cluster's unique system identifier (a decimal u64, kept as text).
    pub system_id: String,
    pub timeline: u32,
    /// The current WAL flush position.
    pub xlogpos: Lsn,
    /// The database of this connection (`None` on physical connections).
    pub dbname: Option<String>,
}

/// What `CREATE_REPLICATION_SLOT` does with the snapshot at the slot's consistent point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotAction {
    /// Export it for other sessions (`SET TRANSACTION SNAPSHOT 'name'`); it stays valid until
    /// this client runs another command or disconnects.
    Export,
    NoExport,
    /// Use it in this connection's current transaction (after `BEGIN ISOLATION LEVEL
    /// REPEATABLE READ` through [`ReplicationClient::simple_query`]).
    Use,
}

/// The answer to `CREATE_REPLICATION_SLOT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedSlot {
    pub name: String,
    /// Changes committed after this position are streamed; the snapshot shows everything before.
    pub consistent_point: Lsn,
    pub snapshot_name: Option<String>,
    pub output_plugin: Option<String>,
}

/// A logged-in replication connection (`replication=database`).
#[derive(Debug)]
pub struct ReplicationClient {
    wire: Wire<Socket>,
    user: String,
    database: String,
    server_params: HashMap<String, String>,
    backend_pid: Option<i32>,
}

impl ReplicationClient {
    /// Connects, negotiates TLS per `sslmode`, logs in, and waits for the server to be ready.
    /// The whole sequence is bounded by `connect_timeout`.
    pub async fn connect(params: &ConnParams) -> Result<Self, SourceError> {
        match params.connect_timeout {
            Some(timeout) => tokio::time::timeout(timeout, Self::connect_inner(params))
                .await
                .map_err(|_| SourceError::ConnectTimeout {
                    addr: params.address(),
                    timeout,
                })?,
            None => Self::connect_inner(params).await,
        }
    }

    async fn connect_inner(params: &ConnParams) -> Result<Self, SourceError> {
        let socket = transport::connect(params).await?;
        let mut wire = Wire::new(socket);
        let startup = [
            ("user", params.user.as_str()),
            ("database", params.dbname.as_str()),
            ("replication", "database"),
            ("client_encoding", "UTF8"),
            ("application_name", params.application_name.as_str()),
            ("options", SESSION_OPTIONS),
        ];
        frontend::startup_message(startup.iter().copied(), wire.wbuf()).map_err(|_| {
            SourceError::InvalidParams {
                reason: "the user, database or application_name contains a NUL byte".into(),
            }
        })?;
        let mut client = ReplicationClient {
            wire,
            user: params.user.clone(),
            database: params.dbname.clone(),
            server_params: HashMap::new(),
            backend_pid: None,
        };
        client.flush("starting up").await?;
        client.authenticate(params).await?;
        loop {
            match client.read("starting up").await? {
                BackendMessage::ReadyForQuery { .. } => break,
                BackendMessage::BackendKeyData { process_id, .. } => {
                    client.backend_pid = Some(process_id);
                }
                other => client.unexpected(other, "starting up")?,
            }
        }
        tracing::debug!(address = %params.address(), tls = client.wire.get_ref().is_tls(),
            server_version = client.server_version_num(), "replication connection ready");
        Ok(client)
    }

    async fn authenticate(&mut self, params: &ConnParams) -> Result<(), SourceError> {
        const CTX: &str = "authenticating";
        let password = || {
            params
                .password
                .as_ref()
                .map(|p| p.expose().as_bytes())
                .ok_or_else(|| SourceError::PasswordMissing {
                    user: params.user.clone(),
                })
        };
        loop {
            let BackendMessage::Authentication(auth) = self.read(CTX).await? else {
                // ErrorResponse is handled by `read`; anything else is a protocol error.
                return Err(SourceError::protocol(
                    CTX,
                    "expected an authentication request",
                ));
            };
            match auth {
                Authentication::Ok => return Ok(()),
                Authentication::CleartextPassword => {
                    frontend::password_message(password()?, self.wire.wbuf())
                        .map_err(|_| nul_in_password())?;
                }
                Authentication::Md5Password { salt } => {
                    let hash = md5_hash(params.user.as_bytes(), password()?, salt);
                    frontend::password_message(hash.as_bytes(), self.wire.wbuf())
                        .map_err(|_| nul_in_password())?;
                }
                Authentication::Sasl { mechanisms } => {
                    if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
                        return Err(SourceError::AuthUnsupported {
                            method: mechanisms.join(", "),
                        });
                    }
                    self.scram(password()?).await?;
                    continue;
                }
                Authentication::SaslContinue(_) | Authentication::SaslFinal(_) => {
                    return Err(SourceError::protocol(
                        CTX,
                        "SASL message outside a SASL exchange",
                    ));
                }
                Authentication::Other(code) => {
                    let method = match code {
                        2 => "Kerberos V5".to_owned(),
                        7 | 8 => "GSSAPI".to_owned(),
                        9 => "SSPI".to_owned(),
                        other => format!("code {other}"),
                    };
                    return Err(SourceError::AuthUnsupported { method });
                }
            }
            self.flush(CTX).await?;
        }
    }

    /// SCRAM-SHA-256 without channel binding (`n,,`): accepted over TLS and plain alike.
    async fn scram(&mut self, password: &[u8]) -> Result<(), SourceError> {
        const CTX: &str = "authenticating (SCRAM)";
        let mut scram = ScramSha256::new(password, ChannelBinding::unsupported());
        frontend::sasl_initial_response(SCRAM_SHA_256, scram.message(), self.wire.wbuf())
            .map_err(|e| SourceError::protocol(CTX, e.to_string()))?;
        self.flush(CTX).await?;
        let BackendMessage::Authentication(Authentication::SaslContinue(data)) =
            self.read(CTX).await?
        else {
            return Err(SourceError::protocol(CTX, "expected SASLContinue"));
        };
        scram
            .update(&data)
            .map_err(|e| SourceError::protocol(CTX, e.to_string()))?;
        frontend::sasl_response(scram.message(), self.wire.wbuf())
            .map_err(|e| SourceError::protocol(CTX, e.to_string()))?;
        self.flush(CTX).await?;
        let BackendMessage::Authentication(Authentication::SaslFinal(data)) =
            self.read(CTX).await?
        else {
            return Err(SourceError::protocol(CTX, "expected SASLFinal"));
        };
        scram.finish(&data).map_err(|e| SourceError::ScramFailed {
            reason: e.to_string(),
        })
    }

    /// `server_version_num` (e.g. 150008), from the `server_version` the server reported.
    pub fn server_version_num(&self) -> u32 {
        self.server_params
            .get("server_version_num")
            .and_then(|v| v.parse().ok())
            .or_else(|| {
                self.server_params
                    .get("server_version")
                    .and_then(|v| parse_version(v))
            })
            .unwrap_or(0)
    }

    /// A parameter the server reported (`server_version`, `server_encoding`, `TimeZone`...).
    pub fn server_parameter(&self, name: &str) -> Option<&str> {
        self.server_params.get(name).map(String::as_str)
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.wire.get_ref().is_tls()
    }

    /// The process id of the walsender serving this connection.
    pub fn backend_pid(&self) -> Option<i32> {
        self.backend_pid
    }

    pub async fn identify_system(&mut self) -> Result<SystemIdentity, SourceError> {
        let rows = self.query("IDENTIFY_SYSTEM", None).await?;
        let row = single_row(rows, "IDENTIFY_SYSTEM", 4)?;
        let [system_id, timeline, xlogpos, dbname] = <[_; 4]>::try_from(row)
            .map_err(|_| SourceError::protocol("IDENTIFY_SYSTEM", "expected 4 columns"))?;
        Ok(SystemIdentity {
            system_id: system_id.unwrap_or_default(),
            timeline: parse_field(timeline, "IDENTIFY_SYSTEM", "timeline")?,
            xlogpos: parse_field(xlogpos, "IDENTIFY_SYSTEM", "xlogpos")?,
            dbname,
        })
    }

    /// Creates a logical slot with pgoutput. With [`SnapshotAction::Export`], keep this client
    /// idle while the snapshot is in use: the next command ends it.
    pub async fn create_slot(
        &mut self,
        name: &str,
        temporary: bool,
        snapshot: SnapshotAction,
    ) -> Result<CreatedSlot, SourceError> {
        let sql = create_slot_sql(name, temporary, snapshot);
        let rows = self.query(&sql, Some(name)).await?;
        let row = single_row(rows, "CREATE_REPLICATION_SLOT", 4)?;
        let [slot_name, consistent_point, snapshot_name, output_plugin] = <[_; 4]>::try_from(row)
            .map_err(|_| {
            SourceError::protocol("CREATE_REPLICATION_SLOT", "expected 4 columns")
        })?;
        Ok(CreatedSlot {
            name: slot_name.unwrap_or_else(|| name.to_owned()),
            consistent_point: parse_field(
                consistent_point,
                "CREATE_REPLICATION_SLOT",
                "consistent_point",
            )?,
            snapshot_name,
            output_plugin,
        })
    }

    /// `DROP_REPLICATION_SLOT`; with `wait`, waits for an active slot to be released.
    /// Returns false when there was no such slot.
    pub async fn drop_slot(&mut self, name: &str, wait: bool) -> Result<bool, SourceError> {
        let wait = if wait { " WAIT" } else { "" };
        let sql = format!("DROP_REPLICATION_SLOT {}{wait}", quote_ident(name));
        match self.query(&sql, Some(name)).await {
            Ok(_) => Ok(true),
            Err(SourceError::SlotMissing { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Runs SQL with the simple query protocol; rows of all statements, values as text.
    pub async fn simple_query(
        &mut self,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, SourceError> {
        self.query(sql, None).await
    }

    /// Starts streaming from `slot` at `start` (`0/0` = the slot's confirmed position).
    /// `options` are pgoutput's, unquoted, e.g. `("proto_version", "2")`,
    /// `("publication_names", quote::publication_names(&["pub"]))`.
    pub async fn start_replication(
        mut self,
        slot: &str,
        start: Lsn,
        options: &[(String, String)],
    ) -> Result<ReplicationStream, SourceError> {
        const CTX: &str = "starting replication";
        let sql = start_replication_sql(slot, start, options);
        frontend::query(&sql, self.wire.wbuf()).map_err(|_| nul_in_command())?;
        self.flush(CTX).await?;
        loop {
            match self
                .wire
                .read_message()
                .await
                .map_err(|e| e.into_source(CTX))?
            {
                BackendMessage::CopyBothResponse => break,
                BackendMessage::ErrorResponse(err) => {
                    return Err(map_server_error(
                        err,
                        &self.ctx("run START_REPLICATION", Some(slot)),
                    ));
                }
                BackendMessage::NoticeResponse(n) => log_notice(&n),
                BackendMessage::ParameterStatus { .. } => {}
                other => {
                    return Err(SourceError::protocol(CTX, format!("unexpected {other:?}")));
                }
            }
        }
        tracing::info!(slot, start = %start, "replication started");
        Ok(ReplicationStream::new(
            self.wire,
            slot,
            self.user,
            self.database,
        ))
    }

    /// Says goodbye (`Terminate`) and closes the socket.
    pub async fn close(mut self) {
        frontend::terminate(self.wire.wbuf());
        let _ = self.wire.shutdown().await;
    }

    async fn query(
        &mut self,
        sql: &str,
        slot: Option<&str>,
    ) -> Result<Vec<Vec<Option<String>>>, SourceError> {
        const CTX: &str = "running a replication command";
        frontend::query(sql, self.wire.wbuf()).map_err(|_| nul_in_command())?;
        self.flush(CTX).await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            match self
                .wire
                .read_message()
                .await
                .map_err(|e| e.into_source(CTX))?
            {
                BackendMessage::ReadyForQuery { .. } => break,
                BackendMessage::DataRow { values } => rows.push(
                    values
                        .into_iter()
                        .map(|v| v.map(|b| text(b, CTX)).transpose())
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                BackendMessage::RowDescription { .. }
                | BackendMessage::CommandComplete { .. }
                | BackendMessage::EmptyQueryResponse => {}
                BackendMessage::ErrorResponse(err) => error = Some(err),
                other => self.unexpected(other, CTX)?,
            }
        }
        match error {
            Some(err) => {
                let command = format!("run {}", sql.split_whitespace().next().unwrap_or("it"));
                Err(map_server_error(err, &self.ctx(&command, slot)))
            }
            None => Ok(rows),
        }
    }

    /// Reads a message, turning `ErrorResponse` into the mapped error and absorbing
    /// `ParameterStatus` and notices.
    async fn read(&mut self, context: &'static str) -> Result<BackendMessage, SourceError> {
        loop {
            match self
                .wire
                .read_message()
                .await
                .map_err(|e| e.into_source(context))?
            {
                BackendMessage::ErrorResponse(err) => {
                    return Err(map_server_error(
                        err,
                        &self.ctx("open a replication connection", None),
                    ));
                }
                other => {
                    if let Some(msg) = self.absorb(other) {
                        return Ok(msg);
                    }
                }
            }
        }
    }

    /// Handles the messages that may come at any time; returns the others.
    fn absorb(&mut self, msg: BackendMessage) -> Option<BackendMessage> {
        match msg {
            BackendMessage::ParameterStatus { name, value } => {
                self.server_params.insert(name, value);
                None
            }
            BackendMessage::NoticeResponse(n) => {
                log_notice(&n);
                None
            }
            other => Some(other),
        }
    }

    fn unexpected(
        &mut self,
        msg: BackendMessage,
        context: &'static str,
    ) -> Result<(), SourceError> {
        match self.absorb(msg) {
            None => Ok(()),
            Some(other) => Err(SourceError::protocol(
                context,
                format!("unexpected {other:?}"),
            )),
        }
    }

    async fn flush(&mut self, context: &'static str) -> Result<(), SourceError> {
        self.wire
            .flush()
            .await
            .map_err(|source| SourceError::Io { context, source })
    }

    fn ctx<'a>(&'a self, command: &'a str, slot: Option<&'a str>) -> ErrorContext<'a> {
        ErrorContext {
            command,
            replication: true,
            user: &self.user,
            database: &self.database,
            slot,
            streaming: false,
        }
    }
}

pub(crate) fn log_notice(n: &ServerError) {
    tracing::info!(severity = %n.severity, code = %n.code, message = %n.message, "source notice");
}

fn nul_in_password() -> SourceError {
    SourceError::InvalidParams {
        reason: "the password contains a NUL byte".into(),
    }
}

fn nul_in_command() -> SourceError {
    SourceError::InvalidParams {
        reason: "a name or option contains a NUL byte".into(),
    }
}

fn text(b: bytes::Bytes, context: &'static str) -> Result<String, SourceError> {
    String::from_utf8(b.into()).map_err(|_| SourceError::protocol(context, "a value is not UTF-8"))
}

fn single_row(
    mut rows: Vec<Vec<Option<String>>>,
    command: &'static str,
    columns: usize,
) -> Result<Vec<Option<String>>, SourceError> {
    match rows.pop() {
        Some(row) if rows.is_empty() && row.len() == columns => Ok(row),
        _ => Err(SourceError::protocol(
            command,
            format!("expected one row of {columns} columns"),
        )),
    }
}

fn parse_field<T: std::str::FromStr>(
    value: Option<String>,
    command: &'static str,
    what: &str,
) -> Result<T, SourceError> {
    value
        .as_deref()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| SourceError::protocol(command, format!("bad {what} {value:?}")))
}

/// `CREATE_REPLICATION_SLOT "name" [TEMPORARY] LOGICAL pgoutput <snapshot>` (the syntax every
/// version from 10 on understands).
pub(crate) fn create_slot_sql(name: &str, temporary: bool, snapshot: SnapshotAction) -> String {
    let temporary = if temporary { " TEMPORARY" } else { "" };
    let snapshot = match snapshot {
        SnapshotAction::Export => "EXPORT_SNAPSHOT",
        SnapshotAction::NoExport => "NOEXPORT_SNAPSHOT",
        SnapshotAction::Use => "USE_SNAPSHOT",
    };
    format!(
        "CREATE_REPLICATION_SLOT {}{temporary} LOGICAL pgoutput {snapshot}",
        quote_ident(name)
    )
}

/// `START_REPLICATION SLOT "slot" LOGICAL X/Y ("key" 'value', ...)`.
pub(crate) fn start_replication_sql(
    slot: &str,
    start: Lsn,
    options: &[(String, String)],
) -> String {
    let mut sql = format!(
        "START_REPLICATION SLOT {} LOGICAL {start}",
        quote_ident(slot)
    );
    if !options.is_empty() {
        let opts: Vec<String> = options
            .iter()
            .map(|(k, v)| format!("{} {}", quote_ident(k), quote_literal(v)))
            .collect();
        sql.push_str(&format!(" ({})", opts.join(", ")));
    }
    sql
}

/// `server_version` text to `server_version_num`: `15.8 (Debian…)` → 150008, `9.6.3` → 90603,
/// `17beta1` → 170000.
pub(crate) fn parse_version(v: &str) -> Option<u32> {
    let numeric: String = v
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let parts: Vec<u32> = numeric
        .split('.')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    match parts.as_slice() {
        [major, rest @ ..] if *major >= 10 => Some(major * 10_000 + rest.first().unwrap_or(&0)),
        [major, minor, rest @ ..] => {
            Some(major * 10_000 + minor * 100 + rest.first().unwrap_or(&0))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
