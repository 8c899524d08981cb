//! The supervising shell of a cluster (`pg_wrapper.sh`) and the pipes to it.
//!
//! Every command is one line on the shell's stdin and gets one reply line on its stdout. The
//! shell, not this process, owns the server: when the pipe closes (however this process ends),
//! it shuts the server down and deletes the cluster directory.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use super::ClusterError;
use super::os::{ServerUser, write_file};

const WRAPPER_SCRIPT: &str = include_str!("pg_wrapper.sh");
/// Fast shutdown waits for WAL senders to deliver what they have (bounded by the server's
/// `wal_sender_timeout`, 60 s by default).
pub(super) const STOP_DEADLINE: Duration = Duration::from_secs(90);
/// After an immediate shutdown request, or for a command that does not wait on the server.
pub(super) const COMMAND_DEADLINE: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What went wrong with one command, before the caller adds the log to look at.
pub(super) type Failed = String;

/// The supervising shell (see `pg_wrapper.sh`) and its pipes.
pub(super) struct Supervisor {
    child: Child,
    /// `None` once closed: the wrapper then shuts down and deletes the cluster directory.
    stdin: Option<ChildStdin>,
    replies: mpsc::Receiver<String>,
}

impl Supervisor {
    pub(super) fn spawn(
        base: &Path,
        bin_dir: &Path,
        owner: Option<&ServerUser>,
    ) -> Result<Supervisor, ClusterError> {
        // A file rather than `sh -c`, for a readable `ps`; the shell keeps it open once started.
        let script = base.join("pg_wrapper.sh");
        write_file(&script, WRAPPER_SCRIPT, 0o644, owner)?;
        let mut cmd = match owner {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", &user.name, "--", "sh"]);
                cmd
            }
            None => Command::new("sh"),
        };
        cmd.arg(&script)
            .arg(base)
            .arg(bin_dir)
            .current_dir(base)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // Own process group: a Ctrl-C at the terminal reaches this process only, and the
        // server is then shut down through the closed pipe, in order.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().map_err(ClusterError::io(
            "start the cluster supervisor (sh, or runuser as root)",
        ))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, replies) = mpsc::channel();
        let reader = thread::Builder::new()
            .name("pg-wrapper-replies".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            });
        let mut supervisor = Supervisor {
            child,
            stdin,
            replies,
        };
        if let Err(err) = reader {
            // Closing the pipe makes the wrapper delete the directory.
            let _ = supervisor.finish(None);
            return Err(ClusterError::io("start a thread")(err));
        }
        Ok(supervisor)
    }

    /// Sends one command and returns the text after `ok` in its reply.
    pub(super) fn command(&mut self, command: &str, deadline: Duration) -> Result<String, Failed> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| "the cluster was shut down".to_owned())?;
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .map_err(|err| format!("the cluster supervisor is gone: {err}"))?;
        match self.replies.recv_timeout(deadline) {
            Ok(reply) => match reply.strip_prefix("ok") {
                Some(rest) => Ok(rest.trim().to_owned()),
                None => Err(reply),
            },
            Err(RecvTimeoutError::Timeout) => Err(format!("no answer within {deadline:?}")),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.try_wait();
                Err(format!("the cluster supervisor exited (status {status:?})"))
            }
        }
    }

    /// Closes the pipe and waits for the supervisor to stop the server and delete the
    /// directory; escalates to an immediate shutdown of `server_pid` if that takes too long.
    pub(super) fn finish(&mut self, server_pid: Option<u32>) -> Result<(), ClusterError> {
        if self.stdin.take().is_none() {
            return Ok(());
        }
        if wait_exit(&mut self.child, STOP_DEADLINE)?.is_some() {
            return Ok(());
        }
        if let Some(pid) = server_pid {
            let _ = Command::new("kill")
                .args(["-QUIT", &pid.to_string()])
                .status();
        }
        match wait_exit(&mut self.child, COMMAND_DEADLINE)? {
            Some(_) => Ok(()),
            None => Err(ClusterError::StopTimeout {
                deadline: STOP_DEADLINE + COMMAND_DEADLINE,
            }),
        }
    }
}

fn wait_exit(child: &mut Child, deadline: Duration) -> Result<Option<ExitStatus>, ClusterError> {
    let until = Instant::now() + deadline;
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(ClusterError::io("wait for the cluster supervisor"))?
        {
            return Ok(Some(status));
        }
        if Instant::now() >= until {
            return Ok(None);
        }
        thread::sleep(POLL_INTERVAL);
    }
}
