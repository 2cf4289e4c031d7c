//! What the store's test binaries share: a fresh database on each backend, a temp SQLite
//! file and the machine's PostgreSQL through `SLUICE_TEST_DATABASE_URL` (each test in a
//! database of its own).

#![allow(dead_code, reason = "each test binary uses the helpers it needs")]

use sluice_store::{Backend, Store};

/// Runs `test` on a fresh SQLite file and on a fresh Postgres database, opened (and
/// migrated) for it and closed after it.
pub async fn each_backend(test: impl AsyncFn(Store)) {
    each_backend_url(async |backend, url| {
        let store = Store::open(&url).await.expect("the store opens");
        assert_eq!(store.backend(), backend, "{url} picks its backend");
        test(store.clone()).await;
        store.close().await;
    })
    .await;
}

/// Runs `test` with the URL of a fresh SQLite file (in a directory not yet made) and of a
/// fresh, empty Postgres database, for tests that open the store themselves: several
/// handles on one database, a close and a reopen.
pub async fn each_backend_url(test: impl AsyncFn(Backend, String)) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/nested/sluice.db", dir.path().display());
    test(Backend::Sqlite, url).await;

    let Some(admin_url) = postgres_url() else {
        return;
    };
    let name = format!("sluice_test_{}", uuid::Uuid::new_v4().simple());
    let admin = Store::connect(&admin_url)
        .await
        .expect("postgres reachable");
    admin
        .execute_raw(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    test(Backend::Postgres, with_database(&admin_url, &name)).await;
    let _ = admin
        .execute_raw(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await;
    admin.close().await;
}

pub fn postgres_url() -> Option<String> {
    match std::env::var("SLUICE_TEST_DATABASE_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var("SLUICE_TEST_SKIP_POSTGRES").is_ok() => None,
        Err(_) => panic!(
            "SLUICE_TEST_DATABASE_URL is not set: run scripts/test (it starts PostgreSQL and sets it), \
             or set it to e.g. postgres://postgres@127.0.0.1:5432/postgres, \
             or SLUICE_TEST_SKIP_POSTGRES=1 to test SQLite only"
        ),
    }
}

/// The same server URL naming another database.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let server = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{server}/{db}?{q}"),
        None => format!("{server}/{db}"),
    }
}
