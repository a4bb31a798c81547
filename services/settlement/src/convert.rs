//! Conversions between the protobuf messages and the service's own types: requests are
//! read into domain types (every violation listed), answers written back.

use tavana_kit::error::{Violation, codes};
use tavana_kit::ids::{NationalId, OrganizationId};
use tavana_kit::jalali::JalaliPeriod;
use tavana_kit::money::Rial;
use tavana_proto::settlement::v1 as pb;
use tavana_proto::timestamp;

use crate::domain::deduction::{DeductionRow, DeductionTotals};
use crate::domain::instalment::{
    InstalmentState, RawScheduledInstalment, ScheduledInstalment, StateFilter, parse_schedule,
};
use crate::domain::reconcile::Report;
use crate::domain::remittance::{CheckedLines, RawLine, check_line};
use crate::domain::remittance_csv::parse_remittance_csv;
use crate::error::SettlementError;
use crate::service::{CancelInstalments, DeductionEvent, NewRemittanceInput};
use crate::store::{
    InstalmentView, NewSchedule, OverdueView, PeriodCloseRecord, QueueStatus, QueuedLine,
    RemittanceRecord, Resolution, region_key,
};

/// The longest bank reference accepted.
const MAX_BANK_REFERENCE: usize = 128;

pub(crate) fn required(field: &str, value: &str) -> Result<(), SettlementError> {
    if value.trim().is_empty() {
        return Err(SettlementError::invalid(
            field,
            codes::REQUIRED,
            format!("{field} is required."),
            "این فیلد الزامی است.",
        ));
    }
    Ok(())
}

/// An organization id as HR stores it (`org-01` is ORG-01).
pub(crate) fn parse_organization(field: &str, text: &str) -> Result<String, SettlementError> {
    required(field, text)?;
    OrganizationId::parse(text)
        .map(OrganizationId::into_string)
        .map_err(|error| {
            SettlementError::invalid(field, error.code(), error.to_string(), error.message_fa())
        })
}

pub(crate) fn parse_period(field: &str, text: &str) -> Result<JalaliPeriod, SettlementError> {
    JalaliPeriod::parse(text).map_err(|_| {
        SettlementError::invalid(
            field,
            "period_invalid",
            "The period must be a Jalali month written YYYY-MM.",
            "دوره باید ماه شمسی به صورت YYYY-MM باشد.",
        )
    })
}

pub(crate) fn raw_schedule(items: &[pb::ScheduledInstalment]) -> Vec<RawScheduledInstalment> {
    items
        .iter()
        .map(|item| RawScheduledInstalment {
            seq: item.seq,
            period: item.period.clone(),
            amount: item.amount,
        })
        .collect()
}

pub(crate) fn schedule(
    field: &str,
    items: &[pb::ScheduledInstalment],
    allow_empty: bool,
) -> Result<Vec<ScheduledInstalment>, SettlementError> {
    parse_schedule(field, &raw_schedule(items), allow_empty).map_err(SettlementError::Invalid)
}

impl TryFrom<pb::RecordScheduleRequest> for NewSchedule {
    type Error = SettlementError;

    fn try_from(request: pb::RecordScheduleRequest) -> Result<Self, Self::Error> {
        let mut violations: Vec<Violation> = Vec::new();
        for (field, value) in [
            ("purchase_id", &request.purchase_id),
            ("employee_id", &request.employee_id),
            ("organization_id", &request.organization_id),
        ] {
            if let Err(SettlementError::Invalid(v)) = required(field, value) {
                violations.extend(v);
            }
        }
        let national_id = NationalId::parse(&request.national_id);
        if national_id.is_err() {
            violations.push(Violation::new(
                "national_id",
                "national_id_invalid",
                "The national ID is invalid.",
                "کد ملی معتبر نیست.",
            ));
        }
        let instalments = match schedule("instalments", &request.instalments, false) {
            Ok(instalments) => instalments,
            Err(SettlementError::Invalid(v)) => {
                violations.extend(v);
                Vec::new()
            }
            Err(other) => return Err(other),
        };
        let (Ok(national_id), true) = (national_id, violations.is_empty()) else {
            return Err(SettlementError::Invalid(violations));
        };
        Ok(NewSchedule {
            purchase_id: request.purchase_id,
            employee_id: request.employee_id,
            national_id,
            full_name: request.full_name,
            organization_id: request.organization_id,
            merchant_id: request.merchant_id,
            merchant_name: request.merchant_name,
            instalments,
            version: request.version.max(1),
            monthly_credit: Rial(request.monthly_credit.max(0)),
            guarantor_employee_id: request.guarantor_employee_id,
            region_code: region_key(&request.region_code),
        })
    }
}

pub(crate) fn state_filter(value: i32) -> Result<StateFilter, SettlementError> {
    match pb::InstalmentState::try_from(value) {
        Ok(pb::InstalmentState::Unspecified) => Ok(StateFilter::All),
        Ok(pb::InstalmentState::Unsettled) => Ok(StateFilter::Unsettled),
        Ok(pb::InstalmentState::Settled) => Ok(StateFilter::Settled),
        Ok(pb::InstalmentState::Finished) => Ok(StateFilter::Finished),
        Ok(pb::InstalmentState::Cancelled) => Ok(StateFilter::Cancelled),
        Ok(pb::InstalmentState::Overdue) => Ok(StateFilter::Overdue),
        Err(_) => Err(SettlementError::invalid(
            "state",
            "state_invalid",
            "The state must be settled, unsettled or finished.",
            "وضعیت باید تسویه‌شده، تسویه‌نشده یا پایان‌یافته باشد.",
        )),
    }
}

pub(crate) fn instalment_message(view: InstalmentView) -> pb::Instalment {
    let state = match view.state {
        InstalmentState::Unsettled => pb::InstalmentState::Unsettled,
        InstalmentState::Settled => pb::InstalmentState::Settled,
        InstalmentState::Cancelled => pb::InstalmentState::Cancelled,
        InstalmentState::Overdue => pb::InstalmentState::Overdue,
    };
    pb::Instalment {
        instalment_id: view.id,
        purchase_id: view.purchase_id,
        merchant_name: view.merchant_name,
        seq: view.seq,
        period: view.period,
        amount: view.amount.as_i64(),
        state: state as i32,
        settled_at: view.settled_at.map(timestamp),
        due_period: view.due_period,
    }
}

pub(crate) fn remittance_message(record: RemittanceRecord) -> pb::RemittanceResult {
    pb::RemittanceResult {
        remittance_id: record.id,
        organization_id: record.organization_id,
        period: record.period,
        bank_reference: record.bank_reference,
        // Saturating is documented: a remittance settles at most one instalment per line,
        // and its lines are numbered in u32, so the count fits; were it ever larger, the
        // largest count is the honest answer in this u32 field.
        settled_instalments: u32::try_from(record.settled_instalments).unwrap_or(u32::MAX),
        settled_amount: record.settled_amount.as_i64(),
        unmatched: record
            .unmatched
            .into_iter()
            .map(|line| pb::UnmatchedLine {
                line: line.line,
                national_id: line.national_id,
                amount: line.amount.as_i64(),
                code: line.code,
            })
            .collect(),
        recorded_at: Some(timestamp(record.recorded_at)),
    }
}

pub(crate) fn row_to_proto(row: DeductionRow) -> pb::DeductionRow {
    pb::DeductionRow {
        national_id: row.national_id,
        full_name: row.full_name,
        total: row.total.as_i64(),
        instalments: row
            .instalments
            .into_iter()
            .map(|i| pb::DeductionInstalment {
                instalment_id: i.instalment_id,
                purchase_id: i.purchase_id,
                amount: i.amount.as_i64(),
                due_period: i.due_period,
            })
            .collect(),
    }
}

pub(crate) fn rows_message(rows: Vec<pb::DeductionRow>) -> pb::StreamDeductionListResponse {
    pb::StreamDeductionListResponse {
        item: Some(pb::stream_deduction_list_response::Item::Rows(
            pb::DeductionRows { rows },
        )),
    }
}

pub(crate) fn totals_message(totals: DeductionTotals) -> pb::StreamDeductionListResponse {
    pb::StreamDeductionListResponse {
        item: Some(pb::stream_deduction_list_response::Item::Totals(
            pb::DeductionTotals {
                employees: totals.employees,
                instalments: totals.instalments,
                total: totals.total.as_i64(),
            },
        )),
    }
}

pub(crate) fn close_message(record: PeriodCloseRecord, replayed: bool) -> pb::ClosePeriodResponse {
    pb::ClosePeriodResponse {
        organization_id: record.organization_id,
        period: record.period,
        // Saturating is documented: the proto field is u32 and no organization holds four
        // billion instalments in one period; were it ever larger, the largest count is
        // the honest answer.
        overdue_instalments: u32::try_from(record.overdue_instalments).unwrap_or(u32::MAX),
        overdue_amount: record.overdue_amount.as_i64(),
        closed_at: Some(timestamp(record.closed_at)),
        replayed,
    }
}

pub(crate) fn overdue_message(view: OverdueView) -> pb::OverdueInstalment {
    pb::OverdueInstalment {
        instalment_id: view.id,
        purchase_id: view.purchase_id,
        employee_id: view.employee_id,
        national_id: view.national_id,
        full_name: view.full_name,
        organization_id: view.organization_id,
        region_code: view.region_code,
        due_period: view.due_period,
        period: view.period,
        amount: view.amount.as_i64(),
    }
}

pub(crate) fn queued_message(line: QueuedLine) -> pb::QueuedUnmatchedLine {
    let status = if line.status == QueueStatus::Open.as_str() {
        pb::UnmatchedLineStatus::Open
    } else {
        pb::UnmatchedLineStatus::Resolved
    };
    pb::QueuedUnmatchedLine {
        id: line.id.to_string(),
        remittance_id: line.id.remittance_id,
        organization_id: line.organization_id,
        period: line.period,
        line: line.id.line,
        national_id: line.national_id,
        amount: line.amount.as_i64(),
        code: line.code,
        status: status as i32,
        resolution: line.resolution.unwrap_or_default(),
        resolved_national_id: line.resolved_national_id.unwrap_or_default(),
        resolved_period: line.resolved_period.unwrap_or_default(),
        note: line.note.unwrap_or_default(),
        // Saturating is documented: one line settles one employee's instalments of one
        // period, a handful; were it ever larger, the largest count is the honest answer.
        settled_instalments: u32::try_from(line.settled_instalments).unwrap_or(u32::MAX),
        settled_amount: line.settled_amount.as_i64(),
        resolved_at: line.resolved_at.map(timestamp),
    }
}

/// Reads an optional filter: empty means absent.
pub(crate) fn optional(value: String) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// Reads a resolution of an unmatched line (R23).
pub(crate) fn resolution(
    request: &pb::ResolveUnmatchedLineRequest,
) -> Result<Resolution, SettlementError> {
    if request.returned_to_organization {
        if !request.national_id.trim().is_empty() || !request.period.trim().is_empty() {
            return Err(SettlementError::invalid(
                "returned_to_organization",
                "resolution_ambiguous",
                "A returned line is not assigned to an employee or period.",
                "سطر برگشتی به کارمند یا دوره‌ای نسبت داده نمی‌شود.",
            ));
        }
        return Ok(Resolution::Returned);
    }
    let national_id = match optional(request.national_id.clone()) {
        None => None,
        Some(text) => Some(NationalId::parse(&text).map_err(|_| {
            SettlementError::invalid(
                "national_id",
                "national_id_invalid",
                "The national ID is invalid.",
                "کد ملی معتبر نیست.",
            )
        })?),
    };
    let period = match optional(request.period.clone()) {
        None => None,
        Some(text) => Some(parse_period("period", &text)?),
    };
    Ok(Resolution::Assigned {
        national_id,
        period,
    })
}

/// Checks every line of a remittance; line numbers default to positions and must be distinct.
pub(crate) fn checked_lines(
    lines: Vec<pb::RemittanceLine>,
) -> Result<CheckedLines, SettlementError> {
    let mut seen = std::collections::HashSet::with_capacity(lines.len());
    let mut checked = CheckedLines::with_capacity(lines.len());
    for (index, line) in lines.into_iter().enumerate() {
        let number = if line.line == 0 {
            // Cannot saturate: a request is at most MAX_MESSAGE_SIZE (256 MiB) and a line
            // takes at least two bytes, so there are fewer than u32::MAX lines.
            u32::try_from(index + 1).unwrap_or(u32::MAX)
        } else {
            line.line
        };
        if !seen.insert(number) {
            return Err(SettlementError::invalid(
                format!("lines[{index}].line"),
                "line_duplicate",
                "Two lines have the same line number.",
                "دو سطر شمارهٔ یکسان دارند.",
            ));
        }
        checked.push(check_line(&RawLine {
            line: number,
            national_id: line.national_id,
            amount: line.amount,
            malformed_code: line.malformed_code,
        }));
    }
    Ok(checked)
}

impl TryFrom<pb::CancelInstalmentsRequest> for CancelInstalments {
    type Error = SettlementError;

    fn try_from(request: pb::CancelInstalmentsRequest) -> Result<Self, Self::Error> {
        required("purchase_id", &request.purchase_id)?;
        required("refund_id", &request.refund_id)?;
        let remaining = schedule("remaining", &request.remaining, true)?;
        Ok(CancelInstalments {
            purchase_id: request.purchase_id,
            refund_id: request.refund_id,
            version: request.version,
            remaining,
        })
    }
}

/// Checks a remittance's lines, given as lines or as the bank's CSV file (one of them).
fn remittance_lines(
    lines: Vec<pb::RemittanceLine>,
    csv: &[u8],
) -> Result<CheckedLines, SettlementError> {
    if csv.is_empty() {
        return checked_lines(lines);
    }
    if !lines.is_empty() {
        return Err(SettlementError::invalid(
            "csv",
            "csv_with_lines",
            "Send the lines or the CSV file, not both.",
            "سطرها یا فایل CSV را بفرستید، نه هر دو را.",
        ));
    }
    parse_remittance_csv(csv).map_err(|violation| SettlementError::Invalid(vec![violation]))
}

impl TryFrom<pb::RecordRemittanceRequest> for NewRemittanceInput {
    type Error = SettlementError;

    fn try_from(request: pb::RecordRemittanceRequest) -> Result<Self, Self::Error> {
        let organization_id = parse_organization("organization_id", &request.organization_id)?;
        required("bank_reference", &request.bank_reference)?;
        if request.bank_reference.chars().count() > MAX_BANK_REFERENCE {
            return Err(SettlementError::invalid(
                "bank_reference",
                "bank_reference_too_long",
                "The bank reference is too long.",
                "شمارهٔ پیگیری بانک بیش از حد طولانی است.",
            ));
        }
        let period = parse_period("period", &request.period)?;
        Ok(NewRemittanceInput {
            organization_id,
            period,
            bank_reference: request.bank_reference.trim().to_owned(),
            lines: remittance_lines(request.lines, &request.csv)?,
        })
    }
}

/// Reads the status filter of the unmatched queue (R23); unspecified means any.
pub(crate) fn queue_status(value: i32) -> Result<Option<QueueStatus>, SettlementError> {
    match pb::UnmatchedLineStatus::try_from(value) {
        Ok(pb::UnmatchedLineStatus::Unspecified) => Ok(None),
        Ok(pb::UnmatchedLineStatus::Open) => Ok(Some(QueueStatus::Open)),
        Ok(pb::UnmatchedLineStatus::Resolved) => Ok(Some(QueueStatus::Resolved)),
        Err(_) => Err(SettlementError::invalid(
            "status",
            "status_invalid",
            "The status must be open or resolved.",
            "وضعیت باید open یا resolved باشد.",
        )),
    }
}

/// Reads an optional period filter: empty means any.
pub(crate) fn optional_period(
    field: &str,
    text: String,
) -> Result<Option<JalaliPeriod>, SettlementError> {
    optional(text)
        .map(|text| parse_period(field, &text))
        .transpose()
}

/// Writes R31's reconciliation report.
pub(crate) fn reconcile_message(report: Report) -> pb::ReconcileResponse {
    pb::ReconcileResponse {
        checked_purchases: report.checked_purchases,
        mismatches: report
            .mismatches
            .into_iter()
            .map(|mismatch| pb::ReconcileMismatch {
                purchase_id: mismatch.purchase_id,
                national_id: mismatch.national_id,
                credit_amount: mismatch.credit_amount.as_i64(),
                settlement_amount: mismatch.settlement_amount.as_i64(),
                detail: mismatch.detail,
            })
            .collect(),
    }
}

/// Writes one event of a deduction list as a stream message (R22).
pub(crate) fn deduction_message(
    event: DeductionEvent,
) -> Result<pb::StreamDeductionListResponse, tonic::Status> {
    match event {
        DeductionEvent::Rows(rows) => {
            Ok(rows_message(rows.into_iter().map(row_to_proto).collect()))
        }
        DeductionEvent::Totals(totals) => Ok(totals_message(totals)),
        DeductionEvent::Failed(error) => Err(error.into()),
    }
}
