//! The real binary when its database fails: a full disk, a Postgres that goes away before
//! a stop, a SQLite file deleted while open, and requests caught by the end of the grace
//! period. Whatever happens, every call is in the ledger (or, loudly, in the spill file,
//! written at the next start), and the process stops within its bounds.

#![allow(
    clippy::unwrap_used,
    reason = "a test helper that fails is a failed test"
)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{postgres_admin, postgres_database, serve_logged, sigterm, wait_exit};
use serde_json::{Value, json};
use sluice_store::Store;

const KEY: &str = "sk-durable-key-1";
const ADMIN: &str = "admin-token-0123456789";

fn write_config(
    dir: &Path,
    extra_server: &str,
    provider: &str,
    spill: &Path,
) -> std::path::PathBuf {
    let path = dir.join("sluice.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = "${{SLUICE_LISTEN}}"
admin_token = "{ADMIN}"
{extra_server}
[[keys]]
name = "t"
key = "{KEY}"
[providers.mock]
kind = "mock"
{provider}
[models.m]
chain = ["mock:m1"]
[prices.models."mock:m1"]
input = 1.0
output = 2.0
[database]
url = "${{SLUICE_DATABASE_URL}}"
ledger_flush_ms = 50
key_refresh_ms = 200
ledger_spill_file = "{}"
"#,
            spill.display()
        ),
    )
    .unwrap();
    path
}

async fn chat(client: &reqwest::Client, addr: &str, stream: bool) -> reqwest::Response {
    client
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hello there"}]}))
        .send()
        .await
        .unwrap()
}

async fn answered(client: &reqwest::Client, addr: &str, n: usize) {
    for i in 0..n {
        let r = chat(client, addr, false).await;
        assert_eq!(r.status(), 200, "request {i}");
    }
}

/// Polls `/readyz` until it answers `want` (up to 30 s); returns its last body.
async fn readyz_becomes(client: &reqwest::Client, addr: &str, want: u16) -> Value {
    let mut last = Value::Null;
    for _ in 0..300 {
        let r = client
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        last = r.json().await.unwrap_or(Value::Null);
        if status == want {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/readyz never answered {want}; last: {last}");
}

async fn spend_rows(url: &str) -> Vec<sluice_store::ledger::SpendRow> {
    let store = Store::connect(url).await.unwrap();
    let rows = store.recent_spend(10_000).await.unwrap();
    store.close().await;
    rows
}

/// A tmpfs of `size` on a fresh temp dir, unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Only where that is said to be expected: on the project's machines (and in
            // CI) the full-disk tests must run.
            assert!(
                std::env::var("SLUICE_TEST_NO_TMPFS").is_ok(),
                "cannot mount a tmpfs (needs root); set SLUICE_TEST_NO_TMPFS=1 to skip the full-disk tests"
            );
            eprintln!("SKIPPED: cannot mount a tmpfs here; the full-disk test did not run");
            return None;
        }
        Some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    path
}

/// The bug as found: after a full disk the SQLite store stayed wedged ("database is
/// locked"), reported ledger batches written that never were, kept /readyz at 200, and a
/// clean stop lost most of the rows since.
#[tokio::test]
async fn a_full_disk_costs_no_ledger_row_and_the_gateway_recovers_by_itself() {
    let Some(disk) = Tmpfs::mount("1m") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("spill.jsonl");
    let config = write_config(dir.path(), "", "", &spill);
    let url = format!("sqlite://{}/sluice.db", disk.0.path().display());
    let (child, addr, log) = serve_logged(&config, &[("SLUICE_DATABASE_URL", &url)]);
    let client = reqwest::Client::new();
    answered(&client, &addr, 20).await;
    readyz_becomes(&client, &addr, 200).await;

    let filler = fill(disk.0.path());
    // Answers go on (the ledger is off the request path); the ledger cannot write them.
    answered(&client, &addr, 30).await;
    let body = readyz_becomes(&client, &addr, 503).await;
    assert_eq!(body["status"], "ledger_behind", "{body}");

    std::fs::remove_file(&filler).unwrap();
    readyz_becomes(&client, &addr, 200).await;
    // Writes of every kind work again: an admin write goes through the same pool.
    let created = client
        .post(format!("http://{addr}/admin/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "after-the-disk-filled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    answered(&client, &addr, 10).await;

    sigterm(&child);
    let status = wait_exit(child, Duration::from_secs(60)).await;
    assert!(status.success(), "{status:?}\n{}", log.text());
    let rows = spend_rows(&url).await;
    assert_eq!(
        rows.len(),
        60,
        "every answered call has its row\n{}",
        log.text()
    );
    assert!(rows.iter().all(|r| r.status == "ok" && r.cost_nanos > 0));
    assert!(!spill.exists(), "nothing left to replay");
}

/// The bug as found: with the database down, a SIGTERM never ended (the ledger drain
/// retried without a bound). Now the stop ends within the grace period (plus the store's
/// minimum), keeps the rows in the spill file, says so, and the next start writes them.
#[tokio::test]
async fn a_stop_with_postgres_down_spills_the_rows_and_the_next_start_writes_them() {
    let Some((url, name)) = postgres_database("sluice_spill").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("spill.jsonl");
    let config = write_config(dir.path(), "shutdown_grace_ms = 1000", "", &spill);
    let env = [("SLUICE_DATABASE_URL", url.as_str())];
    let (child, addr, log) = serve_logged(&config, &env);
    let client = reqwest::Client::new();
    answered(&client, &addr, 10).await;
    readyz_becomes(&client, &addr, 200).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The database goes away: no new connections, and the open ones are cut.
    postgres_admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await;
    postgres_admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .await;
    answered(&client, &addr, 15).await;
    readyz_becomes(&client, &addr, 503).await;

    sigterm(&child);
    let status = wait_exit(child, Duration::from_secs(60)).await;
    assert!(status.success(), "{status:?}\n{}", log.text());
    assert!(
        log.text().contains("are written at the next start"),
        "the stop says where the rows went:\n{}",
        log.text()
    );
    assert!(spill.exists(), "the rows are kept on disk");

    postgres_admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await;
    let (child, _addr, log) = serve_logged(&config, &env);
    let store = Store::connect(&url).await.unwrap();
    let mut n = 0;
    for _ in 0..300 {
        n = store.count_spend().await.unwrap();
        if n >= 25 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        n,
        25,
        "every row, once, after the next start\n{}",
        log.text()
    );
    store.close().await;
    sigterm(&child);
    assert!(wait_exit(child, Duration::from_secs(60)).await.success());
    assert!(!spill.exists(), "the spill file is gone once written");
    postgres_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

/// The bug as found: requests still waiting for their first byte when the grace period
/// ended got no HTTP response at all and no ledger row.
#[tokio::test]
async fn requests_waiting_at_the_end_of_the_grace_get_shutting_down_and_their_rows() {
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("spill.jsonl");
    // The provider takes a minute before its first byte; the grace is 300 ms.
    let config = write_config(
        dir.path(),
        "shutdown_grace_ms = 300",
        "latency_ms = 60000",
        &spill,
    );
    let url = common::temp_db();
    let (child, addr, log) = serve_logged(&config, &[("SLUICE_DATABASE_URL", &url)]);
    let client = reqwest::Client::new();
    let plain = tokio::spawn({
        let (client, addr) = (client.clone(), addr.clone());
        async move { chat(&client, &addr, false).await }
    });
    let streamed = tokio::spawn({
        let (client, addr) = (client.clone(), addr.clone());
        async move { chat(&client, &addr, true).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    sigterm(&child);
    for (what, resp) in [
        ("plain", plain.await.unwrap()),
        ("stream", streamed.await.unwrap()),
    ] {
        assert_eq!(resp.status(), 503, "{what}");
        assert_eq!(
            resp.headers()["retry-after"],
            "1",
            "{what}: another instance can take it"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "shutting_down", "{what}: {body}");
    }
    let status = wait_exit(child, Duration::from_secs(60)).await;
    assert!(status.success(), "{status:?}\n{}", log.text());
    let rows = spend_rows(&url).await;
    assert_eq!(rows.len(), 2, "one row per call in progress: {rows:?}");
    for r in &rows {
        assert_eq!(r.status, "shutting_down");
        assert_eq!((r.provider.as_str(), r.model.as_str()), ("mock", "m1"));
        assert!(
            r.estimated && r.prompt_tokens > 0 && r.cost_nanos > 0,
            "the prompt is counted and priced: {r:?}"
        );
    }
}

/// The bug as found: a deleted SQLite file went unnoticed, and the next start created an
/// empty database (keys and ledger gone).
#[tokio::test]
async fn a_deleted_database_file_is_put_back_while_running_and_refused_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("spill.jsonl");
    let config = write_config(dir.path(), "", "", &spill);
    let db = dir.path().join("data/sluice.db");
    let url = format!("sqlite://{}", db.display());
    let env = [("SLUICE_DATABASE_URL", url.as_str())];
    let (child, addr, log) = serve_logged(&config, &env);
    let client = reqwest::Client::new();
    let created = client
        .post(format!("http://{addr}/admin/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "kept"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    answered(&client, &addr, 5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    std::fs::remove_file(&db).unwrap();
    assert!(
        log.wait_for("was deleted while the gateway had it open")
            .await,
        "the deletion is noticed and said:\n{}",
        log.text()
    );
    assert!(db.exists(), "the file is back");
    answered(&client, &addr, 5).await;
    readyz_becomes(&client, &addr, 200).await;
    sigterm(&child);
    assert!(wait_exit(child, Duration::from_secs(60)).await.success());
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(
        store.count_spend().await.unwrap(),
        10,
        "rows before and after"
    );
    let keys = store.list_keys().await.unwrap();
    assert!(keys.iter().any(|k| k.name == "kept"), "the stored key too");
    store.close().await;

    // Deleted while stopped: the next start refuses rather than start empty.
    std::fs::remove_file(&db).unwrap();
    let (code, _, err) = common::run(
        &["serve", "--config", config.to_str().unwrap()],
        &[
            ("SLUICE_DATABASE_URL", &url),
            ("SLUICE_LISTEN", "127.0.0.1:0"),
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("is missing"), "{err}");
    assert!(!db.exists(), "no empty database was made");
}

/// A client that stops reading a stream holds its connection past the grace period; the
/// stop drops it, and its call's row is written before the ledger stops (it used to be
/// recorded, if ever, after the ledger had closed).
#[tokio::test]
async fn a_stalled_stream_at_the_end_of_the_grace_is_dropped_and_recorded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("spill.jsonl");
    // About 9 MB of events: more than the sockets hold. The write timeout is far away.
    let config = write_config(
        dir.path(),
        "shutdown_grace_ms = 300\nwrite_timeout_ms = 600000",
        "words = 60000",
        &spill,
    );
    let url = common::temp_db();
    let (child, addr, log) = serve_logged(&config, &[("SLUICE_DATABASE_URL", &url)]);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut conn = socket.connect(addr.parse().unwrap()).await.unwrap();
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    conn.write_all(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: s\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = [0u8; 256];
    let n = conn.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigterm(&child);
    let status = wait_exit(child, Duration::from_secs(60)).await;
    assert!(status.success(), "{status:?}\n{}", log.text());
    let rows = spend_rows(&url).await;
    assert_eq!(
        rows.len(),
        1,
        "the stalled stream's call is recorded\n{}",
        log.text()
    );
    assert!(
        ["shutting_down", "client_closed"].contains(&rows[0].status.as_str()),
        "{:?}",
        rows[0]
    );
    assert!(!spill.exists(), "written, not spilled");
    drop(conn);
}
