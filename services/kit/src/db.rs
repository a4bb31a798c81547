//! Database connections: SQLite (embedded default) and PostgreSQL (production).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use anyhow::Context;
use sea_orm::sqlx::postgres::PgConnectOptions;
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::sqlx::{AssertSqlSafe, Connection};
use sea_orm::{
    ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    DatabaseTransaction, DbBackend, DbErr, EntityTrait, ExecResult, QueryFilter, QueryResult,
    SqliteTransactionMode, SqlxSqliteConnector, Statement, StatementBuilder, TransactionOptions,
    TransactionTrait,
};
use sea_orm_migration::sea_query::{
    Alias, Expr, Index, IndexCreateStatement, IntoTableRef, OnConflict, Query,
};
use sea_orm_migration::{MigrationName, MigrationTrait, MigratorTrait, SchemaManager};
use tokio::sync::OwnedMutexGuard;

/// How long a SQLite connection waits for another writer before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Ids bound per statement when a statement names many rows: well below the parameter
/// limits of SQLite (32,766) and PostgreSQL (65,535).
pub const IDS_PER_STATEMENT: usize = 1_000;
/// How long to wait for a new database connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A pooled PostgreSQL connection idle at least this long is pinged before it is handed
/// out (a server restart or a proxy may have closed it meanwhile); a busy one is not.
/// The pool's default pings on every checkout: one more round trip before every statement
/// outside a transaction and every transaction.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(30);

/// Returns the URL of a service's SQLite file in `data_dir` (created when missing).
pub fn sqlite_url(data_dir: &Path, service: &str) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        data_dir.join(format!("{service}.db")).display()
    )
}

/// Returns true for a `postgres:` or `postgresql:` URL.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres:") || url.starts_with("postgresql:")
}

/// Returns true when the connection talks to PostgreSQL.
pub fn is_postgres(db: &impl ConnectionTrait) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}

/// Connects to the database at `url` with a pool of at most `max_connections`.
///
/// SQLite files (and their parent directory) are created when missing, and every
/// connection runs in WAL mode with foreign keys on, a 10 s busy timeout and
/// `synchronous=NORMAL`. A checkout pings only a PostgreSQL connection idle for
/// [`PING_IF_IDLE_FOR`], never a SQLite one (an open file does not hang up; the ping
/// would only cost a hop to the connection's worker thread).
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections.max(1))
        .connect_timeout(CONNECT_TIMEOUT)
        .acquire_timeout(CONNECT_TIMEOUT)
        .sqlx_logging(false);

    if url.starts_with("sqlite:") {
        options.test_before_acquire(false);
        let parsed: SqliteConnectOptions = url
            .parse()
            .with_context(|| format!("invalid SQLite URL {url}"))?;
        let file = parsed.get_filename();
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if in_memory {
            // Every connection to an in-memory database sees its own database.
            options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        } else if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create directory {}", parent.display()))?;
        }
        options.map_sqlx_sqlite_opts(|opts| {
            opts.create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .foreign_keys(true)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .synchronous(SqliteSynchronous::Normal)
        });
    } else if is_postgres_url(url) {
        options.test_before_acquire_if_idle_for(PING_IF_IDLE_FOR);
    } else {
        anyhow::bail!("unsupported database URL scheme (expected sqlite: or postgres:)");
    }

    Database::connect(options)
        .await
        .with_context(|| format!("cannot connect to database {}", redact(url)))
}

/// Creates the PostgreSQL database named in `url` when it does not exist yet, by
/// connecting to the `postgres` database of the same server.
///
/// Text compares and sorts by its bytes in it (`LC_COLLATE 'C'`), as SQLite's `BINARY`
/// and Rust's `str` do: keyset pages, ordered reads and the services' own merges and
/// binary searches of what they read (a remittance's employees, reconciliation's two
/// ledgers) agree on both backends whatever the server's locale, and PostgreSQL compares
/// keys without calling the C library's `strcoll`. The character classes (`LC_CTYPE`)
/// stay the server's.
pub async fn ensure_postgres_database(url: &str) -> anyhow::Result<()> {
    let options: PgConnectOptions = url.parse().context("invalid PostgreSQL URL")?;
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let mut admin =
        sea_orm::sqlx::PgConnection::connect_with(&options.clone().database("postgres"))
            .await
            .with_context(|| format!("cannot connect to PostgreSQL server of {}", redact(url)))?;
    if !database_exists(&mut admin, &name).await? {
        let created = sea_orm::sqlx::query(AssertSqlSafe(format!(
            "CREATE DATABASE {} TEMPLATE template0 LC_COLLATE 'C'",
            quote_ident(&name)
        )))
        .execute(&mut admin)
        .await;
        if let Err(error) = created {
            // Another process may have created it in the meantime.
            let code = error
                .as_database_error()
                .and_then(|e| e.code())
                .map(|c| c.into_owned());
            if !matches!(code.as_deref(), Some("42P04") | Some("23505")) {
                return Err(error).with_context(|| format!("cannot create database {name}"));
            }
        } else {
            tracing::info!(database = %name, "created database");
        }
    }
    admin.close().await?;
    Ok(())
}

/// Whether the server `admin` is connected to has a database named `name`.
pub(crate) async fn database_exists(
    admin: &mut sea_orm::sqlx::PgConnection,
    name: &str,
) -> Result<bool, sea_orm::sqlx::Error> {
    Ok(
        sea_orm::sqlx::query("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(admin)
            .await?
            .is_some(),
    )
}

/// Creates the database when missing (PostgreSQL), connects, and applies the pending
/// migrations of `M`.
pub async fn connect_and_migrate<M: MigratorTrait>(
    url: &str,
    max_connections: u32,
) -> anyhow::Result<DatabaseConnection> {
    if is_postgres_url(url) {
        ensure_postgres_database(url).await?;
    }
    let db = connect(url, max_connections).await?;
    check_schema_not_newer::<M>(&db).await?;
    M::up(&db, None)
        .await
        .context("database migration failed")?;
    Ok(db)
}

/// Applies `M`'s pending migrations to the database at `url` (created if
/// missing) and closes the connection: the `migrate` step of a service.
pub async fn migrate<M: MigratorTrait>(url: &str, max_connections: u32) -> anyhow::Result<()> {
    let db = connect_and_migrate::<M>(url, max_connections).await?;
    db.close().await.ok();
    Ok(())
}

/// A transaction that writes. On SQLite it runs on the file's writer and holds this
/// process's turn to write (see [`begin_write`]), given back when it ends.
pub struct WriteTransaction {
    // Dropped before the turn: a transaction dropped unfinished rolls back first.
    txn: DatabaseTransaction,
    _turn: Option<OwnedMutexGuard<DatabaseConnection>>,
}

impl WriteTransaction {
    /// Commits and gives the turn to the next writer.
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await
    }

    /// Rolls back and gives the turn to the next writer.
    pub async fn rollback(self) -> Result<(), DbErr> {
        self.txn.rollback().await
    }
}

impl std::ops::Deref for WriteTransaction {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for WriteTransaction {
    fn get_database_backend(&self) -> DbBackend {
        self.txn.get_database_backend()
    }

    async fn execute_raw(&self, statement: Statement) -> Result<ExecResult, DbErr> {
        self.txn.execute_raw(statement).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.txn.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, statement: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.txn.query_one_raw(statement).await
    }

    async fn query_all_raw(&self, statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.txn.query_all_raw(statement).await
    }

    fn support_returning(&self) -> bool {
        self.txn.support_returning()
    }
}

/// How long the writer of a SQLite file stays open unused: a file a process stopped
/// writing (a finished test's, a benchmark scenario's) is not held open for good.
const SQLITE_WRITER_IDLE: Duration = Duration::from_secs(60);

/// Each SQLite file's writer in this process.
static SQLITE_WRITERS: LazyLock<Mutex<Writers>> = LazyLock::new(Default::default);

/// The writers of this process's SQLite files, found by the pool that asks.
#[derive(Default)]
struct Writers {
    /// Each file's writer, by the file's absolute path.
    by_file: HashMap<PathBuf, Writer>,
    /// The writer each pool was given, by the pool's connect options, an allocation every
    /// clone of the pool shares and that the entry keeps alive (so its address is not
    /// reused by another pool's). A pool finds its writer here without looking at the file
    /// again: the path and the file's identity are read once per pool, not on every write.
    by_pool: Vec<(Arc<SqliteConnectOptions>, SharedWriter)>,
}

type SharedWriter = Arc<tokio::sync::Mutex<DatabaseConnection>>;

impl Writers {
    /// The writer of the file `pool` reads.
    fn of(&mut self, pool: &sea_orm::sqlx::SqlitePool) -> Result<SharedWriter, DbErr> {
        let options = pool.connect_options();
        if let Some((_, writer)) = self.by_pool.iter().find(|(o, _)| Arc::ptr_eq(o, &options)) {
            return Ok(writer.clone());
        }
        let path = std::path::absolute(options.get_filename())
            .map_err(|error| DbErr::Custom(format!("SQLite file path: {error}")))?;
        let file = file_id(&path)
            .map_err(|error| DbErr::Custom(format!("SQLite file {}: {error}", path.display())))?;
        let writer = match self.by_file.get(&path) {
            Some(writer) if writer.file == file => writer.connection.clone(),
            _ => {
                // Writers of files that are gone are closed as they are dropped.
                self.by_file
                    .retain(|path, writer| file_id(path).is_ok_and(|id| id == writer.file));
                let writer = Writer::open(&options, file);
                let connection = writer.connection.clone();
                self.by_file.insert(path, writer);
                connection
            }
        };
        // Pools that are gone: their options are held by their entry alone.
        self.by_pool.retain(|(o, _)| Arc::strong_count(o) > 1);
        self.by_pool.push((options, writer.clone()));
        Ok(writer)
    }
}

/// The one connection on which this process writes a SQLite file, lent to one writer at a
/// time in the order they came (a Tokio mutex is fair).
///
/// SQLite lets one connection write a file at a time, and in WAL mode a connection drops
/// its whole page cache when another connection wrote the file since its last
/// transaction. Writes spread over the pool's connections read every page they touch
/// again from the operating system; one connection for all of them keeps its cache of
/// the pages writes touch (the locked facility, the indexes written, the outbox's tail)
/// warm, and leaves the pool's connections to readers.
struct Writer {
    /// The file it was opened on: a path whose file was replaced (a restore, a test's
    /// new directory at the same path) gets a writer of its own.
    file: FileId,
    connection: SharedWriter,
}

/// Tells one file at a path from another that replaced it: its device and inode.
type FileId = (u64, u64);

/// The device and inode of `path`.
#[cfg(unix)]
fn file_id(path: &Path) -> std::io::Result<FileId> {
    use std::os::unix::fs::MetadataExt as _;
    let metadata = std::fs::metadata(path)?;
    Ok((metadata.dev(), metadata.ino()))
}

/// When `path` was created, where there are no inodes: a replaced file is newer.
#[cfg(not(unix))]
fn file_id(path: &Path) -> std::io::Result<FileId> {
    let created = std::fs::metadata(path)?.created()?;
    let since = created
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Ok((since.as_secs(), u64::from(since.subsec_nanos())))
}

impl Writer {
    /// A writer of `file`, connecting with its pool's `options` when first used.
    fn open(options: &SqliteConnectOptions, file: FileId) -> Self {
        let single = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .idle_timeout(SQLITE_WRITER_IDLE)
            .acquire_timeout(CONNECT_TIMEOUT)
            // A ping on every checkout would cost one more hop to the connection's thread.
            .test_before_acquire(false)
            .connect_lazy_with(options.clone());
        Self {
            file,
            connection: Arc::new(tokio::sync::Mutex::new(
                SqlxSqliteConnector::from_sqlx_sqlite_pool(single),
            )),
        }
    }
}

/// Waits for this process's turn to write the SQLite file behind `db` and returns it with
/// the file's writer; `None` when the pool has a single connection (an in-memory
/// database, whose pool is its only connection and queues writers by itself).
async fn sqlite_write_turn(
    db: &DatabaseConnection,
) -> Result<Option<OwnedMutexGuard<DatabaseConnection>>, DbErr> {
    let pool = db.get_sqlite_connection_pool();
    if pool.options().get_max_connections() <= 1 {
        return Ok(None);
    }
    let connection = SQLITE_WRITERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .of(pool)?;
    tokio::time::timeout(SQLITE_BUSY_TIMEOUT, connection.lock_owned())
        .await
        .map(Some)
        .map_err(|_| DbErr::Custom("database is locked: no turn to write in time".into()))
}

/// Runs `work` while the database answers `statement`: polls `statement` once, which sends
/// it (a statement on a connection goes out in its first poll, before the first wait for
/// the server), then runs `work` on this thread, then waits for the answer. One transaction
/// runs one statement at a time on one connection; this lets the service's own work for
/// the next step (encoding messages, matching the next chunk) use the other core meanwhile.
/// `work` must not need what `statement` returns. Should the first poll not get as far as
/// sending, the two only run one after the other: the results are the same.
pub async fn overlap<T, U>(statement: impl Future<Output = T>, work: impl FnOnce() -> U) -> (T, U) {
    let mut statement = std::pin::pin!(statement);
    let first = futures::poll!(statement.as_mut());
    let worked = work();
    let answer = match first {
        std::task::Poll::Ready(answer) => answer,
        std::task::Poll::Pending => statement.await,
    };
    (answer, worked)
}

/// Runs one writing statement on its own, outside any transaction. On SQLite it first
/// waits for this process's turn to write, as [`begin_write`] does: a lone statement
/// racing the queued writers for the file's lock waited in SQLite's busy handler, whose
/// sleeps grow to 100 ms, and kept losing the lock to them (the outbox's claims and
/// delivery records, on the answer path of every purchase).
pub async fn execute_write<S: StatementBuilder>(
    db: &DatabaseConnection,
    statement: &S,
) -> Result<ExecResult, DbErr> {
    let writer = write_turn(db).await?;
    writer.as_deref().unwrap_or(db).execute(statement).await
}

/// Runs one writing statement that returns rows (`RETURNING`) on its own, as
/// [`execute_write`] does.
pub async fn query_write(
    db: &DatabaseConnection,
    statement: Statement,
) -> Result<Vec<QueryResult>, DbErr> {
    let writer = write_turn(db).await?;
    writer
        .as_deref()
        .unwrap_or(db)
        .query_all_raw(statement)
        .await
}

/// This process's turn to write the SQLite file behind `db`, with the file's writer;
/// nothing on PostgreSQL.
async fn write_turn(
    db: &DatabaseConnection,
) -> Result<Option<OwnedMutexGuard<DatabaseConnection>>, DbErr> {
    if db.get_database_backend() == DbBackend::Sqlite {
        sqlite_write_turn(db).await
    } else {
        Ok(None)
    }
}

/// Begins a transaction that will write.
///
/// On SQLite, one writer at a time holds the file's write lock. Writers of this process
/// queue in order for the file's one writing connection ([`Writer`]), instead of all
/// racing for the lock and sleeping in SQLite's busy handler, whose growing sleeps made
/// the unlucky writer wait hundreds of milliseconds while the lock was free; and that
/// connection's page cache stays warm from one write to the next. The busy
/// timeout still covers other processes and writes outside `begin_write`. The
/// transaction starts `IMMEDIATE`, taking the write lock at once: a deferred
/// transaction that reads first and writes later fails with `SQLITE_BUSY` when another
/// writer got in between (the busy timeout does not apply to that upgrade).
/// PostgreSQL ignores both.
pub async fn begin_write(db: &DatabaseConnection) -> Result<WriteTransaction, DbErr> {
    let turn = write_turn(db).await?;
    let txn = turn
        .as_deref()
        .unwrap_or(db)
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await?;
    Ok(WriteTransaction { txn, _turn: turn })
}

/// Runs `statements` in order in the transaction `txn` and returns the rows they return, in
/// order. On SQLite they go to the connection as one query of several statements: one
/// hand-off to the connection's thread and back instead of one per statement, on the write
/// turn every writer of the file waits for. sqlx binds the values of each statement in turn
/// (plain `?` placeholders, as SeaORM writes them for SQLite). PostgreSQL runs them one by
/// one: its protocol prepares one statement per query. The first statement that fails ends
/// the batch with its error, the later ones not run; the caller rolls back.
pub async fn batch(
    txn: &DatabaseTransaction,
    statements: Vec<Statement>,
) -> Result<Vec<QueryResult>, DbErr> {
    if txn.get_database_backend() != DbBackend::Sqlite || statements.len() < 2 {
        let mut rows = Vec::new();
        for statement in statements {
            rows.extend(txn.query_all_raw(statement).await?);
        }
        return Ok(rows);
    }
    let mut sql = String::new();
    let mut values = Vec::new();
    for statement in statements {
        if binds_by_number(&statement.sql) {
            return Err(DbErr::Custom(format!(
                "a batched statement binds by number, not in turn: {}",
                statement.sql
            )));
        }
        if !sql.is_empty() {
            sql.push_str(";\n");
        }
        sql.push_str(&statement.sql);
        values.extend(statement.values.map(|values| values.0).unwrap_or_default());
    }
    txn.query_all_raw(Statement::from_sql_and_values(
        DbBackend::Sqlite,
        sql,
        values,
    ))
    .await
}

/// Whether `sql` has a numbered placeholder (`?NNN`, `$NNN`), which sqlx binds to the batch's
/// NNN-th value rather than its statement's.
fn binds_by_number(sql: &str) -> bool {
    sql.as_bytes()
        .windows(2)
        .any(|pair| matches!(pair[0], b'?' | b'$') && pair[1].is_ascii_digit())
}

/// The rows of `E` whose `column` is one of `keys`, in no particular order, read
/// [`IDS_PER_STATEMENT`] keys per statement.
pub async fn find_in<E: EntityTrait>(
    conn: &impl ConnectionTrait,
    column: E::Column,
    keys: &[&str],
) -> Result<Vec<E::Model>, DbErr> {
    let mut rows = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(IDS_PER_STATEMENT) {
        rows.extend(
            E::find()
                .filter(column.is_in(chunk.iter().copied()))
                .all(conn)
                .await?,
        );
    }
    Ok(rows)
}

/// Writes the lock row `key` of `table` (columns `key_column` and `version`) as the first
/// statement of a write transaction: inserted when missing, its version bumped otherwise.
/// It holds the row lock (PostgreSQL) or the write lock (SQLite) until the transaction
/// ends, so two transactions on the same key never interleave ("write first").
pub async fn lock_row(
    txn: &DatabaseTransaction,
    table: &str,
    key_column: &str,
    key: &str,
) -> Result<(), DbErr> {
    use sea_orm_migration::sea_query::ExprTrait as _;
    let upsert = Query::insert()
        .into_table(Alias::new(table))
        .columns([Alias::new(key_column), Alias::new("version")])
        .values_panic([key.into(), 0i64.into()])
        .on_conflict(
            OnConflict::column(Alias::new(key_column))
                .value(
                    Alias::new("version"),
                    Expr::col((Alias::new(table), Alias::new("version"))).add(1i64),
                )
                .to_owned(),
        )
        .to_owned();
    txn.execute(&upsert).await?;
    Ok(())
}

/// Connects to a service's database and refuses one whose schema is newer
/// than this build (a rollback must not run old code on a new schema).
pub async fn connect_checked<M: MigratorTrait>(
    url: &str,
    max_connections: u32,
) -> anyhow::Result<DatabaseConnection> {
    let db = connect(url, max_connections).await?;
    check_schema_not_newer::<M>(&db).await?;
    Ok(db)
}

/// Returns an error when the database has applied migrations that `M` does not know,
/// that is when the schema is newer than this binary.
pub async fn check_schema_not_newer<M: MigratorTrait>(
    db: &DatabaseConnection,
) -> anyhow::Result<()> {
    let table = M::migration_table_name().to_string();
    let manager = SchemaManager::new(db);
    if !manager.has_table(&table).await? {
        return Ok(());
    }
    let query = Query::select()
        .column(Alias::new("version"))
        .from(Alias::new(&table))
        .to_owned();
    let known: std::collections::HashSet<String> = M::migrations()
        .iter()
        .map(|migration| migration.name().to_owned())
        .collect();
    let mut unknown = Vec::new();
    for row in db.query_all(&query).await? {
        let version: String = row.try_get("", "version")?;
        if !known.contains(&version) {
            unknown.push(version);
        }
    }
    if !unknown.is_empty() {
        unknown.sort();
        anyhow::bail!(
            "the database schema is newer than this binary: unknown applied migrations {}",
            unknown.join(", ")
        );
    }
    Ok(())
}

/// Quotes a PostgreSQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Replaces an index of `table` in a migration: creates `create` (unless an index of its
/// name exists), then drops the index named `drop` (if it exists). The migration's `down`
/// swaps them back.
pub async fn swap_index(
    manager: &SchemaManager<'_>,
    table: impl IntoTableRef,
    mut create: IndexCreateStatement,
    drop: &str,
) -> Result<(), DbErr> {
    manager
        .create_index(create.if_not_exists().to_owned())
        .await?;
    manager
        .drop_index(Index::drop().name(drop).table(table).if_exists().to_owned())
        .await
}

/// Rebuilds the SQLite table `table` with its stored `CREATE TABLE` changed by `edit`, in a
/// migration: SQLite's own way to change what `ALTER TABLE` cannot (how rows are keyed,
/// `AUTOINCREMENT`). The edited table is made beside the old one, the rows copied, the old
/// one dropped and the new one renamed in its place; then its indexes and triggers are
/// made again from their stored definitions. Only for a table no foreign key refers to.
/// Does nothing on PostgreSQL. `edit` returns `None` when the definition is not the one it
/// expects, and the migration fails with that definition rather than build another table.
///
/// The rebuild is a transaction of its own (a savepoint inside the migration's), which
/// SQLite's migrations otherwise run without: the table is swapped at once or not at all,
/// and every statement runs on the one connection that sees the ones before it (a rename
/// prepared on a pool connection that had not yet seen the drop failed on its stale
/// schema). A migration that rebuilds asks for its own transaction too (`use_transaction`),
/// so that its record is written with the rebuild.
pub async fn rebuild_sqlite_table(
    manager: &SchemaManager<'_>,
    table: &str,
    edit: impl Fn(&str) -> Option<String>,
) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Sqlite {
        return Ok(());
    }
    let db = manager.get_connection().begin().await?;
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "SELECT type, sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL \
             ORDER BY type = 'table' DESC",
            [table.into()],
        ))
        .await?;
    let mut definitions = rows
        .iter()
        .map(|row| Ok((row.try_get::<String>("", "type")?, row.try_get("", "sql")?)))
        .collect::<Result<Vec<(String, String)>, DbErr>>()?
        .into_iter();
    let unexpected = |sql: &str| DbErr::Migration(format!("cannot rebuild {table} from: {sql}"));
    let Some((_, create)) = definitions.next().filter(|(kind, _)| kind == "table") else {
        return Err(DbErr::Migration(format!("no table {table} to rebuild")));
    };
    let quoted = quote_ident(table);
    let rebuilt = quote_ident(&format!("{table}_rebuilt"));
    let columns = edit(&create)
        .and_then(|sql| {
            sql.strip_prefix(&format!("CREATE TABLE {quoted}"))
                .map(str::to_owned)
        })
        .ok_or_else(|| unexpected(&create))?;
    for sql in [
        format!("CREATE TABLE {rebuilt}{columns}"),
        format!("INSERT INTO {rebuilt} SELECT * FROM {quoted}"),
        format!("DROP TABLE {quoted}"),
        format!("ALTER TABLE {rebuilt} RENAME TO {quoted}"),
    ]
    .into_iter()
    .chain(definitions.map(|(_, sql)| sql))
    {
        db.execute_unprepared(&sql).await?;
    }
    db.commit().await
}

/// The migration `name` that stores the SQLite table `table` in the order of its primary
/// key (`WITHOUT ROWID`), and gives it its rowids back on the way down; nothing on
/// PostgreSQL, which keeps every table's rows apart from its key's index. A row is then
/// written into one B-tree instead of a table of rows and an index of their keys: a page
/// less for each transaction that inserts one. For a table keyed by a short text, with
/// small rows, that no foreign key refers to ([`rebuild_sqlite_table`]).
pub struct StoreSqliteTableByKey {
    /// The migration's name.
    pub name: &'static str,
    /// The table.
    pub table: &'static str,
}

impl MigrationName for StoreSqliteTableByKey {
    fn name(&self) -> &str {
        self.name
    }
}

#[async_trait::async_trait]
impl MigrationTrait for StoreSqliteTableByKey {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rebuild_sqlite_table(manager, self.table, |sql| {
            (!sql.ends_with(WITHOUT_ROWID)).then(|| format!("{sql}{WITHOUT_ROWID}"))
        })
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rebuild_sqlite_table(manager, self.table, |sql| {
            sql.strip_suffix(WITHOUT_ROWID).map(str::to_owned)
        })
        .await
    }
}

const WITHOUT_ROWID: &str = " WITHOUT ROWID";

/// Sets how full inserts leave a table's pages, in a migration (PostgreSQL's `fillfactor`;
/// SQLite has no such setting). A table whose rows are updated in bulk, every row of a page
/// in one transaction, gets room on each page for the new versions: PostgreSQL then writes
/// them in place (HOT) when no indexed column changes, with no new index entry. Existing
/// pages keep their fill until rewritten; new rows get the room.
pub async fn set_page_fill(
    manager: &SchemaManager<'_>,
    table: &str,
    percent: u32,
) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    manager
        .get_connection()
        .execute_unprepared(&format!(
            "ALTER TABLE {} SET (fillfactor = {percent})",
            quote_ident(table)
        ))
        .await
        .map(drop)
}

/// Hides the password of a database URL, for error messages and logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::Statement;

    use super::*;

    #[tokio::test]
    async fn overlap_sends_the_statement_before_the_work_and_returns_both() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let polls = AtomicUsize::new(0);
        // Answers at its second poll, as a statement waiting for its server does.
        let statement = std::future::poll_fn(|cx| {
            if polls.fetch_add(1, Ordering::SeqCst) == 0 {
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready("answer")
            }
        });
        let (answer, seen) = overlap(statement, || polls.load(Ordering::SeqCst)).await;
        assert_eq!(answer, "answer");
        assert_eq!(
            seen, 1,
            "the work ran after the statement's first poll, not before"
        );
        assert_eq!(polls.load(Ordering::SeqCst), 2);

        let (answer, worked) = overlap(std::future::ready(7), || "work").await;
        assert_eq!((answer, worked), (7, "work"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_read_then_write_transactions_all_commit_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let db = connect(&sqlite_url(dir.path(), "race"), 8).await.unwrap();
        db.execute_unprepared("CREATE TABLE counter (n INTEGER NOT NULL)")
            .await
            .unwrap();
        db.execute_unprepared("INSERT INTO counter (n) VALUES (0)")
            .await
            .unwrap();

        let writers = (0..16).map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                let txn = begin_write(&db).await?;
                // Read first, write later: a deferred transaction would fail
                // with SQLITE_BUSY here when another writer got in between.
                let row = txn
                    .query_one_raw(Statement::from_string(
                        DbBackend::Sqlite,
                        "SELECT n FROM counter",
                    ))
                    .await?
                    .expect("a row");
                let n: i64 = row.try_get("", "n")?;
                // Give the other writers every chance to interleave.
                for _ in 0..10 {
                    tokio::task::yield_now().await;
                }
                txn.execute_unprepared(&format!("UPDATE counter SET n = {}", n + 1))
                    .await?;
                txn.commit().await
            })
        });
        for writer in writers {
            writer.await.unwrap().unwrap();
        }

        let row = db
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT n FROM counter",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get::<i64>("", "n").unwrap(), 16);
    }

    async fn counter_db(dir: &Path, name: &str) -> DatabaseConnection {
        let db = connect(&sqlite_url(dir, name), 4).await.unwrap();
        db.execute_unprepared("CREATE TABLE counter (n INTEGER NOT NULL)")
            .await
            .unwrap();
        db
    }

    async fn count(db: &impl ConnectionTrait) -> i64 {
        let row = db
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT count(*) AS n FROM counter",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get("", "n").unwrap()
    }

    #[tokio::test]
    async fn a_write_transaction_dropped_unfinished_rolls_back_and_gives_the_turn_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = counter_db(dir.path(), "dropped").await;

        let txn = begin_write(&db).await.unwrap();
        txn.execute_unprepared("INSERT INTO counter (n) VALUES (1)")
            .await
            .unwrap();
        drop(txn);
        let next = begin_write(&db).await.unwrap();
        next.execute_unprepared("INSERT INTO counter (n) VALUES (2)")
            .await
            .unwrap();
        next.commit().await.unwrap();

        assert_eq!(count(&db).await, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn lone_write_statements_take_their_turn_among_write_transactions_on_sqlite() {
        // No busy timeout: a statement that raced a transaction for the file's lock
        // would fail at once with SQLITE_BUSY instead of sleeping.
        let dir = tempfile::tempdir().unwrap();
        let mut options = ConnectOptions::new(sqlite_url(dir.path(), "lone"));
        options
            .max_connections(8)
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(|opts| {
                opts.create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::ZERO)
            });
        let db = Database::connect(options).await.unwrap();
        db.execute_unprepared("CREATE TABLE counter (n INTEGER NOT NULL)")
            .await
            .unwrap();
        let insert = Query::insert()
            .into_table(Alias::new("counter"))
            .columns([Alias::new("n")])
            .values_panic([2.into()])
            .to_owned();

        let transactions = (0..4).map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    let txn = begin_write(&db).await?;
                    txn.execute_unprepared("INSERT INTO counter (n) VALUES (1)")
                        .await?;
                    for _ in 0..5 {
                        tokio::task::yield_now().await;
                    }
                    txn.commit().await?;
                }
                Ok::<(), DbErr>(())
            })
        });
        let statements = (0..4).map(|_| {
            let db = db.clone();
            let insert = insert.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    execute_write(&db, &insert).await?;
                    let returned = query_write(
                        &db,
                        Statement::from_string(
                            DbBackend::Sqlite,
                            "INSERT INTO counter (n) VALUES (3) RETURNING n",
                        ),
                    )
                    .await?;
                    assert_eq!(returned.len(), 1);
                }
                Ok::<(), DbErr>(())
            })
        });
        let tasks: Vec<_> = transactions.chain(statements).collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }

        assert_eq!(count(&db).await, 4 * 20 + 4 * 20 * 2);
    }

    #[tokio::test]
    async fn each_sqlite_file_has_its_own_writer_queue() {
        let dir = tempfile::tempdir().unwrap();
        let first = counter_db(dir.path(), "first").await;
        let second = counter_db(dir.path(), "second").await;

        let holding = begin_write(&first).await.unwrap();
        // Would wait for `holding` (and time out) if both files shared one queue.
        write_one(&second, "INSERT INTO counter (n) VALUES (1)").await;
        holding.commit().await.unwrap();

        assert_eq!(count(&second).await, 1);
        assert_eq!(count(&first).await, 0);
    }

    /// The connection's journal mode, foreign keys, busy timeout and `synchronous`.
    async fn connection_settings(conn: &impl ConnectionTrait) -> Vec<String> {
        let mut settings = Vec::new();
        for name in [
            "journal_mode",
            "foreign_keys",
            "busy_timeout",
            "synchronous",
        ] {
            let row = conn
                .query_one_raw(Statement::from_string(
                    DbBackend::Sqlite,
                    format!("PRAGMA {name}"),
                ))
                .await
                .unwrap()
                .unwrap();
            settings.push(
                row.try_get_by_index::<String>(0)
                    .or_else(|_| row.try_get_by_index::<i64>(0).map(|n| n.to_string()))
                    .unwrap(),
            );
        }
        settings
    }

    /// Commits `sql` in a write transaction of its own.
    async fn write_one(db: &DatabaseConnection, sql: &str) {
        let write = begin_write(db).await.unwrap();
        write.execute_unprepared(sql).await.unwrap();
        write.commit().await.unwrap();
    }

    /// A temporary table is seen by the connection that made it alone.
    async fn has_temp_mark(conn: &impl ConnectionTrait) -> bool {
        conn.query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT 1 FROM sqlite_temp_master WHERE name = 'mark'",
        ))
        .await
        .unwrap()
        .is_some()
    }

    #[tokio::test]
    async fn every_write_of_a_sqlite_file_runs_on_its_one_writer_with_the_pools_settings() {
        let dir = tempfile::tempdir().unwrap();
        let db = counter_db(dir.path(), "credit").await;

        write_one(&db, "CREATE TEMP TABLE mark (n INTEGER)").await;

        let second = begin_write(&db).await.unwrap();
        assert!(has_temp_mark(&*second).await, "the same connection");
        assert_eq!(
            connection_settings(&*second).await,
            ["wal", "1", "10000", "1"]
        );
        second.rollback().await.unwrap();
        let lone = query_write(
            &db,
            Statement::from_string(
                DbBackend::Sqlite,
                "INSERT INTO counter (n) SELECT count(*) FROM temp.mark RETURNING n",
            ),
        )
        .await
        .unwrap();
        assert_eq!(lone.len(), 1, "a lone write runs on the writer too");
        // The pool's connections are the readers' and never saw the writer's table.
        assert!(!has_temp_mark(&db).await);
        assert_eq!(count(&db).await, 1);
    }

    /// A pool finds its writer by its own identity, not by the file; two pools of one file
    /// (and every clone of each) still write through the file's one writer, in one queue.
    #[tokio::test]
    async fn two_pools_of_one_sqlite_file_and_their_clones_share_its_writer() {
        let dir = tempfile::tempdir().unwrap();
        let first = counter_db(dir.path(), "credit").await;
        write_one(&first, "CREATE TEMP TABLE mark (n INTEGER)").await;

        let second = connect(&sqlite_url(dir.path(), "credit"), 4).await.unwrap();
        let clone = second.clone();
        for db in [&second, &clone, &first] {
            let write = begin_write(db).await.unwrap();
            assert!(has_temp_mark(&*write).await, "the file's one writer");
            write.rollback().await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_sqlite_file_replaced_at_the_same_path_is_written_by_a_writer_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let old = counter_db(dir.path(), "credit").await;
        write_one(&old, "INSERT INTO counter (n) VALUES (1)").await;
        old.close().await.unwrap();
        for suffix in ["", "-wal", "-shm"] {
            std::fs::remove_file(dir.path().join(format!("credit.db{suffix}"))).ok();
        }

        let new = counter_db(dir.path(), "credit").await;
        write_one(&new, "INSERT INTO counter (n) VALUES (2)").await;

        // The old file's writer would have written the deleted file.
        assert_eq!(count(&new).await, 1);
    }

    #[tokio::test]
    async fn sqlite_file_and_directory_are_created_with_wal_and_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_url(&dir.path().join("nested/data"), "credit");

        let db = connect(&url, 2).await.unwrap();

        assert!(dir.path().join("nested/data/credit.db").exists());
        assert_eq!(connection_settings(&db).await, ["wal", "1", "10000", "1"]);
        assert!(!is_postgres(&db));
    }

    /// A database the services create sorts and compares text by its bytes, as SQLite and
    /// Rust do: mixed case, punctuation that a linguistic collation skips, and Persian
    /// letters outside the Arabic block (پ after ي by code point) come back in Rust's order.
    #[tokio::test]
    async fn a_created_postgres_database_orders_text_by_its_bytes() {
        if !crate::testing::test_uses_postgres() {
            eprintln!("PostgreSQL only (TAVANA_TEST_DB=postgres)");
            return;
        }
        let server = crate::testing::test_pg_url();
        let name = format!("tavana_test_collation_{}", uuid::Uuid::new_v4().simple());
        let url = crate::testing::database_url(&server, &name);
        ensure_postgres_database(&url)
            .await
            .expect("create the database");
        let db = connect(&url, 1).await.expect("connect");
        let collation = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT datcollate FROM pg_database WHERE datname = current_database()",
            ))
            .await
            .expect("read the collation")
            .expect("the database's row")
            .try_get::<String>("", "datcollate")
            .expect("datcollate");
        assert_eq!(collation, "C");
        let mut texts = vec![
            "a-c",
            "a_b",
            "aB",
            "ab",
            "Ab",
            "پ",
            "ي",
            "ب",
            "0012345679",
            "001234567",
        ];
        let values: Vec<String> = texts.iter().map(|text| format!("('{text}')")).collect();
        let sorted: Vec<String> = db
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                format!(
                    "SELECT t FROM (VALUES {}) AS v(t) ORDER BY t",
                    values.join(", ")
                ),
            ))
            .await
            .expect("sort")
            .iter()
            .map(|row| row.try_get::<String>("", "t").expect("t"))
            .collect();
        db.close().await.expect("close");
        crate::testing::drop_postgres_databases(&server, &[name]);
        texts.sort_unstable();
        assert_eq!(sorted, texts);
    }

    #[test]
    fn redact_hides_the_password() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/credit"),
            "postgres://app:***@db:5432/credit"
        );
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }
}
