//! The library side of `walaudit check validate | run | list | suggest`: load the jobs, open
//! the connections they read, plan them through the `EXPLAIN` guard, run them once in
//! dependency order, record and render the results; profile a dataset into a job file.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;

use super::guard::{self, GuardErrors, Unplanned};
use super::model::{Job, Status, Trigger};
use super::run::{History, RunOutcome, Targets, run_job};
use super::store::{MemoryHistory, RunStore};
use super::{Context, LoadErrors, load_dir};
use crate::config::Config;
use crate::sql::{LakeTarget, PostgresOptions, PostgresTarget, ReadOnlySql};

/// What can stop a check command before any job runs.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(
        "no job files given: pass --checks DIR or set checks.dir in the config (`walaudit check \
         suggest --dataset TABLE` prints a job to start from)"
    )]
    NoChecksDir,
    #[error(transparent)]
    Load(#[from] LoadErrors),
    #[error(transparent)]
    Guard(#[from] GuardErrors),
    #[error(transparent)]
    Suggest(#[from] super::suggest::SuggestError),
    #[error("no job is named {0:?}: `walaudit check list` shows the jobs")]
    UnknownJob(String),
    #[error(
        "connection `{0}` is not defined: use lake, source or a [connections.{0}] table of the \
         config"
    )]
    UnknownConnection(String),
    #[error("cannot write {}: check that its directory exists and is writable", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "connection `source` is read and no source is configured: pass --source URL (before the \
         action: `walaudit check --source URL ...`) or set source.url"
    )]
    NoSource,
    #[error("connection `{name}` has an invalid url: fix [connections.{name}] url")]
    BadUrl {
        name: String,
        #[source]
        source: crate::source::SourceError,
    },
    #[error("the check scheduler's options are invalid: {0}")]
    Options(String),
    #[error("cannot open the lake {lake} for jobs that read it")]
    Lake {
        lake: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The job directory: `--checks DIR`, else `checks.dir`.
pub fn checks_dir(flag: Option<&Path>, config: &Config) -> Result<PathBuf, CommandError> {
    flag.map(Path::to_owned)
        .or_else(|| config.checks.dir.clone())
        .ok_or(CommandError::NoChecksDir)
}

/// Loads and validates every job below `dir`.
pub fn load_jobs(dir: &Path, config: &Config) -> Result<Vec<Job>, CommandError> {
    let cx = Context::new(config.connections.keys().cloned());
    Ok(load_dir(dir, &cx)?)
}

/// Keeps the jobs named in `only` (all when empty) and the jobs they depend on are *not*
/// added: a gate reads the dependency's latest recorded run.
pub fn select(jobs: Vec<Job>, only: &[String]) -> Result<Vec<Job>, CommandError> {
    if only.is_empty() {
        return Ok(jobs);
    }
    for name in only {
        if !jobs.iter().any(|j| &j.name == name) {
            return Err(CommandError::UnknownJob(name.clone()));
        }
    }
    Ok(jobs
        .into_iter()
        .filter(|j| only.contains(&j.name))
        .collect())
}

/// Opens a handle for every connection `jobs` read.
pub async fn open_targets(jobs: &[Job], config: &Config) -> Result<Targets, CommandError> {
    let needed: BTreeSet<&str> = jobs.iter().flat_map(|j| j.connections()).collect();
    open_targets_named(&needed.into_iter().collect::<Vec<_>>(), config).await
}

/// Opens a handle for each connection of `names`.
pub async fn open_targets_named(names: &[&str], config: &Config) -> Result<Targets, CommandError> {
    let mut targets: Targets = HashMap::new();
    for &name in names {
        targets.insert(name.to_owned(), open_connection(name, config).await?);
    }
    Ok(targets)
}

/// A handle on the connection `name`: `lake`, `source` or a `[connections.NAME]`.
pub async fn open_connection(
    name: &str,
    config: &Config,
) -> Result<Arc<dyn ReadOnlySql>, CommandError> {
    Ok(match name {
        super::model::LAKE => Arc::new(open_lake(config).await?),
        super::model::SOURCE => {
            let url = config.source.url.as_deref().ok_or(CommandError::NoSource)?;
            Arc::new(postgres(name, url)?)
        }
        other => {
            let c = config
                .connections
                .get(other)
                .ok_or_else(|| CommandError::UnknownConnection(other.to_owned()))?;
            Arc::new(postgres(other, &c.url)?)
        }
    })
}

/// `check run`'s `EXPLAIN` guard over the Postgres jobs among `jobs` (see [`guard`]): every
/// refusal at once, each at the file and line of its check. Queries that cannot be planned
/// are left to the run, which records them as `error`.
pub async fn guard_jobs(
    jobs: &[Job],
    targets: &Targets,
    config: &Config,
) -> Result<(), GuardErrors> {
    guard::guard_jobs(jobs, targets, &config.checks, Unplanned::LeaveToRun).await
}

/// `check validate` past loading: opens the Postgres connections the jobs read (not the
/// lake) and runs the guard, reporting queries that cannot be planned too.
pub async fn validate(jobs: &[Job], config: &Config) -> Result<(), CommandError> {
    let needed: BTreeSet<&str> = jobs
        .iter()
        .filter(|j| !j.allow_full_scan)
        .flat_map(|j| j.connections())
        .filter(|c| *c != super::model::LAKE)
        .collect();
    let mut targets: Targets = HashMap::new();
    for name in needed {
        targets.insert(name.to_owned(), open_connection(name, config).await?);
    }
    Ok(guard::guard_jobs(jobs, &targets, &config.checks, Unplanned::Report).await?)
}

/// `check suggest`: profiles `dataset` on `connection` (default `source`) and returns its job
/// file, or writes it to `output` and returns a line saying so.
pub async fn suggest(
    dataset: &str,
    connection: Option<&str>,
    output: Option<&Path>,
    config: &Config,
) -> Result<String, CommandError> {
    let connection = connection.unwrap_or(super::model::SOURCE);
    let target = open_connection(connection, config).await?;
    let options = super::suggest::Options {
        connection: connection.to_owned(),
        dataset: dataset.to_owned(),
        max_scan_rows: config.checks.max_scan_rows,
    };
    let yaml = super::suggest::suggest(target.as_ref(), &options, Utc::now()).await?;
    let Some(path) = output else {
        return Ok(yaml);
    };
    std::fs::write(path, &yaml).map_err(|source| CommandError::Write {
        path: path.to_owned(),
        source,
    })?;
    Ok(format!("wrote {}\n", path.display()))
}

fn postgres(name: &str, url: &str) -> Result<PostgresTarget, CommandError> {
    let mut params =
        crate::source::ConnParams::parse(url).map_err(|source| CommandError::BadUrl {
            name: name.to_owned(),
            source,
        })?;
    params.application_name = "walaudit-checks".into();
    Ok(PostgresTarget::new(params, PostgresOptions::default()))
}

/// A read-only handle on the configured lake, at its current versions.
pub async fn open_lake(config: &Config) -> Result<LakeTarget, CommandError> {
    let lake = config.lake.url.clone();
    let err = |e: Box<dyn std::error::Error + Send + Sync>| CommandError::Lake {
        lake: lake.clone(),
        source: e,
    };
    let location = crate::lake::storage::LakeLocation::new(&lake, &config.lake.s3)
        .map_err(|e| err(Box::new(e)))?;
    let options = crate::query::LakeOptions {
        storage_options: location.storage_options().clone(),
        ..crate::query::LakeOptions::default()
    };
    LakeTarget::open(&lake, options)
        .await
        .map_err(|e| err(Box::new(e)))
}

/// Opens the run history of the configured lake.
pub async fn open_store(config: &Config) -> Result<RunStore, CommandError> {
    let lake = config.lake.url.clone();
    let err = |e: crate::lake::LakeError| CommandError::Lake {
        lake: lake.clone(),
        source: Box::new(e),
    };
    let location = crate::lake::storage::LakeLocation::new(&lake, &config.lake.s3).map_err(err)?;
    RunStore::open(&location, config.lake.commit_attempts)
        .await
        .map_err(err)
}

/// `walaudit check run`: the jobs named in `only` (all when empty) of `all`, guarded, run once
/// now, recorded in the lake's history (with the definitions of `all`).
pub async fn run_command(
    all: &[Job],
    only: &[String],
    config: &Config,
) -> Result<Vec<RunOutcome>, CommandError> {
    let selected = select(all.to_vec(), only)?;
    let targets = open_targets(&selected, config).await?;
    guard_jobs(&selected, &targets, config).await?;
    let store = open_store(config).await?;
    let lake_err = |e: crate::lake::LakeError| CommandError::Lake {
        lake: config.lake.url.clone(),
        source: Box::new(e),
    };
    store.record_jobs(all, None).await.map_err(lake_err)?;
    let max = config.checks.max_concurrent;
    let outcomes = run_once(&selected, &targets, Some(&store), max, Trigger::Manual).await;
    store.record(&outcomes).await.map_err(lake_err)?;
    Ok(outcomes)
}

/// Runs `jobs` once, now: dependencies first, at most `max_concurrent` at once. A job whose
/// dependency's latest run (in this batch, else in `store`) is not pass/warn is `blocked`.
pub async fn run_once(
    jobs: &[Job],
    targets: &Targets,
    store: Option<&RunStore>,
    max_concurrent: usize,
    trigger: Trigger,
) -> Vec<RunOutcome> {
    let memory = MemoryHistory::default();
    let history: &dyn History = match store {
        Some(s) => s.history(),
        None => &memory,
    };
    let mut latest: HashMap<String, Status> = HashMap::new();
    let mut outcomes = Vec::new();
    let mut left: Vec<&Job> = jobs.iter().collect();
    let now = Utc::now;
    while !left.is_empty() {
        // The jobs none of whose dependencies are still waiting to run in this batch.
        let (ready, wait): (Vec<&Job>, Vec<&Job>) = left.iter().partition(|j| {
            !j.depends_on
                .iter()
                .any(|d| left.iter().any(|o| &o.name == d))
        });
        let ready = if ready.is_empty() {
            wait.clone()
        } else {
            ready
        };
        left.retain(|j| !ready.iter().any(|r| r.name == j.name));
        let scheduled_at = Utc::now();
        let sem = tokio::sync::Semaphore::new(max_concurrent.max(1));
        let mut runs: Vec<std::pin::Pin<Box<dyn Future<Output = RunOutcome> + Send + '_>>> =
            Vec::new();
        for job in ready {
            let gate = job
                .depends_on
                .iter()
                .find(|d| {
                    let status = latest.get(*d).copied().or_else(|| {
                        store
                            .and_then(|s| s.job_state(d))
                            .and_then(|s| s.last_status)
                    });
                    !status.is_some_and(Status::is_green)
                })
                .cloned();
            let sem = &sem;
            runs.push(Box::pin(async move {
                let _permit = sem.acquire().await;
                match gate {
                    Some(dep) => blocked(job, &dep, scheduled_at, trigger),
                    None => run_job(job, targets, history, scheduled_at, trigger, &now).await,
                }
            }));
        }
        let level = futures_util::future::join_all(runs).await;
        for o in &level {
            latest.insert(o.job.clone(), o.status);
        }
        outcomes.extend(level);
    }
    outcomes
}

/// The record of a run that was not executed because `dependency` is not green.
pub fn blocked(
    job: &Job,
    dependency: &str,
    scheduled_at: chrono::DateTime<Utc>,
    trigger: Trigger,
) -> RunOutcome {
    let at = Utc::now();
    RunOutcome {
        run_id: super::run::new_run_id(at),
        job: job.name.clone(),
        scheduled_at,
        started_at: at,
        finished_at: at,
        status: Status::Blocked,
        error: Some(format!(
            "blocked: dependency `{dependency}` has no passing latest run; it runs once \
             `{dependency}` passes"
        )),
        trigger,
        results: Vec::new(),
        lsn_high: None,
        statements: 0,
    }
}

/// Whether `check run` exits 0: nothing `fail`, `error` or `timeout`.
pub fn all_good(outcomes: &[RunOutcome]) -> bool {
    outcomes
        .iter()
        .all(|o| !o.status.is_bad() && o.results.iter().all(|r| !r.status.is_bad()))
}

/// One JSON object per check result: the columns of `check_results` plus `run_status`.
pub fn render_json(outcomes: &[RunOutcome]) -> String {
    let mut out = String::new();
    for o in outcomes {
        for r in &o.results {
            let row = serde_json::json!({
                "run_id": o.run_id,
                "job": o.job,
                "check": r.check,
                "type": r.type_name,
                "status": r.status,
                "value": r.value,
                "threshold": r.threshold,
                "samples": r.samples.as_ref().map(|s| s.to_string()),
                "measured_at": r.measured_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "message": r.message,
                "run_status": o.status,
            });
            out.push_str(&row.to_string());
            out.push('\n');
        }
        if o.results.is_empty() {
            let row = serde_json::json!({
                "run_id": o.run_id, "job": o.job, "check": null, "status": o.status,
                "message": o.error, "run_status": o.status,
            });
            out.push_str(&row.to_string());
            out.push('\n');
        }
    }
    out
}

/// A plain table: job, check, status, value, threshold, message.
pub fn render_table(outcomes: &[RunOutcome]) -> String {
    let mut rows = vec![[
        "job".to_owned(),
        "check".to_owned(),
        "status".to_owned(),
        "value".to_owned(),
        "threshold / message".to_owned(),
    ]];
    for o in outcomes {
        if o.results.is_empty() {
            rows.push([
                o.job.clone(),
                "-".into(),
                o.status.as_str().into(),
                "".into(),
                o.error.clone().unwrap_or_default(),
            ]);
        }
        for r in &o.results {
            rows.push([
                o.job.clone(),
                r.check.clone(),
                r.status.as_str().into(),
                r.value.map(format_value).unwrap_or_default(),
                r.message.clone().unwrap_or_else(|| r.threshold.clone()),
            ]);
        }
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            if i == 4 {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push('\n');
    }
    out
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.4}")
    }
}

/// `check list`: name, connection, dataset, schedule, checks.
pub fn render_list(jobs: &[Job]) -> String {
    let mut out = String::new();
    for j in jobs {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{} check(s)\t{}\n",
            j.name,
            j.connection,
            if j.dataset.is_empty() {
                "-"
            } else {
                &j.dataset
            },
            j.schedule.as_deref().unwrap_or("on demand"),
            j.checks.len(),
            j.place()
        ));
    }
    out
}
