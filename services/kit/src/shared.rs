//! What every service in one process shares.

use std::sync::Arc;

use std::time::Duration;

use crate::clock::SharedClock;
use crate::grpc::{Dialer, InProcess};
use crate::store::KvStore;
use crate::trust::Keyring;

/// The clock (the dev clock under `tavana up --dev`), the expiring-key
/// store (Redis, or in-process without it), the keys that a service is started with, and
/// the servers of the process its calls reach without a socket.
#[derive(Clone)]
pub struct Shared {
    /// The one clock every service reads.
    pub clock: SharedClock,
    /// Login codes, rate-limit counters and short caches.
    pub store: Arc<dyn KvStore>,
    /// The process's private keys (each service signs its calls with its own) and the
    /// public keys it trusts.
    pub keyring: Keyring,
    /// The gRPC servers of this process (`tavana up`): calls to them skip the socket.
    pub in_process: InProcess,
}

impl Shared {
    /// How `principal` reaches its peers: calls it signs, each given `timeout`.
    pub fn dialer(&self, principal: &str, timeout: Duration) -> anyhow::Result<Dialer> {
        Ok(Dialer::new(self.keyring.signer(principal)?, timeout)
            .with_in_process(self.in_process.clone()))
    }
}
