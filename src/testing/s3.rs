//! An in-process S3-compatible server for tests, with deterministic fault injection.
//!
//! [`S3Server::start`] serves `s3s-fs` (objects are plain files under a temp dir) over HTTP on
//! `127.0.0.1:<free port>` with static SigV4 credentials, path-style, on a runtime of its own
//! (a dedicated thread), so the server keeps answering whatever the test's runtime is doing.
//!
//! ```text
//!  client (object_store / walaudit)
//!        │ HTTP, SigV4
//!        ▼
//!  hyper (auto h1/h2) ──► s3s::S3Service (auth) ──► FaultyS3 ──► s3s_fs::FileSystem ──► temp dir
//!                                                      │
//!                                        Faults: per-mille rate (runtime switch), seed, mix
//! ```
//!
//! # Faults
//! [`Faults`] decides, for the n-th request the server receives, whether it fails, from a hash
//! of `(seed, n)` only: the same seed gives the same sequence of decisions (which request gets
//! which decision depends on the client's request order). The rate is an `Arc<AtomicU32>` in
//! per-mille, switchable while the server runs. A failing request gets one [`FaultKind`],
//! chosen by the weights of a [`FaultMix`]:
//! * `SlowDown`: HTTP 503 `SlowDown` before the operation runs;
//! * `Internal`: HTTP 500 `InternalError` before the operation runs;
//! * `Delay`: the operation runs after [`Faults::set_delay`] (default 300 ms): succeeds, late;
//! * `Stall`: the server holds the request for [`Faults::set_stall`] (default 5 s) and then
//!   fails it with 503; a client with a shorter timeout sees a timeout;
//! * `LostResponse`: the operation **runs**, then the client gets HTTP 500: the nastiest
//!   case for conditional writes (a retry of a create that did happen sees 412/409).
//!
//! # Invariants
//! * `s3s-fs` is not atomic under concurrent conditional puts: tests that race
//!   writers against each other belong on `object_store::memory::InMemory`, not here.
//! * Dropping the [`S3Server`] stops it and removes its directory; nothing outlives the test.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use s3s_fs::FileSystem;
use tokio::sync::oneshot;

/// The static credentials every test server accepts.
pub const ACCESS_KEY_ID: &str = "walaudit-test-access-key";
pub const SECRET_ACCESS_KEY: &str = "walaudit-test-secret-key";
/// Any region works (s3s checks the signature with the region the client signed for).
pub const REGION: &str = "us-east-1";

/// A running test S3 server; stopped and its files removed on drop.
pub struct S3Server {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The one bucket created at start.
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
    /// Fault injection, off (rate 0) at start.
    pub faults: Faults,
    dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl S3Server {
    /// Start a server with bucket `bucket` on a free loopback port; faults off, seed `seed`.
    pub fn start(bucket: &str, seed: u64) -> Result<S3Server> {
        let dir = tempfile::Builder::new()
            .prefix("walaudit-s3-")
            .tempdir()
            .context("create the S3 server's directory")?;
        std::fs::create_dir(dir.path().join(bucket)).context("create the bucket directory")?;
        let faults = Faults::new(seed);
        let fs = FileSystem::new(dir.path())
            .map_err(|e| anyhow::anyhow!("open the s3s-fs root: {e:?}"))?;
        let service = {
            let mut builder = S3ServiceBuilder::new(FaultyS3 {
                inner: fs,
                faults: faults.clone(),
            });
            builder.set_auth(SimpleAuth::from_single(ACCESS_KEY_ID, SECRET_ACCESS_KEY));
            builder.build()
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let (shutdown, mut stop) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        let thread = std::thread::Builder::new()
            .name(format!("s3-test-server-{port}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(err) => {
                        let _ = ready_tx.send(Err(err.into()));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(err) => {
                            let _ = ready_tx.send(Err(err.into()));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    loop {
                        tokio::select! {
                            biased;
                            // Stop first: a test that dropped the server wants it gone.
                            _ = &mut stop => break,
                            accepted = listener.accept() => {
                                let Ok((socket, _)) = accepted else { continue };
                                let _ = socket.set_nodelay(true);
                                let service = service.clone();
                                tokio::spawn(async move {
                                    let builder = ConnBuilder::new(TokioExecutor::new());
                                    let _ = builder
                                        .serve_connection(TokioIo::new(socket), service)
                                        .await;
                                });
                            }
                        }
                    }
                });
                // Open connections (and stalled requests) are dropped with the runtime.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .context("spawn the S3 server thread")?;
        ready_rx
            .recv()
            .context("the S3 server thread died at start")??;
        Ok(S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: bucket.to_owned(),
            access_key_id: ACCESS_KEY_ID.to_owned(),
            secret_access_key: SECRET_ACCESS_KEY.to_owned(),
            region: REGION.to_owned(),
            faults,
            dir,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The directory holding the buckets: `<root>/<bucket>/<key>` is the object `key`.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Where the object `key` of the bucket lives on disk.
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.dir.path().join(&self.bucket).join(key)
    }

    /// `s3://<bucket>/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{}", self.bucket, prefix.trim_start_matches('/'))
    }

    /// object_store / delta-rs storage options (`AmazonS3ConfigKey` names) for this server.
    pub fn storage_options(&self) -> HashMap<String, String> {
        [
            ("aws_endpoint", self.endpoint.as_str()),
            ("aws_access_key_id", &self.access_key_id),
            ("aws_secret_access_key", &self.secret_access_key),
            ("aws_region", &self.region),
            ("aws_allow_http", "true"),
            ("aws_virtual_hosted_style_request", "false"),
            ("aws_conditional_put", "etag"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// The AWS_* environment variables that point an AWS SDK or object_store at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", &self.access_key_id),
            ("AWS_SECRET_ACCESS_KEY", &self.secret_access_key),
            ("AWS_REGION", &self.region),
            ("AWS_DEFAULT_REGION", &self.region),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// An `object_store` client for the bucket, with conditional puts by ETag.
    pub fn store(&self) -> Result<object_store::aws::AmazonS3> {
        self.store_with(
            object_store::RetryConfig::default(),
            object_store::ClientOptions::new(),
        )
    }

    /// Like [`S3Server::store`], with explicit retry and HTTP client options.
    pub fn store_with(
        &self,
        retry: object_store::RetryConfig,
        client: object_store::ClientOptions,
    ) -> Result<object_store::aws::AmazonS3> {
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_bucket_name(&self.bucket)
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(&self.secret_access_key)
            .with_region(&self.region)
            .with_virtual_hosted_style_request(false)
            .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
            .with_client_options(client.with_allow_http(true))
            .with_retry(retry)
            .build()
            .context("build the object_store client for the test S3 server")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What a failing request gets; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    SlowDown,
    Internal,
    Delay,
    Stall,
    LostResponse,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [
        FaultKind::SlowDown,
        FaultKind::Internal,
        FaultKind::Delay,
        FaultKind::Stall,
        FaultKind::LostResponse,
    ];
}

/// Relative weights of the fault kinds among failing requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultMix {
    pub slow_down: u32,
    pub internal: u32,
    pub delay: u32,
    pub stall: u32,
    pub lost_response: u32,
}

impl FaultMix {
    /// Errors the client can always retry safely: 503 SlowDown and 500 before the operation.
    pub const ERRORS: FaultMix = FaultMix {
        slow_down: 1,
        internal: 1,
        delay: 0,
        stall: 0,
        lost_response: 0,
    };
    /// Only one kind.
    pub fn only(kind: FaultKind) -> FaultMix {
        let mut mix = FaultMix {
            slow_down: 0,
            internal: 0,
            delay: 0,
            stall: 0,
            lost_response: 0,
        };
        *mix.weight_mut(kind) = 1;
        mix
    }

    fn weight_mut(&mut self, kind: FaultKind) -> &mut u32 {
        match kind {
            FaultKind::SlowDown => &mut self.slow_down,
            FaultKind::Internal => &mut self.internal,
            FaultKind::Delay => &mut self.delay,
            FaultKind::Stall => &mut self.stall,
            FaultKind::LostResponse => &mut self.lost_response,
        }
    }

    fn weight(mut self, kind: FaultKind) -> u32 {
        *self.weight_mut(kind)
    }

    fn pick(self, roll: u64) -> Option<FaultKind> {
        let total: u64 = FaultKind::ALL
            .iter()
            .map(|k| u64::from(self.weight(*k)))
            .sum();
        if total == 0 {
            return None;
        }
        let mut point = roll % total;
        for kind in FaultKind::ALL {
            let w = u64::from(self.weight(kind));
            if point < w {
                return Some(kind);
            }
            point -= w;
        }
        None
    }
}

impl Default for FaultMix {
    fn default() -> Self {
        FaultMix::ERRORS
    }
}

/// The fault switchboard of one server; cheap to clone, shared with the server.
#[derive(Clone)]
pub struct Faults {
    /// Share of requests that fail, in per-mille (0 = off, 1000 = every request).
    pub rate: Arc<AtomicU32>,
    seed: u64,
    state: Arc<FaultState>,
}

struct FaultState {
    requests: AtomicU64,
    injected: [AtomicU64; 5],
    delay_ms: AtomicU64,
    stall_ms: AtomicU64,
    // std Mutex: only copied out, never held across an await.
    mix: Mutex<FaultMix>,
    // Operation names to fault; empty = all.
    only_ops: Mutex<Vec<&'static str>>,
}

/// Counters since start (or the last [`Faults::reset_stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    pub requests: u64,
    pub injected: HashMap<String, u64>,
}

impl FaultStats {
    pub fn total_injected(&self) -> u64 {
        self.injected.values().sum()
    }
}

impl Faults {
    pub fn new(seed: u64) -> Faults {
        Faults {
            rate: Arc::new(AtomicU32::new(0)),
            seed,
            state: Arc::new(FaultState {
                requests: AtomicU64::new(0),
                injected: Default::default(),
                delay_ms: AtomicU64::new(300),
                stall_ms: AtomicU64::new(5_000),
                mix: Mutex::new(FaultMix::default()),
                only_ops: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Fail `per_mille` / 1000 of the requests from now on.
    pub fn set_rate(&self, per_mille: u32) {
        self.rate.store(per_mille.min(1000), Ordering::SeqCst);
    }

    pub fn set_mix(&self, mix: FaultMix) {
        *self.state.mix.lock().unwrap() = mix;
    }

    /// Fault only these operations (s3s names, e.g. `put_object`); empty = every operation.
    pub fn set_only_ops(&self, ops: &[&'static str]) {
        *self.state.only_ops.lock().unwrap() = ops.to_vec();
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn set_stall(&self, stall: Duration) {
        self.state
            .stall_ms
            .store(stall.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn stats(&self) -> FaultStats {
        FaultStats {
            requests: self.state.requests.load(Ordering::SeqCst),
            injected: FaultKind::ALL
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    (
                        format!("{k:?}"),
                        self.state.injected[i].load(Ordering::SeqCst),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect(),
        }
    }

    pub fn reset_stats(&self) {
        self.state.requests.store(0, Ordering::SeqCst);
        for counter in &self.state.injected {
            counter.store(0, Ordering::SeqCst);
        }
    }

    /// The decision for the next request of operation `op`.
    fn decide(&self, op: &'static str) -> Option<FaultKind> {
        let n = self.state.requests.fetch_add(1, Ordering::SeqCst);
        let rate = u64::from(self.rate.load(Ordering::SeqCst));
        if rate == 0 {
            return None;
        }
        {
            let only = self.state.only_ops.lock().unwrap();
            if !only.is_empty() && !only.contains(&op) {
                return None;
            }
        }
        let roll = splitmix64(self.seed ^ splitmix64(n));
        if roll % 1000 >= rate {
            return None;
        }
        let mix = *self.state.mix.lock().unwrap();
        let kind = mix.pick(roll >> 32)?;
        let index = FaultKind::ALL.iter().position(|k| *k == kind).unwrap();
        self.state.injected[index].fetch_add(1, Ordering::SeqCst);
        Some(kind)
    }

    /// Runs `op` under the decision for this request.
    async fn apply<T>(
        &self,
        name: &'static str,
        op: impl Future<Output = S3Result<T>>,
    ) -> S3Result<T> {
        match self.decide(name) {
            None => op.await,
            Some(FaultKind::SlowDown) => Err(S3Error::with_message(
                S3ErrorCode::SlowDown,
                "injected fault: slow down",
            )),
            Some(FaultKind::Internal) => Err(S3Error::with_message(
                S3ErrorCode::InternalError,
                "injected fault: internal error before the operation",
            )),
            Some(FaultKind::Delay) => {
                let ms = self.state.delay_ms.load(Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                op.await
            }
            Some(FaultKind::Stall) => {
                let ms = self.state.stall_ms.load(Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Err(S3Error::with_message(
                    S3ErrorCode::SlowDown,
                    "injected fault: stalled",
                ))
            }
            Some(FaultKind::LostResponse) => {
                let _applied = op.await;
                Err(S3Error::with_message(
                    S3ErrorCode::InternalError,
                    "injected fault: the operation ran, its response was lost",
                ))
            }
        }
    }
}

/// SplitMix64: a fast, well-mixed hash of a counter (deterministic fault decisions).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `s3s_fs::FileSystem` with every request passed through [`Faults`].
struct FaultyS3 {
    inner: FileSystem,
    faults: Faults,
}

type OpFuture<'a, T> = Pin<Box<dyn Future<Output = S3Result<S3Response<T>>> + Send + 'a>>;

// `S3` is an `async_trait` trait; this is the signature the macro generates (the crate is not
// a dependency of ours), for each operation `FileSystem` implements.
macro_rules! faulty_ops {
    ($($op:ident: $input:ty => $output:ty;)*) => {
        impl S3 for FaultyS3 {
            $(
                fn $op<'life0, 'async_trait>(
                    &'life0 self,
                    req: S3Request<$input>,
                ) -> OpFuture<'async_trait, $output>
                where
                    'life0: 'async_trait,
                    Self: 'async_trait,
                {
                    Box::pin(self.faults.apply(stringify!($op), self.inner.$op(req)))
                }
            )*
        }
    };
}

faulty_ops! {
    abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput;
    complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput;
    copy_object: CopyObjectInput => CopyObjectOutput;
    create_bucket: CreateBucketInput => CreateBucketOutput;
    create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput;
    delete_bucket: DeleteBucketInput => DeleteBucketOutput;
    delete_object: DeleteObjectInput => DeleteObjectOutput;
    delete_objects: DeleteObjectsInput => DeleteObjectsOutput;
    get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput;
    get_object: GetObjectInput => GetObjectOutput;
    head_bucket: HeadBucketInput => HeadBucketOutput;
    head_object: HeadObjectInput => HeadObjectOutput;
    list_buckets: ListBucketsInput => ListBucketsOutput;
    list_objects: ListObjectsInput => ListObjectsOutput;
    list_objects_v2: ListObjectsV2Input => ListObjectsV2Output;
    list_parts: ListPartsInput => ListPartsOutput;
    put_object: PutObjectInput => PutObjectOutput;
    upload_part: UploadPartInput => UploadPartOutput;
    upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_depend_on_the_seed_only() {
        let run = |seed| {
            let faults = Faults::new(seed);
            faults.set_rate(200);
            (0..1000)
                .map(|_| faults.decide("put_object"))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let failed = run(7).iter().filter(|d| d.is_some()).count();
        assert!((150..=250).contains(&failed), "{failed} of 1000 at 20%");
    }
}
