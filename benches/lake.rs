//! End-to-end benchmark: `walaudit run --drain` into a local Delta lake against
//! `pg_recvlogical` (no decoding, no writing) draining the same backlog.
//!
//! The backlog is the "orders" workload (1M inserts in transactions of 1,000 + 200k updates in
//! transactions of 100 of `orders(id bigserial pk, customer_id int, amount numeric(12,2),
//! status text, note text, created_at timestamptz, updated_at timestamptz)`) on a throwaway
//! cluster. Four slots exist before the workload, so each contender drains the identical
//! backlog twice, in alternating order (recvlogical, walaudit, walaudit, recvlogical): the
//! ratio is not an artefact of a warm or cold page cache.
//!
//! Figures printed: changes/s of each run, the median rate of each contender, the ratio
//! walaudit / pg_recvlogical (target ≥ 0.9), and walaudit's peak RSS (VmHWM, target
//! ≤ 512 MiB). The walaudit lake is read back (deltalake + DataFusion) to prove that every
//! change was written.
//!
//! `WALAUDIT_BENCH_ROWS` scales the workload (default 1000000 inserts; updates are a fifth).

use walaudit::testing as support;

mod common;

use common::{Figure, best_rate, mib, peak_rss};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};

const TARGET_RATIO: f64 = 0.9;
const TARGET_RSS_MIB: f64 = 512.0;

fn main() -> Result<()> {
    let inserts: u64 = std::env::var("WALAUDIT_BENCH_ROWS")
        .ok()
        .map(|v| v.parse().context("WALAUDIT_BENCH_ROWS must be a number"))
        .transpose()?
        .unwrap_or(1_000_000);
    let updates = inserts / 5;
    let changes = inserts + updates;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(bench(inserts, updates, changes))
}

async fn bench(inserts: u64, updates: u64, changes: u64) -> Result<()> {
    let options = support::ClusterOptions::default().setting("logical_decoding_work_mem", "64MB");
    let cluster = support::PgCluster::start_async(options).await?;
    let db = cluster.fresh_db("lakebench").await?;
    db.execute(support::orders::CREATE_ORDERS).await?;
    db.execute("CREATE PUBLICATION walaudit FOR TABLE orders")
        .await?;
    let slots = ["recv_1", "walaudit_1", "walaudit_2", "recv_2"];
    for slot in slots {
        db.execute(&format!(
            "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
        ))
        .await?;
    }
    eprintln!("filling the backlog: {inserts} inserts + {updates} updates...");
    let filled = Instant::now();
    support::orders::fill(&db, inserts, updates).await?;
    let endpos: String = db.scalar("SELECT pg_current_wal_lsn()::text").await?;
    let wal_mib: f64 = db
        .scalar(&format!(
            "SELECT ((pg_current_wal_lsn() - confirmed_flush_lsn) / 1048576.0)::float8 \
             FROM pg_replication_slots WHERE slot_name = '{}'",
            slots[0]
        ))
        .await?;
    eprintln!(
        "filled in {:.1}s; {wal_mib:.0} MiB of WAL per slot",
        filled.elapsed().as_secs_f64()
    );

    let bin = env!("CARGO_BIN_EXE_walaudit");
    let work = tempfile::tempdir()?;
    let mut figures = Vec::new();
    for slot in slots {
        let figure = if slot.starts_with("recv") {
            recvlogical(&cluster.bin("pg_recvlogical"), &db.url, slot, &endpos)?
        } else {
            let lake = work.path().join(slot);
            let figure = walaudit(bin, &db.url, slot, &lake)?;
            let written = common::count_lake_rows(&lake.join("public/orders")).await?;
            ensure!(
                written == changes as i64,
                "walaudit wrote {written} changes, the workload made {changes}"
            );
            figure
        };
        figure.print(changes, "changes");
        figures.push(figure);
    }
    // Best of the two runs of each contender.
    let rate = |who: &str| best_rate(&figures, who, changes);
    let (recv, ours) = (rate("pg_recvlogical"), rate("walaudit"));
    let peak = peak_rss(&figures);
    println!("walaudit lake benchmark: orders backlog, {inserts} inserts + {updates} updates");
    println!(
        "result: pg_recvlogical {recv:.0} changes/s (best of 2), walaudit {ours:.0} changes/s (best of 2)"
    );
    println!(
        "result: ratio walaudit / pg_recvlogical = {:.2} (target >= {TARGET_RATIO}): {}",
        ours / recv,
        if ours / recv >= TARGET_RATIO {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "result: walaudit peak RSS {:.0} MiB (target <= {TARGET_RSS_MIB} MiB): {}",
        mib(peak),
        if mib(peak) <= TARGET_RSS_MIB {
            "met"
        } else {
            "NOT met"
        }
    );
    drop(db);
    cluster.shutdown_async().await?;
    Ok(())
}

/// pg_recvlogical from the slot's start to `endpos`, output discarded.
fn recvlogical(bin: &Path, url: &str, slot: &str, endpos: &str) -> Result<Figure> {
    let started = Instant::now();
    let out = Command::new(bin)
        .args(["-d", url, "--slot", slot, "--start", "--no-loop"])
        .args(["-o", "proto_version=1", "-o", "publication_names=walaudit"])
        .args(["--endpos", endpos, "-f", "/dev/null"])
        .stdout(Stdio::null())
        .output()
        .context("run pg_recvlogical")?;
    let seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "pg_recvlogical failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(Figure {
        who: "pg_recvlogical",
        seconds,
        peak_rss: None,
    })
}

/// `walaudit run --drain` into `lake`, sampling its RSS every 50 ms.
fn walaudit(bin: &str, url: &str, slot: &str, lake: &Path) -> Result<Figure> {
    let mut cmd = Command::new(bin);
    cmd.env("WALAUDIT_LISTEN", "127.0.0.1:0")
        .args([
            "run",
            "--drain",
            "--source",
            url,
            "--slot",
            slot,
            "--publication",
            "walaudit",
            // The backlog is what is measured: no historical load of the table.
            "--snapshot",
            "never",
        ])
        .arg("--lake")
        .arg(lake)
        .env("WALAUDIT_LOG", "warn");
    let log = lake.with_extension("log");
    let (seconds, peak) = common::run_measured(&mut cmd, &log, "walaudit run --drain")?;
    Ok(Figure {
        who: "walaudit",
        seconds,
        peak_rss: Some(peak),
    })
}
