//! What to do about a failure: the one retry decision of the engine.
//!
//! ```text
//!  ServerError / SourceError ──recovery()──► Reconnect | Fatal        (SQLSTATE, lost connection)
//!  LakeError                 ──recovery()──► Retry     | Fatal        (object store, I/O, conflict)
//!  SinkError                 ──recovery()──► what the sink said (a LakeError's decision)
//!  PipelineError             ──recovery()──► its source's or sink's decision; StreamEnded: Reconnect
//! ```
//!
//! Every error type that can end an operation decides once, in its `recovery()` method, and
//! every call site that retries, reconnects or stops asks that method ([`crate::backoff`] says
//! how long to wait before the next attempt).
//!
//! # Invariants
//! * [`Recovery::Retry`] repeats the operation on what is already open (a Delta commit);
//!   [`Recovery::Reconnect`] needs a new connection first (the replication stream). Neither
//!   loses data: what is retried is what was not confirmed.
//! * [`Recovery::Fatal`] means nothing changes by trying again (configuration, privileges,
//!   data, a lost slot); the error's message says what the operator has to do.

/// How a failure can be recovered from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// The operation can be repeated as it is, after a backoff (storage trouble, a commit
    /// that raced another).
    Retry,
    /// The connection is gone, the server is restarting or busy: connect again with backoff
    /// and resume from the confirmed position.
    Reconnect,
    /// Trying again cannot help: stop and report.
    Fatal,
}

impl Recovery {
    /// Anything but [`Recovery::Fatal`]: the failure is expected to pass (the errors metric's
    /// `kind="transient"`).
    pub fn is_transient(self) -> bool {
        self != Recovery::Fatal
    }

    /// The metric label of the failure: `transient` or `permanent`.
    pub fn kind(self) -> &'static str {
        if self.is_transient() {
            "transient"
        } else {
            "permanent"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fatal_is_permanent() {
        assert!(Recovery::Retry.is_transient());
        assert!(Recovery::Reconnect.is_transient());
        assert!(!Recovery::Fatal.is_transient());
        assert_eq!(Recovery::Reconnect.kind(), "transient");
        assert_eq!(Recovery::Fatal.kind(), "permanent");
    }
}
