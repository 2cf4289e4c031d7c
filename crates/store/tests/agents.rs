//! The scheduler's shared state on both backends: an agent breaker is written, updated
//! in place and closed; a schedule's pause and last fire round-trip, fires are recorded
//! in any order, and a pause ends by itself or by an operator's resume.

mod common;

use common::each_backend;
use sluice_store::agents::{AgentBreakerRow, ScheduleRow};

#[tokio::test]
async fn agent_breakers_open_update_and_close() {
    each_backend(async |store| {
        let open = AgentBreakerRow {
            agent: "writer".into(),
            state: "open".into(),
            failures: 5,
            trips: 1,
            opened_at_ms: 1_000,
            until_ms: 61_000,
            reason: "5 failed runs in a row (last: breaker_tripped)".into(),
            updated_at_ms: 1_000,
        };
        store.put_agent_breaker(&open).await.unwrap();
        let half = AgentBreakerRow {
            state: "half_open".into(),
            updated_at_ms: 61_000,
            ..open.clone()
        };
        store.put_agent_breaker(&half).await.unwrap();
        assert_eq!(store.agent_breakers().await.unwrap(), vec![half]);
        assert!(store.close_agent_breaker("writer").await.unwrap());
        assert!(!store.close_agent_breaker("writer").await.unwrap());
        assert!(store.agent_breakers().await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_schedules_pause_and_last_fire_round_trip() {
    each_backend(async |store| {
        let s = ScheduleRow {
            agent: "nightly".into(),
            paused: false,
            reason: None,
            paused_until_ms: None,
            last_fire_ms: Some(5_000),
            updated_at_ms: 5_000,
        };
        store.put_schedule(&s).await.unwrap();
        let paused = ScheduleRow {
            paused: true,
            reason: Some("budget_exceeded: key `nightly` reached its daily budget".into()),
            paused_until_ms: Some(86_400_000),
            updated_at_ms: 6_000,
            ..s
        };
        store.put_schedule(&paused).await.unwrap();
        assert_eq!(store.schedules().await.unwrap(), vec![paused]);
    })
    .await;
}

#[tokio::test]
async fn schedule_fires_pauses_and_resumes() {
    each_backend(async |store| {
        let row = |store: &sluice_store::Store| {
            let store = store.clone();
            async move { store.schedules().await.unwrap().pop().unwrap() }
        };
        store.schedule_fired("nightly", 2_000, 2_001).await.unwrap();
        store.schedule_fired("nightly", 1_000, 2_002).await.unwrap();
        let fired = row(&store).await;
        assert_eq!(
            (fired.paused, fired.last_fire_ms),
            (false, Some(2_000)),
            "an earlier fire recorded late changes nothing"
        );

        store
            .pause_schedule("nightly", "budget_exceeded: spent", Some(10_000), 3_000)
            .await
            .unwrap();
        let paused = row(&store).await;
        assert_eq!(
            (
                paused.paused,
                paused.reason.as_deref(),
                paused.paused_until_ms,
                paused.last_fire_ms
            ),
            (
                true,
                Some("budget_exceeded: spent"),
                Some(10_000),
                Some(2_000)
            ),
            "a pause keeps the last fire"
        );
        store.schedule_fired("nightly", 4_000, 4_000).await.unwrap();
        assert!(row(&store).await.paused, "a fire does not resume");
        assert!(!store.resume_schedule_due("nightly", 9_999).await.unwrap());
        assert!(store.resume_schedule_due("nightly", 10_000).await.unwrap());
        let resumed = row(&store).await;
        assert_eq!(
            (resumed.paused, resumed.reason, resumed.paused_until_ms),
            (false, None, None)
        );

        store
            .pause_schedule("nightly", "breaker_tripped: max_steps", None, 11_000)
            .await
            .unwrap();
        assert!(
            !store
                .resume_schedule_due("nightly", i64::MAX)
                .await
                .unwrap(),
            "only an operator resumes a pause without a time"
        );
        assert!(store.resume_schedule("nightly", 12_000).await.unwrap());
        assert!(
            !store.resume_schedule("nightly", 12_001).await.unwrap(),
            "not paused"
        );
        assert!(!store.resume_schedule("ghost", 12_002).await.unwrap());
    })
    .await;
}
