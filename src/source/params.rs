//! Connection parameters for the source database, parsed like libpq does.
//!
//! Two spellings are accepted:
//!
//! ```text
//! postgres[ql]://user:password@host:port/dbname?sslmode=verify-full&sslrootcert=/ca.pem
//! host=/var/run/postgresql port=5432 user=walaudit dbname=app sslmode=disable
//! ```
//!
//! User and password are percent-decoded. A host starting with `/` is the directory of a Unix
//! socket (TLS is never used there, as in libpq). Missing values come from `PGHOST`, `PGPORT`,
//! `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`, `PGAPPNAME` and
//! `PGCONNECT_TIMEOUT`; then host `localhost`, port 5432, user = the OS user, dbname = user.
//!
//! `Debug` and `Display` never show the password.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::conninfo::{parse_conninfo, parse_url, percent_encode};
use super::error::SourceError;

/// The session settings every walaudit connection runs with: the value parsers in
/// `decode::value` rely on these text formats.
pub const SESSION_OPTIONS: &str = "-c DateStyle=ISO -c TimeZone=UTC -c bytea_output=hex \
                                   -c extra_float_digits=3 -c IntervalStyle=postgres";

/// Default `connect_timeout` when neither the URL nor `PGCONNECT_TIMEOUT` sets one.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// libpq's `sslmode`. `prefer` and `require` encrypt without checking the certificate (unless
/// `sslrootcert` is given with `require`, which then behaves like `verify-ca`, as in libpq).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    /// Whether a server that refuses TLS must be refused in turn.
    pub fn requires_tls(self) -> bool {
        !matches!(self, SslMode::Disable | SslMode::Prefer)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        })
    }
}

impl FromStr for SslMode {
    type Err = SourceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "disable" => SslMode::Disable,
            // libpq's `allow` tries plain first; we treat it as `prefer` (TLS first).
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(invalid(format!(
                    "sslmode `{other}` is unknown: use disable, prefer, require, verify-ca or \
                     verify-full"
                )));
            }
        })
    }
}

/// Where the server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// A host name or IP address (IPv6 without brackets).
    Tcp(String),
    /// The directory holding the Unix socket `.s.PGSQL.<port>`.
    Unix(PathBuf),
}

/// A password that never shows up in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(password: impl Into<String>) -> Self {
        Password(password.into())
    }

    /// The secret itself, for authentication only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// How to reach and log in to the source database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnParams {
    pub host: Host,
    pub port: u16,
    pub user: String,
    pub password: Option<Password>,
    pub dbname: String,
    pub sslmode: SslMode,
    /// PEM file with trusted CA certificates; `system` means the OS trust store.
    pub sslrootcert: Option<PathBuf>,
    pub application_name: String,
    /// `None`: wait forever (`connect_timeout=0`).
    pub connect_timeout: Option<Duration>,
}

const KNOWN_KEYS: &str = "host, port, user, password, dbname, sslmode, sslrootcert, \
                          application_name, connect_timeout";

fn invalid(reason: impl Into<String>) -> SourceError {
    SourceError::InvalidParams {
        reason: reason.into(),
    }
}

impl ConnParams {
    /// Parses a URL or key=value string, filling gaps from the process environment.
    pub fn parse(s: &str) -> Result<Self, SourceError> {
        Self::parse_with_env(s, |key| std::env::var(key).ok().filter(|v| !v.is_empty()))
    }

    /// Parses with `env` standing in for the process environment (for tests).
    pub fn parse_with_env(
        s: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SourceError> {
        let s = s.trim();
        let pairs = if let Some(rest) = s
            .strip_prefix("postgresql://")
            .or_else(|| s.strip_prefix("postgres://"))
        {
            parse_url(rest)?
        } else if s.is_empty() || s.contains('=') {
            parse_conninfo(s)?
        } else {
            return Err(invalid(
                "expected a URL like postgres://user:password@host:5432/dbname or key=value pairs \
                 like `host=localhost dbname=app`",
            ));
        };
        Self::from_pairs(pairs, env)
    }

    fn from_pairs(
        pairs: Vec<(String, String)>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SourceError> {
        let mut get = std::collections::HashMap::new();
        for (key, value) in pairs {
            let env_name = match key.as_str() {
                "host" => "PGHOST",
                "port" => "PGPORT",
                "user" => "PGUSER",
                "password" => "PGPASSWORD",
                "dbname" => "PGDATABASE",
                "sslmode" => "PGSSLMODE",
                "sslrootcert" => "PGSSLROOTCERT",
                "application_name" => "PGAPPNAME",
                "connect_timeout" => "PGCONNECT_TIMEOUT",
                "options" | "replication" => {
                    return Err(invalid(format!(
                        "`{key}` cannot be set: walaudit sets it itself (the value parsers \
                         depend on it)"
                    )));
                }
                other => {
                    return Err(invalid(format!(
                        "unknown parameter `{other}`: supported are {KNOWN_KEYS}"
                    )));
                }
            };
            get.insert(env_name, value);
        }
        let value = |name: &str| get.get(name).cloned().or_else(|| env(name));

        let host = value("PGHOST").unwrap_or_else(|| "localhost".to_owned());
        if host.contains(',') {
            return Err(invalid(format!(
                "several hosts (`{host}`) are not supported: give exactly one"
            )));
        }
        let host = if host.starts_with('/') {
            Host::Unix(PathBuf::from(host))
        } else if host.is_empty() {
            return Err(invalid("the host is empty"));
        } else {
            Host::Tcp(host)
        };
        let port = match value("PGPORT") {
            None => 5432,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                invalid(format!("port `{p}` is not a number between 1 and 65535"))
            })?,
        };
        let user = value("PGUSER")
            .or_else(|| env("USER"))
            .or_else(|| env("LOGNAME"))
            .ok_or_else(|| invalid("no user given: put it in the URL (postgres://user@host/db)"))?;
        let dbname = value("PGDATABASE").unwrap_or_else(|| user.clone());
        let sslmode = value("PGSSLMODE")
            .map(|m| m.parse())
            .transpose()?
            .unwrap_or_default();
        let connect_timeout = match value("PGCONNECT_TIMEOUT") {
            None => Some(DEFAULT_CONNECT_TIMEOUT),
            Some(t) => {
                let secs: i64 = t.trim().parse().map_err(|_| {
                    invalid(format!(
                        "connect_timeout `{t}` is not a whole number of seconds"
                    ))
                })?;
                // As libpq: zero or negative waits forever; 1 is raised to 2.
                (secs > 0).then(|| Duration::from_secs(secs.max(2) as u64))
            }
        };
        Ok(ConnParams {
            host,
            port,
            user,
            password: value("PGPASSWORD").map(Password),
            dbname,
            sslmode,
            sslrootcert: value("PGSSLROOTCERT").map(PathBuf::from),
            application_name: value("PGAPPNAME").unwrap_or_else(|| "walaudit".to_owned()),
            connect_timeout,
        })
    }

    /// `host:port` or the socket path, for messages.
    pub fn address(&self) -> String {
        match &self.host {
            Host::Tcp(h) if h.contains(':') => format!("[{h}]:{}", self.port),
            Host::Tcp(h) => format!("{h}:{}", self.port),
            Host::Unix(dir) => self
                .socket_path()
                .map_or_else(|| dir.display().to_string(), |p| p.display().to_string()),
        }
    }

    /// The Unix socket file, when the host is a directory.
    pub fn socket_path(&self) -> Option<PathBuf> {
        match &self.host {
            Host::Unix(dir) => Some(dir.join(format!(".s.PGSQL.{}", self.port))),
            Host::Tcp(_) => None,
        }
    }
}

impl ConnParams {
    /// Opens an ordinary SQL connection (tokio-postgres) with the same TLS rules and session
    /// settings as the replication connection. The connection task is spawned; it ends when
    /// the returned client is dropped.
    pub async fn connect_sql(&self) -> Result<tokio_postgres::Client, SourceError> {
        let connect = async {
            let socket = super::transport::connect(self).await?;
            let mut config = tokio_postgres::Config::new();
            config
                .user(&self.user)
                .dbname(&self.dbname)
                .application_name(&self.application_name)
                .options(SESSION_OPTIONS)
                // TLS, if any, is already up: `transport` negotiated it per sslmode.
                .ssl_mode(tokio_postgres::config::SslMode::Disable);
            if let Some(password) = &self.password {
                config.password(password.expose());
            }
            config
                .connect_raw(socket, tokio_postgres::NoTls)
                .await
                .map_err(|err| {
                    let ctx = super::error::ErrorContext {
                        command: "connect",
                        replication: false,
                        user: &self.user,
                        database: &self.dbname,
                        slot: None,
                        streaming: false,
                    };
                    super::error::map_sql_error(err, "connecting", &ctx)
                })
        };
        let (client, connection) = match self.connect_timeout {
            Some(timeout) => tokio::time::timeout(timeout, connect).await.map_err(|_| {
                SourceError::ConnectTimeout {
                    addr: self.address(),
                    timeout,
                }
            })??,
            None => connect.await?,
        };
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "source sql connection ended with an error");
            }
        });
        Ok(client)
    }
}

impl FromStr for ConnParams {
    type Err = SourceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConnParams::parse(s)
    }
}

/// A URL with the password replaced by `***`.
impl fmt::Display for ConnParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "postgres://{}", percent_encode(&self.user))?;
        if self.password.is_some() {
            f.write_str(":***")?;
        }
        f.write_str("@")?;
        match &self.host {
            Host::Tcp(h) if h.contains(':') => write!(f, "[{h}]:{}", self.port)?,
            Host::Tcp(h) => write!(f, "{h}:{}", self.port)?,
            Host::Unix(_) => {}
        }
        write!(
            f,
            "/{}?sslmode={}",
            percent_encode(&self.dbname),
            self.sslmode
        )?;
        if let Host::Unix(dir) = &self.host {
            write!(
                f,
                "&host={}&port={}",
                percent_encode(&dir.to_string_lossy()),
                self.port
            )?;
        }
        if let Some(root) = &self.sslrootcert {
            write!(
                f,
                "&sslrootcert={}",
                percent_encode(&root.to_string_lossy())
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(s: &str) -> ConnParams {
        ConnParams::parse_with_env(s, |k| (k == "USER").then(|| "osuser".to_owned())).unwrap()
    }

    #[test]
    fn full_url() {
        let p = parse(
            "postgresql://al%40ice:p%40ss%3Aw%2Fd@db.example.com:6543/my%20db?sslmode=verify-full\
             &sslrootcert=/etc/ca.pem&application_name=audit&connect_timeout=5",
        );
        assert_eq!(p.host, Host::Tcp("db.example.com".into()));
        assert_eq!(p.port, 6543);
        assert_eq!(p.user, "al@ice");
        assert_eq!(p.password.as_ref().unwrap().expose(), "p@ss:w/d");
        assert_eq!(p.dbname, "my db");
        assert_eq!(p.sslmode, SslMode::VerifyFull);
        assert_eq!(p.sslrootcert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(p.application_name, "audit");
        assert_eq!(p.connect_timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn defaults() {
        let p = parse("postgres://");
        assert_eq!(p.host, Host::Tcp("localhost".into()));
        assert_eq!(p.port, 5432);
        assert_eq!(p.user, "osuser");
        assert_eq!(p.dbname, "osuser");
        assert_eq!(p.sslmode, SslMode::Prefer);
        assert_eq!(p.password, None);
        assert_eq!(p.connect_timeout, Some(DEFAULT_CONNECT_TIMEOUT));
        let env = |k: &str| match k {
            "PGUSER" => Some("envuser".to_owned()),
            "PGPASSWORD" => Some("envpw".to_owned()),
            "PGPORT" => Some("5499".to_owned()),
            _ => None,
        };
        let p = ConnParams::parse_with_env("postgres://h/db", env).unwrap();
        assert_eq!(
            (p.user.as_str(), p.port, p.dbname.as_str()),
            ("envuser", 5499, "db")
        );
        assert_eq!(p.password.unwrap().expose(), "envpw");
        // The URL wins over the environment.
        let p = ConnParams::parse_with_env("postgres://u@h:1/db", env).unwrap();
        assert_eq!((p.user.as_str(), p.port), ("u", 1));
    }

    #[test]
    fn unix_socket_and_ipv6() {
        let p = parse("postgres://u@/db?host=/tmp/sock&port=5491");
        assert_eq!(p.host, Host::Unix("/tmp/sock".into()));
        assert_eq!(
            p.socket_path(),
            Some(PathBuf::from("/tmp/sock/.s.PGSQL.5491"))
        );
        let p = parse("postgres://u@%2Fvar%2Frun%2Fpostgresql/db");
        assert_eq!(p.host, Host::Unix("/var/run/postgresql".into()));
        let p = parse("postgres://u@[::1]:5433/db");
        assert_eq!(p.host, Host::Tcp("::1".into()));
        assert_eq!(p.port, 5433);
        assert_eq!(p.address(), "[::1]:5433");
    }

    #[test]
    fn conninfo() {
        let p = parse(r"host=/tmp port = 5491 user=bob password='it\'s \\ x' dbname=app");
        assert_eq!(p.host, Host::Unix("/tmp".into()));
        assert_eq!(p.port, 5491);
        assert_eq!(p.password.unwrap().expose(), r"it's \ x");
        assert_eq!(p.dbname, "app");
        let p = parse(r"user=a\ b sslmode=disable");
        assert_eq!(p.user, "a b");
        assert_eq!(p.sslmode, SslMode::Disable);
    }

    #[test]
    fn rejects_with_reason() {
        for (s, needle) in [
            ("postgres://h?sslmode=maybe", "sslmode `maybe`"),
            ("postgres://h:99999/db", "port `99999`"),
            ("postgres://h/db?foo=1", "unknown parameter `foo`"),
            ("postgres://h/db?options=-cx", "walaudit sets it itself"),
            ("postgres://a,b/db", "several hosts"),
            ("postgres://u:p%zz@h/db", "percent-encoding in the password"),
            ("mysql://h/db", "expected a URL"),
            ("host='x", "unterminated"),
        ] {
            let err =
                ConnParams::parse_with_env(s, |k| (k == "USER").then(|| "x".into())).unwrap_err();
            assert!(err.to_string().contains(needle), "{s}: {err}");
        }
        let err = ConnParams::parse_with_env("postgres://h/db", no_env).unwrap_err();
        assert!(err.to_string().contains("no user given"), "{err}");
    }

    #[test]
    fn password_is_never_shown() {
        let p = parse("postgres://bob:s3cr%21t@h/db");
        assert_eq!(p.password.as_ref().unwrap().expose(), "s3cr!t");
        let shown = format!("{p} {p:?}");
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(shown.contains("***"));
        assert_eq!(p.to_string(), "postgres://bob:***@h:5432/db?sslmode=prefer");
        let p = parse("postgres://bob@/db?host=/tmp/s");
        assert_eq!(
            p.to_string(),
            "postgres://bob@/db?sslmode=prefer&host=/tmp/s&port=5432"
        );
    }

    #[test]
    fn connect_timeout_like_libpq() {
        assert_eq!(
            parse("postgres://h?connect_timeout=0").connect_timeout,
            None
        );
        assert_eq!(
            parse("postgres://h?connect_timeout=1").connect_timeout,
            Some(Duration::from_secs(2))
        );
    }
}
