//! `Fetcher` against a real HTTP server on 127.0.0.1, port 0. Nothing here leaves the
//! machine: every refused URL is refused before a connection is made.

#![expect(
    clippy::unwrap_used,
    reason = "the upstream and policy helpers should fail the test loudly"
)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Router, serve};
use bytes::Bytes;
use sluice_fetch::{FetchError, FetchPolicy, Fetcher};
use tokio::task::JoinHandle;

/// The test upstream: counts the requests it is sent, stops when dropped.
struct Upstream {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    async fn start() -> Upstream {
        let hits = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route("/text", get(|| async { "hello" }))
            .route("/json", get(json))
            .route(
                "/no-type",
                get(|| async { Response::new(Body::from("untyped")) }),
            )
            .route("/binary", get(binary))
            .route("/sized/{n}", get(sized))
            .route("/chunked/{n}", get(chunked))
            .route("/redirect", get(redirect))
            .route("/loop/{n}", get(redirect_loop))
            .route("/hang", get(hang))
            .layer(middleware::from_fn_with_state(Arc::clone(&hits), count));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            serve(listener, app).await.unwrap();
        });
        Upstream { addr, hits, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn count(State(hits): State<Arc<AtomicUsize>>, request: Request, next: Next) -> Response {
    hits.fetch_add(1, Ordering::SeqCst);
    next.run(request).await
}

async fn json() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "application/json; charset=utf-8")],
        r#"{"ok":true}"#,
    )
}

async fn binary() -> impl IntoResponse {
    ([(CONTENT_TYPE, "image/png")], b"\x89PNG\r\n\x1a\n".to_vec())
}

/// `n` bytes with a `Content-Length`.
async fn sized(Path(n): Path<usize>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/plain")], "x".repeat(n))
}

/// `n` bytes in 100-byte chunks, chunked transfer encoding: no length declared.
async fn chunked(Path(n): Path<usize>) -> impl IntoResponse {
    let chunks: Vec<Result<Bytes, Infallible>> = (0..n)
        .step_by(100)
        .map(|start| Ok(Bytes::from("y".repeat((n - start).min(100)))))
        .collect();
    let body = Body::from_stream(futures_util::stream::iter(chunks));
    ([(CONTENT_TYPE, "text/plain")], body)
}

/// 302 to `?to=`.
async fn redirect(Query(query): Query<HashMap<String, String>>) -> Redirect {
    Redirect::to(&query["to"])
}

/// Redirects forever, one step further each time.
async fn redirect_loop(Path(n): Path<u32>) -> Redirect {
    Redirect::to(&format!("/loop/{}", n + 1))
}

async fn hang() -> &'static str {
    std::future::pending::<()>().await;
    "never"
}

fn encode(url: &str) -> String {
    url::form_urlencoded::byte_serialize(url.as_bytes()).collect()
}

fn policy(hosts: &[&str], networks: &[&str]) -> FetchPolicy {
    FetchPolicy {
        allow_hosts: hosts.iter().map(|h| h.to_string()).collect(),
        allow_networks: networks.iter().map(|n| n.parse().unwrap()).collect(),
        max_bytes: 1000,
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        max_redirects: 3,
    }
}

/// The upstream reachable through `allow_networks` (how a test reaches 127.0.0.1).
fn local_fetcher() -> Fetcher {
    Fetcher::new(policy(&["example.com"], &["127.0.0.1/32"])).unwrap()
}

async fn error_code(fetcher: &Fetcher, url: &str) -> &'static str {
    match fetcher.get(url).await {
        Ok(fetched) => panic!("{url} should have been refused, got {fetched:?}"),
        Err(e) => e.code(),
    }
}

#[tokio::test]
async fn loopback_literals_in_every_spelling_are_refused() {
    let fetcher = Fetcher::new(policy(&["example.com"], &[])).unwrap();
    for url in [
        "http://127.0.0.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://0.0.0.0/",
        "http://[::]/",
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00:ec2::254]/",
        "http://10.0.0.1/",
    ] {
        assert_eq!(error_code(&fetcher, url).await, "address_blocked", "{url}");
    }
}

#[tokio::test]
async fn a_public_literal_is_not_blocked_but_still_not_allowed() {
    let fetcher = Fetcher::new(policy(&["example.com"], &[])).unwrap();
    assert_eq!(
        error_code(&fetcher, "http://93.184.215.14/").await,
        "host_not_allowed"
    );
}

#[tokio::test]
async fn an_allowed_name_resolving_to_loopback_is_refused_by_the_resolver() {
    let up = Upstream::start().await;
    let host = format!("localhost:{}", up.port());
    let fetcher = Fetcher::new(policy(&[&host], &[])).unwrap();
    let err = fetcher
        .get(&format!("http://{host}/text"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, FetchError::AddressBlocked { host, range: "loopback" } if host == "localhost"),
        "the allowlist lets localhost through, the resolver must not: {err:?}"
    );
    assert_eq!(up.hits(), 0, "no request may reach the server");
}

#[tokio::test]
async fn an_allowed_network_reaches_the_local_server() {
    let up = Upstream::start().await;
    let fetched = local_fetcher().get(&up.url("/text")).await.unwrap();
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.body, "hello");
    assert_eq!(fetched.url, up.url("/text"));
    assert_eq!(
        fetched.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert!(!fetched.truncated);
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn json_and_untyped_bodies_are_text() {
    let up = Upstream::start().await;
    let fetcher = local_fetcher();
    let json = fetcher.get(&up.url("/json")).await.unwrap();
    let value: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(value, serde_json::json!({"ok": true}));
    let untyped = fetcher.get(&up.url("/no-type")).await.unwrap();
    assert_eq!(
        (untyped.content_type, untyped.body.as_str()),
        (None, "untyped")
    );
}

#[tokio::test]
async fn a_binary_content_type_is_refused() {
    let up = Upstream::start().await;
    let err = local_fetcher().get(&up.url("/binary")).await.unwrap_err();
    assert_eq!(err.code(), "content_type_not_allowed");
    assert!(
        err.to_string().contains("image/png"),
        "the message names the type: {err}"
    );
}

#[tokio::test]
async fn a_redirect_within_the_policy_is_followed() {
    let up = Upstream::start().await;
    let url = up.url(&format!("/redirect?to={}", encode("/text")));
    let fetched = local_fetcher().get(&url).await.unwrap();
    assert_eq!((fetched.status, fetched.body.as_str()), (200, "hello"));
    assert_eq!(fetched.url, up.url("/text"), "the final URL is reported");
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn redirects_out_of_the_policy_are_refused() {
    let up = Upstream::start().await;
    let fetcher = local_fetcher();
    for target in [
        "http://169.254.169.254/latest/meta-data".to_owned(),
        format!("http://127.0.0.2:{}/text", up.port()),
        format!("http://[::1]:{}/text", up.port()),
        format!("http://2130706434:{}/text", up.port()),
        "http://not-allowed.example.net/".to_owned(),
        "ftp://example.com/".to_owned(),
        // Not an http URL at all: the HTTP stack does not even offer it to the policy.
        "file:///etc/passwd".to_owned(),
        "data:text/plain,hi".to_owned(),
    ] {
        let url = up.url(&format!("/redirect?to={}", encode(&target)));
        let err = fetcher.get(&url).await.unwrap_err();
        assert_eq!(err.code(), "redirect_refused", "{target}: {err}");
    }
    assert_eq!(
        up.hits(),
        8,
        "only the redirecting requests reached the server"
    );
}

#[tokio::test]
async fn too_many_redirects_stop_at_the_limit() {
    let up = Upstream::start().await;
    let err = local_fetcher().get(&up.url("/loop/0")).await.unwrap_err();
    assert_eq!(err.code(), "too_many_redirects", "{err}");
    assert_eq!(up.hits(), 4, "the first request and 3 redirects followed");
}

#[tokio::test]
async fn a_declared_length_over_the_cap_is_refused_unread() {
    let up = Upstream::start().await;
    let err = local_fetcher()
        .get(&up.url("/sized/1001"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::TooLarge {
                length: 1001,
                max: 1000
            }
        ),
        "Content-Length 1001 over max_bytes 1000: {err:?}"
    );
    let fetched = local_fetcher().get(&up.url("/sized/1000")).await.unwrap();
    assert_eq!(
        (fetched.body.len(), fetched.truncated),
        (1000, false),
        "exactly the cap is fine"
    );
}

#[tokio::test]
async fn an_undeclared_length_over_the_cap_is_truncated() {
    let up = Upstream::start().await;
    let fetched = local_fetcher().get(&up.url("/chunked/2550")).await.unwrap();
    assert_eq!(fetched.body, "y".repeat(1000));
    assert!(fetched.truncated, "the body went on past max_bytes");
    let fetched = local_fetcher().get(&up.url("/chunked/1000")).await.unwrap();
    assert_eq!(
        (fetched.body.len(), fetched.truncated),
        (1000, false),
        "exactly the cap is whole"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let up = Upstream::start().await;
    let fetcher = Fetcher::new(FetchPolicy {
        timeout: Duration::from_millis(300),
        ..policy(&["example.com"], &["127.0.0.1/32"])
    })
    .unwrap();
    let err = fetcher.get(&up.url("/hang")).await.unwrap_err();
    assert_eq!(err.code(), "timeout", "{err}");
    assert!(err.retryable());
}

#[tokio::test]
async fn hosts_outside_the_allowlist_are_refused_before_sending() {
    let up = Upstream::start().await;
    let fetcher =
        Fetcher::new(policy(&["api.example.com", "localhost"], &["127.0.0.1/32"])).unwrap();
    assert_eq!(
        error_code(&fetcher, "https://example.com/").await,
        "host_not_allowed"
    );
    let other_port = format!("http://localhost:{}/text", up.port());
    assert_eq!(
        error_code(&fetcher, &other_port).await,
        "host_not_allowed",
        "`localhost` without a port allows 80 and 443 only"
    );
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn only_http_and_https_urls_are_fetched() {
    let fetcher = local_fetcher();
    for url in [
        "ftp://example.com/",
        "file:///etc/passwd",
        "gopher://example.com/",
        "data:,hi",
    ] {
        assert_eq!(
            error_code(&fetcher, url).await,
            "scheme_not_allowed",
            "{url}"
        );
    }
    for url in ["not a url", "http://", "http://user:secret@example.com/"] {
        assert_eq!(error_code(&fetcher, url).await, "invalid_url", "{url}");
    }
}

#[tokio::test]
async fn a_refused_connection_is_a_retryable_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = local_fetcher()
        .get(&format!("http://{addr}/"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "fetch_failed", "{err}");
    assert!(err.retryable());
}

#[test]
fn codes_are_the_documented_closed_list() {
    let errors = [
        FetchError::InvalidUrl(String::new()),
        FetchError::SchemeNotAllowed(String::new()),
        FetchError::HostNotAllowed(String::new()),
        FetchError::AddressBlocked {
            host: String::new(),
            range: "loopback",
        },
        FetchError::RedirectRefused(String::new()),
        FetchError::TooManyRedirects(0),
        FetchError::TooLarge { length: 0, max: 0 },
        FetchError::ContentTypeNotAllowed(String::new()),
        FetchError::Timeout,
        FetchError::FetchFailed {
            host: String::new(),
            reason: String::new(),
        },
    ];
    let codes: Vec<&str> = errors.iter().map(FetchError::code).collect();
    assert_eq!(
        codes,
        [
            "invalid_url",
            "scheme_not_allowed",
            "host_not_allowed",
            "address_blocked",
            "redirect_refused",
            "too_many_redirects",
            "too_large",
            "content_type_not_allowed",
            "timeout",
            "fetch_failed",
        ]
    );
}
