//! Connecting: SCRAM, md5 and trust, TCP and Unix socket, TLS per sslmode.

use anyhow::Result;
use walaudit::source::{ConnParams, ReplicationClient};

use crate::support::{ClusterOptions, PasswordEncryption, PgCluster, shared, unique_name};

/// A replication connection (IDENTIFY_SYSTEM) and an SQL connection; returns whether the
/// replication connection used TLS and what the SQL session's time zone is.
async fn connect_both(url: &str) -> Result<(bool, String, String)> {
    let params = ConnParams::parse(url)?;
    let mut repl = ReplicationClient::connect(&params).await?;
    let identity = repl.identify_system().await?;
    assert!(!identity.xlogpos.is_zero());
    let tls = repl.is_tls();
    repl.close().await;
    let sql = params.connect_sql().await?;
    let zone: String = sql.query_one("SHOW TimeZone", &[]).await?.get(0);
    let ssl: bool = sql
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?
        .get(0);
    Ok((tls, zone, if ssl { "ssl".into() } else { "plain".into() }))
}

#[tokio::test(flavor = "multi_thread")]
async fn scram_md5_and_unix_socket() {
    let cluster = shared().await;
    let db = cluster.fresh_db("auth").await.unwrap();
    // SCRAM over TCP (the default test URL).
    let (tls, zone, _) = connect_both(&db.url).await.unwrap();
    assert_eq!((tls, zone.as_str()), (false, "UTC"));
    // trust over the Unix socket.
    let (tls, _, _) = connect_both(&db.unix_url).await.unwrap();
    assert!(!tls);
    // md5 for a role whose password is stored as md5, with a password needing URL escapes.
    let role = unique_name("md5r");
    let password = "p@ss:w/rd %";
    cluster
        .create_role(&role, password, PasswordEncryption::Md5, "REPLICATION")
        .await
        .unwrap();
    let url = db.url_for(&role, password);
    connect_both(&url).await.unwrap();
    let wrong = db.url_for(&role, "nope");
    let err = connect_both(&wrong).await.unwrap_err().to_string();
    assert!(err.contains("password"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_modes() {
    let cluster = PgCluster::start_async(ClusterOptions::default().ssl(true))
        .await
        .unwrap();
    let db = cluster.fresh_db("tls").await.unwrap();
    let ca = cluster
        .tls_ca_cert()
        .expect("the cluster has a CA")
        .to_str()
        .unwrap()
        .to_owned();
    let with = |q: &str| format!("{}?{q}", db.url);
    let (tls, _, ssl) = connect_both(&with("sslmode=require")).await.unwrap();
    assert_eq!((tls, ssl.as_str()), (true, "ssl"));
    let (tls, _, ssl) = connect_both(&with("sslmode=prefer")).await.unwrap();
    assert_eq!((tls, ssl.as_str()), (true, "ssl"));
    let (tls, _, ssl) = connect_both(&with("sslmode=disable")).await.unwrap();
    assert_eq!((tls, ssl.as_str()), (false, "plain"));
    let verified = with(&format!("sslmode=verify-full&sslrootcert={ca}"));
    let (tls, _, ssl) = connect_both(&verified).await.unwrap();
    assert_eq!((tls, ssl.as_str()), (true, "ssl"));
    // verify-full without the CA: the certificate is not trusted, and the error says so.
    let err = connect_both(&with("sslmode=verify-full"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    drop(db);
    cluster.shutdown_async().await.unwrap();
}
