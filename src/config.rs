//! Engine configuration: a TOML file (`config/walaudit.toml` documents every key), then
//! environment variables, then command-line flags, each overriding the one before.
//!
//! Loading is synchronous and happens before the runtime starts; a bad file fails at start
//! with the key and the reason.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The configuration could not be loaded or is invalid. Permanent: fix the file or the flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    #[error(
        "no source database given: set source.url in the config file, WALAUDIT_SOURCE, or \
         --source postgres://user:password@host:5432/db"
    )]
    MissingSource,
}

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub source: SourceConfig,
    pub capture: CaptureConfig,
    pub lake: LakeConfig,
    pub snapshot: SnapshotConfig,
    pub checks: crate::checks::config::ChecksConfig,
    pub connections: crate::checks::config::Connections,
    pub alerts: crate::checks::alert::AlertsConfig,
    pub api: crate::api::config::ApiConfig,
}

/// `[source]`: the Postgres database and its replication slot.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// Connection URL (`postgres://user:password@host:port/db?sslmode=…`). Env: WALAUDIT_SOURCE.
    pub url: Option<String>,
    /// Replication slot name. Env: WALAUDIT_SLOT.
    pub slot: String,
    /// Publication name. Env: WALAUDIT_PUBLICATION.
    pub publication: String,
    /// Create the slot when it does not exist.
    pub create_slot: bool,
    /// Create the publication when it does not exist.
    pub create_publication: bool,
    /// Tables (`schema.table`) for a publication walaudit creates; empty means all tables.
    pub publication_tables: Vec<String>,
    /// How often progress is reported to the server (standby status update).
    #[serde(with = "duration_text")]
    pub status_interval: Duration,
    /// Prefix of the logical messages that carry a transaction's audit context.
    pub context_prefix: String,
    /// Warn (log) when the slot retains more WAL than this; 0 turns the warning off.
    #[serde(with = "size_text")]
    pub retained_wal_warn: u64,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            url: None,
            slot: "walaudit".into(),
            publication: "walaudit".into(),
            create_slot: true,
            create_publication: true,
            publication_tables: Vec::new(),
            status_interval: Duration::from_secs(10),
            context_prefix: "walaudit".into(),
            retained_wal_warn: 1 << 30,
        }
    }
}

/// `[capture]`: transaction assembly.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// Memory for the changes of open (not yet committed) transactions; past it, the largest
    /// transaction spills to disk.
    #[serde(with = "size_text")]
    pub max_memory: u64,
    /// Directory for spill files (anonymous, removed on exit). Default: the system temp dir.
    pub spill_dir: Option<PathBuf>,
    /// Changes handed to the sink at a time when a transaction is released.
    pub chunk_changes: usize,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            max_memory: 128 << 20,
            spill_dir: None,
            chunk_changes: 8192,
        }
    }
}

/// `[lake]`: where the audit lake lives and how changes are flushed to it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// Lake location: a path, or a `file://`, `s3://`, `gs://` or `az://` URL. Env: WALAUDIT_LAKE.
    pub url: String,
    /// Flush a table once it holds this many pending changes.
    pub flush_rows: usize,
    /// Flush a table once its pending changes take about this many bytes.
    #[serde(with = "size_text")]
    pub flush_bytes: u64,
    /// Flush a table once its oldest pending change is this old.
    #[serde(with = "duration_text")]
    pub flush_interval: Duration,
    /// Memory for pending changes across all tables; past it the largest table is flushed.
    #[serde(with = "size_text")]
    pub max_memory: u64,
    /// Compact small files of a table every this many commits to it (0: never).
    pub optimize_every_commits: u64,
    /// Attempts of one Delta commit on transient storage errors before the engine stops.
    pub commit_attempts: u32,
    /// S3 (and S3-compatible) options; unset values come from the usual AWS_* variables.
    pub s3: S3Config,
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            url: "./lake".into(),
            flush_rows: 100_000,
            flush_bytes: 64 << 20,
            flush_interval: Duration::from_secs(1),
            max_memory: 256 << 20,
            optimize_every_commits: 500,
            commit_attempts: 6,
            s3: S3Config::default(),
        }
    }
}

/// When `run` loads the rows that existed before capture (`[snapshot] mode`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotMode {
    /// Load every captured table that has no finished load (at start, and tables added to the
    /// publication later), resume interrupted loads, and stream.
    Initial,
    /// Never load existing rows: the lake starts with the changes streamed from the slot.
    Never,
    /// Like `initial`, then exit without streaming (the same as `walaudit snapshot`).
    Only,
}

/// The COPY format of the historical load (`[snapshot] copy_format`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CopyFormat {
    /// Binary for tables whose every column has a binary reader, text for the others.
    #[default]
    Auto,
    /// Text for every table (slower; for comparison, or to rule the binary readers out).
    Text,
}

/// `[snapshot]`: the historical load of existing rows.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotConfig {
    pub mode: SnapshotMode,
    /// Parallel COPY sessions (each holds one connection and the exported snapshot).
    pub workers: usize,
    /// Target rows per chunk: the unit of parallelism, of commit and of resume.
    pub chunk_rows: u64,
    /// How often `run` looks for tables added to the publication.
    #[serde(with = "duration_text")]
    pub poll_interval: Duration,
    /// COPY format of the chunks.
    pub copy_format: CopyFormat,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            mode: SnapshotMode::Initial,
            workers: default_snapshot_workers(),
            chunk_rows: 250_000,
            poll_interval: Duration::from_secs(10),
            copy_format: CopyFormat::Auto,
        }
    }
}

/// Parallel COPY sessions by default: the host's cores, at least 2 and at most 8.
pub fn default_snapshot_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, std::num::NonZero::get)
        .clamp(2, 8)
}

/// `[lake.s3]`: options of an `s3://` lake.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Endpoint of an S3-compatible server, e.g. `http://localhost:9000` (AWS_ENDPOINT_URL).
    pub endpoint: Option<String>,
    /// Region (AWS_REGION).
    pub region: Option<String>,
    /// Access key id (AWS_ACCESS_KEY_ID).
    pub access_key_id: Option<String>,
    /// Secret access key (AWS_SECRET_ACCESS_KEY).
    pub secret_access_key: Option<String>,
    /// Allow plain `http://` endpoints (AWS_ALLOW_HTTP).
    pub allow_http: Option<bool>,
}

/// Values that override the file, from the environment or flags.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub source: Option<String>,
    pub slot: Option<String>,
    pub publication: Option<String>,
    pub lake: Option<String>,
}

impl Config {
    /// Load `path` (or defaults when `None`), then apply environment variables and `flags`.
    pub fn load(path: Option<&Path>, flags: &Overrides) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => Self::from_file(path)?,
            None => Config::default(),
        };
        config.apply(&Overrides::from_env());
        config.apply(flags);
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parse TOML text; the error names the key, the line and the reason.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().replace('\n', " "))
    }

    fn apply(&mut self, o: &Overrides) {
        if let Some(url) = &o.source {
            self.source.url = Some(url.clone());
        }
        if let Some(slot) = &o.slot {
            self.source.slot = slot.clone();
        }
        if let Some(publication) = &o.publication {
            self.source.publication = publication.clone();
        }
        if let Some(lake) = &o.lake {
            self.lake.url = lake.clone();
        }
    }

    /// Check values whose type alone does not make them valid.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            key: key.into(),
            reason,
        };
        if !valid_slot_name(&self.source.slot) {
            return Err(invalid(
                "source.slot",
                format!(
                    "`{}` is not a valid slot name: use 1-63 lowercase letters, digits and \
                     underscores",
                    self.source.slot
                ),
            ));
        }
        if self.source.publication.is_empty() {
            return Err(invalid("source.publication", "must not be empty".into()));
        }
        if self.source.status_interval < Duration::from_millis(10) {
            return Err(invalid(
                "source.status_interval",
                "must be at least 10ms".into(),
            ));
        }
        if self.capture.max_memory < 1 << 20 {
            return Err(invalid(
                "capture.max_memory",
                "must be at least 1MiB".into(),
            ));
        }
        if self.capture.chunk_changes == 0 {
            return Err(invalid(
                "capture.chunk_changes",
                "must be at least 1".into(),
            ));
        }
        if self.snapshot.workers == 0 || self.snapshot.workers > 64 {
            return Err(invalid(
                "snapshot.workers",
                "must be between 1 and 64".into(),
            ));
        }
        if self.snapshot.chunk_rows == 0 {
            return Err(invalid("snapshot.chunk_rows", "must be at least 1".into()));
        }
        if self.snapshot.poll_interval < Duration::from_millis(100) {
            return Err(invalid(
                "snapshot.poll_interval",
                "must be at least 100ms".into(),
            ));
        }
        if self.checks.max_concurrent == 0 || self.checks.source_max_concurrent == 0 {
            return Err(invalid(
                "checks.max_concurrent",
                "must be at least 1 (checks.source_max_concurrent too)".into(),
            ));
        }
        for (name, c) in &self.connections {
            if matches!(name.as_str(), "lake" | "source") || !crate::checks::load::valid_name(name)
            {
                return Err(invalid(
                    &format!("connections.{name}"),
                    "is reserved or not a valid name: use letters, digits, `_`, `.` and `-`, \
                     other than `lake` and `source`"
                        .into(),
                ));
            }
            if c.max_concurrent == 0 {
                return Err(invalid(
                    &format!("connections.{name}.max_concurrent"),
                    "must be at least 1".into(),
                ));
            }
            if c.kind != "postgres" {
                return Err(invalid(
                    &format!("connections.{name}.kind"),
                    format!(
                        "is {:?}; only \"postgres\" (the Postgres wire protocol: Postgres, \
                         Redshift) is built yet (snowflake and files are not)",
                        c.kind
                    ),
                ));
            }
        }
        self.api
            .validate()
            .map_err(|(key, reason)| invalid(&key, reason))?;
        self.validate_lake()
    }

    fn validate_lake(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        };
        let lake = &self.lake;
        if lake.url.trim().is_empty() {
            return Err(invalid("lake.url", "must not be empty"));
        }
        if lake.flush_rows == 0 {
            return Err(invalid("lake.flush_rows", "must be at least 1"));
        }
        if lake.flush_bytes < 64 << 10 {
            return Err(invalid("lake.flush_bytes", "must be at least 64KiB"));
        }
        if lake.flush_interval < Duration::from_millis(10) {
            return Err(invalid("lake.flush_interval", "must be at least 10ms"));
        }
        if lake.max_memory < 1 << 20 {
            return Err(invalid("lake.max_memory", "must be at least 1MiB"));
        }
        if lake.commit_attempts == 0 {
            return Err(invalid("lake.commit_attempts", "must be at least 1"));
        }
        Ok(())
    }

    /// The source URL, or the error that tells how to give one.
    pub fn source_url(&self) -> Result<&str, ConfigError> {
        self.source.url.as_deref().ok_or(ConfigError::MissingSource)
    }
}

impl Overrides {
    /// `WALAUDIT_SOURCE`, `WALAUDIT_SLOT`, `WALAUDIT_PUBLICATION`, `WALAUDIT_LAKE`.
    pub fn from_env() -> Overrides {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        Overrides {
            source: var("WALAUDIT_SOURCE"),
            slot: var("WALAUDIT_SLOT"),
            publication: var("WALAUDIT_PUBLICATION"),
            lake: var("WALAUDIT_LAKE"),
        }
    }
}

/// Postgres slot names: lowercase letters, digits, underscore; at most 63 bytes.
pub fn valid_slot_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Parse `500ms`, `10s`, `2m`, `1h`, `3d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: use e.g. 500ms, 10s, 2m, 1h, 3d"))?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}`: use ms, s, m, h or d"
            ));
        }
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Parse `64KiB`, `256MiB`, `1GiB`, `1000000` (bytes); `KB`/`MB`/`GB` are decimal.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size: use e.g. 64MiB, 1GiB"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit `{other}`: use B, KiB, MiB or GiB"
            ));
        }
    };
    value
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large"))
}

pub(crate) mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

pub(crate) mod size_text {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Size::deserialize(d)? {
            Size::Bytes(n) => Ok(n),
            Size::Text(text) => super::parse_size(&text).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example_parses_and_validates() {
        let text = include_str!("../config/walaudit.toml");
        let config = Config::from_toml(text).expect("config/walaudit.toml must parse");
        config
            .validate()
            .expect("config/walaudit.toml must be valid");
        assert_eq!(config.source.slot, "walaudit");
        assert_eq!(config.capture.max_memory, 128 << 20);
        assert_eq!(config.source.status_interval, Duration::from_secs(10));
        assert_eq!(config.lake, LakeConfig::default());
        assert_eq!(config.source, SourceConfig::default());
        let config = Config::from_toml("[source]\nretained_wal_warn = \"256MiB\"\n").unwrap();
        assert_eq!(config.source.retained_wal_warn, 256 << 20);
        let snapshot = SnapshotConfig {
            workers: config.snapshot.workers,
            ..SnapshotConfig::default()
        };
        assert_eq!(config.snapshot, snapshot);
        let text = Config::from_toml("[snapshot]\ncopy_format = \"text\"\n").unwrap();
        assert_eq!(text.snapshot.copy_format, CopyFormat::Text);
        assert!(Config::from_toml("[snapshot]\ncopy_format = \"csv\"\n").is_err());
    }

    #[test]
    fn lake_keys_are_validated() {
        let config = Config::from_toml(
            "[lake]\nurl = \"s3://bucket/lake\"\nflush_rows = 10\nflush_interval = \"250ms\"\n\
             [lake.s3]\nendpoint = \"http://localhost:9000\"\nallow_http = true\n",
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.lake.flush_interval, Duration::from_millis(250));
        assert_eq!(config.lake.s3.allow_http, Some(true));
        let mut bad = config.clone();
        bad.lake.flush_rows = 0;
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.starts_with("config key `lake.flush_rows`"), "{err}");
        let err = Config::from_toml("[lake.s3]\nbucket = \"x\"\n").unwrap_err();
        assert!(err.contains("bucket"), "{err}");
    }

    #[test]
    fn unknown_key_names_the_key() {
        let err = Config::from_toml("[source]\nslott = \"x\"\n").unwrap_err();
        assert!(err.contains("slott"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key_and_reason() {
        let err = Config::from_toml("[source]\nstatus_interval = \"ten\"\n").unwrap_err();
        assert!(
            err.contains("status_interval") && err.contains("not a duration"),
            "{err}"
        );
        let err = Config::from_toml("[capture]\nmax_memory = \"12 parsecs\"\n").unwrap_err();
        assert!(
            err.contains("max_memory") && err.contains("unknown size unit"),
            "{err}"
        );
        let mut config = Config::default();
        config.source.slot = "Bad-Slot".into();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.starts_with("config key `source.slot`"), "{err}");
    }

    #[test]
    fn flags_override_file() {
        let mut config = Config::from_toml("[source]\nslot = \"from_file\"\n").unwrap();
        config.apply(&Overrides {
            slot: Some("from_flag".into()),
            ..Default::default()
        });
        assert_eq!(config.source.slot, "from_flag");
        assert!(config.source_url().is_err());
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("3 fortnights").is_err());
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert!(parse_size("99999999999GiB").is_err());
    }
}
