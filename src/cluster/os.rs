//! The operating-system side of a cluster: the OS user that runs the server when walaudit runs
//! as root, files owned by that user, process liveness, log tails, and running a future from
//! synchronous code.

use std::fs;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use super::ClusterError;
use super::binaries::install_command;

/// The OS account that owns and runs the cluster when walaudit runs as root (PostgreSQL
/// refuses to run as root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// The OS user the server runs as.
const SERVER_USER: &str = "postgres";

/// Whether this process runs as root.
pub fn is_root() -> bool {
    id(&["-u"]) == Some(0)
}

/// `None` when this process is not root (the server runs as ourselves), else the `postgres`
/// account; an error naming the package that creates it when there is none.
pub fn server_user() -> Result<Option<ServerUser>, ClusterError> {
    if !is_root() {
        return Ok(None);
    }
    match (id(&["-u", SERVER_USER]), id(&["-g", SERVER_USER])) {
        (Some(uid), Some(gid)) => Ok(Some(ServerUser {
            name: SERVER_USER.to_owned(),
            uid,
            gid,
        })),
        _ => Err(ClusterError::NoServerUser {
            install: install_command(true),
        }),
    }
}

fn id(args: &[&str]) -> Option<u32> {
    let out = Command::new("id").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Gives `path` to the server user (no-op when not root).
pub fn chown(path: &Path, owner: Option<&ServerUser>) -> Result<(), ClusterError> {
    if let Some(user) = owner {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).map_err(
            ClusterError::io(format!("chown {} to {}", path.display(), user.name)),
        )?;
    }
    Ok(())
}

/// Writes `contents` to `path` with permission bits `mode`, owned by the server user.
pub fn write_file(
    path: &Path,
    contents: &str,
    mode: u32,
    owner: Option<&ServerUser>,
) -> Result<(), ClusterError> {
    fs::write(path, contents).map_err(ClusterError::io(format!("write {}", path.display())))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(ClusterError::io(format!("chmod {}", path.display())))?;
    chown(path, owner)
}

/// The last `lines` lines of a text file, or a note saying why there are none.
pub fn tail(path: &Path, lines: usize) -> String {
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

/// Runs `fut` to completion on a fresh current-thread runtime in a scoped thread.
///
/// Works from any context: plain threads, `Drop`, and inside another tokio runtime (where
/// starting a runtime on the same thread would panic). Blocks the calling thread.
pub fn block_on<F>(fut: F) -> F::Output
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
