//! Helpers for the services' integration tests: a fresh database and a store per test,
//! signed clients, and the check that every method refuses unverified callers.
//!
//! The backend follows the environment: `TAVANA_TEST_DB` = `sqlite` (default) or
//! `postgres` (server from `TAVANA_TEST_PG_URL`), and Redis when `TAVANA_TEST_REDIS_URL`
//! is set.
//!
//! Test support: a setup that cannot be prepared panics with its reason, as in a test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::uri::PathAndQuery;
use prost::Message;
use prost_types::FileDescriptorSet;
use tonic::Code;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;

use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;

use crate::Shared;
use crate::caller::Caller;
use crate::clock::AdjustableClock;
use crate::db::{self, quote_ident};
use crate::grpc;
use crate::store::{KvStore, MemoryStore, RedisStore};
use crate::trust::{self, Keyring, Policy, Signer};

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
/// The migrations run once per test binary: the first test migrates a template (a
/// PostgreSQL template database, or an SQLite file) and every test clones it, as the
/// Rust package registry's server does. The template is named after the binary and its
/// build time, so a rebuilt binary with changed migrations never sees an old template.
///
/// Panics when the database cannot be prepared: it is meant for tests only.
pub async fn test_db<M: MigratorTrait>() -> TestDb {
    let key = template_key::<M>();
    if test_uses_postgres() {
        let server_url = test_pg_url();
        let template = postgres_template::<M>(&server_url, &key)
            .await
            .expect("cannot prepare the template test database");
        let name = format!("tavana_test_{}", uuid::Uuid::new_v4().simple());
        clone_postgres_database(&server_url, &template, &name)
            .await
            .expect("cannot create the test database");
        let url = database_url(&server_url, &name);
        let db = db::connect(&url, 5)
            .await
            .expect("cannot connect to the test database");
        TestDb {
            db,
            url,
            cleanup: Cleanup::Postgres { server_url, name },
        }
    } else {
        let template = sqlite_template::<M>(&key)
            .await
            .expect("cannot prepare the template SQLite database");
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        std::fs::copy(&template, dir.path().join("test.db"))
            .expect("cannot copy the template SQLite database");
        let url = db::sqlite_url(dir.path(), "test");
        let db = db::connect(&url, 5)
            .await
            .expect("cannot open the test database");
        TestDb {
            db,
            url,
            cleanup: Cleanup::Sqlite(dir),
        }
    }
}

/// A name for the migrated template of `M` in this build of this test binary.
fn template_key<M>() -> String {
    use sha2::Digest;

    let exe = std::env::current_exe().unwrap_or_default();
    let built = std::fs::metadata(&exe)
        .and_then(|metadata| metadata.modified())
        .ok()
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default();
    let digest = sha2::Sha256::new()
        .chain_update(exe.to_string_lossy().as_bytes())
        .chain_update(built.as_nanos().to_le_bytes())
        .chain_update(std::any::type_name::<M>().as_bytes())
        .finalize();
    hex::encode(&digest[..8])
}

pub(crate) fn database_url(server_url: &str, name: &str) -> String {
    let mut url = url::Url::parse(server_url).expect("TAVANA_TEST_PG_URL is not a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// Returns the name of the migrated template database of `M`, creating it when missing.
async fn postgres_template<M: MigratorTrait>(
    server_url: &str,
    key: &str,
) -> anyhow::Result<String> {
    let template = format!("tavana_test_tpl_{key}");
    ensure_postgres_template(server_url, &template, |url| async move {
        let db = db::connect(&url, 1).await?;
        M::up(&db, None).await?;
        db.close().await?;
        Ok(())
    })
    .await?;
    Ok(template)
}

/// Makes sure the database `template` exists on the server of `server_url`: when it is
/// missing, `migrate` gets the URL of a fresh database to migrate, which is then renamed
/// to `template`. Concurrent test processes may each build one; the first to rename its
/// copy into place wins and the others drop theirs, so a half-migrated template is never
/// seen.
pub async fn ensure_postgres_template<F, Fut>(
    server_url: &str,
    template: &str,
    migrate: F,
) -> anyhow::Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    use sea_orm::sqlx::{AssertSqlSafe, Connection, PgConnection};

    if postgres_database_exists(server_url, template).await? {
        return Ok(());
    }
    let building = format!("tavana_test_build_{}", uuid::Uuid::new_v4().simple());
    let url = database_url(server_url, &building);
    db::ensure_postgres_database(&url).await?;
    migrate(url).await?;
    let mut admin = PgConnection::connect(server_url).await?;
    let renamed = sea_orm::sqlx::query(AssertSqlSafe(format!(
        "ALTER DATABASE {} RENAME TO {}",
        quote_ident(&building),
        quote_ident(template)
    )))
    .execute(&mut admin)
    .await;
    admin.close().await?;
    if renamed.is_err() {
        // Another process renamed its template into place first.
        drop_database(server_url, &building).await?;
    }
    Ok(())
}

/// Creates `name` as a copy of `template` on the server of `server_url`, retrying while
/// PostgreSQL still counts a session on the template (one that was closing when the copy
/// began).
pub async fn clone_postgres_database(
    server_url: &str,
    template: &str,
    name: &str,
) -> anyhow::Result<()> {
    use sea_orm::sqlx::{AssertSqlSafe, Connection, PgConnection};

    let mut admin = PgConnection::connect(server_url).await?;
    let statement = format!(
        "CREATE DATABASE {} TEMPLATE {}",
        quote_ident(name),
        quote_ident(template)
    );
    let mut attempt = 0;
    loop {
        match sea_orm::sqlx::query(AssertSqlSafe(statement.clone()))
            .execute(&mut admin)
            .await
        {
            Ok(_) => break,
            Err(error) if attempt < 50 && is_template_busy(&error) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
    admin.close().await?;
    Ok(())
}

fn is_template_busy(error: &sea_orm::sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|error| error.code())
        .is_some_and(|code| code == "55006")
}

/// Returns the path of the migrated SQLite template of `M`, creating it when missing.
/// It is written whole (`VACUUM INTO`) and renamed into place, so a reader never sees a
/// half-built file.
async fn sqlite_template<M: MigratorTrait>(key: &str) -> anyhow::Result<std::path::PathBuf> {
    use sea_orm::ConnectionTrait;

    let dir = std::env::temp_dir().join("tavana-test-templates");
    std::fs::create_dir_all(&dir)?;
    let template = dir.join(format!("{key}.db"));
    if template.exists() {
        return Ok(template);
    }
    let building = tempfile::tempdir()?;
    let db = db::connect(&db::sqlite_url(building.path(), "build"), 1).await?;
    M::up(&db, None).await?;
    let whole = dir.join(format!("{key}.{}.tmp", uuid::Uuid::new_v4().simple()));
    db.execute_unprepared(&format!(
        "VACUUM INTO '{}'",
        whole.display().to_string().replace('\'', "''")
    ))
    .await?;
    db.close().await?;
    std::fs::rename(&whole, &template)?;
    Ok(template)
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Cleanup::Postgres { server_url, name } = &self.cleanup else {
            return;
        };
        drop_postgres_databases(server_url, std::slice::from_ref(name));
    }
}

/// Drops `names` on the server of `server_url`, ending their sessions first, and waits
/// until done; an error is printed, not returned. Meant for `Drop`, which may run inside or
/// outside a runtime (or while one shuts down): a thread with its own small runtime works
/// in every case.
pub fn drop_postgres_databases(server_url: &str, names: &[String]) {
    let (server_url, names) = (server_url.to_owned(), names.to_vec());
    let dropper = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async move {
            for name in &names {
                if let Err(error) = drop_database(&server_url, name).await {
                    eprintln!("could not drop test database {name}: {error:#}");
                }
            }
        });
    });
    let _ = dropper.join();
}

/// Whether the server of `server_url` has a database named `name`.
pub async fn postgres_database_exists(server_url: &str, name: &str) -> anyhow::Result<bool> {
    use sea_orm::sqlx::{Connection, PgConnection};

    let mut admin = PgConnection::connect(server_url).await?;
    let exists = db::database_exists(&mut admin, name).await?;
    admin.close().await?;
    Ok(exists)
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

/// Returns the indexes of `table` as the database made them, by name: each one's name and
/// its definition (`CREATE INDEX ...`; empty for the ones SQLite makes for a key itself).
pub async fn table_indexes(db: &DatabaseConnection, table: &str) -> Vec<(String, String)> {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT indexname AS name, indexdef AS definition FROM pg_indexes \
             WHERE tablename = $1"
        }
        _ => {
            "SELECT name, COALESCE(sql, '') AS definition FROM sqlite_master \
             WHERE type = 'index' AND tbl_name = ?"
        }
    };
    let mut indexes: Vec<(String, String)> = db
        .query_all_raw(Statement::from_sql_and_values(backend, sql, [table.into()]))
        .await
        .expect("the catalogue lists the indexes")
        .iter()
        .map(|row| {
            (
                row.try_get("", "name").unwrap(),
                row.try_get("", "definition").unwrap(),
            )
        })
        .collect();
    indexes.sort();
    indexes
}

/// Returns how full inserts leave the pages of `table` (PostgreSQL's `fillfactor`), as
/// the catalogue states it: `None` when left at the default, and always on SQLite.
pub async fn table_page_fill(db: &DatabaseConnection, table: &str) -> Option<u32> {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    if db.get_database_backend() != DbBackend::Postgres {
        return None;
    }
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT option_value AS fill FROM pg_class, pg_options_to_table(reloptions) \
             WHERE relname = $1 AND option_name = 'fillfactor'",
            [table.into()],
        ))
        .await
        .expect("the catalogue lists the table's options")?;
    let fill: String = row.try_get("", "fill").unwrap();
    Some(fill.parse().expect("a fill factor is a number"))
}

/// Returns how PostgreSQL compresses the outbox's payloads stored out of line, as its
/// catalogue names the method (`lz4`, `pglz`): `None` when left at the server's default,
/// and always on SQLite.
pub async fn outbox_payload_compression(db: &DatabaseConnection) -> Option<&'static str> {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    if db.get_database_backend() != DbBackend::Postgres {
        return None;
    }
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT attcompression::text AS method FROM pg_attribute \
             WHERE attrelid = to_regclass('outbox') AND attname = 'payload'",
        ))
        .await
        .expect("the catalogue lists the outbox's columns")
        .expect("the outbox has a payload column");
    let method: String = row.try_get("", "method").unwrap();
    match method.as_str() {
        "l" => Some("lz4"),
        "p" => Some("pglz"),
        _ => None,
    }
}

/// Whether SQLite stores `table` in the order of its primary key (`WITHOUT ROWID`), as its
/// stored definition says; `None` on PostgreSQL.
pub async fn sqlite_table_without_rowid(db: &DatabaseConnection, table: &str) -> Option<bool> {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    if db.get_database_backend() != DbBackend::Sqlite {
        return None;
    }
    let sql: String = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
            [table.into()],
        ))
        .await
        .expect("the catalogue lists the tables")
        .expect("the table exists")
        .try_get("", "sql")
        .unwrap();
    Some(sql.ends_with("WITHOUT ROWID"))
}

/// Counts the pages an SQLite database writes from now on: the frames of its write-ahead
/// log, which [`PagesWritten::start`] empties first. A count that does not depend on the
/// machine, so a test can hold a write path to a budget of pages where a timing could not.
///
/// The count holds while the log stays under SQLite's automatic checkpoint (1,000 frames);
/// [`PagesWritten::count`] panics past it (measure fewer writes).
pub struct PagesWritten {
    wal: std::path::PathBuf,
    frame_bytes: u64,
}

/// SQLite's default `wal_autocheckpoint`: a commit that leaves more frames than this
/// checkpoints, and the log starts over.
const AUTOCHECKPOINT_FRAMES: u64 = 1_000;
/// The write-ahead log's header, before its first frame.
const WAL_HEADER_BYTES: u64 = 32;
/// Each frame's header, before its page.
const WAL_FRAME_HEADER_BYTES: u64 = 24;

impl PagesWritten {
    /// Checkpoints every page the log holds into the database and empties the log, or
    /// returns `None` on PostgreSQL. No transaction may be open on the file.
    pub async fn start(db: &DatabaseConnection) -> Option<PagesWritten> {
        use sea_orm::{ConnectionTrait, DbBackend, Statement};
        if db.get_database_backend() != DbBackend::Sqlite {
            return None;
        }
        let one = |sql: &'static str| async move {
            db.query_one_raw(Statement::from_string(DbBackend::Sqlite, sql))
                .await
                .expect("SQLite answers the pragma")
                .expect("the pragma returns a row")
        };
        // The log's pages copied first without waiting for readers: the truncation then
        // has nothing left to copy and only empties the log.
        one("PRAGMA wal_checkpoint(PASSIVE)").await;
        let checkpoint = one("PRAGMA wal_checkpoint(TRUNCATE)").await;
        let busy: i64 = checkpoint.try_get_by_index(0).unwrap();
        assert_eq!(busy, 0, "a transaction kept the log from being emptied");
        let file: String = one("PRAGMA database_list")
            .await
            .try_get("", "file")
            .unwrap();
        let page_size: i64 = one("PRAGMA page_size").await.try_get_by_index(0).unwrap();
        Some(PagesWritten {
            wal: std::path::PathBuf::from(format!("{file}-wal")),
            frame_bytes: WAL_FRAME_HEADER_BYTES + u64::try_from(page_size).unwrap(),
        })
    }

    /// The pages written since [`PagesWritten::start`], counted again for each commit
    /// that wrote them.
    pub fn count(&self) -> u64 {
        let bytes = std::fs::metadata(&self.wal).map_or(0, |metadata| metadata.len());
        let frames = bytes.saturating_sub(WAL_HEADER_BYTES) / self.frame_bytes;
        assert!(
            frames < AUTOCHECKPOINT_FRAMES,
            "{frames} frames: the log may have been checkpointed and reused; measure fewer writes"
        );
        frames
    }
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

/// The process-wide parts of a service under test: `clock`, a fresh [`test_store`] and
/// the [`test_keyring`].
pub async fn test_shared(clock: &Arc<AdjustableClock>) -> Shared {
    Shared {
        clock: clock.shared(),
        store: test_store().await,
        keyring: test_keyring(),
        in_process: grpc::InProcess::default(),
    }
}

/// The signal a service under test stops on (see [`spawn_app`]).
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A service serving on an ephemeral local port for one test. Dropping it asks the
/// service to stop; [`RunningService::stop`] also waits until it has.
pub struct RunningService {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl RunningService {
    /// A signed channel to the service (see [`test_channel`]).
    pub fn channel(&self, timeout: Duration) -> grpc::Channel {
        test_channel(&self.url, timeout)
    }

    /// Stops the service (its outbox relay with it) and waits until it has; panics if
    /// serving failed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("the service task panicked")
                .expect("the service failed");
        }
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Binds an ephemeral local port and runs `serve(listener, shutdown)` on it in a task:
/// every service's `serve` (or a fake peer's) has that shape.
pub async fn spawn_app<F, Fut>(serve: F) -> RunningService
where
    F: FnOnce(tokio::net::TcpListener, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("cannot bind a local port");
    let url = format!(
        "http://{}",
        listener
            .local_addr()
            .expect("a bound listener has an address")
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        listener,
        Box::pin(async move {
            let _ = stopped.await;
        }),
    ));
    RunningService {
        url,
        stop: Some(stop),
        task: Some(task),
    }
}

/// Waits until `done` holds, asking every 20 ms; panics naming `what` after `limit`.
///
/// Only for effects the contract makes eventual (an outbox delivery, a cache's expiry);
/// what the contract says is visible at once is asserted at once.
pub async fn wait_until(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let reached = tokio::time::timeout(limit, async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "not within {limit:?}: {what}");
}

/// A keyring holding a fresh key of every principal, the same for the whole test process.
pub fn test_keyring() -> Keyring {
    static KEYRING: OnceLock<Keyring> = OnceLock::new();
    KEYRING
        .get_or_init(|| Keyring::ephemeral(&trust::PRINCIPALS).expect("cannot make test keys"))
        .clone()
}

/// The signer of tests' clients: the gateway for users and merchants, each service with
/// its own key for `Caller::service(..)`.
pub fn test_signer() -> Signer {
    test_keyring()
        .suite_signer(trust::GATEWAY)
        .expect("the test keyring holds the gateway's key")
}

/// A signed client channel to `url` for tests (see [`test_signer`]).
pub fn test_channel(url: &str, timeout: Duration) -> grpc::Channel {
    grpc::Dialer::new(test_signer(), timeout)
        .channel(url)
        .expect("invalid test gRPC URL")
}

/// The method names of the gRPC service `service` in `descriptor_set`.
pub fn methods_of(descriptor_set: &[u8], service: &str) -> Vec<String> {
    let set = FileDescriptorSet::decode(descriptor_set).expect("invalid descriptor set");
    set.file
        .iter()
        .flat_map(|file| {
            file.service
                .iter()
                .filter(|candidate| format!("{}.{}", file.package(), candidate.name()) == service)
                .flat_map(|candidate| candidate.method.iter().map(|m| m.name().to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Asserts that `policy` names every method of its service in `descriptor_set` and no
/// other (default deny: a new method without an allow-list entry fails this), and that
/// its reads are methods of the service.
pub fn assert_policy_covers_every_method(descriptor_set: &[u8], policy: &Policy) {
    let methods = methods_of(descriptor_set, policy.service);
    assert!(!methods.is_empty(), "{} has no methods", policy.service);
    for method in &methods {
        assert!(
            policy.allowed(method).is_some(),
            "{}/{method} has no allow-list entry",
            policy.service
        );
    }
    for (name, _) in policy.methods {
        assert!(
            methods.iter().any(|method| method == name),
            "allow-list entry {name} is not a method of {}",
            policy.service
        );
    }
    for name in policy.reads {
        assert!(
            methods.iter().any(|method| method == name),
            "read {name} is not a method of {}",
            policy.service
        );
    }
}

/// The caller a principal presents in tests: a support user through the gateway, or the
/// service itself.
fn caller_of(principal: &str) -> Caller {
    if principal == trust::GATEWAY {
        Caller::User {
            employee_id: "E-TEST".into(),
            national_id: "0010000062".into(),
            grants: vec![
                crate::RoleGrant::global(crate::Role::Employee),
                crate::RoleGrant::global(crate::Role::Support),
            ],
        }
    } else {
        Caller::service(principal)
    }
}

async fn raw_call(channel: &Channel, path: &str, metadata: MetadataMap) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("the service is not reachable");
    let mut request = tonic::Request::new(());
    *request.metadata_mut() = metadata;
    let path = PathAndQuery::try_from(path).expect("invalid gRPC path");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    match grpc.unary(request, path, codec).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

fn with_assertion(token: &str) -> MetadataMap {
    let mut metadata = MetadataMap::new();
    metadata.insert(
        trust::ASSERTION_KEY,
        token.parse().expect("an assertion is ascii"),
    );
    metadata
}

/// Calls every method of `policy.service` (from `descriptor_set`) on the server at `url`
/// (which trusts [`test_keyring`]) and asserts: UNAUTHENTICATED without a credential, with
/// forged plain caller metadata, with an assertion signed by an unknown key, with a wrong
/// audience and with an expired one; PERMISSION_DENIED for a valid assertion from a
/// principal missing from the method's allow-list.
pub async fn assert_every_method_guarded(url: &str, descriptor_set: &[u8], policy: &Policy) {
    assert_policy_covers_every_method(descriptor_set, policy);
    let channel =
        grpc::unsigned_channel(url, Duration::from_secs(10)).expect("invalid test gRPC URL");
    let keyring = test_keyring();
    let signer = test_signer();
    let stranger = Keyring::ephemeral(&trust::PRINCIPALS)
        .and_then(|keyring| keyring.suite_signer(trust::GATEWAY))
        .expect("cannot make stranger keys");
    let other_audience = trust::PRINCIPALS
        .into_iter()
        .find(|principal| *principal != policy.audience && *principal != trust::CLI)
        .expect("another principal");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();

    for method in methods_of(descriptor_set, policy.service) {
        let path = format!("/{}/{method}", policy.service);
        let allowed = policy.allowed(&method).unwrap_or_default();
        let principal = allowed.first().copied().unwrap_or(trust::GATEWAY);
        let caller = caller_of(principal);
        let sign = |signer: &Signer, audience: &str, at: u64| {
            signer
                .assertion_at(&caller, audience, None, at)
                .expect("cannot sign")
        };

        let mut forged = MetadataMap::new();
        Caller::service(principal).write_metadata(&mut forged);
        let refused = [
            ("no credential", MetadataMap::new()),
            ("forged plain metadata", forged),
            (
                "unknown key",
                with_assertion(&sign(&stranger, policy.audience, now)),
            ),
            (
                "wrong audience",
                with_assertion(&sign(&signer, other_audience, now)),
            ),
            (
                "expired",
                with_assertion(&sign(&signer, policy.audience, now - 3_600)),
            ),
        ];
        for (case, metadata) in refused {
            assert_eq!(
                raw_call(&channel, &path, metadata).await,
                Code::Unauthenticated,
                "{path}: {case}"
            );
        }

        let outsider = trust::PRINCIPALS
            .into_iter()
            .find(|candidate| !allowed.contains(candidate));
        if let Some(outsider) = outsider {
            let token = keyring
                .suite_signer(trust::GATEWAY)
                .expect("gateway key")
                .assertion(&caller_of(outsider), policy.audience, None)
                .expect("cannot sign");
            assert_eq!(
                raw_call(&channel, &path, with_assertion(&token)).await,
                Code::PermissionDenied,
                "{path}: valid assertion from {outsider}, not on the allow-list"
            );
        }
    }
}

/// The caller of a request a fake peer received from a service under test: verified from
/// its assertion for `audience` with [`test_keyring`] (anonymous when it does not verify).
pub fn signed_caller<T>(request: &tonic::Request<T>, audience: &str) -> Caller {
    request
        .metadata()
        .get(trust::ASSERTION_KEY)
        .and_then(|value| value.to_str().ok())
        .and_then(|token| test_keyring().verify(token, audience).ok())
        .map(|(_, caller)| caller)
        .unwrap_or_default()
}
