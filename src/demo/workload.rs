//! The sample "shop" workload: a small schema and a load generator of attributed transactions.
//!
//! ```text
//!  create_schema: customers, products, orders, order_items (primary keys; items cascade)
//!  seed:          20 customers, 10 products (once, as actor `walaudit-setup`)
//!  run:           COUNT transactions at --rate, each:
//!                   SELECT pg_logical_emit_message(true, 'walaudit', '{"actor":…,"request_id":…}')
//!                   --tx-size ops drawn from the mix: insert an order with 1-3 items,
//!                   update an order's status, delete an order (its items cascade)
//! ```
//!
//! # Invariants
//! * Deterministic: the same seed on the same starting data makes the same transactions (ids
//!   come from sequences on one connection; choices from a seeded SplitMix64).
//! * One connection, one transaction at a time: actors are labels, so concurrent actors never
//!   deadlock each other.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_postgres::{Client, Statement};
use tokio_util::sync::CancellationToken;

/// The shop schema; safe to run again.
pub const SHOP_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS customers (
    id bigserial PRIMARY KEY, name text NOT NULL, email text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS products (
    id bigserial PRIMARY KEY, sku text NOT NULL UNIQUE, name text NOT NULL,
    price numeric(10,2) NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers,
    status text NOT NULL, total numeric(12,2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS order_items (
    order_id bigint NOT NULL REFERENCES orders ON DELETE CASCADE, line int NOT NULL,
    product_id bigint NOT NULL REFERENCES products, qty int NOT NULL,
    price numeric(10,2) NOT NULL, PRIMARY KEY (order_id, line));
";

/// The actor of the seed transaction.
pub const SETUP_ACTOR: &str = "walaudit-setup";
const CUSTOMERS: i64 = 20;
const PRODUCTS: i64 = 10;
const STATUSES: [&str; 4] = ["new", "paid", "shipped", "delivered"];

/// The workload failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error(
        "the sample workload failed while {context}: check the source URL and that the role may create tables and call pg_logical_emit_message"
    )]
    Sql {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(
        "invalid --mix {0:?}: use e.g. insert=60,update=30,delete=10 (weights, at least one above 0)"
    )]
    Mix(String),
    #[error(transparent)]
    Connect(#[from] crate::source::SourceError),
}

fn sql(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> WorkloadError {
    move |source| WorkloadError::Sql { context, source }
}

/// Relative weights of the three operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpMix {
    pub insert: u32,
    pub update: u32,
    pub delete: u32,
}

impl Default for OpMix {
    fn default() -> Self {
        OpMix {
            insert: 60,
            update: 30,
            delete: 10,
        }
    }
}

impl FromStr for OpMix {
    type Err = WorkloadError;

    /// `insert=60,update=30,delete=10`; an operation left out weighs 0.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || WorkloadError::Mix(text.to_owned());
        let mut mix = OpMix {
            insert: 0,
            update: 0,
            delete: 0,
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (op, weight) = part.split_once('=').ok_or_else(bad)?;
            let weight: u32 = weight.trim().parse().map_err(|_| bad())?;
            match op.trim() {
                "insert" => mix.insert = weight,
                "update" => mix.update = weight,
                "delete" => mix.delete = weight,
                _ => return Err(bad()),
            }
        }
        if mix.total() == 0 {
            return Err(bad());
        }
        Ok(mix)
    }
}

impl OpMix {
    fn total(&self) -> u64 {
        u64::from(self.insert) + u64::from(self.update) + u64::from(self.delete)
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct WorkloadOptions {
    /// Transactions to commit (`u64::MAX`: until cancelled).
    pub count: u64,
    /// Transactions per second; 0 = as fast as possible.
    pub rate: f64,
    /// Operations per transaction.
    pub tx_size: u32,
    pub mix: OpMix,
    pub actors: Vec<String>,
    pub seed: u64,
    /// Prefix of the audit-context messages (`source.context_prefix`).
    pub context_prefix: String,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WorkloadStats {
    pub seed: u64,
    /// Workload transactions committed (the seed transaction is not counted).
    pub transactions: u64,
    /// Orders inserted, updated, deleted.
    pub inserts: u64,
    pub updates: u64,
    pub deletes: u64,
    /// Order items inserted.
    pub items: u64,
    /// Transactions per actor.
    pub actors: BTreeMap<String, u64>,
    pub seconds: f64,
}

/// SplitMix64: small, fast, and the same sequence on every platform.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Create the shop tables when missing.
pub async fn create_schema(client: &Client) -> Result<(), WorkloadError> {
    client
        .batch_execute(SHOP_SCHEMA)
        .await
        .map_err(sql("creating the shop schema"))
}

/// Insert the customers and products once (when `customers` is empty), in one transaction
/// attributed to [`SETUP_ACTOR`]. Returns whether it did.
pub async fn seed(client: &mut Client, context_prefix: &str) -> Result<bool, WorkloadError> {
    let have: i64 = client
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .map_err(sql("counting customers"))?
        .get(0);
    if have > 0 {
        return Ok(false);
    }
    let tx = client
        .transaction()
        .await
        .map_err(sql("seeding the shop"))?;
    let context = serde_json::json!({ "actor": SETUP_ACTOR, "request_id": "seed" }).to_string();
    tx.execute(
        "SELECT pg_logical_emit_message(true, $1::text, $2::text)",
        &[&context_prefix, &context],
    )
    .await
    .map_err(sql("emitting the audit context"))?;
    tx.batch_execute(&format!(
        "INSERT INTO customers (name, email)
           SELECT 'Customer ' || g, 'customer' || g || '@example.com'
           FROM generate_series(1, {CUSTOMERS}) g;
         INSERT INTO products (sku, name, price)
           SELECT 'SKU-' || lpad(g::text, 4, '0'), 'Product ' || g, 5 + (g * 7) % 50 + 0.99
           FROM generate_series(1, {PRODUCTS}) g;"
    ))
    .await
    .map_err(sql("seeding the shop"))?;
    tx.commit().await.map_err(sql("seeding the shop"))?;
    Ok(true)
}

struct Prepared {
    emit: Statement,
    insert_order: Statement,
    insert_item: Statement,
    update_order: Statement,
    delete_order: Statement,
}

/// Run the workload (after [`seed`]) until `opts.count` transactions or `cancel`.
pub async fn run(
    client: &mut Client,
    opts: &WorkloadOptions,
    cancel: &CancellationToken,
) -> Result<WorkloadStats, WorkloadError> {
    seed(client, &opts.context_prefix).await?;
    let prepare = |sql_text: &'static str| {
        let client = &*client;
        async move {
            client
                .prepare(sql_text)
                .await
                .map_err(sql("preparing the workload statements"))
        }
    };
    let p = Prepared {
        emit: prepare("SELECT pg_logical_emit_message(true, $1::text, $2::text)").await?,
        insert_order: prepare(
            "INSERT INTO orders (customer_id, status, total) VALUES ($1, 'new', $2::text::numeric) \
             RETURNING id",
        )
        .await?,
        insert_item: prepare(
            "INSERT INTO order_items (order_id, line, product_id, qty, price) \
             SELECT $1, $2, id, $3, price FROM products WHERE id = $4",
        )
        .await?,
        update_order: prepare("UPDATE orders SET status = $2, updated_at = now() WHERE id = $1")
            .await?,
        delete_order: prepare("DELETE FROM orders WHERE id = $1").await?,
    };
    let prices: BTreeMap<i64, i64> = client
        .query(
            "SELECT id, (price * 100)::int8 FROM products ORDER BY id",
            &[],
        )
        .await
        .map_err(sql("reading product prices"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let customers: Vec<i64> = client
        .query("SELECT id FROM customers ORDER BY id", &[])
        .await
        .map_err(sql("reading customers"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut live: Vec<i64> = client
        .query("SELECT id FROM orders ORDER BY id", &[])
        .await
        .map_err(sql("reading orders"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let product_ids: Vec<i64> = prices.keys().copied().collect();

    let mut rng = Rng::new(opts.seed);
    let mut stats = WorkloadStats {
        seed: opts.seed,
        ..WorkloadStats::default()
    };
    let started = Instant::now();
    let actors: Vec<&str> = match opts.actors.is_empty() {
        true => vec!["anonymous"],
        false => opts.actors.iter().map(String::as_str).collect(),
    };
    for n in 0..opts.count {
        if opts.rate > 0.0 {
            let due = started + Duration::from_secs_f64(n as f64 / opts.rate);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep_until(due.into()) => {}
            }
        }
        if cancel.is_cancelled() {
            break;
        }
        let actor = actors[rng.below(actors.len() as u64) as usize];
        let request_id = format!("req-{:x}-{n}", opts.seed);
        let context = serde_json::json!({ "actor": actor, "request_id": request_id }).to_string();
        let tx = client
            .transaction()
            .await
            .map_err(sql("starting a transaction"))?;
        tx.execute(&p.emit, &[&opts.context_prefix, &context])
            .await
            .map_err(sql("emitting the audit context"))?;
        for _ in 0..opts.tx_size.max(1) {
            let roll = rng.below(opts.mix.total());
            let op = if roll < u64::from(opts.mix.insert) || live.is_empty() {
                0
            } else if roll < u64::from(opts.mix.insert) + u64::from(opts.mix.update) {
                1
            } else {
                2
            };
            match op {
                0 => {
                    let customer = customers[rng.below(customers.len() as u64) as usize];
                    let lines = 1 + rng.below(3) as i32;
                    let mut items = Vec::new();
                    let mut total = 0i64;
                    for line in 1..=lines {
                        let product = product_ids[rng.below(product_ids.len() as u64) as usize];
                        let qty = 1 + rng.below(5) as i32;
                        total += prices[&product] * i64::from(qty);
                        items.push((line, product, qty));
                    }
                    let total = format!("{}.{:02}", total / 100, total % 100);
                    let id: i64 = tx
                        .query_one(&p.insert_order, &[&customer, &total])
                        .await
                        .map_err(sql("inserting an order"))?
                        .get(0);
                    for (line, product, qty) in items {
                        tx.execute(&p.insert_item, &[&id, &line, &qty, &product])
                            .await
                            .map_err(sql("inserting an order item"))?;
                        stats.items += 1;
                    }
                    live.push(id);
                    stats.inserts += 1;
                }
                1 => {
                    let id = live[rng.below(live.len() as u64) as usize];
                    let status = STATUSES[1 + rng.below(STATUSES.len() as u64 - 1) as usize];
                    tx.execute(&p.update_order, &[&id, &status])
                        .await
                        .map_err(sql("updating an order"))?;
                    stats.updates += 1;
                }
                _ => {
                    let at = rng.below(live.len() as u64) as usize;
                    let id = live.swap_remove(at);
                    tx.execute(&p.delete_order, &[&id])
                        .await
                        .map_err(sql("deleting an order"))?;
                    stats.deletes += 1;
                }
            }
        }
        tx.commit().await.map_err(sql("committing"))?;
        stats.transactions += 1;
        *stats.actors.entry(actor.to_owned()).or_default() += 1;
    }
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

/// `walaudit emit-sample`: creates the shop schema on `source` when missing and runs the
/// workload of `options` on it until done or `cancel`.
pub async fn emit(
    source: &crate::source::ConnParams,
    options: &WorkloadOptions,
    cancel: &CancellationToken,
) -> Result<WorkloadStats, WorkloadError> {
    let mut client = source.connect_sql().await?;
    create_schema(&client).await?;
    tracing::info!(
        transactions = options.count,
        seed = options.seed,
        "emitting the sample workload"
    );
    let stats = run(&mut client, options, cancel).await?;
    tracing::info!(
        transactions = stats.transactions,
        inserts = stats.inserts,
        updates = stats.updates,
        deletes = stats.deletes,
        seconds = stats.seconds,
        "sample workload finished"
    );
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_and_rejects() {
        let mix: OpMix = "insert=50, update=50".parse().unwrap();
        assert_eq!(
            mix,
            OpMix {
                insert: 50,
                update: 50,
                delete: 0
            }
        );
        for bad in ["", "insert=0", "upsert=3", "insert=x", "insert"] {
            let err = bad.parse::<OpMix>().unwrap_err();
            assert!(err.to_string().contains("insert=60,update=30"), "{err}");
        }
    }

    #[test]
    fn rng_is_deterministic() {
        let a: Vec<u64> = (0..5)
            .map(|_| 0)
            .scan(Rng::new(7), |r, _| Some(r.below(100)))
            .collect();
        let b: Vec<u64> = (0..5)
            .map(|_| 0)
            .scan(Rng::new(7), |r, _| Some(r.below(100)))
            .collect();
        assert_eq!(a, b);
        let c: Vec<u64> = (0..5)
            .map(|_| 0)
            .scan(Rng::new(8), |r, _| Some(r.below(100)))
            .collect();
        assert_ne!(a, c);
    }
}
