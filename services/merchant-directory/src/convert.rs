//! Conversions between protobuf messages and the domain and store types.

use tavana_kit::paging::decode_token;
use tavana_proto::merchant_directory::v1 as pb;
use tavana_proto::timestamp;

use crate::domain::merchant::{
    MerchantInput, MerchantKind, MerchantStatus, PurchaseKind, split_categories,
};
use crate::domain::proposal::ProposalStatus;
use crate::error::MerchantError;
use crate::store::{merchant, proposal};

/// Reads a page token: empty means the first page, a token this service did not make
/// is `page_token_invalid`.
pub fn decode_cursor<T: serde::de::DeserializeOwned>(
    token: &str,
) -> Result<Option<T>, MerchantError> {
    if token.trim().is_empty() {
        return Ok(None);
    }
    decode_token(token)
        .map(Some)
        .map_err(|_| MerchantError::PageTokenInvalid)
}

/// Returns the domain kind of a protobuf kind (`None` when unspecified or unknown).
pub fn kind_from_proto(kind: i32) -> Option<MerchantKind> {
    match pb::MerchantKind::try_from(kind).ok()? {
        pb::MerchantKind::Online => Some(MerchantKind::Online),
        pb::MerchantKind::InPerson => Some(MerchantKind::InPerson),
        pb::MerchantKind::Unspecified => None,
    }
}

fn kind_to_proto(stored: &str) -> pb::MerchantKind {
    match MerchantKind::parse(stored) {
        Some(MerchantKind::Online) => pb::MerchantKind::Online,
        Some(MerchantKind::InPerson) => pb::MerchantKind::InPerson,
        None => pb::MerchantKind::Unspecified,
    }
}

/// Returns the domain purchase kind of a protobuf one (`None` when unspecified).
pub fn purchase_kind_from_proto(kind: i32) -> Option<PurchaseKind> {
    match pb::PurchaseKind::try_from(kind).ok()? {
        pb::PurchaseKind::Credit => Some(PurchaseKind::Credit),
        pb::PurchaseKind::Instalment => Some(PurchaseKind::Instalment),
        pb::PurchaseKind::Unspecified => None,
    }
}

/// Returns the domain proposal status of a protobuf one (`None` when unspecified).
pub fn proposal_status_from_proto(status: i32) -> Option<ProposalStatus> {
    match pb::ProposalStatus::try_from(status).ok()? {
        pb::ProposalStatus::Pending => Some(ProposalStatus::Pending),
        pb::ProposalStatus::Approved => Some(ProposalStatus::Approved),
        pb::ProposalStatus::Rejected => Some(ProposalStatus::Rejected),
        pb::ProposalStatus::Unspecified => None,
    }
}

fn proposal_status_to_proto(stored: &str) -> pb::ProposalStatus {
    match ProposalStatus::parse(stored) {
        Some(ProposalStatus::Pending) => pb::ProposalStatus::Pending,
        Some(ProposalStatus::Approved) => pb::ProposalStatus::Approved,
        Some(ProposalStatus::Rejected) => pb::ProposalStatus::Rejected,
        None => pb::ProposalStatus::Unspecified,
    }
}

/// Returns the protobuf status of a stored merchant status.
pub fn merchant_status_to_proto(stored: &str) -> pb::MerchantStatus {
    match MerchantStatus::parse(stored) {
        Some(MerchantStatus::Contracted) => pb::MerchantStatus::Contracted,
        Some(MerchantStatus::Suspended) => pb::MerchantStatus::Suspended,
        None => pb::MerchantStatus::Unspecified,
    }
}

/// Converts a proposal's description into unchecked domain input.
pub fn merchant_input(data: pb::MerchantData) -> MerchantInput {
    MerchantInput {
        kind: kind_from_proto(data.kind),
        name: data.name,
        website: data.website,
        city: data.city,
        province: data.province,
        address: data.address,
        categories: data.categories,
        supports_credit: data.supports_credit,
        supports_instalment: data.supports_instalment,
        contact_phone: data.contact_phone,
    }
}

/// Converts a stored proposal.
pub fn proposal_to_proto(row: proposal::Model) -> pb::Proposal {
    pb::Proposal {
        proposal_id: row.id,
        status: proposal_status_to_proto(&row.status) as i32,
        data: Some(pb::MerchantData {
            name: row.name,
            kind: kind_to_proto(&row.kind) as i32,
            website: row.website,
            city: row.city,
            province: row.province,
            address: row.address,
            categories: split_categories(&row.categories),
            supports_credit: row.supports_credit,
            supports_instalment: row.supports_instalment,
            contact_phone: row.contact_phone,
        }),
        region_code: row.region_code,
        proposed_by: row.proposed_by,
        reason: row.reason,
        merchant_id: row.merchant_id,
        created_at: Some(timestamp(row.created_at)),
        decided_at: row.decided_at.map(timestamp),
    }
}

/// Converts a stored merchant.
pub fn merchant_to_proto(row: merchant::Model) -> pb::Merchant {
    pb::Merchant {
        merchant_id: row.id,
        status: merchant_status_to_proto(&row.status) as i32,
        data: Some(pb::MerchantData {
            name: row.name,
            kind: kind_to_proto(&row.kind) as i32,
            website: row.website,
            city: row.city,
            province: row.province,
            address: row.address,
            categories: split_categories(&row.categories),
            supports_credit: row.supports_credit,
            supports_instalment: row.supports_instalment,
            contact_phone: row.contact_phone,
        }),
        region_code: row.region_code,
        created_at: Some(timestamp(row.created_at)),
    }
}
