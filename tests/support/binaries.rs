//! Finding the PostgreSQL server binaries the tests run (`prerequisites` says how to install
//! them when there are none).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

/// Environment variable naming the directory holding `postgres` and `initdb`.
pub const PG_BIN_ENV: &str = "WALAUDIT_PG_BIN";
const CANDIDATE_VERSIONS: [u32; 4] = [17, 16, 15, 14];

pub(crate) fn find_bin_dir() -> Result<PathBuf> {
    let has_server = |dir: &Path| dir.join("postgres").is_file() && dir.join("initdb").is_file();
    if let Some(dir) = std::env::var_os(PG_BIN_ENV) {
        let dir = PathBuf::from(dir);
        ensure!(
            has_server(&dir),
            "{PG_BIN_ENV}={} holds no `postgres` and `initdb`",
            dir.display()
        );
        return Ok(dir);
    }
    for version in CANDIDATE_VERSIONS {
        let dir = PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"));
        if has_server(&dir) {
            return Ok(dir);
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return Ok(dir);
        }
    }
    bail!(
        "none found: looked at ${PG_BIN_ENV}, /usr/lib/postgresql/{{17,16,15,14}}/bin and \
         `pg_config --bindir`"
    )
}

/// Parses `postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)`.
pub(crate) fn server_major_version(bin_dir: &Path) -> Result<u32> {
    let out = Command::new(bin_dir.join("postgres"))
        .arg("--version")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_once("(PostgreSQL)")
        .and_then(|(_, rest)| {
            rest.trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()
        })
        .and_then(|major| major.parse().ok())
        .with_context(|| format!("cannot read the server version from {:?}", text.trim()))
}
