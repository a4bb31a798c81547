//! The identity service: employees (HR data), organizations, accounts, roles, SMS login,
//! sessions and the SMS outbox (R1-R6, R28).
//!
//! `serve` connects to its database, starts the outbox relay that sends SMS through the
//! configured provider, and serves `IdentityService` over gRPC.

pub mod convert;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod rpc;
pub mod service;
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
use tavana_kit::clock::{SecurityClock, SharedClock};
use tavana_kit::config::{DatabaseSettings, GrpcSettings};
use tavana_kit::outbox::OutboxRelay;
use tavana_proto::identity::v1::identity_service_server::IdentityServiceServer;

use crate::delivery::SmsDelivery;
use crate::domain::tokens::{DEV_KID, DEV_PRIVATE_KEY_PEM, PublicKey, TokenSigner};
use crate::rpc::IdentityRpc;
use crate::service::Identity;
use crate::sms::{
    DevProvider, HttpProvider, HttpProviderConfig, LogProvider, SmsProvider, SmsProviderKind,
};

/// The gRPC service name, for health checks.
pub const GRPC_SERVICE_NAME: &str = "tavana.identity.v1.IdentityService";

/// Which principals may call each method (default deny; user and merchant callers come
/// only from the gateway, see `docs/security.md`).
pub static POLICY: tavana_kit::trust::Policy = {
    use tavana_kit::trust::*;
    Policy {
        service: GRPC_SERVICE_NAME,
        audience: IDENTITY,
        methods: &[
            ("StartLogin", &[GATEWAY]),
            ("VerifyLogin", &[GATEWAY]),
            ("RefreshSession", &[GATEWAY]),
            ("Logout", &[GATEWAY]),
            ("GetSigningKeys", &[GATEWAY]),
            ("CheckSession", &[GATEWAY]),
            ("GetMe", &[GATEWAY]),
            ("GetEmployee", &[GATEWAY, GUARANTEE, CREDIT]),
            ("UpsertEmployee", &[GATEWAY, CLI]),
            ("ImportEmployees", &[GATEWAY, CLI]),
            ("ChangeMobile", &[GATEWAY]),
            ("AddOrganization", &[GATEWAY, CLI]),
            ("GetOrganization", &[CREDIT]),
            ("SetOrganizationContract", &[GATEWAY, CLI]),
            ("GrantRole", &[GATEWAY, CLI]),
            ("RevokeRole", &[GATEWAY, CLI]),
            ("NotifyEmployee", &[GUARANTEE, CREDIT, SETTLEMENT]),
            ("NotifyEmployees", &[SETTLEMENT]),
            ("ListDevSms", &[GATEWAY]),
        ],
        reads: &[
            "GetSigningKeys",
            "CheckSession",
            "GetMe",
            "GetEmployee",
            "GetOrganization",
            "ListDevSms",
        ],
    }
};

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
    /// Its outbox: how long an answer waits to deliver what it wrote.
    pub outbox: tavana_kit::config::OutboxSettings,
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
    /// The key id that tokens signed with it name.
    pub kid: String,
    /// The Ed25519 public key, PEM.
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
    /// How long a delivered SMS (its mobile and text) is kept in the outbox, in days.
    pub retention_days: u32,
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
            retention_days: 30,
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

/// Serves the identity service on `listener` until `shutdown` completes; security time
/// (tokens, login codes, rate windows) runs on the system clock, whatever `shared.clock`
/// says.
pub async fn serve(
    settings: Settings,
    shared: Shared,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with_security_clock(
        settings,
        shared,
        SecurityClock::system(),
        listener,
        shutdown,
    )
    .await
}

/// [`serve`] with security time read from `security`: for identity's own tests of token
/// lifetimes, code expiry and rate windows.
pub async fn serve_with_security_clock(
    settings: Settings,
    shared: Shared,
    security: SecurityClock,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let signer = settings.token_signer()?;
    let db = tavana_kit::db::connect_checked::<Migrator>(
        &settings.database_url(),
        settings.database.max_connections,
    )
    .await?;
    tavana_kit::metrics::watch_database("identity", db.clone());
    let provider = sms_provider(&settings, db.clone(), shared.clock.clone())?;

    let delivery = SmsDelivery::new(provider, signer.login_code_key().clone());
    let (outbox, relay) = OutboxRelay::start(db.clone(), Arc::new(delivery), &settings.outbox);

    let purge = spawn_sms_purge(
        db.clone(),
        chrono::Duration::days(i64::from(settings.sms.retention_days)),
    );

    let gate = tavana_kit::trust::Gate::new(shared.keyring.clone(), &POLICY)
        .and(&tavana_kit::audit::POLICY);
    let grpc = settings.grpc.clone();
    let in_process = shared.in_process.clone();
    let audit = tavana_kit::audit::server(db.clone());
    let rpc = IdentityRpc::new(Identity::new(
        db, shared, signer, settings, outbox, security,
    ));
    let server = IdentityServiceServer::new(rpc)
        .max_decoding_message_size(MAX_GRPC_MESSAGE)
        .max_encoding_message_size(MAX_GRPC_MESSAGE);
    let served = tavana_kit::grpc::serve_grpc(
        listener,
        tonic::service::Routes::new(server).add_service(audit),
        tavana_proto::FILE_DESCRIPTOR_SET,
        gate,
        grpc,
        in_process,
        shutdown,
    )
    .await;
    purge.abort();
    relay.stop().await;
    served
}

/// How often delivered SMS past their retention are purged.
const SMS_PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// Purges delivered SMS older than `retention` now and every hour. Retention is security
/// time: it runs on the real clock, never the dev clock.
fn spawn_sms_purge(
    db: DatabaseConnection,
    retention: chrono::Duration,
) -> tokio::task::JoinHandle<()> {
    tavana_kit::upkeep::spawn_every("sms purge", SMS_PURGE_INTERVAL, move || {
        let db = db.clone();
        async move { store::purge_delivered_sms(&db, retention, SecurityClock::system().now()).await }
    })
}

/// Bootstrap operations straight on identity's database, for `tavana admin` and the
/// end-to-end harness: thin wrappers over the store functions the RPCs use.
pub mod admin {
    use anyhow::Context;
    use sea_orm::DatabaseConnection;

    use tavana_kit::caller::{Caller, Role};
    use tavana_kit::clock::SharedClock;

    pub use crate::domain::employee::{ImportReport, RawEmployee, RejectedLine};
    use crate::error::IdentityError;
    use crate::{service, store};

    /// The actor of the admin command line in the audit trail (R32).
    fn admin_cli() -> Caller {
        Caller::service("admin-cli")
    }

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
        let id = tavana_kit::ids::OrganizationId::parse(id)
            .with_context(|| format!("{id}: not an organization id (letters, digits, - or _)"))?;
        store::upsert_organization(db, id.as_str(), name.trim(), in_force, chrono::Utc::now())
            .await
            .context("cannot add the organization")?;
        Ok(())
    }

    /// Imports an HR CSV through the service's use case, as the admin command line
    /// (R1, R32); bad lines are reported in the result, not fatal.
    pub async fn import_employees(
        db: &DatabaseConnection,
        csv: &[u8],
        clock: &SharedClock,
    ) -> anyhow::Result<ImportReport> {
        service::import_employees(db, &admin_cli(), csv, clock.now())
            .await
            .map_err(problem)
    }

    /// Creates or updates one employee through the service's use case, as the admin
    /// command line (R1, R32); returns true when created.
    pub async fn upsert_employee(
        db: &DatabaseConnection,
        data: &RawEmployee,
        clock: &SharedClock,
    ) -> anyhow::Result<bool> {
        let (_, created) = service::upsert_employee(db, &admin_cli(), data, clock.now())
            .await
            .map_err(problem)?;
        Ok(created)
    }

    /// Grants a staff role to the employee with this national ID through the service's
    /// use case (R6: a regional role needs a region, a national one takes none), as the
    /// admin command line (R32).
    pub async fn grant_role(
        db: &DatabaseConnection,
        national_id: &str,
        role: Role,
        region: Option<&str>,
    ) -> anyhow::Result<()> {
        let national_id = tavana_kit::ids::NationalId::parse(national_id)
            .map_err(|_| anyhow::anyhow!("invalid national ID"))?;
        service::record_grant(
            db,
            &admin_cli(),
            &national_id,
            role,
            region,
            chrono::Utc::now(),
        )
        .await
        .map_err(problem)?;
        Ok(())
    }
}
