//! Small helpers of the test support code: SQL quoting, unique names, running a future to
//! completion from synchronous code, file ownership, process liveness, reading a metric.

use std::fs;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `"name"` with embedded double quotes doubled: safe to splice into SQL as an identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with embedded single quotes doubled: safe to splice into SQL as a string literal
/// (the server runs with `standard_conforming_strings = on`, the default).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A name unique in this process and across concurrently running test processes, made of
/// `[a-z0-9_]` only and at most 63 bytes (a Postgres identifier): `<hint>_<pid>_<counter>`.
pub fn unique_name(hint: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut clean: String = hint
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .take(40)
        .collect();
    if !clean.starts_with(|c: char| c.is_ascii_lowercase()) {
        clean.insert_str(0, "t_");
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{clean}_{}_{n}", std::process::id())
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for URL user info).
pub(crate) fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(byte))
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Runs `fut` to completion on a fresh current-thread runtime in a scoped thread.
///
/// Works from any context: plain threads, `Drop`, and inside another tokio runtime (where
/// starting a runtime on the same thread would panic). Blocks the calling thread.
pub(crate) fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build a current-thread tokio runtime")
                .block_on(fut)
        });
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// The OS account that owns and runs the cluster when the tests run as root (Postgres
/// refuses to run as root).
#[derive(Clone, Debug)]
pub(crate) struct ServerUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// `None` when we are not root (the cluster runs as ourselves), else the `postgres` account.
pub(crate) fn server_user() -> Result<Option<ServerUser>> {
    if id(&["-u"])? != 0 {
        return Ok(None);
    }
    let name = "postgres";
    let lookup = || -> Result<(u32, u32)> { Ok((id(&["-u", name])?, id(&["-g", name])?)) };
    let (uid, gid) = lookup().with_context(|| {
        format!(
            "the tests run as root, Postgres refuses to run as root, and the OS user `{name}` \
             to run it as does not exist: install the server package (`apt-get install -y \
             postgresql-15` creates the user) or run the tests as a non-root user"
        )
    })?;
    Ok(Some(ServerUser {
        name: name.to_owned(),
        uid,
        gid,
    }))
}

fn id(args: &[&str]) -> Result<u32> {
    let out = Command::new("id").args(args).output().context("run `id`")?;
    if !out.status.success() {
        bail!(
            "`id {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("parse the output of `id {}`", args.join(" ")))
}

/// Gives `path` to the server user (no-op when not root).
pub(crate) fn chown(path: &Path, owner: Option<&ServerUser>) -> Result<()> {
    if let Some(user) = owner {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
            .with_context(|| format!("chown {} to {}", path.display(), user.name))?;
    }
    Ok(())
}

/// Writes `contents` to `path` with permission bits `mode`, owned by the server user.
pub(crate) fn write_file(
    path: &Path,
    contents: &str,
    mode: u32,
    owner: Option<&ServerUser>,
) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))?;
    chown(path, owner)
}

/// The last `lines` lines of a text file, or a note saying why there are none.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("<cannot read {}: {err}>", path.display()),
    }
}

/// Whether process `pid` is alive (a zombie counts as gone); `None` without `/proc`.
pub fn process_running(pid: u32) -> Option<bool> {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            Some(!matches!(state, Some('Z' | 'X') | None))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            Path::new("/proc/self/stat").exists().then_some(false)
        }
        Err(_) => None,
    }
}

/// Waits until `series` on the engine's /metrics equals `want`; panics naming `what` after
/// `within`.
pub async fn wait_metric(port: u16, series: &str, want: f64, within: Duration, what: &str) {
    let deadline = std::time::Instant::now() + within;
    while metric(port, series).await != Some(want) {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to a minute) until the engine on `port` streams from its slot.
pub async fn wait_streaming(port: u16) {
    let within = Duration::from_secs(60);
    wait_metric(
        port,
        "walaudit_streaming",
        1.0,
        within,
        "the engine did not start streaming",
    )
    .await;
}

/// The value of `series` (name with its labels, as exposed) on the engine's /metrics.
pub async fn metric(port: u16, series: &str) -> Option<f64> {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    conn.write_all(request.as_bytes()).await.ok()?;
    let mut body = String::new();
    conn.read_to_string(&mut body).await.ok()?;
    let line = body
        .lines()
        .find(|l| l.starts_with(&format!("{series} ")))?;
    line[series.len()..].trim().parse().ok()
}
