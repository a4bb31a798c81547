//! Gateway routes of the credit service: balance, purchases, card, merchant purchases and
//! refunds, card unlock (API.md, R12, R14-R21).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tavana_kit::caller::Caller;
use tavana_proto::credit::v1 as pb;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Merchant, User};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, IdempotencyKey, Paging, next_token};
use crate::{AppState, edge};

/// Returns the routes of the credit service.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_balance))
        .routes(routes!(create_purchase, list_purchases))
        .routes(routes!(get_card))
        .routes(routes!(change_pin))
        .routes(routes!(create_merchant_purchase))
        .routes(routes!(refund_purchase))
        .routes(routes!(unlock_card))
        .routes(routes!(close_my_facility))
        .routes(routes!(support_close_facility))
        .routes(routes!(support_suspend_facility))
        .routes(routes!(support_resume_facility))
}

/// The signed-in employee's budgets (R16-R18).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BalanceView {
    /// `pending_activation`, `active`, `overdue` (R29), `suspended` or `closed`.
    pub status: String,
    /// When the facility becomes usable (approval + 72 h, R12).
    pub activates_at: Option<DateTime<Utc>>,
    /// `M`, in rial.
    pub monthly_credit: i64,
    /// `N`.
    pub max_instalments: u32,
    /// `P = M x N`, in rial.
    pub purchasing_power: i64,
    /// Room left in `M` now.
    pub available_monthly: i64,
    /// Room left in `P` now.
    pub available_total: i64,
    /// The next instant credit room returns by the clock (R17), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_release_at: Option<DateTime<Utc>>,
    /// What is overdue, in rial (R29); zero when nothing is. While above zero the
    /// facility takes no purchase (`facility_overdue`).
    #[serde(default)]
    pub overdue_amount: i64,
}

/// A new purchase from the app (R14-R16, R19).
#[derive(Debug, Deserialize, ToSchema)]
pub struct PurchaseBody {
    /// The contracted merchant.
    #[schema(pattern = r"\S")]
    pub merchant_id: String,
    /// `credit` or `instalment`.
    #[schema(value_type = crate::schema::PurchaseKind)]
    pub kind: String,
    /// The amount in rial, above zero.
    #[schema(minimum = 1)]
    pub amount: i64,
    /// Instalments (1..=N) of an instalment purchase; absent or 1 for credit.
    #[schema(minimum = 0)]
    pub months: Option<u32>,
}

/// A new purchase by a merchant with the customer's card and PIN (R21).
#[derive(Debug, Deserialize, ToSchema)]
pub struct MerchantPurchaseBody {
    /// The card's 16-digit customer number.
    #[schema(pattern = r"^[0-9]{16}$")]
    pub customer_number: String,
    /// The card's 10-digit second PIN.
    #[schema(pattern = r"^[0-9]{10}$")]
    pub pin: String,
    /// `credit` or `instalment`.
    #[schema(value_type = crate::schema::PurchaseKind)]
    pub kind: String,
    /// The amount in rial, above zero.
    #[schema(minimum = 1)]
    pub amount: i64,
    /// Instalments (1..=N) of an instalment purchase; absent or 1 for credit.
    #[schema(minimum = 0)]
    pub months: Option<u32>,
}

/// A refund (R20).
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefundBody {
    /// The amount to refund, 1 up to what remains of the purchase.
    #[schema(minimum = 1)]
    pub amount: i64,
}

/// Why support closes, suspends or resumes a facility (R30).
#[derive(Debug, Deserialize, ToSchema)]
pub struct FacilityActionBody {
    /// e.g. "employment ended".
    #[schema(pattern = r"\S")]
    pub reason: String,
}

/// A facility's state after a close, suspend or resume (R30).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FacilityStatusView {
    /// `pending_activation`, `active`, `suspended` or `closed`.
    pub status: String,
}

/// A PIN change (R21).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangePinBody {
    /// The current PIN (the national ID until first changed).
    #[schema(pattern = r"^[0-9]{10}$")]
    pub current_pin: String,
    /// The new 10-digit PIN.
    #[schema(pattern = r"^[0-9]{10}$")]
    pub new_pin: String,
}

/// One deduction of a purchase's schedule (R15).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InstalmentView {
    /// The Jalali salary period, e.g. `1405-03`.
    pub period: String,
    /// The amount in rial.
    pub amount: i64,
}

/// A purchase.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PurchaseView {
    /// The purchase's id (UUID v7): the `{id}` a merchant refunds with
    /// `POST /v1/merchant/purchases/{id}/refund`.
    pub id: String,
    /// `credit` or `instalment`.
    pub kind: String,
    /// The amount bought, in rial.
    pub amount: i64,
    /// Number of monthly deductions.
    pub months: u32,
    /// What stays due, per salary period.
    pub instalments: Vec<InstalmentView>,
    /// When the purchase was made (RFC 3339, UTC); its Jalali month sets the first
    /// deduction (R17).
    pub created_at: Option<DateTime<Utc>>,
    /// The merchant's id, as in `GET /v1/merchants/{id}`.
    pub merchant_id: String,
    /// The merchant's name as it was when the purchase was made.
    pub merchant_name: String,
    /// Refunded so far, in rial.
    pub refunded_amount: i64,
    /// True once every instalment is settled.
    pub settled: bool,
}

/// A page of purchases.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PurchasePage {
    /// The purchases of this page, at most `page_size`.
    pub items: Vec<PurchaseView>,
    /// Pass as `page_token` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// The employee's card (R21).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CardView {
    /// The card's 16-digit customer number, which a merchant sends with the PIN
    /// (`POST /v1/merchant/purchases`).
    pub customer_number: String,
    /// e.g. `6037-99**-****-1234`.
    pub masked_pan: String,
    /// True until the PIN, which starts as the national ID, is changed; merchant
    /// purchases answer 422 `pin_must_change` until then (R21).
    pub pin_must_change: bool,
    /// True after 5 wrong PINs, until support unlocks the card (R21).
    pub locked: bool,
}

fn parse_kind(kind: &str) -> Result<pb::PurchaseKind, ApiError> {
    match kind.trim() {
        "credit" => Ok(pb::PurchaseKind::Credit),
        "instalment" => Ok(pb::PurchaseKind::Instalment),
        _ => Err(ApiError::bad_request(
            "kind_invalid",
            "The purchase kind must be credit or instalment.",
            "نوع خرید باید credit یا instalment باشد.",
        )),
    }
}

fn kind_name(kind: pb::PurchaseKind) -> &'static str {
    match kind {
        pb::PurchaseKind::Credit => "credit",
        pb::PurchaseKind::Instalment => "instalment",
        pb::PurchaseKind::Unspecified => "unspecified",
    }
}

fn status_name(status: pb::FacilityStatus) -> &'static str {
    match status {
        pb::FacilityStatus::PendingActivation => "pending_activation",
        pb::FacilityStatus::Active => "active",
        pb::FacilityStatus::Suspended => "suspended",
        pb::FacilityStatus::Closed => "closed",
        pb::FacilityStatus::Overdue => "overdue",
        pb::FacilityStatus::Unspecified => "unspecified",
    }
}

impl From<pb::Purchase> for PurchaseView {
    fn from(purchase: pb::Purchase) -> Self {
        PurchaseView {
            kind: kind_name(purchase.kind()).to_owned(),
            id: purchase.purchase_id,
            amount: purchase.amount,
            months: purchase.months,
            instalments: purchase
                .instalments
                .into_iter()
                .map(|instalment| InstalmentView {
                    period: instalment.period,
                    amount: instalment.amount,
                })
                .collect(),
            created_at: tavana_proto::datetime(purchase.created_at),
            merchant_id: purchase.merchant_id,
            merchant_name: purchase.merchant_name,
            refunded_amount: purchase.refunded_amount,
            settled: purchase.settled,
        }
    }
}

fn purchase_view(purchase: Option<pb::Purchase>) -> Result<Json<PurchaseView>, ApiError> {
    purchase
        .map(|purchase| Json(purchase.into()))
        .ok_or_else(|| ApiError::internal("credit service answered without a purchase"))
}

/// Returns the signed-in employee's balance; 404 `no_facility` before any approval.
#[utoipa::path(get, path = "/v1/me/balance", tag = "credit",
    responses((status = 200, body = BalanceView), (status = 401), (status = 404, description = "no_facility")))]
#[tracing::instrument(skip_all)]
async fn get_balance(
    State(state): State<AppState>,
    user: User,
) -> Result<Json<BalanceView>, ApiError> {
    let response = state
        .credit
        .clone()
        .get_balance(user.request(pb::GetBalanceRequest {}))
        .await?
        .into_inner();
    let facility = response
        .facility
        .ok_or_else(|| ApiError::internal("credit service answered without a facility"))?;
    Ok(Json(BalanceView {
        status: status_name(facility.status()).to_owned(),
        activates_at: tavana_proto::datetime(facility.activates_at),
        monthly_credit: facility.monthly_credit,
        max_instalments: facility.max_instalments,
        purchasing_power: facility.purchasing_power,
        available_monthly: response.available_monthly,
        available_total: response.available_total,
        next_release_at: tavana_proto::datetime(response.next_release_at),
        overdue_amount: response.overdue_amount,
    }))
}

/// Buys from a contracted merchant as the signed-in employee (R14-R16); the same
/// `Idempotency-Key` and body answers the same 201 and body again (R19).
#[utoipa::path(post, path = "/v1/me/purchases", tag = "credit",
    request_body = PurchaseBody,
    params(("Idempotency-Key" = String, Header, pattern = r"^[!-~]{1,255}$", description = "unique per purchase")),
    responses(
        (status = 201, body = PurchaseView),
        (status = 400, description = "malformed body or missing Idempotency-Key"),
        (status = 401),
        (status = 404, description = "no_facility"),
        (status = 422, description = "insufficient_credit (with available_monthly, available_total), facility_not_active, facility_suspended, facility_closed, facility_overdue (R29), amount_below_months, merchant_not_contracted, merchant_kind_not_supported, organization_contract_not_in_force, instalment_months_out_of_range, idempotency_key_reused"),
    ))]
#[tracing::instrument(skip_all)]
async fn create_purchase(
    State(state): State<AppState>,
    user: User,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<PurchaseBody>,
) -> Result<(StatusCode, Json<PurchaseView>), ApiError> {
    let message = pb::CreatePurchaseRequest {
        merchant_id: body.merchant_id,
        kind: parse_kind(&body.kind)? as i32,
        amount: body.amount,
        months: body.months.unwrap_or(0),
        idempotency_key: key,
    };
    let response = state
        .credit
        .clone()
        .create_purchase(user.request(message))
        .await?
        .into_inner();
    // A replay answers exactly as the first request did.
    Ok((StatusCode::CREATED, purchase_view(response.purchase)?))
}

/// Lists the signed-in employee's purchases, newest first.
#[utoipa::path(get, path = "/v1/me/purchases", tag = "credit",
    params(Paging),
    responses((status = 200, body = PurchasePage), (status = 401)))]
#[tracing::instrument(skip_all)]
async fn list_purchases(
    State(state): State<AppState>,
    user: User,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<Json<PurchasePage>, ApiError> {
    let response = state
        .credit
        .clone()
        .list_purchases(user.request(pb::ListPurchasesRequest {
            page_size: paging.size(),
            page_token: paging.token(),
        }))
        .await?
        .into_inner();
    Ok(Json(PurchasePage {
        items: response.items.into_iter().map(Into::into).collect(),
        next_page_token: next_token(response.next_page_token),
    }))
}

/// Returns the signed-in employee's card (R21).
#[utoipa::path(get, path = "/v1/me/card", tag = "credit",
    responses((status = 200, body = CardView), (status = 401), (status = 404, description = "no_facility")))]
#[tracing::instrument(skip_all)]
async fn get_card(State(state): State<AppState>, user: User) -> Result<Json<CardView>, ApiError> {
    let card = state
        .credit
        .clone()
        .get_card(user.request(pb::GetCardRequest {}))
        .await?
        .into_inner()
        .card
        .ok_or_else(|| ApiError::internal("credit service answered without a card"))?;
    Ok(Json(CardView {
        customer_number: card.customer_number,
        masked_pan: card.masked_pan,
        pin_must_change: card.pin_must_change,
        locked: card.locked,
    }))
}

/// Changes the card's second PIN (R21, S12).
#[utoipa::path(put, path = "/v1/me/card/pin", tag = "credit",
    request_body = ChangePinBody,
    responses(
        (status = 204),
        (status = 400, description = "pin_format_invalid, pin_too_simple, pin_equals_national_id"),
        (status = 401),
        (status = 404, description = "no_facility"),
        (status = 422, description = "pin_invalid (with attempts_left), card_locked"),
    ))]
#[tracing::instrument(skip_all)]
async fn change_pin(
    State(state): State<AppState>,
    user: User,
    ApiJson(body): ApiJson<ChangePinBody>,
) -> Result<StatusCode, ApiError> {
    state
        .credit
        .clone()
        .change_pin(user.request(pb::ChangePinRequest {
            current_pin: body.current_pin,
            new_pin: body.new_pin,
        }))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Buys with the customer's card and PIN, as a merchant backend (R21, R14-R16, R19).
#[utoipa::path(post, path = "/v1/merchant/purchases", tag = "merchant",
    request_body = MerchantPurchaseBody,
    params(("Idempotency-Key" = String, Header, pattern = r"^[!-~]{1,255}$", description = "unique per purchase")),
    responses(
        (status = 201, body = PurchaseView),
        (status = 400),
        (status = 401),
        (status = 422, description = "card_rejected: an unknown card, a wrong PIN and a locked card get this one answer (R21); pin_must_change, insufficient_credit and the other purchase refusals"),
        (status = 429, description = "rate_limited per merchant key or per card, with Retry-After"),
    ))]
#[tracing::instrument(skip_all)]
async fn create_merchant_purchase(
    State(state): State<AppState>,
    merchant: Merchant,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<MerchantPurchaseBody>,
) -> Result<(StatusCode, Json<PurchaseView>), ApiError> {
    limit_merchant(&state, &merchant).await?;
    let card: String = tavana_kit::ids::normalize_digits(&body.customer_number)
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    edge::check_rate_per_minute(
        &state,
        &edge::hashed_key("gateway:rate:card:", &card),
        state.settings.rate_limit_per_card_per_minute,
    )
    .await?;
    let message = pb::CreateMerchantPurchaseRequest {
        customer_number: body.customer_number,
        pin: body.pin,
        kind: parse_kind(&body.kind)? as i32,
        amount: body.amount,
        months: body.months.unwrap_or(0),
        idempotency_key: key,
    };
    let response = state
        .credit
        .clone()
        .create_merchant_purchase(merchant.request(message))
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, purchase_view(response.purchase)?))
}

/// Counts one call of a merchant's API key against its per-minute limit.
async fn limit_merchant(state: &AppState, merchant: &Merchant) -> Result<(), ApiError> {
    let Caller::Merchant { merchant_id } = &merchant.context.caller else {
        return Err(ApiError::unauthenticated());
    };
    edge::check_rate_per_minute(
        state,
        &format!("gateway:rate:merchant:{merchant_id}"),
        state.settings.rate_limit_per_merchant_per_minute,
    )
    .await
}

/// Refunds a purchase wholly or in part, as its merchant, before its first deduction is
/// due (R20); the same `Idempotency-Key` and body answers the first answer again, and the
/// purchase is refunded once (R19).
#[utoipa::path(post, path = "/v1/merchant/purchases/{id}/refund", tag = "merchant",
    request_body = RefundBody,
    params(
        ("id" = String, Path, description = "the purchase id"),
        ("Idempotency-Key" = String, Header, pattern = r"^[!-~]{1,255}$", description = "unique per refund"),
    ),
    responses(
        (status = 200, body = PurchaseView),
        (status = 400, description = "refund_amount_out_of_range, idempotency_key_missing"),
        (status = 401),
        (status = 404, description = "purchase_not_found"),
        (status = 409, description = "the same Idempotency-Key is still in flight"),
        (status = 422, description = "refund_window_closed (also once a remittance settled an instalment of it), idempotency_key_reused"),
        (status = 429, description = "rate_limited per merchant key, with Retry-After"),
    ))]
#[tracing::instrument(skip_all)]
async fn refund_purchase(
    State(state): State<AppState>,
    merchant: Merchant,
    Path(id): Path<String>,
    IdempotencyKey(idempotency_key): IdempotencyKey,
    ApiJson(body): ApiJson<RefundBody>,
) -> Result<Json<PurchaseView>, ApiError> {
    limit_merchant(&state, &merchant).await?;
    // A refund moves money: its Idempotency-Key is required like a purchase's (R19, R20).
    let response = state
        .credit
        .clone()
        .refund_purchase(merchant.request(pb::RefundPurchaseRequest {
            purchase_id: id,
            amount: body.amount,
            idempotency_key,
        }))
        .await?
        .into_inner();
    purchase_view(response.purchase)
}

/// Unlocks a card locked by 5 wrong PINs (support, R21).
#[utoipa::path(post, path = "/v1/support/cards/{customer_number}/unlock", tag = "support",
    params(("customer_number" = String, Path, pattern = r"^[0-9]{16}$", description = "the card's customer number")),
    responses((status = 204), (status = 401), (status = 403), (status = 404, description = "card_not_found")))]
#[tracing::instrument(skip_all)]
async fn unlock_card(
    State(state): State<AppState>,
    user: User,
    Path(customer_number): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .credit
        .clone()
        .unlock_card(user.request(pb::UnlockCardRequest { customer_number }))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn facility_status(facility: Option<pb::Facility>) -> Result<Json<FacilityStatusView>, ApiError> {
    let facility =
        facility.ok_or_else(|| ApiError::internal("credit service answered without a facility"))?;
    Ok(Json(FacilityStatusView {
        status: status_name(facility.status()).to_owned(),
    }))
}

/// Closes the signed-in employee's facility when nothing is owed and nothing is held; its
/// guarantee is released at once and a new request may be filed (R30, R13, R9).
#[utoipa::path(post, path = "/v1/me/facility/close", tag = "credit",
    responses(
        (status = 200, body = FacilityStatusView),
        (status = 401),
        (status = 404, description = "no_facility"),
        (status = 409, description = "facility_has_debt"),
    ))]
#[tracing::instrument(skip_all)]
async fn close_my_facility(
    State(state): State<AppState>,
    user: User,
) -> Result<Json<FacilityStatusView>, ApiError> {
    let response = state
        .credit
        .clone()
        .close_facility(user.request(pb::CloseFacilityRequest::default()))
        .await?
        .into_inner();
    facility_status(response.facility)
}

/// Closes an employee's facility as support (employment ended), when nothing is owed and
/// nothing is held (R30).
#[utoipa::path(post, path = "/v1/support/facilities/{national_id}/close", tag = "support",
    request_body = FacilityActionBody,
    params(("national_id" = String, Path, pattern = r"^[0-9]{8,10}$", description = "the employee's national ID")),
    responses(
        (status = 200, body = FacilityStatusView),
        (status = 400),
        (status = 401),
        (status = 403),
        (status = 404, description = "no_facility"),
        (status = 409, description = "facility_has_debt"),
    ))]
#[tracing::instrument(skip_all)]
async fn support_close_facility(
    State(state): State<AppState>,
    user: User,
    Path(national_id): Path<String>,
    ApiJson(body): ApiJson<FacilityActionBody>,
) -> Result<Json<FacilityStatusView>, ApiError> {
    let response = state
        .credit
        .clone()
        .close_facility(user.request(pb::CloseFacilityRequest {
            facility_id: String::new(),
            national_id,
            reason: body.reason,
        }))
        .await?
        .into_inner();
    facility_status(response.facility)
}

/// Suspends an employee's facility as support: no new purchases (`facility_suspended`),
/// deductions go on (R30).
#[utoipa::path(post, path = "/v1/support/facilities/{national_id}/suspend", tag = "support",
    request_body = FacilityActionBody,
    params(("national_id" = String, Path, pattern = r"^[0-9]{8,10}$", description = "the employee's national ID")),
    responses(
        (status = 200, body = FacilityStatusView),
        (status = 400),
        (status = 401),
        (status = 403),
        (status = 404, description = "no_facility"),
        (status = 409, description = "facility_closed"),
    ))]
#[tracing::instrument(skip_all)]
async fn support_suspend_facility(
    State(state): State<AppState>,
    user: User,
    Path(national_id): Path<String>,
    ApiJson(body): ApiJson<FacilityActionBody>,
) -> Result<Json<FacilityStatusView>, ApiError> {
    let response = state
        .credit
        .clone()
        .suspend_facility(user.request(pb::SuspendFacilityRequest {
            national_id,
            reason: body.reason,
        }))
        .await?
        .into_inner();
    facility_status(response.facility)
}

/// Lifts a suspension as support (R30).
#[utoipa::path(post, path = "/v1/support/facilities/{national_id}/resume", tag = "support",
    request_body = FacilityActionBody,
    params(("national_id" = String, Path, pattern = r"^[0-9]{8,10}$", description = "the employee's national ID")),
    responses(
        (status = 200, body = FacilityStatusView),
        (status = 400),
        (status = 401),
        (status = 403),
        (status = 404, description = "no_facility"),
        (status = 409, description = "facility_closed"),
    ))]
#[tracing::instrument(skip_all)]
async fn support_resume_facility(
    State(state): State<AppState>,
    user: User,
    Path(national_id): Path<String>,
    ApiJson(body): ApiJson<FacilityActionBody>,
) -> Result<Json<FacilityStatusView>, ApiError> {
    let response = state
        .credit
        .clone()
        .resume_facility(user.request(pb::ResumeFacilityRequest {
            national_id,
            reason: body.reason,
        }))
        .await?
        .into_inner();
    facility_status(response.facility)
}
