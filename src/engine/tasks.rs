//! The tasks an engine starts: each in a named tracing span, tracked, abortable after the
//! grace period.
//!
//! # Invariants
//! * No task outlives [`Tasks::close`]: it waits for them, and aborts (then waits for) what is
//!   still running when the grace period ends.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::{AbortHandle, JoinHandle};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// The engine's tasks.
#[derive(Clone, Debug, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    running: Arc<Mutex<Vec<(&'static str, AbortHandle)>>>,
}

impl Tasks {
    /// Spawns `future` as the task `name`, in a span of that name.
    pub fn spawn<F>(&self, name: &'static str, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let span = tracing::info_span!("task", name);
        let handle = self.tracker.spawn(future.instrument(span));
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name, handle.abort_handle()));
        handle
    }

    /// Waits up to `grace` for every task to end, then aborts the rest; returns the names of
    /// the aborted tasks.
    pub async fn close(&self, grace: Duration) -> Vec<&'static str> {
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
        {
            return Vec::new();
        }
        let mut aborted = Vec::new();
        for (name, handle) in self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            if !handle.is_finished() {
                handle.abort();
                aborted.push(*name);
            }
        }
        tracing::warn!(tasks = ?aborted, "tasks still running after the grace period: aborted");
        self.tracker.wait().await;
        aborted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn close_waits_then_aborts_what_hangs() {
        let tasks = Tasks::default();
        let quick = tasks.spawn("quick", async { 1 });
        tasks.spawn("hung", std::future::pending::<()>());
        let started = tokio::time::Instant::now();
        let aborted = tasks.close(Duration::from_secs(5)).await;
        assert_eq!(aborted, vec!["hung"]);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(quick.await.unwrap(), 1);
    }
}
