//! The tonic handlers: read the caller, convert the request into domain types, call the
//! store, convert back.

use std::pin::Pin;

use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use tavana_kit::caller::{Caller, Role, caller};
use tavana_kit::clock::SharedClock;
use tavana_kit::error::Violation;
use tavana_kit::ids::NationalId;
use tavana_kit::jalali::JalaliPeriod;
use tavana_kit::outbox::OutboxHandle;
use tavana_kit::paging;
use tavana_proto::settlement::v1 as pb;
use tavana_proto::settlement::v1::settlement_service_server::SettlementService;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::domain::deduction::{self, DeductionRow, DeductionTotals};
use crate::domain::instalment::{
    InstalmentState, RawScheduledInstalment, ScheduledInstalment, StateFilter, parse_schedule,
};
use crate::domain::remittance::{CheckedLine, PartialSettlement, RawLine, check_line};
use crate::error::SettlementError;
use crate::store::{InstalmentView, NewRemittance, NewSchedule, RemittanceRecord, Store};

/// How many instalments one deduction-list query reads (R22), in whole employees: the list is
/// never held whole.
pub const DEDUCTION_BATCH_ROWS: u64 = 5_000;
/// How many rows one stream message carries at most: a message per employee cost more in
/// framing and wake-ups than the rows themselves.
pub const DEDUCTION_MESSAGE_ROWS: usize = 1_000;
/// How many batches wait in the stream's buffer before the reader slows down.
const STREAM_BUFFER_BATCHES: usize = 2;
/// The longest bank reference accepted.
const MAX_BANK_REFERENCE: usize = 128;

/// The settlement gRPC service.
#[derive(Clone)]
pub struct SettlementRpc {
    store: Store,
    clock: SharedClock,
    outbox: OutboxHandle,
    partial: PartialSettlement,
}

impl SettlementRpc {
    /// Creates the service.
    pub fn new(
        store: Store,
        clock: SharedClock,
        outbox: OutboxHandle,
        partial: PartialSettlement,
    ) -> Self {
        SettlementRpc {
            store,
            clock,
            outbox,
            partial,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

fn require_service(caller: &Caller) -> Result<(), SettlementError> {
    match caller {
        Caller::Service { .. } => Ok(()),
        Caller::Anonymous => Err(SettlementError::Unauthenticated),
        _ => Err(SettlementError::PermissionDenied),
    }
}

fn require_any_role(caller: &Caller, roles: &[Role]) -> Result<(), SettlementError> {
    match caller {
        Caller::Anonymous => Err(SettlementError::Unauthenticated),
        _ if roles.iter().any(|role| caller.has_role(*role)) => Ok(()),
        _ => Err(SettlementError::PermissionDenied),
    }
}

fn required(field: &str, value: &str) -> Result<(), SettlementError> {
    if value.trim().is_empty() {
        return Err(SettlementError::invalid(
            field,
            "required",
            format!("{field} is required."),
            "این فیلد الزامی است.",
        ));
    }
    Ok(())
}

fn parse_period(field: &str, text: &str) -> Result<JalaliPeriod, SettlementError> {
    JalaliPeriod::parse(text).map_err(|_| {
        SettlementError::invalid(
            field,
            "period_invalid",
            "The period must be a Jalali month written YYYY-MM.",
            "دوره باید ماه شمسی به صورت YYYY-MM باشد.",
        )
    })
}

fn raw_schedule(items: &[pb::ScheduledInstalment]) -> Vec<RawScheduledInstalment> {
    items
        .iter()
        .map(|item| RawScheduledInstalment {
            seq: item.seq,
            period: item.period.clone(),
            amount: item.amount,
        })
        .collect()
}

fn schedule(
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
        })
    }
}

fn state_filter(value: i32) -> Result<StateFilter, SettlementError> {
    match pb::InstalmentState::try_from(value) {
        Ok(pb::InstalmentState::Unspecified) => Ok(StateFilter::All),
        Ok(pb::InstalmentState::Unsettled) => Ok(StateFilter::Unsettled),
        Ok(pb::InstalmentState::Settled) => Ok(StateFilter::Settled),
        Ok(pb::InstalmentState::Finished) => Ok(StateFilter::Finished),
        Ok(pb::InstalmentState::Cancelled) => Ok(StateFilter::Cancelled),
        Err(_) => Err(SettlementError::invalid(
            "state",
            "state_invalid",
            "The state must be settled, unsettled or finished.",
            "وضعیت باید تسویه‌شده، تسویه‌نشده یا پایان‌یافته باشد.",
        )),
    }
}

fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn instalment_message(view: InstalmentView) -> pb::Instalment {
    let state = match view.state {
        InstalmentState::Unsettled => pb::InstalmentState::Unsettled,
        InstalmentState::Settled => pb::InstalmentState::Settled,
        InstalmentState::Cancelled => pb::InstalmentState::Cancelled,
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
    }
}

fn remittance_message(record: RemittanceRecord) -> pb::RemittanceResult {
    pb::RemittanceResult {
        remittance_id: record.id,
        organization_id: record.organization_id,
        period: record.period,
        bank_reference: record.bank_reference,
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

fn row_to_proto(row: DeductionRow) -> pb::DeductionRow {
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
            })
            .collect(),
    }
}

fn rows_message(rows: Vec<pb::DeductionRow>) -> pb::StreamDeductionListResponse {
    pb::StreamDeductionListResponse {
        item: Some(pb::stream_deduction_list_response::Item::Rows(
            pb::DeductionRows { rows },
        )),
    }
}

fn totals_message(totals: DeductionTotals) -> pb::StreamDeductionListResponse {
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

/// Checks every line of a remittance; line numbers default to positions and must be distinct.
fn checked_lines(lines: Vec<pb::RemittanceLine>) -> Result<Vec<CheckedLine>, SettlementError> {
    let mut seen = std::collections::HashSet::with_capacity(lines.len());
    let mut checked = Vec::with_capacity(lines.len());
    for (index, line) in lines.into_iter().enumerate() {
        let number = if line.line == 0 {
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

/// The messages of one batch of a deduction list: a channel send per batch, not per row.
type DeductionMessages = Vec<Result<pb::StreamDeductionListResponse, Status>>;

/// Reads the deduction list batch by batch into `sender`, then the totals (R22).
async fn stream_deductions(
    store: Store,
    organization_id: String,
    period: JalaliPeriod,
    sender: mpsc::Sender<DeductionMessages>,
) {
    let mut totals = DeductionTotals::default();
    let mut after: Option<String> = None;
    loop {
        let batch = store
            .deduction_batch(
                &organization_id,
                period,
                after.as_deref(),
                DEDUCTION_BATCH_ROWS,
            )
            .await;
        let rows = match batch.map(deduction::group_rows) {
            Ok(Ok(rows)) => rows,
            Ok(Err(overflow)) => {
                let _ = sender
                    .send(vec![Err(SettlementError::from(overflow).into())])
                    .await;
                return;
            }
            Err(error) => {
                let _ = sender.send(vec![Err(error.into())]).await;
                return;
            }
        };
        let Some(last) = rows.last() else {
            break;
        };
        after = Some(last.national_id.clone());
        let mut messages = Vec::new();
        let mut message_rows = Vec::with_capacity(DEDUCTION_MESSAGE_ROWS.min(rows.len()));
        for row in rows {
            if let Err(overflow) = totals.add(&row) {
                messages.push(Err(SettlementError::from(overflow).into()));
                let _ = sender.send(messages).await;
                return;
            }
            message_rows.push(row_to_proto(row));
            if message_rows.len() == DEDUCTION_MESSAGE_ROWS {
                messages.push(Ok(rows_message(std::mem::take(&mut message_rows))));
            }
        }
        if !message_rows.is_empty() {
            messages.push(Ok(rows_message(message_rows)));
        }
        if sender.send(messages).await.is_err() {
            // The reader went away.
            return;
        }
    }
    let _ = sender.send(vec![Ok(totals_message(totals))]).await;
}

type DeductionStream =
    Pin<Box<dyn Stream<Item = Result<pb::StreamDeductionListResponse, Status>> + Send>>;

#[tonic::async_trait]
impl SettlementService for SettlementRpc {
    #[tracing::instrument(skip_all, fields(purchase_id))]
    async fn record_schedule(
        &self,
        request: Request<pb::RecordScheduleRequest>,
    ) -> Result<Response<pb::RecordScheduleResponse>, Status> {
        require_service(&caller(&request))?;
        let schedule: NewSchedule = request.into_inner().try_into()?;
        tracing::Span::current().record("purchase_id", schedule.purchase_id.as_str());
        self.store
            .record_schedules(std::slice::from_ref(&schedule), self.now())
            .await?;
        Ok(Response::new(pb::RecordScheduleResponse {}))
    }

    #[tracing::instrument(skip_all, fields(purchase_id, refund_id))]
    async fn cancel_instalments(
        &self,
        request: Request<pb::CancelInstalmentsRequest>,
    ) -> Result<Response<pb::CancelInstalmentsResponse>, Status> {
        require_service(&caller(&request))?;
        let request = request.into_inner();
        let span = tracing::Span::current();
        span.record("purchase_id", request.purchase_id.as_str());
        span.record("refund_id", request.refund_id.as_str());
        required("purchase_id", &request.purchase_id)?;
        required("refund_id", &request.refund_id)?;
        let remaining = schedule("remaining", &request.remaining, true)?;
        self.store
            .cancel_instalments(
                &request.purchase_id,
                &request.refund_id,
                remaining,
                self.now(),
            )
            .await?;
        Ok(Response::new(pb::CancelInstalmentsResponse {}))
    }

    #[tracing::instrument(skip_all, fields(state))]
    async fn list_my_instalments(
        &self,
        request: Request<pb::ListMyInstalmentsRequest>,
    ) -> Result<Response<pb::ListMyInstalmentsResponse>, Status> {
        let caller = caller(&request);
        let employee_id = match &caller {
            Caller::Anonymous => return Err(SettlementError::Unauthenticated.into()),
            Caller::User { employee_id, .. } => employee_id.clone(),
            _ => return Err(SettlementError::PermissionDenied.into()),
        };
        let request = request.into_inner();
        let filter = state_filter(request.state)?;
        tracing::Span::current().record("state", tracing::field::debug(filter));
        let after = if request.page_token.is_empty() {
            None
        } else {
            Some(paging::decode_token(&request.page_token)?)
        };
        let (items, next) = self
            .store
            .list_employee_instalments(
                &employee_id,
                filter,
                paging::page_size(request.page_size),
                after,
            )
            .await?;
        Ok(Response::new(pb::ListMyInstalmentsResponse {
            items: items.into_iter().map(instalment_message).collect(),
            next_page_token: next
                .map(|cursor| paging::encode_token(&cursor))
                .unwrap_or_default(),
        }))
    }

    type StreamDeductionListStream = DeductionStream;

    #[tracing::instrument(skip_all, fields(organization_id, period))]
    async fn stream_deduction_list(
        &self,
        request: Request<pb::StreamDeductionListRequest>,
    ) -> Result<Response<Self::StreamDeductionListStream>, Status> {
        require_any_role(&caller(&request), &[Role::Support, Role::Contracts])?;
        let request = request.into_inner();
        required("organization_id", &request.organization_id)?;
        let period = parse_period("period", &request.period)?;
        let span = tracing::Span::current();
        span.record("organization_id", request.organization_id.as_str());
        span.record("period", tracing::field::display(period));
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER_BATCHES);
        tokio::spawn(stream_deductions(
            self.store.clone(),
            request.organization_id,
            period,
            sender,
        ));
        let messages = ReceiverStream::new(receiver).flat_map(futures::stream::iter);
        Ok(Response::new(Box::pin(messages)))
    }

    #[tracing::instrument(skip_all, fields(organization_id, period, lines))]
    async fn record_remittance(
        &self,
        request: Request<pb::RecordRemittanceRequest>,
    ) -> Result<Response<pb::RecordRemittanceResponse>, Status> {
        let caller = caller(&request);
        require_any_role(&caller, &[Role::Support])?;
        let request = request.into_inner();
        let span = tracing::Span::current();
        span.record("organization_id", request.organization_id.as_str());
        span.record("lines", request.lines.len());
        required("organization_id", &request.organization_id)?;
        required("bank_reference", &request.bank_reference)?;
        if request.bank_reference.chars().count() > MAX_BANK_REFERENCE {
            return Err(SettlementError::invalid(
                "bank_reference",
                "bank_reference_too_long",
                "The bank reference is too long.",
                "شمارهٔ پیگیری بانک بیش از حد طولانی است.",
            )
            .into());
        }
        let period = parse_period("period", &request.period)?;
        span.record("period", tracing::field::display(period));
        let remittance = NewRemittance {
            organization_id: request.organization_id,
            period,
            bank_reference: request.bank_reference.trim().to_owned(),
            recorded_by: caller.employee_id().unwrap_or_default().to_owned(),
            lines: checked_lines(request.lines)?,
        };
        let recorded = self
            .store
            .record_remittance(remittance, self.partial, self.now())
            .await?;
        if recorded.enqueued {
            self.outbox.notify();
        }
        Ok(Response::new(pb::RecordRemittanceResponse {
            result: Some(remittance_message(recorded.record)),
            replayed: recorded.replayed,
        }))
    }

    #[tracing::instrument(skip_all, fields(remittance_id))]
    async fn get_remittance(
        &self,
        request: Request<pb::GetRemittanceRequest>,
    ) -> Result<Response<pb::GetRemittanceResponse>, Status> {
        require_any_role(&caller(&request), &[Role::Support])?;
        let request = request.into_inner();
        tracing::Span::current().record("remittance_id", request.remittance_id.as_str());
        let record = self.store.get_remittance(&request.remittance_id).await?;
        Ok(Response::new(pb::GetRemittanceResponse {
            result: Some(remittance_message(record)),
        }))
    }
}
