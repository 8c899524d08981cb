//! The scheduler under paused tokio time, against a fake runner that counts what runs at once.

use std::collections::HashMap;
use std::time::Duration;

use super::tests_fake::{Entry, PASS_1S, Plan, What, job, options, settle, start, t, until};
use super::*;

#[tokio::test(start_paused = true)]
async fn a_full_connection_does_not_hold_back_another_connections_due_job() {
    let mut jobs: Vec<_> = (0..3)
        .map(|i| job(&format!("src{i}"), Some("0 1 * * *"), "source"))
        .collect();
    jobs.push(job("lake", Some("30 0 1 * * *"), "lake"));
    let ten_min = Plan {
        takes: Some(Duration::from_secs(600)),
        status: RunStatus::Pass,
    };
    let rig = start(
        jobs,
        History::default(),
        options(4, 2),
        "2026-06-01T00:59:00Z",
        ten_min,
    );
    until(&rig, "2026-06-01T01:00:31Z").await;
    let started = rig.fake.started();
    let at = t("2026-06-01T01:00:00Z");
    let lake_at = t("2026-06-01T01:00:30Z");
    assert_eq!(
        started,
        [
            ("src0".into(), at, at),
            ("src1".into(), at, at),
            // src2 waits for a source slot; the lake job, due later, starts on time.
            ("lake".into(), lake_at, lake_at),
        ]
    );
    assert_eq!(rig.handle.queue_depth(), 1);
    assert_eq!(rig.handle.stats().overdue, 1);
    assert_eq!(rig.metrics.check_queue_depth.get(), 1);
    until(&rig, "2026-06-01T01:10:01Z").await;
    let src2 = rig.fake.started()[3].clone();
    assert_eq!(src2, ("src2".into(), at, t("2026-06-01T01:10:00Z")));
    assert_eq!(rig.fake.max_on("source"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_run_past_the_hard_deadline_ends_as_timeout_at_exactly_15_min() {
    let forever = Plan {
        takes: None,
        status: RunStatus::Pass,
    };
    let rig = start(
        vec![job("slow", Some("0 1 * * *"), "source")],
        History::default(),
        options(4, 2),
        "2026-06-01T00:59:00Z",
        forever,
    );
    until(&rig, "2026-06-01T01:14:59Z").await;
    assert_eq!(rig.fake.running_now(), 1);
    until(&rig, "2026-06-01T01:15:00Z").await;
    let at = t("2026-06-01T01:00:00Z");
    assert_eq!(
        rig.fake.of("slow"),
        [
            Entry {
                job: "slow".into(),
                at,
                trigger: Trigger::Schedule,
                what: What::Started,
                now: at
            },
            Entry {
                job: "slow".into(),
                at,
                trigger: Trigger::Schedule,
                what: What::Recorded(RunStatus::Timeout),
                now: t("2026-06-01T01:15:00Z")
            },
        ]
    );
    // The run's future was dropped, and its slot is free.
    assert_eq!(rig.fake.running_now(), 0);
    assert_eq!(rig.handle.stats().running, 0);
    let m = &rig.metrics;
    assert_eq!(m.check_runs.with_label_values(&["timeout"]).get(), 1);
    assert_eq!(m.check_run_seconds.get_sample_count(), 1);
    assert_eq!(m.check_run_seconds.get_sample_sum(), 900.0);
}

#[tokio::test(start_paused = true)]
async fn runs_missed_while_down_run_once_at_start_with_the_latest_missed_time() {
    let jobs = vec![
        job("hourly", Some("0 * * * *"), "lake"),
        job("caught_up", Some("0 * * * *"), "lake"),
        job("new", Some("0 * * * *"), "lake"),
    ];
    let history = History {
        last_scheduled: HashMap::from([
            // Down from 05:00 to 10:20: 06:00 ... 10:00 were missed.
            ("hourly".to_owned(), t("2026-06-01T05:00:00Z")),
            ("caught_up".to_owned(), t("2026-06-01T10:00:00Z")),
        ]),
        latest_status: HashMap::new(),
    };
    let rig = start(
        jobs,
        history,
        options(4, 2),
        "2026-06-01T10:20:00Z",
        PASS_1S,
    );
    until(&rig, "2026-06-01T10:59:59Z").await;
    let now = t("2026-06-01T10:20:00Z");
    assert_eq!(
        rig.fake.started(),
        [("hourly".into(), t("2026-06-01T10:00:00Z"), now)],
        "one run, not five"
    );
    until(&rig, "2026-06-01T11:00:01Z").await;
    let eleven = t("2026-06-01T11:00:00Z");
    let mut at_eleven: Vec<_> = rig.fake.started()[1..].to_vec();
    at_eleven.sort();
    assert_eq!(
        at_eleven,
        [
            ("caught_up".into(), eleven, eleven),
            ("hourly".into(), eleven, eleven),
            ("new".into(), eleven, eleven),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_upstream_blocks_downstream_until_it_passes() {
    let upstream = job("up", Some("0 * * * * *"), "source");
    let mut downstream = job("down", Some("30 * * * * *"), "lake");
    downstream.depends_on = vec!["up".into()];
    let history = History {
        last_scheduled: HashMap::new(),
        latest_status: HashMap::from([("up".to_owned(), RunStatus::Fail)]),
    };
    let rig = start(
        vec![upstream, downstream],
        history,
        options(4, 2),
        "2026-06-01T00:59:50Z",
        PASS_1S,
    );
    rig.fake.plan(
        "up",
        Plan {
            takes: Some(Duration::from_secs(1)),
            status: RunStatus::Fail,
        },
    );
    until(&rig, "2026-06-01T01:00:31Z").await;
    let blocked_at = t("2026-06-01T01:00:30Z");
    assert_eq!(
        rig.fake.of("down"),
        [Entry {
            job: "down".into(),
            at: blocked_at,
            trigger: Trigger::Schedule,
            what: What::Recorded(RunStatus::Blocked),
            now: blocked_at
        }]
    );
    assert_eq!(
        rig.metrics.check_runs.with_label_values(&["blocked"]).get(),
        1
    );
    // Upstream passes at 01:01:00; downstream runs at its next tick.
    rig.fake.plan("up", PASS_1S);
    until(&rig, "2026-06-01T01:01:30.500Z").await;
    let down: Vec<_> = rig
        .fake
        .of("down")
        .into_iter()
        .map(|e| (e.at, e.what))
        .collect();
    let at = t("2026-06-01T01:01:30Z");
    assert_eq!(down[1..], [(at, What::Started)], "{down:?}");
    assert_eq!(rig.fake.of("up").len(), 4, "up ran at 01:00 and 01:01");
}

#[tokio::test(start_paused = true)]
async fn a_tick_while_the_job_runs_waits_once_and_further_ticks_are_skipped() {
    let long = Plan {
        takes: Some(Duration::from_secs(170)),
        status: RunStatus::Pass,
    };
    let rig = start(
        vec![job("j", Some("* * * * *"), "source")],
        History::default(),
        options(4, 2),
        "2026-06-01T00:59:30Z",
        long,
    );
    until(&rig, "2026-06-01T01:05:50Z").await;
    let got: Vec<_> = rig
        .fake
        .of("j")
        .into_iter()
        .map(|e| {
            (
                e.at.format("%H:%M").to_string(),
                e.what,
                e.now.format("%H:%M:%S").to_string(),
            )
        })
        .collect();
    let row = |at: &str, what: What, now: &str| (at.to_owned(), what, now.to_owned());
    let pass = || What::Ended(RunStatus::Pass);
    assert_eq!(
        got,
        [
            row("01:00", What::Started, "01:00:00"),
            // 01:02 met the 01:01 run waiting behind the one running: skipped.
            row("01:02", What::Recorded(RunStatus::Skipped), "01:02:00"),
            row("01:00", pass(), "01:02:50"),
            // The waiting run starts when the running one ends.
            row("01:01", What::Started, "01:02:50"),
            row("01:04", What::Recorded(RunStatus::Skipped), "01:04:00"),
            row("01:05", What::Recorded(RunStatus::Skipped), "01:05:00"),
            row("01:01", pass(), "01:05:40"),
            row("01:03", What::Started, "01:05:40"),
        ]
    );
    assert_eq!(rig.fake.max_per_job(), 1);
}

#[tokio::test(start_paused = true)]
async fn jobs_are_upserted_removed_and_triggered_at_runtime() {
    let rig = start(
        Vec::new(),
        History::default(),
        options(4, 2),
        "2026-06-01T01:00:00Z",
        PASS_1S,
    );
    let h = &rig.handle;
    rig.fake.connection("a", "lake");
    h.upsert(job("a", None, "lake")).await.unwrap();
    assert_eq!(h.stats().jobs, 1);
    assert_eq!(
        h.trigger_now("a", Trigger::Api).await,
        Ok(Triggered::Queued)
    );
    // While it runs, a trigger waits behind it; one more finds it waiting.
    assert_eq!(
        h.trigger_now("a", Trigger::Manual).await,
        Ok(Triggered::AfterCurrentRun)
    );
    assert_eq!(
        h.trigger_now("a", Trigger::Manual).await,
        Ok(Triggered::AlreadyWaiting)
    );
    assert_eq!(
        h.trigger_now("nope", Trigger::Api).await,
        Err(HandleError::UnknownJob {
            name: "nope".into()
        })
    );
    until(&rig, "2026-06-01T01:00:30Z").await;
    let runs: Vec<_> = rig
        .fake
        .started()
        .into_iter()
        .map(|(_, at, now)| (at, now))
        .collect();
    let now = t("2026-06-01T01:00:00Z");
    assert_eq!(runs, [(now, now), (now, t("2026-06-01T01:00:01Z"))]);
    let triggers: Vec<_> = rig.fake.of("a").iter().map(|e| e.trigger).collect();
    assert_eq!(triggers[0], Trigger::Api);
    assert_eq!(triggers[2], Trigger::Manual);

    // A schedule now: it runs at the next minute.
    h.upsert(job("a", Some("* * * * *"), "lake")).await.unwrap();
    until(&rig, "2026-06-01T01:01:30Z").await;
    assert_eq!(rig.fake.started().len(), 3);
    // Replaced by an hourly schedule: the minutely timer is gone.
    h.upsert(job("a", Some("0 * * * *"), "lake")).await.unwrap();
    until(&rig, "2026-06-01T01:59:30Z").await;
    assert_eq!(rig.fake.started().len(), 3);
    until(&rig, "2026-06-01T02:00:30Z").await;
    assert_eq!(rig.fake.started().len(), 4);
    // Removed: no more runs.
    assert_eq!(h.remove("a").await, Ok(true));
    assert_eq!(h.remove("a").await, Ok(false));
    until(&rig, "2026-06-01T04:00:30Z").await;
    assert_eq!(rig.fake.started().len(), 4);
    assert_eq!(h.stats().jobs, 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_runs_end_until_the_grace_deadline_then_drops_them() {
    let jobs = vec![job("quick", None, "lake"), job("never", None, "lake")];
    let mut opts = options(4, 2);
    opts.grace = Duration::from_secs(30);
    let rig = start(
        jobs,
        History::default(),
        opts,
        "2026-06-01T01:00:00Z",
        PASS_1S,
    );
    rig.fake.plan(
        "quick",
        Plan {
            takes: Some(Duration::from_secs(5)),
            status: RunStatus::Warn,
        },
    );
    rig.fake.plan(
        "never",
        Plan {
            takes: None,
            status: RunStatus::Pass,
        },
    );
    let h = rig.handle.clone();
    h.trigger_now("quick", Trigger::Api).await.unwrap();
    h.trigger_now("never", Trigger::Api).await.unwrap();
    settle().await;
    assert_eq!(rig.fake.running_now(), 2);
    let asked = tokio::time::Instant::now();
    rig.cancel.cancel();
    rig.scheduler.stopped().await;
    assert_eq!(asked.elapsed(), Duration::from_secs(30));
    assert_eq!(
        rig.fake.of("quick").last().map(|e| e.what.clone()),
        Some(What::Ended(RunStatus::Warn))
    );
    // The never-ending run was dropped, not left running.
    assert_eq!(rig.fake.running_now(), 0);
    assert_eq!(
        h.upsert(job("x", None, "lake")).await,
        Err(HandleError::Stopped)
    );
    assert_eq!(
        h.trigger_now("quick", Trigger::Api).await,
        Err(HandleError::Stopped)
    );
}

#[tokio::test(start_paused = true)]
async fn the_loop_sleeps_until_the_next_due_time() {
    let rig = start(
        vec![job("hourly", Some("0 * * * *"), "lake")],
        History::default(),
        options(4, 2),
        "2026-06-01T01:00:01Z",
        PASS_1S,
    );
    until(&rig, "2026-06-01T01:59:59Z").await;
    assert_eq!(
        rig.handle.stats().wakeups,
        0,
        "no polling while nothing is due"
    );
    until(&rig, "2026-06-01T02:00:02Z").await;
    // The due time, and the run's end.
    assert_eq!(rig.handle.stats().wakeups, 2);
    assert_eq!(rig.fake.started().len(), 1);
}

#[test]
fn options_with_a_cap_of_zero_are_refused() {
    let mut o = options(4, 0);
    let e = o.validate().unwrap_err();
    assert!(
        e.to_string()
            .contains("the cap of connection `source` is 0"),
        "{e}"
    );
    o = options(0, 2);
    assert!(o.validate().is_err());
    assert_eq!(SchedulerOptions::default().cap_of("source"), 2);
    assert_eq!(
        SchedulerOptions::default().hard_kill,
        Duration::from_secs(900)
    );
    assert_eq!(
        RunStatus::Pass.worst(RunStatus::Timeout),
        RunStatus::Timeout
    );
    assert_eq!(RunStatus::Fail.worst(RunStatus::Warn), RunStatus::Fail);
    assert!(RunStatus::Warn.lets_downstream_run() && !RunStatus::Blocked.lets_downstream_run());
    let labels: Vec<_> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(labels, crate::metrics::CHECK_RUN_STATUSES);
}

/// Runs `expr` in Europe/Berlin from `from` to `to` and returns the UTC start times.
async fn daily_runs(expr: &str, from: &str, to: &str) -> Vec<String> {
    let mut j = job("dst", None, "lake");
    j.schedule = Some(Schedule::parse(expr, Some("Europe/Berlin")).unwrap());
    let rig = start(vec![j], History::default(), options(4, 2), from, PASS_1S);
    until(&rig, to).await;
    rig.fake
        .started()
        .into_iter()
        .map(|(_, at, now)| {
            assert_eq!(at, now);
            at.to_rfc3339()
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_daily_0230_job_runs_once_on_both_dst_change_days() {
    // 2026-03-29: 02:00 CET jumps to 03:00 CEST; no 02:30, the run is at 03:00 CEST.
    assert_eq!(
        daily_runs("30 2 * * *", "2026-03-27T12:00:00Z", "2026-03-30T12:00:00Z").await,
        [
            "2026-03-28T01:30:00+00:00",
            "2026-03-29T01:00:00+00:00",
            "2026-03-30T00:30:00+00:00"
        ]
    );
    // 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice, the job runs once.
    assert_eq!(
        daily_runs("30 2 * * *", "2026-10-23T12:00:00Z", "2026-10-26T12:00:00Z").await,
        [
            "2026-10-24T00:30:00+00:00",
            "2026-10-25T00:30:00+00:00",
            "2026-10-26T01:30:00+00:00"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_run_is_recorded_as_error_and_frees_its_slot() {
    let mut downstream = job("down", None, "source");
    downstream.depends_on = vec!["panics".into()];
    let rig = start(
        vec![job("panics", None, "source"), downstream],
        History {
            last_scheduled: HashMap::new(),
            latest_status: HashMap::from([("panics".to_owned(), RunStatus::Pass)]),
        },
        options(1, 1),
        "2026-06-01T01:00:00Z",
        PASS_1S,
    );
    let h = &rig.handle;
    assert_eq!(
        h.trigger_now("panics", Trigger::Api).await,
        Ok(Triggered::Queued)
    );
    settle().await;
    let what: Vec<_> = rig.fake.of("panics").into_iter().map(|e| e.what).collect();
    assert_eq!(what, [What::Recorded(RunStatus::Error)]);
    assert_eq!(h.stats().running, 0);
    assert_eq!(
        rig.metrics.check_runs.with_label_values(&["error"]).get(),
        1
    );
    // Its latest status is now `error`: the downstream job is blocked.
    h.trigger_now("down", Trigger::Manual).await.unwrap();
    settle().await;
    let what: Vec<_> = rig.fake.of("down").into_iter().map(|e| e.what).collect();
    assert_eq!(what, [What::Recorded(RunStatus::Blocked)]);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_run_moves_with_its_job_to_another_connection() {
    let ten_min = Plan {
        takes: Some(Duration::from_secs(600)),
        status: RunStatus::Pass,
    };
    let jobs = vec![job("a", None, "source"), job("b", None, "source")];
    let rig = start(
        jobs,
        History::default(),
        options(4, 1),
        "2026-06-01T01:00:00Z",
        ten_min,
    );
    let h = &rig.handle;
    h.trigger_now("a", Trigger::Api).await.unwrap();
    h.trigger_now("b", Trigger::Api).await.unwrap();
    settle().await;
    assert_eq!((h.stats().running, h.queue_depth()), (1, 1));
    // `b` waits for the one source slot; moved to the lake, it starts at once.
    rig.fake.connection("b", "lake");
    h.upsert(job("b", None, "lake")).await.unwrap();
    settle().await;
    assert_eq!((h.stats().running, h.queue_depth()), (2, 0));
    let started: Vec<_> = rig.fake.started().into_iter().map(|(n, ..)| n).collect();
    assert_eq!(started, ["a", "b"]);
}
