//! The checks of `walaudit doctor`: the source and the lake the way `run` will use them, each
//! with its verdict and the fix.
//!
//! Every check reports `ok`, `warn` or `fail` with a detail and, when not ok, the fix. Checks
//! that need a connection are skipped (reported as `fail` with the reason) when the connection
//! itself fails; the lake is checked even then.

use std::time::Duration;

use serde::Serialize;
use tokio_postgres::Client;

use crate::clock::unix_micros;
use crate::config::{Config, LakeConfig};
use crate::lake::LakeLocation;
use crate::lake::probe::probe;
use crate::source::{ConnParams, SourceError, setup};

/// Clock skew between this host and the server above which the clock check warns / fails.
const SKEW_WARN: Duration = Duration::from_secs(2);
const SKEW_FAIL: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// The verdict of one check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    pub check: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl CheckResult {
    fn ok(check: &'static str, detail: impl Into<String>) -> Self {
        CheckResult {
            check,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    fn warn(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        CheckResult {
            check,
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        CheckResult {
            check,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    /// A failure whose message already says what to do (walaudit's own errors do).
    fn failed(check: &'static str, err: &SourceError) -> Self {
        CheckResult {
            check,
            status: Status::Fail,
            detail: err.to_string(),
            fix: None,
        }
    }
}

/// Runs every check, in the order an operator would fix them: the source, then the lake
/// (checked even when the source cannot be reached). `slot` overrides `source.slot`.
pub async fn checks(config: &Config, slot: Option<&str>) -> Vec<CheckResult> {
    let mut out = source_checks(config, slot).await;
    out.push(lake_check(&config.lake).await);
    out
}

/// The results as aligned text, a line per check and a line per fix.
pub fn render_text(results: &[CheckResult]) -> String {
    let mut out = String::new();
    for r in results {
        let status = match r.status {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        out.push_str(&format!("{status:<5} {:<14} {}\n", r.check, r.detail));
        if let Some(fix) = r.fix.as_deref().filter(|f| !f.is_empty()) {
            out.push_str(&format!("{:<20} fix: {fix}\n", ""));
        }
    }
    out
}

async fn source_checks(config: &Config, slot: Option<&str>) -> Vec<CheckResult> {
    let src = &config.source;
    let url = match config.source_url() {
        Ok(url) => url,
        Err(err) => return vec![CheckResult::fail("connection", err.to_string(), "")],
    };
    let params = match ConnParams::parse(url) {
        Ok(params) => params,
        Err(err) => return vec![CheckResult::failed("connection", &err)],
    };
    let client = match params.connect_sql().await {
        Ok(client) => client,
        Err(err) => return vec![CheckResult::failed("connection", &err)],
    };
    let mut out = vec![CheckResult::ok(
        "connection",
        format!("connected to {params}"),
    )];
    out.extend(server_checks(&client).await);
    out.push(role_check(&client).await);
    out.extend(publication_checks(&client, &src.publication, src.create_publication).await);
    let slot = slot.unwrap_or(&src.slot);
    let warn_at = src.retained_wal_warn;
    out.push(slot_check(&client, slot, &params.dbname, src.create_slot, warn_at).await);
    out.push(clock_check(&client).await);
    out
}

async fn server_checks(client: &Client) -> Vec<CheckResult> {
    let info = match setup::server_info(client).await {
        Ok(info) => info,
        Err(err) => return vec![CheckResult::failed("server", &err)],
    };
    let mut out = Vec::new();
    out.push(match info.version_num {
        v if v >= 140_000 => CheckResult::ok("version", format!("PostgreSQL {}", info.version)),
        v if v >= 100_000 => CheckResult::warn(
            "version",
            format!(
                "PostgreSQL {}: no actor attribution, no streaming",
                info.version
            ),
            "upgrade to PostgreSQL 14 or later for logical messages and streamed transactions",
        ),
        _ => CheckResult::fail(
            "version",
            format!("PostgreSQL {} has no pgoutput", info.version),
            "upgrade to PostgreSQL 14 or later",
        ),
    });
    out.push(if info.wal_level == "logical" {
        CheckResult::ok("wal_level", "logical")
    } else {
        CheckResult::fail(
            "wal_level",
            format!("wal_level is {}", info.wal_level),
            "ALTER SYSTEM SET wal_level = logical; then restart the server",
        )
    });
    let free = |check, what: &str, setting: &str, used: u32, max: u32| {
        let detail = format!("{used} of {max} {what} in use");
        match max.saturating_sub(used) {
            0 => CheckResult::fail(check, detail, format!("raise {setting} and restart")),
            1 => CheckResult::warn(check, detail, format!("raise {setting} for headroom")),
            _ => CheckResult::ok(check, detail),
        }
    };
    let slots = ("replication slots", "max_replication_slots");
    out.push(free(
        "slots",
        slots.0,
        slots.1,
        info.replication_slots_used,
        info.max_replication_slots,
    ));
    let senders = ("WAL senders", "max_wal_senders");
    out.push(free(
        "wal_senders",
        senders.0,
        senders.1,
        info.wal_senders_used,
        info.max_wal_senders,
    ));
    out
}

async fn role_check(client: &Client) -> CheckResult {
    match setup::check_role_can_replicate(client).await {
        Ok(()) => CheckResult::ok("role", "the role may replicate"),
        Err(err) => CheckResult::failed("role", &err),
    }
}

async fn publication_checks(client: &Client, name: &str, create: bool) -> Vec<CheckResult> {
    let exists = client
        .query_one(
            "SELECT count(*) FROM pg_publication WHERE pubname = $1",
            &[&name],
        )
        .await
        .map(|row| row.get::<_, i64>(0) > 0);
    match exists {
        Err(err) => {
            let err = SourceError::Sql {
                context: "reading pg_publication",
                source: err,
            };
            return vec![CheckResult::failed("publication", &err)];
        }
        Ok(false) if create => {
            let detail = format!("publication {name} does not exist; run creates it (all tables)");
            let fix = "set source.publication_tables to limit it, or create it yourself";
            return vec![CheckResult::warn("publication", detail, fix)];
        }
        Ok(false) => {
            let sql = setup::create_publication_sql(name, None);
            let detail = format!("publication {name} does not exist");
            return vec![CheckResult::fail("publication", detail, format!("{sql};"))];
        }
        Ok(true) => {}
    }
    let tables = match setup::publication_tables(client, name).await {
        Ok(tables) => tables,
        Err(err) => return vec![CheckResult::failed("publication", &err)],
    };
    let mut out = vec![if tables.is_empty() {
        let fix = format!("ALTER PUBLICATION {name} ADD TABLE …;");
        CheckResult::warn(
            "publication",
            format!("publication {name} has no tables"),
            fix,
        )
    } else {
        CheckResult::ok(
            "publication",
            format!("publication {name}: {} table(s)", tables.len()),
        )
    }];
    let fixes = setup::replica_identity_fixes(&tables);
    out.push(if fixes.is_empty() {
        CheckResult::ok(
            "identity",
            "every published table has a usable replica identity",
        )
    } else {
        let detail = format!("{} table(s) have no usable replica identity", fixes.len());
        CheckResult::fail("identity", detail, fixes.join(" "))
    });
    out
}

async fn slot_check(
    client: &Client,
    slot: &str,
    database: &str,
    create: bool,
    warn_at: u64,
) -> CheckResult {
    let state = match setup::slot_state(client, slot).await {
        Ok(state) => state,
        Err(err) => return CheckResult::failed("slot", &err),
    };
    let Some(state) = state else {
        let detail = format!("slot {slot} does not exist");
        return if create {
            CheckResult::warn("slot", detail, "run creates it (source.create_slot = true)")
        } else {
            let fix = format!("SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput');");
            CheckResult::fail("slot", detail, fix)
        };
    };
    if let Err(err) = setup::check_slot(&state, database) {
        return CheckResult::failed("slot", &err);
    }
    let retained = client
        .query_one(
            "SELECT (pg_current_wal_lsn() - restart_lsn)::bigint FROM pg_replication_slots \
             WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .ok()
        .and_then(|row| row.get::<_, Option<i64>>(0))
        .unwrap_or(0);
    let wal_status = state.wal_status.as_deref().unwrap_or("unknown");
    let detail = format!(
        "slot {slot}: {}, wal_status {wal_status}, retains {} MiB of WAL",
        if state.active { "active" } else { "inactive" },
        retained >> 20
    );
    if wal_status == "unreserved" {
        let fix = "the slot is about to lose WAL it needs: start walaudit or raise \
                   max_slot_wal_keep_size";
        CheckResult::warn("slot", detail, fix)
    } else if warn_at > 0 && retained.max(0) as u64 > warn_at {
        let fix = "start walaudit so the slot advances, or drop the slot if it is abandoned";
        CheckResult::warn("slot", detail, fix)
    } else {
        CheckResult::ok("slot", detail)
    }
}

async fn clock_check(client: &Client) -> CheckResult {
    let before = unix_micros();
    let server = client
        .query_one(
            "SELECT (extract(epoch FROM clock_timestamp()) * 1e6)::bigint",
            &[],
        )
        .await;
    let after = unix_micros();
    let server: i64 = match server {
        Ok(row) => row.get(0),
        Err(err) => {
            let err = SourceError::Sql {
                context: "reading the server clock",
                source: err,
            };
            return CheckResult::failed("clock", &err);
        }
    };
    let skew = Duration::from_micros(server.abs_diff((before + after) / 2));
    let detail = format!("clock skew with the server: {} ms", skew.as_millis());
    let fix = "synchronise the clocks (NTP): lag in seconds is measured against commit times";
    if skew > SKEW_FAIL {
        CheckResult::fail("clock", detail, fix)
    } else if skew > SKEW_WARN {
        CheckResult::warn("clock", detail, fix)
    } else {
        CheckResult::ok("clock", detail)
    }
}

/// The lake is reachable and writable: a probe object under `_walaudit/` is written, read
/// back and deleted through the writer's object stores.
async fn lake_check(config: &LakeConfig) -> CheckResult {
    let location = match LakeLocation::new(&config.url, &config.s3) {
        Ok(location) => location,
        Err(err) => {
            let fix = "point --lake / lake.url at a directory walaudit may create and write \
                       (not below a file), or at an s3://, gs://, az:// URL";
            return CheckResult::fail("lake", err.to_string(), fix);
        }
    };
    match probe(&location).await {
        Ok(report) => CheckResult::ok(
            "lake",
            format!(
                "lake {} is writable (probe written and deleted in {} ms)",
                location.display(),
                report.elapsed.as_millis()
            ),
        ),
        Err(err) => CheckResult {
            check: "lake",
            status: Status::Fail,
            detail: crate::report::chain(&err),
            fix: None,
        },
    }
}
