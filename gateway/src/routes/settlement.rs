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
use tavana_proto::settlement::v1 as pb;
use tavana_proto::settlement::v1::stream_deduction_list_response::Item;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::User;
use crate::error::ApiError;
use crate::extract::{ApiQuery, next_token};

/// Returns the routes of the settlement service.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_my_instalments))
        .routes(routes!(get_deduction_list))
        .routes(routes!(record_remittance))
        .routes(routes!(get_remittance))
}

/// `?state=&page_size=&page_token=` of `GET /v1/me/instalments`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InstalmentQuery {
    /// `settled`, `unsettled` or `finished` (instalments of fully settled purchases);
    /// absent lists every instalment that is or was due.
    pub state: Option<String>,
    /// Items per page: default 20, at most 100.
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<u32>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// One of the employee's instalments (R24).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InstalmentItem {
    pub id: String,
    pub purchase_id: String,
    pub merchant_name: String,
    /// Position in the purchase's schedule, from 1.
    pub seq: u32,
    /// The Jalali salary period it is deducted from, e.g. `1405-09`.
    pub period: String,
    /// In rial.
    pub amount: i64,
    /// `unsettled`, `settled` or `cancelled`.
    pub state: String,
    /// When a recorded remittance settled it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<DateTime<Utc>>,
}

/// A page of instalments.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InstalmentPage {
    pub items: Vec<InstalmentItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// One line of a remittance.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RemittanceLineBody {
    /// The employee's national ID.
    pub national_id: String,
    /// The amount deducted and remitted, in rial.
    pub amount: i64,
}

/// A remittance as JSON.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RemittanceBody {
    pub organization_id: String,
    /// The Jalali salary period, e.g. `1405-09`.
    pub period: String,
    /// The bank's reference of the transfer; recorded once per organization.
    pub bank_reference: String,
    pub lines: Vec<RemittanceLineBody>,
}

/// `?organization_id=&period=&bank_reference=` of a CSV remittance upload.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemittanceQuery {
    /// Required with `Content-Type: text/csv`.
    pub organization_id: Option<String>,
    /// Required with `Content-Type: text/csv`.
    pub period: Option<String>,
    /// Required with `Content-Type: text/csv`.
    pub bank_reference: Option<String>,
}

/// A line kept for support to review.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UnmatchedLineView {
    /// For JSON, the line's 1-based position in `lines`; for CSV, its line in the file
    /// (the header is line 1).
    pub line: u32,
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
    pub remittance_id: String,
    pub organization_id: String,
    pub period: String,
    pub bank_reference: String,
    pub settled_instalments: u32,
    /// In rial.
    pub settled_amount: i64,
    pub unmatched: Vec<UnmatchedLineView>,
    pub recorded_at: Option<DateTime<Utc>>,
    /// True when this bank reference was recorded before: this is the first result and
    /// nothing was settled now.
    pub replayed: bool,
}

fn time(timestamp: Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    let timestamp = timestamp?;
    DateTime::from_timestamp(
        timestamp.seconds,
        u32::try_from(timestamp.nanos).unwrap_or(0),
    )
}

fn state_filter(state: Option<&str>) -> Result<pb::InstalmentState, ApiError> {
    match state.map(str::trim) {
        None | Some("") => Ok(pb::InstalmentState::Unspecified),
        Some("unsettled") => Ok(pb::InstalmentState::Unsettled),
        Some("settled") => Ok(pb::InstalmentState::Settled),
        Some("finished") => Ok(pb::InstalmentState::Finished),
        Some(_) => Err(ApiError::bad_request(
            "state_invalid",
            "The state must be settled, unsettled or finished.",
            "وضعیت باید settled، unsettled یا finished باشد.",
        )),
    }
}

fn state_name(state: pb::InstalmentState) -> &'static str {
    match state {
        pb::InstalmentState::Unsettled => "unsettled",
        pb::InstalmentState::Settled => "settled",
        pb::InstalmentState::Finished => "finished",
        pb::InstalmentState::Cancelled => "cancelled",
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
            period: instalment.period,
            amount: instalment.amount,
            settled_at: time(instalment.settled_at),
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
        recorded_at: time(result.recorded_at),
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
            row.national_id.as_str(),
            row.full_name.as_str(),
            &row.total.to_string(),
            &ids.join(";"),
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

/// Streams an organization's deduction list for a salary period (R22), one row per employee
/// in national ID order with the instalments behind the row.
///
/// JSON: `{organization_id, period, items: [{national_id, full_name, total, instalments:
/// [{id, purchase_id, amount}]}], total, employees, instalments}`. With `Accept: text/csv`:
/// columns `national_id,full_name,total,instalment_ids` (ids joined by `;`), one line per
/// employee, and a last line `total,,<organization total>,<instalment count>`.
#[utoipa::path(get, path = "/v1/organizations/{id}/deductions/{period}", tag = "settlement",
    params(("id" = String, Path, description = "the organization"),
           ("period" = String, Path, description = "Jalali salary period, e.g. 1405-09")),
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

/// Finds the physical line of a record: the reader reports the offset where it started
/// looking, before any blank lines it skipped.
#[derive(Default)]
struct LineCounter {
    offset: usize,
    line: u32,
}

impl LineCounter {
    fn line_at(&mut self, body: &[u8], byte: u64) -> u32 {
        let mut start = usize::try_from(byte).unwrap_or(usize::MAX).min(body.len());
        while start < body.len() && matches!(body[start], b'\r' | b'\n') {
            start += 1;
        }
        if start >= self.offset {
            let newlines = body[self.offset..start]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            self.line += u32::try_from(newlines).unwrap_or(u32::MAX);
            self.offset = start;
        }
        self.line + 1
    }
}

/// Reads a remittance CSV with a header naming `national_id` and `amount` (in any order).
///
/// Every data line becomes a line of the request with its line number in the file; a line
/// that cannot be read is sent with a code (`line_malformed`, `amount_invalid`) so that the
/// service keeps it as unmatched: nothing is dropped.
pub fn parse_remittance_csv(body: &[u8]) -> Result<Vec<pb::RemittanceLine>, ApiError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let bad_header = || {
        ApiError::bad_request(
            "csv_header_invalid",
            "The CSV must start with a header line naming national_id and amount.",
            "سطر نخست CSV باید ستون‌های national_id و amount را نام ببرد.",
        )
    };
    let header = reader.headers().map_err(|_| bad_header())?.clone();
    let column = |name: &str| {
        header
            .iter()
            .position(|field| field.trim().eq_ignore_ascii_case(name))
    };
    let (Some(id_column), Some(amount_column)) = (column("national_id"), column("amount")) else {
        return Err(bad_header());
    };
    let mut lines = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut counter = LineCounter::default();
    loop {
        let read = reader.read_record(&mut record);
        let line_number = record
            .position()
            .map_or(0, |p| counter.line_at(body, p.byte()));
        match read {
            Ok(false) => break,
            Ok(true) => {}
            Err(error) => {
                let line = error
                    .position()
                    .map_or(line_number, |p| u32::try_from(p.line()).unwrap_or(0));
                lines.push(pb::RemittanceLine {
                    line,
                    malformed_code: "line_malformed".into(),
                    ..Default::default()
                });
                continue;
            }
        }
        if record.iter().all(str::is_empty) {
            continue;
        }
        let national_id = record.get(id_column).unwrap_or_default().to_owned();
        let amount = record.get(id_column).and(record.get(amount_column));
        let line = match amount {
            None => pb::RemittanceLine {
                national_id,
                amount: 0,
                line: line_number,
                malformed_code: "line_malformed".into(),
            },
            Some(text) => match text.replace(['_', ','], "").parse::<i64>() {
                Ok(amount) => pb::RemittanceLine {
                    national_id,
                    amount,
                    line: line_number,
                    malformed_code: String::new(),
                },
                Err(_) => pb::RemittanceLine {
                    national_id,
                    amount: 0,
                    line: line_number,
                    malformed_code: "amount_invalid".into(),
                },
            },
        };
        lines.push(line);
    }
    Ok(lines)
}

fn remittance_request(
    headers: &HeaderMap,
    query: RemittanceQuery,
    body: &[u8],
) -> Result<pb::RecordRemittanceRequest, ApiError> {
    if is_csv(headers) {
        return Ok(pb::RecordRemittanceRequest {
            organization_id: query
                .organization_id
                .ok_or_else(|| missing("organization_id"))?,
            period: query.period.ok_or_else(|| missing("period"))?,
            bank_reference: query
                .bank_reference
                .ok_or_else(|| missing("bank_reference"))?,
            lines: parse_remittance_csv(body)?,
        });
    }
    let body: RemittanceBody = serde_json::from_slice(body).map_err(|error| {
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
    let request = remittance_request(&headers, query, &body)?;
    drop(body);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_keep_their_file_line_numbers_and_malformed_lines_are_kept() {
        let body = "\u{FEFF}amount,national_id\n40,0012345679\n\nabc,0012345679\n12\n50,0499370899,extra\n";

        let lines = parse_remittance_csv(body.as_bytes()).unwrap();

        let summary: Vec<(u32, &str, i64, &str)> = lines
            .iter()
            .map(|l| {
                (
                    l.line,
                    l.national_id.as_str(),
                    l.amount,
                    l.malformed_code.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (2, "0012345679", 40, ""),
                (4, "0012345679", 0, "amount_invalid"),
                (5, "", 0, "line_malformed"),
                (6, "0499370899", 50, ""),
            ]
        );
    }

    #[test]
    fn a_csv_without_the_header_is_refused() {
        assert!(parse_remittance_csv(b"0012345679,40\n").is_err());
    }

    #[test]
    fn a_100_000_line_csv_parses_every_line() {
        let mut body = String::from("national_id,amount\n");
        for n in 0..100_000 {
            body.push_str(&format!("{:010},{}\n", n, n + 1));
        }
        let lines = parse_remittance_csv(body.as_bytes()).unwrap();
        assert_eq!(lines.len(), 100_000);
        assert_eq!(lines[99_999].line, 100_001);
        let total: i64 = lines.iter().map(|l| l.amount).sum();
        assert_eq!(total, (1..=100_000i64).sum::<i64>());
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
