//! Signals: the first SIGINT or SIGTERM cancels the command's token (a clean shutdown); a
//! second exits at once.

use tokio_util::sync::CancellationToken;

/// Cancel on SIGINT or SIGTERM; a second signal exits at once.
pub fn cancel_on_signals(cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for SIGTERM");
                    return;
                }
            };
        for round in 0..2 {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            if round == 0 {
                tracing::info!("signal received: shutting down (send again to exit at once)");
                cancel.cancel();
            } else {
                std::process::exit(130);
            }
        }
    });
}
