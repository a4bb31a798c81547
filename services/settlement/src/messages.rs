//! The messages this service sends through its outbox, and their delivery.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use prost::Message;
use tavana_kit::caller::{Caller, attach};
use tavana_kit::outbox::{Deliver, DeliveryError, decode_payload};
use tavana_proto::credit::v1::MarkPurchaseSettledRequest;
use tavana_proto::credit::v1::credit_service_client::CreditServiceClient;
use tavana_proto::identity::v1::identity_service_client::IdentityServiceClient;
use tavana_proto::identity::v1::{NotifyEmployeeRequest, SmsTemplate};
use tonic::transport::Channel;

/// Topic of the call that tells credit a purchase is fully settled (R18).
pub const MARK_PURCHASE_SETTLED: &str = "credit.mark_purchase_settled";
/// Topic of the settlement SMS (R28).
pub const NOTIFY_EMPLOYEE: &str = "identity.notify_employee";

/// The name this service calls its peers with.
pub const SERVICE_NAME: &str = "settlement";

/// A message to write to the outbox.
pub use tavana_kit::outbox::Message as Outgoing;

/// Tells credit that every instalment of a purchase is settled; once per purchase.
pub fn purchase_settled(purchase_id: &str) -> Outgoing {
    Outgoing {
        topic: MARK_PURCHASE_SETTLED,
        dedup_key: purchase_id.to_owned(),
        payload: MarkPurchaseSettledRequest {
            purchase_id: purchase_id.to_owned(),
        }
        .encode_to_vec(),
    }
}

/// Sends an employee the settlement SMS of one remittance; once per remittance and employee.
pub fn settlement_sms(
    remittance_id: &str,
    employee_id: &str,
    period: &str,
    instalments: u64,
    amount: i64,
) -> Outgoing {
    let params = HashMap::from([
        ("period".to_owned(), period.to_owned()),
        ("instalments".to_owned(), instalments.to_string()),
        ("amount".to_owned(), amount.to_string()),
    ]);
    let dedup_key = format!("settlement:{remittance_id}:{employee_id}");
    Outgoing {
        topic: NOTIFY_EMPLOYEE,
        payload: NotifyEmployeeRequest {
            employee_id: employee_id.to_owned(),
            template: SmsTemplate::Settlement as i32,
            params,
            dedup_key: dedup_key.clone(),
        }
        .encode_to_vec(),
        dedup_key,
    }
}

/// Delivers the outbox to credit and identity.
pub struct PeerDelivery {
    credit: CreditServiceClient<Channel>,
    identity: IdentityServiceClient<Channel>,
}

impl PeerDelivery {
    /// Creates the delivery over lazily connecting channels.
    pub fn new(credit_url: &str, identity_url: &str, timeout: Duration) -> anyhow::Result<Self> {
        Ok(PeerDelivery {
            credit: CreditServiceClient::new(tavana_kit::grpc::channel(credit_url, timeout)?),
            identity: IdentityServiceClient::new(tavana_kit::grpc::channel(identity_url, timeout)?),
        })
    }
}

#[async_trait]
impl Deliver for PeerDelivery {
    async fn deliver(&self, topic: &str, payload: &[u8]) -> Result<(), DeliveryError> {
        let caller = Caller::service(SERVICE_NAME);
        match topic {
            MARK_PURCHASE_SETTLED => {
                let request: MarkPurchaseSettledRequest = decode_payload(payload)?;
                self.credit
                    .clone()
                    .mark_purchase_settled(attach(request, &caller))
                    .await?;
            }
            NOTIFY_EMPLOYEE => {
                let request: NotifyEmployeeRequest = decode_payload(payload)?;
                self.identity
                    .clone()
                    .notify_employee(attach(request, &caller))
                    .await?;
            }
            other => {
                return Err(DeliveryError::Permanent(format!("unknown topic {other}")));
            }
        }
        Ok(())
    }
}
