//! `walaudit run` into an S3 lake on the in-process test server (`support::s3`): the lake is
//! readable by a plain Delta reader, holds every change once, and stays exactly-once when the
//! storage fails requests.
//!
//! Also home of the helpers the crash suite shares: [`lake`] (read a lake without walaudit) and
//! [`Run`] (the `walaudit run` command line).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::Command;

use crate::support::TestDb;
use crate::support::s3::S3Server;

mod drain;
pub mod lake;
mod server;

/// How long one `run --drain` may take before the test calls it hung.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(150);

/// A `walaudit run` command line for one source, slot and lake.
#[derive(Clone, Debug)]
pub struct Run {
    pub source: String,
    pub slot: String,
    pub publication: String,
    pub lake: String,
    pub config: Option<PathBuf>,
    pub env: Vec<(String, String)>,
}

impl Run {
    /// Slot and publication named after the database (unique in the shared cluster).
    pub fn new(db: &TestDb, lake: &str) -> Run {
        Run {
            source: db.url.clone(),
            slot: db.name.clone(),
            publication: format!("pub_{}", db.name),
            lake: lake.to_owned(),
            config: None,
            env: Vec::new(),
        }
    }

    pub fn command(&self, drain: bool) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_walaudit"));
        // Tests run engines side by side: each listens on a free port.
        cmd.env("WALAUDIT_LISTEN", "127.0.0.1:0");
        cmd.arg("run")
            .args(["--source", &self.source])
            .args(["--slot", &self.slot])
            .args(["--publication", &self.publication])
            .args(["--lake", &self.lake]);
        if drain {
            cmd.arg("--drain");
        }
        if let Some(config) = &self.config {
            cmd.arg("--config").arg(config);
        }
        cmd.env("WALAUDIT_LOG", "info,walaudit=debug");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.kill_on_drop(true);
        cmd
    }

    /// `walaudit run --drain` to completion; fails with its stderr when it exits non-zero.
    pub async fn drain(&self) -> Result<Output> {
        let out = self.drain_output().await?;
        if !out.status.success() {
            bail!(
                "walaudit run --drain failed ({}):\n{}",
                out.status,
                tail_text(&out.stderr, 60)
            );
        }
        Ok(out)
    }

    /// `walaudit run --drain` to completion, whatever its exit status.
    pub async fn drain_output(&self) -> Result<Output> {
        let child = self.command(true).output();
        tokio::time::timeout(DRAIN_DEADLINE, child)
            .await
            .context("walaudit run --drain did not finish in time")?
            .context("spawn walaudit")
    }
}

/// The last `lines` lines of a process's output.
pub fn tail_text(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Write a config file into `dir` that points an `s3://` lake at `server`, with short flush
/// and status intervals so tests see commits and confirmations quickly.
pub fn s3_config(dir: &Path, server: &S3Server) -> Result<PathBuf> {
    let path = dir.join("walaudit.toml");
    std::fs::write(
        &path,
        format!(
            "[source]\nstatus_interval = \"200ms\"\n\n\
             [lake]\nflush_interval = \"200ms\"\n\n\
             [lake.s3]\nendpoint = \"{}\"\nregion = \"{}\"\naccess_key_id = \"{}\"\n\
             secret_access_key = \"{}\"\nallow_http = true\n\n[api]\npublic_metrics = true\n",
            server.endpoint, server.region, server.access_key_id, server.secret_access_key
        ),
    )?;
    Ok(path)
}

/// Write a config file into `dir` for a local lake (short intervals, as above).
pub fn local_config(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("walaudit.toml");
    std::fs::write(
        &path,
        "[source]\nstatus_interval = \"200ms\"\n\n[lake]\nflush_interval = \"200ms\"\n\n[api]\npublic_metrics = true\n",
    )?;
    Ok(path)
}

/// The slot's `confirmed_flush_lsn` as a number (0 when unset).
pub async fn confirmed_flush(db: &TestDb, slot: &str) -> Result<i64> {
    db.scalar(&format!(
        "SELECT coalesce(confirmed_flush_lsn - '0/0', 0)::bigint FROM pg_replication_slots \
         WHERE slot_name = '{slot}'"
    ))
    .await
}
