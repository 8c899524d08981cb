//! The demo's validation jobs: four jobs over the shop schema on the real scheduler (the same
//! service `walaudit run --checks` starts), one that fails on purpose, and an anomaly check that
//! a burst of the workload trips and that resolves once the burst is over.
//!
//! ```text
//!  start ─► <lake>/.checks/shop.yml ─► load (as `check validate` does) ─► check service
//!        └─► burst task: after BURST_AFTER, BURST_FACTOR× the rate for BURST_FOR (inserts)
//!  stop  ─► service stops, its history flushed to <lake>/_walaudit ─► print_results (SQL)
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use deltalake::arrow::util::pretty::pretty_format_batches;
use tokio_util::sync::CancellationToken;

use super::session::DemoError;
use super::workload::{self, OpMix, WorkloadOptions};
use crate::config::Config;
use crate::engine::Tasks;
use crate::metrics::SharedMetrics;
use crate::query::{LakeOptions, LakeQuery};
use crate::source::ConnParams;

/// The demo's job file. Every job runs every 2 seconds (a 6-field cron).
pub const DEMO_JOBS: &str = r#"# The demo's validation jobs (walaudit demo writes this file; edit a copy to try your own).
jobs:
  # Single-column and aggregate checks over the lake's current state, in one query.
  - name: orders_sane
    description: the lake's current orders are complete and consistent
    connection: lake
    dataset: current.public.orders
    schedule: "*/2 * * * * *"
    checks:
      - type: row_count
        must_be_greater_than: 0
      - type: missing
        column: customer_id
      - type: invalid
        column: total
        valid_min: 0
      - type: duplicate
        columns: [id]

  # Multi-table: every order line belongs to an order (the source, read-only).
  - name: order_items_have_orders
    connection: source
    dataset: public.order_items
    schedule: "*/2 * * * * *"
    checks:
      - type: reference
        columns: [order_id]
        references: {dataset: public.orders, columns: [id]}

  # Fails on purpose: the list of statuses forgets 'delivered', so its orders are invalid
  # (the failing rows are kept as samples).
  - name: orders_status_known
    connection: source
    dataset: public.orders
    schedule: "*/2 * * * * *"
    severity: low
    checks:
      - type: invalid
        column: status
        valid_values: [new, paid, shipped]

  # Anomaly detection: orders created in the last 4 seconds, against this job's own history.
  - name: new_orders
    connection: source
    schedule: "*/2 * * * * *"
    severity: high
    checks:
      - type: metric
        name: orders_last_4s
        query: SELECT count(*) FROM public.orders WHERE created_at > now() - interval '4 seconds'
        must_be_greater_than_or_equal: 0
      - type: anomaly
        of: orders_last_4s
        direction: up
        sensitivity: 4
        min_history: 5
        training_window: 10m
"#;

/// The burst starts this long after the jobs do (time for the anomaly check's history).
pub const BURST_AFTER: Duration = Duration::from_secs(12);
/// How long the burst lasts.
pub const BURST_FOR: Duration = Duration::from_secs(4);
/// The burst adds this many times the demo's rate, in inserts only.
pub const BURST_FACTOR: f64 = 4.0;
/// How long the demo waits for the lake's first orders before it starts the jobs.
const LAKE_READY_DEADLINE: Duration = Duration::from_secs(60);
/// How long the jobs' tasks may take to stop (their history is flushed on the way).
const STOP_GRACE: Duration = Duration::from_secs(30);

/// The running jobs and the burst.
pub struct DemoChecks {
    tasks: Tasks,
    cancel: CancellationToken,
    started: Instant,
}

/// The directory of the demo's job file inside its lake (a folder without `_delta_log` is not
/// a table, so the lake's readers pass it by).
pub fn checks_dir(lake: &Path) -> PathBuf {
    lake.join(".checks")
}

/// Writes the job file, waits until the lake holds the first orders (a lake job on a table not
/// written yet would only report an error), and starts the jobs and the burst.
pub async fn start(
    config: &Config,
    lake: &Path,
    source: &ConnParams,
    rate: f64,
    metrics: SharedMetrics,
) -> anyhow::Result<DemoChecks> {
    let dir = checks_dir(lake);
    std::fs::create_dir_all(&dir).map_err(|source| DemoError::Lake {
        path: dir.display().to_string(),
        source,
    })?;
    std::fs::write(dir.join("shop.yml"), DEMO_JOBS).map_err(|source| DemoError::Lake {
        path: dir.display().to_string(),
        source,
    })?;
    wait_for_orders(lake).await?;
    let mut config = config.clone();
    config.checks.dir = Some(dir.clone());
    let jobs = crate::checks::command::load_jobs(&dir, &config)?;
    let tasks = Tasks::default();
    let cancel = CancellationToken::new();
    crate::checks::service::start(
        crate::checks::service::CheckOptions {
            jobs: jobs.clone(),
            config: config.clone(),
            metrics,
        },
        &tasks,
        cancel.clone(),
    )
    .await?;
    println!(
        "  checks: {} jobs from {} every 2 s: {}",
        jobs.len(),
        dir.join("shop.yml").display(),
        jobs.iter()
            .map(|j| j.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  checks: orders_status_known fails on purpose; in {}s the workload bursts for {}s \
         (new_orders' anomaly check should open an alert, and resolve it afterwards)",
        BURST_AFTER.as_secs(),
        BURST_FOR.as_secs()
    );
    let burst = burst(source.clone(), config, rate, cancel.clone());
    tasks.spawn("demo_burst", burst);
    Ok(DemoChecks {
        tasks,
        cancel,
        started: Instant::now(),
    })
}

async fn wait_for_orders(lake: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + LAKE_READY_DEADLINE;
    let url = lake.display().to_string();
    loop {
        if let Ok(q) = LakeQuery::open(&url, LakeOptions::default()).await
            && let Ok(b) = q
                .collect("SELECT count(*) FROM current.public.orders")
                .await
            && b.first().is_some_and(|b| {
                b.num_rows() == 1
                    && deltalake::arrow::array::cast::as_primitive_array::<
                        deltalake::arrow::datatypes::Int64Type,
                    >(b.column(0))
                    .value(0)
                        > 0
            })
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the lake held no orders {LAKE_READY_DEADLINE:?} after the workload started: \
                 see the engine's log above"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// After [`BURST_AFTER`], inserts at [`BURST_FACTOR`]× `rate` for [`BURST_FOR`] on a second
/// connection (inserts only: it never waits on the main workload's row locks).
async fn burst(source: ConnParams, config: Config, rate: f64, cancel: CancellationToken) {
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = tokio::time::sleep(BURST_AFTER) => {}
    }
    let rate = rate * BURST_FACTOR;
    let options = WorkloadOptions {
        count: (rate * BURST_FOR.as_secs_f64()).ceil() as u64,
        rate,
        tx_size: 3,
        mix: OpMix {
            insert: 1,
            update: 0,
            delete: 0,
        },
        actors: vec!["burst".into()],
        seed: 0xb0a5,
        context_prefix: config.source.context_prefix.clone(),
    };
    println!("  burst: {rate} extra tx/s of new orders for {BURST_FOR:?}");
    let result = match source.connect_sql().await {
        Ok(mut client) => workload::run(&mut client, &options, &cancel)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(stats) => println!(
            "  burst: done ({} transactions, {} new orders)",
            stats.transactions, stats.inserts
        ),
        Err(e) => tracing::warn!(error = %e, "the demo's burst failed; the anomaly stays quiet"),
    }
}

impl DemoChecks {
    /// Stops the jobs; their history is in the lake when this returns.
    pub async fn stop(self) -> Duration {
        self.cancel.cancel();
        let aborted = self.tasks.close(STOP_GRACE).await;
        if !aborted.is_empty() {
            tracing::warn!(?aborted, "the demo's checks did not stop in time");
        }
        self.started.elapsed()
    }
}

/// The queries over the run history, each printed with its result.
const QUERIES: [(&str, &str); 4] = [
    (
        "Validation runs by job and status",
        "SELECT job, status, count(*) AS runs FROM _walaudit.check_runs \
         GROUP BY job, status ORDER BY job, status",
    ),
    (
        "The check that fails on purpose: its latest result and failing sample rows",
        "SELECT \"check\", value, message, samples FROM _walaudit.check_results \
         WHERE job = 'orders_status_known' ORDER BY measured_at DESC LIMIT 1",
    ),
    (
        "new_orders around the burst: orders in the last 4 s and the anomaly's z-score",
        "SELECT r.scheduled_at, max(CASE WHEN c.type = 'metric' THEN c.value END) AS orders_4s, \
         round(max(CASE WHEN c.type = 'anomaly' THEN c.value END), 1) AS z, r.status \
         FROM _walaudit.check_runs r JOIN _walaudit.check_results c ON c.run_id = r.run_id \
         WHERE r.job = 'new_orders' GROUP BY r.scheduled_at, r.status ORDER BY r.scheduled_at",
    ),
    (
        "Alerts opened and resolved",
        "SELECT at, job, \"check\", severity, event, message FROM _walaudit.alert_events \
         ORDER BY at, job",
    ),
];

/// Prints the run history the jobs left in the lake.
pub async fn print_results(lake: &Path, ran_for: Duration) -> Result<(), DemoError> {
    let session = LakeQuery::open(&lake.display().to_string(), LakeOptions::default()).await?;
    println!("\n== Validation jobs ({}s of runs)", ran_for.as_secs());
    for (title, sql) in QUERIES {
        let batches = session.collect(sql).await?;
        println!(
            "\n-- {title}\nwalaudit query --lake {} \"{sql}\"",
            lake.display()
        );
        println!("{}", pretty_format_batches(&batches)?);
    }
    let needed = BURST_AFTER + BURST_FOR + Duration::from_secs(10);
    if ran_for < needed {
        println!(
            "\n(the anomaly story needs about {}s of runs: use a longer --duration)",
            needed.as_secs()
        );
    }
    Ok(())
}
