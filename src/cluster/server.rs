//! [`Cluster`]: initdb, configuration, start, readiness, stop and teardown of one throwaway
//! cluster (see the module docs of [`crate::cluster`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::os::{ServerUser, block_on, chown, process_running, tail, write_file};
use super::supervisor::{COMMAND_DEADLINE, STOP_DEADLINE, Supervisor};
use super::{ClusterConfig, ClusterError, Listen, SUPERUSER, Server, StopMode};
use crate::source::quote::quote_literal;

const INITDB_DEADLINE: Duration = Duration::from_secs(120);
const READY_DEADLINE: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const PORT_ATTEMPTS: usize = 5;
const LOG_TAIL_LINES: usize = 60;
/// The port of a Unix-socket-only cluster: it only names the socket file.
const UNIX_PORT: u16 = 5432;
/// Longest Unix socket path (`sun_path`, 108 bytes with the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A throwaway cluster; see the module docs. Dropping it stops the server and deletes the
/// directory.
pub struct Cluster {
    base: PathBuf,
    server: Server,
    config: ClusterConfig,
    /// 0 until the first start has picked a TCP port.
    port: u16,
    server_pid: Option<u32>,
    /// A `Mutex` only so that `Cluster` is `Sync`; commands take `&mut self`.
    supervisor: Mutex<Supervisor>,
}

impl Cluster {
    /// [`Cluster::init`], then [`Cluster::start_server`]. Blocking (seconds).
    pub fn start(server: Server, config: ClusterConfig) -> Result<Cluster, ClusterError> {
        let mut cluster = Cluster::init(server, config)?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// [`Cluster::start`] on tokio's blocking pool.
    pub async fn start_async(
        server: Server,
        config: ClusterConfig,
    ) -> Result<Cluster, ClusterError> {
        tokio::task::spawn_blocking(move || Cluster::start(server, config))
            .await
            .unwrap_or_else(|err| std::panic::resume_unwind(err.into_panic()))
    }

    /// Runs initdb into a fresh temporary directory and writes pg_hba.conf; the server is not
    /// started yet ([`Cluster::start_server`]). Blocking (seconds).
    pub fn init(server: Server, config: ClusterConfig) -> Result<Cluster, ClusterError> {
        let base = make_base_dir(&config.dir_prefix, server.owner())?;
        let supervisor = match Supervisor::spawn(&base, server.bin_dir(), server.owner()) {
            Ok(supervisor) => supervisor,
            Err(err) => {
                let _ = fs::remove_dir_all(&base);
                return Err(err);
            }
        };
        // From here on, dropping `cluster` (also on error) shuts down and deletes everything.
        let mut cluster = Cluster {
            base,
            server,
            config,
            port: 0,
            server_pid: None,
            supervisor: Mutex::new(supervisor),
        };
        if let Some(password) = &cluster.config.superuser_password {
            cluster.write_file("pwfile", &format!("{password}\n"), 0o600)?;
        }
        cluster.command("initdb", INITDB_DEADLINE, "initdb.log")?;
        let data = cluster.data_dir();
        cluster.write_file(data.join("pg_hba.conf"), &hba_conf(&cluster.config), 0o600)?;
        let conf_path = data.join("postgresql.conf");
        let mut conf = fs::read_to_string(&conf_path)
            .map_err(ClusterError::io(format!("read {}", conf_path.display())))?;
        conf.push_str("\n# Settings of walaudit (src/cluster)\ninclude 'walaudit.conf'\n");
        cluster.write_file(&conf_path, &conf, 0o600)?;
        Ok(cluster)
    }

    /// Adds a `postgresql.conf` setting, effective from the next start (it wins over earlier
    /// ones of the same name).
    pub fn set(&mut self, name: &str, value: &str) {
        self.config
            .settings
            .push((name.to_owned(), value.to_owned()));
    }

    /// Writes `contents` to `path` (relative to the cluster directory, or absolute) with
    /// permission bits `mode`, owned by the server's OS user.
    pub fn write_file(
        &self,
        path: impl AsRef<Path>,
        contents: &str,
        mode: u32,
    ) -> Result<(), ClusterError> {
        write_file(&self.base.join(path), contents, mode, self.server.owner())
    }

    /// Starts the server and waits until it accepts connections. The first start of a TCP
    /// cluster picks the port (another one if it turns out to be taken); later starts reuse it.
    pub fn start_server(&mut self) -> Result<(), ClusterError> {
        let Listen::Tcp { preferred_port } = self.config.listen else {
            self.port = UNIX_PORT;
            return self.launch();
        };
        if self.port != 0 {
            return self.launch();
        }
        let mut preferred = preferred_port;
        for attempt in 1..=PORT_ATTEMPTS {
            self.port = match preferred.take() {
                Some(port) => port,
                None => free_port()?,
            };
            let log_start = fs::metadata(self.log_path()).map(|m| m.len()).unwrap_or(0);
            match self.launch() {
                Ok(()) => return Ok(()),
                Err(err) if attempt < PORT_ATTEMPTS && self.port_taken_since(log_start) => {
                    eprintln!(
                        "PostgreSQL cluster: port {} was taken, retrying with another: {err}",
                        self.port
                    );
                }
                Err(err) => return Err(err),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Stops the server (the cluster directory stays, [`Cluster::start_server`] resumes it).
    pub fn stop_server(&mut self, mode: StopMode) -> Result<(), ClusterError> {
        let command = match mode {
            StopMode::Fast => "stop",
            StopMode::Immediate => "crash",
        };
        self.command(command, STOP_DEADLINE, "postgres.log")?;
        self.server_pid = None;
        Ok(())
    }

    /// [`Cluster::stop_server`] then [`Cluster::start_server`].
    pub fn restart(&mut self, mode: StopMode) -> Result<(), ClusterError> {
        self.stop_server(mode)?;
        self.start_server()
    }

    /// Stops the server and deletes the cluster directory (what `Drop` does, with errors).
    pub fn shutdown(mut self) -> Result<(), ClusterError> {
        self.shutdown_inner()
    }

    /// [`Cluster::shutdown`] on tokio's blocking pool.
    pub async fn shutdown_async(self) -> Result<(), ClusterError> {
        tokio::task::spawn_blocking(move || self.shutdown())
            .await
            .unwrap_or_else(|err| std::panic::resume_unwind(err.into_panic()))
    }

    /// `postgres://postgres@/<db>?host=<dir>&port=N`: the superuser over the Unix socket.
    pub fn unix_url(&self, db: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@/{db}?host={}&port={}",
            self.base.display(),
            self.port
        )
    }

    /// The port: TCP on 127.0.0.1 with [`Listen::Tcp`], else only the socket's name.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temporary directory holding everything (data, socket, logs); deleted at the end.
    pub fn base_dir(&self) -> &Path {
        &self.base
    }

    /// The directory of the server's Unix socket (the cluster directory).
    pub fn socket_dir(&self) -> &Path {
        &self.base
    }

    pub fn data_dir(&self) -> PathBuf {
        self.base.join("data")
    }

    /// The server binaries in use.
    pub fn bin_dir(&self) -> &Path {
        self.server.bin_dir()
    }

    /// Path of a server tool of the same installation, e.g. `bin("pg_recvlogical")`.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.server.bin_dir().join(name)
    }

    /// Server major version, e.g. 15.
    pub fn major_version(&self) -> u32 {
        self.server.major_version()
    }

    /// The OS user the server runs as, `None` when it runs as this process's user.
    pub fn owner(&self) -> Option<&ServerUser> {
        self.server.owner()
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The postmaster's pid while the server runs.
    pub fn server_pid(&self) -> Option<u32> {
        self.server_pid
    }

    pub fn log_path(&self) -> PathBuf {
        self.base.join("postgres.log")
    }

    /// The last lines of the server log, for error messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log_path(), LOG_TAIL_LINES)
    }

    /// Writes the settings, starts the server on `self.port` and waits until it is ready.
    fn launch(&mut self) -> Result<(), ClusterError> {
        let data = self.data_dir();
        self.write_file(
            data.join("walaudit.conf"),
            &settings_conf(&self.config, &self.base, self.port),
            0o600,
        )?;
        let reply = self.command("start", COMMAND_DEADLINE, "postgres.log")?;
        let pid: u32 = reply
            .parse()
            .map_err(|_| self.not_ready(format!("bad reply to start: {reply:?}")))?;
        self.server_pid = Some(pid);
        self.wait_ready(pid)
    }

    fn wait_ready(&self, pid: u32) -> Result<(), ClusterError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.base)
            .port(self.port)
            .user(SUPERUSER)
            .dbname("postgres")
            .application_name("walaudit-cluster-probe")
            .connect_timeout(PROBE_TIMEOUT);
        let deadline = Instant::now() + READY_DEADLINE;
        let ready = block_on(async move {
            let probe = || async {
                let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client.simple_query("SELECT 1").await.map(drop)
            };
            loop {
                if process_running(pid) == Some(false) {
                    return Err(format!("the postmaster (pid {pid}) exited during startup"));
                }
                let error = match tokio::time::timeout(PROBE_TIMEOUT, probe()).await {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(err)) => err.to_string(),
                    Err(_) => format!("no answer within {PROBE_TIMEOUT:?}"),
                };
                if Instant::now() >= deadline {
                    return Err(format!(
                        "not accepting connections after {READY_DEADLINE:?}: {error}"
                    ));
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        });
        ready.map_err(|reason| self.not_ready(reason))
    }

    fn not_ready(&self, reason: String) -> ClusterError {
        let data = self.data_dir();
        let listen = match self.config.listen {
            Listen::Unix => format!("{}/.s.PGSQL.{}", self.base.display(), self.port),
            Listen::Tcp { .. } => format!("127.0.0.1:{}", self.port),
        };
        ClusterError::NotReady {
            version: self.major_version(),
            listen: format!("{listen} (data directory {})", data.display()),
            reason,
            log: self.log_path().display().to_string(),
            tail: self.log_tail(),
        }
    }

    fn port_taken_since(&self, log_start: u64) -> bool {
        let log = fs::read(self.log_path()).unwrap_or_default();
        let new = log.get(log_start as usize..).unwrap_or_default();
        String::from_utf8_lossy(new).contains("Address already in use")
    }

    fn command(
        &mut self,
        command: &'static str,
        deadline: Duration,
        log: &str,
    ) -> Result<String, ClusterError> {
        let supervisor = self
            .supervisor
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        supervisor.command(command, deadline).map_err(|reply| {
            let log = self.base.join(log);
            ClusterError::Command {
                command,
                reply,
                log: log.display().to_string(),
                tail: tail(&log, 40),
            }
        })
    }

    fn shutdown_inner(&mut self) -> Result<(), ClusterError> {
        let pid = self.server_pid.take();
        let supervisor = self
            .supervisor
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        supervisor.finish(pid)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(err) = self.shutdown_inner() {
            eprintln!(
                "warning: PostgreSQL cluster {} did not shut down cleanly: {err}",
                self.base.display()
            );
        }
    }
}

/// pg_hba.conf: the caller's lines first, then local trust, then scram-sha-256 over TCP.
fn hba_conf(config: &ClusterConfig) -> String {
    let mut hba = String::from("# TYPE  DATABASE     USER  ADDRESS  METHOD\n");
    for line in &config.hba_lines {
        hba.push_str(line);
        hba.push('\n');
    }
    hba.push_str("local   all          all                   trust\n");
    hba.push_str("local   replication  all                   trust\n");
    if let Listen::Tcp { .. } = config.listen {
        hba.push_str("host    all          all   127.0.0.1/32   scram-sha-256\n");
        hba.push_str("host    replication  all   127.0.0.1/32   scram-sha-256\n");
    }
    hba
}

/// `walaudit.conf` (included last by postgresql.conf): the defaults, then the caller's
/// settings, so that the caller's win.
fn settings_conf(config: &ClusterConfig, socket_dir: &Path, port: u16) -> String {
    let listen = match config.listen {
        Listen::Unix => "",
        Listen::Tcp { .. } => "127.0.0.1",
    };
    let defaults = [
        ("listen_addresses", listen.to_owned()),
        ("port", port.to_string()),
        ("unix_socket_directories", socket_dir.display().to_string()),
        ("wal_level", config.wal_level.as_str().to_owned()),
        ("max_wal_senders", "10".into()),
        ("max_replication_slots", "10".into()),
        // Throwaway: durability buys nothing.
        ("fsync", "off".into()),
        ("full_page_writes", "off".into()),
        ("shared_buffers", "64MB".into()),
    ];
    let defaults = defaults.map(|(name, value)| (name.to_owned(), value));
    let mut conf = String::new();
    for (name, value) in defaults.into_iter().chain(config.settings.iter().cloned()) {
        conf.push_str(&format!("{name} = {}\n", quote_literal(&value)));
    }
    conf
}

fn make_base_dir(prefix: &str, owner: Option<&ServerUser>) -> Result<PathBuf, ClusterError> {
    let mut parent = std::env::temp_dir();
    // The socket path `<base>/.s.PGSQL.<port>` must fit in sun_path.
    let longest = prefix.len() + "XXXXXX/.s.PGSQL.65535".len() + 1;
    if parent.as_os_str().len() + longest > MAX_SOCKET_PATH {
        parent = PathBuf::from("/tmp");
    }
    let base = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&parent)
        .map_err(ClusterError::io(format!(
            "create a directory in {}",
            parent.display()
        )))?
        .keep();
    if let Err(err) = chown(&base, owner) {
        let _ = fs::remove_dir_all(&base);
        return Err(err);
    }
    Ok(base)
}

/// A port the kernel considers free, never the same twice in this process.
fn free_port() -> Result<u16, ClusterError> {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    for _ in 0..100 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(ClusterError::io("find a free TCP port on 127.0.0.1"))?
            .port();
        let mut handed_out = HANDED_OUT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return Ok(port);
        }
    }
    Err(ClusterError::NoFreePort)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::WalLevel;

    #[test]
    fn caller_settings_come_last_and_are_quoted() {
        let config = ClusterConfig {
            wal_level: WalLevel::Replica,
            ..ClusterConfig::default()
        }
        .setting("max_wal_senders", "20")
        .setting("application_name", "it's");
        let conf = settings_conf(&config, Path::new("/tmp/walaudit-pg-x"), 5432);
        let lines: Vec<&str> = conf.lines().collect();
        assert_eq!(lines[0], "listen_addresses = ''");
        assert!(lines.contains(&"unix_socket_directories = '/tmp/walaudit-pg-x'"));
        assert!(lines.contains(&"wal_level = 'replica'"));
        assert_eq!(
            lines[lines.len() - 2..],
            ["max_wal_senders = '20'", "application_name = 'it''s'"]
        );
    }

    #[test]
    fn pg_hba_puts_the_callers_lines_first_and_tcp_needs_a_password() {
        let unix = hba_conf(&ClusterConfig::default());
        assert!(!unix.contains("host "), "{unix}");
        let config = ClusterConfig {
            listen: Listen::Tcp {
                preferred_port: None,
            },
            hba_lines: vec!["host all +md5 127.0.0.1/32 md5".into()],
            ..ClusterConfig::default()
        };
        let tcp = hba_conf(&config);
        let lines: Vec<&str> = tcp.lines().collect();
        assert_eq!(lines[1], "host all +md5 127.0.0.1/32 md5");
        assert!(lines[lines.len() - 1].ends_with("scram-sha-256"), "{tcp}");
    }
}
