//! Two gateway instances on one PostgreSQL behave as one: keys created or revoked on one
//! count on the other, a provider key refused on one is left alone by the other, an
//! operator's reset reaches both, and their spend lands in one ledger. And one instance on
//! SQLite remembers refused provider keys across a restart.

#![allow(
    clippy::unwrap_used,
    reason = "a test helper that fails is a failed test"
)]

use serde_json::{Value, json};
use sluice_e2e::{Gateway, MockProvider, Step, TestDatabase, Wire, ask, eventually, provider};

const ADMIN: &str = "admin-token-0123456789";

fn config(mock: &MockProvider, db_url: &str) -> String {
    format!(
        "[server]\nadmin_token = \"{ADMIN}\"\n{}[models.m]\nchain = [\"a:model-a\"]\n[database]\nurl = \"{db_url}\"\nkey_refresh_ms = 100\nledger_flush_ms = 50\n",
        provider("a", mock, &["sk-bad", "sk-good"], "")
    )
}

async fn status_with(gw: &Gateway, key: &str) -> u16 {
    gw.client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&ask("m", "hi"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn key_state(gw: &Gateway, id_of: &str) -> String {
    gw.service
        .snapshot()
        .router
        .key_states("a")
        .into_iter()
        .find(|k| k.0 == id_of)
        .map(|k| k.1.as_str().to_owned())
        .unwrap()
}

#[tokio::test]
async fn two_instances_on_one_postgres_share_keys_profiles_and_spend() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script_key("sk-bad", vec![Step::Unauthorized]);
    let one = Gateway::start(&config(&mock, &db.url)).await;
    let two = Gateway::start(&config(&mock, &db.url)).await;

    // A key created on one instance works on the other.
    let resp = one
        .client
        .post(one.url("/admin/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "shared"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["key"]["id"].as_str().unwrap().to_owned();
    assert!(
        eventually(5, async || status_with(&two, &secret).await == 200).await,
        "the key reaches instance two"
    );

    // A provider key refused on one instance is disabled on the other without a call.
    for _ in 0..2 {
        assert_eq!(status_with(&one, &secret).await, 200);
    }
    let refused: Vec<String> = one
        .service
        .snapshot()
        .router
        .key_states("a")
        .into_iter()
        .filter(|k| k.1.as_str() == "disabled")
        .map(|k| k.0)
        .collect();
    assert_eq!(refused.len(), 1, "sk-bad was refused and disabled on one");
    let bad = refused[0].clone();
    assert!(
        eventually(5, async || key_state(&two, &bad) == "disabled").await,
        "two learns of it"
    );
    let calls_before = mock
        .requests()
        .iter()
        .filter(|r| r.api_key == "sk-bad")
        .count();
    for _ in 0..4 {
        assert_eq!(status_with(&two, &secret).await, 200);
    }
    let calls_after = mock
        .requests()
        .iter()
        .filter(|r| r.api_key == "sk-bad")
        .count();
    assert_eq!(calls_before, calls_after, "two never tries the refused key");

    // An operator's reset on two reaches one.
    mock.script_key("sk-bad", vec![Step::Text("working again".into())]);
    let resp = two
        .client
        .post(two.url("/admin/auth-profiles/a/reset"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        eventually(5, async || key_state(&one, &bad) == "ready").await,
        "the reset reaches one"
    );

    // Revoked on two, refused on one.
    let resp = two
        .client
        .delete(two.url(&format!("/admin/keys/{id}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        eventually(5, async || status_with(&one, &secret).await == 401).await,
        "the revocation reaches one"
    );

    // Both instances' calls are in one ledger.
    one.service
        .ledger()
        .flush()
        .await
        .expect("ledger rows written");
    two.service
        .ledger()
        .flush()
        .await
        .expect("ledger rows written");
    let report: Value = one
        .client
        .get(one.url("/admin/spend?by=key&since=1h"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let row = report["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == id.as_str())
        .cloned()
        .unwrap();
    let answered_by_key = mock.requests().len() as i64;
    assert_eq!(
        row["calls"].as_i64().unwrap(),
        answered_by_key,
        "every provider call of both instances: {report}"
    );
    drop((one, two));
    db.drop_now().await;
}

#[tokio::test]
async fn a_refused_provider_key_stays_refused_across_a_restart() {
    let dir = tempfile_dir();
    let url = format!("sqlite://{dir}/sluice.db");
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script_key("sk-bad", vec![Step::Unauthorized]);
    let first = Gateway::start(&config(&mock, &url)).await;
    for _ in 0..2 {
        assert_eq!(first.chat(ask("m", "hi")).await.status, 200);
    }
    let bad = first
        .service
        .snapshot()
        .router
        .key_states("a")
        .into_iter()
        .find(|k| k.1.as_str() == "disabled")
        .unwrap()
        .0;
    // Stop at once: the state still queued is written on the way out.
    first.stop().await;
    let second = Gateway::start(&config(&mock, &url)).await;
    assert_eq!(
        key_state(&second, &bad),
        "disabled",
        "known at start, before any call"
    );
    let before = mock
        .requests()
        .iter()
        .filter(|r| r.api_key == "sk-bad")
        .count();
    for _ in 0..3 {
        assert_eq!(second.chat(ask("m", "hi")).await.status, 200);
    }
    assert_eq!(
        mock.requests()
            .iter()
            .filter(|r| r.api_key == "sk-bad")
            .count(),
        before
    );
}

fn tempfile_dir() -> String {
    let dir = std::env::temp_dir().join(format!(
        "sluice-restart-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.display().to_string()
}
