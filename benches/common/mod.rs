//! What the end-to-end benchmarks share: running the walaudit binary while sampling its peak
//! RSS, counting the rows of a lake table, and the figures of each run.
// Each benchmark binary includes this module and uses a part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deltalake::datafusion::prelude::SessionContext;

/// Runs `cmd` (stdout discarded, stderr into `log`) to its end, reading its peak RSS (VmHWM)
/// every 50 ms. Returns the wall time in seconds and the peak in bytes; a failed run is an
/// error carrying the end of its log.
pub fn run_measured(cmd: &mut Command, log: &Path, what: &str) -> Result<(f64, u64)> {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log)?))
        .spawn()
        .with_context(|| format!("spawn {what}"))?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            for line in text.lines() {
                if let Some(rest) = line
                    .strip_prefix("VmHWM:")
                    .or_else(|| line.strip_prefix("VmRSS:"))
                {
                    let kib: u64 = rest
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse()
                        .unwrap_or(0);
                    peak = peak.max(kib * 1024);
                }
            }
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        bail!(
            "{what} failed ({status}):\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok((seconds, peak))
}

/// Rows of the Delta table at `dir`, read with deltalake + DataFusion.
pub async fn count_lake_rows(dir: &Path) -> Result<i64> {
    let url = deltalake::ensure_table_uri(dir.to_str().context("utf-8 path")?)?;
    let table = deltalake::open_table(url).await?;
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    ctx.register_table("t", table.table_provider().await?)?;
    let batches = ctx.sql("SELECT count(*) FROM t").await?.collect().await?;
    let counts = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<deltalake::arrow::array::Int64Array>()
        .context("count(*) is an Int64")?;
    Ok(counts.value(0))
}

/// One timed run of a contender.
pub struct Figure {
    pub who: &'static str,
    pub seconds: f64,
    pub peak_rss: Option<u64>,
}

impl Figure {
    /// Prints the run: `count` `unit`s in its time, the rate, the peak RSS when sampled.
    pub fn print(&self, count: u64, unit: &str) {
        println!(
            "{:<14} {count:>10} {unit} {:>8.2}s {:>10.0} {unit}/s{}",
            self.who,
            self.seconds,
            count as f64 / self.seconds,
            self.peak_rss
                .map(|b| format!("   peak RSS {:.0} MiB", mib(b)))
                .unwrap_or_default()
        );
    }
}

/// The best rate of `who`'s runs, for `count` units per run.
pub fn best_rate(figures: &[Figure], who: &str, count: u64) -> f64 {
    figures
        .iter()
        .filter(|f| f.who == who)
        .map(|f| count as f64 / f.seconds)
        .fold(0.0, f64::max)
}

/// The highest peak RSS of the runs, in bytes.
pub fn peak_rss(figures: &[Figure]) -> u64 {
    figures.iter().filter_map(|f| f.peak_rss).max().unwrap_or(0)
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// The peak RSS (VmHWM) of the live process `pid`, in bytes.
pub fn vm_hwm(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// CPU seconds (user + system) the live process `pid` has used, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after the name.
    let total = ticks(11)? + ticks(12)?;
    // USER_HZ is 100 on every Linux this runs on (sysconf(_SC_CLK_TCK)).
    Some(total as f64 / 100.0)
}

/// The first column of the first row of `sql` over the lake at `lake`, as an i64 (0 when the
/// tables are not there yet).
pub async fn lake_scalar(lake: &str, sql: &str) -> Result<i64> {
    let query =
        walaudit::query::LakeQuery::open(lake, walaudit::query::LakeOptions::default()).await?;
    let batches = match query.collect(sql).await {
        Ok(b) => b,
        Err(_) => return Ok(0),
    };
    let Some(batch) = batches.first().filter(|b| b.num_rows() > 0) else {
        return Ok(0);
    };
    let value = deltalake::arrow::compute::cast(
        batch.column(0),
        &deltalake::arrow::datatypes::DataType::Int64,
    )?;
    Ok(value
        .as_any()
        .downcast_ref::<deltalake::arrow::array::Int64Array>()
        .context("an integer")?
        .value(0))
}
