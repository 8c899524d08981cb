//! Bearer tokens and roles.
//!
//! ```text
//!  Authorization: Bearer <token> ─► SHA-256 ─► compared in constant time with every
//!  configured hash ─► Caller { name, role }   (none matches, or no header: 401)
//!  handler: caller.require(Role::Operator)? ─► 403 when the role is below
//! ```
//!
//! # Invariants
//! * Only the SHA-256 of a token is ever configured or held; the token is never logged.
//! * The comparison does not stop at the first match, so timing tells nothing about which
//!   hash (if any) is close.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::config::TokenConfig;
use super::error::ApiError;

/// What a token may do; each role has every right of those before it.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Deserialize,
    Serialize,
    clap::ValueEnum,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads events (metadata only), runs, alerts and reports.
    Viewer,
    /// Also reads row values, before/after images and failed-row samples.
    Auditor,
    /// Also triggers runs and acknowledges alerts.
    Operator,
    /// Also creates, changes and deletes jobs and reconciliations.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may read row values and samples.
    pub fn reads_values(self) -> bool {
        self >= Role::Auditor
    }
}

/// The configured tokens, by hash.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    entries: Vec<([u8; 32], String, Role)>,
}

impl Tokens {
    /// From validated `[[api.tokens]]` (hex hashes that do not decode are skipped; config
    /// validation refuses them first).
    pub fn new(configured: &[TokenConfig]) -> Tokens {
        let entries = configured
            .iter()
            .filter_map(|t| Some((decode_hex32(&t.sha256)?, t.name.clone(), t.role)))
            .collect();
        Tokens { entries }
    }

    /// The caller a presented token belongs to.
    pub fn identify(&self, token: &str) -> Option<Caller> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (hash, name, role) in &self.entries {
            if bool::from(hash.ct_eq(&presented)) && found.is_none() {
                found = Some(Caller {
                    name: name.clone(),
                    role: *role,
                });
            }
        }
        found
    }

    /// The caller of a request, from its `Authorization: Bearer` header.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "no token: send `Authorization: Bearer <token>` (walaudit token create makes one)",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        self.identify(token).ok_or_else(|| {
            ApiError::unauthorized(
                "the token is not one of api.tokens: check it, or make one with walaudit token \
                 create",
            )
        })
    }
}

/// Who made a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's name.
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// 403 unless the caller's role is at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the role {} or above; the token `{}` is {}",
                role.as_str(),
                self.name,
                self.role.as_str()
            )))
        }
    }
}

impl FromRequestParts<super::ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &super::ApiState,
    ) -> Result<Self, Self::Rejection> {
        state.tokens.caller(&parts.headers)
    }
}

/// A new token (`wa_` and 43 URL-safe characters: 256 random bits) and its SHA-256 in hex.
pub fn new_token() -> Result<(String, String), getrandom::Error> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let token = format!(
        "wa_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = hex(&Sha256::digest(token.as_bytes()));
    Ok((token, hash))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.chunks(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_known_by_its_hash_only() {
        let (token, hash) = new_token().unwrap();
        assert!(token.starts_with("wa_") && token.len() == 46, "{token}");
        let tokens = Tokens::new(&[TokenConfig {
            name: "ci".into(),
            role: Role::Operator,
            sha256: hash.to_uppercase(),
        }]);
        let caller = tokens.identify(&token).unwrap();
        assert_eq!((caller.name.as_str(), caller.role), ("ci", Role::Operator));
        assert!(tokens.identify(&hash).is_none());
        assert!(tokens.identify("wa_other").is_none());
        assert!(caller.require(Role::Auditor).is_ok());
        let err = caller.require(Role::Admin).unwrap_err();
        assert_eq!(err.status.as_u16(), 403);
        let mut headers = HeaderMap::new();
        assert_eq!(tokens.caller(&headers).unwrap_err().status.as_u16(), 401);
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        assert_eq!(tokens.caller(&headers).unwrap().role, Role::Operator);
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(tokens.caller(&headers).unwrap_err().status.as_u16(), 401);
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Auditor && Role::Auditor < Role::Operator);
        assert!(Role::Operator < Role::Admin);
        assert!(!Role::Viewer.reads_values() && Role::Auditor.reads_values());
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
    }
}
