//! Identity's outbox topics and their delivery: the relay hands each `sms.send` message
//! to the configured SMS provider (R28).

use std::sync::Arc;

use async_trait::async_trait;
use tavana_kit::outbox::{Deliver, DeliveryError};

use crate::domain::login::LoginCodeKey;
use crate::domain::sms::SmsMessage;
use crate::sms::SmsProvider;

/// The outbox topic of an SMS to send.
pub const SMS_TOPIC: &str = "sms.send";

/// Delivers the outbox's `sms.send` messages through a provider, rendering login codes
/// (which the outbox never holds) at send time.
pub struct SmsDelivery {
    provider: Arc<dyn SmsProvider>,
    code_key: LoginCodeKey,
}

impl SmsDelivery {
    /// Creates the delivery of a provider.
    pub fn new(provider: Arc<dyn SmsProvider>, code_key: LoginCodeKey) -> SmsDelivery {
        SmsDelivery { provider, code_key }
    }
}

#[async_trait]
impl Deliver for SmsDelivery {
    async fn deliver(&self, topic: &str, payload: &[u8]) -> Result<(), DeliveryError> {
        if topic != SMS_TOPIC {
            return Err(DeliveryError::Permanent(format!("unknown topic {topic}")));
        }
        let sms: SmsMessage = serde_json::from_slice(payload)
            .map_err(|error| DeliveryError::Permanent(format!("bad sms payload: {error}")))?;
        self.provider.send(&sms.rendered(&self.code_key)).await
    }
}
