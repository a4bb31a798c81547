//! The identity service: employees (HR data), organizations, accounts, roles, SMS login,
//! sessions and the SMS outbox (R1-R6, R28).
//!
//! `serve` connects to its database, starts the outbox relay that sends SMS through the
//! configured provider, and serves `IdentityService` over gRPC.

pub mod domain;
pub mod error;
pub mod rpc;
pub mod sms;
pub mod store;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sea_orm::DatabaseConnection;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tavana_identity_migration::Migrator;
use tavana_kit::Shared;
use tavana_kit::clock::SharedClock;
use tavana_kit::config::{DatabaseSettings, GrpcSettings};
use tavana_kit::outbox::OutboxRelay;
use tavana_proto::identity::v1::identity_service_server::IdentityServiceServer;

use crate::domain::tokens::{DEV_KID, DEV_PRIVATE_KEY_PEM, PublicKey, TokenSigner};
use crate::rpc::IdentityRpc;
use crate::sms::{
    DevProvider, HttpProvider, HttpProviderConfig, LogProvider, SmsDelivery, SmsProvider,
    SmsProviderKind,
};

/// The gRPC service name, for health checks.
pub const GRPC_SERVICE_NAME: &str = "tavana.identity.v1.IdentityService";

/// Largest gRPC message identity accepts (HR imports).
pub const MAX_GRPC_MESSAGE: usize = 256 * 1024 * 1024;

/// Settings of the identity service (section `identity`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Its own database; empty means `./data/identity.db`.
    pub database: DatabaseSettings,
    /// Its gRPC server.
    pub grpc: GrpcSettings,
    /// Dev mode: the built-in JWT key and the dev SMS provider are allowed.
    pub dev: bool,
    /// Access and refresh tokens.
    pub jwt: JwtSettings,
    /// SMS delivery.
    pub sms: SmsSettings,
    /// The app download link sent in the welcome SMS (R4, S6).
    pub app_download_url: String,
    /// Login codes (R3).
    pub login: LoginSettings,
}

/// Token settings. Secrets come only from the environment or a file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct JwtSettings {
    /// The Ed25519 private key, PKCS#8 PEM (`TAVANA_IDENTITY__JWT__PRIVATE_KEY_PEM`).
    #[serde(skip_serializing)]
    pub private_key_pem: Option<SecretString>,
    /// A file holding the Ed25519 private key, PKCS#8 PEM.
    pub private_key_file: Option<PathBuf>,
    /// The `kid` of the current key; defaults to `dev-1` for the built-in dev key.
    pub kid: String,
    /// Public keys of earlier signing keys, still accepted until their tokens expire.
    pub previous_public_keys: Vec<PreviousPublicKey>,
    /// How long a refresh token is valid, in days.
    pub refresh_token_days: u32,
}

impl Default for JwtSettings {
    fn default() -> Self {
        JwtSettings {
            private_key_pem: None,
            private_key_file: None,
            kid: String::new(),
            previous_public_keys: Vec::new(),
            refresh_token_days: 30,
        }
    }
}

/// A public key of an earlier signing key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PreviousPublicKey {
    pub kid: String,
    pub public_key_pem: String,
}

/// SMS delivery settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct SmsSettings {
    /// `dev`, `log` or `http`; unset means `dev` in dev mode and `log` otherwise.
    pub provider: Option<SmsProviderKind>,
    /// The HTTP provider's base URL.
    pub base_url: String,
    /// The HTTP provider's API key (`TAVANA_IDENTITY__SMS__API_KEY`).
    #[serde(skip_serializing)]
    pub api_key: Option<SecretString>,
    /// The sender line of plain messages.
    pub sender: String,
    /// The provider-side template of login codes.
    pub otp_template: String,
    /// The deadline of one HTTP call, in milliseconds.
    pub timeout_ms: u64,
    /// How many times a 5xx or a timeout is retried at once before the outbox backs off.
    pub max_retries: usize,
    /// The first retry delay, in milliseconds.
    pub retry_min_delay_ms: u64,
}

impl Default for SmsSettings {
    fn default() -> Self {
        SmsSettings {
            provider: None,
            base_url: String::new(),
            api_key: None,
            sender: String::new(),
            otp_template: "tavana-login".to_owned(),
            timeout_ms: 10_000,
            max_retries: 3,
            retry_min_delay_ms: 200,
        }
    }
}

/// Login code settings (R3).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct LoginSettings {
    /// How long a code is valid.
    pub code_ttl_seconds: u64,
    /// How many wrong tries burn a challenge.
    pub max_attempts: u32,
}

impl Default for LoginSettings {
    fn default() -> Self {
        LoginSettings {
            code_ttl_seconds: 120,
            max_attempts: 5,
        }
    }
}

/// The app download link when none is configured.
pub const DEFAULT_APP_DOWNLOAD_URL: &str = "https://tavana.example/app";

impl Settings {
    /// Returns the database URL: the configured one, or `./data/identity.db`.
    pub fn database_url(&self) -> String {
        self.database.url_or_default("identity")
    }

    /// Returns the app download link of the welcome SMS.
    pub fn app_download_url(&self) -> &str {
        if self.app_download_url.trim().is_empty() {
            DEFAULT_APP_DOWNLOAD_URL
        } else {
            &self.app_download_url
        }
    }

    /// Returns the SMS provider in effect.
    pub fn sms_provider(&self) -> SmsProviderKind {
        self.sms.provider.unwrap_or(if self.dev {
            SmsProviderKind::Dev
        } else {
            SmsProviderKind::Log
        })
    }

    /// Builds the token signer from the configured key; the built-in dev key only in dev
    /// mode, so a production configuration without a key refuses to start.
    pub fn token_signer(&self) -> anyhow::Result<TokenSigner> {
        let previous: Vec<PublicKey> = self
            .jwt
            .previous_public_keys
            .iter()
            .map(|key| PublicKey {
                kid: key.kid.clone(),
                pem: key.public_key_pem.clone(),
            })
            .collect();
        let kid = |default: &str| {
            if self.jwt.kid.trim().is_empty() {
                default.to_owned()
            } else {
                self.jwt.kid.trim().to_owned()
            }
        };
        if let Some(pem) = &self.jwt.private_key_pem {
            return TokenSigner::new(&kid("key-1"), pem.expose_secret(), &previous);
        }
        if let Some(file) = &self.jwt.private_key_file {
            let pem = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read jwt.private_key_file {}", file.display()))?;
            return TokenSigner::new(&kid("key-1"), &pem, &previous);
        }
        anyhow::ensure!(
            self.dev,
            "no JWT signing key configured: set TAVANA_IDENTITY__JWT__PRIVATE_KEY_PEM or \
             identity.jwt.private_key_file (an Ed25519 PKCS#8 PEM key); the built-in key is \
             only for dev mode"
        );
        TokenSigner::new(&kid(DEV_KID), DEV_PRIVATE_KEY_PEM, &previous)
    }

    /// Returns the login code lifetime.
    pub fn code_ttl(&self) -> Duration {
        Duration::from_secs(self.login.code_ttl_seconds.max(1))
    }
}

/// Connects to identity's database and applies pending migrations.
pub async fn connect(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    tavana_kit::db::connect_and_migrate::<Migrator>(
        &settings.database_url(),
        settings.database.max_connections,
    )
    .await
}

/// Applies the pending migrations.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let db = connect(settings).await?;
    db.close().await.ok();
    Ok(())
}

/// Builds the SMS provider in effect.
pub fn sms_provider(
    settings: &Settings,
    db: DatabaseConnection,
    clock: SharedClock,
) -> anyhow::Result<Arc<dyn SmsProvider>> {
    Ok(match settings.sms_provider() {
        SmsProviderKind::Dev => Arc::new(DevProvider::new(db, clock)),
        SmsProviderKind::Log => Arc::new(LogProvider),
        SmsProviderKind::Http => Arc::new(HttpProvider::new(HttpProviderConfig {
            base_url: settings.sms.base_url.clone(),
            api_key: settings
                .sms
                .api_key
                .clone()
                .context("sms.api_key is required with the http SMS provider")?,
            sender: settings.sms.sender.clone(),
            otp_template: settings.sms.otp_template.clone(),
            timeout: Duration::from_millis(settings.sms.timeout_ms.max(1)),
            max_retries: settings.sms.max_retries,
            retry_min_delay: Duration::from_millis(settings.sms.retry_min_delay_ms),
        })?),
    })
}

/// Serves the identity service on `listener` until `shutdown` completes.
pub async fn serve(
    settings: Settings,
    shared: Shared,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let signer = settings.token_signer()?;
    let db = tavana_kit::db::connect_checked::<Migrator>(
        &settings.database_url(),
        settings.database.max_connections,
    )
    .await?;
    let provider = sms_provider(&settings, db.clone(), shared.clock.clone())?;

    let (outbox, relay) = OutboxRelay::start(db.clone(), Arc::new(SmsDelivery::new(provider)));

    let timeout = settings.grpc.request_timeout();
    let rpc = IdentityRpc::new(db, shared, signer, settings, outbox);
    let server = IdentityServiceServer::new(rpc)
        .max_decoding_message_size(MAX_GRPC_MESSAGE)
        .max_encoding_message_size(MAX_GRPC_MESSAGE);
    let served = tavana_kit::grpc::serve_grpc(
        listener,
        tonic::service::Routes::new(server),
        tavana_proto::FILE_DESCRIPTOR_SET,
        &[GRPC_SERVICE_NAME],
        timeout,
        shutdown,
    )
    .await;
    relay.stop().await;
    served
}

/// Bootstrap operations straight on identity's database, for `tavana admin` and the
/// end-to-end harness: thin wrappers over the store functions the RPCs use.
pub mod admin {
    use anyhow::Context;
    use sea_orm::DatabaseConnection;
    use tavana_kit::caller::Role;
    use tavana_kit::clock::SharedClock;

    use crate::domain::employee::EmployeeData;
    pub use crate::domain::employee::{ImportReport, RawEmployee, RejectedLine};
    use crate::domain::tehran_today;
    use crate::error::IdentityError;
    use crate::store;

    fn problem(error: IdentityError) -> anyhow::Error {
        match error {
            IdentityError::Internal(error) => error,
            other => {
                let problem = other.to_problem();
                let details: Vec<String> = problem
                    .violations
                    .iter()
                    .map(|v| format!("{}: {}", v.field, v.message_en))
                    .collect();
                anyhow::anyhow!(
                    "{} ({}) {}",
                    problem.message_en,
                    problem.code,
                    details.join("; ")
                )
            }
        }
    }

    /// Creates an organization, or renames it and sets its contract flag.
    pub async fn add_organization(
        db: &DatabaseConnection,
        id: &str,
        name: &str,
        in_force: bool,
    ) -> anyhow::Result<()> {
        store::upsert_organization(db, id.trim(), name.trim(), in_force, chrono::Utc::now())
            .await
            .context("cannot add the organization")?;
        Ok(())
    }

    /// Imports an HR CSV; bad lines are reported in the result, not fatal.
    pub async fn import_employees(
        db: &DatabaseConnection,
        csv: &[u8],
        clock: &SharedClock,
    ) -> anyhow::Result<ImportReport> {
        let now = clock.now();
        store::import_employees(db, csv, tehran_today(now), |_, _| true, now)
            .await
            .map_err(problem)
    }

    /// Creates or updates one employee; returns true when created.
    pub async fn upsert_employee(
        db: &DatabaseConnection,
        data: &RawEmployee,
        clock: &SharedClock,
    ) -> anyhow::Result<bool> {
        let now = clock.now();
        let data = EmployeeData::parse(data, tehran_today(now))
            .map_err(|violations| problem(IdentityError::InvalidFields(violations)))?;
        let (_, created) = store::upsert_employee(db, &data, |_| true, now)
            .await
            .map_err(problem)?;
        Ok(created)
    }

    /// Grants a staff role to the employee with this national ID.
    pub async fn grant_role(
        db: &DatabaseConnection,
        national_id: &str,
        role: Role,
        region: Option<&str>,
    ) -> anyhow::Result<()> {
        let national_id = tavana_kit::ids::NationalId::parse(national_id)
            .map_err(|_| anyhow::anyhow!("invalid national ID"))?;
        store::grant_role(db, national_id.as_str(), role, region, chrono::Utc::now())
            .await
            .map_err(problem)?;
        Ok(())
    }
}
