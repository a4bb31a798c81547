//! Delivery of the outbox messages: each topic is one gRPC call to a peer, as the
//! service identity `guarantee`. Receivers are idempotent (credit by request id,
//! identity by dedup key), so a message delivered twice changes nothing twice.

use async_trait::async_trait;
use tavana_kit::caller::{Caller, attach};
use tavana_kit::outbox::{Deliver, DeliveryError, decode_payload};
use tavana_proto::credit::v1::OpenFacilityRequest;
use tavana_proto::credit::v1::credit_service_client::CreditServiceClient;
use tavana_proto::identity::v1::NotifyEmployeeRequest;
use tavana_proto::identity::v1::identity_service_client::IdentityServiceClient;
use tonic::transport::Channel;

use crate::peers::SERVICE_NAME;

/// The topic that opens a facility for an approved request (R12).
pub const OPEN_FACILITY: &str = "credit.open_facility";
/// The topic that sends an SMS to an employee (R28).
pub const NOTIFY_EMPLOYEE: &str = "identity.notify_employee";

/// Delivers the guarantee service's outbox to credit and identity.
pub struct PeerDelivery {
    identity: IdentityServiceClient<Channel>,
    credit: CreditServiceClient<Channel>,
}

impl PeerDelivery {
    /// Creates a delivery over channels to identity and credit.
    pub fn new(identity: Channel, credit: Channel) -> PeerDelivery {
        PeerDelivery {
            identity: IdentityServiceClient::new(identity),
            credit: CreditServiceClient::new(credit),
        }
    }
}

/// Classifies a failed call: a malformed message can never succeed; anything else
/// (peer down, timeout, a refusal that may change) is tried again.
#[async_trait]
impl Deliver for PeerDelivery {
    async fn deliver(&self, topic: &str, payload: &[u8]) -> Result<(), DeliveryError> {
        let caller = Caller::service(SERVICE_NAME);
        match topic {
            OPEN_FACILITY => {
                let message: OpenFacilityRequest = decode_payload(payload)?;
                self.credit
                    .clone()
                    .open_facility(attach(message, &caller))
                    .await?;
                Ok(())
            }
            NOTIFY_EMPLOYEE => {
                let message: NotifyEmployeeRequest = decode_payload(payload)?;
                match self
                    .identity
                    .clone()
                    .notify_employee(attach(message, &caller))
                    .await
                {
                    Ok(_) => Ok(()),
                    // An employee removed from HR data cannot be notified; nothing to retry.
                    Err(status) if status.code() == tonic::Code::NotFound => Err(
                        DeliveryError::Permanent(format!("{topic}: employee not found")),
                    ),
                    Err(status) => Err(status.into()),
                }
            }
            other => Err(DeliveryError::Permanent(format!("unknown topic {other}"))),
        }
    }
}
