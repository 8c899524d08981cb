//! The pipeline's metrics reflect what it did, and the exposition passes `promtool`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use walaudit::metrics::Metrics;
use walaudit::pipeline;
use walaudit::sink::{MemorySink, MemoryStore};

use super::{options, prepare};
use crate::support::shared;

fn value(text: &str, series: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"));
    line[series.len()..].trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_metrics_count_the_workload_and_pass_promtool() {
    let db = shared().await.fresh_db("metrics").await.unwrap();
    db.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let slot = prepare(&db).await.unwrap();
    db.execute("INSERT INTO t SELECT g, 'x' FROM generate_series(1, 50) g")
        .await
        .unwrap();
    db.execute("UPDATE t SET v = 'y' WHERE id <= 20")
        .await
        .unwrap();
    db.execute("DELETE FROM t WHERE id <= 5").await.unwrap();
    let mut opts = options(&db, &slot, 1 << 20);
    let metrics = Arc::new(Metrics::new());
    opts.metrics = Arc::clone(&metrics);
    let store = Arc::new(Mutex::new(MemoryStore::default()));
    let sink = MemorySink::new(Arc::clone(&store));
    pipeline::run(opts, sink, CancellationToken::new())
        .await
        .unwrap();

    let text = metrics.render();
    let changes = |op: &str| {
        value(
            &text,
            &format!("walaudit_changes_total{{op=\"{op}\",table=\"public.t\"}}"),
        )
    };
    assert_eq!(
        (changes("c"), changes("u"), changes("d")),
        (50.0, 20.0, 5.0)
    );
    assert_eq!(value(&text, "walaudit_transactions_total"), 3.0);
    let received = value(&text, "walaudit_received_bytes_total");
    assert!(received > 1000.0, "received {received}");
    assert_eq!(
        value(&text, "walaudit_end_to_end_lag_seconds"),
        0.0,
        "caught up after a drain"
    );
    assert_eq!(
        value(
            &text,
            "walaudit_errors_total{kind=\"permanent\",stage=\"source\"}"
        ),
        0.0
    );

    crate::support::prerequisites::require("promtool");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (apt-get install prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
