//! `walaudit run --drain` into `s3://<bucket>/lake` on the test server, with and without
//! storage faults.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::lake::LakeReader;
use super::{Run, confirmed_flush, s3_config};
use crate::crash::workload::{DDL, Ledger, Workload, verify_lake};
use crate::support::s3::{FaultKind, FaultMix, S3Server};
use crate::support::{TestDb, shared};

/// A fresh database with the workload tables, an S3 server and a `run` command for its lake.
async fn setup(hint: &str, seed: u64) -> Result<(TestDb, S3Server, tempfile::TempDir, Run)> {
    let db = shared().await.fresh_db(hint).await?;
    db.execute(DDL).await?;
    let server = S3Server::start("walaudit-lake", seed)?;
    let dir = tempfile::tempdir()?;
    let mut run = Run::new(&db, &server.url("lake"));
    run.config = Some(s3_config(dir.path(), &server)?);
    Ok((db, server, dir, run))
}

/// `steps` more transactions of workload `w`, on a connection of their own.
async fn steps(db: &TestDb, w: &mut Workload, steps: usize) -> Result<()> {
    let mut client = db.connect().await?;
    for _ in 0..steps {
        w.step(&mut client).await?;
    }
    Ok(())
}

/// A new seeded workload after `steps` transactions; returns its ledger.
async fn workload(db: &TestDb, seed: u64, n: usize) -> Result<Ledger> {
    let mut w = Workload::new(seed);
    steps(db, &mut w, n).await?;
    Ok(w.ledger)
}

/// Each table's Delta version (None: no table).
async fn versions(lake: &LakeReader) -> Vec<Option<u64>> {
    let mut out = Vec::new();
    for rel in ["public/accounts", "public/events", "_walaudit/transactions"] {
        out.push(match lake.open(rel).await {
            Ok(t) => t.version(),
            Err(_) => None,
        });
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_into_s3_writes_readable_tables_with_every_change_once() -> Result<()> {
    let (db, server, _dir, run) = setup("lake_s3_drain", 11).await?;
    // The first run creates slot and publication; the workload comes after.
    run.drain().await?;
    let ledger = workload(&db, 11, 200).await?;
    run.drain().await?;

    let lake = LakeReader::s3(&server, "lake")?;
    let report = verify_lake(&lake, &db, &ledger).await?;
    // The transactions table: one row per captured transaction of the workload.
    let txns = lake
        .sql(
            &[("x", "_walaudit/transactions")],
            "SELECT count(*) FROM x WHERE change_count > 0",
        )
        .await?;
    assert_eq!(
        super::lake::single_int(&txns),
        ledger.txns.len() as i64,
        "{report}"
    );
    // The objects are really on the server, under the lake prefix.
    assert!(
        server
            .object_path("lake/public/accounts/_delta_log")
            .is_dir()
    );

    // A second drain finds nothing new: no new commit anywhere.
    let before = versions(&lake).await;
    run.drain().await?;
    assert_eq!(
        versions(&lake).await,
        before,
        "an idle drain commits nothing"
    );
    verify_lake(&lake, &db, &ledger).await?;
    eprintln!(
        "drain into s3: {report}; requests served {}",
        server.faults.stats().requests
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_through_failing_storage_keeps_every_change_exactly_once() -> Result<()> {
    let (db, server, _dir, run) = setup("lake_s3_faults", 23).await?;
    run.drain().await?;
    let mut w = Workload::new(23);
    steps(&db, &mut w, 150).await?;

    // 20% of requests fail (503 SlowDown, 500), some are slow.
    server.faults.set_mix(FaultMix {
        delay: 1,
        ..FaultMix::ERRORS
    });
    server.faults.set_delay(Duration::from_millis(150));
    server.faults.set_rate(200);
    server.faults.reset_stats();
    let started = Instant::now();
    run.drain()
        .await
        .context("run --drain with 20% of storage requests failing")?;
    let faulty_secs = started.elapsed().as_secs_f64();
    let stats = server.faults.stats();
    assert!(
        stats.total_injected() > 10,
        "faults were injected: {stats:?}"
    );

    // More changes while faults continue, then a clean drain: nothing lost, nothing doubled.
    steps(&db, &mut w, 100).await?;
    let ledger = w.ledger;
    run.drain()
        .await
        .context("second run --drain, faults still on")?;
    server.faults.set_rate(0);
    run.drain().await.context("clean run --drain")?;
    let lake = LakeReader::s3(&server, "lake")?;
    let report = verify_lake(&lake, &db, &ledger).await?;
    eprintln!("drain through faults: {report}; {stats:?}; faulty drain took {faulty_secs:.1}s");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn storage_outage_confirms_nothing_and_recovery_delivers_everything_once() -> Result<()> {
    let (db, server, _dir, run) = setup("lake_s3_outage", 31).await?;
    run.drain().await?;
    // Tables exist before the outage: it hits appends to them, not only their creation.
    let mut w = Workload::new(31);
    steps(&db, &mut w, 20).await?;
    run.drain().await?;
    steps(&db, &mut w, 100).await?;
    let ledger = w.ledger;
    let confirmed_before = confirmed_flush(&db, &run.slot).await?;

    // Every write fails: the engine cannot commit, so it must not confirm anything.
    server.faults.set_mix(FaultMix::only(FaultKind::SlowDown));
    server
        .faults
        .set_only_ops(&["put_object", "complete_multipart_upload", "upload_part"]);
    server.faults.set_rate(1000);
    let mut child = run
        .command(false)
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let watch_until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < watch_until {
        let confirmed = confirmed_flush(&db, &run.slot).await?;
        assert_eq!(
            confirmed, confirmed_before,
            "confirmed while no write could succeed"
        );
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!("walaudit run stopped during the outage: {status}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    assert_eq!(confirmed_flush(&db, &run.slot).await?, confirmed_before);

    // Storage back: everything arrives, once.
    server.faults.set_rate(0);
    server.faults.set_only_ops(&[]);
    wait_inactive(&db, &run.slot).await?;
    run.drain().await?;
    let lake = LakeReader::s3(&server, "lake")?;
    verify_lake(&lake, &db, &ledger).await?;
    assert!(confirmed_flush(&db, &run.slot).await? > confirmed_before);
    Ok(())
}

/// Lost responses: the write happened but the client saw a 500. A retried commit must not
/// append the same changes twice (the retry finds its own commit there).
#[tokio::test(flavor = "multi_thread")]
async fn lost_storage_responses_never_double_a_commit() -> Result<()> {
    let (db, server, _dir, run) = setup("lake_s3_lost", 41).await?;
    run.drain().await?;
    let ledger = workload(&db, 41, 150).await?;
    server.faults.set_mix(FaultMix {
        lost_response: 1,
        ..FaultMix::ERRORS
    });
    server.faults.set_rate(150);
    // The engine may give up (exit non-zero) on an ambiguous commit; it must not double.
    let out = run.drain_output().await?;
    eprintln!(
        "run --drain with lost responses: {} ({:?})",
        out.status,
        server.faults.stats()
    );
    server.faults.set_rate(0);
    wait_inactive(&db, &run.slot).await?;
    run.drain().await?;
    let lake = LakeReader::s3(&server, "lake")?;
    verify_lake(&lake, &db, &ledger).await?;
    Ok(())
}

async fn wait_inactive(db: &TestDb, slot: &str) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let active: bool = db
            .scalar(&format!(
                "SELECT coalesce(bool_or(active), false) FROM pg_replication_slots \
                 WHERE slot_name = '{slot}'"
            ))
            .await?;
        if !active {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < until, "slot {slot} still active");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
