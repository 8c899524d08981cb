//! The "orders" workload of the benchmarks: 7 columns, inserts in transactions of 1000 rows,
//! then updates in transactions of 100 rows.

use anyhow::Result;

use super::TestDb;

/// Rows per insert transaction.
pub const INSERTS_PER_TXN: u64 = 1000;
/// Rows per update transaction.
pub const UPDATES_PER_TXN: u64 = 100;

/// `orders(id bigserial pk, customer_id int, amount numeric(12,2), status text, note text,
/// created_at timestamptz, updated_at timestamptz)`.
pub const CREATE_ORDERS: &str = "CREATE TABLE orders (id bigserial PRIMARY KEY, \
     customer_id int NOT NULL, amount numeric(12,2) NOT NULL, status text NOT NULL, note text, \
     created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)";

/// Transactions `fill` commits for this workload size.
pub fn transactions(inserts: u64, updates: u64) -> u64 {
    inserts.div_ceil(INSERTS_PER_TXN) + updates.div_ceil(UPDATES_PER_TXN)
}

/// Insert `inserts` orders, then update the first `updates` of them.
pub async fn fill(db: &TestDb, inserts: u64, updates: u64) -> Result<()> {
    let insert_txns = inserts.div_ceil(INSERTS_PER_TXN);
    db.execute(&format!(
        "DO $$ BEGIN FOR b IN 0..{last} LOOP
           INSERT INTO orders (customer_id, amount, status, note, created_at, updated_at)
           SELECT (g * 7919) % 100000, ((g * 31) % 1000000) / 100.0,
                  (ARRAY['new','paid','shipped','cancelled'])[1 + g % 4],
                  'order note ' || g, now() - g * interval '1 second', now()
           FROM generate_series(b::bigint * {INSERTS_PER_TXN} + 1,
                                least((b + 1) * {INSERTS_PER_TXN}, {inserts})) g;
           COMMIT;
         END LOOP; END $$",
        last = insert_txns - 1
    ))
    .await?;
    if updates == 0 {
        return Ok(());
    }
    let update_txns = updates.div_ceil(UPDATES_PER_TXN);
    db.execute(&format!(
        "DO $$ BEGIN FOR b IN 0..{last} LOOP
           UPDATE orders SET status = 'shipped', amount = amount + 1, updated_at = now()
           WHERE id > b * {UPDATES_PER_TXN} AND id <= least((b + 1) * {UPDATES_PER_TXN}, {updates});
           COMMIT;
         END LOOP; END $$",
        last = update_txns - 1
    ))
    .await
}
