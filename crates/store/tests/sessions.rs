//! WebSocket sessions and their messages on both backends: seqs without gaps or
//! duplicates under concurrent writers (one handle, or two as two instances would have),
//! history pages, and messages that outlive the store handle.

mod common;

use std::collections::BTreeSet;

use common::{each_backend, each_backend_url};
use serde_json::json;
use sluice_store::sessions::{MessageRow, NewMessage, SessionRow};
use sluice_store::{Backend, Store, StoreError};

fn session(id: &str, key_id: Option<&str>, updated_at_ms: i64) -> SessionRow {
    SessionRow {
        id: id.into(),
        session_key: format!("key-of-{id}"),
        key_id: key_id.map(Into::into),
        agent: Some("helper".into()),
        channel: None,
        metadata: Some(json!({"client": {"name": "test", "version": "1"}, "tags": [1, 2]})),
        created_at_ms: 1_000,
        updated_at_ms,
    }
}

fn message(text: &str, at: i64) -> NewMessage {
    NewMessage {
        role: "user".into(),
        content: json!({"role": "user", "content": text}),
        created_at_ms: at,
    }
}

fn texts(rows: &[MessageRow]) -> Vec<String> {
    rows.iter()
        .map(|m| m.content["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn seqs(rows: &[MessageRow]) -> Vec<i64> {
    rows.iter().map(|m| m.seq).collect()
}

#[tokio::test]
async fn sessions_are_created_read_touched_and_counted() {
    each_backend(async |store| {
        let a1 = session("s1", Some("key_a"), 1_000);
        let a2 = session("s2", Some("key_a"), 2_000);
        let b = session("s3", Some("config:ops"), 2_000);
        let mut legacy = session("s4", None, 2_000);
        legacy.metadata = None;
        legacy.agent = None;
        for s in [&a1, &a2, &b, &legacy] {
            store.create_session(s).await.expect("create");
        }
        assert_eq!(store.session("s1").await.unwrap(), Some(a1.clone()));
        assert_eq!(
            store.session("s4").await.unwrap(),
            Some(legacy),
            "absent key, agent and metadata round-trip as None"
        );
        assert_eq!(
            store.session_by_key("key-of-s2").await.unwrap(),
            Some(a2.clone())
        );
        assert_eq!(store.session("nope").await.unwrap(), None);
        assert_eq!(store.session_by_key("nope").await.unwrap(), None);

        let mut dup = session("s1", Some("key_a"), 1);
        dup.session_key = "fresh".into();
        assert!(store.create_session(&dup).await.is_err(), "an id is unique");
        let dup = session("s9", Some("key_a"), 1);
        let dup = SessionRow {
            session_key: a1.session_key.clone(),
            ..dup
        };
        assert!(
            store.create_session(&dup).await.is_err(),
            "a session key is unique"
        );

        // Values are bound, never spliced: text that would end a literal is just text.
        let odd = session("s'); DROP TABLE messages; --", Some("k' OR '1'='1"), 1);
        store.create_session(&odd).await.expect("create odd");
        assert_eq!(store.session(&odd.id).await.unwrap(), Some(odd.clone()));
        assert_eq!(store.count_sessions("k' OR '1'='1", 0).await.unwrap(), 1);
        assert_eq!(store.count_rows("messages").await.unwrap(), 0);

        assert_eq!(store.count_sessions("key_a", 0).await.unwrap(), 2);
        assert_eq!(
            store.count_sessions("key_a", 2_000).await.unwrap(),
            1,
            "the bound is inclusive and s1 was last active at 1000"
        );
        assert!(store.touch_session("s1", 5_000).await.unwrap());
        assert_eq!(store.count_sessions("key_a", 2_001).await.unwrap(), 1);
        assert_eq!(store.count_sessions("config:ops", 0).await.unwrap(), 1);
        assert_eq!(store.count_sessions("key_z", 0).await.unwrap(), 0);

        assert!(
            store.touch_session("s1", 4_000).await.unwrap(),
            "an earlier time is no error"
        );
        let s1 = store.session("s1").await.unwrap().expect("s1");
        assert_eq!(
            s1.updated_at_ms, 5_000,
            "activity never moves backwards (a lagging clock elsewhere)"
        );
        assert_eq!(s1.created_at_ms, 1_000);
        assert!(!store.touch_session("nope", 5_000).await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn history_pages_backwards_and_reads_oldest_first() {
    each_backend(async |store| {
        store
            .create_session(&session("s", Some("k"), 1))
            .await
            .unwrap();
        assert_eq!(
            store.append_messages("s", &[]).await.unwrap(),
            Vec::<i64>::new()
        );
        let first: Vec<NewMessage> = (1..=3).map(|i| message(&format!("m{i}"), i)).collect();
        assert_eq!(store.append_messages("s", &first).await.unwrap(), [1, 2, 3]);
        let mut second: Vec<NewMessage> = (4..=7).map(|i| message(&format!("m{i}"), i)).collect();
        second[1] = NewMessage {
            role: "assistant".into(),
            content: json!({"role": "assistant", "content": "m5", "tool_calls": [{"id": "c1"}]}),
            created_at_ms: 5,
        };
        assert_eq!(
            store.append_messages("s", &second).await.unwrap(),
            [4, 5, 6, 7]
        );

        let all = store.session_messages("s", None, 100).await.unwrap();
        assert_eq!(seqs(&all), [1, 2, 3, 4, 5, 6, 7], "oldest first");
        assert_eq!(texts(&all), ["m1", "m2", "m3", "m4", "m5", "m6", "m7"]);
        assert_eq!(
            all[4],
            MessageRow {
                session_id: "s".into(),
                seq: 5,
                role: "assistant".into(),
                content: second[1].content.clone(),
                created_at_ms: 5,
            },
            "a message round-trips whole"
        );

        let newest = store.session_messages("s", None, 3).await.unwrap();
        assert_eq!(seqs(&newest), [5, 6, 7], "the newest page");
        let page = store.session_messages("s", Some(5), 3).await.unwrap();
        assert_eq!(seqs(&page), [2, 3, 4], "the page before seq 5");
        let page = store.session_messages("s", Some(2), 3).await.unwrap();
        assert_eq!(seqs(&page), [1], "the last page is short");
        assert!(
            store
                .session_messages("s", Some(1), 3)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .session_messages("s", Some(0), 3)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .session_messages("s", None, 0)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .session_messages("other", None, 10)
                .await
                .unwrap()
                .is_empty(),
            "an unknown session has no history"
        );

        let err = store
            .append_messages("other", &[message("lost?", 1)])
            .await
            .expect_err("no such session");
        assert!(
            matches!(&err, StoreError::SessionNotFound(id) if id == "other"),
            "{err}"
        );
        assert_eq!(store.count_rows("messages").await.unwrap(), 7);
        assert_eq!(
            store
                .append_messages("s", &[message("m8", 8)])
                .await
                .unwrap(),
            [8],
            "a refused append uses no seq"
        );
    })
    .await;
}

/// 8 writers append 25 messages each to one session at once, even writers one message
/// at a time and odd ones five at a time, spread over `stores` (one handle, or several
/// as several gateway instances would have).
async fn race_appenders(stores: &[Store]) {
    stores[0]
        .create_session(&session("s", Some("k"), 1))
        .await
        .expect("create");
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = stores[w % stores.len()].clone();
        tasks.push(tokio::spawn(async move {
            let batch = if w % 2 == 0 { 1 } else { 5 };
            let mine: Vec<NewMessage> = (0..25)
                .map(|i| message(&format!("w{w}-{i:02}"), i))
                .collect();
            let mut given = Vec::new();
            for chunk in mine.chunks(batch) {
                let seqs = store.append_messages("s", chunk).await.expect("append");
                assert_eq!(seqs.len(), chunk.len());
                assert!(
                    seqs.windows(2).all(|p| p[1] == p[0] + 1),
                    "one append's seqs are consecutive: {seqs:?}"
                );
                given.extend(seqs);
            }
            (w, given)
        }));
    }
    let mut given = Vec::new();
    for t in tasks {
        let (w, seqs) = t.await.expect("writer");
        assert!(
            seqs.windows(2).all(|p| p[0] < p[1]),
            "writer {w}'s later appends get later seqs"
        );
        given.extend(seqs);
    }
    given.sort_unstable();
    assert_eq!(
        given,
        (1..=200).collect::<Vec<i64>>(),
        "every seq handed out once"
    );

    for store in stores {
        let stored = store
            .session_messages("s", None, 1_000)
            .await
            .expect("history");
        assert_eq!(seqs(&stored), (1..=200).collect::<Vec<i64>>(), "no gap");
        let got: BTreeSet<String> = texts(&stored).into_iter().collect();
        let sent: BTreeSet<String> = (0..8)
            .flat_map(|w| (0..25).map(move |i| format!("w{w}-{i:02}")))
            .collect();
        assert_eq!(got.len(), 200, "no message stored twice");
        assert_eq!(got, sent, "every message stored");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appenders_get_every_seq_exactly_once() {
    each_backend(async |store| race_appenders(&[store]).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_appending_to_one_session_share_its_seqs() {
    each_backend_url(async |_, url| {
        let one = Store::open(&url).await.expect("first instance");
        let two = Store::open(&url).await.expect("second instance");
        race_appenders(&[one.clone(), two.clone()]).await;
        one.close().await;
        two.close().await;
    })
    .await;
}

#[tokio::test]
async fn messages_survive_closing_and_reopening_the_store() {
    each_backend_url(async |_, url| {
        let store = Store::open(&url).await.expect("open");
        let s = session("s", Some("config:ops"), 1);
        store.create_session(&s).await.unwrap();
        store
            .append_messages("s", &[message("before", 1), message("restart", 2)])
            .await
            .unwrap();
        store.close().await;

        let store = Store::open(&url).await.expect("reopen");
        assert_eq!(store.session_by_key(&s.session_key).await.unwrap(), Some(s));
        let history = store.session_messages("s", None, 10).await.unwrap();
        assert_eq!(texts(&history), ["before", "restart"]);
        assert_eq!(
            store
                .append_messages("s", &[message("after", 3)])
                .await
                .unwrap(),
            [3],
            "seqs go on where they stopped"
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn seqs_go_past_messages_written_another_way() {
    each_backend(async |store| {
        store
            .create_session(&session("s", Some("k"), 1))
            .await
            .unwrap();
        // Rows that did not bump the session's last_seq (another tool, an older writer).
        store
            .execute_raw(
                "INSERT INTO messages (session_id, seq, role, content, created_at_ms) \
                 VALUES ('s', 1, 'user', '{\"content\": \"x1\"}', 1), \
                 ('s', 2, 'user', '{\"content\": \"x2\"}', 2)",
            )
            .await
            .unwrap();
        assert_eq!(
            store
                .append_messages("s", &[message("m3", 3)])
                .await
                .unwrap(),
            [3],
            "the next seq is past the highest stored one"
        );
        assert_eq!(
            store
                .append_messages("s", &[message("m4", 4)])
                .await
                .unwrap(),
            [4]
        );
        let all = store.session_messages("s", None, 10).await.unwrap();
        assert_eq!(texts(&all), ["x1", "x2", "m3", "m4"]);
    })
    .await;
}

/// A message written some other way and committed while an append waits on its seq: the
/// append collides, its connection is closed, and the retry lands past it. Only Postgres
/// lets the two transactions overlap (SQLite runs one writer at a time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_that_collides_is_retried_past_the_other_writer() {
    use sqlx::{Connection, Executor};
    each_backend_url(async |backend, url| {
        if backend != Backend::Postgres {
            return;
        }
        let store = Store::open(&url).await.expect("open");
        store
            .create_session(&session("s", Some("k"), 1))
            .await
            .unwrap();
        let mut other = sqlx::PgConnection::connect(&url).await.expect("connect");
        other.execute("BEGIN").await.unwrap();
        other
            .execute(
                "INSERT INTO messages (session_id, seq, role, content, created_at_ms) \
                 VALUES ('s', 1, 'user', '{\"content\": \"other\"}', 1)",
            )
            .await
            .unwrap();
        let append = tokio::spawn({
            let store = store.clone();
            async move { store.append_messages("s", &[message("mine", 2)]).await }
        });
        // Wait until the append is blocked on seq 1, held by the open transaction (seen
        // from a third connection: a transaction keeps its first view of the activity).
        let mut watch = sqlx::PgConnection::connect(&url).await.expect("connect");
        let mut waited = 0;
        loop {
            let blocked: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&mut watch)
            .await
            .unwrap();
            if blocked > 0 {
                break;
            }
            waited += 1;
            assert!(waited < 500, "the append never waited on the other writer");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        other.execute("COMMIT").await.unwrap();
        assert_eq!(
            append.await.expect("join").expect("append"),
            [2],
            "the retry goes past the other writer's seq"
        );
        let all = store.session_messages("s", None, 10).await.unwrap();
        assert_eq!(texts(&all), ["other", "mine"]);
        other.close().await.unwrap();
        watch.close().await.unwrap();
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn stored_text_that_is_not_json_is_an_error_not_a_panic() {
    each_backend(async |store| {
        store
            .create_session(&session("s", Some("k"), 1))
            .await
            .unwrap();
        store
            .append_messages("s", &[message("fine", 1)])
            .await
            .unwrap();
        store
            .execute_raw(
                "INSERT INTO messages (session_id, seq, role, content, created_at_ms) \
                 VALUES ('s', 2, 'user', '{not json', 2)",
            )
            .await
            .unwrap();
        let err = store
            .session_messages("s", None, 10)
            .await
            .expect_err("corrupt content");
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        assert_eq!(
            texts(&store.session_messages("s", Some(2), 10).await.unwrap()),
            ["fine"],
            "pages without the bad row still read"
        );

        store
            .execute_raw("UPDATE sessions SET metadata = '[1,' WHERE id = 's'")
            .await
            .unwrap();
        let err = store.session("s").await.expect_err("corrupt metadata");
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        let err = store
            .session_by_key("key-of-s")
            .await
            .expect_err("corrupt metadata");
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        assert_eq!(
            store.count_sessions("k", 0).await.unwrap(),
            1,
            "counting does not read metadata"
        );
    })
    .await;
}
