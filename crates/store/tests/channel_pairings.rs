//! Chat channels' pairings on both backends: a request and its notice are written once
//! per user, under the channel's cap even when requests arrive at once; an expired or
//! revoked request can be renewed; a code approves once and not after it expired; expired
//! requests are cleaned up.

mod common;

use common::each_backend;
use sluice_store::channels::{kind, pairing_state, state};
use sluice_store::{NewDelivery, Paired, PairingRow};

/// The pairing-code notice a request writes.
fn notice(id: &str, message_key: &str, created_at_ms: i64) -> NewDelivery {
    NewDelivery {
        id: id.into(),
        channel: "telegram".into(),
        bot: "bot1".into(),
        message_key: message_key.into(),
        kind: kind::NOTICE.into(),
        conversation: "telegram:bot1:42".into(),
        platform_user: "42".into(),
        target: r#"{"chat_id":42}"#.into(),
        input: None,
        text: Some("Your code is K7QX3M9P".into()),
        state: state::READY.into(),
        created_at_ms,
    }
}

fn request(bot: &str, user: &str, code: &str, now_ms: i64, expires_at_ms: i64) -> PairingRow {
    PairingRow {
        channel: "telegram".into(),
        bot: bot.into(),
        user_id: user.into(),
        state: pairing_state::PENDING.into(),
        code: Some(code.into()),
        code_expires_at_ms: Some(expires_at_ms),
        display_name: Some(format!("User {user}")),
        target: Some(format!(r#"{{"chat_id":"{user}"}}"#)),
        approved_at_ms: None,
        approved_by: None,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
    }
}

#[tokio::test]
async fn a_pairing_request_is_written_once_and_capped_per_bot() {
    each_backend(async |store| {
        let ask = async |bot: &str, user: &str, code: &str, now: i64, expires: i64| {
            let key = format!("{bot}-{user}-{code}");
            let row = request(bot, user, code, now, expires);
            store
                .request_pairing(&row, 2, &notice(&key, &key, now), now)
                .await
                .unwrap()
        };
        assert_eq!(ask("bot1", "u1", "C1", 1_000, 2_000).await, Paired::New);
        let pending = store
            .list_pairings(Some("telegram"), false, 1_000)
            .await
            .unwrap();
        assert_eq!(pending, [request("bot1", "u1", "C1", 1_000, 2_000)]);
        assert_eq!(
            store
                .delivery("bot1-u1-C1")
                .await
                .unwrap()
                .expect("its notice")
                .state,
            state::READY,
            "its notice is written"
        );

        assert_eq!(
            ask("bot1", "u1", "C1b", 1_100, 2_100).await,
            Paired::Pending
        );
        assert!(
            store.delivery("bot1-u1-C1b").await.unwrap().is_none(),
            "no second notice"
        );
        assert_eq!(
            store.approve_pairing("C1b", "ops", 1_200).await.unwrap(),
            None
        );

        assert_eq!(ask("bot1", "u2", "C2", 1_000, 3_000).await, Paired::New);
        assert_eq!(ask("bot1", "u3", "C3", 1_000, 3_000).await, Paired::Full);
        assert!(store.delivery("bot1-u3-C3").await.unwrap().is_none());
        assert_eq!(
            ask("bot2", "u3", "D3", 1_000, 2_000).await,
            Paired::New,
            "the cap is per bot"
        );

        // u1's code expired: its place is free, and u1 may ask again while there is room.
        assert_eq!(ask("bot1", "u3", "C3", 2_500, 3_500).await, Paired::New);
        assert_eq!(ask("bot1", "u1", "C1c", 2_500, 3_500).await, Paired::Full);
        assert_eq!(
            store.approve_pairing("C1", "ops", 2_500).await.unwrap(),
            None,
            "expired"
        );
        assert_eq!(
            store.approve_pairing("D3", "ops", 2_500).await.unwrap(),
            None,
            "expired"
        );

        let approved = store
            .approve_pairing("C2", "ops", 2_600)
            .await
            .unwrap()
            .expect("approved");
        assert_eq!(
            approved,
            PairingRow {
                state: pairing_state::APPROVED.into(),
                code: None,
                code_expires_at_ms: None,
                approved_at_ms: Some(2_600),
                approved_by: Some("ops".into()),
                updated_at_ms: 2_600,
                ..request("bot1", "u2", "C2", 1_000, 3_000)
            }
        );
        assert_eq!(
            store.approve_pairing("C2", "ops", 2_700).await.unwrap(),
            None,
            "approved once"
        );
        assert_eq!(
            ask("bot1", "u2", "C2b", 2_800, 4_000).await,
            Paired::Approved
        );

        // An approval freed a place: u1's renewed request takes it, with a new code.
        assert_eq!(ask("bot1", "u1", "C1c", 2_800, 3_800).await, Paired::New);
        let u1 = store
            .list_pairings(Some("telegram"), false, 2_800)
            .await
            .unwrap();
        let u1 = u1
            .iter()
            .find(|p| p.user_id == "u1" && p.bot == "bot1")
            .expect("u1");
        assert_eq!(
            (
                u1.code.as_deref(),
                u1.code_expires_at_ms,
                u1.created_at_ms,
                u1.updated_at_ms
            ),
            (Some("C1c"), Some(3_800), 1_000, 2_800),
            "renewed in place"
        );

        assert_eq!(
            store.approved_users("telegram", "bot1").await.unwrap(),
            ["u2"]
        );
        assert!(
            store
                .approved_users("telegram", "bot2")
                .await
                .unwrap()
                .is_empty()
        );
        assert!(store.is_approved("telegram", "bot1", "u2").await.unwrap());
        assert!(!store.is_approved("telegram", "bot1", "u1").await.unwrap());
        assert!(!store.is_approved("telegram", "bot2", "u2").await.unwrap());

        let listed = |rows: Vec<PairingRow>| {
            let mut v: Vec<_> = rows
                .into_iter()
                .map(|p| format!("{}:{}:{}", p.bot, p.user_id, p.state))
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            listed(store.list_pairings(None, false, 2_800).await.unwrap()),
            ["bot1:u1:pending", "bot1:u2:approved", "bot1:u3:pending"],
            "bot2's expired request is not shown by default"
        );
        assert_eq!(
            listed(
                store
                    .list_pairings(Some("slack"), true, 2_800)
                    .await
                    .unwrap()
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            listed(store.list_pairings(None, true, 2_800).await.unwrap()).len(),
            4
        );

        assert!(
            store
                .revoke_pairing("telegram", "bot1", "u2", 2_900)
                .await
                .unwrap()
        );
        assert!(
            !store
                .revoke_pairing("telegram", "bot1", "u2", 2_950)
                .await
                .unwrap(),
            "revoked once"
        );
        assert!(!store.is_approved("telegram", "bot1", "u2").await.unwrap());
        assert!(
            store
                .approved_users("telegram", "bot1")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            ask("bot1", "u2", "C2c", 3_000, 3_900).await,
            Paired::Full,
            "a revoked user asks like anyone"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pairing_requests_keep_the_cap_and_one_code_per_user() {
    each_backend(async |store| {
        let spawn = |bot: &'static str, user: String, i: usize| {
            let store = store.clone();
            tokio::spawn(async move {
                let code = format!("{bot}-{i}");
                let row = request(bot, &user, &code, 1_000, 9_000);
                store
                    .request_pairing(&row, 3, &notice(&code, &code, 1_000), 1_000)
                    .await
                    .unwrap()
            })
        };
        let tasks: Vec<_> = (0..12).map(|i| spawn("many", format!("u{i}"), i)).collect();
        let mut new = 0;
        for task in tasks {
            let paired = task.await.unwrap();
            assert!(matches!(paired, Paired::New | Paired::Full), "{paired:?}");
            new += usize::from(paired == Paired::New);
        }
        assert_eq!(new, 3, "max_pending requests, however many arrive at once");

        let tasks: Vec<_> = (0..12).map(|i| spawn("one", "u".into(), i)).collect();
        let mut new = 0;
        for task in tasks {
            let paired = task.await.unwrap();
            assert!(
                matches!(paired, Paired::New | Paired::Pending),
                "{paired:?}"
            );
            new += usize::from(paired == Paired::New);
        }
        assert_eq!(new, 1, "one request per user");
        assert_eq!(store.count_rows("channel_pairings").await.unwrap(), 4);
        assert_eq!(
            store.count_rows("channel_deliveries").await.unwrap(),
            4,
            "one notice each"
        );
    })
    .await;
}

#[tokio::test]
async fn expired_requests_are_cleaned_up_and_nothing_else() {
    each_backend(async |store| {
        let ask = async |user: &str, expires: i64| {
            let row = request("bot1", user, user, 1_000, expires);
            let key = format!("pair-{user}");
            store
                .request_pairing(&row, 10, &notice(&key, &key, 1_000), 1_000)
                .await
                .unwrap()
        };
        ask("expired", 2_000).await;
        ask("live", 4_000).await;
        ask("approved", 2_000).await;
        store
            .approve_pairing("approved", "ops", 1_500)
            .await
            .unwrap()
            .expect("approved");
        assert_eq!(store.expire_pairings(3_000).await.unwrap(), 1);
        let left = store.list_pairings(None, true, 3_000).await.unwrap();
        let mut users: Vec<_> = left.iter().map(|p| p.user_id.as_str()).collect();
        users.sort_unstable();
        assert_eq!(users, ["approved", "live"]);
    })
    .await;
}
