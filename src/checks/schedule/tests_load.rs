//! The scheduler with many due jobs: caps, order, and work per job.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::tests_fake::{Plan, What, job, options, start, t, until};
use super::*;

#[tokio::test(start_paused = true)]
async fn fifty_due_jobs_run_within_the_total_and_source_caps_in_schedule_order() {
    // Due at 01:00:00, :10 and :20; 30 jobs on `source`, 20 on `lake`.
    let jobs: Vec<_> = (0..50)
        .map(|i| {
            let schedule = format!("{} 0 1 * * *", (i % 3) * 10);
            let connection = if i % 5 < 3 { "source" } else { "lake" };
            job(&format!("j{i:02}"), Some(&schedule), connection)
        })
        .collect();
    let connection_of: HashMap<String, String> = jobs
        .iter()
        .map(|j| (j.name.clone(), j.connection.clone()))
        .collect();
    let two_min = Plan {
        takes: Some(Duration::from_secs(120)),
        status: RunStatus::Pass,
    };
    let rig = start(
        jobs,
        History::default(),
        options(4, 2),
        "2026-06-01T00:59:00Z",
        two_min,
    );
    until(&rig, "2026-06-01T01:00:00Z").await;
    assert_eq!(rig.handle.queue_depth(), 50 / 3 + 1 - 4);
    until(&rig, "2026-06-01T02:00:00Z").await;

    assert_eq!(rig.fake.calls.load(Ordering::Relaxed), 50);
    assert_eq!(rig.fake.count(&What::Ended(RunStatus::Pass)), 50);
    assert_eq!(
        rig.fake.max_total(),
        4,
        "never more than max_concurrent, and it is used"
    );
    assert_eq!(
        rig.fake.max_on("source"),
        2,
        "never more than the source cap"
    );
    assert_eq!(rig.fake.max_per_job(), 1);
    let started = rig.fake.started();
    let mut names: Vec<_> = started.iter().map(|(name, ..)| name.clone()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 50, "each job ran once");
    // On each connection, runs start by scheduled time, then job name.
    for (connection, runs) in [("source", 30), ("lake", 20)] {
        let order: Vec<_> = started
            .iter()
            .filter(|(name, ..)| connection_of[name] == connection)
            .map(|(name, at, _)| (*at, name.clone()))
            .collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "{connection}");
        assert_eq!(order.len(), runs);
    }
    // The first four: the earliest keys, source held to two.
    let first: Vec<_> = started[..4].iter().map(|(n, ..)| n.as_str()).collect();
    assert_eq!(first, ["j00", "j03", "j06", "j09"]);
    let stats = rig.handle.stats();
    assert_eq!((stats.queued, stats.running, stats.overdue), (0, 0, 0));
    assert_eq!(
        rig.metrics.check_runs.with_label_values(&["pass"]).get(),
        50
    );
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_jobs_due_in_one_minute_are_dispatched_with_constant_work_each() {
    const N: usize = 10_000;
    // One parse, cloned: the test is about dispatching.
    let template = job("", Some("0 1 * * *"), "");
    let jobs: Vec<_> = (0..N)
        .map(|i| ScheduledJob {
            name: format!("job{i:05}"),
            connection: format!("c{}", i % 10),
            ..template.clone()
        })
        .collect();
    let mut opts = options(64, 16);
    opts.default_connection_cap = 16;
    let quick = Plan {
        takes: Some(Duration::from_millis(100)),
        status: RunStatus::Pass,
    };
    let wall = std::time::Instant::now();
    let rig = start(
        jobs,
        History::default(),
        opts,
        "2026-06-01T00:59:59Z",
        quick,
    );
    until(&rig, "2026-06-01T01:01:00Z").await;
    let took = wall.elapsed();

    assert_eq!(rig.fake.calls.load(Ordering::Relaxed), N);
    let started = rig.fake.started();
    assert_eq!(started.len(), N);
    let last = started.iter().map(|(_, _, now)| *now).max().unwrap();
    assert!(
        last < t("2026-06-01T01:01:00Z"),
        "all started within the minute: {last}"
    );
    assert_eq!(rig.fake.max_total(), 64);
    let stats = rig.handle.stats();
    // One upsert, one timer pop and one dispatch per job: no scan of all jobs per tick.
    assert!(stats.steps <= 3 * N as u64 + 100, "{stats:?}");
    assert!(stats.wakeups <= 2 * N as u64 + 100, "{stats:?}");
    // About a second in a debug build; a scan of all jobs per wake-up (10^8 visits) is not.
    assert!(took < Duration::from_secs(30), "{took:?}");
    eprintln!("10,000 jobs dispatched in {took:?} of wall time: {stats:?}");
}
