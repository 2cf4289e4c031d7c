//! SQLite under a full disk: a failed ledger batch must roll back, report failure (never
//! success for rows that are not there) and leave the store usable once the disk has room
//! again. The disk is a small tmpfs mounted for the test (root and CAP_SYS_ADMIN, as on the
//! project's machines; elsewhere the test says why it did not run).

use std::path::{Path, PathBuf};
use std::process::Command;

use sluice_store::Store;
use sluice_store::ledger::SpendRow;

/// A tmpfs of `size` mounted on a fresh temp dir; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("temp dir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs here (needs root); the full-disk test did not run"
            );
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the disk with one file until a write fails; returns the file to delete later.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    path
}

fn row(request: usize, seq: i64) -> SpendRow {
    SpendRow {
        request_id: format!("req-{request:06}"),
        call_seq: seq,
        key_id: Some("key_1".into()),
        user_id: None,
        agent_id: None,
        run_id: None,
        provider: "p".into(),
        model: "m".into(),
        prompt_tokens: 10,
        completion_tokens: 20,
        cached_tokens: 0,
        cost_nanos: 1_000,
        estimated: false,
        status: "ok".into(),
        latency_ms: 5,
        created_at_ms: 1_700_000_000_000,
    }
}

/// Rows counted through a connection of its own, so a transaction left open on a pooled
/// connection cannot make uncommitted rows look written.
async fn committed_rows(url: &str) -> i64 {
    let other = Store::connect(url).await.expect("second handle");
    let n = other.count_spend().await.expect("count");
    other.close().await;
    n
}

#[tokio::test]
async fn a_full_disk_fails_the_batch_and_the_store_recovers_when_room_comes_back() {
    let Some(disk) = Tmpfs::mount("1m") else {
        return;
    };
    let url = format!("sqlite://{}/sluice.db", disk.path().display());
    let store = Store::open(&url).await.expect("opens");
    let first: Vec<SpendRow> = (0..50).map(|i| row(i, 0)).collect();
    store
        .insert_spend(&first)
        .await
        .expect("room for the first rows");

    let filler = fill(disk.path());
    let mut failures = 0;
    for round in 0..20 {
        let batch: Vec<SpendRow> = (0..200).map(|i| row(1000 + round * 200 + i, 0)).collect();
        if store.insert_spend(&batch).await.is_err() {
            failures += 1;
        }
    }
    assert!(failures > 0, "with the disk full, some batch must fail");
    let before = committed_rows(&url).await;

    std::fs::remove_file(&filler).expect("free the disk");
    // Every batch from now on must be written, and what is reported written must be there.
    let mut written = before;
    for round in 0..10 {
        let batch: Vec<SpendRow> = (0..20).map(|i| row(100_000 + round * 20 + i, 0)).collect();
        store
            .insert_spend(&batch)
            .await
            .unwrap_or_else(|e| panic!("round {round}: the store should have recovered: {e}"));
        written += 20;
        assert_eq!(
            committed_rows(&url).await,
            written,
            "round {round}: a batch reported written must be committed"
        );
    }
    // Other writes work too (an admin write goes through the same pool).
    store
        .execute_raw("DELETE FROM spend WHERE request_id = 'none'")
        .await
        .expect("writes work after recovery");
    store.close().await;
}
