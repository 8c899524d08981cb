//! Tests of the test harness itself (`walaudit::testing`, on `walaudit::cluster`): isolation of test databases, server
//! settings, authentication methods, restarts, cleanup, that no server outlives the test
//! process, and that a missing server stops the tests at once with the command that installs it.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tokio::io::AsyncBufReadExt;
use tokio_postgres::NoTls;

use crate::support::{
    self, ClusterOptions, PasswordEncryption, PgCluster, StopMode, TestDb, WalLevel,
    process_running, quote_ident, quote_literal, unique_name,
};

mod prerequisites;

const DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// Connects with a URL as a test would hand it to walaudit; returns the connected client.
async fn connect_url(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connect {url}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

#[tokio::test(flavor = "multi_thread")]
async fn fresh_databases_are_isolated() -> Result<()> {
    let cluster = support::shared().await;
    let a = cluster.fresh_db("isolated a").await?;
    let b = cluster.fresh_db("isolated a").await?;
    assert_ne!(
        a.name, b.name,
        "the same hint must still give distinct databases"
    );
    assert!(
        a.name.starts_with("isolated_a_"),
        "name keeps the sanitised hint: {}",
        a.name
    );

    a.execute("CREATE TABLE marker (id int PRIMARY KEY); INSERT INTO marker VALUES (7)")
        .await?;
    assert_eq!(a.scalar::<i32>("SELECT id FROM marker").await?, 7);
    let in_b: Option<String> = b
        .scalar("SELECT to_regclass('public.marker')::text")
        .await?;
    assert_eq!(
        in_b, None,
        "a table of one test database is visible in another"
    );

    // Every way to reach the database lands in it.
    for url in [&a.url, &a.unix_url] {
        let client = connect_url(url).await?;
        let row = client
            .query_one("SELECT current_database(), current_user", &[])
            .await?;
        assert_eq!(row.get::<_, String>(0), a.name, "via {url}");
        assert_eq!(row.get::<_, String>(1), support::SUPERUSER, "via {url}");
    }
    let over_socket = connect_url(&a.unix_url).await?;
    let address: Option<String> = over_socket
        .query_one("SELECT inet_client_addr()::text", &[])
        .await?
        .get(0);
    assert_eq!(
        address, None,
        "unix_url must connect over the Unix socket, not TCP"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_cluster_decodes_logically_and_cleanup_drops_slots() -> Result<()> {
    let cluster = support::shared().await;
    let db = cluster.fresh_db("logical").await?;
    for (setting, expected) in [
        ("wal_level", "logical"),
        ("max_wal_senders", "20"),
        ("max_replication_slots", "20"),
        ("logical_decoding_work_mem", "64kB"),
        ("fsync", "off"),
        ("max_connections", "100"),
        ("listen_addresses", "127.0.0.1"),
    ] {
        let value: String = db.scalar(&format!("SHOW {setting}")).await?;
        assert_eq!(value, expected, "setting {setting}");
    }
    let version: String = db.scalar("SHOW server_version_num").await?;
    assert_eq!(version.parse::<u32>()? / 10_000, cluster.major_version());

    // Slot names are cluster-wide: unique per test. Each statement in its own transaction
    // (a slot cannot be created in a transaction that has written).
    let slot = unique_name("harness_slot");
    db.execute("CREATE TABLE t (id int PRIMARY KEY, note text)")
        .await?;
    db.client()
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'test_decoding')",
            &[&slot],
        )
        .await?;
    // The cluster runs with synchronous_commit = off, and decoding reads only flushed WAL:
    // flush this commit before asking for it.
    db.execute("SET synchronous_commit = on; INSERT INTO t VALUES (1, 'one')")
        .await?;
    let rows = db
        .client()
        .query(
            "SELECT data FROM pg_logical_slot_get_changes($1, NULL, NULL)",
            &[&slot],
        )
        .await?;
    let changes: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    assert!(
        changes
            .iter()
            .any(|c| c == "table public.t: INSERT: id[integer]:1 note[text]:'one'"),
        "the insert was not decoded: {changes:?}"
    );

    let name = db.name.clone();
    drop(db);
    let admin = cluster.connect("postgres").await?;
    let slots: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE database = $1",
            &[&name],
        )
        .await?
        .get(0);
    assert_eq!(slots, 0, "dropping the TestDb must drop its slots");
    let databases: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await?
        .get(0);
    assert_eq!(databases, 0, "dropping the TestDb must drop the database");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn cleanup_releases_a_slot_held_by_a_streaming_client() -> Result<()> {
    let cluster = support::shared().await;
    let db = cluster.fresh_db("active_slot").await?;
    db.execute("CREATE TABLE t (id int)").await?;
    let slot = unique_name("held");
    let mut recv = tokio::process::Command::new(cluster.bin("pg_recvlogical"))
        .args([
            "--dbname",
            &db.url,
            "--slot",
            &slot,
            "--create-slot",
            "--start",
            "--file",
            "-",
        ])
        .args(["--status-interval", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("spawn pg_recvlogical")?;
    let mut lines = tokio::io::BufReader::new(recv.stdout.take().context("stdout")?).lines();

    // A slot is active while it is still being created (waiting for a consistent point);
    // only once its WAL sender streams is a new commit sure to reach pg_recvlogical.
    let until = Instant::now() + DEADLINE;
    let streaming = "SELECT count(*) FROM pg_replication_slots s
                     JOIN pg_stat_replication r ON r.pid = s.active_pid
                     WHERE s.slot_name = $1 AND r.state = 'streaming'";
    while db
        .client()
        .query_one(streaming, &[&slot])
        .await?
        .get::<_, i64>(0)
        == 0
    {
        ensure!(
            Instant::now() < until,
            "pg_recvlogical never started streaming"
        );
        tokio::time::sleep(POLL).await;
    }
    db.execute("SET synchronous_commit = on; INSERT INTO t VALUES (42)")
        .await?;
    let insert = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await? {
            if line.contains("INSERT") {
                return Ok(line);
            }
        }
        bail!("pg_recvlogical stopped before the insert arrived")
    })
    .await
    .context("the insert did not arrive within the deadline")??;
    assert_eq!(insert, "table public.t: INSERT: id[integer]:42");

    let name = db.name.clone();
    db.cleanup().await?;
    let admin = cluster.connect("postgres").await?;
    let row = admin
        .query_one(
            "SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $2),
                    (SELECT count(*) FROM pg_database WHERE datname = $1)",
            &[&name, &slot],
        )
        .await?;
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (0, 0),
        "slot or database left"
    );
    recv.kill().await?;
    Ok(())
}

/// The first 14 characters of the stored password: `md5…` or `SCRAM-SHA-256$…`.
async fn stored_password(db: &TestDb, role: &str) -> Result<String> {
    let sql = format!(
        "SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = {}",
        quote_literal(role)
    );
    db.scalar(&sql).await
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_authenticate_with_their_password_encryption() -> Result<()> {
    let cluster = support::shared().await;
    let db = cluster.fresh_db("auth").await?;

    let md5_role = unique_name("md5user");
    cluster
        .create_role(&md5_role, "md5 pass'word", PasswordEncryption::Md5, "")
        .await?;
    let scram_role = unique_name("scramuser");
    cluster
        .create_role(&scram_role, "scram-pw", PasswordEncryption::ScramSha256, "")
        .await?;
    // An md5-stored password outside the md5 group meets the scram-sha-256 rule: refused.
    let outsider = unique_name("md5_outsider");
    db.execute(&format!(
        "SET password_encryption = 'md5'; CREATE ROLE {} LOGIN PASSWORD 'pw'",
        quote_ident(&outsider)
    ))
    .await?;

    assert!(stored_password(&db, &md5_role).await?.starts_with("md5"));
    assert_eq!(stored_password(&db, &scram_role).await?, "SCRAM-SHA-256$");

    for (role, password) in [(&md5_role, "md5 pass'word"), (&scram_role, "scram-pw")] {
        let client = connect_url(&db.url_for(role, password)).await?;
        let user: String = client.query_one("SELECT current_user", &[]).await?.get(0);
        assert_eq!(&user, role);
    }
    let wrong = connect_url(&db.url_for(&md5_role, "not the password")).await;
    assert!(wrong.is_err(), "a wrong md5 password was accepted");
    let refused = connect_url(&db.url_for(&outsider, "pw"))
        .await
        .err()
        .context("accepted")?;
    let message = format!("{:#}", refused);
    assert!(
        message.contains("password authentication failed"),
        "{message}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn own_cluster_with_replica_wal_ssl_and_extra_settings() -> Result<()> {
    let options = ClusterOptions::default()
        .wal_level(WalLevel::Replica)
        .ssl(true)
        .setting("work_mem", "7MB")
        .setting("application_name", "it's quoted");
    let cluster = PgCluster::start_async(options).await?;
    let client = cluster.connect("postgres").await?;
    for (setting, expected) in [
        ("wal_level", "replica"),
        ("work_mem", "7MB"),
        ("ssl", "on"),
        ("logical_decoding_work_mem", "64kB"),
    ] {
        let value: String = client
            .query_one(&format!("SHOW {setting}"), &[])
            .await?
            .get(0);
        assert_eq!(value, expected, "setting {setting}");
    }
    let err = client
        .batch_execute("SELECT pg_create_logical_replication_slot('s', 'pgoutput')")
        .await
        .err()
        .context("a logical slot was created with wal_level = replica")?;
    assert!(format!("{err:?}").contains("wal_level"), "{err:?}");

    // A client trusting the cluster's CA gets a verified TLS connection.
    let ca = cluster.tls_ca_cert().context("ssl cluster without a CA")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let tls_config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut config = cluster.endpoint().config("postgres");
    config.ssl_mode(tokio_postgres::config::SslMode::Require);
    let (tls_client, connection) = config
        .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls_config))
        .await?;
    tokio::spawn(connection);
    let ssl: bool = tls_client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?
        .get(0);
    assert!(ssl, "the connection is not encrypted");

    let (base, pid) = (
        cluster.base_dir().to_owned(),
        cluster.server_pid().context("pid")?,
    );
    drop((client, tls_client));
    cluster.shutdown_async().await?;
    assert!(!base.exists(), "{} left behind", base.display());
    assert_eq!(
        process_running(pid),
        Some(false),
        "postgres {pid} still running"
    );
    Ok(())
}

#[test]
fn own_cluster_avoids_a_taken_port_and_survives_restarts() -> Result<()> {
    // Another process holds the port the cluster tries first: it must move to another one.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0")?;
    let taken = squatter.local_addr()?.port();
    let options = ClusterOptions {
        preferred_port: Some(taken),
        ..ClusterOptions::default()
    };
    let mut cluster = PgCluster::start(options)?;
    let port = cluster.port();
    assert_ne!(
        port, taken,
        "the cluster cannot listen on a port that is taken"
    );
    assert!(
        std::fs::read_to_string(cluster.log_path())?.contains("Address already in use"),
        "the first attempt did not meet the taken port:\n{}",
        cluster.log_tail()
    );
    drop(squatter);

    let first_pid = cluster.server_pid().context("pid")?;
    let url = cluster.url("postgres");
    let query = |sql: &'static str| {
        let url = url.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let client = connect_url(&url).await?;
                let rows = client.simple_query(sql).await?;
                let values: Vec<String> = rows
                    .iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(Into::into),
                        _ => None,
                    })
                    .collect();
                anyhow::Ok(values.join(","))
            })
        })
        .join()
        .expect("query thread panicked")
    };

    query("SET synchronous_commit = on; CREATE TABLE kept (v int); INSERT INTO kept VALUES (1)")?;
    cluster.restart(StopMode::Fast)?;
    assert_eq!(cluster.port(), port, "a restart keeps the port");
    assert_ne!(
        cluster.server_pid(),
        Some(first_pid),
        "a restart runs a new postmaster"
    );
    assert_eq!(process_running(first_pid), Some(false));
    query("SET synchronous_commit = on; INSERT INTO kept VALUES (2)")?;

    cluster.restart(StopMode::Immediate)?;
    assert_eq!(
        query("SELECT string_agg(v::text, ',' ORDER BY v) FROM kept")?,
        "1,2"
    );
    let log = std::fs::read_to_string(cluster.log_path())?;
    assert!(
        log.contains("automatic recovery in progress"),
        "no crash recovery after an immediate stop:\n{}",
        cluster.log_tail()
    );
    Ok(())
}

/// Set (to anything) for the child process of `cluster_dies_with_its_test_process`.
const KILL_SAFETY_ENV: &str = "WALAUDIT_KILL_SAFETY_CHILD";

/// Not a test: the body of the child process that `cluster_dies_with_its_test_process`
/// SIGKILLs. Starts a cluster, reports it, and waits (for the kill, or for its stdin to close).
#[test]
#[ignore = "helper process of cluster_dies_with_its_test_process"]
fn kill_safety_child() -> Result<()> {
    if std::env::var_os(KILL_SAFETY_ENV).is_none() {
        return Ok(());
    }
    let cluster = PgCluster::start(ClusterOptions::default())?;
    let pid = cluster.server_pid().context("pid")?;
    println!(
        "cluster-ready pid={pid} base={}",
        cluster.base_dir().display()
    );
    std::io::stdin().read_to_end(&mut Vec::new())?;
    Ok(())
}

/// Kills the child on every exit path of the test.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn cluster_dies_with_its_test_process() -> Result<()> {
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe()?)
            .args([
                "harness::kill_safety_child",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(KILL_SAFETY_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    let stdout = child.0.stdout.take().context("child stdout")?;
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let ready = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(90))
            .context("the child process never reported its cluster")?;
        if let Some(rest) = line.strip_prefix("cluster-ready pid=") {
            break rest.to_owned();
        }
    };
    let (pid, base) = ready.split_once(" base=").context("malformed report")?;
    let (pid, base): (u32, PathBuf) = (pid.parse()?, base.into());
    assert_eq!(
        process_running(pid),
        Some(true),
        "the child's server is not running"
    );
    assert!(base.join("data").is_dir());

    child.0.kill()?; // SIGKILL: no destructor, no atexit; only the kernel closes its pipes.
    child.0.wait()?;
    let until = Instant::now() + DEADLINE;
    while process_running(pid) != Some(false) || base.exists() {
        ensure!(
            Instant::now() < until,
            "postgres {pid} running: {:?}, {} exists: {}",
            process_running(pid),
            base.display(),
            base.exists()
        );
        std::thread::sleep(POLL);
    }
    Ok(())
}
