//! The pipeline against a fake walsender (no server), with paused time: reconnects with
//! backoff, the replay skip, drain, the positions it confirms, and shutdown with a sink that
//! never returns.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::fake::{FakeServer, txn};
use super::*;
use crate::capture::{CapturedMessage, Change, TxnMeta};
use crate::metrics::Metrics;
use crate::sink::{MemorySink, MemoryStore};

fn options(drain: bool) -> PipelineOptions {
    PipelineOptions {
        source: ConnParams::parse("postgres://walaudit@localhost/fake").unwrap(),
        slot: SlotMode::Permanent {
            name: "s".into(),
            create: true,
        },
        publication: "walaudit".into(),
        create_publication: true,
        publication_tables: Vec::new(),
        status_interval: Duration::from_secs(1),
        assembler: AssemblerConfig {
            max_memory: 1 << 20,
            spill_dir: None,
            chunk_changes: 2,
            context_prefix: "walaudit".into(),
        },
        drain,
        metrics: Arc::new(Metrics::new()),
        streaming: None,
    }
}

/// Three transactions: ids 1-2 at 0/100, 3-5 at 0/200, 6 at 0/300.
fn server() -> FakeServer {
    FakeServer::new(vec![
        txn(10, 0x100, &[1, 2]),
        txn(11, 0x200, &[3, 4, 5]),
        txn(12, 0x300, &[6]),
    ])
}

fn store() -> Arc<Mutex<MemoryStore>> {
    Arc::new(Mutex::new(MemoryStore::default()))
}

/// The ids each stored transaction holds, in order.
fn stored(store: &Arc<Mutex<MemoryStore>>) -> Vec<(u64, Vec<String>)> {
    store
        .lock()
        .unwrap()
        .txns
        .iter()
        .map(|t| {
            let ids = t
                .changes
                .iter()
                .map(|c| match &c.row[0] {
                    crate::decode::Cell::Text(b) => String::from_utf8_lossy(b).into_owned(),
                    other => format!("{other:?}"),
                })
                .collect();
            (t.meta.end_lsn.0, ids)
        })
        .collect()
}

fn all_three() -> Vec<(u64, Vec<String>)> {
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        (0x108, ids(&["1", "2"])),
        (0x208, ids(&["3", "4", "5"])),
        (0x308, ids(&["6"])),
    ]
}

#[tokio::test(start_paused = true)]
async fn drain_hands_over_everything_and_confirms_it() {
    let server = server();
    let store = store();
    let summary = run_with(
        &server,
        options(true),
        MemorySink::new(Arc::clone(&store)),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(stored(&store), all_three());
    assert_eq!(summary.durable_lsn, Lsn(0x308));
    let state = server.state();
    assert_eq!(state.confirmed, Lsn(0x308));
    assert_eq!(state.finished, 1);
}

#[tokio::test(start_paused = true)]
async fn reconnects_with_backoff_and_hands_over_nothing_twice() {
    let server = server();
    {
        let mut state = server.state();
        // Two connects are refused; the first session then dies in the middle of the second
        // transaction (frames: B R I I C of the first, then B R I of the second).
        state.drop_after = Some(8);
        state.refuse_connects = 2;
    }
    let store = store();
    let opts = options(true);
    let metrics = Arc::clone(&opts.metrics);
    let start = tokio::time::Instant::now();
    // The session dies before any status update confirmed the first transaction, so the
    // server sends it again after the reconnect.
    run_resilient_with(
        &server,
        opts,
        MemorySink::new(Arc::clone(&store)),
        CancellationToken::new(),
        RetryPolicy::default(),
    )
    .await
    .unwrap();
    assert_eq!(stored(&store), all_three());
    // Backoff 0.5 s and 1 s after the refused connects; the session that died had made
    // progress, so the backoff starts again at 0.5 s (each plus up to 25 % jitter).
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(2000) && elapsed <= Duration::from_millis(2510),
        "{elapsed:?}"
    );
    assert_eq!(metrics.reconnects.get(), 3);
    let state = server.state();
    assert_eq!(state.connects, 2);
    assert_eq!(state.confirmed, Lsn(0x308));
}

#[tokio::test(start_paused = true)]
async fn a_replay_of_durable_transactions_is_skipped() {
    let server = server();
    let store = store();
    run_with(
        &server,
        options(true),
        MemorySink::new(Arc::clone(&store)),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    // The confirmation was lost (a crash right after the commit): the server resends all.
    server.state().confirmed = Lsn::ZERO;
    run_with(
        &server,
        options(true),
        MemorySink::new(Arc::clone(&store)),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(stored(&store), all_three());
}

#[tokio::test(start_paused = true)]
async fn only_durable_positions_are_confirmed() {
    let server = server();
    server.state().idle_wal = 0x1000;
    let store = store();
    store.lock().unwrap().hold_acks = true;
    let cancel = CancellationToken::new();
    let run = run_with(
        &server,
        options(false),
        MemorySink::new(Arc::clone(&store)),
        cancel.clone(),
    );
    let watch = async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        // Received everything, nothing durable: no flush position was ever confirmed.
        {
            let state = server.state();
            assert!(!state.statuses.is_empty());
            assert!(state.statuses.iter().all(|(_, flush)| flush.is_zero()));
            assert!(state.statuses.iter().any(|(write, _)| *write >= Lsn(0x308)));
        }
        store.lock().unwrap().hold_acks = false;
        store.lock().unwrap().make_durable();
        tokio::time::sleep(Duration::from_secs(3)).await;
        // Everything durable and nothing in flight: the server's idle WAL past it is
        // confirmed too, so the slot does not hold WAL of uncaptured tables.
        assert_eq!(server.state().confirmed, Lsn(0x308 + 0x1000));
        cancel.cancel();
    };
    let (summary, ()) = tokio::join!(run, watch);
    summary.unwrap();
}

/// A sink whose every call hangs (a storage that never answers).
struct HangingSink;

impl Sink for HangingSink {
    async fn write(&mut self, _: &TxnMeta, _: Vec<Change>) -> Result<(), SinkError> {
        std::future::pending().await
    }
    async fn commit(&mut self, _: &TxnMeta, _: Vec<CapturedMessage>) -> Result<(), SinkError> {
        std::future::pending().await
    }
    async fn message(&mut self, _: CapturedMessage) -> Result<(), SinkError> {
        std::future::pending().await
    }
    async fn flush(&mut self) -> Result<Lsn, SinkError> {
        std::future::pending().await
    }
    fn durable_lsn(&self) -> Lsn {
        Lsn::ZERO
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_with_a_sink_that_never_returns_ends_within_the_grace_period() {
    let server = server();
    let cancel = CancellationToken::new();
    let start = tokio::time::Instant::now();
    let run = run_with(&server, options(false), HangingSink, cancel.clone());
    let stop = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        cancel.cancel();
    };
    let (result, ()) = tokio::join!(run, stop);
    let elapsed = start.elapsed();
    assert!(
        matches!(result, Err(PipelineError::ShutdownTimeout(_))),
        "{result:?}"
    );
    assert!(
        elapsed <= Duration::from_secs(2) + SHUTDOWN_GRACE + Duration::from_secs(1),
        "{elapsed:?}"
    );
    let state = server.state();
    assert!(state.statuses.iter().all(|(_, flush)| flush.is_zero()));
    assert_eq!(state.confirmed, Lsn::ZERO);
}

/// A sink whose every write takes a while (a slow store), so capture waits on a full queue.
struct SlowSink(MemorySink);

impl Sink for SlowSink {
    async fn write(&mut self, txn: &TxnMeta, changes: Vec<Change>) -> Result<(), SinkError> {
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.0.write(txn, changes).await
    }
    async fn commit(&mut self, txn: &TxnMeta, m: Vec<CapturedMessage>) -> Result<(), SinkError> {
        self.0.commit(txn, m).await
    }
    async fn message(&mut self, message: CapturedMessage) -> Result<(), SinkError> {
        self.0.message(message).await
    }
    async fn flush(&mut self) -> Result<Lsn, SinkError> {
        self.0.flush().await
    }
    fn durable_lsn(&self) -> Lsn {
        self.0.durable_lsn()
    }
}

#[tokio::test(start_paused = true)]
async fn a_status_error_during_a_hand_over_is_reported_after_it() {
    // 40 changes in chunks of 2: 20 chunks against a queue of 8, so capture keeps sending
    // status updates while it waits; the second one fails.
    let ids: Vec<u64> = (1..=40).collect();
    let server = FakeServer::new(vec![txn(10, 0x100, &ids)]);
    server.state().fail_status_after = Some(1);
    let store = store();
    let result = run_with(
        &server,
        options(false),
        SlowSink(MemorySink::new(Arc::clone(&store))),
        CancellationToken::new(),
    )
    .await;
    assert!(
        matches!(&result, Err(PipelineError::Source(e)) if e.recovery() == crate::recovery::Recovery::Reconnect),
        "{result:?}"
    );
    // The transaction reached the sink whole: the error waited until it was handed over.
    let stored = stored(&store);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].1.len(), 40);
    // Nothing was confirmed by the failed updates.
    assert_eq!(server.state().confirmed, Lsn::ZERO);
}

#[test]
fn reconnects_only_for_the_source_and_a_lost_stream() {
    let closed = PipelineError::Source(SourceError::Closed {
        context: "streaming",
    });
    assert_eq!(closed.recovery(), Recovery::Reconnect);
    assert_eq!(PipelineError::StreamEnded.recovery(), Recovery::Reconnect);
    let refused = PipelineError::Source(SourceError::InvalidParams {
        reason: "no host".into(),
    });
    assert_eq!(refused.recovery(), Recovery::Fatal);
    // A sink retries storage trouble itself: its error keeps that decision (the metric's
    // kind) but is never a reconnect, so the retry loop ends the run.
    let storage = PipelineError::Sink(SinkError {
        message: "writing to the lake failed".into(),
        recovery: Recovery::Retry,
        source: None,
    });
    assert_eq!(storage.recovery(), Recovery::Retry);
    let sink = PipelineError::Sink(SinkError::permanent("disk full"));
    assert_eq!(sink.recovery(), Recovery::Fatal);
    let capture = PipelineError::Capture(crate::capture::CaptureError::protocol(
        "Commit without Begin",
    ));
    assert_eq!(capture.recovery(), Recovery::Fatal);
    let timeout = PipelineError::ShutdownTimeout(Duration::from_secs(60));
    assert_eq!(timeout.recovery(), Recovery::Fatal);
}
