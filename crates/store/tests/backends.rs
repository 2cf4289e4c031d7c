//! The store against both backends: a temp SQLite file, and the machine's PostgreSQL
//! through `SLUICE_TEST_DATABASE_URL` (each test in a fresh database of its own).

mod common;

use std::time::Duration;

use common::{each_backend, with_database};
use sluice_store::keys::{ApiKey, KeyLimits, NewSecret, hash_secret};
use sluice_store::ledger::{Ledger, LedgerConfig, SpendRow};
use sluice_store::profiles::ProfileState;
use sluice_store::spend::GroupBy;

fn key(id: &str, now: i64) -> (String, ApiKey) {
    let secret = NewSecret::generate();
    let k = ApiKey {
        id: id.into(),
        name: format!("name-{id}"),
        key_prefix: secret.prefix.clone(),
        key_hash: secret.hash.clone(),
        user_id: Some("alice".into()),
        allowed_models: Some(vec!["smart".into(), "fast".into()]),
        limits: KeyLimits {
            rpm: Some(60),
            budget_usd_day_nanos: Some(5_000_000_000),
            ..KeyLimits::default()
        },
        created_at_ms: now,
        updated_at_ms: now,
        expires_at_ms: None,
        revoked_at_ms: None,
    };
    (secret.secret, k)
}

fn row(request: usize, seq: i64, model: &str, day: i64) -> SpendRow {
    SpendRow {
        request_id: format!("req-{request}"),
        call_seq: seq,
        key_id: Some(format!("key-{}", request % 3)),
        user_id: Some(format!("user-{}", request % 2)),
        agent_id: None,
        run_id: None,
        provider: "openai".into(),
        model: model.into(),
        prompt_tokens: 10,
        completion_tokens: 5,
        cached_tokens: 2,
        cost_nanos: 1_500,
        saved_nanos: 0,
        estimated: request.is_multiple_of(5),
        status: "ok".into(),
        latency_ms: 12,
        channel: None,
        channel_user: None,
        session_id: None,
        created_at_ms: 1_767_225_600_000 + day * 86_400_000 + request as i64,
    }
}

#[tokio::test]
async fn migrations_apply_from_empty_and_are_idempotent() {
    each_backend(async |store| {
        for table in sluice_store::TABLES {
            let n = store
                .count_rows(table)
                .await
                .unwrap_or_else(|e| panic!("{table}: {e}"));
            assert_eq!(n, 0, "{table} starts empty");
        }
        store.migrate().await.expect("a second run is a no-op");
        store.ping().await.expect("ping");
    })
    .await;
}

#[tokio::test]
async fn key_lifecycle_create_list_show_revoke() {
    each_backend(async |store| {
        let now = 1_700_000_000_000;
        let (secret, k) = key("k1", now);
        assert!(
            secret.starts_with("sk-sluice-") && secret.len() == 50,
            "{secret}"
        );
        assert_eq!(k.key_hash, hash_secret(&secret));
        assert!(
            !k.key_hash.contains(&secret[10..]),
            "only the hash is stored"
        );
        store.insert_key(&k).await.unwrap();
        let (_, k2) = key("k2", now + 1);
        store.insert_key(&k2).await.unwrap();

        let listed = store.list_keys().await.unwrap();
        assert_eq!(
            listed,
            vec![k.clone(), k2.clone()],
            "round trip is lossless"
        );
        assert_eq!(store.get_key("k1").await.unwrap(), Some(k.clone()));
        assert_eq!(store.get_key("nope").await.unwrap(), None);

        assert!(store.revoke_key("k1", now + 10).await.unwrap());
        assert!(
            !store.revoke_key("k1", now + 11).await.unwrap(),
            "already revoked"
        );
        assert!(!store.revoke_key("nope", now).await.unwrap());
        let changed = store.keys_changed_since(now + 5).await.unwrap();
        assert_eq!(changed.len(), 1, "the revocation is a change");
        assert_eq!(changed[0].revoked_at_ms, Some(now + 10));
        assert!(!changed[0].is_active(now + 20));

        let mut dup = k2.clone();
        dup.id = "k3".into();
        assert!(store.insert_key(&dup).await.is_err(), "a hash is unique");
    })
    .await;
}

#[tokio::test]
async fn expired_keys_are_not_active() {
    let (_, mut k) = key("k", 0);
    k.expires_at_ms = Some(1_000);
    assert!(k.is_active(999));
    assert!(!k.is_active(1_000));
}

#[tokio::test]
async fn concurrent_ledger_rows_all_arrive_exactly_once() {
    each_backend(async |store| {
        let ledger = Ledger::start(
            store.clone(),
            LedgerConfig {
                batch_size: 64,
                flush_interval: Duration::from_millis(20),
                queue_capacity: 10_000,
                ..LedgerConfig::default()
            },
        );
        let mut tasks = Vec::new();
        for t in 0..40 {
            let ledger = ledger.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    ledger.record(row(t * 50 + i, 0, "gpt-4o", 0));
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // The same rows again (a retried batch): ignored, not doubled.
        store
            .insert_spend(&[row(0, 0, "gpt-4o", 0), row(1, 0, "gpt-4o", 0)])
            .await
            .unwrap();
        ledger
            .shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
            .await;
        store.insert_spend(&[row(7, 0, "gpt-4o", 0)]).await.unwrap();
        assert_eq!(store.count_spend().await.unwrap(), 2000);
        assert_eq!(ledger.dropped(), 0);
    })
    .await;
}

#[tokio::test]
async fn shutdown_flushes_what_the_interval_has_not() {
    each_backend(async |store| {
        let ledger = Ledger::start(
            store.clone(),
            LedgerConfig {
                batch_size: 100_000,
                flush_interval: Duration::from_secs(3600),
                queue_capacity: 1000,
                ..LedgerConfig::default()
            },
        );
        for i in 0..123 {
            ledger.record(row(i, 0, "m", 0));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            store.count_spend().await.unwrap(),
            0,
            "nothing written before a flush"
        );
        ledger
            .shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
            .await;
        assert_eq!(
            store.count_spend().await.unwrap(),
            123,
            "a clean stop loses nothing"
        );
        ledger.record(row(999, 0, "m", 0));
        assert_eq!(
            ledger.dropped(),
            1,
            "after shutdown rows are counted, not lost silently"
        );
    })
    .await;
}

#[tokio::test]
async fn spend_report_groups_on_both_backends() {
    each_backend(async |store| {
        let rows: Vec<SpendRow> = (0..30)
            .map(|i| {
                row(
                    i,
                    0,
                    if i % 3 == 0 { "gpt-4o" } else { "gpt-4o-mini" },
                    (i % 2) as i64,
                )
            })
            .collect();
        store.insert_spend(&rows).await.unwrap();
        let (from, to) = (0, i64::MAX);
        let by_model = store.spend_report(GroupBy::Model, from, to).await.unwrap();
        assert_eq!(by_model.len(), 2);
        assert_eq!(by_model[0].group, "openai:gpt-4o-mini");
        assert_eq!(by_model[0].calls, 20);
        assert_eq!(by_model[0].cost_nanos, 30_000);
        assert_eq!(by_model[1].prompt_tokens, 100);
        let by_day = store.spend_report(GroupBy::Day, from, to).await.unwrap();
        let days: Vec<&str> = by_day.iter().map(|l| l.group.as_str()).collect();
        assert_eq!(days.len(), 2);
        assert!(
            days.contains(&"2026-01-01") && days.contains(&"2026-01-02"),
            "{days:?}"
        );
        let by_key = store.spend_report(GroupBy::Key, from, to).await.unwrap();
        assert_eq!(by_key.iter().map(|l| l.calls).sum::<i64>(), 30);
        assert_eq!(by_key.iter().map(|l| l.estimated_calls).sum::<i64>(), 6);
        let window = store
            .spend_report(GroupBy::Provider, 1_767_225_600_000 + 86_400_000, to)
            .await
            .unwrap();
        assert_eq!(window[0].calls, 15, "the range bounds are applied");
    })
    .await;
}

#[tokio::test]
async fn auth_profile_state_upserts() {
    each_backend(async |store| {
        let mut p = ProfileState {
            provider: "openai".into(),
            profile_id: "sha256:abc".into(),
            state: "billing".into(),
            until_ms: 5,
            failures: 1,
            reason: Some("insufficient_quota".into()),
            updated_at_ms: 1,
        };
        store.upsert_profile(&p).await.unwrap();
        p.state = "ready".into();
        p.failures = 0;
        p.reason = None;
        store.upsert_profile(&p).await.unwrap();
        assert_eq!(store.list_profiles().await.unwrap(), vec![p]);
    })
    .await;
}

#[test]
fn test_database_urls_are_rewritten() {
    assert_eq!(
        with_database("postgres://u@h:5432/postgres", "x"),
        "postgres://u@h:5432/x"
    );
    assert_eq!(
        with_database("postgres://u@h/postgres?sslmode=disable", "x"),
        "postgres://u@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_bucket_updates_never_grant_past_the_capacity() {
    each_backend(async |store| {
        // 60 writers race for a bucket of 25 units, 1 each: exactly 25 win, none twice.
        let mut tasks = Vec::new();
        for _ in 0..60 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .update_bucket("key:k/tokens/total", None, 1_000, |used, at| {
                        if used < 25 {
                            (Some((used + 1, at)), true)
                        } else {
                            (None, false)
                        }
                    })
                    .await
                    .expect("update")
            }));
        }
        let mut granted = 0;
        for t in tasks {
            granted += usize::from(t.await.expect("join"));
        }
        assert_eq!(granted, 25);
        assert_eq!(
            store.bucket("key:k/tokens/total").await.expect("read"),
            Some((25, 1_000))
        );
        // Calendar buckets go once their expiry passes; others stay.
        store
            .update_bucket("key:k/usd/d1", Some(5_000), 1_000, |u, at| {
                (Some((u + 7, at)), ())
            })
            .await
            .expect("insert");
        assert_eq!(store.delete_expired_buckets(4_999).await.expect("gc"), 0);
        assert_eq!(store.delete_expired_buckets(5_001).await.expect("gc"), 1);
        assert!(store.bucket("key:k/usd/d1").await.expect("read").is_none());
        assert!(
            store
                .bucket("key:k/tokens/total")
                .await
                .expect("read")
                .is_some()
        );
    })
    .await;
}

#[tokio::test]
async fn key_breaker_trips_persist_until_reset_or_expiry() {
    use sluice_store::breakers::Trip;
    each_backend(async |store| {
        let trip = |id: &str, until: Option<i64>| Trip {
            key_id: id.into(),
            tripped_at_ms: 100,
            until_ms: until,
            reason: "spend velocity".into(),
        };
        store.trip_key(&trip("a", None)).await.expect("trip");
        store.trip_key(&trip("b", Some(500))).await.expect("trip");
        store.trip_key(&trip("a", Some(1))).await.expect("again");
        let open = store.open_trips(200).await.expect("list");
        assert_eq!(open, vec![trip("a", None), trip("b", Some(500))]);
        assert_eq!(
            store.open_trips(500).await.expect("list"),
            vec![trip("a", None)]
        );
        assert!(store.reset_trip("a").await.expect("reset"));
        assert!(!store.reset_trip("a").await.expect("reset twice"));
        assert!(store.open_trips(600).await.expect("list").is_empty());
    })
    .await;
}
