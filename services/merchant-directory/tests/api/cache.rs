//! The listing cache: pages come from the store until a change bumps the generation, and
//! a missed bump is bounded by the TTL (R27). Each test runs in-process and, when
//! `TAVANA_TEST_REDIS_URL` is set, against a real Redis.

use std::sync::Arc;
use std::time::Duration;

use tavana_kit::store::{KvStore, MemoryStore, RedisStore};
use tavana_kit::testing::{test_db, test_redis_url, wait_until};
use tavana_merchant_directory_migration::Migrator;

use crate::helpers::*;

/// The in-process store, and a Redis store with a fresh key prefix when configured.
async fn stores() -> Vec<(&'static str, Arc<dyn KvStore>)> {
    let mut stores: Vec<(&'static str, Arc<dyn KvStore>)> =
        vec![("in-process", Arc::new(MemoryStore::new()))];
    if let Some(url) = test_redis_url() {
        let prefix = format!("tavana-test-{}", uuid::Uuid::new_v4().simple());
        stores.push((
            "redis",
            Arc::new(RedisStore::connect(&url, &prefix).await.unwrap()),
        ));
    } else {
        eprintln!("TAVANA_TEST_REDIS_URL is not set: the Redis variant is skipped");
    }
    stores
}

#[tokio::test]
async fn r27_listing_is_served_from_the_cache_until_a_change_bumps_it() {
    for (name, store) in stores().await {
        let app = spawn_with(Arc::new(test_db::<Migrator>().await), store, 300).await;
        app.add_merchant(online("DigiKala", "digikala.com")).await;
        assert_eq!(app.names_for("").await, ["DigiKala"], "{name}");

        // A row written behind the service's back is not seen: the page is cached.
        insert_merchant_row(&app, "m-direct", "Bamilo", "bamilo.com").await;
        assert_eq!(app.names_for("").await, ["DigiKala"], "{name}: cached page");

        // An approval bumps the generation: the next listing is fresh.
        app.add_merchant(online("Snapp Market", "snappmarket.com"))
            .await;
        assert_eq!(
            app.names_for("").await,
            ["Bamilo", "DigiKala", "Snapp Market"],
            "{name}: after approval"
        );
    }
}

#[tokio::test]
async fn r27_suspension_removes_the_merchant_from_cached_listings_at_once() {
    for (name, store) in stores().await {
        let app = spawn_with(Arc::new(test_db::<Migrator>().await), store, 300).await;
        let (merchant_id, _) = app.add_merchant(online("DigiKala", "digikala.com")).await;
        app.add_merchant(online("Bamilo", "bamilo.com")).await;
        assert_eq!(app.names_for("").await, ["Bamilo", "DigiKala"], "{name}");
        assert_eq!(app.names_for("digi").await, ["DigiKala"], "{name}");

        app.suspend(&merchant_id).await;

        assert_eq!(app.names_for("").await, ["Bamilo"], "{name}");
        assert!(app.names_for("digi").await.is_empty(), "{name}");
    }
}

#[tokio::test]
async fn r27_suspension_on_one_replica_clears_the_cache_of_another() {
    let Some(url) = test_redis_url() else {
        eprintln!("TAVANA_TEST_REDIS_URL is not set: skipped");
        return;
    };
    let prefix = format!("tavana-test-{}", uuid::Uuid::new_v4().simple());
    let store: Arc<dyn KvStore> = Arc::new(RedisStore::connect(&url, &prefix).await.unwrap());
    let db = Arc::new(test_db::<Migrator>().await);
    let first = spawn_with(db.clone(), store.clone(), 300).await;
    let second = spawn_with(db, store, 300).await;
    let (merchant_id, _) = first.add_merchant(online("DigiKala", "digikala.com")).await;
    assert_eq!(second.names_for("").await, ["DigiKala"]);

    first.suspend(&merchant_id).await;

    assert!(second.names_for("").await.is_empty());
}

#[tokio::test]
async fn r27_a_missed_bump_shows_a_suspended_merchant_no_longer_than_the_ttl() {
    for (name, store) in stores().await {
        let app = spawn_with(Arc::new(test_db::<Migrator>().await), store, 1).await;
        let (merchant_id, _) = app.add_merchant(online("DigiKala", "digikala.com")).await;
        assert_eq!(app.names_for("").await, ["DigiKala"], "{name}");

        // Suspended behind the service's back: no generation bump.
        set_status_row(&app, &merchant_id, "suspended").await;

        // R27: the page is cached for its TTL (one second here), no longer.
        wait_until(
            &format!("{name}: the stale page expires with its ttl"),
            Duration::from_secs(10),
            async || app.names_for("").await.is_empty(),
        )
        .await;
    }
}

#[tokio::test]
async fn r27_cache_off_reads_the_database_every_time() {
    let app = spawn_with(
        Arc::new(test_db::<Migrator>().await),
        Arc::new(MemoryStore::new()),
        0,
    )
    .await;
    app.add_merchant(online("DigiKala", "digikala.com")).await;
    assert_eq!(app.names_for("").await, ["DigiKala"]);

    insert_merchant_row(&app, "m-direct", "Bamilo", "bamilo.com").await;

    assert_eq!(app.names_for("").await, ["Bamilo", "DigiKala"]);
    assert!(
        app.store
            .get("merchant-directory:listing:generation")
            .await
            .unwrap()
            .is_none()
    );
}
