//! What the suites need besides Rust, and the one message that says how to install it.
//!
//! ```text
//!  PgCluster::start ──► server() ──────────┐   found: go on
//!  a test running openssl, promtool, … ────┴─► missing: one message naming everything that is
//!                          require(program)     missing and the command that installs it
//!                                               (tests/setup.sh), then exit(1)
//! ```
//!
//! Ending the test process at the first missing prerequisite, instead of failing the test,
//! makes `cargo test` on a fresh machine stop at once with one clear message, rather than
//! print a panic for every test that needs a server. The message goes straight to stderr
//! (`io::stderr`, which libtest does not capture), once, however many tests hit it at the same
//! time.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use crate::cluster::SERVER_PACKAGE;
use crate::cluster::{ClusterError, LOOKED_AT, PG_BIN_ENV, Server, find_bin_dir};

/// The script that installs everything below (tests/README.md).
pub const SETUP_SCRIPT: &str = "tests/setup.sh";
/// The programs the suites run besides the server, and the Debian package of each.
pub const PROGRAMS: &[(&str, &str)] = &[
    ("openssl", "openssl"),
    ("promtool", "prometheus"),
    ("prometheus", "prometheus"),
    ("prometheus-alertmanager", "prometheus-alertmanager"),
    ("kill", "procps"),
    ("script", "bsdutils"),
];

/// The PostgreSQL server binaries and the OS user to run them as; ends the process (see the
/// module docs) when there are no binaries, or when `kill`, which stops servers, is missing.
pub fn server() -> Result<Server, ClusterError> {
    match Server::find() {
        Err(err) if err.is_missing_binaries() => exit_missing(),
        _ if find_program("kill").is_none() => exit_missing(),
        found => found,
    }
}

/// Why no server binaries were found, for the message.
fn describe(err: &ClusterError) -> String {
    match err {
        ClusterError::NoBinaries { .. } => format!("none found: looked at {LOOKED_AT}"),
        ClusterError::BadBinDir { dir, .. } => {
            format!("{PG_BIN_ENV}={dir} holds no `postgres` and `initdb`")
        }
        other => other.to_string(),
    }
}

/// Ends the process (see the module docs) unless `program` is an executable on the `PATH`.
pub fn require(program: &str) {
    assert!(
        PROGRAMS.iter().any(|(p, _)| *p == program),
        "{program} is not in PROGRAMS"
    );
    if find_program(program).is_none() {
        exit_missing();
    }
}

/// The executable `program` on the `PATH`, if any.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|file| is_executable(file))
}

fn is_executable(file: &Path) -> bool {
    file.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What is missing: (what, Debian package), the server first.
fn missing() -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    if let Err(err) = find_bin_dir() {
        out.push((
            format!("the PostgreSQL server binaries ({})", describe(&err)),
            SERVER_PACKAGE,
        ));
    }
    for (program, package) in PROGRAMS {
        if find_program(program).is_none() {
            out.push(((*program).to_owned(), *package));
        }
    }
    out
}

/// The message for `missing` (not empty); `root` picks the command line to show.
pub fn message(missing: &[(String, &'static str)], root: bool) -> String {
    let what: Vec<&str> = missing.iter().map(|(what, _)| what.as_str()).collect();
    let mut packages: Vec<&str> = Vec::new();
    for (_, package) in missing {
        if !packages.contains(package) {
            packages.push(package);
        }
    }
    let sudo = if root { "" } else { "sudo " };
    format!(
        "walaudit tests: missing what the tests need: {what}.\n\
         Install it with:\n    \
         {sudo}{SETUP_SCRIPT}\n\
         It runs apt-get install -y --no-install-recommends {packages}.\n\
         Then run the tests again. WALAUDIT_PG_BIN=/dir points them at server binaries \
         elsewhere (tests/README.md).\n",
        what = what.join(", "),
        packages = packages.join(" "),
    )
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn exit_missing() -> ! {
    // Held until the process ends: a second test that finds something missing waits here.
    static ONCE: Mutex<()> = Mutex::new(());
    let _guard = ONCE.lock();
    let missing = missing();
    let text = if missing.is_empty() {
        // Installed while the tests ran: nothing to name, but this run is incomplete.
        format!("walaudit tests: a prerequisite was missing; run {SETUP_SCRIPT}\n")
    } else {
        message(&missing, is_root())
    };
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
    std::process::exit(1);
}
