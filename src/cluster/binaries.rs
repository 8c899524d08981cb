//! Finding the PostgreSQL server binaries and the OS user to run them as, before anything is
//! created.
//!
//! The binaries are at `$WALAUDIT_PG_BIN` (when set, nothing else is tried), else in
//! `/usr/lib/postgresql/{17,16,15,14}/bin`, else at `pg_config --bindir`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::ClusterError;
use super::os::{ServerUser, is_root, server_user};

/// Environment variable naming the directory holding `postgres` and `initdb`.
pub const PG_BIN_ENV: &str = "WALAUDIT_PG_BIN";
/// The server versions looked for under `/usr/lib/postgresql`, newest first.
const CANDIDATE_VERSIONS: [u32; 4] = [17, 16, 15, 14];
/// Where the binaries are looked for, in the order tried (for messages).
pub const LOOKED_AT: &str =
    "$WALAUDIT_PG_BIN, /usr/lib/postgresql/{17,16,15,14}/bin and pg_config --bindir";
/// The Debian package of the server the install command names.
pub const SERVER_PACKAGE: &str = "postgresql-15";

/// The server binaries and the OS user to run them as: what [`super::Cluster::init`] needs.
#[derive(Clone, Debug)]
pub struct Server {
    bin_dir: PathBuf,
    major_version: u32,
    owner: Option<ServerUser>,
}

impl Server {
    /// Finds the binaries (see the module docs), reads their version and, when this process
    /// runs as root, finds the `postgres` OS user. The errors name the command that installs
    /// what is missing.
    pub fn find() -> Result<Server, ClusterError> {
        Server::at(find_bin_dir()?)
    }

    /// The server binaries in `bin_dir`.
    pub fn at(bin_dir: PathBuf) -> Result<Server, ClusterError> {
        let major_version = server_major_version(&bin_dir)?;
        let owner = server_user()?;
        Ok(Server {
            bin_dir,
            major_version,
            owner,
        })
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Server major version, e.g. 15.
    pub fn major_version(&self) -> u32 {
        self.major_version
    }

    /// The OS user the server runs as, `None` when it runs as this process's user.
    pub fn owner(&self) -> Option<&ServerUser> {
        self.owner.as_ref()
    }
}

/// The directory of the server binaries (see the module docs).
pub fn find_bin_dir() -> Result<PathBuf, ClusterError> {
    if let Some(dir) = std::env::var_os(PG_BIN_ENV) {
        let dir = PathBuf::from(dir);
        if !has_server(&dir) {
            return Err(ClusterError::BadBinDir {
                dir: dir.display().to_string(),
                install: install_command(is_root()),
            });
        }
        return Ok(dir);
    }
    default_bin_dir().ok_or_else(|| ClusterError::NoBinaries {
        install: install_command(is_root()),
    })
}

/// The command that installs the server: with `sudo` unless this process runs as root.
pub fn install_command(root: bool) -> String {
    let sudo = if root { "" } else { "sudo " };
    format!("{sudo}apt-get update && {sudo}apt-get install -y {SERVER_PACKAGE}")
}

fn has_server(dir: &Path) -> bool {
    dir.join("postgres").is_file() && dir.join("initdb").is_file()
}

/// The server binaries where a package puts them (`$WALAUDIT_PG_BIN` unset).
fn default_bin_dir() -> Option<PathBuf> {
    for version in CANDIDATE_VERSIONS {
        let dir = PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"));
        if has_server(&dir) {
            return Some(dir);
        }
    }
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Some(dir).filter(|d| out.status.success() && has_server(d))
}

/// Runs `postgres --version` in `bin_dir`.
fn server_major_version(bin_dir: &Path) -> Result<u32, ClusterError> {
    let postgres = bin_dir.join("postgres");
    let out = Command::new(&postgres)
        .arg("--version")
        .output()
        .map_err(ClusterError::io(format!(
            "run {} --version",
            postgres.display()
        )))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_major_version(&text).ok_or_else(|| ClusterError::Version {
        postgres: postgres.display().to_string(),
        output: text.trim().to_owned(),
    })
}

/// Parses `postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)`.
fn parse_major_version(text: &str) -> Option<u32> {
    let (_, rest) = text.split_once("(PostgreSQL)")?;
    rest.trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_name_the_command_that_installs_them() {
        let err = ClusterError::NoBinaries {
            install: install_command(false),
        };
        assert_eq!(
            err.to_string(),
            "walaudit needs the PostgreSQL server binaries (initdb, postgres) and found none \
             (it looked at $WALAUDIT_PG_BIN, /usr/lib/postgresql/{17,16,15,14}/bin and \
             pg_config --bindir). Install them with:\n    \
             sudo apt-get update && sudo apt-get install -y postgresql-15\n\
             or set WALAUDIT_PG_BIN to the directory holding initdb and postgres"
        );
        assert_eq!(
            install_command(true),
            "apt-get update && apt-get install -y postgresql-15"
        );
    }

    #[test]
    fn the_major_version_is_read_from_postgres_version() {
        let debian = "postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)\n";
        assert_eq!(parse_major_version(debian), Some(15));
        assert_eq!(
            parse_major_version("postgres (PostgreSQL) 17beta1"),
            Some(17)
        );
        assert_eq!(parse_major_version("something else"), None);
    }
}
