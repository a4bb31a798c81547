//! The tonic handlers: read the caller, convert, call domain and store, convert back.

use sea_orm::DatabaseConnection;
use tavana_kit::caller::{Caller, Role, caller};
use tavana_kit::clock::SharedClock;
use tavana_kit::paging::{decode_token, encode_token, page_size};
use tavana_proto::merchant_directory::v1 as pb;
use tavana_proto::merchant_directory::v1::merchant_directory_service_server::MerchantDirectoryService;
use tonic::{Request, Response, Status};

use crate::cache::ListingCache;
use crate::convert::{
    kind_from_proto, merchant_input, merchant_status_to_proto, merchant_to_proto,
    proposal_status_from_proto, proposal_to_proto, purchase_kind_from_proto,
};
use crate::domain::MerchantError;
use crate::domain::api_key::{generate_api_key, hash_api_key, looks_like_api_key};
use crate::domain::merchant::{MerchantDraft, MerchantStatus};
use crate::domain::proposal::{Decision, ProposalScope, proposal_region, require_contracts};
use crate::domain::search::{MerchantCursor, MerchantSearch, ProposalCursor};
use crate::store::{self, Approval, NewProposal};

/// The merchant directory's gRPC service.
#[derive(Clone)]
pub struct MerchantDirectoryRpc {
    db: DatabaseConnection,
    clock: SharedClock,
    cache: ListingCache,
}

impl MerchantDirectoryRpc {
    /// Creates the service on its database, clock and listing cache.
    pub fn new(db: DatabaseConnection, clock: SharedClock, cache: ListingCache) -> Self {
        MerchantDirectoryRpc { db, clock, cache }
    }
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn page_token_error(_: tavana_kit::error::Problem) -> MerchantError {
    MerchantError::InvalidPageToken
}

fn decode_cursor<T: serde::de::DeserializeOwned>(token: &str) -> Result<Option<T>, MerchantError> {
    if token.trim().is_empty() {
        return Ok(None);
    }
    decode_token(token).map(Some).map_err(page_token_error)
}

/// Who may see a suspended merchant: other services (credit must see the status to
/// refuse purchases) and the contracts department.
fn sees_suspended(caller: &Caller) -> bool {
    caller.is_service() || caller.has_role(Role::Contracts)
}

#[tonic::async_trait]
impl MerchantDirectoryService for MerchantDirectoryRpc {
    #[tracing::instrument(skip_all, fields(rpc = "ProposeMerchant"))]
    async fn propose_merchant(
        &self,
        request: Request<pb::ProposeMerchantRequest>,
    ) -> Result<Response<pb::ProposeMerchantResponse>, Status> {
        let caller = caller(&request);
        // R26: the region is the proposer's own, never taken from the request.
        let region_code = proposal_region(&caller, None)?;
        let data = request.into_inner().data.unwrap_or_default();
        let draft = MerchantDraft::parse(merchant_input(data)).map_err(MerchantError::Invalid)?;
        let proposal = store::insert_proposal(
            &self.db,
            &draft,
            NewProposal {
                id: new_id(),
                region_code,
                proposed_by: caller.employee_id().unwrap_or_default().to_owned(),
                now: self.clock.now(),
            },
        )
        .await?;
        tracing::info!(proposal_id = %proposal.id, region = %proposal.region_code, "merchant proposed");
        Ok(Response::new(pb::ProposeMerchantResponse {
            proposal: Some(proposal_to_proto(proposal)),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "ListProposals"))]
    async fn list_proposals(
        &self,
        request: Request<pb::ListProposalsRequest>,
    ) -> Result<Response<pb::ListProposalsResponse>, Status> {
        let scope = ProposalScope::of(&caller(&request))?;
        let message = request.into_inner();
        let after: Option<ProposalCursor> = decode_cursor(&message.page_token)?;
        let page = store::list_proposals(
            &self.db,
            &scope,
            proposal_status_from_proto(message.status),
            page_size(message.page_size),
            after,
        )
        .await
        .map_err(MerchantError::from)?;
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
        let scope = ProposalScope::of(&caller(&request))?;
        let proposal_id = request.into_inner().proposal_id;
        // A proposal of another region is "not found", never "forbidden": its existence
        // is not the caller's to learn.
        let proposal = store::get_proposal(&self.db, &proposal_id)
            .await
            .map_err(MerchantError::from)?
            .filter(|proposal| scope.allows(&proposal.region_code))
            .ok_or(MerchantError::ProposalNotFound)?;
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
        require_contracts(&caller)?;
        let message = request.into_inner();
        let decision = Decision::parse(message.approve, message.reason.as_deref())?;
        let key = decision.approve.then(generate_api_key);
        let approval = key.as_ref().map(|key| Approval {
            merchant_id: new_id(),
            api_key_hash: key.hash.clone(),
        });
        let (proposal, merchant) = store::decide_proposal(
            &self.db,
            &message.proposal_id,
            &decision,
            caller.employee_id().unwrap_or_default(),
            self.clock.now(),
            approval,
        )
        .await?;
        if merchant.is_some() {
            // After the commit: a page read from now on must include the new merchant.
            self.cache.invalidate().await;
        }
        tracing::info!(proposal_id = %proposal.id, status = %proposal.status, "proposal decided");
        Ok(Response::new(pb::DecideProposalResponse {
            merchant_id: merchant.map(|merchant| merchant.id),
            api_key: key.map(|key| key.plaintext),
            proposal: Some(proposal_to_proto(proposal)),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "SuspendMerchant"))]
    async fn suspend_merchant(
        &self,
        request: Request<pb::SuspendMerchantRequest>,
    ) -> Result<Response<pb::SuspendMerchantResponse>, Status> {
        require_contracts(&caller(&request))?;
        let message = request.into_inner();
        let reason = message
            .reason
            .map(|reason| reason.trim().to_owned())
            .filter(|reason| !reason.is_empty());
        let (merchant, changed) =
            store::suspend_merchant(&self.db, &message.merchant_id, reason, self.clock.now())
                .await?;
        // After the commit, and even when nothing changed: a bump that failed before
        // gets another chance, at the cost of one cold page.
        self.cache.invalidate().await;
        tracing::info!(merchant_id = %merchant.id, changed, "merchant suspended");
        Ok(Response::new(pb::SuspendMerchantResponse {
            merchant: Some(merchant_to_proto(merchant)),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "RotateMerchantKey"))]
    async fn rotate_merchant_key(
        &self,
        request: Request<pb::RotateMerchantKeyRequest>,
    ) -> Result<Response<pb::RotateMerchantKeyResponse>, Status> {
        require_contracts(&caller(&request))?;
        let merchant_id = request.into_inner().merchant_id;
        let key = generate_api_key();
        store::rotate_key(&self.db, &merchant_id, &key.hash).await?;
        tracing::info!(merchant_id = %merchant_id, "merchant key rotated");
        Ok(Response::new(pb::RotateMerchantKeyResponse {
            api_key: key.plaintext,
        }))
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
        let (cached, key) = self.cache.get(&search).await;
        if let Some(page) = cached {
            return Ok(Response::new(page));
        }
        let page = store::search_merchants(&self.db, &search)
            .await
            .map_err(MerchantError::from)?;
        let response = pb::ListMerchantsResponse {
            items: page.items.into_iter().map(merchant_to_proto).collect(),
            next_page_token: page
                .next
                .map(|next| encode_token(&next))
                .unwrap_or_default(),
        };
        if let Some(key) = key {
            self.cache.put(&key, &response).await;
        }
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetMerchant"))]
    async fn get_merchant(
        &self,
        request: Request<pb::GetMerchantRequest>,
    ) -> Result<Response<pb::GetMerchantResponse>, Status> {
        let caller = caller(&request);
        let merchant_id = request.into_inner().merchant_id;
        let merchant = store::get_merchant(&self.db, &merchant_id)
            .await
            .map_err(MerchantError::from)?
            .filter(|merchant| {
                sees_suspended(&caller) || merchant.status == MerchantStatus::Contracted.as_str()
            })
            .ok_or(MerchantError::MerchantNotFound)?;
        Ok(Response::new(pb::GetMerchantResponse {
            merchant: Some(merchant_to_proto(merchant)),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "AuthenticateMerchant"))]
    async fn authenticate_merchant(
        &self,
        request: Request<pb::AuthenticateMerchantRequest>,
    ) -> Result<Response<pb::AuthenticateMerchantResponse>, Status> {
        match caller(&request) {
            Caller::Service { .. } => {}
            Caller::Anonymous => return Err(MerchantError::Unauthenticated.into()),
            _ => return Err(MerchantError::PermissionDenied.into()),
        }
        let api_key = request.into_inner().api_key;
        if !looks_like_api_key(api_key.trim()) {
            return Err(MerchantError::MerchantKeyInvalid.into());
        }
        let merchant = store::find_merchant_by_key_hash(&self.db, &hash_api_key(api_key.trim()))
            .await
            .map_err(MerchantError::from)?
            .ok_or(MerchantError::MerchantKeyInvalid)?;
        Ok(Response::new(pb::AuthenticateMerchantResponse {
            status: merchant_status_to_proto(&merchant.status) as i32,
            merchant_id: merchant.id,
        }))
    }
}
