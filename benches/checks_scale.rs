//! Scheduler scale benchmark: 10,000 validation jobs, all due in the same minute, run by
//! `walaudit serve`.
//!
//! The source holds 50 tables of 2,000 rows (loaded into a local lake with `walaudit snapshot`)
//! and a 100,000-row `accounts` table. 9,000 jobs read the lake (180 per table, nine kinds:
//! row counts, missing and invalid values, duplicates, freshness, per-group aggregates, SQL
//! metrics, schemas, anomaly detection; over current state and over change tables) and 1,000
//! read the source (row counts, missing/invalid values, metrics, duplicates over key ranges),
//! with the default caps (8 runs at once, 2 on the source). Every job's cron names the same
//! minute. Printed: the time from that minute until every job has a run stored in
//! `_walaudit/check_runs` (read back with walaudit's own lake SQL), the runs by status, the
//! server's peak RSS (VmHWM; target ≤ 512 MiB), and its CPU use while nothing is due, before
//! and after the burst (target ≈ 0).
//!
//! `WALAUDIT_BENCH_JOBS` scales the job count (default 10000; a tenth run on the source).

use walaudit::testing as support;

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use chrono::{DurationRound, TimeDelta, Timelike, Utc};

const TABLES: usize = 50;
const TABLE_ROWS: usize = 2_000;
const ACCOUNTS: usize = 100_000;
const TARGET_RSS_MIB: f64 = 512.0;
/// The server gets at least this long to start before the jobs fall due.
const START_LEAD: Duration = Duration::from_secs(75);
const IDLE_WINDOW: Duration = Duration::from_secs(20);

fn main() -> Result<()> {
    let jobs: usize = std::env::var("WALAUDIT_BENCH_JOBS")
        .ok()
        .map(|v| v.parse().context("WALAUDIT_BENCH_JOBS must be a number"))
        .transpose()?
        .unwrap_or(10_000);
    ensure!(jobs >= 100, "WALAUDIT_BENCH_JOBS must be at least 100");
    tokio::runtime::Runtime::new()?.block_on(bench(jobs))
}

async fn bench(jobs: usize) -> Result<()> {
    let cluster = support::PgCluster::start_async(support::ClusterOptions::default()).await?;
    let db = cluster.fresh_db("checkscale").await?;
    let mut ddl = String::new();
    for t in 0..TABLES {
        write!(
            ddl,
            "CREATE TABLE t{t:02} (id bigint PRIMARY KEY, account int NOT NULL, \
             amount numeric(12,2), status text, updated_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO t{t:02} SELECT g, g % 40, (g % 1000) / 10.0,
                 (ARRAY['new','paid','shipped','cancelled'])[1 + g % 4], now()
             FROM generate_series(1, {TABLE_ROWS}) g;"
        )?;
    }
    write!(
        ddl,
        "CREATE TABLE accounts (id bigint PRIMARY KEY, email text, balance numeric(12,2));
         INSERT INTO accounts SELECT g, 'user' || g || '@example.com', (g % 5000) / 10.0
         FROM generate_series(1, {ACCOUNTS}) g;
         ANALYZE;
         CREATE PUBLICATION walaudit FOR ALL TABLES;"
    )?;
    db.execute(&ddl).await?;

    let work = tempfile::tempdir()?;
    let lake = work.path().join("lake");
    let bin = env!("CARGO_BIN_EXE_walaudit");
    let loaded = Instant::now();
    let mut snapshot = Command::new(bin);
    snapshot
        .args(["snapshot", "--source", &db.url, "--slot", "checkscale"])
        .args(["--publication", "walaudit", "--lake"])
        .arg(&lake)
        .env("WALAUDIT_LOG", "warn");
    common::run_measured(
        &mut snapshot,
        &work.path().join("snapshot.log"),
        "walaudit snapshot",
    )?;
    eprintln!(
        "lake: {TABLES} tables of {TABLE_ROWS} rows loaded in {:.1}s",
        loaded.elapsed().as_secs_f64()
    );

    // The minute every job names: far enough ahead for the server to start.
    let due = (Utc::now() + TimeDelta::from_std(START_LEAD)? + TimeDelta::minutes(1))
        .duration_trunc(TimeDelta::minutes(1))?;
    let cron = format!("{} {} * * *", due.minute(), due.hour());
    let checks = work.path().join("checks");
    std::fs::create_dir(&checks)?;
    let source_jobs = jobs / 10;
    let lake_jobs = jobs - source_jobs;
    for t in 0..TABLES {
        let mine = lake_jobs / TABLES + usize::from(t < lake_jobs % TABLES);
        let mut file = String::from("jobs:\n");
        for j in 0..mine {
            file.push_str(&lake_job(t, j, &cron));
        }
        std::fs::write(checks.join(format!("t{t:02}.yml")), file)?;
    }
    let mut file = String::from("jobs:\n");
    for j in 0..source_jobs {
        file.push_str(&source_job(j, &cron));
    }
    std::fs::write(checks.join("source.yml"), file)?;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let started = Instant::now();
    let mut serve = Server(
        Command::new(bin)
            .args(["serve", "--source", &db.url, "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--checks")
            .arg(&checks)
            .arg("--lake")
            .arg(&lake)
            .env("WALAUDIT_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(
                work.path().join("serve.log"),
            )?))
            .spawn()
            .context("spawn walaudit serve")?,
    );
    let pid = serve.0.id();
    wait_serving(port, &mut serve, &work.path().join("serve.log")).await?;
    let startup = started.elapsed();
    eprintln!(
        "serve: {jobs} jobs loaded, guarded and recorded in {:.1}s; due at {due}",
        startup.as_secs_f64()
    );

    // Nothing is due until the minute: the scheduler's idle CPU.
    let until_due = (due - Utc::now()).to_std().unwrap_or_default();
    let before = if until_due > Duration::from_secs(8) {
        Some(idle_cpu(pid, until_due - Duration::from_secs(3)).await?)
    } else {
        None
    };
    tokio::time::sleep((due - Utc::now()).to_std().unwrap_or_default()).await;

    // Every job falls due: wait until each has a stored run.
    let lake_url = lake.display().to_string();
    let deadline = Instant::now() + Duration::from_secs(1800);
    let all_stored = loop {
        let stored = common::lake_scalar(
            &lake_url,
            "SELECT count(DISTINCT job) FROM _walaudit.check_runs WHERE \"trigger\" = 'schedule'",
        )
        .await?;
        if stored as usize >= jobs {
            break (Utc::now() - due).to_std()?;
        }
        if let Some(status) = serve.0.try_wait()? {
            bail!("walaudit serve exited ({status}) with {stored} of {jobs} jobs stored");
        }
        ensure!(
            Instant::now() < deadline,
            "only {stored} of {jobs} jobs stored after 30 min"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let peak_burst = common::vm_hwm(pid).unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = idle_cpu(pid, IDLE_WINDOW).await?;
    let peak = common::vm_hwm(pid).unwrap_or(0);
    let by_status = status_counts(&lake_url).await?;
    let runs = common::lake_scalar(&lake_url, "SELECT count(*) FROM _walaudit.check_runs").await?;
    let results =
        common::lake_scalar(&lake_url, "SELECT count(*) FROM _walaudit.check_results").await?;
    drop(serve);

    println!(
        "walaudit checks scale benchmark: {jobs} jobs ({lake_jobs} on the lake over {TABLES} \
         tables, {source_jobs} on the source), all due at the same minute"
    );
    println!(
        "result: all {jobs} jobs had a stored run {:.1}s after the minute ({:.0} jobs/s); \
         {runs} runs and {results} check results stored; runs by status: {by_status}",
        all_stored.as_secs_f64(),
        jobs as f64 / all_stored.as_secs_f64()
    );
    println!(
        "result: peak RSS {:.0} MiB (target <= {TARGET_RSS_MIB:.0} MiB): {}; at the end of the \
         burst {:.0} MiB; start-up (load, EXPLAIN guard, jobs table) {:.1}s",
        common::mib(peak),
        if common::mib(peak) <= TARGET_RSS_MIB {
            "met"
        } else {
            "NOT met"
        },
        common::mib(peak_burst),
        startup.as_secs_f64()
    );
    let pct =
        |(cpu, secs): (f64, f64)| format!("{:.2}% of one core over {secs:.0}s", 100.0 * cpu / secs);
    println!(
        "result: CPU while nothing is due: before the minute {}, after the burst {}",
        before.map_or("(not measured: the server started late)".to_owned(), pct),
        pct(after)
    );
    drop(db);
    cluster.shutdown_async().await?;
    Ok(())
}

/// Stops `walaudit serve` (SIGTERM, then a kill) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_serving(port: u16, serve: &mut Server, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await
            && r.text().await.unwrap_or_default().trim() == "serving"
        {
            return Ok(());
        }
        if let Some(status) = serve.0.try_wait()? {
            bail!(
                "walaudit serve exited ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        ensure!(
            Instant::now() < deadline,
            "walaudit serve not serving after 10 min"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// CPU seconds `pid` used over `window`, and the window's length in seconds.
async fn idle_cpu(pid: u32, window: Duration) -> Result<(f64, f64)> {
    let start = common::cpu_seconds(pid).context("the server's CPU time")?;
    let at = Instant::now();
    tokio::time::sleep(window).await;
    let end = common::cpu_seconds(pid).context("the server's CPU time")?;
    Ok((end - start, at.elapsed().as_secs_f64()))
}

async fn status_counts(lake: &str) -> Result<String> {
    let query =
        walaudit::query::LakeQuery::open(lake, walaudit::query::LakeOptions::default()).await?;
    let batches = query
        .collect(
            "SELECT status || ' ' || CAST(count(*) AS VARCHAR) FROM _walaudit.check_runs \
             GROUP BY status ORDER BY status",
        )
        .await?;
    let mut parts = Vec::new();
    for b in &batches {
        let col = deltalake::arrow::compute::cast(
            b.column(0),
            &deltalake::arrow::datatypes::DataType::Utf8,
        )?;
        let text = col
            .as_any()
            .downcast_ref::<deltalake::arrow::array::StringArray>()
            .context("text")?;
        parts.extend(text.iter().flatten().map(str::to_owned));
    }
    Ok(parts.join(", "))
}

/// Job `j` over lake table `t`: one of nine kinds, over current state or the change table.
fn lake_job(t: usize, j: usize, cron: &str) -> String {
    let current = format!("current.public.t{t:02}");
    let changes = format!("public.t{t:02}");
    let (kind, dataset, checks) = match j % 9 {
        0 => (
            "rows",
            &current,
            format!("      - type: row_count\n        must_be: {TABLE_ROWS}\n"),
        ),
        1 => (
            "values",
            &current,
            "      - type: missing\n        column: status\n      - type: invalid\n        \
             column: amount\n        valid_min: 0\n"
                .to_owned(),
        ),
        2 => (
            "unique",
            &current,
            "      - type: duplicate\n        columns: [id]\n".to_owned(),
        ),
        3 => (
            "fresh",
            &current,
            "      - type: freshness\n        column: updated_at\n        must_be_less_than: 86400\n"
                .to_owned(),
        ),
        4 => (
            "per_account",
            &current,
            "      - type: aggregate\n        group_by: [account]\n        expression: count(*)\n        \
             each:\n          must_be_less_than_or_equal: 100\n"
                .to_owned(),
        ),
        5 => (
            "paid",
            &changes,
            format!(
                "      - type: metric\n        query: SELECT count(*) FROM public.t{t:02} WHERE \
                 status = 'paid'\n        must_be_greater_than: 0\n"
            ),
        ),
        6 => (
            "statuses",
            &changes,
            "      - type: invalid\n        column: status\n        valid_values: [new, paid, \
             shipped, cancelled]\n"
                .to_owned(),
        ),
        7 => (
            "shape",
            &current,
            "      - type: schema\n        required: {id: bigint, status: text}\n".to_owned(),
        ),
        _ => (
            "trend",
            &current,
            "      - type: row_count\n        name: rows\n      - type: anomaly\n        of: rows\n"
                .to_owned(),
        ),
    };
    format!(
        "  - name: t{t:02}_{kind}_{j}\n    dataset: {dataset}\n    schedule: \"{cron}\"\n    \
         checks:\n{checks}"
    )
}

/// Source job `j`: one of four kinds over a 1,000-key range of `accounts` (an index scan).
fn source_job(j: usize, cron: &str) -> String {
    let lo = (j * 1000) % ACCOUNTS;
    let hi = lo + 1000;
    let range = format!("id > {lo} AND id <= {hi}");
    let (kind, checks) = match j % 4 {
        0 => (
            "rows",
            "      - type: row_count\n        must_be: 1000\n".to_owned(),
        ),
        1 => (
            "values",
            "      - type: missing\n        column: email\n      - type: invalid\n        column: \
             balance\n        valid_min: 0\n"
                .to_owned(),
        ),
        2 => (
            "negative",
            format!(
                "      - type: metric\n        query: SELECT count(*) FROM public.accounts WHERE \
                 {range} AND balance < 0\n        must_be: 0\n"
            ),
        ),
        _ => (
            "unique",
            "      - type: duplicate\n        columns: [email]\n".to_owned(),
        ),
    };
    format!(
        "  - name: accounts_{kind}_{j}\n    connection: source\n    dataset: public.accounts\n    \
         filter: \"{range}\"\n    schedule: \"{cron}\"\n    checks:\n{checks}"
    )
}
