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
    /// Sets `key` to `value` as a cache entry, expiring after `ttl`: the store may drop it
    /// sooner to bound its memory, so it never holds what a rule depends on. A key is
    /// either a cache entry or a plain one, never both; [`KvStore::get`] and
    /// [`KvStore::delete`] serve either.
    async fn cache(&self, key: &str, value: &str, ttl: Duration) -> anyhow::Result<()>;
    /// Returns the value of `key`.
    async fn get(&self, key: &str) -> anyhow::Result<Option<String>>;
    /// Returns the value of `key` and deletes it, atomically (for one-time codes).
    async fn take(&self, key: &str) -> anyhow::Result<Option<String>>;
    /// Deletes `key`.
    async fn delete(&self, key: &str) -> anyhow::Result<()>;
    /// Increments the counter `key` and returns its new value; the counter expires `ttl`
    /// after it was created.
    async fn incr(&self, key: &str, ttl: Duration) -> anyhow::Result<u64> {
        Ok(self.incr_reading(key, ttl, None).await?.0)
    }
    /// Increments the counter `key` as [`KvStore::incr`] does and, in the same round trip
    /// to the store, returns the value of `read` (the gateway reads a session's revocation
    /// with the count of its client's requests).
    async fn incr_reading(
        &self,
        key: &str,
        ttl: Duration,
        read: Option<&str>,
    ) -> anyhow::Result<(u64, Option<String>)>;
    /// Returns the time left before `key` expires (`None` when missing or not expiring).
    async fn ttl(&self, key: &str) -> anyhow::Result<Option<Duration>>;
    /// Admits one event at `at` under the sliding log `key` when, counting it, no rule
    /// sees more than `limit` events in any `window` ending at `at`; otherwise records
    /// nothing and returns how long until it would be admitted. Atomic. The log is kept
    /// for the longest window (wall clock); `at` is the caller's clock, so a movable
    /// security clock in tests moves the windows with it.
    async fn admit(
        &self,
        key: &str,
        at: chrono::DateTime<chrono::Utc>,
        rules: &[RateLimit],
    ) -> anyhow::Result<Result<(), Duration>>;
}

/// The wait until an event at `at` fits every rule, given the earlier events' times
/// (milliseconds, any order); `None` when it fits now.
fn sliding_wait(events: &[i64], at: i64, rules: &[RateLimit]) -> Option<Duration> {
    let mut wait = 0_i64;
    for rule in rules {
        let window = i64::try_from(rule.window.as_millis()).unwrap_or(i64::MAX);
        let mut recent: Vec<i64> = events
            .iter()
            .copied()
            .filter(|&event| event > at.saturating_sub(window))
            .collect();
        let Ok(limit) = usize::try_from(rule.limit) else {
            continue;
        };
        if recent.len() < limit {
            continue;
        }
        recent.sort_unstable();
        // The oldest event that must leave the window for the new one to fit.
        let Some(&leaving) = recent
            .len()
            .checked_sub(limit.max(1))
            .and_then(|index| recent.get(index))
        else {
            continue;
        };
        wait = wait.max(leaving.saturating_add(window).saturating_sub(at));
    }
    (wait > 0).then(|| Duration::from_millis(u64::try_from(wait).unwrap_or(u64::MAX)))
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
    /// [`INCR_SCRIPT`], with its hash computed once.
    incr_script: redis::Script,
}

const TAKE_SCRIPT: &str = r"
local value = redis.call('GET', KEYS[1])
if value then redis.call('DEL', KEYS[1]) end
return value
";

// A sliding log in a sorted set scored by event time (ms). ARGV: the event's time, a
// unique member, the longest window, then pairs of limit and window. Returns 0 when
// the event was admitted, or the milliseconds to wait.
const ADMIT_SCRIPT: &str = r"
local at = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', at - tonumber(ARGV[3]))
local wait = 0
for i = 4, #ARGV, 2 do
  local limit = tonumber(ARGV[i])
  local window = tonumber(ARGV[i + 1])
  local recent = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (at - window), '+inf', 'WITHSCORES')
  local count = #recent / 2
  if count >= limit then
    local leaving = tonumber(recent[(count - math.max(limit, 1)) * 2 + 2])
    wait = math.max(wait, leaving + window - at)
  end
end
if wait > 0 then return wait end
redis.call('ZADD', KEYS[1], at, ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
";

// Sets the expiry when the counter is new, or when an earlier expiry was lost.
const INCR_SCRIPT: &str = r"
local count = redis.call('INCR', KEYS[1])
if count == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
local read = false
if KEYS[2] then
  read = redis.call('GET', KEYS[2])
end
return {count, read}
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
        Ok(RedisStore {
            connection,
            prefix,
            incr_script: redis::Script::new(INCR_SCRIPT),
        })
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

    /// Redis bounds its memory itself (`maxmemory` and its eviction policy).
    async fn cache(&self, key: &str, value: &str, ttl: Duration) -> anyhow::Result<()> {
        self.set(key, value, ttl).await
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

    async fn incr_reading(
        &self,
        key: &str,
        ttl: Duration,
        read: Option<&str>,
    ) -> anyhow::Result<(u64, Option<String>)> {
        let mut connection = self.connection.clone();
        let mut script = self.incr_script.prepare_invoke();
        script.key(self.key(key));
        if let Some(read) = read {
            script.key(self.key(read));
        }
        let (count, value): (i64, Option<String>) = script
            .arg(millis(ttl))
            .invoke_async(&mut connection)
            .await?;
        Ok((
            u64::try_from(count).context("counter went negative")?,
            value,
        ))
    }

    async fn ttl(&self, key: &str) -> anyhow::Result<Option<Duration>> {
        let mut connection = self.connection.clone();
        let pttl: i64 = redis::cmd("PTTL")
            .arg(self.key(key))
            .query_async(&mut connection)
            .await?;
        Ok(u64::try_from(pttl).ok().map(Duration::from_millis))
    }

    async fn admit(
        &self,
        key: &str,
        at: chrono::DateTime<chrono::Utc>,
        rules: &[RateLimit],
    ) -> anyhow::Result<Result<(), Duration>> {
        let mut connection = self.connection.clone();
        let admit = redis::Script::new(ADMIT_SCRIPT);
        let mut script = admit.prepare_invoke();
        script
            .key(self.key(key))
            .arg(at.timestamp_millis())
            .arg(uuid::Uuid::new_v4().simple().to_string())
            .arg(millis(longest(rules)));
        for rule in rules {
            script.arg(rule.limit).arg(millis(rule.window));
        }
        let wait: i64 = script.invoke_async(&mut connection).await?;
        Ok(match u64::try_from(wait) {
            Ok(0) | Err(_) => Ok(()),
            Ok(wait) => Err(Duration::from_millis(wait)),
        })
    }
}

fn longest(rules: &[RateLimit]) -> Duration {
    rules
        .iter()
        .map(|rule| rule.window)
        .max()
        .unwrap_or_default()
}

struct Entry {
    value: String,
    expires_at: Instant,
}

/// The most bytes of cache entries (keys and values) an in-process store keeps: about
/// 20,000 pages of merchant listings. Cache keys come from requests (a listing's search),
/// so without a bound a flood of distinct searches would grow the process for as long as
/// the entries live.
pub const MEMORY_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// A cache entry of a [`MemoryStore`] and the time it lives.
#[derive(Clone)]
struct Cached {
    value: String,
    ttl: Duration,
}

/// Expires each cache entry after its own TTL, counted again when it is set again (as
/// Redis's `SET ... PX` does).
struct CachedExpiry;

impl moka::Expiry<String, Cached> for CachedExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        cached: &Cached,
        _at: Instant,
    ) -> Option<Duration> {
        Some(cached.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        cached: &Cached,
        _at: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(cached.ttl)
    }
}

/// An in-process [`KvStore`] for `tavana up` and unit tests; expired keys are purged lazily.
/// Cache entries live apart, within a memory budget, so that however many of them
/// arrive, none of the plain entries (counters, codes) is ever dropped for them.
pub struct MemoryStore {
    entries: Mutex<HashMap<String, Entry>>,
    operations: AtomicU64,
    cached: moka::sync::Cache<String, Cached>,
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore::with_cache_budget(MEMORY_CACHE_BYTES)
    }
}

impl MemoryStore {
    /// Creates an empty store whose cache entries take at most [`MEMORY_CACHE_BYTES`].
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Creates an empty store whose cache entries take at most `bytes`.
    pub fn with_cache_budget(bytes: u64) -> MemoryStore {
        MemoryStore {
            entries: Mutex::default(),
            operations: AtomicU64::default(),
            cached: moka::sync::Cache::builder()
                .max_capacity(bytes)
                .weigher(|key: &String, cached: &Cached| {
                    u32::try_from(key.len() + cached.value.len()).unwrap_or(u32::MAX)
                })
                .expire_after(CachedExpiry)
                .build(),
        }
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

    async fn cache(&self, key: &str, value: &str, ttl: Duration) -> anyhow::Result<()> {
        self.cached.insert(
            key.to_owned(),
            Cached {
                value: value.to_owned(),
                ttl,
            },
        );
        Ok(())
    }

    async fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        let plain = MemoryStore::live(&self.entries(), key).map(|entry| entry.value.clone());
        Ok(plain.or_else(|| self.cached.get(key).map(|cached| cached.value)))
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
        self.cached.invalidate(key);
        Ok(())
    }

    async fn incr_reading(
        &self,
        key: &str,
        ttl: Duration,
        read: Option<&str>,
    ) -> anyhow::Result<(u64, Option<String>)> {
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
        let value =
            read.and_then(|read| MemoryStore::live(&entries, read).map(|e| e.value.clone()));
        Ok((count, value))
    }

    async fn ttl(&self, key: &str) -> anyhow::Result<Option<Duration>> {
        let entries = self.entries();
        Ok(MemoryStore::live(&entries, key)
            .map(|entry| entry.expires_at.saturating_duration_since(Instant::now())))
    }

    async fn admit(
        &self,
        key: &str,
        at: chrono::DateTime<chrono::Utc>,
        rules: &[RateLimit],
    ) -> anyhow::Result<Result<(), Duration>> {
        let at = at.timestamp_millis();
        let longest = longest(rules);
        let keep_after = at.saturating_sub(i64::try_from(longest.as_millis()).unwrap_or(i64::MAX));
        let mut entries = self.entries();
        let mut events: Vec<i64> = MemoryStore::live(&entries, key)
            .map(|entry| {
                entry
                    .value
                    .split(',')
                    .filter_map(|event| event.parse().ok())
                    .filter(|&event| event > keep_after)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(wait) = sliding_wait(&events, at, rules) {
            return Ok(Err(wait));
        }
        events.push(at);
        let value = events
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        entries.insert(
            key.to_owned(),
            Entry {
                value,
                expires_at: expiry(longest),
            },
        );
        Ok(Ok(()))
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

/// A rate limit: at most `limit` events per `window` (fixed windows in [`check_rate`],
/// sliding ones in [`KvStore::admit`]).
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
    Ok(check_rate_reading(store, key, rule, None).await?.0)
}

/// Counts one event under `key` as [`check_rate`] does, and returns the value of `read`
/// from the same round trip to the store.
pub async fn check_rate_reading(
    store: &dyn KvStore,
    key: &str,
    rule: RateLimit,
    read: Option<&str>,
) -> anyhow::Result<(Result<(), Duration>, Option<String>)> {
    let (count, value) = store.incr_reading(key, rule.window, read).await?;
    if count <= rule.limit {
        return Ok((Ok(()), value));
    }
    let retry_after = store.ttl(key).await?.unwrap_or(rule.window);
    Ok((Err(retry_after), value))
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
    async fn set_get_and_delete_plain_and_cache_entries() {
        each_store(async |store| {
            for cache in [false, true] {
                let key = if cache { "page" } else { "a" };
                assert_eq!(store.get(key).await.unwrap(), None);
                for value in ["1", "2"] {
                    if cache {
                        store.cache(key, value, LONG).await.unwrap();
                    } else {
                        store.set(key, value, LONG).await.unwrap();
                    }
                    assert_eq!(store.get(key).await.unwrap().as_deref(), Some(value));
                }
                store.delete(key).await.unwrap();
                assert_eq!(store.get(key).await.unwrap(), None);
            }
        })
        .await;
    }

    #[tokio::test]
    async fn values_expire_after_their_ttl() {
        each_store(async |store| {
            store.set("short", "x", SHORT).await.unwrap();
            store.cache("short-page", "y", SHORT).await.unwrap();
            let ttl = store.ttl("short").await.unwrap().unwrap();
            assert!(ttl <= SHORT && ttl > Duration::ZERO);
            assert_eq!(store.get("short-page").await.unwrap().as_deref(), Some("y"));
            tokio::time::sleep(SHORT * 2).await;
            assert_eq!(store.get("short").await.unwrap(), None);
            assert_eq!(store.ttl("short").await.unwrap(), None);
            assert_eq!(store.get("short-page").await.unwrap(), None);
        })
        .await;
    }

    #[tokio::test]
    async fn cache_entries_stay_within_the_budget_and_never_displace_plain_ones() {
        const BUDGET: u64 = 10_000;
        let store = MemoryStore::with_cache_budget(BUDGET);
        store.set("limit:ip", "7", LONG).await.unwrap();
        store.set("otp:mobile", "123456", LONG).await.unwrap();
        let page = "x".repeat(1_000);
        for i in 0..200 {
            store
                .cache(&format!("page:{i}"), &page, LONG)
                .await
                .unwrap();
        }
        store.cached.run_pending_tasks();

        assert!(store.cached.weighted_size() <= BUDGET);
        let mut kept = 0;
        for i in 0..200 {
            kept += usize::from(store.get(&format!("page:{i}")).await.unwrap().is_some());
        }
        assert!(
            (1..=10).contains(&kept),
            "{kept} pages of 1 kB kept in 10 kB"
        );
        assert_eq!(store.get("limit:ip").await.unwrap().as_deref(), Some("7"));
        assert_eq!(
            store.take("otp:mobile").await.unwrap().as_deref(),
            Some("123456")
        );
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
    async fn a_count_reads_another_key_in_the_same_call_and_counts_alike() {
        each_store(async |store| {
            assert_eq!(
                store.incr_reading("n", LONG, Some("r")).await.unwrap(),
                (1, None)
            );
            store.set("r", "1", LONG).await.unwrap();
            assert_eq!(
                store.incr_reading("n", LONG, Some("r")).await.unwrap(),
                (2, Some("1".to_owned()))
            );
            assert_eq!(
                store.incr_reading("n", LONG, None).await.unwrap(),
                (3, None)
            );
            assert_eq!(store.incr("n", LONG).await.unwrap(), 4);
            assert!(store.ttl("n").await.unwrap().is_some());
            // The key read is left as it was.
            assert_eq!(store.get("r").await.unwrap().as_deref(), Some("1"));

            let rule = RateLimit {
                limit: 1,
                window: LONG,
            };
            let (first, read) = check_rate_reading(&*store, "ip", rule, Some("r"))
                .await
                .unwrap();
            assert_eq!((first, read.as_deref()), (Ok(()), Some("1")));
            let (second, read) = check_rate_reading(&*store, "ip", rule, Some("r"))
                .await
                .unwrap();
            assert!(second.is_err());
            assert_eq!(read.as_deref(), Some("1"));
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

    const PER_MINUTE: RateLimit = RateLimit {
        limit: 1,
        window: Duration::from_secs(60),
    };
    const FIVE_AN_HOUR: RateLimit = RateLimit {
        limit: 5,
        window: Duration::from_secs(3600),
    };

    fn at(seconds: f64) -> chrono::DateTime<chrono::Utc> {
        let start = chrono::DateTime::parse_from_rfc3339("2026-12-03T19:39:59.500Z").unwrap();
        let millis = format!("{:.0}", seconds * 1000.0).parse::<i64>().unwrap();
        (start + chrono::Duration::milliseconds(millis)).to_utc()
    }

    /// The wait of a request `seconds` into the test that the log of `key` refuses.
    async fn refused(store: &dyn KvStore, key: &str, seconds: f64) -> Duration {
        store
            .admit(key, at(seconds), &[PER_MINUTE, FIVE_AN_HOUR])
            .await
            .unwrap()
            .expect_err("refused")
    }

    #[tokio::test]
    async fn r3_a_sliding_minute_holds_across_a_minute_boundary() {
        each_store(async |store| {
            let rules = [PER_MINUTE, FIVE_AN_HOUR];
            assert_eq!(store.admit("m", at(0.0), &rules).await.unwrap(), Ok(()));
            // Half a second later the wall-clock minute has turned; the window has not.
            let wait = refused(&*store, "m", 0.5).await;
            assert_eq!(wait, Duration::from_millis(59_500));
            let wait = refused(&*store, "m", 59.999).await;
            assert_eq!(wait, Duration::from_millis(1));
            assert_eq!(store.admit("m", at(60.0), &rules).await.unwrap(), Ok(()));
            // Another key is not limited.
            assert_eq!(store.admit("n", at(60.0), &rules).await.unwrap(), Ok(()));
        })
        .await;
    }

    #[tokio::test]
    async fn r3_five_an_hour_slide_and_refusals_are_not_counted() {
        each_store(async |store| {
            let rules = [PER_MINUTE, FIVE_AN_HOUR];
            for minute in 0..5 {
                let time = at(f64::from(minute) * 600.0);
                assert_eq!(store.admit("h", time, &rules).await.unwrap(), Ok(()));
                // A refused request leaves no trace in the log.
                assert!(store.admit("h", time, &rules).await.unwrap().is_err());
            }
            // Five codes at 0, 10, .., 40 minutes: the sixth waits for the first to leave.
            let wait = refused(&*store, "h", 2700.0).await;
            assert_eq!(wait, Duration::from_secs(900));
            assert_eq!(store.admit("h", at(3600.0), &rules).await.unwrap(), Ok(()));
            // Then the 10-minute code is the one to leave.
            let wait = refused(&*store, "h", 3660.0).await;
            assert_eq!(wait, Duration::from_secs(540));
        })
        .await;
    }

    #[tokio::test]
    async fn r3_concurrent_requests_admit_exactly_one_a_minute() {
        each_store(async |store| {
            let attempts = (0..32).map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.admit("c", at(0.0), &[PER_MINUTE]).await })
            });
            let mut admitted = 0;
            for attempt in attempts {
                if attempt.await.unwrap().unwrap().is_ok() {
                    admitted += 1;
                }
            }
            assert_eq!(admitted, 1);
        })
        .await;
    }
}
