//! Crash safety of `walaudit run`: SIGKILL at random moments under a live workload loses
//! nothing and doubles nothing.
//!
//! ```text
//!  workload task ──small txns (2 tables, some rolled back)──► source ──slot──► walaudit run
//!     │ ledger: rows changed per (table, op), xid, end-LSN bound            (killed -9 every
//!     ▼                                                                       0.3–2 s, seeded)
//!  after each kill: every txn ended ≤ confirmed_flush_lsn is in the lake (nothing confirmed
//!  that is not committed); at the end, after a final `run --drain`: per-table change counts
//!  equal the ledger, (_lsn, _seq) unique, latest image per key == SELECT * at the source.
//! ```
//!
//! `WALAUDIT_CRASH_SEED` replays a run (the seed is printed); `WALAUDIT_CRASH_KILLS` sets the
//! number of kills (default 20).

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio_util::sync::CancellationToken;

use crate::lake_s3::lake::LakeReader;
use crate::lake_s3::{Run, confirmed_flush, local_config, tail_text};
use crate::support::{TestDb, shared};

pub mod workload;

use workload::{DDL, Rng, TxnRecord, Workload, check_confirmed_is_durable, verify_lake};

/// The kill loop stops starting new runs after this long, whatever the kill count.
const KILL_LOOP_BUDGET: Duration = Duration::from_secs(75);

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Wait until no WAL sender holds `slot` (a killed client's walsender notices the closed socket).
async fn wait_slot_released(db: &TestDb, slot: &str) -> Result<Duration> {
    let started = Instant::now();
    loop {
        let active: bool = db
            .scalar(&format!(
                "SELECT coalesce(bool_or(active), false) FROM pg_replication_slots \
                 WHERE slot_name = '{slot}'"
            ))
            .await?;
        if !active {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(15) {
            bail!("slot {slot} still active 15 s after its client was killed");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_under_load_loses_nothing_and_doubles_nothing() -> Result<()> {
    let seed = env_u64("WALAUDIT_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let kills_wanted = env_u64("WALAUDIT_CRASH_KILLS").unwrap_or(20);
    eprintln!("crash test seed: WALAUDIT_CRASH_SEED={seed}");
    let started = Instant::now();

    let db = shared().await.fresh_db("crash").await?;
    db.execute(DDL).await?;
    let dir = tempfile::tempdir()?;
    let lake_dir = dir.path().join("lake");
    let mut run = Run::new(&db, lake_dir.to_str().context("utf-8 temp path")?);
    run.config = Some(local_config(dir.path())?);

    // The first run creates the slot and the publication (nothing to capture yet).
    run.drain()
        .await
        .context("the first run --drain (creates slot and publication)")?;
    let slots: i64 = db
        .scalar(&format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}'",
            run.slot
        ))
        .await?;
    assert_eq!(slots, 1, "walaudit run created its slot");
    let lake = LakeReader::local(&std::fs::canonicalize(&lake_dir)?);

    // The workload: small transactions until told to stop; committed ones are also published
    // to `committed` for the per-kill check.
    let stop = CancellationToken::new();
    let committed: Arc<Mutex<Vec<TxnRecord>>> = Arc::default();
    let workload = {
        let (stop, committed) = (stop.clone(), Arc::clone(&committed));
        let mut client = db.connect().await?;
        tokio::spawn(async move {
            let mut w = Workload::new(seed);
            let mut pace = Rng::new(seed ^ 0x5EED);
            while !stop.is_cancelled() {
                w.step(&mut client).await?;
                if let Some(last) = w.ledger.txns.last() {
                    let mut c = committed.lock().unwrap();
                    if c.len() < w.ledger.txns.len() {
                        c.push(last.clone());
                    }
                }
                tokio::time::sleep(Duration::from_millis(pace.range(1, 10))).await;
            }
            anyhow::Ok(w.ledger)
        })
    };

    let mut rng = Rng::new(seed ^ 0xDEAD);
    let (mut kills, mut checked, mut max_release) = (0u64, 0usize, Duration::ZERO);
    let mut confirmed_seen = Vec::new();
    let loop_started = Instant::now();
    while kills < kills_wanted && loop_started.elapsed() < KILL_LOOP_BUDGET {
        max_release = max_release.max(wait_slot_released(&db, &run.slot).await?);
        let log = dir.path().join(format!("run-{kills}.log"));
        let mut child = run
            .command(false)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log)?))
            .spawn()
            .context("spawn walaudit run")?;
        let alive_for = Duration::from_millis(rng.range(300, 2000));
        tokio::select! {
            () = tokio::time::sleep(alive_for) => {}
            status = child.wait() => {
                let log = std::fs::read(&log).unwrap_or_default();
                bail!("walaudit run exited by itself ({:?}) before the kill:\n{}",
                      status, tail_text(&log, 40));
            }
        }
        child.start_kill().context("SIGKILL walaudit run")?;
        child.wait().await?;
        kills += 1;

        // Nothing confirmed that is not committed.
        let confirmed = confirmed_flush(&db, &run.slot).await?;
        confirmed_seen.push(confirmed);
        let txns = committed.lock().unwrap().clone();
        checked = check_confirmed_is_durable(&lake, &txns, confirmed)
            .await
            .with_context(|| format!("after kill {kills} (seed {seed})"))?;
    }
    stop.cancel();
    let ledger = workload.await??;
    assert!(kills >= 10, "only {kills} kills in the time budget");
    assert!(
        confirmed_seen.windows(2).all(|w| w[0] <= w[1]),
        "the confirmed position never moves backward: {confirmed_seen:?}"
    );
    assert!(
        checked > 0 && confirmed_seen.first() < confirmed_seen.last(),
        "runs between kills made durable, confirmed progress (checked {checked} transactions, \
         confirmed {confirmed_seen:?})"
    );

    // Settle: one clean run to the end of the WAL, then compare with the ledger and source.
    wait_slot_released(&db, &run.slot).await?;
    run.drain().await.context("the final run --drain")?;
    let report = verify_lake(&lake, &db, &ledger)
        .await
        .with_context(|| format!("seed {seed}"))?;
    let all = ledger.txns.clone();
    let final_confirmed = confirmed_flush(&db, &run.slot).await?;
    let last_after = all.iter().map(|t| t.after_lsn).max().unwrap_or(0);
    assert_eq!(
        check_confirmed_is_durable(&lake, &all, i64::MAX).await?,
        all.len()
    );
    eprintln!(
        "crash test: seed {seed}, {kills} kills, {} committed txns ({} rolled back), {} changes; \
         {checked} txns checked confirmed-before-durable at the last kill; slowest slot \
         release {max_release:?}; final confirmed {final_confirmed:X} vs last txn bound \
         {last_after:X}; {report}; {:.1}s",
        ledger.txns.len(),
        ledger.rolled_back,
        ledger.total(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
