//! Capture benchmark: pgoutput decoding + transaction assembly + Arrow row building, one thread.
//!
//! The input is a real pgoutput stream of the "orders" workload (1M inserts + 200k updates of
//! `orders(id bigserial pk, customer_id int, amount numeric(12,2), status text, note text,
//! created_at timestamptz, updated_at timestamptz)`), recorded once from a throwaway
//! PostgreSQL cluster through walaudit's own replication client and cached under
//! `target/walaudit-bench/`. Each run reads the recording in 1 MiB blocks, splits frames off
//! zero-copy as the network reader does, and drives the same code `walaudit` runs: parse,
//! assemble, hand out committed chunks, append to per-table Arrow builders (batches of 8192).
//!
//! Figures printed: changes/s for the whole stream (median of 3) against the 1,000,000/s
//! target, and peak heap for a quarter and for all of the stream (a counting allocator): the
//! ratio shows whether memory depends on stream length.
//!
//! `WALAUDIT_BENCH_ROWS` scales the workload (default 1000000 inserts; updates are a fifth).
#![allow(unsafe_code)] // the counting allocator below, for peak-heap figures only

use walaudit::testing as support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use walaudit::Lsn;
use walaudit::capture::{Assembler, AssemblerConfig, Output};
use walaudit::decode::pgoutput;
use walaudit::lake::batch::ChangeBatchBuilder;
use walaudit::source::{ConnParams, Frame, ReplicationClient};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grow = new_size - layout.size();
                let now = CURRENT.fetch_add(grow, Ordering::Relaxed) + grow;
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const TARGET_CHANGES_PER_SEC: f64 = 1_000_000.0;

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let inserts: u64 = std::env::var("WALAUDIT_BENCH_ROWS")
        .ok()
        .map(|v| v.parse().context("WALAUDIT_BENCH_ROWS must be a number"))
        .transpose()?
        .unwrap_or(1_000_000);
    let updates = inserts / 5;
    let path = recording(inserts, updates)?;
    let (messages, bytes) = count_records(&path)?;
    println!("walaudit capture benchmark: decode + assembly + Arrow row building, one thread");
    println!(
        "stream: orders workload, {inserts} inserts + {updates} updates, recorded from a real \
         server (pgoutput v2): {messages} messages, {:.1} MiB ({})",
        bytes as f64 / (1 << 20) as f64,
        path.display()
    );
    println!(
        "{:<8} {:>10} {:>9} {:>12} {:>12}",
        "stream", "changes", "seconds", "changes/s", "peak heap"
    );
    let quarter = run(&path, messages / 4)?;
    quarter.print("25%");
    let mut full: Vec<Run> = (0..3)
        .map(|_| run(&path, messages))
        .collect::<Result<_>>()?;
    full.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    for r in &full {
        r.print("100%");
    }
    let median = &full[1];
    assert_eq!(
        median.changes,
        inserts + updates,
        "every change of the workload was built"
    );
    let rate = median.changes as f64 / median.seconds;
    println!(
        "result: {:.0} changes/s (median of 3) = {:.2} x the 1,000,000 changes/s target",
        rate,
        rate / TARGET_CHANGES_PER_SEC
    );
    println!(
        "result: peak heap {:.1} MiB for 25% of the stream, {:.1} MiB for all of it (ratio {:.2})",
        mib(quarter.peak_heap),
        mib(median.peak_heap),
        median.peak_heap as f64 / quarter.peak_heap as f64
    );
    Ok(())
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

struct Run {
    changes: u64,
    seconds: f64,
    peak_heap: usize,
}

impl Run {
    fn print(&self, label: &str) {
        println!(
            "{:<8} {:>10} {:>9.3} {:>12.0} {:>10.1}MiB",
            label,
            self.changes,
            self.seconds,
            self.changes as f64 / self.seconds,
            mib(self.peak_heap)
        );
    }
}

/// Decode, assemble and build Arrow batches for the first `limit` messages of the recording.
fn run(path: &Path, limit: u64) -> Result<Run> {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let mut assembler = Assembler::new(AssemblerConfig {
        max_memory: 128 << 20,
        spill_dir: None,
        chunk_changes: 8192,
        context_prefix: "walaudit".into(),
    });
    let mut builders: HashMap<u32, ChangeBatchBuilder> = HashMap::new();
    let mut frames = FrameReader::open(path)?;
    let (mut changes, mut rows_built) = (0u64, 0u64);
    let start = Instant::now();
    for _ in 0..limit {
        let Some(payload) = frames.next()? else { break };
        let msg = pgoutput::parse(payload, assembler.in_stream())?;
        let Some(Output::Committed(txn)) = assembler.handle(msg)? else {
            continue;
        };
        let mut txn = *txn;
        while let Some(chunk) = txn.changes.next_chunk()? {
            for change in &chunk {
                let builder = match builders.get_mut(&change.table.oid) {
                    Some(b) => b,
                    None => builders
                        .entry(change.table.oid)
                        .or_insert(ChangeBatchBuilder::new(change.table.clone(), 8192)?),
                };
                builder.append(&txn.meta, change);
                if builder.len() >= 8192 {
                    rows_built += std::hint::black_box(builder.finish()).num_rows() as u64;
                }
            }
            changes += chunk.len() as u64;
        }
    }
    for builder in builders.values_mut() {
        rows_built += std::hint::black_box(builder.finish()).num_rows() as u64;
    }
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(rows_built, changes, "every change became an Arrow row");
    Ok(Run {
        changes,
        seconds,
        peak_heap: PEAK.load(Ordering::Relaxed) - base,
    })
}

/// Reads `[u32 length][payload]` records in 1 MiB blocks, splitting payloads off zero-copy.
struct FrameReader {
    file: File,
    buf: BytesMut,
    eof: bool,
}

impl FrameReader {
    fn open(path: &Path) -> Result<FrameReader> {
        Ok(FrameReader {
            file: File::open(path)?,
            buf: BytesMut::new(),
            eof: false,
        })
    }

    fn next(&mut self) -> Result<Option<Bytes>> {
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_be_bytes(self.buf[..4].try_into()?) as usize;
                if self.buf.len() >= 4 + len {
                    self.buf.advance(4);
                    return Ok(Some(self.buf.split_to(len).freeze()));
                }
            }
            if self.eof {
                return Ok(None);
            }
            let mut block = [0u8; 64 * 1024];
            self.buf.reserve(1 << 20);
            for _ in 0..16 {
                let n = self.file.read(&mut block)?;
                if n == 0 {
                    self.eof = true;
                    break;
                }
                self.buf.extend_from_slice(&block[..n]);
            }
        }
    }
}

fn count_records(path: &Path) -> Result<(u64, u64)> {
    let mut reader = FrameReader::open(path)?;
    let (mut n, mut bytes) = (0, 0);
    while let Some(p) = reader.next()? {
        n += 1;
        bytes += p.len() as u64 + 4;
    }
    Ok((n, bytes))
}

/// The cached recording for this workload size, made on first use.
fn recording(inserts: u64, updates: u64) -> Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/walaudit-bench");
    let path = dir.join(format!("orders-{inserts}-{updates}.pgoutput"));
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir)?;
    eprintln!("recording the orders workload ({inserts} inserts, {updates} updates) once...");
    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new()?;
    let partial = path.with_extension("partial");
    runtime.block_on(record(&partial, inserts, updates))?;
    std::fs::rename(&partial, &path)?;
    eprintln!("recorded in {:.1}s", started.elapsed().as_secs_f64());
    Ok(path)
}

async fn record(path: &Path, inserts: u64, updates: u64) -> Result<()> {
    // Default logical_decoding_work_mem: the transactions arrive whole, as in production.
    let options = support::ClusterOptions::default().setting("logical_decoding_work_mem", "64MB");
    let cluster = support::PgCluster::start_async(options).await?;
    let db = cluster.fresh_db("bench").await?;
    db.execute(support::orders::CREATE_ORDERS).await?;
    db.execute("CREATE PUBLICATION walaudit FOR TABLE orders")
        .await?;
    db.execute("SELECT pg_create_logical_replication_slot('bench', 'pgoutput')")
        .await?;
    support::orders::fill(&db, inserts, updates).await?;
    let expected_commits = support::orders::transactions(inserts, updates);

    let params = ConnParams::parse(&db.url)?;
    let client = ReplicationClient::connect(&params).await?;
    let options = [
        ("proto_version".to_owned(), "2".to_owned()),
        ("publication_names".to_owned(), "\"walaudit\"".to_owned()),
        ("messages".to_owned(), "true".to_owned()),
    ];
    let mut stream = client
        .start_replication("bench", Lsn::ZERO, &options)
        .await?;
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut commits = 0;
    while commits < expected_commits {
        match stream
            .next_frame()
            .await?
            .context("the server ended the stream early")?
        {
            Frame::XLogData { data, .. } => {
                if data.first() == Some(&b'C') {
                    commits += 1;
                }
                out.write_all(&(data.len() as u32).to_be_bytes())?;
                out.write_all(&data)?;
            }
            Frame::Keepalive {
                wal_end,
                reply_requested: true,
                ..
            } => {
                stream
                    .send_status(wal_end, Lsn::ZERO, Lsn::ZERO, false)
                    .await?;
            }
            Frame::Keepalive { .. } => {}
        }
    }
    out.flush()?;
    drop(stream);
    drop(db);
    cluster.shutdown_async().await?;
    Ok(())
}
