//! The use cases of the merchant directory (R25-R27): authorize the caller, run the rules
//! of `domain`, call the store, keep the listing cache in step.

use sea_orm::DatabaseConnection;
use tavana_kit::audit::AuditEntry;
use tavana_kit::caller::Caller;
use tavana_kit::clock::SharedClock;
use tavana_kit::paging::encode_token;
use tavana_proto::merchant_directory::v1 as pb;

use crate::cache::ListingCache;
use crate::convert::{decode_cursor, merchant_to_proto};
use crate::domain::api_key::{generate_api_key, hash_api_key, looks_like_api_key};
use crate::domain::merchant::{MerchantDraft, MerchantInput, is_listed, visible_to};
use crate::domain::proposal::{
    Decision, ProposalScope, ProposalStatus, proposal_region, require_contracts,
};
use crate::domain::search::{MerchantSearch, ProposalCursor};
use crate::error::MerchantError;
use crate::store::{self, Approval, NewProposal, Page, merchant, proposal};

/// The audit action of a proposal approved or rejected by contracts (R32); the subject is
/// the proposal id.
pub const AUDIT_PROPOSAL_DECISION: &str = "merchant_proposal.decision";
/// The audit action of a merchant suspended by contracts (R32); the subject is the
/// merchant id.
pub const AUDIT_MERCHANT_SUSPEND: &str = "merchant.suspend";

/// A proposal decided by contracts, with the merchant and its key when it was approved.
#[derive(Debug)]
pub struct Decided {
    /// The proposal, decided.
    pub proposal: proposal::Model,
    /// The new merchant (approval only).
    pub merchant: Option<merchant::Model>,
    /// The new merchant's API key in plain text, shown this once (approval only).
    pub api_key: Option<String>,
}

/// The merchant directory's use cases over its database, clock and listing cache.
#[derive(Clone)]
pub struct MerchantDirectory {
    db: DatabaseConnection,
    clock: SharedClock,
    cache: ListingCache,
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

impl MerchantDirectory {
    /// Creates the service on its database, clock and listing cache.
    pub fn new(db: DatabaseConnection, clock: SharedClock, cache: ListingCache) -> Self {
        MerchantDirectory { db, clock, cache }
    }

    /// Records a welfare manager's proposal (R26): the region is one of the proposer's
    /// own (a manager of one region need not name it), checked before the fields.
    pub async fn propose(
        &self,
        caller: &Caller,
        region_code: Option<&str>,
        input: MerchantInput,
    ) -> Result<proposal::Model, MerchantError> {
        let region_code = proposal_region(caller, region_code)?;
        let draft = MerchantDraft::parse(input).map_err(MerchantError::Invalid)?;
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
        Ok(proposal)
    }

    /// Lists the proposals the caller may see (contracts: all; a welfare manager: their
    /// regions), after the position of `page_token`.
    pub async fn list_proposals(
        &self,
        caller: &Caller,
        status: Option<ProposalStatus>,
        page_size: u64,
        page_token: &str,
    ) -> Result<Page<proposal::Model, ProposalCursor>, MerchantError> {
        let scope = ProposalScope::of(caller)?;
        let after: Option<ProposalCursor> = decode_cursor(page_token)?;
        Ok(store::list_proposals(&self.db, &scope, status, page_size, after).await?)
    }

    /// Returns a proposal the caller may see. A proposal of another region is "not
    /// found", never "forbidden": its existence is not the caller's to learn.
    pub async fn get_proposal(
        &self,
        caller: &Caller,
        proposal_id: &str,
    ) -> Result<proposal::Model, MerchantError> {
        let scope = ProposalScope::of(caller)?;
        store::get_proposal(&self.db, proposal_id)
            .await?
            .filter(|proposal| scope.allows(&proposal.region_code))
            .ok_or(MerchantError::ProposalNotFound)
    }

    /// Approves or rejects a proposal (R26, contracts only), audited in the same
    /// transaction (R32); an approval makes the merchant and its first API key.
    pub async fn decide_proposal(
        &self,
        caller: &Caller,
        proposal_id: &str,
        approve: bool,
        reason: Option<&str>,
    ) -> Result<Decided, MerchantError> {
        require_contracts(caller)?;
        let decision = Decision::parse(approve, reason)?;
        let key = decision.approve.then(generate_api_key);
        let approval = key.as_ref().map(|key| Approval {
            merchant_id: new_id(),
            api_key_hash: key.hash.clone(),
        });
        let audit = AuditEntry::new(
            caller,
            AUDIT_PROPOSAL_DECISION,
            proposal_id,
            serde_json::json!({
                "approve": decision.approve,
                "reason": decision.reason,
                "merchant_id": approval.as_ref().map(|approval| approval.merchant_id.as_str()),
            }),
        );
        let (proposal, merchant) = store::decide_proposal(
            &self.db,
            proposal_id,
            &decision,
            caller.employee_id().unwrap_or_default(),
            self.clock.now(),
            approval,
            &audit,
        )
        .await?;
        if merchant.is_some() {
            // After the commit: a page read from now on must include the new merchant.
            self.cache.invalidate().await;
        }
        tracing::info!(proposal_id = %proposal.id, status = %proposal.status, "proposal decided");
        Ok(Decided {
            proposal,
            merchant,
            api_key: key.map(|key| key.plaintext),
        })
    }

    /// Suspends a merchant (R26, contracts only), audited once in the same transaction
    /// (R32); the listing cache is invalidated after the commit.
    pub async fn suspend_merchant(
        &self,
        caller: &Caller,
        merchant_id: &str,
        reason: Option<String>,
    ) -> Result<merchant::Model, MerchantError> {
        require_contracts(caller)?;
        let reason = reason
            .map(|reason| reason.trim().to_owned())
            .filter(|reason| !reason.is_empty());
        let audit = AuditEntry::new(
            caller,
            AUDIT_MERCHANT_SUSPEND,
            merchant_id,
            serde_json::json!({ "reason": reason }),
        );
        let (merchant, changed) =
            store::suspend_merchant(&self.db, merchant_id, reason, self.clock.now(), &audit)
                .await?;
        // After the commit, and even when nothing changed: a bump that failed before
        // gets another chance, at the cost of one cold page.
        self.cache.invalidate().await;
        tracing::info!(merchant_id = %merchant.id, changed, "merchant suspended");
        Ok(merchant)
    }

    /// Gives a merchant a new API key (contracts only); the old one stops working at
    /// once. Returns the new key in plain text, shown this once.
    pub async fn rotate_key(
        &self,
        caller: &Caller,
        merchant_id: &str,
    ) -> Result<String, MerchantError> {
        require_contracts(caller)?;
        let key = generate_api_key();
        store::rotate_key(&self.db, merchant_id, &key.hash).await?;
        tracing::info!(merchant_id = %merchant_id, "merchant key rotated");
        Ok(key.plaintext)
    }

    /// Lists contracted merchants (public, S7). The page is cached as it goes over the
    /// wire, so a cache hit costs no conversion.
    pub async fn list_merchants(
        &self,
        search: &MerchantSearch,
    ) -> Result<pb::ListMerchantsResponse, MerchantError> {
        let (cached, key) = self.cache.get(search).await;
        if let Some(page) = cached {
            return Ok(page);
        }
        let page = store::search_merchants(&self.db, search).await?;
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
        Ok(response)
    }

    /// Returns a merchant the caller may see (a suspended one only to services and
    /// contracts).
    pub async fn get_merchant(
        &self,
        caller: &Caller,
        merchant_id: &str,
        directory: bool,
    ) -> Result<merchant::Model, MerchantError> {
        store::get_merchant(&self.db, merchant_id)
            .await?
            .filter(|merchant| {
                if directory {
                    is_listed(&merchant.status)
                } else {
                    visible_to(caller, &merchant.status)
                }
            })
            .ok_or(MerchantError::MerchantNotFound)
    }

    /// Returns the merchant an API key belongs to (R27); only a service (the gateway)
    /// asks. A malformed key is refused without a query.
    pub async fn authenticate_merchant(
        &self,
        caller: &Caller,
        api_key: &str,
    ) -> Result<merchant::Model, MerchantError> {
        match caller {
            Caller::Service { .. } => {}
            Caller::Anonymous => return Err(MerchantError::Unauthenticated),
            _ => return Err(MerchantError::PermissionDenied),
        }
        let api_key = api_key.trim();
        if !looks_like_api_key(api_key) {
            return Err(MerchantError::MerchantKeyInvalid);
        }
        store::find_merchant_by_key_hash(&self.db, &hash_api_key(api_key))
            .await?
            .ok_or(MerchantError::MerchantKeyInvalid)
    }
}
