//! Synchronous reads from peer services, made before a money transaction (never inside).

use tavana_kit::caller::{Caller, attach};
use tavana_kit::grpc::{Channel, Dialer};
use tavana_proto::identity::v1::GetOrganizationRequest;
use tavana_proto::identity::v1::identity_service_client::IdentityServiceClient;
use tavana_proto::merchant_directory::v1::merchant_directory_service_client::MerchantDirectoryServiceClient;
use tavana_proto::merchant_directory::v1::{GetMerchantRequest, MerchantStatus};
use tonic::Code;

use crate::domain::purchase::PurchaseKind;
use crate::error::CreditError;

/// The name this service calls its peers with.
pub const SERVICE_NAME: &str = "credit";

/// What a purchase needs to know of its merchant (R14).
#[derive(Clone, Debug)]
pub struct MerchantInfo {
    /// The merchant's name, for the schedule.
    pub name: String,
}

/// Clients of merchant-directory and identity.
#[derive(Clone)]
pub struct Peers {
    merchants: MerchantDirectoryServiceClient<Channel>,
    identity: IdentityServiceClient<Channel>,
}

fn caller() -> Caller {
    Caller::service(SERVICE_NAME)
}

fn unavailable(peer: &str, status: &tonic::Status) -> CreditError {
    CreditError::Unavailable(format!("{peer}: {}", status.message()))
}

impl Peers {
    /// Connects lazily to the peers with a per-call deadline.
    pub fn connect(
        merchant_directory_url: &str,
        identity_url: &str,
        dialer: &Dialer,
    ) -> anyhow::Result<Peers> {
        Ok(Peers {
            merchants: MerchantDirectoryServiceClient::new(dialer.channel(merchant_directory_url)?),
            identity: IdentityServiceClient::new(dialer.channel(identity_url)?),
        })
    }

    /// Returns the merchant if it is contracted and supports `kind` (R14).
    #[tracing::instrument(skip_all, fields(merchant_id = %merchant_id))]
    pub async fn merchant_for(
        &self,
        merchant_id: &str,
        kind: PurchaseKind,
    ) -> Result<MerchantInfo, CreditError> {
        let request = GetMerchantRequest {
            merchant_id: merchant_id.to_owned(),
            directory: false,
        };
        let response = self
            .merchants
            .clone()
            .get_merchant(attach(request, &caller()))
            .await;
        let merchant = match response {
            Ok(response) => response.into_inner().merchant,
            Err(status) if matches!(status.code(), Code::NotFound | Code::InvalidArgument) => None,
            Err(status) => return Err(unavailable("merchant-directory", &status)),
        };
        let Some(merchant) = merchant else {
            return Err(CreditError::MerchantNotContracted);
        };
        if merchant.status != MerchantStatus::Contracted as i32 {
            return Err(CreditError::MerchantNotContracted);
        }
        let data = merchant.data.unwrap_or_default();
        let supported = match kind {
            PurchaseKind::Credit => data.supports_credit,
            PurchaseKind::Instalment => data.supports_instalment,
        };
        if !supported {
            return Err(CreditError::MerchantKindNotSupported);
        }
        Ok(MerchantInfo { name: data.name })
    }

    /// Returns whether the organization's contract with Tavana is in force (R14, R18).
    #[tracing::instrument(skip_all, fields(organization_id = %organization_id))]
    pub async fn contract_in_force(&self, organization_id: &str) -> Result<bool, CreditError> {
        let request = GetOrganizationRequest {
            organization_id: organization_id.to_owned(),
        };
        match self
            .identity
            .clone()
            .get_organization(attach(request, &caller()))
            .await
        {
            Ok(response) => Ok(response
                .into_inner()
                .organization
                .is_some_and(|organization| organization.contract_in_force)),
            Err(status) if status.code() == Code::NotFound => Ok(false),
            Err(status) => Err(unavailable("identity", &status)),
        }
    }
}
