//! TLS: a client that trusts the CA succeeds; one that does not fails the handshake; plain
//! HTTP on an address other than loopback is refused at start.

use walaudit::api::auth::Role;

use super::{config, tokens};

#[tokio::test(flavor = "multi_thread")]
async fn https_with_the_ca_and_no_plain_http_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) =
        walaudit::testing::tls::api_certificates(&dir.path().join("tls")).unwrap();
    let lake = tempfile::tempdir().unwrap();
    let (tokens, entries) = tokens();
    let mut cfg = config(lake.path(), entries);
    cfg.api.tls_cert = Some(cert);
    cfg.api.tls_key = Some(key);
    let cancel = tokio_util::sync::CancellationToken::new();
    let (addr, _status, serving) = crate::checks::serve(cfg.clone(), cancel.clone()).await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    let trusting = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/tables", addr.port());
    let ok = trusting
        .get(&url)
        .bearer_auth(&tokens[&Role::Viewer])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "[]");
    let stranger = reqwest::Client::new().get(&url).send().await;
    assert!(stranger.is_err(), "a client without the CA must fail");
    // Plain HTTP to the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    cancel.cancel();
    serving.await.unwrap().unwrap();

    // No TLS and a non-loopback address: refused at start, with the fix.
    let mut plain_cfg = cfg;
    plain_cfg.api.tls_cert = None;
    plain_cfg.api.tls_key = None;
    let err = walaudit::engine::serve(
        &plain_cfg,
        "0.0.0.0:0".parse().unwrap(),
        tokio_util::sync::CancellationToken::new(),
        |_, _| {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("api.allow_plain_http"), "{err}");
}
