//! Helpers for tests of the real `sluice` binary: run a command, start `serve` on port 0
//! and read its address (and its log), stop it with SIGTERM, make a Postgres database.

#![allow(dead_code, reason = "each test binary uses the helpers it needs")]
#![allow(
    clippy::unwrap_used,
    reason = "a test helper that fails is a failed test"
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// A SQLite URL in a fresh directory of its own (left for the OS to clean up).
pub fn temp_db() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sluice-cli-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    format!("sqlite://{}/sluice.db", dir.display())
}

pub fn config_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

pub fn run(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `sluice serve` on the demo config at port 0 and returns it with its address.
pub fn serve(extra_env: &[(&str, &str)]) -> (Child, String) {
    serve_config(&config_dir().join("demo.toml"), extra_env)
}

/// Starts `sluice serve --config PATH` at port 0 (`SLUICE_LISTEN`) on a fresh SQLite
/// file unless `extra_env` names another `SLUICE_DATABASE_URL`.
pub fn serve_config(config: &Path, extra_env: &[(&str, &str)]) -> (Child, String) {
    let (child, addr, _) = serve_logged(config, extra_env);
    (child, addr)
}

/// The lines a served process wrote to stderr so far.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }

    /// Waits (up to 30 s) for a line containing `needle`.
    pub async fn wait_for(&self, needle: &str) -> bool {
        for _ in 0..300 {
            if self.text().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

/// [`serve_config`], keeping the process's log.
pub fn serve_logged(config: &Path, extra_env: &[(&str, &str)]) -> (Child, String, Log) {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config", config.to_str().unwrap()])
        .env("SLUICE_LISTEN", "127.0.0.1:0")
        .env("SLUICE_DATABASE_URL", temp_db())
        .envs(extra_env.iter().copied());
    serve_command(cmd)
}

/// Starts a command that runs `sluice serve` and returns it once it says where it
/// listens, with that address and its log.
pub fn serve_command(mut cmd: Command) -> (Child, String, Log) {
    let mut child = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log = Log::default();
    let lines = log.clone();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && let Some(addr) = line.split("sluice listening on ").nth(1) {
                let _ = tx.send(Ok(addr.trim().to_owned()));
                sent = true;
            }
            lines.0.lock().unwrap().push(line);
        }
        if !sent {
            let _ = tx.send(Err(()));
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server reports its address")
        .unwrap_or_else(|()| panic!("the server exited before listening:\n{}", log.text()));
    (child, addr, log)
}

pub fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Waits for the process to exit, at most `limit`; a process still running then is
/// killed and the test fails.
pub async fn wait_exit(mut child: Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the process did not exit within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fresh PostgreSQL database on `SLUICE_TEST_DATABASE_URL`'s server: (its URL, its
/// name). `None` when the tests run without Postgres.
pub async fn postgres_database(prefix: &str) -> Option<(String, String)> {
    let Ok(admin_url) = std::env::var("SLUICE_TEST_DATABASE_URL") else {
        assert!(
            std::env::var("SLUICE_TEST_SKIP_POSTGRES").is_ok(),
            "SLUICE_TEST_DATABASE_URL is not set: run scripts/test"
        );
        return None;
    };
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let admin = sluice_store::Store::connect(&admin_url).await.unwrap();
    let _ = admin
        .execute_raw(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
    admin
        .execute_raw(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    admin.close().await;
    let (base, query) = admin_url
        .split_once('?')
        .map_or((admin_url.as_str(), None), |(b, q)| (b, Some(q)));
    let server = &base[..base
        .rfind('/')
        .filter(|i| base[..*i].ends_with(|c: char| c != '/'))
        .unwrap_or(base.len())];
    let url = match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    };
    Some((url, name))
}

/// Runs SQL on `SLUICE_TEST_DATABASE_URL`'s own database (to drop or lock test databases).
pub async fn postgres_admin(sql: &str) {
    let admin_url = std::env::var("SLUICE_TEST_DATABASE_URL").unwrap();
    let admin = sluice_store::Store::connect(&admin_url).await.unwrap();
    admin.execute_raw(sql).await.unwrap();
    admin.close().await;
}
