//! Delivery of the outbox messages: each topic is one gRPC call to a peer, as the
//! service identity `guarantee`. Receivers are idempotent (credit by request id,
//! identity by dedup key), so a message delivered twice changes nothing twice.

use async_trait::async_trait;
use tavana_kit::caller::{Caller, attach};
use tavana_kit::grpc::Channel;
use tavana_kit::outbox::{Deliver, DeliveryError, decode_payload};
use tavana_proto::credit::v1::OpenFacilityRequest;
use tavana_proto::credit::v1::credit_service_client::CreditServiceClient;
use tavana_proto::identity::v1::NotifyEmployeeRequest;
use tavana_proto::identity::v1::identity_service_client::IdentityServiceClient;

use crate::peers::SERVICE_NAME;

/// The topic that opens a facility for an approved request (R12).
pub const OPEN_FACILITY: &str = "credit.open_facility";
/// The topic that sends an SMS to an employee (R28).
pub use tavana_kit::outbox::NOTIFY_EMPLOYEE;

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

/// Classifies credit's refusal to open an approved request's facility (R30: an approved
/// request always ends with a facility). What credit can never open (its terms are invalid
/// there, or the employee holds another open facility) fails for good: the outbox keeps it
/// as failed with the code, listed to support by `tavana admin outbox` and counted in its
/// metrics, instead of retrying it silently forever. Anything else is tried again.
pub fn open_facility_failure(request_id: &str, status: &tonic::Status) -> DeliveryError {
    let problem = tavana_kit::error::Problem::from_status(status);
    let for_good =
        status.code() == tonic::Code::InvalidArgument || problem.code == "facility_already_open";
    if for_good {
        let reason = format!(
            "approved_without_facility: credit refused request {request_id}: {} ({})",
            problem.code, problem.message_en
        );
        tracing::error!(request_id, code = %problem.code, "approved request has no facility");
        DeliveryError::Permanent(reason)
    } else {
        DeliveryError::from_status(status)
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
                let request_id = message.credit_request_id.clone();
                match self
                    .credit
                    .clone()
                    .open_facility(attach(message, &caller))
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(status) => Err(open_facility_failure(&request_id, &status)),
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tavana_kit::error::{ErrorKind, Problem};

    #[test]
    fn r30_an_approval_credit_can_never_open_fails_for_good_with_its_code() {
        let open = Problem::new(ErrorKind::Conflict, "facility_already_open", "open", "باز");
        let down = tonic::Status::unavailable("credit is down");

        let refused = open_facility_failure("REQ-1", &open.into());
        let retried = open_facility_failure("REQ-1", &down);

        match refused {
            DeliveryError::Permanent(reason) => {
                assert!(reason.starts_with("approved_without_facility"), "{reason}");
                assert!(reason.contains("facility_already_open"), "{reason}");
                assert!(reason.contains("REQ-1"), "{reason}");
            }
            other => panic!("expected a permanent failure, got {other:?}"),
        }
        assert!(matches!(retried, DeliveryError::Retry(_)));
    }
}
