//! The listing cache (R27): pages of `ListMerchants` in the key-value store (Redis, or
//! in-process without it).
//!
//! Every page key carries the current *generation*, a random token stored under one key.
//! A change that affects listings (an approval, a suspension) replaces the token after its
//! transaction commits, so every page cached before it is never read again and expires
//! on its own. Tokens are random rather than a counter so that a lost or evicted
//! generation key can never bring back an old number whose pages are still alive. Pages
//! live only a short TTL: should a bump fail (Redis unreachable), a stale page, and so a
//! suspended merchant in it, shows for at most that long.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use prost::Message;
use tavana_kit::store::KvStore;
use tavana_proto::merchant_directory::v1::ListMerchantsResponse;

use crate::domain::search::MerchantSearch;

const GENERATION_KEY: &str = "merchant-directory:listing:generation";
/// The generation outlives every page by far; losing it only empties the cache.
const GENERATION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Pages of merchant listings, invalidated by generation.
#[derive(Clone)]
pub struct ListingCache {
    store: Arc<dyn KvStore>,
    ttl: Duration,
}

impl ListingCache {
    /// Creates a cache whose pages live `ttl`; a zero TTL turns caching off.
    pub fn new(store: Arc<dyn KvStore>, ttl: Duration) -> ListingCache {
        ListingCache { store, ttl }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// Returns the current generation, creating one when there is none.
    async fn generation(&self) -> anyhow::Result<String> {
        if let Some(generation) = self.store.get(GENERATION_KEY).await? {
            return Ok(generation);
        }
        let fresh = uuid::Uuid::new_v4().simple().to_string();
        self.store
            .set_nx(GENERATION_KEY, &fresh, GENERATION_TTL)
            .await?;
        Ok(self.store.get(GENERATION_KEY).await?.unwrap_or(fresh))
    }

    fn page_key(generation: &str, search: &MerchantSearch) -> String {
        format!(
            "merchant-directory:listing:{generation}:{}",
            search.fingerprint()
        )
    }

    /// Returns the cached page of `search` and the key to store it under on a miss; a
    /// store failure is logged and counts as a miss.
    pub async fn get(
        &self,
        search: &MerchantSearch,
    ) -> (Option<ListMerchantsResponse>, Option<String>) {
        if !self.enabled() {
            return (None, None);
        }
        let generation = match self.generation().await {
            Ok(generation) => generation,
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "listing cache unavailable");
                return (None, None);
            }
        };
        let key = ListingCache::page_key(&generation, search);
        let cached = match self.store.get(&key).await {
            Ok(cached) => cached,
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "listing cache read failed");
                return (None, None);
            }
        };
        let page = cached
            .and_then(|text| STANDARD.decode(text).ok())
            .and_then(|bytes| ListMerchantsResponse::decode(bytes.as_slice()).ok());
        (page, Some(key))
    }

    /// Stores a page under the key `get` returned (read before the database query, so a
    /// page read before a change lands under the old generation).
    pub async fn put(&self, key: &str, page: &ListMerchantsResponse) {
        let text = STANDARD.encode(page.encode_to_vec());
        if let Err(error) = self.store.cache(key, &text, self.ttl).await {
            tracing::warn!(error = %format!("{error:#}"), "listing cache write failed");
        }
    }

    /// Starts a new generation: every cached page is out of date.
    pub async fn invalidate(&self) {
        if !self.enabled() {
            return;
        }
        let fresh = uuid::Uuid::new_v4().simple().to_string();
        if let Err(error) = self.store.set(GENERATION_KEY, &fresh, GENERATION_TTL).await {
            tracing::warn!(
                error = %format!("{error:#}"),
                "listing cache invalidation failed; stale pages expire with their ttl"
            );
        }
    }
}
