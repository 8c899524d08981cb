//! On a terminal `walaudit snapshot` draws a bar per table and one overall (rows, rows/s, ETA).
//! The terminal is a pseudo-terminal made by util-linux `script`.

use super::{config, walaudit};
use crate::support::shared;

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_on_a_terminal_draws_progress_bars() {
    crate::support::prerequisites::require("script");
    let db = shared().await.fresh_db("snap_bars").await.unwrap();
    db.execute(
        "CREATE TABLE prog (id int PRIMARY KEY, v text NOT NULL);
         INSERT INTO prog SELECT g, 'v' || g FROM generate_series(1, 200000) g;
         CREATE PUBLICATION walaudit FOR TABLE prog;",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let cfg = config(dir.path(), "chunk_rows = 10000\nworkers = 2");
    // The same command line the tests run, as one shell string for `script -c`.
    let cmd = walaudit(&db, &cfg, lake.to_str().unwrap(), &["snapshot"]);
    let std = cmd.as_std();
    let line: Vec<String> = std::iter::once(std.get_program())
        .chain(std.get_args())
        .map(|a| format!("'{}'", a.to_str().unwrap().replace('\'', r"'\''")))
        .collect();
    let out = tokio::process::Command::new("script")
        .args(["-qfec", &line.join(" "), "/dev/null"])
        .env("TERM", "xterm")
        .env("WALAUDIT_LISTEN", "127.0.0.1:0")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("util-linux `script` runs");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "snapshot on a pty failed:\n{screen}");
    for needle in [
        "public.prog",
        "all tables",
        "200,000/200,000",
        "rows",
        "ETA",
    ] {
        assert!(
            screen.contains(needle),
            "no {needle:?} on the terminal:\n{screen}"
        );
    }
    // The audit record follows the bars.
    assert!(screen.contains("done"), "{screen}");
}
