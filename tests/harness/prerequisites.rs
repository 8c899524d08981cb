//! A machine without the PostgreSQL server (or a program the suites run): the tests stop at
//! once with one message naming what is missing and the command that installs it.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::cluster::PG_BIN_ENV;
use crate::support::prerequisites::{SERVER_PACKAGE, find_program, message};

#[test]
fn the_message_names_what_is_missing_and_the_command() {
    let missing = [
        (
            "the PostgreSQL server binaries (none found)".to_owned(),
            SERVER_PACKAGE,
        ),
        ("promtool".to_owned(), "prometheus"),
        ("prometheus".to_owned(), "prometheus"),
    ];
    let text = message(&missing, false);
    assert_eq!(
        text,
        "walaudit tests: missing what the tests need: the PostgreSQL server binaries (none \
         found), promtool, prometheus.\n\
         Install it with:\n    sudo tests/setup.sh\n\
         It runs apt-get install -y --no-install-recommends postgresql-15 prometheus.\n\
         Then run the tests again. WALAUDIT_PG_BIN=/dir points them at server binaries \
         elsewhere (tests/README.md).\n"
    );
    assert!(
        message(&missing, true).contains("\n    tests/setup.sh\n"),
        "root runs the script itself"
    );
    assert!(find_program("sh").is_some());
    assert!(find_program("walaudit-no-such-program").is_none());
}

/// The test process itself, asked to run one test that needs the shared cluster, with
/// `WALAUDIT_PG_BIN` naming a directory without a server (nothing else is then tried).
#[test]
fn without_a_server_the_tests_stop_at_once_with_the_command() {
    let started = Instant::now();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["harness::fresh_databases_are_isolated", "--exact"])
        .env(PG_BIN_ENV, "/nonexistent")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains(
            "walaudit tests: missing what the tests need: the PostgreSQL server binaries \
             (WALAUDIT_PG_BIN=/nonexistent holds no `postgres` and `initdb`)"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("tests/setup.sh\n"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
