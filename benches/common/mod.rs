//! What the end-to-end benchmarks share: running the walaudit binary while sampling its peak
//! RSS, counting the rows of a lake table, and the figures of each run.

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
