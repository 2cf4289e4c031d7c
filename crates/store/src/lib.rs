//! Sluice's durable state through sqlx: SQLite as the embedded default (a file under
//! `data/`, created on first start) and PostgreSQL for production and for several gateway
//! instances sharing one state. Same logical schema, one migrations folder per backend
//! (`migrations/sqlite`, `migrations/postgres`), applied by [`Store::migrate`].
//!
//! One code path serves both backends: queries go through sqlx's `Any` driver and are
//! written in the SQL both understand (`$N` placeholders, BIGINT milliseconds, integer
//! nano-dollars). The store inserts what it is given; ids, secrets and timestamps are made
//! by the callers. Nothing here sits on a request's hot path: keys are served from memory
//! and spend rows go through the batched [`ledger`] writer.
//!
//! Layout: [`keys`] (API keys), [`ledger`] (spend rows and the batched writer),
//! [`profiles`] (provider auth-profile state), [`sessions`] (WebSocket sessions and their
//! ordered messages), [`spend`] (reports), [`channels`] (chat channels' deliveries and
//! pairings).

pub mod agents;
pub mod breakers;
pub mod buckets;
pub mod channels;
mod file;
pub mod keys;
pub mod ledger;
pub mod profiles;
pub mod runs;
pub mod sessions;
pub mod spend;
pub mod webhooks;

pub use channels::{Accepted, DeliveryRow, NewDelivery, Paired, PairingRow, PartRow};
pub use file::FileCheck;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("cannot create the directory for {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the database file {path} is missing, but {marker} says one was created there: it was \
         deleted or moved. Restore it (keys, budgets and the spend ledger live in it), or \
         delete {marker} to start with an empty database"
    )]
    DatabaseMissing { path: String, marker: String },
    #[error(
        "the database file {0} was replaced by another file while the gateway had it open; \
         writes are refused until a restart opens the new file"
    )]
    FileReplaced(String),
    #[error("cannot put the database file back at {path}: {source}")]
    Restore {
        path: String,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("limit bucket {0} kept changing under concurrent writers")]
    Contended(String),
    #[error("no session {0}")]
    SessionNotFound(String),
    #[error("session {0}: message seqs kept colliding with another writer's")]
    SessionContended(String),
    /// A caller asked for a state the row cannot take (a bug in the caller).
    #[error("invalid state: {0}")]
    InvalidState(String),
}

/// Every table of the schema, on both backends.
pub const TABLES: [&str; 15] = [
    "api_keys",
    "spend",
    "auth_profiles",
    "sessions",
    "messages",
    "runs",
    "run_events",
    "webhook_seen",
    "limit_buckets",
    "key_breakers",
    "agent_breakers",
    "schedules",
    "channel_deliveries",
    "channel_delivery_parts",
    "channel_pairings",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Swapped only when a deleted SQLite file is restored ([`Store::check_file`]).
    pool: ArcSwap<AnyPool>,
    backend: Backend,
    /// The SQLite file, when the store is one.
    file: Option<file::DbFile>,
    /// Writes hold it shared; restoring a deleted file holds it alone, so no write lands
    /// in the deleted file after the copy was taken.
    writes: tokio::sync::RwLock<()>,
    closing: std::sync::atomic::AtomicBool,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

impl Store {
    /// Connects (creating a SQLite file and its directory when missing). Does not migrate.
    ///
    /// A SQLite file gets a marker beside it (`<file>.created`); when the marker is there
    /// and the file is not, the file was deleted or moved, and connecting fails with
    /// [`StoreError::DatabaseMissing`] instead of creating an empty database in its place.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        install_default_drivers();
        let (backend, url, file) = if let Some(path) = url.strip_prefix("sqlite://") {
            let file = path.split('?').next().unwrap_or_default();
            if file.is_empty() {
                return Err(StoreError::UnsupportedUrl(url.to_owned()));
            }
            let db_file = (file != ":memory:").then(|| file::DbFile::new(file));
            if let Some(f) = &db_file {
                f.check_before_open()?;
            }
            let with_mode = |mode: &str| {
                if path.contains("mode=") {
                    url.to_owned()
                } else if path.contains('?') {
                    format!("{url}&mode={mode}")
                } else {
                    format!("{url}?mode={mode}")
                }
            };
            // The file is created once, here; the pool then opens it read-write without
            // creating, so a connection opened after the file was deleted fails instead
            // of making an empty database in its place.
            if let Some(f) = &db_file
                && !f.path().exists()
            {
                connect_pool(Backend::Sqlite, &with_mode("rwc"))
                    .await?
                    .close()
                    .await;
            }
            let url = match &db_file {
                Some(_) => with_mode("rw"),
                None => with_mode("rwc"),
            };
            (Backend::Sqlite, url, db_file)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned(), None)
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        let pool = connect_pool(backend, &url).await?;
        if let Some(f) = &file {
            f.opened(url);
        }
        Ok(Store {
            inner: Arc::new(Inner {
                pool: ArcSwap::from_pointee(pool),
                backend,
                file,
                writes: tokio::sync::RwLock::new(()),
                closing: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// Connects and applies pending migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let store = Store::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the backend's pending migrations (idempotent).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let pool = self.pool();
        match self.inner.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&*pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&*pool).await?,
        }
        Ok(())
    }

    /// One round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&*self.pool()).await?;
        Ok(())
    }

    /// Runs one statement without binds: administrative SQL from code, never from input
    /// (tests create and drop their databases with it).
    pub async fn execute_raw(&self, sql: &str) -> Result<(), StoreError> {
        let _write = self.write_permit().await?;
        self.pool()
            .execute(sqlx::AssertSqlSafe(sql.to_owned()))
            .await?;
        Ok(())
    }

    /// Rows in one of [`TABLES`] (a fixed list: the name is never spliced from input).
    pub async fn count_rows(&self, table: &str) -> Result<i64, StoreError> {
        let Some(table) = TABLES.iter().find(|t| **t == table) else {
            return Err(StoreError::Corrupt(format!("no table {table}")));
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM {table}"
        )))
        .fetch_one(&*self.pool())
        .await?;
        Ok(sqlx::Row::try_get(&row, "n")?)
    }

    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// The SQLite file, when the store is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        self.inner.file.as_ref().map(|f| f.path())
    }

    pub(crate) fn pool(&self) -> Arc<AnyPool> {
        self.inner.pool.load_full()
    }

    /// Held for the length of a write. Refused when the SQLite file was replaced under
    /// the gateway (a write would land in a file nobody will read again).
    pub(crate) async fn write_permit(
        &self,
    ) -> Result<tokio::sync::RwLockReadGuard<'_, ()>, StoreError> {
        let permit = self.inner.writes.read().await;
        if let Some(f) = &self.inner.file
            && f.is_replaced()
        {
            return Err(StoreError::FileReplaced(f.path().display().to_string()));
        }
        Ok(permit)
    }

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        self.inner
            .closing
            .store(true, std::sync::atomic::Ordering::Release);
        self.pool().close().await;
    }

    /// Whether [`Store::close`] was called (a closed pool is then no fault to mend).
    pub(crate) fn closing(&self) -> bool {
        self.inner
            .closing
            .load(std::sync::atomic::Ordering::Acquire)
    }
}

/// The pool for one backend. SQLite gets one writer at a time; WAL lets readers go on
/// meanwhile, and the busy timeout turns lock contention into a short wait instead of an
/// error.
async fn connect_pool(backend: Backend, url: &str) -> Result<AnyPool, StoreError> {
    let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
    let options = match backend {
        Backend::Sqlite => options.max_connections(4).after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
                    .await?;
                Ok(())
            })
        }),
        Backend::Postgres => options.max_connections(16),
    };
    Ok(options.connect(url).await?)
}

/// `($1, $2, …), (…)` for `rows` rows of `cols` values on Postgres; `(?, ?, …), (…)` on
/// SQLite. SQLite reads `$1` as a *named* parameter, and sqlx looks every bound
/// parameter's name up, a linear scan of the statement's names each time: for a 10-row
/// ledger statement (160 parameters) that showed as ~2 % of the gateway's CPU in a profile.
/// Plain `?` parameters have no names to scan.
///
/// Not `sqlx::QueryBuilder::<Any>::push_values`: under the `Any` driver its `push_bind`
/// writes `?` whatever the backend behind the connection (sqlx issue #3000, still so in
/// 0.9), and Postgres refuses `?` with a syntax error (SQLSTATE 42601).
pub(crate) fn values_placeholders(backend: Backend, rows: usize, cols: usize) -> String {
    if backend == Backend::Sqlite {
        let row = format!("({})", vec!["?"; cols].join(", "));
        return vec![row; rows].join(", ");
    }
    let mut out = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..cols {
            if c > 0 {
                out.push_str(", ");
            }
            out.push('$');
            out.push_str(&(r * cols + c + 1).to_string());
        }
        out.push(')');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_positional_on_sqlite_and_numbered_on_postgres() {
        assert_eq!(values_placeholders(Backend::Sqlite, 2, 2), "(?, ?), (?, ?)");
        assert_eq!(
            values_placeholders(Backend::Postgres, 2, 2),
            "($1, $2), ($3, $4)"
        );
    }
}
