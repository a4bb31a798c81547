//! What every service in one process shares.

use std::sync::Arc;

use crate::clock::SharedClock;
use crate::store::KvStore;

/// The clock (the dev clock under `tavana up --dev`) and the expiring-key
/// store (Redis, or in-process without it) that a service is started with.
#[derive(Clone)]
pub struct Shared {
    /// The one clock every service reads.
    pub clock: SharedClock,
    /// Login codes, rate-limit counters and short caches.
    pub store: Arc<dyn KvStore>,
}
