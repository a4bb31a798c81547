//! SMS delivery (R28): the outbox relay hands each `sms.send` message to a provider.
//!
//! Providers: `dev` keeps messages in the `dev_sms` table (readable with `ListDevSms`),
//! `log` only logs them (masked), `http` calls an SMS gateway's REST API, retrying 5xx
//! answers and timeouts and giving up at once on 4xx.

use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use sea_orm::DatabaseConnection;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tavana_kit::clock::SharedClock;
use tavana_kit::outbox::DeliveryError;

use crate::domain::sms::{SmsMessage, SmsTemplate};

/// Which provider sends SMS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmsProviderKind {
    /// Keeps messages in the database, for local runs and tests.
    Dev,
    /// Only logs that a message was sent (masked).
    Log,
    /// Sends through an SMS gateway's HTTP API.
    Http,
}

/// Sends one SMS.
#[async_trait]
pub trait SmsProvider: Send + Sync + 'static {
    /// Sends `sms`; a retryable failure is tried again later by the relay.
    async fn send(&self, sms: &SmsMessage) -> Result<(), DeliveryError>;
}

/// Keeps messages in the `dev_sms` table.
pub struct DevProvider {
    db: DatabaseConnection,
    clock: SharedClock,
}

impl DevProvider {
    /// Creates the dev provider on identity's database.
    pub fn new(db: DatabaseConnection, clock: SharedClock) -> DevProvider {
        DevProvider { db, clock }
    }
}

#[async_trait]
impl SmsProvider for DevProvider {
    async fn send(&self, sms: &SmsMessage) -> Result<(), DeliveryError> {
        crate::store::insert_dev_sms(&self.db, sms, self.clock.now())
            .await
            .map_err(|error| DeliveryError::Retry(error.to_string()))
    }
}

/// Logs that a message was sent, with the mobile masked and without the text.
pub struct LogProvider;

#[async_trait]
impl SmsProvider for LogProvider {
    async fn send(&self, sms: &SmsMessage) -> Result<(), DeliveryError> {
        tracing::info!(
            mobile = %sms.masked_mobile(),
            template = sms.template.as_str(),
            "sms sent (log provider)"
        );
        Ok(())
    }
}

/// How the HTTP provider reaches its gateway.
#[derive(Clone, Debug)]
pub struct HttpProviderConfig {
    /// e.g. `https://sms.example/api`; the provider posts to `/otp` and `/send` under it.
    pub base_url: String,
    /// The provider's API key.
    pub api_key: SecretString,
    /// The sender line of plain messages.
    pub sender: String,
    /// The provider-side template of login codes.
    pub otp_template: String,
    /// The deadline of one HTTP call.
    pub timeout: Duration,
    /// How many times a 5xx or a timeout is retried before the relay takes over.
    pub max_retries: usize,
    /// The first retry delay.
    pub retry_min_delay: Duration,
}

/// Sends through an SMS gateway's REST API: `POST {base_url}/otp` with
/// `{receptor, template, token}` for login codes, `POST {base_url}/send` with
/// `{sender, receptor, message}` for the rest, `Authorization: Bearer <api_key>`.
pub struct HttpProvider {
    client: reqwest::Client,
    config: HttpProviderConfig,
}

/// One HTTP attempt's failure.
#[derive(Debug)]
enum Attempt {
    Retryable(String),
    Permanent(String),
}

#[derive(Serialize)]
struct OtpBody<'a> {
    receptor: &'a str,
    template: &'a str,
    token: &'a str,
}

#[derive(Serialize)]
struct SendBody<'a> {
    sender: &'a str,
    receptor: &'a str,
    message: &'a str,
}

impl HttpProvider {
    /// Creates the provider.
    pub fn new(config: HttpProviderConfig) -> anyhow::Result<HttpProvider> {
        anyhow::ensure!(
            !config.base_url.trim().is_empty(),
            "sms.base_url is required with the http SMS provider"
        );
        let client = tavana_kit::http::client_builder()
            .timeout(config.timeout)
            .build()?;
        Ok(HttpProvider { client, config })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.config.base_url.trim_end_matches('/'))
    }

    async fn attempt(&self, sms: &SmsMessage) -> Result<(), Attempt> {
        let request = match (sms.template, sms.code.as_deref()) {
            (SmsTemplate::LoginCode, Some(code)) => {
                self.client.post(self.url("otp")).json(&OtpBody {
                    receptor: &sms.mobile,
                    template: &self.config.otp_template,
                    token: code,
                })
            }
            _ => self.client.post(self.url("send")).json(&SendBody {
                sender: &self.config.sender,
                receptor: &sms.mobile,
                message: &sms.text,
            }),
        };
        let response = request
            .bearer_auth(self.config.api_key.expose_secret())
            .send()
            .await
            .map_err(|error| {
                if error.is_builder() {
                    Attempt::Permanent(format!("cannot build the request: {error}"))
                } else {
                    Attempt::Retryable(format!("sms gateway unreachable: {error}"))
                }
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(Attempt::Retryable(format!("sms gateway answered {status}")))
        } else {
            Err(Attempt::Permanent(format!("sms gateway refused: {status}")))
        }
    }
}

#[async_trait]
impl SmsProvider for HttpProvider {
    async fn send(&self, sms: &SmsMessage) -> Result<(), DeliveryError> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.config.retry_min_delay)
            .with_max_delay(self.config.retry_min_delay.saturating_mul(16))
            .with_max_times(self.config.max_retries);
        let outcome = (|| self.attempt(sms))
            .retry(backoff)
            .when(|failure| matches!(failure, Attempt::Retryable(_)))
            .notify(|failure, delay| {
                tracing::warn!(
                    mobile = %sms.masked_mobile(),
                    error = ?failure,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "sms send failed, retrying"
                );
            })
            .await;
        match outcome {
            Ok(()) => Ok(()),
            Err(Attempt::Retryable(reason)) => Err(DeliveryError::Retry(reason)),
            Err(Attempt::Permanent(reason)) => Err(DeliveryError::Permanent(reason)),
        }
    }
}
