//! What every handler shares: clients of the five services, token keys,
//! the expiring-key store and the settings.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tavana_kit::clock::AdjustableClock;
use tavana_kit::store::KvStore;
use tavana_proto::credit::v1::credit_service_client::CreditServiceClient;
use tavana_proto::guarantee::v1::guarantee_service_client::GuaranteeServiceClient;
use tavana_proto::identity::v1::identity_service_client::IdentityServiceClient;
use tavana_proto::merchant_directory::v1::merchant_directory_service_client::MerchantDirectoryServiceClient;
use tavana_proto::settlement::v1::settlement_service_client::SettlementServiceClient;
use tonic::transport::Channel;

use crate::auth::{SharedTokenKeys, TokenKeys};

/// Largest gRPC message the gateway sends or accepts (remittances of a
/// million lines, CSV imports).
pub const MAX_GRPC_MESSAGE: usize = 256 * 1024 * 1024;

/// Settings of the gateway (section `gateway`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewaySettings {
    /// Address to listen on.
    pub listen: String,
    /// Base URLs of the services.
    pub identity_url: String,
    pub guarantee_url: String,
    pub credit_url: String,
    pub settlement_url: String,
    pub merchant_directory_url: String,
    /// Serves `/v1/dev/*` (dev SMS, dev clock); never in production.
    pub dev: bool,
    /// Origins allowed by CORS (the portal); empty allows none.
    pub cors_origins: Vec<String>,
    /// Requests per minute one client IP may make.
    pub rate_limit_per_ip_per_minute: u64,
    /// Behind an ingress: take the client IP from `X-Forwarded-For` (set by
    /// the ingress controller) instead of the connection's peer.
    pub trust_forwarded_for: bool,
    /// Deadline of one call to a service, in milliseconds.
    pub service_timeout_ms: u64,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            listen: "127.0.0.1:8080".into(),
            identity_url: "http://127.0.0.1:50051".into(),
            guarantee_url: "http://127.0.0.1:50052".into(),
            credit_url: "http://127.0.0.1:50053".into(),
            settlement_url: "http://127.0.0.1:50054".into(),
            merchant_directory_url: "http://127.0.0.1:50055".into(),
            dev: false,
            cors_origins: Vec::new(),
            rate_limit_per_ip_per_minute: 600,
            trust_forwarded_for: false,
            service_timeout_ms: 30_000,
            max_body_bytes: 64 * 1024 * 1024,
        }
    }
}

/// State shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub identity: IdentityServiceClient<Channel>,
    pub guarantee: GuaranteeServiceClient<Channel>,
    pub credit: CreditServiceClient<Channel>,
    pub settlement: SettlementServiceClient<Channel>,
    pub merchants: MerchantDirectoryServiceClient<Channel>,
    /// Keys that verify access tokens.
    pub token_keys: SharedTokenKeys,
    /// Rate-limit counters (Redis, or in-process).
    pub store: Arc<dyn KvStore>,
    /// The dev clock, present only in dev mode.
    pub dev_clock: Option<Arc<AdjustableClock>>,
    /// The settings the gateway runs with.
    pub settings: Arc<GatewaySettings>,
}

impl AppState {
    /// Connects (lazily) to every service named in the settings.
    pub fn new(
        settings: GatewaySettings,
        store: Arc<dyn KvStore>,
        dev_clock: Option<Arc<AdjustableClock>>,
    ) -> anyhow::Result<AppState> {
        let timeout = Duration::from_millis(settings.service_timeout_ms);
        let channel = |url: &str| tavana_kit::grpc::channel(url, timeout);
        Ok(AppState {
            identity: IdentityServiceClient::new(channel(&settings.identity_url)?)
                .max_decoding_message_size(MAX_GRPC_MESSAGE)
                .max_encoding_message_size(MAX_GRPC_MESSAGE),
            guarantee: GuaranteeServiceClient::new(channel(&settings.guarantee_url)?),
            credit: CreditServiceClient::new(channel(&settings.credit_url)?),
            settlement: SettlementServiceClient::new(channel(&settings.settlement_url)?)
                .max_decoding_message_size(MAX_GRPC_MESSAGE)
                .max_encoding_message_size(MAX_GRPC_MESSAGE),
            merchants: MerchantDirectoryServiceClient::new(channel(
                &settings.merchant_directory_url,
            )?),
            token_keys: Arc::new(TokenKeys::default()),
            store,
            dev_clock: if settings.dev { dev_clock } else { None },
            settings: Arc::new(settings),
        })
    }
}
