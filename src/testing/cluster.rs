//! The tests' PostgreSQL clusters: [`crate::cluster::Cluster`] with test settings, a TCP
//! listener with password authentication (scram-sha-256, md5 for [`MD5_GROUP`]), optional TLS,
//! and a fresh database per test.
//!
//! [`shared_cluster`] starts one cluster per test binary on first use; tests take a fresh
//! database from it ([`PgCluster::fresh_db`]). A test that needs other server settings, or
//! restarts or crashes the server, starts its own with [`PgCluster::start`].
//!
//! # Invariants
//! * Nothing outlives the test process (see [`crate::cluster`]): the supervising shell shuts
//!   the server down and deletes the cluster directory however the test process ends.
//! * Runtime-agnostic: a `PgCluster` holds no connection. Every `tokio_postgres::Client` is made
//!   on the runtime of the test that uses it (each `#[tokio::test]` has its own runtime).
//! * No collisions: the port comes from the kernel (retried if taken before the server binds
//!   it), sockets live in the cluster's own directory, a system cluster is never touched.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio_postgres::{Client, NoTls};

use super::database::TestDb;
use super::tls::{self, TlsFiles};
use super::util::{quote_ident, quote_literal, url_encode};
use crate::cluster::{Cluster, ClusterConfig, Listen, block_on};
pub use crate::cluster::{PG_BIN_ENV, SUPERUSER, StopMode, WalLevel};
/// Its password (TCP connections use scram-sha-256; Unix sockets need none).
pub const SUPERUSER_PASSWORD: &str = "walaudit-test-secret";
/// Members of this role authenticate with md5 over TCP when [`ClusterOptions::md5_auth`].
pub const MD5_GROUP: &str = "walaudit_md5";

/// How a role's password is stored (`password_encryption` when it is set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordEncryption {
    ScramSha256,
    Md5,
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

/// A running throwaway cluster; see the module docs. Dropping it stops the server and
/// deletes the directory.
pub struct PgCluster {
    cluster: Cluster,
    endpoint: Endpoint,
    options: ClusterOptions,
    tls: Option<TlsFiles>,
}

/// The settings of every test cluster, before [`ClusterOptions::settings`].
const TEST_SETTINGS: &[(&str, &str)] = &[
    ("max_wal_senders", "20"),
    ("max_replication_slots", "20"),
    // Small, so that large transactions are streamed (pgoutput protocol v2).
    ("logical_decoding_work_mem", "64kB"),
    ("synchronous_commit", "off"),
    ("shared_buffers", "128MB"),
    ("max_connections", "100"),
    ("log_line_prefix", "%m [%p] %q%u@%d "),
];

impl PgCluster {
    /// Finds the server binaries, runs initdb into a fresh temporary directory, configures and
    /// starts the server, and waits until it accepts connections. Blocking (seconds): from an
    /// async test use [`PgCluster::start_async`].
    pub fn start(options: ClusterOptions) -> Result<PgCluster> {
        // Without a server, this ends the test process with the command that installs one.
        let server = super::prerequisites::server()?;
        let mut hba_lines = options.hba_lines.clone();
        if options.md5_auth {
            for db in ["all", "replication"] {
                hba_lines.push(format!("host    {db:<12} +{MD5_GROUP} 127.0.0.1/32 md5"));
            }
        }
        let config = ClusterConfig {
            dir_prefix: "walaudit-pg-".into(),
            listen: Listen::Tcp {
                preferred_port: options.preferred_port,
            },
            wal_level: options.wal_level,
            superuser_password: Some(SUPERUSER_PASSWORD.into()),
            settings: TEST_SETTINGS
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            hba_lines,
        };
        let mut cluster = Cluster::init(server, config)?;
        let tls = match options.ssl {
            true => {
                let tls = tls::generate(&cluster.base_dir().join("tls"), cluster.owner())?;
                cluster.set("ssl", "on");
                cluster.set("ssl_cert_file", &tls.server_cert.display().to_string());
                cluster.set("ssl_key_file", &tls.server_key.display().to_string());
                Some(tls)
            }
            false => None,
        };
        for (name, value) in &options.settings {
            cluster.set(name, value);
        }
        cluster.start_server()?;
        let endpoint = Endpoint {
            host: "127.0.0.1",
            port: cluster.port(),
            socket_dir: cluster.socket_dir().to_owned(),
        };
        if options.md5_auth {
            let endpoint = endpoint.clone();
            block_on(async move {
                let client = endpoint.connect("postgres").await?;
                client
                    .batch_execute(&format!("CREATE ROLE {} NOLOGIN", quote_ident(MD5_GROUP)))
                    .await?;
                anyhow::Ok(())
            })
            .context("create the md5 group role")?;
        }
        Ok(PgCluster {
            cluster,
            endpoint,
            options,
            tls,
        })
    }

    /// [`PgCluster::start`] on tokio's blocking pool.
    pub async fn start_async(options: ClusterOptions) -> Result<PgCluster> {
        tokio::task::spawn_blocking(move || PgCluster::start(options)).await?
    }

    /// Stops the server (the cluster directory stays, [`PgCluster::start_server`] resumes it).
    /// Takes `&mut self`: the shared cluster cannot be stopped under other tests' feet.
    pub fn stop_server(&mut self, mode: StopMode) -> Result<()> {
        Ok(self.cluster.stop_server(mode)?)
    }

    /// Starts the stopped server again on the same port and waits until it is ready.
    pub fn start_server(&mut self) -> Result<()> {
        Ok(self.cluster.start_server()?)
    }

    /// [`PgCluster::stop_server`] then [`PgCluster::start_server`]. Blocking (about a second).
    pub fn restart(&mut self, mode: StopMode) -> Result<()> {
        Ok(self.cluster.restart(mode)?)
    }

    /// Stops the server and deletes the cluster directory (what `Drop` does, with errors).
    pub fn shutdown(self) -> Result<()> {
        Ok(self.cluster.shutdown()?)
    }

    /// [`PgCluster::shutdown`] on tokio's blocking pool.
    pub async fn shutdown_async(self) -> Result<()> {
        tokio::task::spawn_blocking(move || self.shutdown()).await?
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
        self.cluster.bin(name)
    }

    /// Server major version, e.g. 15.
    pub fn major_version(&self) -> u32 {
        self.cluster.major_version()
    }

    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    /// The temporary directory holding everything (data, socket, log); deleted at the end.
    pub fn base_dir(&self) -> &Path {
        self.cluster.base_dir()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.cluster.data_dir()
    }

    /// The postmaster's pid while the server runs.
    pub fn server_pid(&self) -> Option<u32> {
        self.cluster.server_pid()
    }

    /// The CA certificate clients should trust, when started with `ssl = on`.
    pub fn tls_ca_cert(&self) -> Option<&Path> {
        self.tls.as_ref().map(|tls| tls.ca_cert.as_path())
    }

    pub fn log_path(&self) -> PathBuf {
        self.cluster.log_path()
    }

    /// The last lines of the server log, for assertion messages.
    pub fn log_tail(&self) -> String {
        self.cluster.log_tail()
    }
}
