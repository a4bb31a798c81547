//! Helpers for the services' integration tests: a fresh database and a store per test.
//!
//! The backend follows the environment: `TAVANA_TEST_DB` = `sqlite` (default) or
//! `postgres` (server from `TAVANA_TEST_PG_URL`), and Redis when `TAVANA_TEST_REDIS_URL`
//! is set.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;

use crate::db::{self, quote_ident};
use crate::store::{KvStore, MemoryStore, RedisStore};

/// The default PostgreSQL server for tests.
pub const DEFAULT_TEST_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A migrated database that exists as long as this value (the SQLite file is removed and
/// the PostgreSQL database dropped when it is dropped).
pub struct TestDb {
    /// The connection pool.
    pub db: DatabaseConnection,
    /// The database URL, for starting a service on the same database.
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { server_url: String, name: String },
}

impl TestDb {
    /// Returns true when the database is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.cleanup, Cleanup::Postgres { .. })
    }
}

/// Returns true when the tests should run on PostgreSQL (`TAVANA_TEST_DB=postgres`).
pub fn test_uses_postgres() -> bool {
    std::env::var("TAVANA_TEST_DB")
        .map(|value| {
            value.eq_ignore_ascii_case("postgres") || value.eq_ignore_ascii_case("postgresql")
        })
        .unwrap_or(false)
}

/// Returns the PostgreSQL server URL for tests.
pub fn test_pg_url() -> String {
    std::env::var("TAVANA_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_TEST_PG_URL.to_owned())
}

/// Creates a fresh database migrated with `M`, on the backend chosen by `TAVANA_TEST_DB`.
///
/// Panics when the database cannot be prepared: it is meant for tests only.
pub async fn test_db<M: MigratorTrait>() -> TestDb {
    let test_db = if test_uses_postgres() {
        let server_url = test_pg_url();
        let name = format!("tavana_test_{}", uuid::Uuid::new_v4().simple());
        let mut url = url::Url::parse(&server_url).expect("TAVANA_TEST_PG_URL is not a URL");
        url.set_path(&format!("/{name}"));
        let url = url.to_string();
        db::ensure_postgres_database(&url)
            .await
            .expect("cannot create the test database");
        let db = db::connect(&url, 5)
            .await
            .expect("cannot connect to the test database");
        TestDb {
            db,
            url,
            cleanup: Cleanup::Postgres { server_url, name },
        }
    } else {
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let url = db::sqlite_url(dir.path(), "test");
        let db = db::connect(&url, 5)
            .await
            .expect("cannot open the test database");
        TestDb {
            db,
            url,
            cleanup: Cleanup::Sqlite(dir),
        }
    };
    M::up(&test_db.db, None)
        .await
        .expect("test migration failed");
    test_db
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Cleanup::Postgres { server_url, name } = &self.cleanup else {
            return;
        };
        let (server_url, name) = (server_url.clone(), name.clone());
        // Drop may run inside or outside a runtime (or while one shuts down): a thread with
        // its own small runtime works in every case.
        let dropper = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Err(error) = drop_database(&server_url, &name).await {
                    eprintln!("could not drop test database {name}: {error:#}");
                }
            });
        });
        let _ = dropper.join();
    }
}

async fn drop_database(server_url: &str, name: &str) -> anyhow::Result<()> {
    use sea_orm::sqlx::{AssertSqlSafe, Connection, PgConnection};

    let mut admin = PgConnection::connect(server_url).await?;
    sea_orm::sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(name)
    .execute(&mut admin)
    .await?;
    sea_orm::sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_ident(name)
    )))
    .execute(&mut admin)
    .await?;
    admin.close().await?;
    Ok(())
}

/// Returns the Redis URL for tests from `TAVANA_TEST_REDIS_URL` (`None` when unset).
pub fn test_redis_url() -> Option<String> {
    std::env::var("TAVANA_TEST_REDIS_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// Returns a store for one test: Redis with a unique key prefix when
/// `TAVANA_TEST_REDIS_URL` is set, in-process otherwise.
///
/// Panics when Redis is configured but unreachable.
pub async fn test_store() -> Arc<dyn KvStore> {
    match test_redis_url() {
        Some(url) => {
            let prefix = format!("tavana-test-{}", uuid::Uuid::new_v4().simple());
            Arc::new(
                RedisStore::connect(&url, &prefix)
                    .await
                    .expect("cannot connect to the test Redis"),
            )
        }
        None => Arc::new(MemoryStore::new()),
    }
}
