//! What every handler shares: clients of the five services, token keys,
//! the expiring-key store and the settings.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tavana_kit::clock::AdjustableClock;
use tavana_kit::grpc::{Channel, Dialer};
use tavana_kit::store::KvStore;
use tavana_proto::audit::v1::audit_service_client::AuditServiceClient;
use tavana_proto::credit::v1::credit_service_client::CreditServiceClient;
use tavana_proto::guarantee::v1::guarantee_service_client::GuaranteeServiceClient;
use tavana_proto::identity::v1::identity_service_client::IdentityServiceClient;
use tavana_proto::merchant_directory::v1::merchant_directory_service_client::MerchantDirectoryServiceClient;
use tavana_proto::settlement::v1::settlement_service_client::SettlementServiceClient;

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
    /// Base URL of the identity service (gRPC), e.g. `http://127.0.0.1:50051`.
    pub identity_url: String,
    /// Base URL of the guarantee service (gRPC).
    pub guarantee_url: String,
    /// Base URL of the credit service (gRPC).
    pub credit_url: String,
    /// Base URL of the settlement service (gRPC).
    pub settlement_url: String,
    /// Base URL of the merchant-directory service (gRPC).
    pub merchant_directory_url: String,
    /// Serves `/v1/dev/*` (dev SMS, dev clock); never in production.
    pub dev: bool,
    /// Origins allowed by CORS (the portal); empty allows none.
    pub cors_origins: Vec<String>,
    /// Requests per minute one client IP may make.
    pub rate_limit_per_ip_per_minute: u64,
    /// Card purchases and refunds per minute one merchant API key may make.
    pub rate_limit_per_merchant_per_minute: u64,
    /// Card purchases per minute on one card, whatever the merchant (R21).
    pub rate_limit_per_card_per_minute: u64,
    /// How many proxies in front of the gateway append to `X-Forwarded-For`
    /// (an ingress controller is 1): the client IP is the entry that many
    /// from the right. 0 uses the connection's peer and ignores the header.
    pub trusted_proxy_hops: usize,
    /// Deadline of one call to a service, in milliseconds.
    pub service_timeout_ms: u64,
    /// Largest request body, in bytes (API.md: 64 KiB).
    pub max_body_bytes: usize,
    /// Largest body of the CSV and JSON uploads (`/v1/employees/import`,
    /// `/v1/remittances`), in bytes.
    pub max_upload_bytes: usize,
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
            rate_limit_per_merchant_per_minute: 600,
            rate_limit_per_card_per_minute: 10,
            trusted_proxy_hops: 0,
            service_timeout_ms: 30_000,
            max_body_bytes: 64 * 1024,
            max_upload_bytes: 256 * 1024 * 1024,
        }
    }
}

impl GatewaySettings {
    /// The deadline of one call to a service.
    pub fn service_timeout(&self) -> Duration {
        Duration::from_millis(self.service_timeout_ms)
    }
}

/// State shared by every handler: one reference-counted pointer to [`Services`], so that
/// axum's clone of it for every layer and extractor of a request is one atomic increment,
/// not a clone of every service client (each a channel sender of its own).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct Services {
    /// Client of the identity service (login, employees, organizations, roles); accepts
    /// messages up to [`MAX_GRPC_MESSAGE`] for employee imports.
    pub identity: IdentityServiceClient<Channel>,
    /// Client of the guarantee service (credit requests and their decisions).
    pub guarantee: GuaranteeServiceClient<Channel>,
    /// Client of the credit service (facilities, balances, purchases, refunds, cards).
    pub credit: CreditServiceClient<Channel>,
    /// Client of the settlement service (instalments, deductions, remittances);
    /// accepts messages up to [`MAX_GRPC_MESSAGE`] for remittances.
    pub settlement: SettlementServiceClient<Channel>,
    /// Client of the merchant-directory service (merchants, proposals, API keys).
    pub merchants: MerchantDirectoryServiceClient<Channel>,
    /// The audit trail of each service (R32).
    pub audit: Arc<[AuditServiceClient<Channel>]>,
    /// Keys that verify access tokens.
    pub token_keys: SharedTokenKeys,
    /// Rate-limit counters (Redis, or in-process).
    pub store: Arc<dyn KvStore>,
    /// The dev clock, present only in dev mode.
    pub dev_clock: Option<Arc<AdjustableClock>>,
    /// The settings the gateway runs with.
    pub settings: Arc<GatewaySettings>,
    /// A secret shared with the portal in the same process: a request that
    /// carries it is the portal calling on behalf of the client whose IP it
    /// names (set by `tavana up`; `None` trusts no such request).
    pub forward_token: Option<Arc<str>>,
}

impl AppState {
    /// Connects (lazily) to every service named in the settings.
    pub fn new(
        settings: GatewaySettings,
        store: Arc<dyn KvStore>,
        dev_clock: Option<Arc<AdjustableClock>>,
        dialer: &Dialer,
    ) -> anyhow::Result<AppState> {
        let channel = |url: &str| dialer.channel(url);
        let audit = [
            &settings.identity_url,
            &settings.guarantee_url,
            &settings.credit_url,
            &settings.settlement_url,
            &settings.merchant_directory_url,
        ]
        .into_iter()
        .map(|url| channel(url).map(AuditServiceClient::new))
        .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(AppState(Arc::new(Services {
            audit: audit.into(),
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
            forward_token: None,
        })))
    }

    /// Trusts requests that carry `token` as the portal's, in the same process.
    pub fn with_forward_token(mut self, token: Arc<str>) -> AppState {
        Arc::make_mut(&mut self.0).forward_token = Some(token);
        self
    }
}
