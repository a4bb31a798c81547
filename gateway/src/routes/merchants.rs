//! Gateway routes of the merchant directory: the public directory, proposals by regional
//! welfare managers, the contracts department's decisions and suspensions (API.md,
//! R25-R27).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tavana_proto::merchant_directory::v1 as pb;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::{Public, User};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, next_token};

/// Returns the routes of the merchant directory.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_merchants))
        .routes(routes!(get_merchant))
        .routes(routes!(propose_merchant, list_proposals))
        .routes(routes!(decide_proposal))
        .routes(routes!(suspend_merchant))
}

/// A contracted merchant as employees see it (R25).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MerchantView {
    /// The merchant's id (UUID v7): the `merchant_id` of `POST /v1/me/purchases`.
    pub id: String,
    /// The store's name.
    pub name: String,
    /// `online` or `in_person`.
    pub kind: String,
    /// The website as a full `https` (or `http`) URL; every `online` merchant has one
    /// (R25).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    /// The city as entered; every `in_person` merchant has one (R25).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// The province as entered; every `in_person` merchant has one (R25).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub province: Option<String>,
    /// The street address; every `in_person` merchant has one (R25).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Its categories, normalized (R27) and sorted; at least one.
    pub categories: Vec<String>,
    /// Whether it sells on one-month `credit` (R15).
    pub supports_credit: bool,
    /// Whether it sells in `instalment`s (R15).
    pub supports_instalment: bool,
    /// A phone number of the store, digits normalized.
    pub contact_phone: String,
    /// `contracted` or `suspended`.
    pub status: String,
    /// The region whose welfare manager proposed it.
    pub region_code: String,
}

/// A page of merchants.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MerchantPage {
    /// The merchants of this page, at most `page_size`.
    pub items: Vec<MerchantView>,
    /// Pass as `page_token` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// A welfare manager's proposal (R26).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProposalView {
    /// The proposal's id (UUID v7): the `{id}` of its decision.
    pub id: String,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    /// The region the proposer named (one of their own), or their only one.
    pub region_code: String,
    /// The store's name.
    pub name: String,
    /// `online` or `in_person`.
    pub kind: String,
    /// The website as a full `https` (or `http`) URL; every `online` proposal has one
    /// (R25).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    /// The city as entered; every `in_person` proposal has one (R25).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// The province as entered; every `in_person` proposal has one (R25).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub province: Option<String>,
    /// The street address; every `in_person` proposal has one (R25).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Its categories, normalized (R27) and sorted; at least one.
    pub categories: Vec<String>,
    /// Whether it sells on one-month `credit` (R15).
    pub supports_credit: bool,
    /// Whether it sells in `instalment`s (R15).
    pub supports_instalment: bool,
    /// A phone number of the store, digits normalized.
    pub contact_phone: String,
    /// The proposer's employee id.
    pub proposed_by: String,
    /// The decision's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The merchant an approval created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant_id: Option<String>,
    /// When it was proposed (RFC 3339, UTC).
    pub created_at: Option<DateTime<Utc>>,
    /// When contracts decided it (RFC 3339, UTC); absent while `pending`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
}

/// A page of proposals.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProposalPage {
    /// The proposals of this page, at most `page_size`.
    pub items: Vec<ProposalView>,
    /// Pass as `page_token` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// A decided proposal; an approval carries the new merchant's API key, shown only here.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DecisionView {
    /// The proposal as decided, its fields inline.
    #[serde(flatten)]
    pub proposal: ProposalView,
    /// The merchant's API key (`tvk_…`), returned once; only its hash is kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

/// A store a welfare manager proposes (R25). Missing fields are reported by the
/// directory as field violations.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct ProposalBody {
    /// The store's name, at most 200 characters.
    pub name: String,
    /// `online` or `in_person`.
    pub kind: String,
    /// Required for `online`.
    pub website: Option<String>,
    /// Required for `in_person`.
    pub city: Option<String>,
    /// Required for `in_person`.
    pub province: Option<String>,
    /// Required for `in_person`.
    pub address: Option<String>,
    /// At least one.
    pub categories: Vec<String>,
    /// Whether it sells on one-month credit; at least one of `supports_credit` and
    /// `supports_instalment` must be true.
    pub supports_credit: bool,
    /// Whether it sells in instalments; see `supports_credit`.
    pub supports_instalment: bool,
    /// A phone number of the store; required, Persian digits accepted.
    pub contact_phone: String,
    /// The merchant's region (R26): one of the proposer's welfare-manager
    /// regions; may be left out by a manager of one region.
    pub region_code: Option<String>,
}

/// The contracts department's decision on a proposal.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ProposalDecisionBody {
    /// Approve (true) or reject (false).
    pub approve: bool,
    /// Why; required for a rejection.
    pub reason: Option<String>,
}

/// Why a merchant is suspended.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct SuspendBody {
    /// Why, kept in the audit trail (R32); may be left out.
    pub reason: Option<String>,
}

/// `GET /v1/merchants` filters (R27).
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MerchantQuery {
    /// Part of the name; Persian spellings (Arabic «ي»/«ك», ZWNJ, digits) are folded.
    pub q: Option<String>,
    /// `online` or `in_person`; empty is no filter.
    #[param(pattern = r"^(|online|in_person)$")]
    pub kind: Option<String>,
    /// Only merchants in this city; spellings folded as for `q`.
    pub city: Option<String>,
    /// Only merchants in this province; spellings folded as for `q`.
    pub province: Option<String>,
    /// One category, matched exactly.
    pub category: Option<String>,
    /// `credit` or `instalment`; empty is no filter.
    #[param(pattern = r"^(|credit|instalment)$")]
    pub purchase_kind: Option<String>,
    /// Items per page: default 20, at most 100.
    #[param(minimum = 1, maximum = 100)]
    #[serde(default, deserialize_with = "crate::extract::page_size")]
    pub page_size: Option<u32>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// `GET /v1/merchant-proposals` filters.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProposalQuery {
    /// `pending`, `approved` or `rejected`; empty is no filter.
    #[param(pattern = r"^(|pending|approved|rejected)$")]
    pub status: Option<String>,
    /// Items per page: default 20, at most 100.
    #[param(minimum = 1, maximum = 100)]
    #[serde(default, deserialize_with = "crate::extract::page_size")]
    pub page_size: Option<u32>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

fn given(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|value| !value.is_empty())
}

fn kind_name(kind: pb::MerchantKind) -> &'static str {
    match kind {
        pb::MerchantKind::Online => "online",
        pb::MerchantKind::InPerson => "in_person",
        pb::MerchantKind::Unspecified => "unspecified",
    }
}

fn parse_kind(name: Option<&str>) -> Result<pb::MerchantKind, ApiError> {
    match given(name) {
        None => Ok(pb::MerchantKind::Unspecified),
        Some("online") => Ok(pb::MerchantKind::Online),
        Some("in_person") => Ok(pb::MerchantKind::InPerson),
        Some(_) => Err(ApiError::bad_request(
            "kind_invalid",
            "Unknown kind; use online or in_person.",
            "نوع فروشگاه نامعتبر است؛ online یا in_person.",
        )),
    }
}

fn parse_purchase_kind(name: Option<&str>) -> Result<pb::PurchaseKind, ApiError> {
    match given(name) {
        None => Ok(pb::PurchaseKind::Unspecified),
        Some("credit") => Ok(pb::PurchaseKind::Credit),
        Some("instalment") => Ok(pb::PurchaseKind::Instalment),
        Some(_) => Err(ApiError::bad_request(
            "purchase_kind_invalid",
            "Unknown purchase kind; use credit or instalment.",
            "نوع خرید نامعتبر است؛ credit یا instalment.",
        )),
    }
}

fn merchant_status_name(status: pb::MerchantStatus) -> &'static str {
    match status {
        pb::MerchantStatus::Contracted => "contracted",
        pb::MerchantStatus::Suspended => "suspended",
        pb::MerchantStatus::Unspecified => "unspecified",
    }
}

fn proposal_status_name(status: pb::ProposalStatus) -> &'static str {
    match status {
        pb::ProposalStatus::Pending => "pending",
        pb::ProposalStatus::Approved => "approved",
        pb::ProposalStatus::Rejected => "rejected",
        pb::ProposalStatus::Unspecified => "unspecified",
    }
}

fn parse_proposal_status(name: Option<&str>) -> Result<pb::ProposalStatus, ApiError> {
    match given(name) {
        None => Ok(pb::ProposalStatus::Unspecified),
        Some("pending") => Ok(pb::ProposalStatus::Pending),
        Some("approved") => Ok(pb::ProposalStatus::Approved),
        Some("rejected") => Ok(pb::ProposalStatus::Rejected),
        Some(_) => Err(ApiError::bad_request(
            "status_invalid",
            "Unknown status; use pending, approved or rejected.",
            "وضعیت نامعتبر است؛ pending، approved یا rejected.",
        )),
    }
}

impl From<pb::Merchant> for MerchantView {
    fn from(merchant: pb::Merchant) -> Self {
        let status = merchant_status_name(merchant.status()).to_owned();
        let data = merchant.data.unwrap_or_default();
        MerchantView {
            id: merchant.merchant_id,
            kind: kind_name(data.kind()).to_owned(),
            name: data.name,
            website: data.website,
            city: data.city,
            province: data.province,
            address: data.address,
            categories: data.categories,
            supports_credit: data.supports_credit,
            supports_instalment: data.supports_instalment,
            contact_phone: data.contact_phone,
            status,
            region_code: merchant.region_code,
        }
    }
}

impl From<pb::Proposal> for ProposalView {
    fn from(proposal: pb::Proposal) -> Self {
        let status = proposal_status_name(proposal.status()).to_owned();
        let data = proposal.data.unwrap_or_default();
        ProposalView {
            id: proposal.proposal_id,
            status,
            region_code: proposal.region_code,
            kind: kind_name(data.kind()).to_owned(),
            name: data.name,
            website: data.website,
            city: data.city,
            province: data.province,
            address: data.address,
            categories: data.categories,
            supports_credit: data.supports_credit,
            supports_instalment: data.supports_instalment,
            contact_phone: data.contact_phone,
            proposed_by: proposal.proposed_by,
            reason: proposal.reason,
            merchant_id: proposal.merchant_id,
            created_at: tavana_proto::datetime(proposal.created_at),
            decided_at: tavana_proto::datetime(proposal.decided_at),
        }
    }
}

fn missing(what: &str) -> ApiError {
    ApiError::internal(format!("merchant directory answered without a {what}"))
}

/// Searches contracted merchants (R27); anyone may call it.
#[utoipa::path(get, path = "/v1/merchants", tag = "merchants",
    params(MerchantQuery),
    responses((status = 200, body = MerchantPage), (status = 400)))]
#[tracing::instrument(skip_all)]
async fn list_merchants(
    State(state): State<AppState>,
    public: Public,
    ApiQuery(query): ApiQuery<MerchantQuery>,
) -> Result<Json<MerchantPage>, ApiError> {
    let message = pb::ListMerchantsRequest {
        q: query.q.unwrap_or_default(),
        kind: parse_kind(query.kind.as_deref())? as i32,
        city: query.city.unwrap_or_default(),
        province: query.province.unwrap_or_default(),
        category: query.category.unwrap_or_default(),
        purchase_kind: parse_purchase_kind(query.purchase_kind.as_deref())? as i32,
        page_size: query.page_size.unwrap_or(0).min(100),
        page_token: query.page_token.unwrap_or_default(),
    };
    let response = state
        .merchants
        .clone()
        .list_merchants(public.request(message))
        .await?
        .into_inner();
    Ok(Json(MerchantPage {
        items: response.items.into_iter().map(Into::into).collect(),
        next_page_token: next_token(response.next_page_token),
    }))
}

/// Returns one contracted merchant; a suspended or unknown one is 404.
#[utoipa::path(get, path = "/v1/merchants/{id}", tag = "merchants",
    params(("id" = String, Path, description = "the merchant id")),
    responses((status = 200, body = MerchantView), (status = 404)))]
#[tracing::instrument(skip_all, fields(merchant_id = %id))]
async fn get_merchant(
    State(state): State<AppState>,
    public: Public,
    Path(id): Path<String>,
) -> Result<Json<MerchantView>, ApiError> {
    let message = pb::GetMerchantRequest {
        merchant_id: id,
        directory: true,
    };
    let merchant = state
        .merchants
        .clone()
        .get_merchant(public.request(message))
        .await?
        .into_inner()
        .merchant
        .ok_or_else(|| missing("merchant"))?;
    Ok(Json(merchant.into()))
}

/// Proposes a store in one of the signed-in welfare manager's regions (R26).
#[utoipa::path(post, path = "/v1/merchant-proposals", tag = "merchants",
    request_body = ProposalBody,
    responses(
        (status = 201, body = ProposalView),
        (status = 400, description = "invalid fields, listed in violations"),
        (status = 401),
        (status = 403, description = "not a region_welfare_manager, or region_not_yours"),
        (status = 409, description = "merchant_duplicate, with existing_merchant_id or existing_proposal_id"),
        (status = 422, description = "region_required: a manager of several regions names one"),
    ))]
#[tracing::instrument(skip_all)]
async fn propose_merchant(
    State(state): State<AppState>,
    user: User,
    ApiJson(body): ApiJson<ProposalBody>,
) -> Result<(StatusCode, Json<ProposalView>), ApiError> {
    // An unknown kind reaches the directory as unspecified, which reports `kind_required`
    // beside every other invalid field.
    let kind = parse_kind(Some(&body.kind)).unwrap_or(pb::MerchantKind::Unspecified);
    let message = pb::ProposeMerchantRequest {
        data: Some(pb::MerchantData {
            name: body.name,
            kind: kind as i32,
            website: body.website,
            city: body.city,
            province: body.province,
            address: body.address,
            categories: body.categories,
            supports_credit: body.supports_credit,
            supports_instalment: body.supports_instalment,
            contact_phone: body.contact_phone,
        }),
        region_code: body.region_code.unwrap_or_default(),
    };
    let proposal = state
        .merchants
        .clone()
        .propose_merchant(user.request(message))
        .await?
        .into_inner()
        .proposal
        .ok_or_else(|| missing("proposal"))?;
    Ok((StatusCode::CREATED, Json(proposal.into())))
}

/// Lists proposals: a welfare manager's own region, or every region for contracts.
#[utoipa::path(get, path = "/v1/merchant-proposals", tag = "merchants",
    params(ProposalQuery),
    responses((status = 200, body = ProposalPage), (status = 400), (status = 401), (status = 403)))]
#[tracing::instrument(skip_all)]
async fn list_proposals(
    State(state): State<AppState>,
    user: User,
    ApiQuery(query): ApiQuery<ProposalQuery>,
) -> Result<Json<ProposalPage>, ApiError> {
    let message = pb::ListProposalsRequest {
        status: parse_proposal_status(query.status.as_deref())? as i32,
        page_size: query.page_size.unwrap_or(0).min(100),
        page_token: query.page_token.unwrap_or_default(),
    };
    let response = state
        .merchants
        .clone()
        .list_proposals(user.request(message))
        .await?
        .into_inner();
    Ok(Json(ProposalPage {
        items: response.items.into_iter().map(Into::into).collect(),
        next_page_token: next_token(response.next_page_token),
    }))
}

/// Approves or rejects a proposal (contracts). An approval creates the merchant and
/// returns its API key, once.
#[utoipa::path(post, path = "/v1/merchant-proposals/{id}/decision", tag = "merchants",
    params(("id" = String, Path, description = "the proposal id")),
    request_body = ProposalDecisionBody,
    responses(
        (status = 200, body = DecisionView),
        (status = 400, description = "a rejection without a reason"),
        (status = 401),
        (status = 403, description = "not contracts"),
        (status = 404),
        (status = 409, description = "proposal_already_decided or merchant_duplicate"),
    ))]
#[tracing::instrument(skip_all, fields(proposal_id = %id))]
async fn decide_proposal(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ProposalDecisionBody>,
) -> Result<Json<DecisionView>, ApiError> {
    let message = pb::DecideProposalRequest {
        proposal_id: id,
        approve: body.approve,
        reason: body.reason,
    };
    let response = state
        .merchants
        .clone()
        .decide_proposal(user.request(message))
        .await?
        .into_inner();
    let mut proposal: ProposalView = response.proposal.ok_or_else(|| missing("proposal"))?.into();
    proposal.merchant_id = proposal.merchant_id.or(response.merchant_id);
    Ok(Json(DecisionView {
        proposal,
        api_key: response.api_key,
    }))
}

/// Suspends a merchant (contracts): it leaves the directory and credit refuses its
/// purchases. The body `{reason?}` is optional.
#[utoipa::path(post, path = "/v1/merchants/{id}/suspend", tag = "merchants",
    params(("id" = String, Path, description = "the merchant id")),
    request_body(content = Option<SuspendBody>),
    responses((status = 200, body = MerchantView), (status = 400), (status = 401),
        (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(merchant_id = %id))]
async fn suspend_merchant(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<MerchantView>, ApiError> {
    // No body, or `null`, is no reason (the body is optional).
    let body: SuspendBody = if body.iter().all(u8::is_ascii_whitespace) {
        SuspendBody::default()
    } else {
        crate::extract::json_from_slice::<Option<SuspendBody>>(&body, |error| {
            ApiError::bad_request(
                "malformed_body",
                &error.to_string(),
                "بدنهٔ درخواست JSON معتبر نیست.",
            )
        })?
        .unwrap_or_default()
    };
    let message = pb::SuspendMerchantRequest {
        merchant_id: id,
        reason: body.reason,
    };
    let merchant = state
        .merchants
        .clone()
        .suspend_merchant(user.request(message))
        .await?
        .into_inner()
        .merchant
        .ok_or_else(|| missing("merchant"))?;
    Ok(Json(merchant.into()))
}
