use super::*;
use crate::recovery::Recovery;

fn server(code: &str, message: &str) -> ServerError {
    ServerError {
        severity: "ERROR".into(),
        code: code.into(),
        message: message.into(),
        ..ServerError::default()
    }
}

fn ctx(slot: Option<&'static str>) -> ErrorContext<'static> {
    ErrorContext {
        command: "run START_REPLICATION",
        replication: true,
        user: "alice",
        database: "app",
        slot,
        streaming: false,
    }
}

#[test]
fn sqlstates_map_to_precise_errors_with_hints() {
    let e = map_server_error(
        server("28P01", "password authentication failed"),
        &ctx(None),
    );
    assert!(matches!(e, SourceError::AuthFailed { .. }));
    assert!(
        e.to_string()
            .contains("check the user and password in --source")
    );
    assert_eq!(e.recovery(), Recovery::Fatal);

    let e = map_server_error(server("42704", "no slot"), &ctx(Some("s1")));
    assert!(
        e.to_string()
            .contains("pg_create_logical_replication_slot('s1', 'pgoutput')")
    );
    assert!(e.to_string().contains("source.create_slot = true"));

    let e = map_server_error(server("42710", "exists"), &ctx(Some("s1")));
    assert!(matches!(e, SourceError::SlotExists { .. }));

    let e = map_server_error(server("55006", "active for PID 1"), &ctx(Some("s1")));
    assert_eq!(
        e.recovery(),
        Recovery::Reconnect,
        "a slot held by a dying session frees itself"
    );

    let e = map_server_error(
        server("55000", "logical decoding requires wal_level >= logical"),
        &ctx(None),
    );
    assert!(
        e.to_string()
            .contains("ALTER SYSTEM SET wal_level = logical"),
        "{e}"
    );

    let e = map_server_error(server("53400", "all slots in use"), &ctx(None));
    assert!(
        e.to_string()
            .contains("max_replication_slots / max_wal_senders")
    );

    let e = map_server_error(server("42501", "must be replication role"), &ctx(None));
    assert!(
        e.to_string().contains("ALTER ROLE alice REPLICATION"),
        "{e}"
    );

    let streaming = ErrorContext {
        streaming: true,
        ..ctx(Some("s1"))
    };
    let e = map_server_error(
        server("42704", "publication \"p\" does not exist"),
        &streaming,
    );
    assert!(matches!(e, SourceError::PublicationGone { .. }));
}

#[test]
fn invalidated_slot_is_permanent_with_the_recovery_steps() {
    let mut invalidated = server(
        "55000",
        "can no longer get changes from replication slot \"s1\"",
    );
    invalidated.detail = Some(
        "This slot has been invalidated because it exceeded the maximum reserved size.".into(),
    );
    let removed = server(
        "58P01",
        "requested WAL segment 000000010000000000000003 has already been removed",
    );
    for err in [invalidated, removed] {
        let e = map_server_error(err, &ctx(Some("s1")));
        assert!(matches!(e, SourceError::SlotLost { .. }), "{e:?}");
        assert_eq!(
            e.recovery(),
            Recovery::Fatal,
            "retrying cannot bring the WAL back"
        );
        let msg = e.to_string();
        assert!(msg.contains("pg_drop_replication_slot('s1')"), "{msg}");
        assert!(msg.contains("re-snapshot"), "{msg}");
        assert!(msg.contains("missing from the lake"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }
    let e = SourceError::SlotLost {
        slot: "s1".into(),
        confirmed: Some(crate::Lsn(0x16B3748)),
        server: None,
    };
    assert!(e.to_string().contains("changes after 0/16B3748"), "{e}");
    // Without a slot in the context (not a slot command), 55000 stays what it was.
    let e = map_server_error(server("55000", "wal_level"), &ctx(None));
    assert!(matches!(e, SourceError::NotReady { .. }));
}

#[test]
fn recovery_by_sqlstate() {
    let e = map_server_error(server("57P01", "terminating connection"), &ctx(None));
    assert_eq!(e.recovery(), Recovery::Reconnect);
    let e = map_server_error(server("XX000", "internal"), &ctx(None));
    assert_eq!(e.recovery(), Recovery::Fatal);
    let e = SourceError::Closed {
        context: "streaming",
    };
    assert_eq!(e.recovery(), Recovery::Reconnect);
    // Whole classes 08 and 57P, and single states of other classes, pass with a reconnect.
    for state in [
        SqlState::CONNECTION_FAILURE,
        SqlState::CONNECTION_EXCEPTION,
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::TOO_MANY_CONNECTIONS,
        SqlState::OBJECT_IN_USE,
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::QUERY_CANCELED,
    ] {
        let e = server(state.code(), "passes");
        assert_eq!(e.recovery(), Recovery::Reconnect, "{}", state.code());
    }
    for state in [
        SqlState::INVALID_PASSWORD,
        SqlState::INSUFFICIENT_PRIVILEGE,
        SqlState::UNDEFINED_OBJECT,
        SqlState::DUPLICATE_OBJECT,
        SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
        SqlState::INTERNAL_ERROR,
        SqlState::DISK_FULL,
    ] {
        let e = server(state.code(), "stays");
        assert_eq!(e.recovery(), Recovery::Fatal, "{}", state.code());
        let e = SourceError::Server {
            command: "run a command".into(),
            server: Box::new(server(state.code(), "stays")),
        };
        assert_eq!(e.recovery(), Recovery::Fatal, "{}", state.code());
    }
    let e = SourceError::Io {
        context: "reading from the server",
        source: std::io::Error::new(std::io::ErrorKind::ConnectionReset, "gone"),
    };
    assert_eq!(e.recovery(), Recovery::Reconnect);
    let e = SourceError::SlotInUse {
        slot: "s1".into(),
        server: None,
    };
    assert_eq!(e.recovery(), Recovery::Reconnect);
    let e = SourceError::InvalidParams {
        reason: "no host".into(),
    };
    assert_eq!(e.recovery(), Recovery::Fatal);
    let e = SourceError::protocol("streaming", "unexpected message");
    assert_eq!(e.recovery(), Recovery::Fatal);
}

#[test]
fn server_message_is_the_source_not_the_message() {
    let e = map_server_error(
        server("28P01", "password authentication failed"),
        &ctx(None),
    );
    let source = std::error::Error::source(&e).expect("server error kept as source");
    assert!(source.to_string().contains("28P01"));
    assert!(!e.to_string().contains("28P01"));
}
