//! Chat channels' deliveries on both backends: a message is accepted once under
//! concurrent deliveries (one transaction with its `webhook_seen` row), every delivery and
//! part transition refuses an unexpected prior state, the deliverer's scan and a
//! conversation's order, an operator's retry, and cleanup.

mod common;

use common::each_backend;
use sluice_store::channels::{kind, part_state, state};
use sluice_store::{Accepted, NewDelivery, PartRow, Store, StoreError};

fn answer(id: &str, message_key: &str, conversation: &str, created_at_ms: i64) -> NewDelivery {
    NewDelivery {
        id: id.into(),
        channel: "telegram".into(),
        bot: "bot1".into(),
        message_key: message_key.into(),
        kind: kind::ANSWER.into(),
        conversation: conversation.into(),
        platform_user: "42".into(),
        target: r#"{"chat_id":42}"#.into(),
        input: Some("hello".into()),
        text: None,
        state: state::ACCEPTED.into(),
        created_at_ms,
    }
}

fn notice(id: &str, message_key: &str, created_at_ms: i64) -> NewDelivery {
    NewDelivery {
        kind: kind::NOTICE.into(),
        input: None,
        text: Some("Your code is K7QX3M9P".into()),
        state: state::READY.into(),
        ..answer(id, message_key, "telegram:bot1:42", created_at_ms)
    }
}

fn part(delivery_id: &str, idx: i64, state: &str, message_id: Option<&str>) -> PartRow {
    PartRow {
        delivery_id: delivery_id.into(),
        idx,
        state: state.into(),
        message_id: message_id.map(Into::into),
        text_sha256: format!("sha-{idx}"),
        updated_at_ms: 1_000,
    }
}
/// The state of a delivery that must exist.
async fn state_of(store: &Store, id: &str) -> String {
    let row = store.delivery(id).await.expect("the store answers");
    row.expect("the delivery").state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_is_accepted_once_however_many_deliveries_arrive_at_once() {
    each_backend(async |store| {
        // Twenty retries of one event at once.
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let row = answer(&format!("d{i}"), "m1", "c1", 1_000);
                    store.accept_message("telegram:bot1", "Ev1", &row).await
                })
            })
            .collect();
        let mut new = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            if task.await.unwrap().unwrap() == Accepted::New {
                new.push(format!("d{i}"));
            }
        }
        assert_eq!(new.len(), 1, "exactly one accept is new: {new:?}");
        assert_eq!(store.count_rows("webhook_seen").await.unwrap(), 1);
        assert_eq!(store.count_rows("channel_deliveries").await.unwrap(), 1);
        let row = store
            .delivery(&new[0])
            .await
            .unwrap()
            .expect("the winner's row");
        assert_eq!(
            (
                row.state.as_str(),
                row.attempts,
                row.next_attempt_at_ms,
                row.updated_at_ms
            ),
            (state::ACCEPTED, 0, 1_000, 1_000),
            "accepted and due at once"
        );
        assert_eq!((row.run_id, row.text, row.done_at_ms), (None, None, None));

        // Twenty distinct events carrying one message at once: one delivery.
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let row = answer(&format!("e{i}"), "m2", "c1", 2_000);
                    store
                        .accept_message("telegram:bot1", &format!("Ev2-{i}"), &row)
                        .await
                })
            })
            .collect();
        let mut news = 0;
        for task in tasks {
            news += usize::from(task.await.unwrap().unwrap() == Accepted::New);
        }
        assert_eq!(news, 1, "one delivery per message key");
        assert_eq!(store.count_rows("webhook_seen").await.unwrap(), 21);
        assert_eq!(store.count_rows("channel_deliveries").await.unwrap(), 2);

        // A later event with a seen message key, and a seen event with a new key.
        let again = answer("x1", "m1", "c1", 3_000);
        assert_eq!(
            store
                .accept_message("telegram:bot1", "Ev3", &again)
                .await
                .unwrap(),
            Accepted::Duplicate
        );
        let retried = answer("x2", "m3", "c1", 3_000);
        assert_eq!(
            store
                .accept_message("telegram:bot1", "Ev1", &retried)
                .await
                .unwrap(),
            Accepted::Duplicate
        );
        assert!(store.delivery("x1").await.unwrap().is_none());
        assert!(store.delivery("x2").await.unwrap().is_none());
        assert_eq!(store.count_rows("channel_deliveries").await.unwrap(), 2);
        // The same event id on another channel is its own.
        let other = answer("x3", "m3", "c1", 3_000);
        assert_eq!(
            store.accept_message("slack", "Ev1", &other).await.unwrap(),
            Accepted::New
        );
    })
    .await;
}

#[tokio::test]
async fn an_accept_that_fails_leaves_its_event_unseen() {
    each_backend(async |store| {
        let first = answer("d1", "m1", "c1", 1_000);
        assert_eq!(
            store
                .accept_message("telegram:bot1", "Ev1", &first)
                .await
                .unwrap(),
            Accepted::New
        );
        // The same delivery id again is an error after the webhook_seen insert.
        let clash = answer("d1", "m2", "c1", 1_000);
        assert!(
            store
                .accept_message("telegram:bot1", "Ev2", &clash)
                .await
                .is_err()
        );
        assert!(
            store
                .first_sight("telegram:bot1", "Ev2", 2_000)
                .await
                .unwrap(),
            "the failed accept rolled its webhook_seen row back, so the retry does the work"
        );
        assert_eq!(store.count_rows("channel_deliveries").await.unwrap(), 1);
    })
    .await;
}

#[tokio::test]
async fn delivery_transitions_refuse_an_unexpected_prior_state() {
    each_backend(async |store| {
        store
            .insert_notice(&answer("d", "m1", "c1", 1_000))
            .await
            .unwrap();
        assert!(!store.delivery_running("nope", "run1", 1_100).await.unwrap());
        assert!(store.delivery_running("d", "run1", 1_100).await.unwrap());
        assert!(
            store.delivery_running("d", "run1", 1_150).await.unwrap(),
            "the same run again is idempotent"
        );
        assert!(
            !store.delivery_running("d", "run2", 1_200).await.unwrap(),
            "another run cannot take it"
        );
        let row = store.delivery("d").await.unwrap().unwrap();
        assert_eq!(
            (row.state.as_str(), row.run_id.as_deref(), row.updated_at_ms),
            (state::RUNNING, Some("run1"), 1_150)
        );

        assert!(
            store
                .delivery_later("d", 2, 9_000, "busy", 1_300)
                .await
                .unwrap()
        );
        let row = store.delivery("d").await.unwrap().unwrap();
        assert_eq!(
            (
                row.attempts,
                row.next_attempt_at_ms,
                row.last_error.as_deref()
            ),
            (2, 9_000, Some("busy"))
        );

        assert!(
            store
                .delivery_ready("d", "the answer", 2_000)
                .await
                .unwrap()
        );
        assert!(
            !store
                .delivery_ready("d", "another answer", 2_100)
                .await
                .unwrap(),
            "a reply is written once"
        );
        assert!(
            !store.delivery_running("d", "run1", 2_100).await.unwrap(),
            "ready is past running"
        );
        let row = store.delivery("d").await.unwrap().unwrap();
        assert_eq!(
            (
                row.state.as_str(),
                row.text.as_deref(),
                row.next_attempt_at_ms,
                row.attempts
            ),
            (state::READY, Some("the answer"), 2_000, 0),
            "ready, due at once, its sends counted afresh"
        );
        assert!(
            store
                .delivery_later("d", 1, 2_500, "429", 2_200)
                .await
                .unwrap()
        );

        assert!(matches!(
            store.finish_delivery("d", state::READY, None, 3_000).await,
            Err(StoreError::InvalidState(_))
        ));
        assert!(
            store
                .finish_delivery("d", state::SENT, None, 3_000)
                .await
                .unwrap()
        );
        assert!(
            !store
                .finish_delivery("d", state::FAILED, Some("late"), 3_100)
                .await
                .unwrap(),
            "a delivery ends once"
        );
        assert!(
            !store.delivery_ready("d", "again", 3_100).await.unwrap(),
            "no ready from sent"
        );
        assert!(
            !store
                .delivery_later("d", 3, 4_000, "x", 3_100)
                .await
                .unwrap()
        );
        let row = store.delivery("d").await.unwrap().unwrap();
        assert_eq!(
            (
                row.state.as_str(),
                row.done_at_ms,
                row.last_error.as_deref()
            ),
            (state::SENT, Some(3_000), Some("429")),
            "no error given keeps the last one"
        );
        assert_eq!(
            row.next_attempt_at_ms, 2_500,
            "the refused later wrote nothing"
        );

        // An accepted delivery may fail outright; a notice is born ready.
        store
            .insert_notice(&answer("a", "m2", "c1", 1_000))
            .await
            .unwrap();
        assert!(
            store
                .finish_delivery("a", state::FAILED, Some("refused"), 1_500)
                .await
                .unwrap()
        );
        assert_eq!(state_of(&store, "a").await, state::FAILED);
        assert!(
            store
                .insert_notice(&notice("n", "m3", 1_000))
                .await
                .unwrap()
        );
        assert!(
            !store
                .insert_notice(&notice("n2", "m3", 1_000))
                .await
                .unwrap(),
            "one per message key"
        );
        assert!(
            !store.delivery_running("n", "run1", 1_100).await.unwrap(),
            "a notice has no run"
        );
        assert!(!store.delivery_ready("n", "other", 1_100).await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn due_deliveries_are_the_live_ones_whose_time_came_oldest_first() {
    each_backend(async |store| {
        for (id, key, created) in [("b", "m1", 100), ("a", "m2", 100), ("c", "m3", 50)] {
            store
                .insert_notice(&answer(id, key, "c1", created))
                .await
                .unwrap();
        }
        store
            .insert_notice(&notice("later", "m4", 60))
            .await
            .unwrap();
        assert!(
            store
                .delivery_later("later", 1, 10_000, "429", 70)
                .await
                .unwrap()
        );
        store
            .insert_notice(&notice("done", "m5", 10))
            .await
            .unwrap();
        store
            .finish_delivery("done", state::SENT, None, 20)
            .await
            .unwrap();
        store
            .insert_notice(&notice("future", "m6", 5_000))
            .await
            .unwrap();

        let ids = |rows: Vec<sluice_store::DeliveryRow>| {
            rows.into_iter().map(|r| r.id).collect::<Vec<_>>()
        };
        assert_eq!(
            ids(store.due_deliveries(1_000, 10).await.unwrap()),
            ["c", "a", "b"]
        );
        assert_eq!(
            ids(store.due_deliveries(1_000, 2).await.unwrap()),
            ["c", "a"]
        );
        assert_eq!(
            ids(store.due_deliveries(100, 10).await.unwrap()),
            ["c", "a", "b"],
            "due at exactly its time"
        );
        assert_eq!(ids(store.due_deliveries(99, 10).await.unwrap()), ["c"]);
        assert_eq!(
            ids(store.due_deliveries(10_000, 10).await.unwrap()),
            ["c", "later", "a", "b", "future"]
        );
    })
    .await;
}

#[tokio::test]
async fn parts_change_only_from_the_state_expected() {
    each_backend(async |store| {
        store
            .insert_notice(&notice("d", "m1", 1_000))
            .await
            .unwrap();
        for idx in [2, 0, 1] {
            assert!(
                store
                    .put_part(&part("d", idx, part_state::POSTING, None), None)
                    .await
                    .unwrap()
            );
        }
        assert!(
            !store
                .put_part(&part("d", 0, part_state::SENT, Some("x")), None)
                .await
                .unwrap(),
            "an index is inserted once"
        );
        let posted = part("d", 0, part_state::POSTED, Some("msg-0"));
        assert!(
            !store
                .put_part(&posted, Some(part_state::POSTED))
                .await
                .unwrap(),
            "it is posting, not posted"
        );
        assert!(
            !store
                .put_part(
                    &part("d", 9, part_state::POSTED, None),
                    Some(part_state::POSTING)
                )
                .await
                .unwrap()
        );
        assert!(
            store
                .put_part(&posted, Some(part_state::POSTING))
                .await
                .unwrap()
        );
        let parts = store.delivery_parts("d").await.unwrap();
        assert_eq!(parts.iter().map(|p| p.idx).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(parts[0], posted);
        assert_eq!(parts[1], part("d", 1, part_state::POSTING, None));

        assert!(
            !store
                .delete_part("d", 0, part_state::POSTING)
                .await
                .unwrap()
        );
        assert!(store.delete_part("d", 0, part_state::POSTED).await.unwrap());
        assert_eq!(store.delivery_parts("d").await.unwrap().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn a_sent_message_id_finds_its_delivery_and_part() {
    each_backend(async |store| {
        let wa = NewDelivery {
            channel: "whatsapp".into(),
            bot: "whatsapp".into(),
            ..notice("w", "wamid.in", 1_000)
        };
        store.insert_notice(&wa).await.unwrap();
        store
            .insert_notice(&notice("t", "m1", 1_000))
            .await
            .unwrap();
        let sent = part("w", 1, part_state::UNCERTAIN, Some("wamid.out"));
        store
            .put_part(&part("w", 0, part_state::SENT, Some("wamid.0")), None)
            .await
            .unwrap();
        store.put_part(&sent, None).await.unwrap();
        store
            .put_part(&part("t", 0, part_state::POSTED, Some("wamid.out")), None)
            .await
            .unwrap();

        let (row, found) = store
            .delivery_by_message_id("whatsapp", "wamid.out")
            .await
            .unwrap()
            .expect("found");
        assert_eq!((row.id.as_str(), found), ("w", sent));
        let (row, found) = store
            .delivery_by_message_id("telegram", "wamid.out")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (row.id.as_str(), found.idx),
            ("t", 0),
            "the channel decides"
        );
        assert!(
            store
                .delivery_by_message_id("whatsapp", "nope")
                .await
                .unwrap()
                .is_none()
        );
    })
    .await;
}

#[tokio::test]
async fn an_operator_retries_failed_rows_and_uncertain_ones_only_by_force() {
    each_backend(async |store| {
        // Failed with its reply: ready again, due now, not ended.
        store
            .insert_notice(&notice("f", "m1", 1_000))
            .await
            .unwrap();
        store
            .delivery_later("f", 5, 1_500, "500", 1_100)
            .await
            .unwrap();
        store
            .finish_delivery("f", state::FAILED, Some("gave up"), 2_000)
            .await
            .unwrap();
        assert!(store.retry_delivery("f", false, 3_000).await.unwrap());
        let row = store.delivery("f").await.unwrap().unwrap();
        assert_eq!(
            (
                row.state.as_str(),
                row.attempts,
                row.next_attempt_at_ms,
                row.done_at_ms
            ),
            (state::READY, 0, 3_000, None)
        );
        assert!(
            !store.retry_delivery("f", true, 3_100).await.unwrap(),
            "ready is not retried"
        );

        // Failed before it had a reply: accepted, its run forgotten.
        store
            .insert_notice(&answer("a", "m2", "c1", 1_000))
            .await
            .unwrap();
        store.delivery_running("a", "run1", 1_100).await.unwrap();
        store
            .finish_delivery("a", state::FAILED, None, 2_000)
            .await
            .unwrap();
        assert!(store.retry_delivery("a", false, 3_000).await.unwrap());
        let row = store.delivery("a").await.unwrap().unwrap();
        assert_eq!((row.state.as_str(), row.run_id), (state::ACCEPTED, None));
        assert!(store.delivery_running("a", "run2", 3_100).await.unwrap());

        // Uncertain: refused without force; with it, the parts that may not have landed go.
        store
            .insert_notice(&notice("u", "m3", 1_000))
            .await
            .unwrap();
        store
            .put_part(&part("u", 0, part_state::SENT, Some("w0")), None)
            .await
            .unwrap();
        store
            .put_part(&part("u", 1, part_state::UNCERTAIN, None), None)
            .await
            .unwrap();
        store
            .put_part(&part("u", 2, part_state::SENDING, None), None)
            .await
            .unwrap();
        store
            .finish_delivery("u", state::UNCERTAIN, Some("no answer"), 2_000)
            .await
            .unwrap();
        assert!(!store.retry_delivery("u", false, 3_000).await.unwrap());
        assert_eq!(state_of(&store, "u").await, state::UNCERTAIN);
        assert_eq!(
            store.delivery_parts("u").await.unwrap().len(),
            3,
            "nothing deleted"
        );
        assert!(store.retry_delivery("u", true, 3_000).await.unwrap());
        assert_eq!(state_of(&store, "u").await, state::READY);
        let parts = store.delivery_parts("u").await.unwrap();
        assert_eq!(
            parts,
            [part("u", 0, part_state::SENT, Some("w0"))],
            "the sent part stays"
        );

        store
            .finish_delivery("u", state::SENT, None, 4_000)
            .await
            .unwrap();
        assert!(
            !store.retry_delivery("u", true, 5_000).await.unwrap(),
            "sent is not retried"
        );
    })
    .await;
}

#[tokio::test]
async fn a_conversation_waits_for_its_older_live_deliveries() {
    each_backend(async |store| {
        for (id, created) in [("r1", 100), ("r2", 200), ("r3", 200), ("r4", 300)] {
            store
                .insert_notice(&answer(id, id, "c1", created))
                .await
                .unwrap();
        }
        store
            .insert_notice(&answer("o", "o", "c2", 50))
            .await
            .unwrap();
        store
            .finish_delivery("r1", state::SENT, None, 150)
            .await
            .unwrap();

        assert_eq!(
            store
                .pending_in_conversation("c1", 300, "r4")
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            store
                .pending_in_conversation("c1", 200, "r3")
                .await
                .unwrap(),
            1,
            "r2 came in the same ms with a smaller id"
        );
        assert_eq!(
            store
                .pending_in_conversation("c1", 200, "r2")
                .await
                .unwrap(),
            0
        );
        store.delivery_ready("r2", "done", 400).await.unwrap();
        assert_eq!(
            store
                .pending_in_conversation("c1", 200, "r3")
                .await
                .unwrap(),
            1,
            "ready is live"
        );
        store
            .finish_delivery("r2", state::FAILED, None, 500)
            .await
            .unwrap();
        assert_eq!(
            store
                .pending_in_conversation("c1", 200, "r3")
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            store.pending_in_conversation("c2", 300, "x").await.unwrap(),
            1
        );
    })
    .await;
}

#[tokio::test]
async fn deliveries_are_listed_newest_first_by_state_and_channel() {
    each_backend(async |store| {
        store.insert_notice(&notice("n1", "m1", 100)).await.unwrap();
        store.insert_notice(&notice("n2", "m2", 200)).await.unwrap();
        let slack = NewDelivery {
            channel: "slack".into(),
            ..notice("s", "m3", 300)
        };
        store.insert_notice(&slack).await.unwrap();
        store
            .finish_delivery("n1", state::FAILED, None, 400)
            .await
            .unwrap();
        let ids = |rows: Vec<sluice_store::DeliveryRow>| {
            rows.into_iter().map(|r| r.id).collect::<Vec<_>>()
        };
        assert_eq!(
            ids(store.list_deliveries(None, None, 10).await.unwrap()),
            ["s", "n2", "n1"]
        );
        assert_eq!(
            ids(store.list_deliveries(None, None, 1).await.unwrap()),
            ["s"]
        );
        assert_eq!(
            ids(store
                .list_deliveries(Some(state::READY), None, 10)
                .await
                .unwrap()),
            ["s", "n2"]
        );
        assert_eq!(
            ids(store
                .list_deliveries(Some(state::READY), Some("telegram"), 10)
                .await
                .unwrap()),
            ["n2"]
        );
        assert_eq!(
            ids(store
                .list_deliveries(None, Some("telegram"), 10)
                .await
                .unwrap()),
            ["n2", "n1"]
        );
    })
    .await;
}

#[tokio::test]
async fn cleanup_forgets_ended_deliveries_only() {
    each_backend(async |store| {
        for (id, end, at) in [
            ("old-sent", Some(state::SENT), 100),
            ("old-failed", Some(state::FAILED), 100),
            ("old-uncertain", Some(state::UNCERTAIN), 100),
            ("new-sent", Some(state::SENT), 5_000),
            ("live", None, 0),
        ] {
            store.insert_notice(&notice(id, id, 10)).await.unwrap();
            store
                .put_part(&part(id, 0, part_state::SENT, Some(id)), None)
                .await
                .unwrap();
            if let Some(end) = end {
                store.finish_delivery(id, end, None, at).await.unwrap();
            }
        }
        assert_eq!(store.forget_deliveries_before(1_000).await.unwrap(), 2);
        assert!(store.delivery("old-sent").await.unwrap().is_none());
        assert!(store.delivery("old-failed").await.unwrap().is_none());
        assert!(store.delivery_parts("old-sent").await.unwrap().is_empty());
        assert_eq!(store.count_rows("channel_deliveries").await.unwrap(), 3);
        assert_eq!(
            store.count_rows("channel_delivery_parts").await.unwrap(),
            3,
            "their parts went with them"
        );
        assert_eq!(store.forget_deliveries_before(1_000).await.unwrap(), 0);
    })
    .await;
}
