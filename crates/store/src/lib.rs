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
//! [`profiles`] (provider auth-profile state), [`spend`] (reports).

pub mod breakers;
pub mod buckets;
pub mod keys;
pub mod ledger;
pub mod profiles;
pub mod spend;

use std::path::Path;
use std::time::Duration;

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
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("limit bucket {0} kept changing under concurrent writers")]
    Contended(String),
}

/// Every table of the schema, on both backends.
pub const TABLES: [&str; 10] = [
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
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

impl Store {
    /// Connects (creating a SQLite file and its directory when missing). Does not migrate.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        install_default_drivers();
        let (backend, url) = if let Some(path) = url.strip_prefix("sqlite://") {
            let file = path.split('?').next().unwrap_or_default();
            if file.is_empty() {
                return Err(StoreError::UnsupportedUrl(url.to_owned()));
            }
            let dir = Path::new(file)
                .parent()
                .filter(|d| !d.as_os_str().is_empty());
            if file != ":memory:"
                && let Some(dir) = dir
            {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                    path: file.to_owned(),
                    source,
                })?;
            }
            let url = if path.contains("mode=") {
                url.to_owned()
            } else if path.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        options = match backend {
            // One writer at a time in SQLite; WAL lets readers go on meanwhile, and the busy
            // timeout turns lock contention into a short wait instead of an error.
            Backend::Sqlite => options.max_connections(4).after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
                        .await?;
                    Ok(())
                })
            }),
            Backend::Postgres => options.max_connections(16),
        };
        let pool = options.connect(&url).await?;
        Ok(Store { pool, backend })
    }

    /// Connects and applies pending migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let store = Store::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the backend's pending migrations (idempotent).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// One round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Runs one statement without binds: administrative SQL from code, never from input
    /// (tests create and drop their databases with it).
    pub async fn execute_raw(&self, sql: &str) -> Result<(), StoreError> {
        self.pool
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
        .fetch_one(&self.pool)
        .await?;
        Ok(sqlx::Row::try_get(&row, "n")?)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `($1, $2, …), (…)` for `rows` rows of `cols` values on Postgres; `(?, ?, …), (…)` on
/// SQLite. SQLite reads `$1` as a *named* parameter, and sqlx looks every bound
/// parameter's name up, a linear scan of the statement's names each time: for a 10-row
/// ledger statement (160 parameters) that showed as ~2 % of the gateway's CPU in a profile.
/// Plain `?` parameters have no names to scan.
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
