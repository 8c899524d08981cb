//! Metric names, defined once, and the registry they live in. dashboards/README.md lists
//! them all (a test in tests/ops/reference.rs keeps it so).
//!
//! Names follow Prometheus conventions: `walaudit_<what>_<unit>`, counters end in `_total`,
//! base units (bytes, seconds). Labels have low cardinality: a table name yes, a key never.
//! Dashboards and alert rules use only the names below.
//!
//! Each pipeline gets a [`Metrics`] (tests run several in one process); the binary uses one.

use std::sync::Arc;

use crate::recovery::Recovery;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Bytes of pgoutput payload received from the server.
pub const RECEIVED_BYTES_TOTAL: &str = "walaudit_received_bytes_total";
/// Committed transactions handed to the sink.
pub const TRANSACTIONS_TOTAL: &str = "walaudit_transactions_total";
/// Row changes handed to the sink, by `table` (`schema.table`) and `op` (c, u, d, t, r).
pub const CHANGES_TOTAL: &str = "walaudit_changes_total";
/// Replication lag in bytes, by `kind`: `received` (received minus confirmed) and `server`
/// (the server's WAL position minus confirmed).
pub const LAG_BYTES: &str = "walaudit_replication_lag_bytes";
/// Seconds since the commit of the oldest transaction not yet durable in the sink (0 when
/// caught up).
pub const LAG_SECONDS: &str = "walaudit_end_to_end_lag_seconds";
/// WAL positions (as 64-bit integers), by `kind`: `received`, `confirmed`, `server`.
pub const WAL_POSITION: &str = "walaudit_wal_position";
/// Memory held by changes of open transactions.
pub const CAPTURE_MEMORY_BYTES: &str = "walaudit_capture_memory_bytes";
/// Bytes written to spill files by large transactions.
pub const SPILL_BYTES_TOTAL: &str = "walaudit_spill_bytes_total";
/// Audit-context messages that were not a JSON object.
pub const MALFORMED_CONTEXTS_TOTAL: &str = "walaudit_malformed_contexts_total";
/// Chunks waiting in the queue in front of the sink (full = backpressure).
pub const SINK_QUEUE_DEPTH: &str = "walaudit_sink_queue_depth";
/// Reconnects after transient failures.
pub const RECONNECTS_TOTAL: &str = "walaudit_reconnects_total";
/// Errors by `stage` (source, decode, capture, sink) and `kind` (transient, permanent).
pub const ERRORS_TOTAL: &str = "walaudit_errors_total";
/// 1 while replication is streaming, 0 otherwise.
pub const STREAMING: &str = "walaudit_streaming";
/// Commits to the lake and their duration.
pub const LAKE_COMMIT_SECONDS: &str = "walaudit_lake_commit_duration_seconds";
/// Rows written to the lake, by `table`.
pub const LAKE_ROWS_TOTAL: &str = "walaudit_lake_rows_written_total";
/// WAL the slot makes the server keep, by `slot`: the server's position minus the slot's
/// `restart_lsn` (sampled every [`crate::slot_watch::INTERVAL`]).
pub const SLOT_RETAINED_WAL_BYTES: &str = "walaudit_slot_retained_wal_bytes";
/// The slot's `wal_status`, by `slot` and `status` (reserved, extended, unreserved, lost): 1 for
/// the current status, 0 for the others.
pub const SLOT_WAL_STATUS: &str = "walaudit_slot_wal_status";
/// Rows copied by historical loads (snapshots), by `table`.
pub const SNAPSHOT_ROWS_TOTAL: &str = "walaudit_snapshot_rows_total";
/// Rows a running historical load expects to copy (the planner's estimate), by `table`; 0 when
/// no load of the table runs.
pub const SNAPSHOT_ROWS_EXPECTED: &str = "walaudit_snapshot_rows_expected";
/// Snapshot chunks, by `table` and `outcome`: `copied`, or `skipped` (already in the lake when a
/// load resumed).
pub const SNAPSHOT_CHUNKS_TOTAL: &str = "walaudit_snapshot_chunks_total";
/// Tables whose historical load is running.
pub const SNAPSHOT_TABLES_RUNNING: &str = "walaudit_snapshot_tables_running";
/// Validation-job runs by `status` (pass, warn, fail, error, timeout, blocked, skipped): every
/// run the scheduler started or recorded without running it.
pub const CHECK_RUNS_TOTAL: &str = "walaudit_check_runs_total";
/// Duration of the validation-job runs the scheduler started (a run killed at the hard
/// deadline counts with that deadline).
pub const CHECK_RUN_SECONDS: &str = "walaudit_check_run_duration_seconds";
/// Validation-job runs that are due and wait for a free slot (the total or their connection's
/// cap is reached).
pub const CHECK_QUEUE_DEPTH: &str = "walaudit_check_queue_depth";
/// Validation jobs with a due run not started yet: waiting for a slot, or for their own
/// previous run to end.
pub const CHECK_OVERDUE_JOBS: &str = "walaudit_check_overdue_jobs";
/// Validation-job runs running now.
pub const CHECK_RUNS_RUNNING: &str = "walaudit_check_runs_running";
/// Open alerts of validation jobs, by `severity` (critical, high, low).
pub const CHECK_OPEN_ALERTS: &str = "walaudit_check_open_alerts";
/// HTTP API requests, by `route` (the route's pattern, `unmatched` for none), `method` and
/// `status` (the response code).
pub const HTTP_REQUESTS_TOTAL: &str = "walaudit_http_requests_total";
/// Duration of HTTP API requests until the response head, by `route`.
pub const HTTP_REQUEST_SECONDS: &str = "walaudit_http_request_duration_seconds";

/// The `status` values of [`CHECK_RUNS_TOTAL`], each a series from the start.
pub const CHECK_RUN_STATUSES: [&str; 7] = [
    "pass", "warn", "fail", "error", "timeout", "blocked", "skipped",
];

/// Every metric of one engine, registered in its own registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    pub received_bytes: IntCounter,
    pub transactions: IntCounter,
    pub changes: IntCounterVec,
    pub lag_bytes: IntGaugeVec,
    pub lag_seconds: prometheus::Gauge,
    pub wal_position: IntGaugeVec,
    pub capture_memory: IntGauge,
    pub spill_bytes: IntCounter,
    pub malformed_contexts: IntCounter,
    pub sink_queue_depth: IntGauge,
    pub reconnects: IntCounter,
    pub errors: IntCounterVec,
    pub streaming: IntGauge,
    pub lake_commit_seconds: Histogram,
    pub lake_rows: IntCounterVec,
    pub slot_retained_wal: IntGaugeVec,
    pub slot_wal_status: IntGaugeVec,
    pub snapshot_rows: IntCounterVec,
    pub snapshot_rows_expected: IntGaugeVec,
    pub snapshot_chunks: IntCounterVec,
    pub snapshot_tables_running: IntGauge,
    pub check_runs: IntCounterVec,
    pub check_run_seconds: Histogram,
    pub check_queue_depth: IntGauge,
    pub check_overdue_jobs: IntGauge,
    pub check_runs_running: IntGauge,
    pub check_open_alerts: IntGaugeVec,
    pub http_requests: IntCounterVec,
    pub http_request_seconds: prometheus::HistogramVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let help = |name: &str, help: &str| Opts::new(name, help);
        let m = Metrics {
            received_bytes: IntCounter::with_opts(help(
                RECEIVED_BYTES_TOTAL,
                "pgoutput bytes received",
            ))
            .expect("valid metric"),
            transactions: IntCounter::with_opts(help(
                TRANSACTIONS_TOTAL,
                "transactions handed to the sink",
            ))
            .expect("valid metric"),
            changes: IntCounterVec::new(
                help(CHANGES_TOTAL, "row changes handed to the sink"),
                &["table", "op"],
            )
            .expect("valid metric"),
            lag_bytes: IntGaugeVec::new(help(LAG_BYTES, "replication lag in bytes"), &["kind"])
                .expect("valid metric"),
            lag_seconds: prometheus::Gauge::with_opts(help(
                LAG_SECONDS,
                "age of the oldest change not yet durable",
            ))
            .expect("valid metric"),
            wal_position: IntGaugeVec::new(
                help(WAL_POSITION, "WAL positions as integers"),
                &["kind"],
            )
            .expect("valid metric"),
            capture_memory: IntGauge::with_opts(help(
                CAPTURE_MEMORY_BYTES,
                "memory of open transactions",
            ))
            .expect("valid metric"),
            spill_bytes: IntCounter::with_opts(help(SPILL_BYTES_TOTAL, "bytes spilled to disk"))
                .expect("valid metric"),
            malformed_contexts: IntCounter::with_opts(help(
                MALFORMED_CONTEXTS_TOTAL,
                "malformed audit contexts",
            ))
            .expect("valid metric"),
            sink_queue_depth: IntGauge::with_opts(help(
                SINK_QUEUE_DEPTH,
                "chunks queued for the sink",
            ))
            .expect("valid metric"),
            reconnects: IntCounter::with_opts(help(
                RECONNECTS_TOTAL,
                "reconnects after transient failures",
            ))
            .expect("valid metric"),
            errors: IntCounterVec::new(
                help(ERRORS_TOTAL, "errors by stage and kind"),
                &["stage", "kind"],
            )
            .expect("valid metric"),
            streaming: IntGauge::with_opts(help(STREAMING, "1 while replication streams"))
                .expect("valid metric"),
            lake_commit_seconds: Histogram::with_opts(
                HistogramOpts::new(LAKE_COMMIT_SECONDS, "duration of lake commits").buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            )
            .expect("valid metric"),
            lake_rows: IntCounterVec::new(
                help(LAKE_ROWS_TOTAL, "rows written to the lake"),
                &["table"],
            )
            .expect("valid metric"),
            slot_retained_wal: IntGaugeVec::new(
                help(
                    SLOT_RETAINED_WAL_BYTES,
                    "WAL retained by the replication slot",
                ),
                &["slot"],
            )
            .expect("valid metric"),
            slot_wal_status: IntGaugeVec::new(
                help(
                    SLOT_WAL_STATUS,
                    "wal_status of the replication slot (1 = current)",
                ),
                &["slot", "status"],
            )
            .expect("valid metric"),
            snapshot_rows: IntCounterVec::new(
                help(SNAPSHOT_ROWS_TOTAL, "rows copied by historical loads"),
                &["table"],
            )
            .expect("valid metric"),
            snapshot_rows_expected: IntGaugeVec::new(
                help(
                    SNAPSHOT_ROWS_EXPECTED,
                    "rows a running load expects to copy",
                ),
                &["table"],
            )
            .expect("valid metric"),
            snapshot_chunks: IntCounterVec::new(
                help(SNAPSHOT_CHUNKS_TOTAL, "snapshot chunks by outcome"),
                &["table", "outcome"],
            )
            .expect("valid metric"),
            snapshot_tables_running: IntGauge::with_opts(help(
                SNAPSHOT_TABLES_RUNNING,
                "tables whose historical load runs",
            ))
            .expect("valid metric"),
            check_runs: IntCounterVec::new(
                help(CHECK_RUNS_TOTAL, "validation-job runs by status"),
                &["status"],
            )
            .expect("valid metric"),
            check_run_seconds: Histogram::with_opts(
                HistogramOpts::new(CHECK_RUN_SECONDS, "duration of validation-job runs").buckets(
                    vec![
                        0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0,
                    ],
                ),
            )
            .expect("valid metric"),
            check_queue_depth: IntGauge::with_opts(help(
                CHECK_QUEUE_DEPTH,
                "due validation-job runs waiting for a slot",
            ))
            .expect("valid metric"),
            check_overdue_jobs: IntGauge::with_opts(help(
                CHECK_OVERDUE_JOBS,
                "validation jobs with a due run not started",
            ))
            .expect("valid metric"),
            check_runs_running: IntGauge::with_opts(help(
                CHECK_RUNS_RUNNING,
                "validation-job runs running",
            ))
            .expect("valid metric"),
            check_open_alerts: IntGaugeVec::new(
                help(
                    CHECK_OPEN_ALERTS,
                    "open alerts of validation jobs by severity",
                ),
                &["severity"],
            )
            .expect("valid metric"),
            http_requests: IntCounterVec::new(
                help(HTTP_REQUESTS_TOTAL, "HTTP API requests"),
                &["route", "method", "status"],
            )
            .expect("valid metric"),
            http_request_seconds: prometheus::HistogramVec::new(
                HistogramOpts::new(HTTP_REQUEST_SECONDS, "duration of HTTP API requests").buckets(
                    vec![
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 10.0,
                    ],
                ),
                &["route"],
            )
            .expect("valid metric"),
            registry,
        };
        m.register_all();
        m
    }

    fn register_all(&self) {
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.received_bytes.clone()),
            Box::new(self.transactions.clone()),
            Box::new(self.changes.clone()),
            Box::new(self.lag_bytes.clone()),
            Box::new(self.lag_seconds.clone()),
            Box::new(self.wal_position.clone()),
            Box::new(self.capture_memory.clone()),
            Box::new(self.spill_bytes.clone()),
            Box::new(self.malformed_contexts.clone()),
            Box::new(self.sink_queue_depth.clone()),
            Box::new(self.reconnects.clone()),
            Box::new(self.errors.clone()),
            Box::new(self.streaming.clone()),
            Box::new(self.lake_commit_seconds.clone()),
            Box::new(self.lake_rows.clone()),
            Box::new(self.slot_retained_wal.clone()),
            Box::new(self.slot_wal_status.clone()),
            Box::new(self.snapshot_rows.clone()),
            Box::new(self.snapshot_rows_expected.clone()),
            Box::new(self.snapshot_chunks.clone()),
            Box::new(self.snapshot_tables_running.clone()),
            Box::new(self.check_runs.clone()),
            Box::new(self.check_run_seconds.clone()),
            Box::new(self.check_queue_depth.clone()),
            Box::new(self.check_overdue_jobs.clone()),
            Box::new(self.check_runs_running.clone()),
            Box::new(self.check_open_alerts.clone()),
            Box::new(self.http_requests.clone()),
            Box::new(self.http_request_seconds.clone()),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for c in collectors {
            // Names are unique constants in a fresh registry: registration cannot collide.
            self.registry.register(c).expect("metric names are unique");
        }
        for kind in ["received", "server"] {
            self.lag_bytes.with_label_values(&[kind]);
        }
        for kind in ["received", "confirmed", "server"] {
            self.wal_position.with_label_values(&[kind]);
        }
        // Series that exist from the start read 0 instead of being absent (alerts need that).
        for stage in ["source", "decode", "capture", "sink"] {
            for kind in [Recovery::Reconnect.kind(), Recovery::Fatal.kind()] {
                self.errors.with_label_values(&[stage, kind]);
            }
        }
        for severity in ["critical", "high", "low"] {
            self.check_open_alerts.with_label_values(&[severity]);
        }
        for status in CHECK_RUN_STATUSES {
            self.check_runs.with_label_values(&[status]);
        }
    }

    /// Count an error of `stage`.
    pub fn error(&self, stage: &str, recovery: Recovery) {
        self.errors
            .with_label_values(&[stage, recovery.kind()])
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let families = self.registry.gather();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&families, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// A shared handle, cheap to clone into every stage.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_exposed_once_with_help() {
        let m = Metrics::new();
        m.changes.with_label_values(&["public.t", "c"]).inc_by(3);
        m.error("source", Recovery::Reconnect);
        m.slot_retained_wal.with_label_values(&["s"]).set(42);
        m.slot_wal_status
            .with_label_values(&["s", "reserved"])
            .set(1);
        let text = m.render();
        for name in [
            RECEIVED_BYTES_TOTAL,
            TRANSACTIONS_TOTAL,
            LAG_BYTES,
            LAG_SECONDS,
            WAL_POSITION,
            CAPTURE_MEMORY_BYTES,
            SPILL_BYTES_TOTAL,
            SINK_QUEUE_DEPTH,
            STREAMING,
            LAKE_COMMIT_SECONDS,
            SLOT_RETAINED_WAL_BYTES,
            SLOT_WAL_STATUS,
            CHECK_RUNS_TOTAL,
            CHECK_RUN_SECONDS,
            CHECK_QUEUE_DEPTH,
            CHECK_OVERDUE_JOBS,
            CHECK_RUNS_RUNNING,
        ] {
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name}"
            );
            assert!(name.starts_with("walaudit_"));
        }
        assert!(
            text.contains("walaudit_changes_total{op=\"c\",table=\"public.t\"} 3"),
            "{text}"
        );
        assert!(text.contains("walaudit_errors_total{kind=\"transient\",stage=\"source\"} 1"));
        assert!(text.contains("walaudit_check_runs_total{status=\"blocked\"} 0"));
        assert!(
            text.contains("process_resident_memory_bytes"),
            "process metrics"
        );
    }
}
