//! A throwaway PostgreSQL cluster for integration tests.
//!
//! ```text
//!  test process ──stdin: initdb | start | stop | crash──► sh pg_wrapper.sh ──► initdb, postgres
//!       ▲              (end of file = shut down, delete)        │   (as OS user `postgres` when
//!       └────────────── stdout: one reply a line ◄──────────────┘    the tests run as root)
//! ```
//!
//! [`shared_cluster`] starts one cluster per test binary on first use; tests take a fresh
//! database from it ([`PgCluster::fresh_db`]). A test that needs other server settings, or
//! restarts or crashes the server, starts its own with [`PgCluster::start`].
//!
//! # Invariants
//! * Nothing outlives the test process: the wrapper shuts the server down and deletes the
//!   cluster directory when its stdin reaches end-of-file, which the kernel delivers however the
//!   test process ends (return, panic, abort, SIGKILL). `Drop` does the same, synchronously.
//! * Runtime-agnostic: a `PgCluster` holds no connection. Every `tokio_postgres::Client` is made
//!   on the runtime of the test that uses it (each `#[tokio::test]` has its own runtime).
//! * No collisions: the port comes from the kernel (retried if taken before the server binds
//!   it), sockets live in the cluster's own directory, a system cluster is never touched.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio_postgres::{Client, NoTls};

pub use super::binaries::PG_BIN_ENV;
use super::binaries::server_major_version;
use super::database::TestDb;
use super::supervisor::{COMMAND_DEADLINE, STOP_DEADLINE, Supervisor};
use super::tls::{self, TlsFiles};
use super::util::{
    ServerUser, block_on, chown, process_running, quote_ident, quote_literal, server_user, tail,
    url_encode, write_file,
};

/// The superuser every cluster is initialised with.
pub const SUPERUSER: &str = "postgres";
/// Its password (TCP connections use scram-sha-256; Unix sockets need none).
pub const SUPERUSER_PASSWORD: &str = "walaudit-test-secret";
/// Members of this role authenticate with md5 over TCP when [`ClusterOptions::md5_auth`].
pub const MD5_GROUP: &str = "walaudit_md5";

const INITDB_DEADLINE: Duration = Duration::from_secs(120);
const READY_DEADLINE: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const PORT_ATTEMPTS: usize = 5;
const LOG_TAIL_LINES: usize = 60;
/// Longest Unix socket path (`sun_path`, 108 bytes with the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

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

/// How a role's password is stored (`password_encryption` when it is set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordEncryption {
    ScramSha256,
    Md5,
}

/// How [`PgCluster::stop_server`] stops the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// SIGINT: disconnect clients, shutdown checkpoint.
    Fast,
    /// SIGQUIT: no checkpoint, like a crash; the next start runs crash recovery.
    Immediate,
}

/// Settings of a cluster; `ClusterOptions::default()` is what [`shared_cluster`] uses.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub wal_level: WalLevel,
    /// `ssl = on` with a throwaway CA ([`PgCluster::tls_ca_cert`]); needs `openssl`.
    pub ssl: bool,
    /// pg_hba lines letting members of [`MD5_GROUP`] authenticate with md5 over TCP (see
    /// [`PgCluster::create_role`]); everyone else uses scram-sha-256.
    pub md5_auth: bool,
    /// Extra `postgresql.conf` settings, written last (so they win); values are quoted for you.
    pub settings: Vec<(String, String)>,
    /// Extra pg_hba.conf lines, placed before the defaults (so they match first).
    pub hba_lines: Vec<String>,
    /// Try this port first; if it is taken, a free one is used as usual.
    pub preferred_port: Option<u16>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            wal_level: WalLevel::Logical,
            ssl: false,
            md5_auth: true,
            settings: Vec::new(),
            hba_lines: Vec::new(),
            preferred_port: None,
        }
    }
}

impl ClusterOptions {
    pub fn wal_level(mut self, level: WalLevel) -> Self {
        self.wal_level = level;
        self
    }

    pub fn ssl(mut self, on: bool) -> Self {
        self.ssl = on;
        self
    }

    /// `setting("work_mem", "8MB")`: the value unquoted, as `SHOW` prints it.
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn hba_line(mut self, line: &str) -> Self {
        self.hba_lines.push(line.to_owned());
        self
    }
}

/// Where a cluster listens; cheap to clone into a test or a cleanup thread.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Always `127.0.0.1`.
    pub host: &'static str,
    pub port: u16,
    /// The directory holding the server's Unix socket.
    pub socket_dir: PathBuf,
}

impl Endpoint {
    /// `postgres://user:password@127.0.0.1:port/db` (user and password percent-encoded).
    pub fn url_for(&self, db: &str, user: &str, password: &str) -> String {
        format!(
            "postgres://{}:{}@{}:{}/{}",
            url_encode(user),
            url_encode(password),
            self.host,
            self.port,
            url_encode(db)
        )
    }

    /// `postgres://user@/db?host=<socket dir>&port=N`: a Unix-socket connection (trust auth).
    pub fn unix_url_for(&self, db: &str, user: &str) -> String {
        format!(
            "postgres://{}@/{}?host={}&port={}",
            url_encode(user),
            url_encode(db),
            self.socket_dir.display(),
            self.port
        )
    }

    /// A TCP configuration for `db` as the superuser.
    pub fn config(&self, db: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(self.host)
            .port(self.port)
            .user(SUPERUSER)
            .password(SUPERUSER_PASSWORD)
            .dbname(db)
            .application_name("walaudit-tests")
            .connect_timeout(Duration::from_secs(10));
        config
    }

    /// Connects to `db` as the superuser over TCP; the connection runs on the current runtime.
    pub async fn connect(&self, db: &str) -> Result<Client> {
        connect_with(&self.config(db)).await.with_context(|| {
            format!(
                "connect to database {db} on 127.0.0.1:{} as {SUPERUSER}",
                self.port
            )
        })
    }
}

/// Connects with `config` (no TLS) and drives the connection on the current runtime.
pub(crate) async fn connect_with(config: &tokio_postgres::Config) -> Result<Client> {
    let (client, connection) = config.connect(NoTls).await?;
    // The connection ends with an error when the server or a cleanup terminates it: expected.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The cluster of this test binary, started on first use (blocking), shared by all tests.
///
/// Panics with the reason (binaries missing, startup failure and the server log) if the
/// cluster cannot start; every later call panics with the same message without retrying.
pub fn shared_cluster() -> &'static PgCluster {
    static SHARED: OnceLock<Result<PgCluster, String>> = OnceLock::new();
    let started = SHARED
        .get_or_init(|| PgCluster::start(ClusterOptions::default()).map_err(|e| format!("{e:#}")));
    match started {
        Ok(cluster) => cluster,
        Err(reason) => panic!("the shared test cluster could not start: {reason}"),
    }
}

/// [`shared_cluster`] for async tests: starts it without blocking the runtime's thread.
pub async fn shared() -> &'static PgCluster {
    match tokio::task::spawn_blocking(shared_cluster).await {
        Ok(cluster) => cluster,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    }
}

/// A running throwaway cluster; see the module docs.
pub struct PgCluster {
    endpoint: Endpoint,
    base: PathBuf,
    bin_dir: PathBuf,
    major_version: u32,
    options: ClusterOptions,
    tls: Option<TlsFiles>,
    server_pid: Option<u32>,
    /// A `Mutex` only so that `PgCluster` is `Sync`; commands take `&mut self`.
    supervisor: Mutex<Supervisor>,
}

impl PgCluster {
    /// Finds the server binaries, runs initdb into a fresh temporary directory, configures and
    /// starts the server, and waits until it accepts connections. Blocking (seconds): from an
    /// async test use [`PgCluster::start_async`].
    pub fn start(options: ClusterOptions) -> Result<PgCluster> {
        // Without a server, this ends the test process with the command that installs one.
        let bin_dir = super::prerequisites::server_bin_dir();
        let major_version = server_major_version(&bin_dir)?;
        let owner = server_user()?;
        let base = make_base_dir(owner.as_ref())?;
        let supervisor = match Supervisor::spawn(&base, &bin_dir, owner.as_ref()) {
            Ok(supervisor) => supervisor,
            Err(err) => {
                let _ = fs::remove_dir_all(&base);
                return Err(err);
            }
        };
        // From here on, dropping `cluster` (also on error) shuts down and deletes everything.
        let mut cluster = PgCluster {
            endpoint: Endpoint {
                host: "127.0.0.1",
                port: 0,
                socket_dir: base.clone(),
            },
            base,
            bin_dir,
            major_version,
            options,
            tls: None,
            server_pid: None,
            supervisor: Mutex::new(supervisor),
        };
        cluster.initialise(owner.as_ref())?;
        Ok(cluster)
    }

    /// [`PgCluster::start`] on tokio's blocking pool.
    pub async fn start_async(options: ClusterOptions) -> Result<PgCluster> {
        tokio::task::spawn_blocking(move || PgCluster::start(options)).await?
    }

    fn initialise(&mut self, owner: Option<&ServerUser>) -> Result<()> {
        write_file(
            &self.base.join("pwfile"),
            &format!("{SUPERUSER_PASSWORD}\n"),
            0o600,
            owner,
        )?;
        self.command("initdb", INITDB_DEADLINE).with_context(|| {
            format!(
                "initdb failed; its output:\n{}",
                tail(&self.base.join("initdb.log"), 40)
            )
        })?;
        if self.options.ssl {
            self.tls = Some(tls::generate(&self.base.join("tls"), owner)?);
        }
        let data = self.data_dir();
        write_file(&data.join("pg_hba.conf"), &self.hba_conf(), 0o600, owner)?;
        let mut conf = fs::read_to_string(data.join("postgresql.conf"))?;
        conf.push_str("\n# Test settings (tests/support/cluster.rs)\ninclude 'walaudit.conf'\n");
        write_file(&data.join("postgresql.conf"), &conf, 0o600, owner)?;

        let mut preferred = self.options.preferred_port;
        for attempt in 1..=PORT_ATTEMPTS {
            self.endpoint.port = match preferred.take() {
                Some(port) => port,
                None => free_port()?,
            };
            write_file(
                &data.join("walaudit.conf"),
                &self.settings_conf(),
                0o600,
                owner,
            )?;
            let log_start = fs::metadata(self.log_path()).map(|m| m.len()).unwrap_or(0);
            match self.launch() {
                Ok(()) => break,
                Err(err) if attempt < PORT_ATTEMPTS && self.port_taken_since(log_start) => {
                    eprintln!(
                        "test cluster: port {} was taken, retrying with another: {err:#}",
                        self.endpoint.port
                    );
                }
                Err(err) => return Err(err),
            }
        }
        if self.options.md5_auth {
            let endpoint = self.endpoint.clone();
            block_on(async move {
                let client = endpoint.connect("postgres").await?;
                client
                    .batch_execute(&format!("CREATE ROLE {} NOLOGIN", quote_ident(MD5_GROUP)))
                    .await?;
                anyhow::Ok(())
            })
            .context("create the md5 group role")?;
        }
        Ok(())
    }

    fn hba_conf(&self) -> String {
        let mut hba = String::from("# TYPE  DATABASE     USER  ADDRESS  METHOD\n");
        for line in &self.options.hba_lines {
            hba.push_str(line);
            hba.push('\n');
        }
        hba.push_str("local   all          all                   trust\n");
        hba.push_str("local   replication  all                   trust\n");
        if self.options.md5_auth {
            for db in ["all", "replication"] {
                hba.push_str(&format!("host    {db:<12} +{MD5_GROUP} 127.0.0.1/32 md5\n"));
            }
        }
        hba.push_str("host    all          all   127.0.0.1/32   scram-sha-256\n");
        hba.push_str("host    replication  all   127.0.0.1/32   scram-sha-256\n");
        hba
    }

    fn settings_conf(&self) -> String {
        let socket_dir = self.endpoint.socket_dir.display().to_string();
        let mut settings: Vec<(&str, String)> = vec![
            ("listen_addresses", "127.0.0.1".into()),
            ("port", self.endpoint.port.to_string()),
            ("unix_socket_directories", socket_dir),
            ("wal_level", self.options.wal_level.as_str().into()),
            ("max_wal_senders", "20".into()),
            ("max_replication_slots", "20".into()),
            // Small, so that large transactions are streamed (pgoutput protocol v2).
            ("logical_decoding_work_mem", "64kB".into()),
            ("fsync", "off".into()),
            ("synchronous_commit", "off".into()),
            ("full_page_writes", "off".into()),
            ("shared_buffers", "128MB".into()),
            ("max_connections", "100".into()),
            ("log_line_prefix", "%m [%p] %q%u@%d ".into()),
        ];
        if let Some(tls) = &self.tls {
            settings.push(("ssl", "on".into()));
            settings.push(("ssl_cert_file", tls.server_cert.display().to_string()));
            settings.push(("ssl_key_file", tls.server_key.display().to_string()));
        }
        let mut conf = String::new();
        let extra = self
            .options
            .settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()));
        for (name, value) in settings.into_iter().chain(extra) {
            conf.push_str(&format!("{name} = {}\n", quote_literal(&value)));
        }
        conf
    }

    /// Starts the server on the configured port and waits until it accepts connections.
    fn launch(&mut self) -> Result<()> {
        let reply = self.command("start", COMMAND_DEADLINE)?;
        let pid: u32 = reply
            .parse()
            .with_context(|| format!("bad reply to start: {reply:?}"))?;
        self.server_pid = Some(pid);
        self.wait_ready(pid)
    }

    fn wait_ready(&self, pid: u32) -> Result<()> {
        let endpoint = self.endpoint.clone();
        let deadline = Instant::now() + READY_DEADLINE;
        let ready = block_on(async move {
            let config = endpoint.config("postgres");
            let probe = || async {
                let client = connect_with(&config).await?;
                client.simple_query("SELECT 1").await?;
                anyhow::Ok(())
            };
            loop {
                if process_running(pid) == Some(false) {
                    bail!("postgres (pid {pid}) exited during startup");
                }
                // The whole probe is bounded: `connect_timeout` covers only the TCP connect,
                // and another process holding the port may accept and never answer.
                let error = match tokio::time::timeout(PROBE_TIMEOUT, probe()).await {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(err)) => err,
                    Err(_) => anyhow::anyhow!("no answer within {PROBE_TIMEOUT:?}"),
                };
                if Instant::now() >= deadline {
                    bail!("not accepting connections after {READY_DEADLINE:?}: {error:#}");
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        });
        ready.with_context(|| {
            format!(
                "start postgres {} on 127.0.0.1:{} (data directory {}); server log tail:\n{}",
                self.major_version,
                self.endpoint.port,
                self.data_dir().display(),
                self.log_tail()
            )
        })
    }

    fn port_taken_since(&self, log_start: u64) -> bool {
        let log = fs::read(self.log_path()).unwrap_or_default();
        let new = log.get(log_start as usize..).unwrap_or_default();
        String::from_utf8_lossy(new).contains("Address already in use")
    }

    fn command(&mut self, command: &str, deadline: Duration) -> Result<String> {
        let supervisor = self
            .supervisor
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        supervisor.command(command, deadline)
    }

    /// Stops the server (the cluster directory stays, [`PgCluster::start_server`] resumes it).
    /// Takes `&mut self`: the shared cluster cannot be stopped under other tests' feet.
    pub fn stop_server(&mut self, mode: StopMode) -> Result<()> {
        let command = match mode {
            StopMode::Fast => "stop",
            StopMode::Immediate => "crash",
        };
        self.command(command, STOP_DEADLINE)?;
        self.server_pid = None;
        Ok(())
    }

    /// Starts the stopped server again on the same port and waits until it is ready.
    pub fn start_server(&mut self) -> Result<()> {
        self.launch()
    }

    /// [`PgCluster::stop_server`] then [`PgCluster::start_server`]. Blocking (about a second).
    pub fn restart(&mut self, mode: StopMode) -> Result<()> {
        self.stop_server(mode)?;
        self.start_server()
    }

    /// Stops the server and deletes the cluster directory (what `Drop` does, with errors).
    pub fn shutdown(mut self) -> Result<()> {
        self.shutdown_inner()
    }

    /// [`PgCluster::shutdown`] on tokio's blocking pool.
    pub async fn shutdown_async(self) -> Result<()> {
        tokio::task::spawn_blocking(move || self.shutdown()).await?
    }

    fn shutdown_inner(&mut self) -> Result<()> {
        let pid = self.server_pid.take();
        let supervisor = self
            .supervisor
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        supervisor.finish(pid)
    }

    /// A fresh, empty database for one test; see [`TestDb`].
    pub async fn fresh_db(&self, name_hint: &str) -> Result<TestDb> {
        TestDb::create(self.endpoint.clone(), name_hint).await
    }

    /// Creates a login role (cluster-wide: use [`super::unique_name`]) whose password is
    /// stored with `encryption`. `attributes` are appended to `CREATE ROLE`, e.g.
    /// `"REPLICATION"`. An md5 role joins [`MD5_GROUP`], so with [`ClusterOptions::md5_auth`]
    /// the server asks it for md5 authentication over TCP.
    pub async fn create_role(
        &self,
        name: &str,
        password: &str,
        encryption: PasswordEncryption,
        attributes: &str,
    ) -> Result<()> {
        let (method, join) = match encryption {
            PasswordEncryption::ScramSha256 => ("scram-sha-256", String::new()),
            PasswordEncryption::Md5 if self.options.md5_auth => (
                "md5",
                format!("GRANT {} TO {};", quote_ident(MD5_GROUP), quote_ident(name)),
            ),
            PasswordEncryption::Md5 => ("md5", String::new()),
        };
        let sql = format!(
            "SET password_encryption = '{method}';
             CREATE ROLE {} LOGIN PASSWORD {} {attributes};
             {join}",
            quote_ident(name),
            quote_literal(password)
        );
        let client = self.connect("postgres").await?;
        client
            .batch_execute(&sql)
            .await
            .with_context(|| format!("create role {name}"))
    }

    /// Connects to `db` as the superuser over TCP (connection on the current runtime).
    pub async fn connect(&self, db: &str) -> Result<Client> {
        self.endpoint.connect(db).await
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn port(&self) -> u16 {
        self.endpoint.port
    }

    /// `postgres://user:password@127.0.0.1:port/db`.
    pub fn url_for(&self, db: &str, user: &str, password: &str) -> String {
        self.endpoint.url_for(db, user, password)
    }

    /// The superuser URL of `db` over TCP.
    pub fn url(&self, db: &str) -> String {
        self.endpoint.url_for(db, SUPERUSER, SUPERUSER_PASSWORD)
    }

    /// The superuser URL of `db` over the Unix socket.
    pub fn unix_url(&self, db: &str) -> String {
        self.endpoint.unix_url_for(db, SUPERUSER)
    }

    /// Path of a server tool of the same installation, e.g. `bin("pg_recvlogical")`.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// Server major version, e.g. 15.
    pub fn major_version(&self) -> u32 {
        self.major_version
    }

    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    /// The temporary directory holding everything (data, socket, log); deleted at the end.
    pub fn base_dir(&self) -> &Path {
        &self.base
    }

    pub fn data_dir(&self) -> PathBuf {
        self.base.join("data")
    }

    /// The postmaster's pid while the server runs.
    pub fn server_pid(&self) -> Option<u32> {
        self.server_pid
    }

    /// The CA certificate clients should trust, when started with `ssl = on`.
    pub fn tls_ca_cert(&self) -> Option<&Path> {
        self.tls.as_ref().map(|tls| tls.ca_cert.as_path())
    }

    pub fn log_path(&self) -> PathBuf {
        self.base.join("postgres.log")
    }

    /// The last lines of the server log, for assertion messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log_path(), LOG_TAIL_LINES)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Err(err) = self.shutdown_inner() {
            eprintln!(
                "warning: test cluster {} did not shut down cleanly: {err:#}",
                self.base.display()
            );
        }
    }
}

fn make_base_dir(owner: Option<&ServerUser>) -> Result<PathBuf> {
    let mut parent = std::env::temp_dir();
    // The socket path `<base>/.s.PGSQL.<port>` must fit in sun_path.
    if parent.as_os_str().len() + "/walaudit-pg-XXXXXX/.s.PGSQL.65535".len() > MAX_SOCKET_PATH {
        parent = PathBuf::from("/tmp");
    }
    let base = tempfile::Builder::new()
        .prefix("walaudit-pg-")
        .tempdir_in(&parent)
        .with_context(|| format!("create a cluster directory in {}", parent.display()))?
        .keep();
    chown(&base, owner)?;
    Ok(base)
}

/// A port the kernel considers free, never the same twice in this process.
fn free_port() -> Result<u16> {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    for _ in 0..100 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut handed_out = HANDED_OUT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return Ok(port);
        }
    }
    bail!("no free TCP port on 127.0.0.1")
}
