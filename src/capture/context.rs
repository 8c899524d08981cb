//! The audit context of a transaction: who made the change.
//!
//! An application emits, inside its transaction,
//! `SELECT pg_logical_emit_message(true, 'walaudit', '{"actor":"alice@example.com"}')`.
//! The JSON object is attached to every change of the transaction; its `actor` field (else
//! `user`, `user_id`, `email`) is the actor. Malformed content never drops changes: the raw text
//! is kept and the actor is unknown.

use crate::capture::AuditContext;

/// Fields that name the actor, in order of preference.
const ACTOR_FIELDS: [&str; 4] = ["actor", "user", "user_id", "email"];

/// Parse the content of an audit-context message.
pub fn parse_context(content: &[u8]) -> AuditContext {
    let raw = String::from_utf8_lossy(content).into_owned();
    let object = match serde_json::from_slice::<serde_json::Value>(content) {
        Ok(serde_json::Value::Object(object)) => object,
        _ => {
            return AuditContext {
                raw,
                actor: None,
                well_formed: false,
            };
        }
    };
    let actor = ACTOR_FIELDS
        .iter()
        .find_map(|field| match object.get(*field)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    AuditContext {
        raw,
        actor,
        well_formed: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_field_preference() {
        let c = parse_context(br#"{"email":"e@x","user":"u","request_id":"r-1"}"#);
        assert_eq!(c.actor.as_deref(), Some("u"));
        assert!(c.well_formed);
        let c = parse_context(br#"{"actor":"alice","user":"u"}"#);
        assert_eq!(c.actor.as_deref(), Some("alice"));
        let c = parse_context(br#"{"user_id":42}"#);
        assert_eq!(c.actor.as_deref(), Some("42"));
        let c = parse_context(br#"{"request_id":"r"}"#);
        assert_eq!((c.actor, c.well_formed), (None, true));
    }

    #[test]
    fn malformed_content_is_kept_raw() {
        let c = parse_context(b"{not json");
        assert_eq!(
            c,
            AuditContext {
                raw: "{not json".into(),
                actor: None,
                well_formed: false
            }
        );
        let c = parse_context(b"[1,2]");
        assert!(!c.well_formed);
        let c = parse_context(&[0xff, b'{']);
        assert_eq!(c.raw, "\u{fffd}{");
    }
}
