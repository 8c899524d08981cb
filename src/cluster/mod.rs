//! A throwaway PostgreSQL cluster from the installed server binaries: the private cluster of
//! `walaudit demo`, and the clusters of the tests and benchmarks (`walaudit::testing`).
//!
//! ```text
//!  owner ──stdin: initdb | start | stop | crash──► sh pg_wrapper.sh ──► initdb, postgres
//!    ▲            (end of file = shut down, delete)       │   (as OS user `postgres` when
//!    └───────────── stdout: one reply a line ◄────────────┘    the owner runs as root)
//! ```
//!
//! [`Server::find`] finds the binaries (`$WALAUDIT_PG_BIN`, `/usr/lib/postgresql/*/bin`,
//! `pg_config --bindir`) and the OS user, before anything is created; [`Cluster::start`] runs
//! initdb into a fresh temporary directory, writes the configuration ([`ClusterConfig`]:
//! `wal_level`, the listener, the caller's settings and pg_hba lines), starts the server and
//! waits until it accepts connections. [`Cluster::init`] stops before the start, for callers
//! that add files and settings first (certificates).
//!
//! # Invariants
//! * Nothing outlives the owning process: the wrapper shuts the server down and deletes the
//!   cluster directory when its stdin reaches end-of-file, which the kernel delivers however
//!   that process ends (return, panic, abort, SIGKILL). `Drop` does the same, synchronously.
//! * The wrapper and the server run in their own process group: a Ctrl-C at the terminal
//!   reaches the owner only, and the server is then stopped in order through the pipe.
//! * Runtime-agnostic: a [`Cluster`] holds no connection; the blocking calls work from any
//!   thread ([`Cluster::start_async`] and [`Cluster::shutdown_async`] for async callers).
//! * No collisions: sockets live in the cluster's own directory, a TCP port (if any) comes
//!   from the kernel (retried if taken before the server binds it), a system cluster is never
//!   touched.

mod binaries;
mod os;
mod server;
mod supervisor;

pub use binaries::{LOOKED_AT, PG_BIN_ENV, SERVER_PACKAGE, Server, find_bin_dir, install_command};
pub use os::{ServerUser, block_on, chown, is_root, process_running, tail, write_file};
pub use server::Cluster;

/// The superuser every cluster is initialised with (local connections are trusted).
pub const SUPERUSER: &str = "postgres";

/// `wal_level` of a cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WalLevel {
    #[default]
    Logical,
    Replica,
}

impl WalLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            WalLevel::Logical => "logical",
            WalLevel::Replica => "replica",
        }
    }
}

/// Where a cluster listens besides its Unix socket (in the cluster directory).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Listen {
    /// The Unix socket only, named `.s.PGSQL.5432`.
    #[default]
    Unix,
    /// Also TCP on `127.0.0.1`: `preferred_port` if it is free, else a port from the kernel.
    /// pg_hba asks TCP clients for scram-sha-256 ([`ClusterConfig::superuser_password`]).
    Tcp { preferred_port: Option<u16> },
}

/// How [`Cluster::stop_server`] stops the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// SIGINT: disconnect clients, shutdown checkpoint.
    Fast,
    /// SIGQUIT: no checkpoint, like a crash; the next start runs crash recovery.
    Immediate,
}

/// What [`Cluster::init`] sets up.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Prefix of the cluster directory's name (in `$TMPDIR`, or `/tmp` if that path is too
    /// long for a socket address).
    pub dir_prefix: String,
    pub listen: Listen,
    pub wal_level: WalLevel,
    /// The password of [`SUPERUSER`], for TCP connections; none means TCP logins fail.
    pub superuser_password: Option<String>,
    /// `postgresql.conf` settings, written after the defaults (so they win); values are
    /// quoted for you. [`Cluster::set`] adds more before a start.
    pub settings: Vec<(String, String)>,
    /// pg_hba.conf lines, placed before the defaults (so they match first).
    pub hba_lines: Vec<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            dir_prefix: "walaudit-pg-".into(),
            listen: Listen::Unix,
            wal_level: WalLevel::Logical,
            superuser_password: None,
            settings: Vec::new(),
            hba_lines: Vec::new(),
        }
    }
}

impl ClusterConfig {
    /// `setting("work_mem", "8MB")`: the value unquoted, as `SHOW` prints it.
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A cluster could not be set up, started or stopped; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "walaudit needs the PostgreSQL server binaries (initdb, postgres) and found none \
         (it looked at {LOOKED_AT}). Install them with:\n    {install}\nor set \
         WALAUDIT_PG_BIN to the directory holding initdb and postgres"
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
         user:\n    {install}\nor run walaudit as another user"
    )]
    NoServerUser { install: String },
    #[error(
        "cannot read the server version from `{postgres} --version` (it printed {output:?}): \
         point WALAUDIT_PG_BIN at a PostgreSQL 14 or later installation"
    )]
    Version { postgres: String, output: String },
    #[error("cannot {action} for the PostgreSQL cluster")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the cluster's {command} failed ({reply}); see its log {log}:\n{tail}")]
    Command {
        command: &'static str,
        reply: String,
        log: String,
        tail: String,
    },
    #[error(
        "postgres {version} on {listen} does not start: {reason}; \
         see the server log {log}:\n{tail}"
    )]
    NotReady {
        version: u32,
        /// Where it listens, and its data directory.
        listen: String,
        reason: String,
        log: String,
        tail: String,
    },
    #[error("no free TCP port on 127.0.0.1: free some, or use a Unix-socket-only cluster")]
    NoFreePort,
    #[error(
        "the server did not stop within {deadline:?}; its processes may still run: \
         stop them with kill -QUIT on the postmaster"
    )]
    StopTimeout { deadline: std::time::Duration },
}

impl ClusterError {
    fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
        let action = action.into();
        move |source| ClusterError::Io { action, source }
    }

    /// Whether the server binaries are missing (not found, or not where `WALAUDIT_PG_BIN`
    /// points): the errors an install fixes.
    pub fn is_missing_binaries(&self) -> bool {
        matches!(
            self,
            ClusterError::NoBinaries { .. } | ClusterError::BadBinDir { .. }
        )
    }
}
