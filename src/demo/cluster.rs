//! A private, throwaway PostgreSQL cluster for `walaudit demo`, from the installed server
//! binaries: initdb into a temporary directory, `wal_level = logical`, a Unix socket in that
//! directory and no TCP port, run as the `postgres` OS user when walaudit runs as root.
//!
//! ```text
//!  walaudit ──stdin: initdb | start | stop──► sh pg_wrapper.sh ──► initdb, postgres
//!     ▲            (end of file = shut down, delete)   │   (as OS user `postgres` when root)
//!     └──────────── stdout: one reply a line ◄─────────┘
//! ```
//!
//! # Invariants
//! * Nothing outlives walaudit: the wrapper shuts the server down and deletes the directory when
//!   its stdin reaches end-of-file, which the kernel delivers however walaudit ends (return,
//!   error, panic, SIGKILL). [`DemoCluster::shutdown`] does the same and waits for it.
//! * The wrapper and the server run in their own process group: a Ctrl-C at the terminal reaches
//!   walaudit only, and the server is then stopped in order through the pipe.
//! * No collisions: the socket lives in the cluster's own directory; a system cluster is never
//!   touched, and no TCP port is opened.

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::source::{ConnParams, SourceError};

/// Environment variable naming the directory holding `postgres` and `initdb`.
pub const PG_BIN_ENV: &str = "WALAUDIT_PG_BIN";
/// The cluster's superuser (local connections are trusted; there is no TCP listener).
pub const SUPERUSER: &str = "postgres";
const WRAPPER_SCRIPT: &str = include_str!("pg_wrapper.sh");
/// The port only names the socket file (`.s.PGSQL.5432`) inside the private directory.
const PORT: u16 = 5432;
const CANDIDATE_VERSIONS: [u32; 4] = [17, 16, 15, 14];
const INITDB_DEADLINE: Duration = Duration::from_secs(120);
const READY_DEADLINE: Duration = Duration::from_secs(60);
const STOP_DEADLINE: Duration = Duration::from_secs(60);
const COMMAND_DEADLINE: Duration = Duration::from_secs(30);
/// The Debian package of the server the install command names.
const SERVER_PACKAGE: &str = "postgresql-15";

/// The demo cluster could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "walaudit demo needs the PostgreSQL server binaries (initdb, postgres) and found none \
         (it looked at $WALAUDIT_PG_BIN, /usr/lib/postgresql/{{17,16,15,14}}/bin and \
         pg_config --bindir). Install them with:\n    {install}\nor set WALAUDIT_PG_BIN to \
         the directory holding initdb and postgres"
    )]
    NoBinaries { install: String },
    #[error(
        "WALAUDIT_PG_BIN={dir} holds no initdb and postgres: point it at the directory that \
         does, or unset it and install the PostgreSQL server with:\n    {install}"
    )]
    BadBinDir { dir: String, install: String },
    #[error(
        "walaudit runs as root, PostgreSQL refuses to run as root, and there is no OS user \
         `postgres` to run it as: install the PostgreSQL server package, which creates the \
         user:\n    {install}\nor run walaudit demo as another user"
    )]
    NoServerUser { install: String },
    #[error("cannot {action} for the demo cluster")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the demo cluster's {command} failed ({reply}); its log {log}:\n{tail}")]
    Command {
        command: &'static str,
        reply: String,
        log: String,
        tail: String,
    },
    #[error(
        "the demo cluster does not accept connections after {READY_DEADLINE:?}; server log {log}:\n{tail}"
    )]
    NotReady {
        log: String,
        tail: String,
        #[source]
        source: Box<SourceError>,
    },
}

fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let action = action.into();
    move |source| ClusterError::Io { action, source }
}

/// The server binaries and the OS user to run them as: what [`DemoCluster::start`] needs, found
/// before the demo creates anything.
pub struct Server {
    bin_dir: PathBuf,
    owner: Option<ServerUser>,
}

impl Server {
    /// Finds the binaries (`$WALAUDIT_PG_BIN`, else `/usr/lib/postgresql/{17,16,15,14}/bin`,
    /// else `pg_config --bindir`) and, when walaudit runs as root, the `postgres` OS user. The
    /// errors name the command that installs what is missing.
    pub fn find() -> Result<Server, ClusterError> {
        let root = id(&["-u"]) == Some(0);
        let bin_dir = match std::env::var_os(PG_BIN_ENV) {
            Some(dir) => {
                let dir = PathBuf::from(dir);
                if !has_server(&dir) {
                    return Err(ClusterError::BadBinDir {
                        dir: dir.display().to_string(),
                        install: install_command(root),
                    });
                }
                dir
            }
            None => default_bin_dir().ok_or_else(|| ClusterError::NoBinaries {
                install: install_command(root),
            })?,
        };
        let owner = if root { Some(server_user()?) } else { None };
        Ok(Server { bin_dir, owner })
    }
}

/// The command that installs the server: `sudo` unless walaudit runs as root.
fn install_command(root: bool) -> String {
    let sudo = if root { "" } else { "sudo " };
    format!("{sudo}apt-get update && {sudo}apt-get install -y {SERVER_PACKAGE}")
}

/// A running private cluster; see the module docs.
pub struct DemoCluster {
    base: PathBuf,
    bin_dir: PathBuf,
    child: Child,
    /// `None` once closed: the wrapper then shuts down and deletes the directory.
    stdin: Option<ChildStdin>,
    replies: Lines<BufReader<ChildStdout>>,
}

impl DemoCluster {
    /// Runs initdb into a fresh temporary directory, starts the server and waits until it
    /// accepts connections.
    pub async fn start(server: Server) -> Result<DemoCluster, ClusterError> {
        let Server { bin_dir, owner } = server;
        // Short, so that `<base>/.s.PGSQL.5432` fits in a socket address.
        let base = tempfile::Builder::new()
            .prefix("walaudit-demo-")
            .tempdir_in("/tmp")
            .map_err(io("create a directory in /tmp"))?
            .keep();
        let spawned = spawn_wrapper(&base, &bin_dir, owner);
        let (child, stdin, stdout) = match spawned {
            Ok(parts) => parts,
            Err(err) => {
                let _ = std::fs::remove_dir_all(&base);
                return Err(err);
            }
        };
        // From here on, dropping `cluster` (also on error) shuts down and deletes everything.
        let mut cluster = DemoCluster {
            base,
            bin_dir,
            child,
            stdin: Some(stdin),
            replies: BufReader::new(stdout).lines(),
        };
        cluster.command("initdb", INITDB_DEADLINE).await?;
        cluster.command("start", COMMAND_DEADLINE).await?;
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    /// `postgres://postgres@/<db>?host=<dir>&port=5432`: the superuser over the Unix socket.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@/{db}?host={}&port={PORT}",
            self.base.display()
        )
    }

    /// The temporary directory holding data, socket and log; deleted at shutdown.
    pub fn base_dir(&self) -> &Path {
        &self.base
    }

    /// The server binaries in use.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Stops the server and deletes the directory; waits until the wrapper has done both.
    pub async fn shutdown(mut self) -> Result<(), ClusterError> {
        drop(self.stdin.take());
        match tokio::time::timeout(STOP_DEADLINE, self.child.wait()).await {
            Ok(status) => status
                .map(|_| ())
                .map_err(io("wait for the cluster to stop")),
            Err(_) => Err(ClusterError::Io {
                action: format!("stop within {STOP_DEADLINE:?}"),
                source: std::io::ErrorKind::TimedOut.into(),
            }),
        }
    }

    async fn command(
        &mut self,
        command: &'static str,
        deadline: Duration,
    ) -> Result<String, ClusterError> {
        let log = match command {
            "initdb" => "initdb.log",
            _ => "postgres.log",
        };
        let failed = |cluster: &DemoCluster, reply: String| ClusterError::Command {
            command,
            reply,
            log: cluster.base.join(log).display().to_string(),
            tail: tail(&cluster.base.join(log), 30),
        };
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(failed(self, "the cluster was shut down".into()));
        };
        let sent = async {
            stdin.write_all(format!("{command}\n").as_bytes()).await?;
            stdin.flush().await
        };
        if let Err(err) = sent.await {
            return Err(failed(self, format!("the supervisor is gone: {err}")));
        }
        let reply = match tokio::time::timeout(deadline, self.replies.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) | Ok(Err(_)) => "the supervisor exited".to_owned(),
            Err(_) => format!("no answer within {deadline:?}"),
        };
        match reply.strip_prefix("ok") {
            Some(rest) => Ok(rest.trim().to_owned()),
            None => Err(failed(self, reply)),
        }
    }

    async fn wait_ready(&self) -> Result<(), ClusterError> {
        let params =
            ConnParams::parse(&self.url("postgres")).map_err(|source| ClusterError::NotReady {
                log: String::new(),
                tail: String::new(),
                source: Box::new(source),
            })?;
        let started = Instant::now();
        loop {
            let error = match params.connect_sql().await {
                Ok(client) => match client.simple_query("SELECT 1").await {
                    Ok(_) => return Ok(()),
                    Err(source) => SourceError::Sql {
                        context: "probing the demo cluster",
                        source,
                    },
                },
                Err(err) => err,
            };
            if started.elapsed() >= READY_DEADLINE {
                let log = self.base.join("postgres.log");
                return Err(ClusterError::NotReady {
                    log: log.display().to_string(),
                    tail: tail(&log, 30),
                    source: Box::new(error),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The OS user that runs the server: `None` when walaudit is not root.
struct ServerUser {
    name: &'static str,
    uid: u32,
    gid: u32,
}

/// The `postgres` OS user (walaudit runs as root).
fn server_user() -> Result<ServerUser, ClusterError> {
    match (id(&["-u", SUPERUSER]), id(&["-g", SUPERUSER])) {
        (Some(uid), Some(gid)) => Ok(ServerUser {
            name: SUPERUSER,
            uid,
            gid,
        }),
        _ => Err(ClusterError::NoServerUser {
            install: install_command(true),
        }),
    }
}

fn id(args: &[&str]) -> Option<u32> {
    let out = StdCommand::new("id").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn spawn_wrapper(
    base: &Path,
    bin_dir: &Path,
    owner: Option<ServerUser>,
) -> Result<(Child, ChildStdin, ChildStdout), ClusterError> {
    let script = base.join("pg_wrapper.sh");
    std::fs::write(&script, WRAPPER_SCRIPT).map_err(io(format!("write {}", script.display())))?;
    let mut cmd = match &owner {
        Some(user) => {
            for path in [base, script.as_path()] {
                std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
                    .map_err(io(format!("chown {} to {}", path.display(), user.name)))?;
            }
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", user.name, "--", "sh"]);
            cmd
        }
        None => Command::new("sh"),
    };
    cmd.arg(&script)
        .arg(base)
        .arg(bin_dir)
        .arg(PORT.to_string())
        .current_dir(base)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(io("start the cluster supervisor (sh, runuser)"))?;
    let stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    Ok((child, stdin, stdout))
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
    let out = StdCommand::new("pg_config").arg("--bindir").output().ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Some(dir).filter(|d| out.status.success() && has_server(d))
}

/// The last `lines` lines of a log file (or why there are none).
fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("<cannot read {}: {err}>", path.display()),
    }
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
            "walaudit demo needs the PostgreSQL server binaries (initdb, postgres) and found \
             none (it looked at $WALAUDIT_PG_BIN, /usr/lib/postgresql/{17,16,15,14}/bin and \
             pg_config --bindir). Install them with:\n    \
             sudo apt-get update && sudo apt-get install -y postgresql-15\n\
             or set WALAUDIT_PG_BIN to the directory holding initdb and postgres"
        );
        assert_eq!(
            install_command(true),
            "apt-get update && apt-get install -y postgresql-15"
        );
    }
}
