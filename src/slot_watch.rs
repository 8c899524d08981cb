//! Slot watch: while the engine runs, sample the slot's retained WAL and `wal_status` on an
//! ordinary SQL connection (off the replication path), export them as gauges, warn past
//! `source.retained_wal_warn`, and report an invalidated slot so that the engine stops.
//!
//! ```text
//!  once before replication starts, then every INTERVAL:
//!    pg_replication_slots: pg_current_wal_lsn() - restart_lsn, wal_status, confirmed_flush_lsn
//!      ├─► walaudit_slot_retained_wal_bytes{slot}, walaudit_slot_wal_status{slot,status}
//!      ├─► warning log past retained_wal_warn, or while wal_status = unreserved
//!      └─► wal_status = lost ─► SourceError::SlotLost: the engine stops (never retried)
//! ```
//!
//! # Invariants
//! * Read-only, one small catalog query per round on its own connection; it never touches the
//!   replication connection.
//! * A failed sample (server restarting, network) is logged and retried next round: only a
//!   lost slot stops the engine, because then changes are missing and no retry brings them back.

use std::time::{Duration, Instant};

use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::Lsn;
use crate::metrics::SharedMetrics;
use crate::source::{ConnParams, SourceError};

/// How often the slot is sampled while the engine runs.
pub const INTERVAL: Duration = Duration::from_secs(15);
/// While retained WAL stays above the threshold, the warning repeats this often.
const WARN_REPEAT: Duration = Duration::from_secs(300);
/// Every `wal_status` a server reports (13+).
pub const WAL_STATUSES: [&str; 4] = ["reserved", "extended", "unreserved", "lost"];

/// One look at the slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotSample {
    /// The server's WAL position minus `restart_lsn`; `None` when the slot has no restart
    /// position (an invalidated slot).
    pub retained_bytes: Option<i64>,
    /// `reserved`, `extended`, `unreserved`, `lost`; `None` before PostgreSQL 13.
    pub wal_status: Option<String>,
    /// `confirmed_flush_lsn`: where streaming resumes.
    pub confirmed: Option<Lsn>,
}

/// Sample `slot`; `None` when it does not exist (yet).
pub async fn sample(client: &Client, slot: &str) -> Result<Option<SlotSample>, SourceError> {
    let row = client
        .query_opt(
            "SELECT (pg_current_wal_lsn() - restart_lsn)::bigint, \
                    to_jsonb(s) ->> 'wal_status', confirmed_flush_lsn::text \
             FROM pg_replication_slots s WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|source| SourceError::Sql {
            context: "sampling the replication slot's retained WAL",
            source,
        })?;
    Ok(row.map(|r| SlotSample {
        retained_bytes: r.get(0),
        wal_status: r.get(1),
        confirmed: r
            .get::<_, Option<String>>(2)
            .and_then(|l| l.parse::<Lsn>().ok())
            .filter(|l| !l.is_zero()),
    }))
}

/// Samples one slot, exports the gauges and logs warnings; see the module docs.
pub struct SlotWatch {
    params: ConnParams,
    slot: String,
    /// Warn past this many retained bytes (0: never).
    warn_at: u64,
    metrics: SharedMetrics,
    client: Option<Client>,
    last_warning: Option<Instant>,
}

impl SlotWatch {
    pub fn new(params: ConnParams, slot: &str, warn_at: u64, metrics: SharedMetrics) -> Self {
        SlotWatch {
            params,
            slot: slot.to_owned(),
            warn_at,
            metrics,
            client: None,
            last_warning: None,
        }
    }

    /// One round: sample, export, warn. `Err` only for a lost slot; other failures are logged
    /// (the connection is made again next round).
    pub async fn check(&mut self) -> Result<Option<SlotSample>, SourceError> {
        match self.sample().await {
            Ok(sample) => {
                if let Some(sample) = &sample {
                    self.report(sample)?;
                }
                Ok(sample)
            }
            Err(err) => {
                self.client = None;
                tracing::warn!(slot = %self.slot, error = %crate::report::Chain(&err), "cannot sample the slot's retained WAL; retrying");
                Ok(None)
            }
        }
    }

    /// Rounds every [`INTERVAL`] until `cancel` fires (`Ok`) or the slot is lost (`Err`).
    pub async fn run(mut self, cancel: CancellationToken) -> Result<(), SourceError> {
        let mut ticks = tokio::time::interval(INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is immediate: the caller has just checked
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                _ = ticks.tick() => {}
            }
            self.check().await?;
        }
    }

    async fn sample(&mut self) -> Result<Option<SlotSample>, SourceError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(self.params.connect_sql().await?);
        }
        let client = self.client.as_ref().expect("connected above");
        sample(client, &self.slot).await
    }

    fn report(&mut self, sample: &SlotSample) -> Result<(), SourceError> {
        let slot = self.slot.as_str();
        let retained = sample.retained_bytes.unwrap_or(0).max(0);
        self.metrics
            .slot_retained_wal
            .with_label_values(&[slot])
            .set(retained);
        if let Some(status) = &sample.wal_status {
            for known in WAL_STATUSES.iter().copied().chain([status.as_str()]) {
                let current = i64::from(known == status);
                self.metrics
                    .slot_wal_status
                    .with_label_values(&[slot, known])
                    .set(current);
            }
        }
        match sample.wal_status.as_deref() {
            Some("lost") => {
                return Err(SourceError::SlotLost {
                    slot: slot.to_owned(),
                    confirmed: sample.confirmed,
                    server: None,
                });
            }
            Some("unreserved") => tracing::warn!(
                slot,
                retained_bytes = retained,
                "slot is about to lose WAL it needs (wal_status = unreserved): the server \
                 invalidates it at the next checkpoint unless walaudit catches up; raise \
                 max_slot_wal_keep_size"
            ),
            _ => {}
        }
        let above = self.warn_at > 0 && retained as u64 > self.warn_at;
        if !above {
            if self.last_warning.take().is_some() {
                tracing::info!(
                    slot,
                    retained_bytes = retained,
                    "slot's retained WAL is back under source.retained_wal_warn"
                );
            }
        } else if self
            .last_warning
            .is_none_or(|at| at.elapsed() >= WARN_REPEAT)
        {
            self.last_warning = Some(Instant::now());
            tracing::warn!(
                slot,
                retained_bytes = retained,
                threshold_bytes = self.warn_at,
                "slot retains more WAL than source.retained_wal_warn: walaudit is behind or \
                 stalled; check the lake and the lag metrics before the server's disk fills \
                 or max_slot_wal_keep_size invalidates the slot"
            );
        }
        Ok(())
    }
}
