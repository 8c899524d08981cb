//! Historical-load benchmark: `walaudit snapshot` of a 10,000,000-row orders table into a local
//! Delta lake, against the source's raw export speed in the same run,
//! `psql -c "\copy (SELECT * FROM orders) TO '/dev/null'"`.
//!
//! Both read the same table, warm from a first untimed pass, in alternating order (psql,
//! walaudit, walaudit, psql). walaudit runs with default settings (workers, chunk size); each of
//! its runs uses a fresh slot and lake. Printed: rows/s of each run, the best of each contender,
//! the ratio walaudit / psql (target ≥ 0.8), walaudit's peak RSS (VmHWM), and the lake row count
//! read back with deltalake + DataFusion. A last run with `snapshot.copy_format = "text"` shows
//! what a table that cannot be copied in binary gets (reported, not part of the target).
//!
//! `WALAUDIT_BENCH_ROWS` scales the table (default 10000000).

use walaudit::testing as support;

mod common;

use common::{Figure, best_rate, mib, peak_rss};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};

const TARGET_RATIO: f64 = 0.8;

fn main() -> Result<()> {
    let rows: u64 = std::env::var("WALAUDIT_BENCH_ROWS")
        .ok()
        .map(|v| v.parse().context("WALAUDIT_BENCH_ROWS must be a number"))
        .transpose()?
        .unwrap_or(10_000_000);
    tokio::runtime::Runtime::new()?.block_on(bench(rows))
}

async fn bench(rows: u64) -> Result<()> {
    let cluster = support::PgCluster::start_async(support::ClusterOptions::default()).await?;
    let db = cluster.fresh_db("snapbench").await?;
    db.execute(support::orders::CREATE_ORDERS).await?;
    eprintln!("filling orders with {rows} rows...");
    let filled = Instant::now();
    db.execute(&format!(
        "INSERT INTO orders (customer_id, amount, status, note, created_at, updated_at)
         SELECT (g * 7919) % 100000, ((g * 31) % 1000000) / 100.0,
                (ARRAY['new','paid','shipped','cancelled'])[1 + g % 4],
                'order note ' || g, now() - g * interval '1 second', now()
         FROM generate_series(1::bigint, {rows}) g"
    ))
    .await?;
    db.execute("VACUUM ANALYZE orders").await?;
    let size: String = db
        .scalar("SELECT pg_size_pretty(pg_total_relation_size('orders'))")
        .await?;
    eprintln!("filled in {:.1}s ({size})", filled.elapsed().as_secs_f64());
    db.execute("CREATE PUBLICATION walaudit FOR TABLE orders")
        .await?;

    let psql = cluster.bin("psql");
    // Warm the cache for both contenders.
    psql_copy(&psql, &db.url)?;
    let bin = env!("CARGO_BIN_EXE_walaudit");
    let work = tempfile::tempdir()?;
    let mut figures = Vec::new();
    for (i, who) in ["psql", "walaudit", "walaudit", "psql", "walaudit-text"]
        .into_iter()
        .enumerate()
    {
        let figure = if who == "psql" {
            psql_copy(&psql, &db.url)?
        } else {
            let lake = work.path().join(format!("lake_{i}"));
            let slot = format!("snapbench_{i}");
            let text = who == "walaudit-text";
            let figure = walaudit(bin, &db.url, &slot, &lake, text, work.path())?;
            let written = common::count_lake_rows(&lake.join("public/orders")).await?;
            ensure!(
                written == rows as i64,
                "walaudit wrote {written} rows, the table has {rows}"
            );
            db.execute(&format!("SELECT pg_drop_replication_slot('{slot}')"))
                .await?;
            figure
        };
        figure.print(rows, "rows");
        figures.push(figure);
    }
    let best = |who: &str| best_rate(&figures, who, rows);
    let (raw, ours, text) = (best("psql"), best("walaudit"), best("walaudit-text"));
    let peak = peak_rss(&figures);
    println!("walaudit snapshot benchmark: orders, {rows} rows, {size}");
    println!(
        "result: psql \\copy {raw:.0} rows/s (best of 2), walaudit snapshot {ours:.0} rows/s (best of 2)"
    );
    println!(
        "result: ratio walaudit / psql = {:.2} (target >= {TARGET_RATIO}): {}",
        ours / raw,
        if ours / raw >= TARGET_RATIO {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "result: text COPY format (snapshot.copy_format = \"text\") {text:.0} rows/s, ratio {:.2}",
        text / raw
    );
    println!("result: walaudit peak RSS {:.0} MiB", mib(peak));
    drop(db);
    cluster.shutdown_async().await?;
    Ok(())
}

/// `psql -c "\copy (SELECT * FROM orders) TO '/dev/null'"`.
fn psql_copy(psql: &Path, url: &str) -> Result<Figure> {
    let started = Instant::now();
    let out = Command::new(psql)
        .args([
            url,
            "-X",
            "-q",
            "-c",
            "\\copy (SELECT * FROM orders) TO '/dev/null'",
        ])
        .stdout(Stdio::null())
        .output()
        .context("run psql")?;
    if !out.status.success() {
        bail!("psql failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(Figure {
        who: "psql",
        seconds: started.elapsed().as_secs_f64(),
        peak_rss: None,
    })
}

/// `walaudit snapshot` (default settings, or the text COPY format when `text`) into `lake`,
/// sampling its peak RSS.
fn walaudit(
    bin: &str,
    url: &str,
    slot: &str,
    lake: &Path,
    text: bool,
    work: &Path,
) -> Result<Figure> {
    let mut cmd = Command::new(bin);
    if text {
        let config = work.join("text.toml");
        std::fs::write(&config, "[snapshot]\ncopy_format = \"text\"\n")?;
        cmd.arg("--config").arg(config);
    }
    cmd.args([
        "snapshot",
        "--source",
        url,
        "--slot",
        slot,
        "--publication",
        "walaudit",
    ])
    .arg("--lake")
    .arg(lake)
    .env("WALAUDIT_LOG", "warn");
    let log = lake.with_extension("log");
    let (seconds, peak) = common::run_measured(&mut cmd, &log, "walaudit snapshot")?;
    Ok(Figure {
        who: if text { "walaudit-text" } else { "walaudit" },
        seconds,
        peak_rss: Some(peak),
    })
}
