//! The tonic handlers: read the caller, convert the message, call the service, convert
//! back.

use tavana_kit::caller::caller;
use tavana_kit::paging::{encode_token, page_size};
use tavana_proto::merchant_directory::v1 as pb;
use tavana_proto::merchant_directory::v1::merchant_directory_service_server::MerchantDirectoryService;
use tonic::{Request, Response, Status};

use crate::convert::{
    decode_cursor, kind_from_proto, merchant_input, merchant_status_to_proto, merchant_to_proto,
    proposal_status_from_proto, proposal_to_proto, purchase_kind_from_proto,
};
use crate::domain::search::{MerchantCursor, MerchantSearch};
use crate::service::MerchantDirectory;

/// The merchant directory's gRPC service.
#[derive(Clone)]
pub struct MerchantDirectoryRpc {
    service: MerchantDirectory,
}

impl MerchantDirectoryRpc {
    /// Serves the given use cases.
    pub fn new(service: MerchantDirectory) -> Self {
        MerchantDirectoryRpc { service }
    }
}

#[tonic::async_trait]
impl MerchantDirectoryService for MerchantDirectoryRpc {
    #[tracing::instrument(skip_all, fields(rpc = "ProposeMerchant"))]
    async fn propose_merchant(
        &self,
        request: Request<pb::ProposeMerchantRequest>,
    ) -> Result<Response<pb::ProposeMerchantResponse>, Status> {
        let caller = caller(&request);
        let message = request.into_inner();
        let input = merchant_input(message.data.unwrap_or_default());
        let proposal = self
            .service
            .propose(&caller, Some(&message.region_code), input)
            .await?;
        Ok(Response::new(pb::ProposeMerchantResponse {
            proposal: Some(proposal_to_proto(proposal)),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "ListProposals"))]
    async fn list_proposals(
        &self,
        request: Request<pb::ListProposalsRequest>,
    ) -> Result<Response<pb::ListProposalsResponse>, Status> {
        let caller = caller(&request);
        let message = request.into_inner();
        let page = self
            .service
            .list_proposals(
                &caller,
                proposal_status_from_proto(message.status),
                page_size(message.page_size),
                &message.page_token,
            )
            .await?;
        Ok(Response::new(pb::ListProposalsResponse {
            items: page.items.into_iter().map(proposal_to_proto).collect(),
            next_page_token: page
                .next
                .map(|next| encode_token(&next))
                .unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetProposal"))]
    async fn get_proposal(
        &self,
        request: Request<pb::GetProposalRequest>,
    ) -> Result<Response<pb::GetProposalResponse>, Status> {
        let caller = caller(&request);
        let proposal_id = request.into_inner().proposal_id;
        let proposal = self.service.get_proposal(&caller, &proposal_id).await?;
        Ok(Response::new(pb::GetProposalResponse {
            proposal: Some(proposal_to_proto(proposal)),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "DecideProposal"))]
    async fn decide_proposal(
        &self,
        request: Request<pb::DecideProposalRequest>,
    ) -> Result<Response<pb::DecideProposalResponse>, Status> {
        let caller = caller(&request);
        let message = request.into_inner();
        let decided = self
            .service
            .decide_proposal(
                &caller,
                &message.proposal_id,
                message.approve,
                message.reason.as_deref(),
            )
            .await?;
        Ok(Response::new(pb::DecideProposalResponse {
            merchant_id: decided.merchant.map(|merchant| merchant.id),
            api_key: decided.api_key,
            proposal: Some(proposal_to_proto(decided.proposal)),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "SuspendMerchant"))]
    async fn suspend_merchant(
        &self,
        request: Request<pb::SuspendMerchantRequest>,
    ) -> Result<Response<pb::SuspendMerchantResponse>, Status> {
        let caller = caller(&request);
        let message = request.into_inner();
        let merchant = self
            .service
            .suspend_merchant(&caller, &message.merchant_id, message.reason)
            .await?;
        Ok(Response::new(pb::SuspendMerchantResponse {
            merchant: Some(merchant_to_proto(merchant)),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "RotateMerchantKey"))]
    async fn rotate_merchant_key(
        &self,
        request: Request<pb::RotateMerchantKeyRequest>,
    ) -> Result<Response<pb::RotateMerchantKeyResponse>, Status> {
        let caller = caller(&request);
        let merchant_id = request.into_inner().merchant_id;
        let api_key = self.service.rotate_key(&caller, &merchant_id).await?;
        Ok(Response::new(pb::RotateMerchantKeyResponse { api_key }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "ListMerchants"))]
    async fn list_merchants(
        &self,
        request: Request<pb::ListMerchantsRequest>,
    ) -> Result<Response<pb::ListMerchantsResponse>, Status> {
        // Public: anyone may list contracted merchants (S7).
        let message = request.into_inner();
        let after: Option<MerchantCursor> = decode_cursor(&message.page_token)?;
        let search = MerchantSearch::new(
            &message.q,
            kind_from_proto(message.kind),
            &message.city,
            &message.province,
            &message.category,
            purchase_kind_from_proto(message.purchase_kind),
            message.page_size,
            after,
        );
        Ok(Response::new(self.service.list_merchants(&search).await?))
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetMerchant"))]
    async fn get_merchant(
        &self,
        request: Request<pb::GetMerchantRequest>,
    ) -> Result<Response<pb::GetMerchantResponse>, Status> {
        let caller = caller(&request);
        let message = request.into_inner();
        let merchant = self
            .service
            .get_merchant(&caller, &message.merchant_id, message.directory)
            .await?;
        Ok(Response::new(pb::GetMerchantResponse {
            merchant: Some(merchant_to_proto(merchant)),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "AuthenticateMerchant"))]
    async fn authenticate_merchant(
        &self,
        request: Request<pb::AuthenticateMerchantRequest>,
    ) -> Result<Response<pb::AuthenticateMerchantResponse>, Status> {
        let caller = caller(&request);
        let api_key = request.into_inner().api_key;
        let merchant = self
            .service
            .authenticate_merchant(&caller, &api_key)
            .await?;
        Ok(Response::new(pb::AuthenticateMerchantResponse {
            status: merchant_status_to_proto(&merchant.status) as i32,
            merchant_id: merchant.id,
        }))
    }
}
