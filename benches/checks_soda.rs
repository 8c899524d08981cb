//! Validation speed against Soda Core: the same 30 checks on a 1,000,000-row Postgres table,
//! run by `walaudit check run` and by `soda scan` (soda-core-postgres 3.5.6 from PyPI, in a
//! virtualenv this benchmark creates under `target/walaudit-bench/`) in one run.
//!
//! The checks cover what both tools can say: row counts, missing and invalid values (value
//! lists, ranges, lengths, a regex, percents), duplicates over one and two columns, freshness,
//! a reference to another table, the schema, failed-row queries, a user-defined metric and
//! min / avg / max; 10 of them fail on the data. Each tool runs twice, alternating (Soda first),
//! after a warm-up run of each. Printed: each run's time, the best of each tool, the ratio
//! Soda / walaudit (target ≥ 3), and every check's outcome in both tools, which must agree.
//!
//! `WALAUDIT_BENCH_ROWS` scales the table (default 1000000; the thresholds scale with it).
//! `WALAUDIT_SODA` names a `soda` executable to use instead of the virtualenv's.

use walaudit::testing as support;

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

const TARGET_RATIO: f64 = 3.0;
const SODA_PACKAGE: &str = "soda-core-postgres==3.5.6";

fn main() -> Result<()> {
    let rows: u64 = std::env::var("WALAUDIT_BENCH_ROWS")
        .ok()
        .map(|v| v.parse().context("WALAUDIT_BENCH_ROWS must be a number"))
        .transpose()?
        .unwrap_or(1_000_000);
    ensure!(
        rows >= 200_000,
        "WALAUDIT_BENCH_ROWS must be at least 200000"
    );
    let soda = soda()?;
    tokio::runtime::Runtime::new()?.block_on(bench(rows, &soda))
}

/// `soda` from `WALAUDIT_SODA`, or from the benchmark's virtualenv (created on first use).
fn soda() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("WALAUDIT_SODA") {
        return Ok(PathBuf::from(path));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/walaudit-bench/soda-venv");
    let soda = venv.join("bin/soda");
    if soda.is_file() {
        return Ok(soda);
    }
    eprintln!("creating {} with {SODA_PACKAGE}...", venv.display());
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .context("python3 -m venv (install python3-venv)")?
        .success()
        && Command::new(venv.join("bin/pip"))
            .args(["install", "-q", SODA_PACKAGE])
            .status()
            .context("pip install")?
            .success();
    ensure!(
        ok,
        "could not install {SODA_PACKAGE} into {}",
        venv.display()
    );
    Ok(soda)
}

async fn bench(rows: u64, soda: &Path) -> Result<()> {
    let cluster = support::PgCluster::start_async(support::ClusterOptions::default()).await?;
    let db = cluster.fresh_db("sodabench").await?;
    eprintln!("filling orders with {rows} rows...");
    db.execute(&format!(
        "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
         INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(0, 99999) g;
         CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int, status text,
             amount numeric(10,2), email text, note text, created_at timestamptz,
             updated_at timestamptz);
         INSERT INTO orders SELECT g, (g * 7919) % 100000,
             (ARRAY['new','paid','shipped','cancelled'])[1 + g % 4],
             ((g * 31) % 1000000) / 100.0, 'user' || (g % ({rows} / 2)) || '@example.com',
             CASE WHEN g % 100 = 0 THEN NULL ELSE 'order note ' || g END,
             now() - g * interval '1 second', now() - interval '2 hours'
         FROM generate_series(1::bigint, {rows}) g"
    ))
    .await?;
    db.execute("VACUUM ANALYZE").await?;

    let work = tempfile::tempdir()?;
    let checks = work.path().join("checks");
    std::fs::create_dir(&checks)?;
    std::fs::write(checks.join("orders.yml"), walaudit_jobs(rows))?;
    let soda_checks = work.path().join("soda-checks.yml");
    std::fs::write(&soda_checks, soda_checks_text(rows))?;
    let soda_config = work.path().join("soda-config.yml");
    std::fs::write(
        &soda_config,
        format!(
            "data_source bench:\n  type: postgres\n  host: 127.0.0.1\n  port: {}\n  username: \
             {}\n  password: {}\n  database: {}\n  schema: public\n",
            cluster.port(),
            support::SUPERUSER,
            support::SUPERUSER_PASSWORD,
            db.name
        ),
    )?;
    std::fs::create_dir_all(work.path().join(".soda"))?;
    std::fs::write(
        work.path().join(".soda/config.yml"),
        "send_anonymous_usage_stats: false\n",
    )?;
    let lake = work.path().join("lake");
    let bin = env!("CARGO_BIN_EXE_walaudit");
    let run_walaudit = || -> Result<(f64, BTreeMap<String, String>)> {
        let started = Instant::now();
        let out = Command::new(bin)
            .args(["check", "--source", &db.url, "--checks"])
            .arg(&checks)
            .arg("--lake")
            .arg(&lake)
            .args(["run", "--format", "json"])
            .env("WALAUDIT_LOG", "warn")
            .stderr(Stdio::inherit())
            .output()
            .context("run walaudit check run")?;
        let seconds = started.elapsed().as_secs_f64();
        // Exit 1 means a check failed, which 12 of them do.
        ensure!(
            matches!(out.status.code(), Some(0 | 1)),
            "walaudit check run failed ({})",
            out.status
        );
        let mut outcomes = BTreeMap::new();
        for line in String::from_utf8(out.stdout)?.lines() {
            let row: Value = serde_json::from_str(line)?;
            let check = row["check"].as_str().context("a check name")?.to_owned();
            let status = row["status"].as_str().context("a status")?.to_owned();
            outcomes.insert(check, status);
        }
        Ok((seconds, outcomes))
    };
    let run_soda = || -> Result<(f64, BTreeMap<String, String>)> {
        let results = work.path().join("soda-results.json");
        let started = Instant::now();
        // Soda's anonymous usage statistics are off (its documented opt-out, in a config.yml
        // under HOME): without a network they cost every scan seconds of retries.
        let out = Command::new(soda)
            .env("HOME", work.path())
            .current_dir(work.path())
            .args(["scan", "-d", "bench", "-c"])
            .arg(&soda_config)
            .arg("-srf")
            .arg(&results)
            .arg(&soda_checks)
            .output()
            .context("run soda scan")?;
        let seconds = started.elapsed().as_secs_f64();
        // soda scan: 0 all pass, 1 warnings, 2 failures, 3 errors.
        if !matches!(out.status.code(), Some(0..=2)) {
            bail!(
                "soda scan failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&results)?)?;
        let mut outcomes = BTreeMap::new();
        for check in json["checks"].as_array().context("checks in the results")? {
            let name = check["name"].as_str().context("a check name")?.to_owned();
            let outcome = check["outcome"].as_str().unwrap_or("error").to_owned();
            outcomes.insert(name, outcome);
        }
        Ok((seconds, outcomes))
    };

    eprintln!("warm-up runs...");
    run_soda()?;
    run_walaudit()?;
    let mut times: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let (mut ours, mut theirs) = (BTreeMap::new(), BTreeMap::new());
    for who in ["soda", "walaudit", "walaudit", "soda"] {
        let (seconds, outcomes) = match who {
            "soda" => run_soda()?,
            _ => run_walaudit()?,
        };
        println!("{who:<10} 30 checks over {rows} rows {seconds:>8.2}s");
        times.entry(who).or_default().push(seconds);
        match who {
            "soda" => theirs = outcomes,
            _ => ours = outcomes,
        }
    }
    let best = |who: &str| times[who].iter().copied().fold(f64::INFINITY, f64::min);
    let (soda_s, walaudit_s) = (best("soda"), best("walaudit"));

    println!("\ncheck  walaudit  soda");
    let mut disagree = Vec::new();
    for (name, status) in &ours {
        let soda_outcome = theirs.get(name).map_or("(none)", String::as_str);
        println!("{name:<6} {status:<9} {soda_outcome}");
        if status != soda_outcome {
            disagree.push(name.clone());
        }
    }
    let failing = ours.values().filter(|s| *s == "fail").count();
    println!(
        "walaudit check run vs soda scan: 30 checks on a {rows}-row Postgres table ({failing} fail)"
    );
    println!(
        "result: soda scan {soda_s:.2}s, walaudit check run {walaudit_s:.2}s (best of 2 each): \
         ratio soda / walaudit = {:.2} (target >= {TARGET_RATIO}): {}",
        soda_s / walaudit_s,
        if soda_s / walaudit_s >= TARGET_RATIO {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "result: outcomes {}",
        if disagree.is_empty() && ours.len() == 30 && theirs.len() == 30 {
            "agree on all 30 checks".to_owned()
        } else {
            format!(
                "DISAGREE on {disagree:?} ({} walaudit results, {} Soda results)",
                ours.len(),
                theirs.len()
            )
        }
    );
    drop(db);
    cluster.shutdown_async().await?;
    ensure!(
        disagree.is_empty() && ours.len() == 30 && theirs.len() == 30,
        "the tools disagree"
    );
    Ok(())
}

/// The 30 checks as one walaudit job (names c01..c30, in the order of the Soda file).
fn walaudit_jobs(rows: u64) -> String {
    let (lo, hi, half) = (rows - rows / 1000, rows + rows / 1000, rows / 2);
    format!(
        r#"jobs:
  - name: orders_bench
    connection: source
    dataset: public.orders
    allow_full_scan: true
    timeout: 10m
    checks:
      - {{type: row_count, name: c01, must_be_greater_than: 0}}
      - {{type: row_count, name: c02, must_be_between: [{lo}, {hi}]}}
      - {{type: row_count, name: c03, must_be_less_than: {half}}}
      - {{type: missing, name: c04, column: customer_id, must_be: 0}}
      - {{type: missing, name: c05, column: note, must_be: 0}}
      - {{type: missing, name: c06, column: note, metric: percent, must_be_less_than: 5}}
      - {{type: missing, name: c07, column: email, must_be: 0}}
      - {{type: invalid, name: c08, column: status, valid_values: [new, paid, shipped, cancelled], must_be: 0}}
      - {{type: invalid, name: c09, column: status, valid_values: [new, paid, shipped], must_be: 0}}
      - {{type: invalid, name: c10, column: status, valid_values: [new, paid, shipped], metric: percent, must_be_less_than: 30}}
      - {{type: invalid, name: c11, column: amount, valid_min: 0, must_be: 0}}
      - {{type: invalid, name: c12, column: amount, valid_max: 5000, must_be: 0}}
      - {{type: invalid, name: c13, column: amount, valid_min: 0, valid_max: 10000, must_be: 0}}
      - {{type: invalid, name: c14, column: note, valid_min_length: 5, must_be: 0}}
      - {{type: invalid, name: c15, column: note, valid_max_length: 16, must_be: 0}}
      - {{type: invalid, name: c16, column: email, valid_regex: '^user[0-9]+@example[.]com$', must_be: 0}}
      - {{type: invalid, name: c17, column: customer_id, valid_min: 0, valid_max: 99999, must_be: 0}}
      - {{type: duplicate, name: c18, columns: [id], must_be: 0}}
      - {{type: duplicate, name: c19, columns: [email], must_be: 0}}
      - {{type: duplicate, name: c20, columns: [customer_id, status], must_be: 0}}
      - {{type: freshness, name: c21, column: created_at, must_be_less_than: 86400}}
      - {{type: freshness, name: c22, column: updated_at, must_be_less_than: 3600}}
      - {{type: reference, name: c23, columns: [customer_id], references: {{dataset: public.customers, columns: [id]}}, must_be: 0}}
      - {{type: schema, name: c24, required: {{id: bigint, status: text}}}}
      - {{type: failed_rows, name: c25, query: "SELECT * FROM public.orders WHERE amount < 0", must_be: 0}}
      - {{type: failed_rows, name: c26, query: "SELECT * FROM public.orders WHERE status = 'cancelled' AND amount > 9990", must_be: 0}}
      - {{type: metric, name: c27, query: "SELECT sum(amount) FROM public.orders WHERE status = 'paid'", must_be_greater_than: 0}}
      - {{type: metric, name: c28, query: "SELECT avg(amount) FROM public.orders", must_be_between: [4000, 6000]}}
      - {{type: metric, name: c29, query: "SELECT min(amount) FROM public.orders", must_be_greater_than_or_equal: 0}}
      - {{type: metric, name: c30, query: "SELECT max(amount) FROM public.orders", must_be_less_than_or_equal: 5000}}
"#
    )
}

/// The same 30 checks in SodaCL.
fn soda_checks_text(rows: u64) -> String {
    let (lo, hi, half) = (rows - rows / 1000, rows + rows / 1000, rows / 2);
    format!(
        r#"checks for orders:
  - row_count > 0:
      name: c01
  - row_count between {lo} and {hi}:
      name: c02
  - row_count < {half}:
      name: c03
  - missing_count(customer_id) = 0:
      name: c04
  - missing_count(note) = 0:
      name: c05
  - missing_percent(note) < 5:
      name: c06
  - missing_count(email) = 0:
      name: c07
  - invalid_count(status) = 0:
      name: c08
      valid values: [new, paid, shipped, cancelled]
  - invalid_count(status) = 0:
      name: c09
      valid values: [new, paid, shipped]
  - invalid_percent(status) < 30:
      name: c10
      valid values: [new, paid, shipped]
  - invalid_count(amount) = 0:
      name: c11
      valid min: 0
  - invalid_count(amount) = 0:
      name: c12
      valid max: 5000
  - invalid_count(amount) = 0:
      name: c13
      valid min: 0
      valid max: 10000
  - invalid_count(note) = 0:
      name: c14
      valid min length: 5
  - invalid_count(note) = 0:
      name: c15
      valid max length: 16
  - invalid_count(email) = 0:
      name: c16
      valid regex: ^user[0-9]+@example[.]com$
  - invalid_count(customer_id) = 0:
      name: c17
      valid min: 0
      valid max: 99999
  - duplicate_count(id) = 0:
      name: c18
  - duplicate_count(email) = 0:
      name: c19
  - duplicate_count(customer_id, status) = 0:
      name: c20
  - freshness(created_at) < 1d:
      name: c21
  - freshness(updated_at) < 1h:
      name: c22
  - values in (customer_id) must exist in customers (id):
      name: c23
  - schema:
      name: c24
      fail:
        when required column missing: [id, status]
        when wrong column type:
          id: bigint
          status: text
  - failed rows:
      name: c25
      fail query: SELECT * FROM orders WHERE amount < 0
  - failed rows:
      name: c26
      fail query: SELECT * FROM orders WHERE status = 'cancelled' AND amount > 9990
  - paid_total > 0:
      name: c27
      paid_total query: SELECT sum(amount) FROM orders WHERE status = 'paid'
  - avg(amount) between 4000 and 6000:
      name: c28
  - min(amount) >= 0:
      name: c29
  - max(amount) <= 5000:
      name: c30
"#
    )
}
