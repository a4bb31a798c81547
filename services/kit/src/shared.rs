//! What every service in one process shares.

use std::sync::Arc;

use crate::clock::SharedClock;
use crate::store::KvStore;
use crate::trust::Keyring;

/// The clock (the dev clock under `tavana up --dev`), the expiring-key
/// store (Redis, or in-process without it) and the keys that a service is started with.
#[derive(Clone)]
pub struct Shared {
    /// The one clock every service reads.
    pub clock: SharedClock,
    /// Login codes, rate-limit counters and short caches.
    pub store: Arc<dyn KvStore>,
    /// The process's private keys (each service signs its calls with its own) and the
    /// public keys it trusts.
    pub keyring: Keyring,
}
