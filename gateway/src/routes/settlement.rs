//! Gateway routes of the settlement service: the employee's instalments (R24), the deduction
//! list (R22, JSON or CSV, streamed) and remittances (R23, JSON or CSV upload).
//!
//! The settlement client is built with a 256 MiB gRPC message limit both ways
//! (`MAX_GRPC_MESSAGE` in `state.rs`): one remittance of a whole organization is one message.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tavana_kit::ids::{OrganizationId, RegionCode};
use tavana_proto::settlement::v1 as pb;
use tavana_proto::settlement::v1::stream_deduction_list_response::Item;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::User;
use crate::error::{ApiError, invalid_id};
use crate::extract::{ApiJson, ApiQuery, next_token};

/// Returns the routes of the settlement service.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_my_instalments))
        .routes(routes!(get_deduction_list))
        .routes(routes!(record_remittance))
        .routes(routes!(get_remittance))
        .routes(routes!(get_reconciliation))
        .routes(routes!(close_period))
        .routes(routes!(list_overdue))
        .routes(routes!(list_unmatched_lines))
        .routes(routes!(resolve_unmatched_line))
}

/// One purchase on which credit and settlement differ (R31).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReconciliationMismatch {
    /// The purchase's id, as credit and settlement both know it.
    pub purchase_id: String,
    /// The national ID of the employee who made the purchase.
    pub national_id: String,
    /// What credit says stays due: the amount less refunds, in rial.
    pub credit_amount: i64,
    /// What settlement's instalments add up to, in rial.
    pub settlement_amount: i64,
    /// What differs, e.g. `period 1405-03: credit 4, settlement 0`.
    pub detail: String,
}

/// The outcome of a reconciliation (R31).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Reconciliation {
    /// How many purchases were compared.
    pub checked_purchases: u64,
    /// Every purchase on which the two services differ; empty when they agree.
    pub mismatches: Vec<ReconciliationMismatch>,
}

/// Compares every purchase's schedule in credit with settlement's instalments, period by
/// period, and lists every difference (support, R31).
#[utoipa::path(get, path = "/v1/admin/reconciliation", tag = "support",
    responses((status = 200, body = Reconciliation), (status = 401), (status = 403)))]
#[tracing::instrument(skip_all)]
async fn get_reconciliation(
    State(state): State<AppState>,
    user: User,
) -> Result<Json<Reconciliation>, ApiError> {
    let response = state
        .settlement
        .clone()
        .reconcile(user.request(pb::ReconcileRequest {}))
        .await?
        .into_inner();
    Ok(Json(Reconciliation {
        checked_purchases: response.checked_purchases,
        mismatches: response
            .mismatches
            .into_iter()
            .map(|m| ReconciliationMismatch {
                purchase_id: m.purchase_id,
                national_id: m.national_id,
                credit_amount: m.credit_amount,
                settlement_amount: m.settlement_amount,
                detail: m.detail,
            })
            .collect(),
    }))
}

/// `?state=&page_size=&page_token=` of `GET /v1/me/instalments`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InstalmentQuery {
    /// `settled`, `unsettled` (overdue ones included), `overdue` (R29) or `finished`
    /// (instalments of fully settled purchases); absent lists every instalment that is or
    /// was due.
    #[param(pattern = r"^(|unsettled|settled|finished|overdue)$")]
    pub state: Option<String>,
    /// Items per page: default 20, at most 100.
    #[param(minimum = 1, maximum = 100)]
    #[serde(default, deserialize_with = "crate::extract::page_size")]
    pub page_size: Option<u32>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// One of the employee's instalments (R24).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InstalmentItem {
    /// The instalment's id, as listed in the deduction list's `instalments`.
    pub id: String,
    /// The purchase it repays, as `id` in `GET /v1/me/purchases`.
    pub purchase_id: String,
    /// The name of the merchant the purchase was made at.
    pub merchant_name: String,
    /// Position in the purchase's schedule, from 1.
    pub seq: u32,
    /// The Jalali salary period it is deducted from, e.g. `1405-09`.
    pub period: String,
    /// The period it was first due in: earlier than `period` for re-aged arrears (R29).
    pub due_period: String,
    /// In rial.
    pub amount: i64,
    /// `unsettled`, `settled`, `overdue` (R29) or `cancelled`.
    pub state: String,
    /// When a recorded remittance settled it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<DateTime<Utc>>,
}

/// A page of instalments.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InstalmentPage {
    /// The instalments of this page, at most `page_size`.
    pub items: Vec<InstalmentItem>,
    /// Pass as `page_token` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// One line of a remittance.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RemittanceLineBody {
    /// The employee's national ID, as the organization's bank file has it: a line that
    /// matches no one is kept for review (R23), not refused.
    pub national_id: String,
    /// The amount deducted and remitted, in rial.
    pub amount: i64,
}

/// A remittance as JSON.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RemittanceBody {
    /// The remitting organization's id, e.g. `ORG-01` (case does not matter).
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub organization_id: String,
    /// The Jalali salary period, e.g. `1405-09`.
    #[schema(
        pattern = r"^([0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])$"
    )]
    pub period: String,
    /// The bank's reference of the transfer; recorded once per organization.
    #[schema(pattern = r"\S")]
    pub bank_reference: String,
    /// The transfer's lines, one per employee deduction as the bank file lists them;
    /// each line is matched against that period's deduction list only (R22, R23).
    pub lines: Vec<RemittanceLineBody>,
}

/// `?organization_id=&period=&bank_reference=` of a CSV remittance upload.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemittanceQuery {
    /// Required with `Content-Type: text/csv`.
    #[param(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub organization_id: Option<String>,
    /// Required with `Content-Type: text/csv`.
    #[param(
        pattern = r"^([0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])$"
    )]
    pub period: Option<String>,
    /// Required with `Content-Type: text/csv`.
    #[param(pattern = r"\S")]
    pub bank_reference: Option<String>,
}

/// A line kept for support to review.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UnmatchedLineView {
    /// For JSON, the line's 1-based position in `lines`; for CSV, its line in the file
    /// (the header is line 1).
    pub line: u32,
    /// The national ID as the line wrote it (normalized when valid).
    pub national_id: String,
    /// The amount not used to settle instalments.
    pub amount: i64,
    /// `national_id_invalid`, `amount_not_positive`, `amount_invalid`, `line_malformed`,
    /// `unknown_employee`, `nothing_due`, `amount_short` or `amount_over`.
    pub code: String,
}

/// The outcome of a remittance (R23).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RemittanceView {
    /// The remittance's id: the `{id}` of `GET /v1/remittances/{id}`.
    pub remittance_id: String,
    /// The remitting organization's id, as HR stores it (e.g. `ORG-01`).
    pub organization_id: String,
    /// The Jalali salary period remitted, e.g. `1405-09`.
    pub period: String,
    /// The bank's reference of the transfer, as recorded.
    pub bank_reference: String,
    /// How many instalments the remittance settled (R23).
    pub settled_instalments: u32,
    /// The sum of the instalments it settled, in rial.
    pub settled_amount: i64,
    /// The lines, or parts of lines, that settled nothing, in line order; each is kept
    /// for review in `GET /v1/unmatched-lines` (R23). Empty when every line matched.
    pub unmatched: Vec<UnmatchedLineView>,
    /// When the remittance was first recorded (RFC 3339, UTC).
    pub recorded_at: Option<DateTime<Utc>>,
    /// True when this bank reference was recorded before: this is the first result and
    /// nothing was settled now.
    pub replayed: bool,
}

fn state_filter(state: Option<&str>) -> Result<pb::InstalmentState, ApiError> {
    match state.map(str::trim) {
        None | Some("") => Ok(pb::InstalmentState::Unspecified),
        Some("unsettled") => Ok(pb::InstalmentState::Unsettled),
        Some("settled") => Ok(pb::InstalmentState::Settled),
        Some("finished") => Ok(pb::InstalmentState::Finished),
        Some("overdue") => Ok(pb::InstalmentState::Overdue),
        Some(_) => Err(ApiError::bad_request(
            "state_invalid",
            "The state must be settled, unsettled, overdue or finished.",
            "وضعیت باید settled، unsettled، overdue یا finished باشد.",
        )),
    }
}

fn state_name(state: pb::InstalmentState) -> &'static str {
    match state {
        pb::InstalmentState::Unsettled => "unsettled",
        pb::InstalmentState::Settled => "settled",
        pb::InstalmentState::Finished => "finished",
        pb::InstalmentState::Cancelled => "cancelled",
        pb::InstalmentState::Overdue => "overdue",
        pb::InstalmentState::Unspecified => "unspecified",
    }
}

impl From<pb::Instalment> for InstalmentItem {
    fn from(instalment: pb::Instalment) -> Self {
        InstalmentItem {
            state: state_name(instalment.state()).to_owned(),
            id: instalment.instalment_id,
            purchase_id: instalment.purchase_id,
            merchant_name: instalment.merchant_name,
            seq: instalment.seq,
            due_period: if instalment.due_period.is_empty() {
                instalment.period.clone()
            } else {
                instalment.due_period
            },
            period: instalment.period,
            amount: instalment.amount,
            settled_at: tavana_proto::datetime(instalment.settled_at),
        }
    }
}

fn remittance_view(
    result: Option<pb::RemittanceResult>,
    replayed: bool,
) -> Result<RemittanceView, ApiError> {
    let result =
        result.ok_or_else(|| ApiError::internal("settlement answered without a result"))?;
    Ok(RemittanceView {
        remittance_id: result.remittance_id,
        organization_id: result.organization_id,
        period: result.period,
        bank_reference: result.bank_reference,
        settled_instalments: result.settled_instalments,
        settled_amount: result.settled_amount,
        unmatched: result
            .unmatched
            .into_iter()
            .map(|line| UnmatchedLineView {
                line: line.line,
                national_id: line.national_id,
                amount: line.amount,
                code: line.code,
            })
            .collect(),
        recorded_at: tavana_proto::datetime(result.recorded_at),
        replayed,
    })
}

/// Lists the signed-in employee's instalments (R24).
#[utoipa::path(get, path = "/v1/me/instalments", tag = "settlement",
    params(InstalmentQuery),
    responses((status = 200, body = InstalmentPage), (status = 400, description = "state_invalid, page_token_invalid"), (status = 401)))]
#[tracing::instrument(skip_all)]
async fn list_my_instalments(
    State(state): State<AppState>,
    user: User,
    ApiQuery(query): ApiQuery<InstalmentQuery>,
) -> Result<Json<InstalmentPage>, ApiError> {
    let filter = state_filter(query.state.as_deref())?;
    let response = state
        .settlement
        .clone()
        .list_my_instalments(user.request(pb::ListMyInstalmentsRequest {
            state: filter as i32,
            page_size: query.page_size.unwrap_or(0).min(100),
            page_token: query.page_token.unwrap_or_default(),
        }))
        .await?
        .into_inner();
    Ok(Json(InstalmentPage {
        items: response.items.into_iter().map(Into::into).collect(),
        next_page_token: next_token(response.next_page_token),
    }))
}

fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.to_ascii_lowercase().contains("text/csv"))
}

fn csv_row(fields: &[&str]) -> Bytes {
    let mut writer = csv::WriterBuilder::new().from_writer(Vec::new());
    // Writing to a Vec cannot fail.
    let _ = writer.write_record(fields);
    Bytes::from(writer.into_inner().unwrap_or_default())
}

/// Returns a text cell that a spreadsheet shows as text: a cell starting with `=`, `+`,
/// `-`, `@`, a tab or a carriage return would run as a formula (CSV injection), so it
/// gets a leading `'`.
pub fn spreadsheet_text(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// The CSV lines of a run of deduction rows.
fn deduction_csv(rows: &[pb::DeductionRow]) -> Bytes {
    let mut writer = csv::WriterBuilder::new().from_writer(Vec::with_capacity(rows.len() * 96));
    for row in rows {
        let ids: Vec<&str> = row
            .instalments
            .iter()
            .map(|i| i.instalment_id.as_str())
            .collect();
        // Writing to a Vec cannot fail.
        let _ = writer.write_record([
            spreadsheet_text(&row.national_id).as_ref(),
            spreadsheet_text(&row.full_name).as_ref(),
            &row.total.to_string(),
            spreadsheet_text(&ids.join(";")).as_ref(),
        ]);
    }
    Bytes::from(writer.into_inner().unwrap_or_default())
}

/// The JSON items of a run of deduction rows, each preceded by a comma unless it is the
/// list's first (`first` says whether it still is).
fn deduction_json(rows: &[pb::DeductionRow], first: &mut bool) -> Bytes {
    let mut out = Vec::with_capacity(rows.len() * 160);
    for row in rows {
        if !std::mem::take(first) {
            out.push(b',');
        }
        let value = json!({
            "national_id": row.national_id,
            "full_name": row.full_name,
            "total": row.total,
            "instalments": row.instalments.iter().map(|i| json!({
                "id": i.instalment_id,
                "purchase_id": i.purchase_id,
                "amount": i.amount,
                "due_period": i.due_period,
            })).collect::<Vec<_>>(),
        });
        // Serializing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &value);
    }
    Bytes::from(out)
}

/// The body of a deduction list, one chunk per message of settlement's stream (a run of
/// employees; never the whole list in memory).
fn deduction_body(
    organization_id: String,
    period: String,
    stream: tonic::Streaming<pb::StreamDeductionListResponse>,
    csv: bool,
) -> Body {
    let head = if csv {
        csv_row(&["national_id", "full_name", "total", "instalment_ids"])
    } else {
        Bytes::from(format!(
            "{{\"organization_id\":{},\"period\":{},\"items\":[",
            json!(organization_id),
            json!(period)
        ))
    };
    let mut first = true;
    let rows = stream.map(move |message| {
        let chunk = match message?.item {
            Some(Item::Rows(batch)) if csv => deduction_csv(&batch.rows),
            Some(Item::Rows(batch)) => deduction_json(&batch.rows, &mut first),
            Some(Item::Totals(totals)) if csv => csv_row(&[
                "total",
                "",
                &totals.total.to_string(),
                &totals.instalments.to_string(),
            ]),
            Some(Item::Totals(totals)) => Bytes::from(format!(
                "],\"total\":{},\"employees\":{},\"instalments\":{}}}",
                totals.total, totals.employees, totals.instalments
            )),
            None => Bytes::new(),
        };
        Ok::<Bytes, tonic::Status>(chunk)
    });
    let body = futures::stream::once(async move { Ok::<Bytes, tonic::Status>(head) }).chain(rows);
    Body::from_stream(body)
}

/// Parses an organization id as HR stores it (`org-01` is organization ORG-01); anything
/// else is a 400 `organization_id_invalid`, as the OpenAPI pattern says.
fn organization(text: &str) -> Result<String, ApiError> {
    OrganizationId::parse(text)
        .map(OrganizationId::into_string)
        .map_err(|error| invalid_id("organization_id", &error))
}

/// An optional `?organization_id=` filter: absent or empty is no filter.
fn optional_organization(text: Option<&str>) -> Result<String, ApiError> {
    match text.map(str::trim).filter(|text| !text.is_empty()) {
        Some(text) => organization(text),
        None => Ok(String::new()),
    }
}

/// An optional `?region_code=` filter: absent or empty is no filter.
fn optional_region(text: Option<&str>) -> Result<String, ApiError> {
    match text.map(str::trim).filter(|text| !text.is_empty()) {
        Some(text) => RegionCode::parse(text)
            .map(RegionCode::into_string)
            .map_err(|error| invalid_id("region_code", &error)),
        None => Ok(String::new()),
    }
}

/// Streams an organization's deduction list for a salary period (R22), one row per employee
/// in national ID order with the instalments behind the row.
///
/// JSON: `{organization_id, period, items: [{national_id, full_name, total, instalments:
/// [{id, purchase_id, amount, due_period}]}], total, employees, instalments}`; `due_period`
/// is earlier than the list's period for arrears re-aged into it (R29). With `Accept: text/csv`:
/// columns `national_id,full_name,total,instalment_ids` (ids joined by `;`), one line per
/// employee, and a last line `total,,<organization total>,<instalment count>`.
#[utoipa::path(get, path = "/v1/organizations/{id}/deductions/{period}", tag = "settlement",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_-]{1,64}$", description = "the organization"),
           ("period" = String, Path, pattern = r"^([0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])$", description = "Jalali salary period, e.g. 1405-09")),
    responses(
        (status = 200, description = "the deduction list, streamed", content(
            (serde_json::Value = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "period_invalid"),
        (status = 401),
        (status = 403, description = "neither support nor contracts"),
    ))]
#[tracing::instrument(skip_all)]
async fn get_deduction_list(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    Path((organization_id, period)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let organization_id = organization(&organization_id)?;
    let csv = wants_csv(&headers);
    let stream = state
        .settlement
        .clone()
        .stream_deduction_list(user.request(pb::StreamDeductionListRequest {
            organization_id: organization_id.clone(),
            period: period.clone(),
        }))
        .await?
        .into_inner();
    let content_type = if csv {
        "text/csv; charset=utf-8"
    } else {
        "application/json"
    };
    let mut response = deduction_body(organization_id, period, stream, csv).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

fn is_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().to_ascii_lowercase().starts_with("text/csv"))
}

fn missing(field: &str) -> ApiError {
    ApiError::bad_request(
        &format!("{field}_missing"),
        &format!("The query parameter {field} is required for a CSV remittance."),
        &format!("پارامتر {field} برای واریزی CSV لازم است."),
    )
}

/// Checks that a remittance CSV starts with a header naming `national_id` and `amount` (in
/// any order): the one thing that refuses a whole file. Settlement reads the lines.
fn check_remittance_csv_header(body: &[u8]) -> Result<(), ApiError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let named = |header: &csv::StringRecord, name: &str| {
        header
            .iter()
            .any(|field| field.trim().eq_ignore_ascii_case(name))
    };
    match reader.headers() {
        Ok(header) if named(header, "national_id") && named(header, "amount") => Ok(()),
        _ => Err(ApiError::bad_request(
            "csv_header_invalid",
            "The CSV must start with a header line naming national_id and amount.",
            "سطر نخست CSV باید ستون‌های national_id و amount را نام ببرد.",
        )),
    }
}

fn remittance_request(
    headers: &HeaderMap,
    query: RemittanceQuery,
    body: Bytes,
) -> Result<pb::RecordRemittanceRequest, ApiError> {
    // The query parameters, wherever given, are held to their OpenAPI patterns; only a
    // CSV body needs them.
    let organization_id = query
        .organization_id
        .as_deref()
        .map(organization)
        .transpose()?;
    if let Some(period) = &query.period {
        tavana_kit::jalali::JalaliPeriod::parse(period).map_err(|_| {
            ApiError::bad_request(
                "period_invalid",
                "The period must be a Jalali YYYY-MM.",
                "دوره باید به شکل YYYY-MM شمسی باشد.",
            )
        })?;
    }
    if query
        .bank_reference
        .as_deref()
        .is_some_and(|text| text.trim().is_empty())
    {
        return Err(missing("bank_reference"));
    }
    if is_csv(headers) {
        check_remittance_csv_header(&body)?;
        // The file goes to settlement as it came, read there line by line: a large
        // remittance is held as its text, not also as a message of parsed lines.
        return Ok(pb::RecordRemittanceRequest {
            organization_id: organization_id.ok_or_else(|| missing("organization_id"))?,
            period: query.period.ok_or_else(|| missing("period"))?,
            bank_reference: query
                .bank_reference
                .ok_or_else(|| missing("bank_reference"))?,
            lines: Vec::new(),
            csv: Vec::from(body),
        });
    }
    let body: RemittanceBody = crate::extract::json_from_slice(&body, |error| {
        ApiError::bad_request(
            "malformed_body",
            &format!("The body is not a valid remittance: {error}"),
            "بدنهٔ درخواست واریزی معتبر نیست.",
        )
    })?;
    Ok(pb::RecordRemittanceRequest {
        organization_id: body.organization_id,
        period: body.period,
        bank_reference: body.bank_reference,
        lines: body
            .lines
            .into_iter()
            .map(|line| pb::RemittanceLine {
                national_id: line.national_id,
                amount: line.amount,
                ..Default::default()
            })
            .collect(),
        csv: Vec::new(),
    })
}

/// Records an organization's remittance (R23, support only): JSON, or a CSV body
/// (`Content-Type: text/csv`, header `national_id,amount`) with `organization_id`, `period`
/// and `bank_reference` as query parameters. The same bank reference again answers 200
/// with the first result (`replayed: true`) and settles nothing.
#[utoipa::path(post, path = "/v1/remittances", tag = "settlement",
    params(RemittanceQuery),
    request_body(content(
        (RemittanceBody = "application/json"),
        (String = "text/csv"),
    )),
    responses(
        (status = 200, body = RemittanceView),
        (status = 400, description = "malformed body, csv_header_invalid, period_invalid, missing query parameter"),
        (status = 401),
        (status = 403, description = "not support"),
    ))]
#[tracing::instrument(skip_all)]
async fn record_remittance(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<RemittanceQuery>,
    body: Bytes,
) -> Result<Json<RemittanceView>, ApiError> {
    let request = remittance_request(&headers, query, body)?;
    let response = state
        .settlement
        .clone()
        .record_remittance(user.request(request))
        .await?
        .into_inner();
    Ok(Json(remittance_view(response.result, response.replayed)?))
}

/// Returns a remittance with its unmatched lines (support only).
#[utoipa::path(get, path = "/v1/remittances/{id}", tag = "settlement",
    params(("id" = String, Path, description = "the remittance")),
    responses((status = 200, body = RemittanceView), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all)]
async fn get_remittance(
    State(state): State<AppState>,
    user: User,
    Path(remittance_id): Path<String>,
) -> Result<Json<RemittanceView>, ApiError> {
    let response = state
        .settlement
        .clone()
        .get_remittance(user.request(pb::GetRemittanceRequest { remittance_id }))
        .await?
        .into_inner();
    Ok(Json(remittance_view(response.result, false)?))
}

/// The result of closing a period (R29).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PeriodCloseView {
    /// The organization's id, as HR stores it (e.g. `ORG-01`).
    pub organization_id: String,
    /// The Jalali salary period closed, e.g. `1405-09`.
    pub period: String,
    /// How many instalments became overdue.
    pub overdue_instalments: u32,
    /// Their sum, in rial.
    pub overdue_amount: i64,
    /// When the period was first closed (RFC 3339, UTC).
    pub closed_at: Option<DateTime<Utc>>,
    /// True when the period was closed before: this is the first result.
    pub replayed: bool,
}

/// `?organization_id=&region_code=&page_size=&page_token=` of `GET /v1/overdue`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OverdueQuery {
    /// Only this organization's employees (case does not matter); absent or empty is no
    /// filter.
    #[param(pattern = r"^[A-Za-z0-9_-]{0,64}$")]
    pub organization_id: Option<String>,
    /// A region's code as HR stores it (case does not matter); a finance officer may only
    /// name their own.
    #[param(pattern = r"^[A-Za-z0-9_-]{0,64}$")]
    pub region_code: Option<String>,
    /// Items per page: default 20, at most 100.
    #[param(minimum = 1, maximum = 100)]
    #[serde(default, deserialize_with = "crate::extract::page_size")]
    pub page_size: Option<u32>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// An employee, as the overdue list shows them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OverdueEmployee {
    /// The employee's id in Tavana, as `employee_id` of `GET /v1/me`.
    pub employee_id: String,
    /// The employee's 10-digit national ID.
    pub national_id: String,
    /// The employee's full name, as HR recorded it.
    pub full_name: String,
    /// The employer organization's id, e.g. `ORG-01`.
    pub organization_id: String,
    /// The employee's region code, e.g. `TEH-19`.
    pub region_code: String,
}

/// One overdue instalment (R29).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OverdueItem {
    /// The instalment's id, as in the deduction list.
    pub instalment_id: String,
    /// The purchase it repays.
    pub purchase_id: String,
    /// Whose instalment it is.
    pub employee: OverdueEmployee,
    /// The period it was first due in.
    pub due_period: String,
    /// The later period it is re-aged to, where its deduction list shows it.
    pub period: String,
    /// In rial.
    pub amount: i64,
}

/// A page of overdue instalments.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OverduePage {
    /// The overdue instalments of this page, at most `page_size`.
    pub items: Vec<OverdueItem>,
    /// Pass as `page_token` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// `?organization_id=&period=&status=open|resolved&page_size=&page_token=` of
/// `GET /v1/unmatched-lines`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UnmatchedQuery {
    /// Only lines of this organization's remittances (case does not matter); absent or
    /// empty is no filter.
    #[param(pattern = r"^[A-Za-z0-9_-]{0,64}$")]
    pub organization_id: Option<String>,
    /// The remittance's Jalali period, e.g. `1405-09`.
    #[param(
        pattern = r"^(|([0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2]))$"
    )]
    pub period: Option<String>,
    /// `open` or `resolved`; absent (or empty) lists both.
    #[param(pattern = r"^(|open|resolved)$")]
    pub status: Option<String>,
    /// Items per page: default 20, at most 100.
    #[param(minimum = 1, maximum = 100)]
    #[serde(default, deserialize_with = "crate::extract::page_size")]
    pub page_size: Option<u32>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// A remittance line kept for review (R23).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueuedLineView {
    /// `<remittance_id>:<line>`, the id to resolve it by.
    pub id: String,
    /// The remittance the line came in, as `remittance_id` of `POST /v1/remittances`.
    pub remittance_id: String,
    /// The remitting organization's id, e.g. `ORG-01`.
    pub organization_id: String,
    /// The remittance's period.
    pub period: String,
    /// The line's number in the remittance (see `UnmatchedLineView.line`).
    pub line: u32,
    /// The national ID as the line wrote it (normalized when valid).
    pub national_id: String,
    /// The amount kept, in rial.
    pub amount: i64,
    /// Why it was kept (see `UnmatchedLineView.code`).
    pub code: String,
    /// `open` or `resolved`.
    pub status: String,
    /// `assigned` or `returned` once resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// The employee an `assigned` line was assigned to; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_national_id: Option<String>,
    /// The Jalali period an `assigned` line pays, e.g. `1405-09`; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_period: Option<String>,
    /// Support's note on the resolution; absent while `open`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// What its assignment settled.
    pub settled_instalments: u32,
    /// In rial.
    pub settled_amount: i64,
    /// When support resolved it (RFC 3339, UTC); absent while `open`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
}

/// A page of the unmatched-lines queue.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueuedLinePage {
    /// The kept lines of this page, at most `page_size`, oldest remittance first.
    pub items: Vec<QueuedLineView>,
    /// Pass as `page_token` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// What support decides for a kept line (R23).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ResolveBody {
    /// The employee the line pays; absent means the line's own national ID.
    #[schema(pattern = r"^[0-9]{8,10}$")]
    pub national_id: Option<String>,
    /// The period it pays; absent means the remittance's period.
    #[schema(
        pattern = r"^([0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])$"
    )]
    pub period: Option<String>,
    /// True to mark the money returned to the organization (then neither of the above).
    #[serde(default)]
    pub returned_to_organization: bool,
    /// Why; kept with the line.
    pub note: String,
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

impl From<pb::QueuedUnmatchedLine> for QueuedLineView {
    fn from(line: pb::QueuedUnmatchedLine) -> Self {
        let status = match line.status() {
            pb::UnmatchedLineStatus::Resolved => "resolved",
            _ => "open",
        };
        QueuedLineView {
            status: status.to_owned(),
            id: line.id,
            remittance_id: line.remittance_id,
            organization_id: line.organization_id,
            period: line.period,
            line: line.line,
            national_id: line.national_id,
            amount: line.amount,
            code: line.code,
            resolution: non_empty(line.resolution),
            resolved_national_id: non_empty(line.resolved_national_id),
            resolved_period: non_empty(line.resolved_period),
            note: non_empty(line.note),
            settled_instalments: line.settled_instalments,
            settled_amount: line.settled_amount,
            resolved_at: tavana_proto::datetime(line.resolved_at),
        }
    }
}

/// Closes an organization's salary period (R29, support only): every instalment of it
/// still unsettled becomes overdue, is re-aged to the first later period (not closed, not
/// remitted) where it fits the employee's monthly credit, and blocks the facility until it
/// is settled; the employee and the guarantor are told by SMS. Closing twice answers the
/// first result.
#[utoipa::path(post, path = "/v1/organizations/{id}/periods/{period}/close", tag = "settlement",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_-]{1,64}$", description = "the organization"),
           ("period" = String, Path, pattern = r"^([0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])$", description = "Jalali salary period, e.g. 1405-09")),
    responses(
        (status = 200, body = PeriodCloseView),
        (status = 400, description = "period_invalid"),
        (status = 401),
        (status = 403, description = "not support"),
        (status = 422, description = "period_not_started"),
    ))]
#[tracing::instrument(skip_all)]
async fn close_period(
    State(state): State<AppState>,
    user: User,
    Path((organization_id, period)): Path<(String, String)>,
) -> Result<Json<PeriodCloseView>, ApiError> {
    let organization_id = organization(&organization_id)?;
    let response = state
        .settlement
        .clone()
        .close_period(user.request(pb::ClosePeriodRequest {
            organization_id,
            period,
        }))
        .await?
        .into_inner();
    Ok(Json(PeriodCloseView {
        organization_id: response.organization_id,
        period: response.period,
        overdue_instalments: response.overdue_instalments,
        overdue_amount: response.overdue_amount,
        closed_at: tavana_proto::datetime(response.closed_at),
        replayed: response.replayed,
    }))
}

/// Lists overdue instalments with their employee, first due period and re-aged period
/// (R29): support sees all, a region's finance office its own region.
#[utoipa::path(get, path = "/v1/overdue", tag = "settlement",
    params(OverdueQuery),
    responses(
        (status = 200, body = OverduePage),
        (status = 400, description = "page_token_invalid"),
        (status = 401),
        (status = 403, description = "neither support nor region_finance, or another region"),
    ))]
#[tracing::instrument(skip_all)]
async fn list_overdue(
    State(state): State<AppState>,
    user: User,
    ApiQuery(query): ApiQuery<OverdueQuery>,
) -> Result<Json<OverduePage>, ApiError> {
    let response = state
        .settlement
        .clone()
        .list_overdue(user.request(pb::ListOverdueRequest {
            organization_id: optional_organization(query.organization_id.as_deref())?,
            region_code: optional_region(query.region_code.as_deref())?,
            page_size: query.page_size.unwrap_or(0).min(100),
            page_token: query.page_token.unwrap_or_default(),
        }))
        .await?
        .into_inner();
    Ok(Json(OverduePage {
        items: response
            .items
            .into_iter()
            .map(|item| OverdueItem {
                instalment_id: item.instalment_id,
                purchase_id: item.purchase_id,
                employee: OverdueEmployee {
                    employee_id: item.employee_id,
                    national_id: item.national_id,
                    full_name: item.full_name,
                    organization_id: item.organization_id,
                    region_code: item.region_code,
                },
                due_period: item.due_period,
                period: item.period,
                amount: item.amount,
            })
            .collect(),
        next_page_token: next_token(response.next_page_token),
    }))
}

/// Lists remittance lines kept for review (R23, support only), oldest remittance first.
#[utoipa::path(get, path = "/v1/unmatched-lines", tag = "settlement",
    params(UnmatchedQuery),
    responses(
        (status = 200, body = QueuedLinePage),
        (status = 400, description = "status_invalid, period_invalid, page_token_invalid"),
        (status = 401),
        (status = 403, description = "not support"),
    ))]
#[tracing::instrument(skip_all)]
async fn list_unmatched_lines(
    State(state): State<AppState>,
    user: User,
    ApiQuery(query): ApiQuery<UnmatchedQuery>,
) -> Result<Json<QueuedLinePage>, ApiError> {
    let status = match query.status.as_deref().map(str::trim) {
        None | Some("") => pb::UnmatchedLineStatus::Unspecified,
        Some("open") => pb::UnmatchedLineStatus::Open,
        Some("resolved") => pb::UnmatchedLineStatus::Resolved,
        Some(_) => {
            return Err(ApiError::bad_request(
                "status_invalid",
                "The status must be open or resolved.",
                "وضعیت باید open یا resolved باشد.",
            ));
        }
    };
    let response = state
        .settlement
        .clone()
        .list_unmatched_lines(user.request(pb::ListUnmatchedLinesRequest {
            organization_id: optional_organization(query.organization_id.as_deref())?,
            period: query.period.unwrap_or_default(),
            status: status as i32,
            page_size: query.page_size.unwrap_or(0).min(100),
            page_token: query.page_token.unwrap_or_default(),
        }))
        .await?
        .into_inner();
    Ok(Json(QueuedLinePage {
        items: response.items.into_iter().map(Into::into).collect(),
        next_page_token: next_token(response.next_page_token),
    }))
}

/// Resolves a kept line (R23, support only): assigned to an employee and period, where it
/// settles what it pays by the remittance's own rule (exactly what that period's list asks
/// of the employee), or returned to the organization. A line is resolved once.
#[utoipa::path(post, path = "/v1/unmatched-lines/{id}/resolve", tag = "settlement",
    params(("id" = String, Path, description = "the line, `<remittance_id>:<line>`")),
    request_body = ResolveBody,
    responses(
        (status = 200, body = QueuedLineView),
        (status = 400, description = "national_id_invalid, period_invalid, resolution_ambiguous"),
        (status = 401),
        (status = 403, description = "not support"),
        (status = 404, description = "unmatched_line_not_found"),
        (status = 409, description = "unmatched_line_resolved"),
        (status = 422, description = "amount_short, amount_over, nothing_due, unknown_employee: the line does not pay that period's deduction"),
    ))]
#[tracing::instrument(skip_all)]
async fn resolve_unmatched_line(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ResolveBody>,
) -> Result<Json<QueuedLineView>, ApiError> {
    let response = state
        .settlement
        .clone()
        .resolve_unmatched_line(user.request(pb::ResolveUnmatchedLineRequest {
            id,
            national_id: body.national_id.unwrap_or_default(),
            period: body.period.unwrap_or_default(),
            returned_to_organization: body.returned_to_organization,
            note: body.note,
        }))
        .await?
        .into_inner();
    let line = response
        .line
        .ok_or_else(|| ApiError::internal("settlement answered without a line"))?;
    Ok(Json(line.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r22_csv_cells_a_spreadsheet_would_run_are_escaped() {
        let row = |name: &str| pb::DeductionRow {
            national_id: "0012345679".into(),
            full_name: name.into(),
            total: 1,
            instalments: vec![],
        };
        let rows: Vec<pb::DeductionRow> = [
            "=HYPERLINK(\"http://x\")",
            "+1",
            "-1",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "علی رضایی",
        ]
        .into_iter()
        .map(row)
        .collect();

        let csv = String::from_utf8(deduction_csv(&rows).to_vec()).unwrap();
        let names: Vec<String> =
            csv::Reader::from_reader(format!("national_id,full_name,total,ids\n{csv}").as_bytes())
                .records()
                .map(|record| record.unwrap()[1].to_owned())
                .collect();

        assert_eq!(
            names,
            [
                "'=HYPERLINK(\"http://x\")",
                "'+1",
                "'-1",
                "'@SUM(A1)",
                "'\tx",
                "'\rx",
                "علی رضایی"
            ]
        );
    }

    #[test]
    fn a_csv_remittance_needs_a_header_naming_both_columns() {
        for good in [
            "national_id,amount\n",
            "\u{FEFF}Amount , NATIONAL_ID,note\n0012345679,40\n",
        ] {
            assert!(
                check_remittance_csv_header(good.as_bytes()).is_ok(),
                "{good:?}"
            );
        }
        for bad in [
            "",
            "0012345679,40\n",
            "national_id\n0012345679\n",
            "amount,id\n",
        ] {
            let refused = check_remittance_csv_header(bad.as_bytes()).unwrap_err();
            assert_eq!(refused.0.code, "csv_header_invalid", "{bad:?}");
        }
    }

    fn deduction_row(national_id: &str, instalments: &[(&str, i64)]) -> pb::DeductionRow {
        pb::DeductionRow {
            national_id: national_id.into(),
            full_name: format!("Employee, {national_id}"),
            total: instalments.iter().map(|(_, amount)| amount).sum(),
            instalments: instalments
                .iter()
                .map(|(id, amount)| pb::DeductionInstalment {
                    instalment_id: (*id).into(),
                    purchase_id: format!("P-{id}"),
                    amount: *amount,
                    due_period: "1405-09".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn r22_batches_of_rows_join_into_one_json_list_and_csv_lines() {
        let batches = [
            vec![
                deduction_row("0012345679", &[("I1", 40), ("I2", 60)]),
                deduction_row("0499370899", &[("I3", 50)]),
            ],
            vec![deduction_row("1111111111", &[("I4", 7)])],
        ];

        let mut first = true;
        let mut json = b"{\"items\":[".to_vec();
        for batch in &batches {
            json.extend_from_slice(&deduction_json(batch, &mut first));
        }
        json.extend_from_slice(b"]}");
        let csv: Vec<u8> = batches.iter().flat_map(|b| deduction_csv(b)).collect();

        let parsed: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let items = parsed["items"].as_array().unwrap();
        let ids: Vec<&str> = items
            .iter()
            .map(|item| item["national_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["0012345679", "0499370899", "1111111111"]);
        assert_eq!(items[0]["total"], 100);
        assert_eq!(items[0]["instalments"][1]["purchase_id"], "P-I2");
        assert_eq!(
            String::from_utf8(csv).unwrap(),
            "0012345679,\"Employee, 0012345679\",100,I1;I2\n\
             0499370899,\"Employee, 0499370899\",50,I3\n\
             1111111111,\"Employee, 1111111111\",7,I4\n"
        );
    }
}
