//! Gateway routes of the guarantee service: credit requests, the guarantor's inbox and
//! the region finance office's decisions (API.md, R7-R12).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tavana_kit::ids::RegionCode;
use tavana_proto::guarantee::v1 as pb;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::User;
use crate::error::{ApiError, invalid_id};
use crate::extract::{ApiJson, ApiQuery, Paging, next_token};

/// Returns the routes of the guarantee service.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(file_credit_request, list_my_credit_requests))
        .routes(routes!(get_my_credit_limits))
        .routes(routes!(get_credit_request))
        .routes(routes!(cancel_credit_request))
        .routes(routes!(list_guarantee_requests))
        .routes(routes!(guarantor_decision))
        .routes(routes!(list_region_credit_requests))
        .routes(routes!(finance_decision))
}

/// A new credit request (R7): the guarantor, `M` and `N`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct FileCreditRequestBody {
    /// The guarantor's national ID (10 digits).
    #[schema(pattern = r"^[0-9]{8,10}$")]
    pub guarantor_national_id: String,
    /// The monthly credit `M` in rial: more than 0, at most a quarter of the net salary.
    #[schema(minimum = 1)]
    pub monthly_credit: i64,
    /// The instalment ceiling `N`: 1 to 36.
    #[schema(minimum = 1, maximum = 36)]
    pub instalment_months: i64,
}

/// What the signed-in employee's next credit request may ask for (R7).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreditLimitsView {
    /// The largest monthly credit `M` in rial: a quarter of the net salary as HR records
    /// it now (S10).
    pub max_monthly_credit: i64,
    /// The largest instalment ceiling `N`.
    pub max_instalment_months: u32,
}

/// A decision of the guarantor or of the region's finance office.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DecisionBody {
    /// Approve (true) or reject (false).
    pub approve: bool,
    /// Why, if the decider says.
    pub reason: Option<String>,
}

/// An applicant or a guarantor.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PartyView {
    /// The employee's id in Tavana, as `employee_id` of `GET /v1/me`.
    pub employee_id: String,
    /// The employee's 10-digit national ID (R2).
    pub national_id: String,
    /// The employee's full name, as HR recorded it (R1).
    pub full_name: String,
}

/// One transition of a request (R11).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusChangeView {
    /// The status reached, e.g. `pending_finance`.
    pub status: String,
    /// When.
    pub at: Option<DateTime<Utc>>,
    /// Who: `applicant`, `guarantor` or `region_finance`.
    pub by_role: String,
    /// The employee id of who acted (R32); absent in history recorded before it was kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_employee_id: Option<String>,
    /// The reason given, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The status message in Persian.
    pub message_fa: String,
    /// The status message in English.
    pub message_en: String,
}

/// A credit request with its history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreditRequestView {
    /// The request's id: the `{id}` of `GET /v1/credit-requests/{id}`, its cancel and
    /// its decisions.
    pub id: String,
    /// `pending_guarantor`, `guarantor_rejected`, `pending_finance`, `finance_rejected`,
    /// `approved` or `cancelled`.
    pub status: String,
    /// The employee who filed the request (R7).
    pub applicant: Option<PartyView>,
    /// The employee named as guarantor (R8); only they decide the guarantor step (R10).
    pub guarantor: Option<PartyView>,
    /// The applicant's region, whose finance office decides.
    pub region_code: String,
    /// `M`, in rial.
    pub monthly_credit: i64,
    /// `N`.
    pub instalment_months: u32,
    /// `P = M x N`, in rial.
    pub purchasing_power: i64,
    /// The guarantor's pending-or-active guarantees, of at most 3 (S4): shown to the
    /// guarantor (their own count) and to the finance office, never to the applicant
    /// (R32: no figure of another person).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guarantor_active_guarantees: Option<u32>,
    /// Every transition, oldest first.
    pub history: Vec<StatusChangeView>,
    /// When the facility becomes usable: finance approval + 72 h (R12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activates_at: Option<DateTime<Utc>>,
    /// When the request was filed (RFC 3339, UTC).
    pub created_at: Option<DateTime<Utc>>,
}

/// A page of credit requests.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreditRequestPage {
    /// The requests of this page, at most `page_size`.
    pub items: Vec<CreditRequestView>,
    /// Pass as `page_token` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// `?status=&page_size=&page_token=`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// Only requests in this status, e.g. `pending_finance`; empty lists every status.
    #[param(
        pattern = r"^(|pending_guarantor|guarantor_rejected|pending_finance|finance_rejected|approved|cancelled)$"
    )]
    pub status: Option<String>,
    /// Items per page: default 20, at most 100.
    #[param(minimum = 1, maximum = 100)]
    #[serde(default, deserialize_with = "crate::extract::page_size")]
    pub page_size: Option<u32>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

fn status_name(status: pb::RequestStatus) -> &'static str {
    match status {
        pb::RequestStatus::Unspecified => "unspecified",
        pb::RequestStatus::PendingGuarantor => "pending_guarantor",
        pb::RequestStatus::GuarantorRejected => "guarantor_rejected",
        pb::RequestStatus::PendingFinance => "pending_finance",
        pb::RequestStatus::FinanceRejected => "finance_rejected",
        pb::RequestStatus::Approved => "approved",
        pb::RequestStatus::Cancelled => "cancelled",
    }
}

fn parse_status(name: Option<&str>) -> Result<pb::RequestStatus, ApiError> {
    let Some(name) = name.map(str::trim).filter(|name| !name.is_empty()) else {
        return Ok(pb::RequestStatus::Unspecified);
    };
    [
        pb::RequestStatus::PendingGuarantor,
        pb::RequestStatus::GuarantorRejected,
        pb::RequestStatus::PendingFinance,
        pb::RequestStatus::FinanceRejected,
        pb::RequestStatus::Approved,
        pb::RequestStatus::Cancelled,
    ]
    .into_iter()
    .find(|status| status_name(*status) == name)
    .ok_or_else(|| {
        ApiError::bad_request(
            "status_invalid",
            "Unknown status; use pending_guarantor, guarantor_rejected, pending_finance, finance_rejected, approved or cancelled.",
            "وضعیت نامعتبر است.",
        )
    })
}

fn party(party: Option<pb::Party>) -> Option<PartyView> {
    party.map(|party| PartyView {
        employee_id: party.employee_id,
        national_id: party.national_id,
        full_name: party.full_name,
    })
}

impl From<pb::CreditRequest> for CreditRequestView {
    fn from(request: pb::CreditRequest) -> Self {
        let status = status_name(request.status()).to_owned();
        CreditRequestView {
            id: request.request_id,
            status,
            applicant: party(request.applicant),
            guarantor: party(request.guarantor),
            region_code: request.region_code,
            monthly_credit: request.monthly_credit,
            instalment_months: request.instalment_months,
            purchasing_power: request.purchasing_power,
            guarantor_active_guarantees: Some(request.guarantor_active_guarantees),
            history: request
                .history
                .into_iter()
                .map(|change| StatusChangeView {
                    status: status_name(change.status()).to_owned(),
                    at: tavana_proto::datetime(change.at),
                    by_role: change.by_role,
                    by_employee_id: Some(change.by_employee_id).filter(|id| !id.is_empty()),
                    reason: change.reason,
                    message_fa: change.message_fa,
                    message_en: change.message_en,
                })
                .collect(),
            activates_at: tavana_proto::datetime(request.activates_at),
            created_at: tavana_proto::datetime(request.created_at),
        }
    }
}

/// Returns a request as `user` may see it: its applicant is not shown the guarantor's
/// guarantee count (R32: no figure of another person).
fn seen_by(user: &User, request: pb::CreditRequest) -> CreditRequestView {
    let mut view = CreditRequestView::from(request);
    let caller = user.caller().national_id();
    let applicant = view
        .applicant
        .as_ref()
        .map(|party| party.national_id.as_str());
    if caller.is_none() || caller == applicant {
        view.guarantor_active_guarantees = None;
    }
    view
}

fn view(
    user: &User,
    request: Option<pb::CreditRequest>,
) -> Result<Json<CreditRequestView>, ApiError> {
    request
        .map(|request| Json(seen_by(user, request)))
        .ok_or_else(|| ApiError::internal("guarantee service answered without a request"))
}

fn page(
    user: &User,
    items: Vec<pb::CreditRequest>,
    next_page_token: String,
) -> Json<CreditRequestPage> {
    Json(CreditRequestPage {
        items: items
            .into_iter()
            .map(|request| seen_by(user, request))
            .collect(),
        next_page_token: next_token(next_page_token),
    })
}

/// Files a credit request as the signed-in employee (R7-R9); a refusal lists every
/// failed rule in `violations`.
#[utoipa::path(post, path = "/v1/me/credit-requests", tag = "credit requests",
    request_body = FileCreditRequestBody,
    responses(
        (status = 201, body = CreditRequestView),
        (status = 400, description = "malformed body or national ID"),
        (status = 401),
        (status = 409, description = "open_request_exists"),
        (status = 422, description = "rules refused; every failed rule in violations"),
    ))]
#[tracing::instrument(skip_all)]
async fn file_credit_request(
    State(state): State<AppState>,
    user: User,
    ApiJson(body): ApiJson<FileCreditRequestBody>,
) -> Result<(StatusCode, Json<CreditRequestView>), ApiError> {
    let message = pb::FileCreditRequestRequest {
        guarantor_national_id: body.guarantor_national_id,
        monthly_credit: body.monthly_credit,
        // Out-of-range counts reach the service as 0, which R7 refuses with its code.
        instalment_months: u32::try_from(body.instalment_months).unwrap_or(0),
    };
    let response = state
        .guarantee
        .clone()
        .file_credit_request(user.request(message))
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, view(&user, response.request)?))
}

/// Returns what the signed-in employee's next credit request may ask for (R7, S10), so
/// that a client states the limits without computing them.
#[utoipa::path(get, path = "/v1/me/credit-limits", tag = "credit requests",
    responses((status = 200, body = CreditLimitsView), (status = 401),
        (status = 404, description = "employee_not_found")))]
#[tracing::instrument(skip_all)]
async fn get_my_credit_limits(
    State(state): State<AppState>,
    user: User,
) -> Result<Json<CreditLimitsView>, ApiError> {
    let limits = state
        .guarantee
        .clone()
        .get_my_credit_limits(user.request(pb::GetMyCreditLimitsRequest {}))
        .await?
        .into_inner();
    Ok(Json(CreditLimitsView {
        max_monthly_credit: limits.max_monthly_credit,
        max_instalment_months: limits.max_instalment_months,
    }))
}

/// Lists the signed-in employee's credit requests, newest first.
#[utoipa::path(get, path = "/v1/me/credit-requests", tag = "credit requests",
    params(Paging),
    responses((status = 200, body = CreditRequestPage), (status = 401)))]
#[tracing::instrument(skip_all)]
async fn list_my_credit_requests(
    State(state): State<AppState>,
    user: User,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<Json<CreditRequestPage>, ApiError> {
    let message = pb::ListMyCreditRequestsRequest {
        page_size: paging.size(),
        page_token: paging.token(),
    };
    let response = state
        .guarantee
        .clone()
        .list_my_credit_requests(user.request(message))
        .await?
        .into_inner();
    Ok(page(&user, response.items, response.next_page_token))
}

/// Returns a credit request with its history to its applicant, its guarantor or the
/// finance office of its region (R11); anyone else gets 404.
#[utoipa::path(get, path = "/v1/credit-requests/{id}", tag = "credit requests",
    params(("id" = String, Path, description = "the request id")),
    responses((status = 200, body = CreditRequestView), (status = 401), (status = 404)))]
#[tracing::instrument(skip_all, fields(request_id = %id))]
async fn get_credit_request(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<Json<CreditRequestView>, ApiError> {
    let message = pb::GetCreditRequestRequest { request_id: id };
    let response = state
        .guarantee
        .clone()
        .get_credit_request(user.request(message))
        .await?
        .into_inner();
    view(&user, response.request)
}

/// Cancels a pending request, as its applicant (R9).
#[utoipa::path(post, path = "/v1/credit-requests/{id}/cancel", tag = "credit requests",
    params(("id" = String, Path, description = "the request id")),
    responses((status = 200, body = CreditRequestView), (status = 401), (status = 403),
        (status = 404), (status = 409, description = "request_not_pending")))]
#[tracing::instrument(skip_all, fields(request_id = %id))]
async fn cancel_credit_request(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<Json<CreditRequestView>, ApiError> {
    let message = pb::CancelCreditRequestRequest { request_id: id };
    let response = state
        .guarantee
        .clone()
        .cancel_credit_request(user.request(message))
        .await?
        .into_inner();
    view(&user, response.request)
}

/// Lists the requests naming the signed-in employee as guarantor (S14), newest first.
#[utoipa::path(get, path = "/v1/me/guarantee-requests", tag = "credit requests",
    params(StatusQuery),
    responses((status = 200, body = CreditRequestPage), (status = 400), (status = 401)))]
#[tracing::instrument(skip_all)]
async fn list_guarantee_requests(
    State(state): State<AppState>,
    user: User,
    ApiQuery(query): ApiQuery<StatusQuery>,
) -> Result<Json<CreditRequestPage>, ApiError> {
    let message = pb::ListGuaranteeRequestsRequest {
        status: parse_status(query.status.as_deref())? as i32,
        page_size: query.page_size.unwrap_or(0).min(100),
        page_token: query.page_token.unwrap_or_default(),
    };
    let response = state
        .guarantee
        .clone()
        .list_guarantee_requests(user.request(message))
        .await?
        .into_inner();
    Ok(page(&user, response.items, response.next_page_token))
}

/// Approves or rejects a request as its named guarantor (R10, S14); an approval checks
/// R8 again on current HR data.
#[utoipa::path(post, path = "/v1/credit-requests/{id}/guarantor-decision", tag = "credit requests",
    params(("id" = String, Path, description = "the request id")),
    request_body = DecisionBody,
    responses((status = 200, body = CreditRequestView), (status = 401), (status = 403),
        (status = 404), (status = 409, description = "request_not_pending"),
        (status = 422, description = "R8 no longer holds")))]
#[tracing::instrument(skip_all, fields(request_id = %id))]
async fn guarantor_decision(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<Json<CreditRequestView>, ApiError> {
    let message = pb::DecideAsGuarantorRequest {
        request_id: id,
        approve: body.approve,
        reason: body.reason,
    };
    let response = state
        .guarantee
        .clone()
        .decide_as_guarantor(user.request(message))
        .await?
        .into_inner();
    view(&user, response.request)
}

/// Lists a region's credit requests for its finance office (S2), newest first.
#[utoipa::path(get, path = "/v1/regions/{region}/credit-requests", tag = "credit requests",
    params(("region" = String, Path, pattern = r"^[A-Za-z0-9_-]{1,64}$", description = "the region code"), StatusQuery),
    responses((status = 200, body = CreditRequestPage), (status = 400), (status = 401),
        (status = 403)))]
#[tracing::instrument(skip_all, fields(region = %region))]
async fn list_region_credit_requests(
    State(state): State<AppState>,
    user: User,
    Path(region): Path<String>,
    ApiQuery(query): ApiQuery<StatusQuery>,
) -> Result<Json<CreditRequestPage>, ApiError> {
    // Matched as HR stores it: `teh-19` is region TEH-19.
    let region = RegionCode::parse(&region).map_err(|error| invalid_id("region", &error))?;
    let message = pb::ListRegionCreditRequestsRequest {
        region_code: region.into_string(),
        status: parse_status(query.status.as_deref())? as i32,
        page_size: query.page_size.unwrap_or(0).min(100),
        page_token: query.page_token.unwrap_or_default(),
    };
    let response = state
        .guarantee
        .clone()
        .list_region_credit_requests(user.request(message))
        .await?
        .into_inner();
    Ok(page(&user, response.items, response.next_page_token))
}

/// Approves or rejects a request as region finance of the applicant's region (R10);
/// approval opens the facility, usable from `activates_at` = now + 72 h (R12).
#[utoipa::path(post, path = "/v1/credit-requests/{id}/finance-decision", tag = "credit requests",
    params(("id" = String, Path, description = "the request id")),
    request_body = DecisionBody,
    responses((status = 200, body = CreditRequestView), (status = 401), (status = 403),
        (status = 404), (status = 409, description = "request_not_pending"),
        (status = 422, description = "R8 no longer holds")))]
#[tracing::instrument(skip_all, fields(request_id = %id))]
async fn finance_decision(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<Json<CreditRequestView>, ApiError> {
    let message = pb::DecideAsFinanceRequest {
        request_id: id,
        approve: body.approve,
        reason: body.reason,
    };
    let response = state
        .guarantee
        .clone()
        .decide_as_finance(user.request(message))
        .await?
        .into_inner();
    view(&user, response.request)
}
