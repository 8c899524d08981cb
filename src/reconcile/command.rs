//! The library side of `walaudit reconcile run | diff | report`: load the reconciliations,
//! open their connections, run them, record the audit records and keys in the lake, render.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use super::model::{DiffMode, Reconciliation};
use super::run::{RunOptions, RunReport, RunStatus, Targets, WindowStatus, run};
use super::store::ReconcileStore;
use crate::checks::Context;
use crate::checks::command::{CommandError, open_targets_named};
use crate::config::Config;

/// Loads every reconciliation below `dir`.
pub fn load(dir: &Path, config: &Config) -> Result<Vec<Reconciliation>, CommandError> {
    let cx = Context::new(config.connections.keys().cloned());
    Ok(super::load::load_dir(dir, &cx)?)
}

/// The reconciliations named in `only` (all when empty); an unknown name is an error.
pub fn select(
    all: Vec<Reconciliation>,
    only: &[String],
) -> Result<Vec<Reconciliation>, CommandError> {
    for name in only {
        if !all.iter().any(|r| &r.name == name) {
            return Err(CommandError::UnknownJob(name.clone()));
        }
    }
    Ok(all
        .into_iter()
        .filter(|r| only.is_empty() || only.contains(&r.name))
        .collect())
}

/// Opens every connection `recs` read.
pub async fn open(recs: &[Reconciliation], config: &Config) -> Result<Targets, CommandError> {
    let names: BTreeSet<&str> = recs.iter().flat_map(|r| r.connections()).collect();
    open_targets_named(&names.into_iter().collect::<Vec<_>>(), config).await
}

/// Runs `recs` one after the other, recording each in the lake; the reports, in order.
pub async fn run_all(
    recs: &[Reconciliation],
    targets: &Targets,
    store: Option<&ReconcileStore>,
    options: RunOptions,
) -> Result<Vec<RunReport>, crate::lake::LakeError> {
    let mut out = Vec::with_capacity(recs.len());
    for rec in recs {
        let report = run(rec, targets, options).await;
        if let Some(store) = store {
            store.record(&report).await?;
        }
        out.push(report);
    }
    Ok(out)
}

/// Opens the lake's reconciliation tables (creating them).
pub async fn open_store(config: &Config) -> Result<ReconcileStore, CommandError> {
    let lake_err = |e: crate::lake::LakeError| CommandError::Lake {
        lake: config.lake.url.clone(),
        source: Box::new(e),
    };
    let location = crate::lake::storage::LakeLocation::new(&config.lake.url, &config.lake.s3)
        .map_err(lake_err)?;
    ReconcileStore::open(&location, config.lake.commit_attempts)
        .await
        .map_err(lake_err)
}

/// `reconcile diff`: the keys of `window` (epoch seconds of its start), or of the whole
/// table, whatever the counts say.
pub fn diff_options(window: Option<i64>) -> RunOptions {
    RunOptions {
        diff: Some(DiffMode::Always),
        window,
    }
}

fn when(epoch: Option<i64>) -> String {
    epoch
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "(whole table)".into())
}

/// The reports for a terminal: windows with counts, then the keys.
pub fn render_table(reports: &[RunReport]) -> String {
    let mut out = String::new();
    for r in reports {
        let _ = writeln!(
            out,
            "{}: {} ({} → {}) in {:.1}s, run {}",
            r.reconciliation,
            r.status.as_str(),
            r.source_system,
            r.target_system,
            (r.finished_at - r.started_at).num_milliseconds() as f64 / 1000.0,
            r.job_id
        );
        if let Some(e) = &r.error {
            let _ = writeln!(out, "  error: {e}");
            continue;
        }
        let _ = writeln!(
            out,
            "  {:<19}  {:>12}  {:>12}  {:>10}  status",
            "window", "source", "target", "difference"
        );
        for w in &r.windows {
            let _ = writeln!(
                out,
                "  {:<19}  {:>12}  {:>12}  {:>10}  {}",
                when(w.start),
                w.source,
                w.target,
                w.target as i64 - w.source as i64,
                w.status.as_str()
            );
        }
        let flight = r
            .windows
            .iter()
            .filter(|w| w.status == WindowStatus::InFlight)
            .count();
        if flight > 0 {
            let _ = writeln!(
                out,
                "  ({flight} window{} newer than the grace period: in flight, not judged)",
                if flight == 1 { "" } else { "s" }
            );
        }
        if let Some(d) = &r.diff {
            let _ = writeln!(
                out,
                "  keys: {} missing in the target, {} extra, {} changed ({} queries, {} rows \
                 downloaded)",
                d.missing, d.extra, d.changed, d.queries, d.rows_downloaded
            );
            for k in &d.keys {
                let key = serde_json::to_string(&k.key).unwrap_or_default();
                let cols = if k.columns.is_empty() {
                    String::new()
                } else {
                    format!("  columns: {}", k.columns.join(", "))
                };
                let _ = writeln!(out, "    {:<8} {key}{cols}", k.kind.as_str());
            }
            if d.truncated {
                let _ = writeln!(
                    out,
                    "    ... more keys differ: raise max_diff_keys to list them"
                );
            }
        }
    }
    out
}

/// One JSON object per report.
pub fn render_json(reports: &[RunReport]) -> String {
    let mut out = String::new();
    for r in reports {
        let windows: Vec<serde_json::Value> = r
            .windows
            .iter()
            .map(|w| {
                serde_json::json!({
                    "window_start": w.start, "window_end": w.end,
                    "source": w.source, "target": w.target,
                    "difference": w.target as i64 - w.source as i64,
                    "status": w.status.as_str(),
                })
            })
            .collect();
        let diff = r.diff.as_ref().map(|d| {
            serde_json::json!({
                "missing": d.missing, "extra": d.extra, "changed": d.changed,
                "keys": d.keys, "truncated": d.truncated, "queries": d.queries,
            })
        });
        let row = serde_json::json!({
            "job_id": r.job_id, "reconciliation": r.reconciliation,
            "pipeline": r.pipeline.as_str(), "status": r.status.as_str(),
            "source_system": r.source_system, "target_system": r.target_system,
            "error": r.error, "windows": windows, "diff": diff,
        });
        out.push_str(&row.to_string());
        out.push('\n');
    }
    out
}

/// Whether every report matched (the command's exit status).
pub fn all_match(reports: &[RunReport]) -> bool {
    reports.iter().all(|r| r.status == RunStatus::Match)
}
