//! `walaudit serve`: the validation schedulers and the HTTP listener over a lake, without
//! capture (the lake may be written by a `walaudit run` elsewhere, or not yet exist: it is
//! created).
//!
//! ```text
//!  serve(config) ─► bind listener ─► checks service (scheduler, runner, history, alerts)
//!               └─► status: starting ─► serving ─► (cancel) draining ─► stopped | failed
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{EngineError, EngineStatus, Tasks};
use crate::api;
use crate::config::Config;
use crate::lake::storage::LakeLocation;
use crate::metrics::Metrics;

/// How long `serve` lets its tasks end after a signal before it aborts them.
pub const SERVE_GRACE: Duration = Duration::from_secs(45);

/// Runs until `cancel`: every task is owned by one [`Tasks`] and gone when this returns.
/// `on_listen` is told the bound address (port 0 picks a free one).
pub async fn serve(
    config: &Config,
    listen: SocketAddr,
    cancel: CancellationToken,
    on_listen: impl FnOnce(SocketAddr, watch::Receiver<EngineStatus>),
) -> Result<(), EngineError> {
    let (bound, listener, tls) = api::bind(listen, &config.api).await?;
    let metrics = Arc::new(Metrics::new());
    let (status_tx, status) = watch::channel(EngineStatus::Starting);
    let tasks = Tasks::default();
    let location = LakeLocation::new(&config.lake.url, &config.lake.s3)?;
    let state = super::api_state(&metrics, &status, &config.api, Some(location))?;
    let manage = Arc::clone(&state.manage);
    let http_stop = super::spawn_http(&tasks, listener, tls, state);
    on_listen(bound, status);
    let jobs = match &config.checks.dir {
        Some(dir) => crate::checks::command::load_jobs(dir, config)?,
        None => Vec::new(),
    };
    let started = crate::checks::service::start(
        crate::checks::service::CheckOptions {
            jobs,
            config: config.clone(),
            metrics,
        },
        &tasks,
        cancel.clone(),
    )
    .await;
    let result = match started {
        Ok(started) => {
            let _ = manage.set(Arc::new(
                api::manage::Manage::start(config.clone(), started).await,
            ));
            status_tx.send_replace(EngineStatus::Serving);
            cancel.cancelled().await;
            status_tx.send_replace(EngineStatus::Draining);
            Ok(())
        }
        Err(e) => {
            cancel.cancel();
            Err(EngineError::from(e))
        }
    };
    status_tx.send_replace(match &result {
        Ok(()) => EngineStatus::Stopped,
        Err(e) => EngineStatus::Failed(Arc::from(e.to_string())),
    });
    http_stop.cancel();
    let aborted = tasks.close(SERVE_GRACE).await;
    if !aborted.is_empty() {
        tracing::error!(
            ?aborted,
            "tasks did not stop within the grace period: aborted"
        );
    }
    result
}
