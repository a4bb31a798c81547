//! Delivery of the credit outbox: each topic is a gRPC call to its receiver, which is
//! idempotent by the id the message carries (purchase id, refund id, credit request id).

use async_trait::async_trait;
use tavana_kit::caller::Caller;
use tavana_kit::forward;
use tavana_kit::grpc::{Channel, Dialer};
use tavana_kit::outbox::{Deliver, DeliveryError};
use tavana_proto::guarantee::v1::ReleaseGuaranteeRequest;
use tavana_proto::guarantee::v1::guarantee_service_client::GuaranteeServiceClient;
use tavana_proto::identity::v1::NotifyEmployeeRequest;
use tavana_proto::identity::v1::identity_service_client::IdentityServiceClient;
use tavana_proto::settlement::v1::settlement_service_client::SettlementServiceClient;
use tavana_proto::settlement::v1::{CancelInstalmentsRequest, RecordScheduleRequest};

use crate::peers::SERVICE_NAME;

/// Sends a purchase's schedule to settlement (R15).
pub const RECORD_SCHEDULE: &str = "settlement.record_schedule";
/// Cancels a refunded purchase's instalments in settlement (R20).
pub const CANCEL_INSTALMENTS: &str = "settlement.cancel_instalments";
/// Releases a closed facility's guarantee (R13).
pub const RELEASE_GUARANTEE: &str = "guarantee.release_guarantee";
/// Sends the purchase receipt SMS (R28).
pub use tavana_kit::outbox::NOTIFY_EMPLOYEE;

/// Delivers the credit outbox to settlement, guarantee and identity.
pub struct CreditDelivery {
    settlement: SettlementServiceClient<Channel>,
    guarantee: GuaranteeServiceClient<Channel>,
    identity: IdentityServiceClient<Channel>,
}

impl CreditDelivery {
    /// Connects lazily to the receivers.
    pub fn connect(
        settlement_url: &str,
        guarantee_url: &str,
        identity_url: &str,
        dialer: &Dialer,
    ) -> anyhow::Result<CreditDelivery> {
        Ok(CreditDelivery {
            settlement: SettlementServiceClient::new(dialer.channel(settlement_url)?),
            guarantee: GuaranteeServiceClient::new(dialer.channel(guarantee_url)?),
            identity: IdentityServiceClient::new(dialer.channel(identity_url)?),
        })
    }
}

#[async_trait]
impl Deliver for CreditDelivery {
    async fn deliver(&self, topic: &str, payload: &[u8]) -> Result<(), DeliveryError> {
        let caller = Caller::service(SERVICE_NAME);
        match topic {
            RECORD_SCHEDULE => forward!(
                self.settlement,
                record_schedule,
                RecordScheduleRequest,
                payload,
                &caller
            ),
            CANCEL_INSTALMENTS => forward!(
                self.settlement,
                cancel_instalments,
                CancelInstalmentsRequest,
                payload,
                &caller
            ),
            RELEASE_GUARANTEE => forward!(
                self.guarantee,
                release_guarantee,
                ReleaseGuaranteeRequest,
                payload,
                &caller
            ),
            NOTIFY_EMPLOYEE => forward!(
                self.identity,
                notify_employee,
                NotifyEmployeeRequest,
                payload,
                &caller
            ),
            other => {
                return Err(DeliveryError::Permanent(format!("unknown topic {other}")));
            }
        }
        Ok(())
    }
}
