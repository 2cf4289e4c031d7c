//! Webhook deliveries seen, on both backends: of twenty concurrent sightings of one
//! delivery exactly one is the first; another channel's same id is its own; old
//! sightings are forgotten and only they.

mod common;

use common::each_backend;

#[tokio::test]
async fn a_delivery_is_first_seen_once_however_many_arrive_at_once() {
    each_backend(async |store| {
        let sightings = (0..20).map(|_| {
            let store = store.clone();
            async move { store.first_sight("slack", "Ev123", 1_000).await.unwrap() }
        });
        let firsts = futures_util::future::join_all(sightings)
            .await
            .into_iter()
            .filter(|first| *first)
            .count();
        assert_eq!(firsts, 1);
        assert!(!store.first_sight("slack", "Ev123", 2_000).await.unwrap());
        assert!(store.first_sight("telegram", "Ev123", 2_000).await.unwrap());
        assert_eq!(store.forget_webhooks_before(1_500).await.unwrap(), 1);
        assert!(
            store.first_sight("slack", "Ev123", 3_000).await.unwrap(),
            "forgotten, so seen afresh"
        );
        assert!(!store.first_sight("telegram", "Ev123", 3_000).await.unwrap());
    })
    .await;
}
