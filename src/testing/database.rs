//! A fresh database per test.
//!
//! Tests share a cluster but never a database: [`TestDb`] creates a uniquely named one and, when
//! dropped, removes it together with its replication slots (a forgotten slot would retain WAL
//! for the whole cluster).
//!
//! # Invariants
//! * Cleanup never panics (a panic in `Drop` during unwinding aborts the test binary); a
//!   failure is printed as a warning and the cluster is thrown away at exit anyway.
//! * Cleanup runs on its own runtime in its own thread, so it works whatever runtime (or
//!   none) the test used, and even while the test's runtime is being torn down.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio_postgres::Client;
use tokio_postgres::types::FromSqlOwned;

use super::cluster::{Endpoint, SUPERUSER, SUPERUSER_PASSWORD};
use super::util::{quote_ident, unique_name};
use crate::cluster::block_on;

/// How long cleanup waits for the database's WAL senders to let go of their slots.
const SLOT_RELEASE_DEADLINE: Duration = Duration::from_secs(15);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// An empty database owned by one test; see the module docs.
pub struct TestDb {
    /// The database name: `<hint>_<pid>_<counter>`.
    pub name: String,
    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/<name>` (scram-sha-256).
    pub url: String,
    /// `postgres://postgres@/<name>?host=<socket dir>&port=PORT` (trust).
    pub unix_url: String,
    endpoint: Endpoint,
    client: Client,
    cleaned: bool,
}

impl TestDb {
    pub(crate) async fn create(endpoint: Endpoint, name_hint: &str) -> Result<TestDb> {
        let name = unique_name(name_hint);
        let admin = endpoint.connect("postgres").await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
            .await
            .with_context(|| format!("create test database {name}"))?;
        let client = endpoint.connect(&name).await?;
        Ok(TestDb {
            url: endpoint.url_for(&name, SUPERUSER, SUPERUSER_PASSWORD),
            unix_url: endpoint.unix_url_for(&name, SUPERUSER),
            name,
            endpoint,
            client,
            cleaned: false,
        })
    }

    /// A superuser connection to this database, made on the test's runtime when the database
    /// was created. Use [`TestDb::connect`] for more (e.g. concurrent transactions).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A new superuser connection to this database (on the current runtime).
    pub async fn connect(&self) -> Result<Client> {
        self.endpoint.connect(&self.name).await
    }

    /// A TCP superuser configuration of this database, to adjust before connecting.
    pub fn config(&self) -> tokio_postgres::Config {
        self.endpoint.config(&self.name)
    }

    /// Where the cluster listens.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// `url` for another role (e.g. one made with `PgCluster::create_role`).
    pub fn url_for(&self, user: &str, password: &str) -> String {
        self.endpoint.url_for(&self.name, user, password)
    }

    /// Runs one or more `;`-separated statements (simple query protocol, like psql -c).
    pub async fn execute(&self, sql: &str) -> Result<()> {
        self.client
            .batch_execute(sql)
            .await
            .with_context(|| format!("in {}: {sql}", self.name))
    }

    /// Creates the logical (pgoutput) slot named after the database, so unique in the shared
    /// cluster. Run it in its own transaction: a slot cannot be created in one that has written.
    pub async fn create_slot(&self) -> Result<()> {
        self.execute(&format!(
            "SELECT pg_create_logical_replication_slot('{}', 'pgoutput')",
            self.name
        ))
        .await
    }

    /// The first column of the only row `sql` returns.
    pub async fn scalar<T: FromSqlOwned>(&self, sql: &str) -> Result<T> {
        let row = self
            .client
            .query_one(sql, &[])
            .await
            .with_context(|| sql.to_owned())?;
        row.try_get(0)
            .with_context(|| format!("first column of {sql}"))
    }

    /// Removes the database now, reporting errors (dropping does the same, printing them).
    pub async fn cleanup(mut self) -> Result<()> {
        self.cleaned = true;
        remove_database(&self.endpoint, &self.name).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        self.cleaned = true;
        let (endpoint, name) = (self.endpoint.clone(), self.name.clone());
        if let Err(err) = block_on(async move { remove_database(&endpoint, &name).await }) {
            eprintln!(
                "warning: cleanup of test database {} failed: {err:#}",
                self.name
            );
        }
    }
}

/// Disconnects everyone from `name`, drops its replication slots, then the database.
async fn remove_database(endpoint: &Endpoint, name: &str) -> Result<()> {
    let admin = endpoint.connect("postgres").await?;
    let until = Instant::now() + SLOT_RELEASE_DEADLINE;
    loop {
        // WAL senders of the database hold its slots: terminating them releases the slots.
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&name],
            )
            .await?;
        // Fails if a client re-activates a slot in between: then try again.
        let dropped = admin
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE database = $1 AND NOT active",
                &[&name],
            )
            .await;
        let left: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE database = $1",
                &[&name],
            )
            .await?
            .get(0);
        if left == 0 {
            break;
        }
        if Instant::now() >= until {
            bail!(
                "{left} replication slot(s) of {name} still in use after \
                 {SLOT_RELEASE_DEADLINE:?} (last drop attempt: {dropped:?})"
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(name)
        ))
        .await
        .with_context(|| format!("drop test database {name}"))
}
