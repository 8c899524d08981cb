//! The steps of `walaudit demo` around the engine: the demo's lake directory, the source's
//! shop schema, publication and slot, waiting for the engine, and the sample audit queries.

use std::path::Path;
use std::time::{Duration, Instant};

use deltalake::arrow::error::ArrowError;
use deltalake::arrow::util::pretty::pretty_format_batches;
use tokio::sync::watch;

use super::workload::{self, WorkloadError, WorkloadStats};
use crate::cluster::Cluster;
use crate::engine::EngineStatus;
use crate::metrics::SharedMetrics;
use crate::query::{LakeOptions, LakeQuery, QueryError};
use crate::source::{ConnParams, SourceError};

/// Marks a lake directory as made by `walaudit demo` (so that a later demo may replace it).
pub const DEMO_MARKER: &str = ".walaudit-demo";
/// The demo's database on its private cluster.
pub const DEMO_DB: &str = "shop";
const STREAMING_DEADLINE: Duration = Duration::from_secs(60);
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(60);

/// A step of the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "{path} exists and was not made by walaudit demo: remove it or choose another \
         directory with --lake"
    )]
    NotDemoLake { path: String },
    #[error("cannot prepare the demo lake {path}")]
    Lake {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}")]
    Sql {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("cannot print a query result")]
    Print(#[from] ArrowError),
    #[error("the engine did not start streaming within {0:?}: see its log above")]
    NotStreaming(Duration),
    #[error("the engine stopped before it started streaming: {0}")]
    StoppedEarly(String),
}

/// Makes `lake` an empty directory marked as the demo's: replace an earlier demo's lake, refuse
/// to touch anything else.
pub fn prepare_lake(lake: &Path) -> Result<(), DemoError> {
    let io = |source| DemoError::Lake {
        path: lake.display().to_string(),
        source,
    };
    if lake.exists() {
        let empty = lake.is_dir() && std::fs::read_dir(lake).map_err(io)?.next().is_none();
        if !empty && !lake.join(DEMO_MARKER).is_file() {
            return Err(DemoError::NotDemoLake {
                path: lake.display().to_string(),
            });
        }
        std::fs::remove_dir_all(lake).map_err(io)?;
    }
    std::fs::create_dir_all(lake).map_err(io)?;
    std::fs::write(
        lake.join(DEMO_MARKER),
        "made by walaudit demo; replaced by the next one\n",
    )
    .map_err(io)
}

/// Database, shop schema, publication and slot, before any row is written.
pub async fn setup_source(cluster: &Cluster) -> Result<(), DemoError> {
    let admin = ConnParams::parse(&cluster.unix_url("postgres"))?
        .connect_sql()
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {DEMO_DB}"))
        .await
        .map_err(|source| DemoError::Sql {
            context: "cannot create the demo database",
            source,
        })?;
    let shop = ConnParams::parse(&cluster.unix_url(DEMO_DB))?
        .connect_sql()
        .await?;
    workload::create_schema(&shop).await?;
    shop.batch_execute("CREATE PUBLICATION walaudit FOR ALL TABLES")
        .await
        .map_err(|source| DemoError::Sql {
            context: "cannot create the demo publication",
            source,
        })?;
    shop.batch_execute("SELECT pg_create_logical_replication_slot('walaudit', 'pgoutput')")
        .await
        .map_err(|source| DemoError::Sql {
            context: "cannot create the demo slot",
            source,
        })?;
    Ok(())
}

/// Waits until the engine streams; an engine that stops first is an error.
pub async fn wait_streaming(status: &mut watch::Receiver<EngineStatus>) -> Result<(), DemoError> {
    let reached = tokio::time::timeout(
        STREAMING_DEADLINE,
        status.wait_for(|s| *s == EngineStatus::Streaming || s.is_final()),
    )
    .await;
    match reached {
        Err(_) => Err(DemoError::NotStreaming(STREAMING_DEADLINE)),
        Ok(Err(_)) => Err(DemoError::StoppedEarly("its status channel closed".into())),
        Ok(Ok(s)) => match &*s {
            EngineStatus::Streaming => Ok(()),
            other => Err(DemoError::StoppedEarly(other.to_string())),
        },
    }
}

pub async fn sleep_or_forever(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}

/// Wait until the engine has received every workload transaction (and the seed one).
pub async fn catch_up(metrics: &SharedMetrics, stats: &WorkloadStats) {
    let want = stats.transactions + 1;
    let started = Instant::now();
    while metrics.transactions.get() < want {
        if started.elapsed() > CATCH_UP_DEADLINE {
            tracing::warn!(
                received = metrics.transactions.get(),
                committed = want,
                "the engine did not catch up with the workload; the lake holds what it received"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sample audit queries, each with its result.
const QUERIES: [(&str, &str); 4] = [
    (
        "Who changed what: transactions and row changes per actor",
        "SELECT _actor AS actor, count(*) AS transactions, sum(change_count) AS changes \
         FROM _walaudit.transactions GROUP BY _actor ORDER BY changes DESC, actor",
    ),
    (
        "Changes to orders by actor and operation (c insert, u update, d delete)",
        "SELECT _actor AS actor, _op AS op, count(*) AS changes FROM public.orders \
         GROUP BY _actor, _op ORDER BY actor, op",
    ),
    (
        "The history of the most changed order",
        "SELECT pg_lsn(_lsn) AS lsn, _commit_ts AS committed, _op AS op, _actor AS actor, \
         status, total FROM public.orders WHERE id = (SELECT id FROM public.orders \
         GROUP BY id ORDER BY count(*) DESC, id LIMIT 1) ORDER BY _lsn, _seq",
    ),
    (
        "Current state (current.public.orders): orders by status",
        "SELECT status, count(*) AS orders, sum(total) AS total FROM current.public.orders \
         GROUP BY status ORDER BY status",
    ),
];

pub async fn print_queries(lake: &Path, source: &ConnParams) -> Result<(), DemoError> {
    let session = LakeQuery::open(&lake.display().to_string(), LakeOptions::default()).await?;
    for (title, sql) in QUERIES {
        let batches = session.collect(sql).await?;
        println!(
            "\n-- {title}\nwalaudit query --lake {} \"{sql}\"",
            lake.display()
        );
        println!("{}", pretty_format_batches(&batches)?);
    }
    let client = source.connect_sql().await?;
    let source_orders: i64 = client
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .map_err(|source| DemoError::Sql {
            context: "cannot count the source's orders",
            source,
        })?
        .get(0);
    let lake_orders = session
        .collect("SELECT count(*) FROM current.public.orders")
        .await?;
    println!(
        "\n-- Orders in the source: {source_orders}; in the lake's current view:\n{}",
        pretty_format_batches(&lake_orders)?
    );
    Ok(())
}
