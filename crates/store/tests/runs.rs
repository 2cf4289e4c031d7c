//! Agent runs on both backends: one run per (key, idempotency key) under concurrent
//! inserts, a run finishes once, events replay from any seq and refuse a seq twice, and
//! runs left in flight are interrupted with the ledger's spend.

mod common;

use common::each_backend;
use serde_json::json;
use sluice_store::runs::{Inserted, RunCounters, RunEnd, RunEventRow, RunRow, status};

fn run(id: &str, key: &str, idem: Option<&str>) -> RunRow {
    RunRow {
        id: id.into(),
        key_id: key.into(),
        user_id: None,
        agent: "writer".into(),
        parent_run_id: None,
        root_run_id: id.into(),
        depth: 0,
        session_id: None,
        origin: "ws".into(),
        idempotency_key: idem.map(Into::into),
        request_hash: Some("h1".into()),
        status: status::QUEUED.into(),
        input: json!({"input": "write a haiku"}),
        output: None,
        error_code: None,
        error_message: None,
        breaker: None,
        counters: RunCounters::default(),
        last_seq: 0,
        created_at_ms: 1_000,
        finished_at_ms: None,
        updated_at_ms: 1_000,
    }
}

fn completed(counters: RunCounters, last_seq: i64, at_ms: i64) -> RunEnd {
    RunEnd {
        status: status::COMPLETED,
        output: None,
        error_code: None,
        error_message: None,
        breaker: None,
        counters,
        last_seq,
        at_ms,
    }
}

fn event(run_id: &str, seq: i64) -> RunEventRow {
    RunEventRow {
        run_id: run_id.into(),
        seq,
        event: "run.delta".into(),
        data: json!({"text": format!("part {seq}")}),
        created_at_ms: 2_000 + seq,
    }
}

#[tokio::test]
async fn one_run_per_key_and_idempotency_key_even_under_concurrent_inserts() {
    each_backend(async |store| {
        let inserts = (0..20).map(|i| {
            let store = store.clone();
            async move {
                store
                    .insert_run(&run(&format!("r{i}"), "k1", Some("idem-1")))
                    .await
            }
        });
        let results = futures_util::future::join_all(inserts).await;
        let new = results
            .iter()
            .filter(|r| matches!(r, Ok(Inserted::New)))
            .count();
        assert_eq!(new, 1, "{results:?}");
        let winner = results
            .iter()
            .find_map(|r| match r {
                Ok(Inserted::Existing(row)) => Some(row.id.clone()),
                _ => None,
            })
            .unwrap();
        for r in &results {
            if let Ok(Inserted::Existing(row)) = r {
                assert_eq!(row.id, winner, "every loser gets the same run");
                assert_eq!(row.input, json!({"input": "write a haiku"}));
            }
        }
        assert_eq!(store.count_rows("runs").await.unwrap(), 1);
        // Another key may use the same idempotency key; no key is no constraint.
        assert_eq!(
            store
                .insert_run(&run("other", "k2", Some("idem-1")))
                .await
                .unwrap(),
            Inserted::New
        );
        for id in ["a", "b"] {
            assert_eq!(
                store.insert_run(&run(id, "k1", None)).await.unwrap(),
                Inserted::New
            );
        }
        // The same id twice is an error, not a second run.
        assert!(store.insert_run(&run("a", "k1", None)).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn a_run_starts_and_finishes_once() {
    each_backend(async |store| {
        store.insert_run(&run("r", "k", None)).await.unwrap();
        assert!(store.start_run("r", 1_500).await.unwrap());
        assert!(
            !store.start_run("r", 1_600).await.unwrap(),
            "already running"
        );
        let progress = RunCounters {
            steps: 1,
            llm_calls: 1,
            prompt_tokens: 10,
            ..RunCounters::default()
        };
        store
            .update_run_progress("r", progress, 3, 1_700)
            .await
            .unwrap();
        let counters = RunCounters {
            steps: 2,
            llm_calls: 2,
            tool_calls: 1,
            prompt_tokens: 30,
            completion_tokens: 12,
            cost_nanos: 4_200,
        };
        let end = RunEnd {
            output: Some(json!({"text": "done"})),
            ..completed(counters, 9, 2_000)
        };
        assert!(store.finish_run("r", &end).await.unwrap());
        let failed = RunEnd {
            status: status::FAILED,
            error_code: Some("breaker_tripped".into()),
            ..end.clone()
        };
        assert!(!store.finish_run("r", &failed).await.unwrap(), "ends once");
        let row = store.run("r").await.unwrap().unwrap();
        assert_eq!(row.status, status::COMPLETED);
        assert_eq!(row.output, Some(json!({"text": "done"})));
        assert_eq!(row.counters, end.counters);
        assert_eq!((row.last_seq, row.finished_at_ms), (9, Some(2_000)));
        assert!(store.run("nope").await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn events_replay_after_any_seq_and_a_seq_is_written_once() {
    each_backend(async |store| {
        store.insert_run(&run("r", "k", None)).await.unwrap();
        let events: Vec<RunEventRow> = (1..=250).map(|s| event("r", s)).collect();
        store.append_run_events(&events[..100]).await.unwrap();
        store.append_run_events(&events[100..]).await.unwrap();
        let all = store.run_events("r", 0, 1000).await.unwrap();
        assert_eq!(all, events);
        let tail = store.run_events("r", 240, 5).await.unwrap();
        assert_eq!(
            tail.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![241, 242, 243, 244, 245]
        );
        // A batch with a seq already stored is refused whole.
        let again = [event("r", 251), event("r", 250)];
        assert!(store.append_run_events(&again).await.is_err());
        assert_eq!(store.run_events("r", 250, 10).await.unwrap(), vec![]);
        // The store is still usable after the failed batch.
        store.append_run_events(&[event("r", 251)]).await.unwrap();
        assert_eq!(store.run_events("r", 250, 10).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn runs_in_flight_are_interrupted_with_what_the_ledger_says_they_spent() {
    each_backend(async |store| {
        for id in ["running", "queued", "done"] {
            store.insert_run(&run(id, "k", None)).await.unwrap();
        }
        store.start_run("running", 1_100).await.unwrap();
        let end = completed(RunCounters::default(), 0, 1_200);
        store.finish_run("done", &end).await.unwrap();
        store
            .execute_raw(
                "INSERT INTO spend (request_id, call_seq, key_id, provider, model, prompt_tokens, \
                 completion_tokens, cached_tokens, cost_nanos, estimated, status, latency_ms, \
                 run_id, created_at_ms) VALUES \
                 ('q1', 0, 'k', 'mock', 'm', 100, 20, 0, 3000, FALSE, 'ok', 5, 'running', 1), \
                 ('q2', 0, 'k', 'mock', 'm', 50, 10, 0, 1500, FALSE, 'client_closed', 5, 'running', 2), \
                 ('q3', 0, 'k', 'mock', 'm', 7, 7, 0, 700, FALSE, 'ok', 5, 'done', 3)",
            )
            .await
            .unwrap();
        let mut ids = store.interrupt_runs(5_000).await.unwrap();
        ids.sort();
        assert_eq!(ids, vec!["queued".to_owned(), "running".to_owned()]);
        let r = store.run("running").await.unwrap().unwrap();
        assert_eq!(r.status, status::INTERRUPTED);
        assert_eq!(r.error_code.as_deref(), Some("interrupted"));
        assert_eq!(
            (r.counters.prompt_tokens, r.counters.completion_tokens, r.counters.cost_nanos),
            (150, 30, 4_500)
        );
        assert_eq!(r.finished_at_ms, Some(5_000));
        assert_eq!(
            store.run("done").await.unwrap().unwrap().status,
            status::COMPLETED,
            "a finished run is left alone"
        );
        assert!(store.interrupt_runs(6_000).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn only_a_run_that_never_began_is_removed() {
    each_backend(async |store| {
        let mut fresh = run("fresh", "k", None);
        fresh.status = status::RUNNING.into();
        store.insert_run(&fresh).await.unwrap();
        assert!(store.delete_unstarted_run("fresh").await.unwrap());
        assert!(store.run("fresh").await.unwrap().is_none());
        store.insert_run(&run("begun", "k", None)).await.unwrap();
        store.append_run_events(&[event("begun", 1)]).await.unwrap();
        assert!(!store.delete_unstarted_run("begun").await.unwrap());
        assert!(store.run("begun").await.unwrap().is_some());
    })
    .await;
}
