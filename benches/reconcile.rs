//! Reconciliation benchmark: two 10,000,000-row tables (a Postgres source and a Postgres
//! "warehouse") with 100 scattered differences, `walaudit reconcile diff` against `reladiff`
//! (PyPI 0.6.0, from the virtualenv `tests/setup.sh` makes) on the same tables in one run; the
//! same keys must be found. Also the count windows of `walaudit reconcile run` against a plain
//! `SELECT … count(*) … GROUP BY` of the same windows on both sides, run by psql.
//!
//! Targets: diff ≥ 2× reladiff's speed with peak RSS ≤ 256 MiB; count windows ≤ 1.2× the plain
//! queries. `WALAUDIT_BENCH_ROWS` scales the tables (default 10000000).

use walaudit::testing as support;

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, ensure};

fn main() -> Result<()> {
    let rows: u64 = std::env::var("WALAUDIT_BENCH_ROWS")
        .ok()
        .map(|v| v.parse().context("WALAUDIT_BENCH_ROWS must be a number"))
        .transpose()?
        .unwrap_or(10_000_000);
    tokio::runtime::Runtime::new()?.block_on(bench(rows))
}

async fn bench(rows: u64) -> Result<()> {
    let venv = std::env::var_os("WALAUDIT_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/walaudit-venv")
        });
    let reladiff = venv.join("bin/reladiff");
    ensure!(
        reladiff.is_file(),
        "{} is missing: run tests/setup.sh",
        reladiff.display()
    );
    let cluster = support::PgCluster::start_async(support::ClusterOptions::default()).await?;
    let source = cluster.fresh_db("recbench_src").await?;
    let wh = cluster.fresh_db("recbench_wh").await?;
    eprintln!("filling two tables of {rows} rows...");
    let fill = format!(
        "CREATE TABLE big (id bigint PRIMARY KEY, a int, b text, at timestamptz);
         INSERT INTO big SELECT g, g % 1000, 'v' || (g * 7 % 100003),
             TIMESTAMPTZ '2026-01-01 00:00:00+00' + g * interval '1 second'
         FROM generate_series(1, {rows}) g"
    );
    source.execute(&fill).await?;
    wh.execute(&fill).await?;
    // 100 differences, scattered: 40 rows missing, 30 changed, 30 extra (their times inside the
    // table's range: windows newer than the grace period are in flight, not compared).
    let step = rows / 101;
    wh.execute(&format!(
        "DELETE FROM big WHERE id IN (SELECT g * {step} FROM generate_series(1, 40) g);
         UPDATE big SET b = b || '!' WHERE id IN (SELECT g * {step} + 7 FROM generate_series(41, 70) g);
         INSERT INTO big SELECT {rows} + g, 0, 'extra',
             TIMESTAMPTZ '2026-01-01 00:00:00+00' + g * {step} * interval '1 second'
         FROM generate_series(1, 30) g"
    ))
    .await?;
    source.execute("VACUUM ANALYZE big").await?;
    wh.execute("VACUUM ANALYZE big").await?;

    let work = tempfile::tempdir()?;
    let checks = work.path().join("checks");
    std::fs::create_dir(&checks)?;
    std::fs::write(
        checks.join("r.yml"),
        "reconciliations:\n  - name: big\n    source: {connection: source, dataset: public.big}\n    \
         target: {connection: wh, dataset: public.big}\n    key: [id]\n    columns: [a, b]\n    \
         time_column: at\n    window: 1d\n    diff: never\n    timeout: 10m\n",
    )?;
    let config = work.path().join("walaudit.toml");
    std::fs::write(&config, format!("[connections.wh]\nurl = \"{}\"\n", wh.url))?;
    let bin = env!("CARGO_BIN_EXE_walaudit");
    let walaudit = |action: &[&str], log: &str| -> Result<(f64, u64, String)> {
        let out = work.path().join(format!("{log}.out"));
        let mut cmd = Command::new(bin);
        cmd.arg("--config")
            .arg(&config)
            .args(["reconcile", "--source", &source.url, "--checks"])
            .arg(&checks)
            .arg("--lake")
            .arg(work.path().join("lake"))
            .args(action)
            .env("WALAUDIT_LOG", "warn")
            .stdout(Stdio::from(std::fs::File::create(&out)?));
        let started = Instant::now();
        let mut child = cmd.stderr(Stdio::null()).spawn()?;
        let pid = child.id();
        let mut peak = 0;
        while child.try_wait()?.is_none() {
            peak = peak.max(common::vm_hwm(pid).unwrap_or(0));
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok((
            started.elapsed().as_secs_f64(),
            peak,
            std::fs::read_to_string(&out)?,
        ))
    };
    let url = |u: &str| u.replacen("postgres://", "postgresql://", 1);
    let run_reladiff = || -> Result<(f64, BTreeSet<String>)> {
        let started = Instant::now();
        let out = Command::new(&reladiff)
            .args([&url(&source.url), "big", &url(&wh.url), "big"])
            .args(["-k", "id", "-c", "a", "-c", "b"])
            .output()?;
        ensure!(
            out.status.success(),
            "reladiff failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ids = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                (l.starts_with('-') || l.starts_with('+')).then(|| {
                    l[1..]
                        .trim()
                        .split(',')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_owned()
                })
            })
            .collect();
        Ok((started.elapsed().as_secs_f64(), ids))
    };

    let (rs, theirs) = run_reladiff()?;
    println!("reladiff          {rs:>8.2}s  {} keys", theirs.len());
    let (ws, peak, text) = walaudit(&["diff", "--name", "big", "--format", "json"], "diff")?;
    let report: serde_json::Value = serde_json::from_str(text.trim())?;
    let ours: BTreeSet<String> = report["diff"]["keys"]
        .as_array()
        .context("keys")?
        .iter()
        .filter_map(|k| k["key"]["id"].as_str().map(str::to_owned))
        .collect();
    println!(
        "walaudit diff     {ws:>8.2}s  {} keys, {} queries, peak RSS {:.0} MiB",
        ours.len(),
        report["diff"]["queries"],
        common::mib(peak)
    );
    let (rs2, _) = run_reladiff()?;
    let (ws2, peak2, _) = walaudit(&["diff", "--name", "big", "--format", "json"], "diff2")?;
    println!("reladiff          {rs2:>8.2}s");
    println!(
        "walaudit diff     {ws2:>8.2}s  peak RSS {:.0} MiB",
        common::mib(peak2)
    );

    // Count windows: walaudit's run against the plain grouped count on each side.
    let (cs, _, _) = walaudit(&["run", "--format", "json"], "windows")?;
    let psql = cluster.bin("psql");
    let plain = "SELECT floor(extract(epoch FROM at) / 86400) AS w, count(*) FROM big GROUP BY 1";
    // Both sides at once, as walaudit runs them.
    let started = Instant::now();
    let children: Vec<_> = [&source, &wh]
        .iter()
        .map(|db| {
            Command::new(&psql)
                .args([&db.url, "-X", "-q", "-c", plain])
                .stdout(Stdio::null())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    for mut c in children {
        ensure!(c.wait()?.success(), "psql failed");
    }
    let ps = started.elapsed().as_secs_f64();

    let (r, w) = (rs.min(rs2), ws.min(ws2));
    let rss = common::mib(peak.max(peak2));
    println!("walaudit reconcile diff vs reladiff: two {rows}-row tables, 100 differences");
    println!(
        "result: reladiff {r:.2}s, walaudit {w:.2}s (best of 2): ratio {:.2} (target >= 2): {}; \
         peak RSS {rss:.0} MiB (target <= 256): {}",
        r / w,
        if r / w >= 2.0 { "met" } else { "NOT met" },
        if rss <= 256.0 { "met" } else { "NOT met" }
    );
    println!(
        "result: count windows {cs:.2}s against the plain grouped counts (both sides at once) \
         {ps:.2}s: ratio {:.2} (target <= 1.2): {}",
        cs / ps,
        if cs / ps <= 1.2 { "met" } else { "NOT met" }
    );
    println!(
        "result: keys {}",
        if ours == theirs {
            format!("agree ({} keys)", ours.len())
        } else {
            format!(
                "DISAGREE: walaudit {} keys, reladiff {}",
                ours.len(),
                theirs.len()
            )
        }
    );
    drop((source, wh));
    cluster.shutdown_async().await?;
    ensure!(ours == theirs, "the tools found different keys");
    Ok(())
}
