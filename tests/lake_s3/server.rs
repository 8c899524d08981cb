//! The test S3 server itself: object_store's S3 client works against it, and its fault mode
//! fails requests at the configured rate.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig, UpdateVersion,
};

use crate::support::s3::{FaultKind, FaultMix, S3Server};

/// No retries, short backoff: every injected fault reaches the test.
fn no_retries() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
            base: 2.0,
        },
        max_retries: 0,
        retry_timeout: Duration::from_secs(5),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn object_store_puts_gets_lists_and_puts_if_absent() {
    let server = S3Server::start("lake-bucket", 1).unwrap();
    let store = server.store().unwrap();
    let key = Path::from("lake/public/t/_delta_log/00000000000000000000.json");

    // Put, get, head.
    let put = store
        .put(&key, PutPayload::from_static(b"{\"v\":0}"))
        .await
        .unwrap();
    let got = store.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], b"{\"v\":0}");
    assert_eq!(store.head(&key).await.unwrap().size, 7);
    assert!(
        server.object_path(key.as_ref()).exists(),
        "objects are files under the bucket"
    );

    // Put-if-absent: a second create of the same key loses, the object is unchanged.
    let create = PutOptions::from(PutMode::Create);
    let again = store
        .put_opts(&key, PutPayload::from_static(b"{\"v\":1}"), create.clone())
        .await;
    assert!(
        matches!(again, Err(object_store::Error::AlreadyExists { .. })),
        "create of an existing key: {again:?}"
    );
    let next = Path::from("lake/public/t/_delta_log/00000000000000000001.json");
    store
        .put_opts(&next, PutPayload::from_static(b"{\"v\":1}"), create)
        .await
        .unwrap();

    // Conditional update by ETag: the current ETag wins, a stale one fails.
    let current = UpdateVersion {
        e_tag: put.e_tag.clone(),
        version: None,
    };
    let updated = store
        .put_opts(
            &key,
            PutPayload::from_static(b"{\"v\":2}"),
            PutMode::Update(current.clone()).into(),
        )
        .await
        .unwrap();
    assert_ne!(updated.e_tag, put.e_tag);
    let stale = store
        .put_opts(
            &key,
            PutPayload::from_static(b"{\"v\":3}"),
            PutMode::Update(current).into(),
        )
        .await;
    assert!(
        matches!(stale, Err(object_store::Error::Precondition { .. })),
        "update with a stale ETag: {stale:?}"
    );
    assert_eq!(
        &store.get(&key).await.unwrap().bytes().await.unwrap()[..],
        b"{\"v\":2}"
    );

    // List (recursive and by delimiter).
    let mut listed: Vec<String> = store
        .list(Some(&Path::from("lake")))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    listed.sort();
    assert_eq!(listed, vec![key.to_string(), next.to_string()]);
    let dirs = store
        .list_with_delimiter(Some(&Path::from("lake/public")))
        .await
        .unwrap();
    assert_eq!(dirs.common_prefixes, vec![Path::from("lake/public/t")]);

    // Wrong credentials are refused.
    let mut wrong = server.storage_options();
    wrong.insert("aws_secret_access_key".into(), "not-the-secret".into());
    let intruder = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(&server.bucket)
        .with_endpoint(&server.endpoint)
        .with_region(&server.region)
        .with_access_key_id(&server.access_key_id)
        .with_secret_access_key("not-the-secret")
        .with_allow_http(true)
        .with_retry(no_retries())
        .build()
        .unwrap();
    assert!(
        intruder.get(&key).await.is_err(),
        "a bad signature is refused"
    );
    assert_eq!(
        server.faults.stats().total_injected(),
        0,
        "no faults while the rate is 0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_fail_requests_at_the_configured_rate_and_can_be_switched_off() {
    let server = S3Server::start("faulty", 42).unwrap();
    let store = server
        .store_with(no_retries(), ClientOptions::new())
        .unwrap();
    let key = Path::from("k");
    store
        .put(&key, PutPayload::from_static(b"x"))
        .await
        .unwrap();

    // 20% of requests: 503 SlowDown or 500 before the operation.
    server.faults.set_mix(FaultMix::ERRORS);
    server.faults.rate.store(200, Ordering::SeqCst);
    server.faults.reset_stats();
    let mut failed = 0;
    for _ in 0..500 {
        if store.head(&key).await.is_err() {
            failed += 1;
        }
    }
    let stats = server.faults.stats();
    assert_eq!(stats.requests, 500);
    assert_eq!(
        stats.total_injected(),
        failed,
        "every injected fault reached the client"
    );
    assert!(
        (60..=140).contains(&failed),
        "{failed} of 500 failed at 20%"
    );
    assert!(stats.injected.contains_key("SlowDown") && stats.injected.contains_key("Internal"));

    // A retrying client (object_store's default: 10 retries) does not see them.
    let retrying = server
        .store_with(
            RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(5),
                    max_backoff: Duration::from_millis(50),
                    base: 2.0,
                },
                ..RetryConfig::default()
            },
            ClientOptions::new(),
        )
        .unwrap();
    for i in 0..50 {
        let path = Path::from(format!("retried/{i}"));
        retrying
            .put(&path, PutPayload::from(vec![i as u8]))
            .await
            .unwrap();
        assert_eq!(
            retrying.get(&path).await.unwrap().bytes().await.unwrap()[..],
            [i as u8]
        );
    }

    // Switched off at runtime: nothing fails.
    server.faults.set_rate(0);
    for _ in 0..100 {
        store.head(&key).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stalls_time_out_and_lost_responses_apply_the_write() {
    let server = S3Server::start("slow", 7).unwrap();
    let client = ClientOptions::new().with_timeout(Duration::from_millis(500));
    let store = server.store_with(no_retries(), client).unwrap();

    // Every request stalls past the client's timeout.
    server.faults.set_mix(FaultMix::only(FaultKind::Stall));
    server.faults.set_stall(Duration::from_secs(3));
    server.faults.set_rate(1000);
    let started = Instant::now();
    let err = store.head(&Path::from("nothing")).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the client timed out: {err}"
    );

    // Delays slow a request down without failing it.
    server.faults.set_mix(FaultMix::only(FaultKind::Delay));
    server.faults.set_delay(Duration::from_millis(200));
    let started = Instant::now();
    store
        .put(&Path::from("delayed"), PutPayload::from_static(b"d"))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));

    // A lost response: the client sees 500, yet the create happened, so a retry of the same
    // create finds the object there.
    server
        .faults
        .set_mix(FaultMix::only(FaultKind::LostResponse));
    let key = Path::from("_delta_log/00000000000000000007.json");
    let create = PutOptions::from(PutMode::Create);
    let first = store
        .put_opts(&key, PutPayload::from_static(b"c"), create.clone())
        .await;
    assert!(first.is_err(), "the response was lost: {first:?}");
    server.faults.set_rate(0);
    let retry = store
        .put_opts(&key, PutPayload::from_static(b"c"), create)
        .await;
    assert!(
        matches!(retry, Err(object_store::Error::AlreadyExists { .. })),
        "{retry:?}"
    );
    assert_eq!(
        &store.get(&key).await.unwrap().bytes().await.unwrap()[..],
        b"c"
    );
}
