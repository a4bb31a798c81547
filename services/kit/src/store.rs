//! Ephemeral keys, counters and one-time codes: Redis in production, in-process otherwise.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How long to wait for Redis before reporting it unreachable.
const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A store of short-lived values.
#[async_trait]
pub trait KvStore: Send + Sync + 'static {
    /// Sets `key` to `value`, expiring after `ttl`.
    async fn set(&self, key: &str, value: &str, ttl: Duration) -> anyhow::Result<()>;
    /// Sets `key` only when it does not exist; returns true when it was set.
    async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> anyhow::Result<bool>;
    /// Returns the value of `key`.
    async fn get(&self, key: &str) -> anyhow::Result<Option<String>>;
    /// Returns the value of `key` and deletes it, atomically (for one-time codes).
    async fn take(&self, key: &str) -> anyhow::Result<Option<String>>;
    /// Deletes `key`.
    async fn delete(&self, key: &str) -> anyhow::Result<()>;
    /// Increments the counter `key` and returns its new value; the counter expires `ttl`
    /// after it was created.
    async fn incr(&self, key: &str, ttl: Duration) -> anyhow::Result<u64>;
    /// Returns the time left before `key` expires (`None` when missing or not expiring).
    async fn ttl(&self, key: &str) -> anyhow::Result<Option<Duration>>;
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// A [`KvStore`] on Redis, through a reconnecting connection manager.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
}

const TAKE_SCRIPT: &str = r"
local value = redis.call('GET', KEYS[1])
if value then redis.call('DEL', KEYS[1]) end
return value
";

// Sets the expiry when the counter is new, or when an earlier expiry was lost.
const INCR_SCRIPT: &str = r"
local count = redis.call('INCR', KEYS[1])
if count == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return count
";

impl RedisStore {
    /// Connects to Redis at `url`; every key is prefixed with `prefix:` (when not empty).
    ///
    /// Fails after 5 s when the server does not answer, rather than retrying forever.
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<RedisStore> {
        let client = redis::Client::open(url).context("invalid Redis URL")?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_CONNECT_TIMEOUT))
            .set_response_timeout(Some(REDIS_CONNECT_TIMEOUT))
            .set_number_of_retries(3);
        let connection = tokio::time::timeout(
            REDIS_CONNECT_TIMEOUT,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| anyhow::anyhow!("Redis did not answer within {REDIS_CONNECT_TIMEOUT:?}"))?
        .context("cannot connect to Redis")?;
        let prefix = if prefix.is_empty() || prefix.ends_with(':') {
            prefix.to_owned()
        } else {
            format!("{prefix}:")
        };
        Ok(RedisStore { connection, prefix })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }
}

#[async_trait]
impl KvStore for RedisStore {
    async fn set(&self, key: &str, value: &str, ttl: Duration) -> anyhow::Result<()> {
        let mut connection = self.connection.clone();
        redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("PX")
            .arg(millis(ttl))
            .query_async::<()>(&mut connection)
            .await?;
        Ok(())
    }

    async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> anyhow::Result<bool> {
        let mut connection = self.connection.clone();
        let reply: Option<String> = redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut connection)
            .await?;
        Ok(reply.is_some())
    }

    async fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        let mut connection = self.connection.clone();
        Ok(redis::cmd("GET")
            .arg(self.key(key))
            .query_async(&mut connection)
            .await?)
    }

    async fn take(&self, key: &str) -> anyhow::Result<Option<String>> {
        let mut connection = self.connection.clone();
        Ok(redis::Script::new(TAKE_SCRIPT)
            .key(self.key(key))
            .invoke_async(&mut connection)
            .await?)
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let mut connection = self.connection.clone();
        redis::cmd("DEL")
            .arg(self.key(key))
            .query_async::<()>(&mut connection)
            .await?;
        Ok(())
    }

    async fn incr(&self, key: &str, ttl: Duration) -> anyhow::Result<u64> {
        let mut connection = self.connection.clone();
        let count: i64 = redis::Script::new(INCR_SCRIPT)
            .key(self.key(key))
            .arg(millis(ttl))
            .invoke_async(&mut connection)
            .await?;
        u64::try_from(count).context("counter went negative")
    }

    async fn ttl(&self, key: &str) -> anyhow::Result<Option<Duration>> {
        let mut connection = self.connection.clone();
        let pttl: i64 = redis::cmd("PTTL")
            .arg(self.key(key))
            .query_async(&mut connection)
            .await?;
        Ok(u64::try_from(pttl).ok().map(Duration::from_millis))
    }
}

struct Entry {
    value: String,
    expires_at: Instant,
}

/// An in-process [`KvStore`] for `tavana up` and unit tests; expired keys are purged lazily.
#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, Entry>>,
    operations: AtomicU64,
}

impl MemoryStore {
    /// Creates an empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Locks the map, dropping expired entries now and then.
    fn entries(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self
            .operations
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(256)
        {
            let now = Instant::now();
            entries.retain(|_, entry| entry.expires_at > now);
        }
        entries
    }

    fn live<'a>(entries: &'a HashMap<String, Entry>, key: &str) -> Option<&'a Entry> {
        entries
            .get(key)
            .filter(|entry| entry.expires_at > Instant::now())
    }
}

fn expiry(ttl: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(ttl)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

#[async_trait]
impl KvStore for MemoryStore {
    async fn set(&self, key: &str, value: &str, ttl: Duration) -> anyhow::Result<()> {
        self.entries().insert(
            key.to_owned(),
            Entry {
                value: value.to_owned(),
                expires_at: expiry(ttl),
            },
        );
        Ok(())
    }

    async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> anyhow::Result<bool> {
        let mut entries = self.entries();
        if MemoryStore::live(&entries, key).is_some() {
            return Ok(false);
        }
        entries.insert(
            key.to_owned(),
            Entry {
                value: value.to_owned(),
                expires_at: expiry(ttl),
            },
        );
        Ok(true)
    }

    async fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        let entries = self.entries();
        Ok(MemoryStore::live(&entries, key).map(|entry| entry.value.clone()))
    }

    async fn take(&self, key: &str) -> anyhow::Result<Option<String>> {
        let mut entries = self.entries();
        Ok(entries
            .remove(key)
            .filter(|entry| entry.expires_at > Instant::now())
            .map(|entry| entry.value))
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.entries().remove(key);
        Ok(())
    }

    async fn incr(&self, key: &str, ttl: Duration) -> anyhow::Result<u64> {
        let mut entries = self.entries();
        let current = match MemoryStore::live(&entries, key) {
            Some(entry) => Some((
                entry
                    .value
                    .parse::<u64>()
                    .context("value is not a counter")?,
                entry.expires_at,
            )),
            None => None,
        };
        let (count, expires_at) = match current {
            Some((count, expires_at)) => (count.saturating_add(1), expires_at),
            None => (1, expiry(ttl)),
        };
        entries.insert(
            key.to_owned(),
            Entry {
                value: count.to_string(),
                expires_at,
            },
        );
        Ok(count)
    }

    async fn ttl(&self, key: &str) -> anyhow::Result<Option<Duration>> {
        let entries = self.entries();
        Ok(MemoryStore::live(&entries, key)
            .map(|entry| entry.expires_at.saturating_duration_since(Instant::now())))
    }
}

/// Connects to Redis when `redis_url` is given, or returns an in-process store.
pub async fn connect_store(
    redis_url: Option<&str>,
    prefix: &str,
) -> anyhow::Result<Arc<dyn KvStore>> {
    match redis_url.filter(|url| !url.trim().is_empty()) {
        Some(url) => Ok(Arc::new(RedisStore::connect(url, prefix).await?)),
        None => Ok(Arc::new(MemoryStore::new())),
    }
}

/// A fixed-window rate limit: at most `limit` events per `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// The number of events allowed in one window.
    pub limit: u64,
    /// The length of the window.
    pub window: Duration,
}

/// Counts one event under `key`; returns `Ok(Err(retry_after))` when the limit is exceeded.
pub async fn check_rate(
    store: &dyn KvStore,
    key: &str,
    rule: RateLimit,
) -> anyhow::Result<Result<(), Duration>> {
    let count = store.incr(key, rule.window).await?;
    if count <= rule.limit {
        return Ok(Ok(()));
    }
    let retry_after = store.ttl(key).await?.unwrap_or(rule.window);
    Ok(Err(retry_after))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(300);
    const LONG: Duration = Duration::from_secs(60);

    async fn redis_store() -> Option<Arc<dyn KvStore>> {
        let url = crate::testing::test_redis_url()?;
        let prefix = format!("tavana-test-{}", uuid::Uuid::new_v4().simple());
        Some(Arc::new(RedisStore::connect(&url, &prefix).await.unwrap()))
    }

    async fn each_store(check: impl AsyncFn(Arc<dyn KvStore>)) {
        check(Arc::new(MemoryStore::new())).await;
        if let Some(redis) = redis_store().await {
            check(redis).await;
        }
    }

    #[tokio::test]
    async fn set_get_and_delete() {
        each_store(async |store| {
            assert_eq!(store.get("a").await.unwrap(), None);
            store.set("a", "1", LONG).await.unwrap();
            assert_eq!(store.get("a").await.unwrap().as_deref(), Some("1"));
            store.set("a", "2", LONG).await.unwrap();
            assert_eq!(store.get("a").await.unwrap().as_deref(), Some("2"));
            store.delete("a").await.unwrap();
            assert_eq!(store.get("a").await.unwrap(), None);
        })
        .await;
    }

    #[tokio::test]
    async fn values_expire_after_their_ttl() {
        each_store(async |store| {
            store.set("short", "x", SHORT).await.unwrap();
            let ttl = store.ttl("short").await.unwrap().unwrap();
            assert!(ttl <= SHORT && ttl > Duration::ZERO);
            tokio::time::sleep(SHORT * 2).await;
            assert_eq!(store.get("short").await.unwrap(), None);
            assert_eq!(store.ttl("short").await.unwrap(), None);
        })
        .await;
    }

    #[tokio::test]
    async fn set_nx_sets_only_once() {
        each_store(async |store| {
            assert!(store.set_nx("k", "first", LONG).await.unwrap());
            assert!(!store.set_nx("k", "second", LONG).await.unwrap());
            assert_eq!(store.get("k").await.unwrap().as_deref(), Some("first"));
        })
        .await;
    }

    #[tokio::test]
    async fn take_returns_a_value_exactly_once() {
        each_store(async |store| {
            store.set("code", "123456", LONG).await.unwrap();
            assert_eq!(store.take("code").await.unwrap().as_deref(), Some("123456"));
            assert_eq!(store.take("code").await.unwrap(), None);
            assert_eq!(store.get("code").await.unwrap(), None);
        })
        .await;
    }

    #[tokio::test]
    async fn concurrent_takes_return_the_code_to_one_taker() {
        each_store(async |store| {
            store.set("otp", "1", LONG).await.unwrap();
            let takers = (0..16).map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.take("otp").await.unwrap() })
            });
            let taken = futures::future::join_all(takers)
                .await
                .into_iter()
                .filter(|result| matches!(result, Ok(Some(_))))
                .count();
            assert_eq!(taken, 1);
        })
        .await;
    }

    #[tokio::test]
    async fn counter_keeps_the_ttl_of_its_creation() {
        each_store(async |store| {
            assert_eq!(store.incr("n", SHORT).await.unwrap(), 1);
            assert_eq!(store.incr("n", LONG).await.unwrap(), 2);
            assert!(store.ttl("n").await.unwrap().unwrap() <= SHORT);
            tokio::time::sleep(SHORT * 2).await;
            assert_eq!(store.incr("n", LONG).await.unwrap(), 1);
        })
        .await;
    }

    #[tokio::test]
    async fn rate_limit_refuses_beyond_the_limit_until_the_window_ends() {
        each_store(async |store| {
            let rule = RateLimit {
                limit: 3,
                window: SHORT,
            };
            for _ in 0..3 {
                assert_eq!(check_rate(&*store, "login:ip", rule).await.unwrap(), Ok(()));
            }
            let retry_after = check_rate(&*store, "login:ip", rule)
                .await
                .unwrap()
                .unwrap_err();
            assert!(retry_after <= SHORT);
            tokio::time::sleep(SHORT * 2).await;
            assert_eq!(check_rate(&*store, "login:ip", rule).await.unwrap(), Ok(()));
        })
        .await;
    }

    #[tokio::test]
    async fn unreachable_redis_fails_fast() {
        let started = std::time::Instant::now();
        let result = RedisStore::connect("redis://127.0.0.1:1", "x").await;
        assert!(result.is_err());
        assert!(started.elapsed() < Duration::from_secs(7));
    }

    #[tokio::test]
    async fn connect_store_without_url_is_in_process() {
        let store = connect_store(None, "p").await.unwrap();
        store.set("a", "b", LONG).await.unwrap();
        assert_eq!(store.get("a").await.unwrap().as_deref(), Some("b"));
    }
}
