//! The scheduler's shared state on both backends: an agent breaker is written, updated
//! in place and closed; a schedule's pause and last fire round-trip.

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
