//! The config's `[api]` table and its `[[api.tokens]]`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::auth::Role;

/// Where the HTTP listener binds when neither `--listen` nor `api.listen` says.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9187";

/// `[api]`: the HTTP API's listener, access and limits.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address of the listener; `--listen` (or `WALAUDIT_LISTEN`) overrides it.
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain: with `tls_key`, the listener speaks only HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Allow plain HTTP on an address other than loopback (behind a TLS-terminating proxy).
    pub allow_plain_http: bool,
    /// Serve `/metrics` and `/readyz` without a token (for a Prometheus or a probe that sends
    /// none).
    pub public_metrics: bool,
    /// The field of the audit context that `company_id` filters on and reports.
    pub company_field: String,
    /// Longest an API query of the lake may take.
    #[serde(with = "crate::config::duration_text")]
    pub query_timeout: Duration,
    /// Memory the API's lake queries share (they spill or fail rather than grow past it).
    #[serde(with = "crate::config::size_text")]
    pub query_memory: u64,
    /// How long a view of the lake is reused before the latest commits are looked for.
    #[serde(with = "crate::config::duration_text")]
    pub refresh_interval: Duration,
    /// The bearer tokens: a name, a role and the token's SHA-256 (`walaudit token create`).
    pub tokens: Vec<TokenConfig>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: None,
            tls_cert: None,
            tls_key: None,
            allow_plain_http: false,
            public_metrics: false,
            company_field: "company_id".into(),
            query_timeout: Duration::from_secs(30),
            query_memory: 256 << 20,
            refresh_interval: Duration::from_secs(1),
            tokens: Vec::new(),
        }
    }
}

/// One `[[api.tokens]]` entry.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds the token: the author of job changes made with it.
    pub name: String,
    pub role: Role,
    /// Lowercase hex SHA-256 of the token (never the token itself).
    pub sha256: String,
}

impl ApiConfig {
    /// The address to bind: the flag, else `api.listen`, else [`DEFAULT_LISTEN`].
    pub fn listen_or(&self, flag: Option<SocketAddr>) -> SocketAddr {
        flag.or(self.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("a valid default address"))
    }

    /// Checks what the types alone do not: `(key, reason)` of the first problem.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let invalid = |key: &str, reason: &str| Err((key.to_owned(), reason.to_owned()));
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return invalid(
                "api.tls_cert",
                "set both api.tls_cert and api.tls_key (PEM files), or neither",
            );
        }
        if self.company_field.trim().is_empty() {
            return invalid("api.company_field", "must not be empty");
        }
        if self.query_memory < 16 << 20 {
            return invalid("api.query_memory", "must be at least 16MiB");
        }
        if self.query_timeout < Duration::from_millis(100) {
            return invalid("api.query_timeout", "must be at least 100ms");
        }
        let mut names = std::collections::HashSet::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let key = format!("api.tokens[{i}]");
            if t.name.trim().is_empty() || !names.insert(t.name.as_str()) {
                return invalid(&key, "each token needs a name of its own");
            }
            if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return invalid(
                    &format!("{key}.sha256"),
                    "must be the 64 hex digits `walaudit token create` prints (never the \
                     token itself)",
                );
            }
        }
        Ok(())
    }

    /// TLS files, when both are set.
    pub fn tls(&self) -> Option<(&PathBuf, &PathBuf)> {
        self.tls_cert.as_ref().zip(self.tls_key.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_problems() {
        let c = ApiConfig::default();
        assert_eq!(c.listen_or(None).to_string(), DEFAULT_LISTEN);
        assert!(c.validate().is_ok());
        let half_tls = ApiConfig {
            tls_cert: Some("c.pem".into()),
            ..ApiConfig::default()
        };
        assert_eq!(half_tls.validate().unwrap_err().0, "api.tls_cert");
        let plain_token = ApiConfig {
            tokens: vec![TokenConfig {
                name: "ci".into(),
                role: Role::Viewer,
                sha256: "wa_secret".into(),
            }],
            ..ApiConfig::default()
        };
        assert_eq!(
            plain_token.validate().unwrap_err().0,
            "api.tokens[0].sha256"
        );
        let twice = ApiConfig {
            tokens: vec![
                TokenConfig {
                    name: "ci".into(),
                    role: Role::Viewer,
                    sha256: "a".repeat(64),
                };
                2
            ],
            ..ApiConfig::default()
        };
        assert_eq!(twice.validate().unwrap_err().0, "api.tokens[1]");
    }
}
