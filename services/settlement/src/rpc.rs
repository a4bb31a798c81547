//! The tonic handlers, a few lines each: read the caller, convert the request, call the
//! flows of [`crate::service`], convert back.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tavana_kit::caller::caller;
use tavana_kit::paging;
use tavana_proto::settlement::v1 as pb;
use tavana_proto::settlement::v1::settlement_service_server::SettlementService;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::convert::{
    close_message, deduction_message, instalment_message, optional, optional_period,
    overdue_message, parse_organization, parse_period, queue_status, queued_message,
    reconcile_message, remittance_message, required, resolution, state_filter,
};
use crate::error::SettlementError;
use crate::service::{CancelInstalments, NewRemittanceInput, SettlementFlows};
use crate::store::{LineId, NewSchedule, QueueFilter};

pub use crate::service::{
    AUDIT_PERIOD_CLOSE, AUDIT_REMITTANCE, AUDIT_UNMATCHED_RESOLVE, DEDUCTION_BATCH_ROWS,
    DEDUCTION_MESSAGE_ROWS,
};

/// The settlement gRPC service.
#[derive(Clone)]
pub struct SettlementRpc {
    flows: SettlementFlows,
}

impl SettlementRpc {
    /// Serves the given flows.
    pub fn new(flows: SettlementFlows) -> Self {
        SettlementRpc { flows }
    }
}

/// Reads a page token: empty means the first page.
fn page_after<T: serde::de::DeserializeOwned>(token: &str) -> Result<Option<T>, Status> {
    if token.is_empty() {
        Ok(None)
    } else {
        Ok(Some(paging::decode_token(token)?))
    }
}

/// Writes the token of the next page: none means the last page.
fn page_token<T: serde::Serialize>(next: Option<T>) -> String {
    next.map(|cursor| paging::encode_token(&cursor))
        .unwrap_or_default()
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
        let caller = caller(&request);
        let schedule: NewSchedule = request.into_inner().try_into()?;
        tracing::Span::current().record("purchase_id", schedule.purchase_id.as_str());
        self.flows.record_schedule(&caller, schedule).await?;
        Ok(Response::new(pb::RecordScheduleResponse {}))
    }

    #[tracing::instrument(skip_all, fields(purchase_id, refund_id))]
    async fn cancel_instalments(
        &self,
        request: Request<pb::CancelInstalmentsRequest>,
    ) -> Result<Response<pb::CancelInstalmentsResponse>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        let span = tracing::Span::current();
        span.record("purchase_id", request.purchase_id.as_str());
        span.record("refund_id", request.refund_id.as_str());
        let cancel: CancelInstalments = request.try_into()?;
        self.flows.cancel_instalments(&caller, cancel).await?;
        Ok(Response::new(pb::CancelInstalmentsResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn reconcile(
        &self,
        request: Request<pb::ReconcileRequest>,
    ) -> Result<Response<pb::ReconcileResponse>, Status> {
        let report = self.flows.reconcile(&caller(&request)).await?;
        Ok(Response::new(reconcile_message(report)))
    }

    #[tracing::instrument(skip_all, fields(state))]
    async fn list_my_instalments(
        &self,
        request: Request<pb::ListMyInstalmentsRequest>,
    ) -> Result<Response<pb::ListMyInstalmentsResponse>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        let filter = state_filter(request.state)?;
        tracing::Span::current().record("state", tracing::field::debug(filter));
        let after = page_after(&request.page_token)?;
        let (items, next) = self
            .flows
            .list_my_instalments(&caller, filter, paging::page_size(request.page_size), after)
            .await?;
        Ok(Response::new(pb::ListMyInstalmentsResponse {
            items: items.into_iter().map(instalment_message).collect(),
            next_page_token: page_token(next),
        }))
    }

    type StreamDeductionListStream = DeductionStream;

    #[tracing::instrument(skip_all, fields(organization_id, period))]
    async fn stream_deduction_list(
        &self,
        request: Request<pb::StreamDeductionListRequest>,
    ) -> Result<Response<Self::StreamDeductionListStream>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        let organization_id = parse_organization("organization_id", &request.organization_id)?;
        let period = parse_period("period", &request.period)?;
        let span = tracing::Span::current();
        span.record("organization_id", organization_id.as_str());
        span.record("period", tracing::field::display(period));
        let receiver = self
            .flows
            .deduction_list(&caller, organization_id, period)?;
        let messages = ReceiverStream::new(receiver)
            .flat_map(|events| futures::stream::iter(events.into_iter().map(deduction_message)));
        Ok(Response::new(Box::pin(messages)))
    }

    #[tracing::instrument(skip_all, fields(organization_id, period, lines))]
    async fn record_remittance(
        &self,
        request: Request<pb::RecordRemittanceRequest>,
    ) -> Result<Response<pb::RecordRemittanceResponse>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        let span = tracing::Span::current();
        span.record("organization_id", request.organization_id.as_str());
        span.record("lines", request.lines.len());
        let input: NewRemittanceInput = request.try_into()?;
        span.record("period", tracing::field::display(input.period));
        let recorded = self.flows.record_remittance(&caller, input).await?;
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
        let caller = caller(&request);
        let request = request.into_inner();
        tracing::Span::current().record("remittance_id", request.remittance_id.as_str());
        let record = self
            .flows
            .get_remittance(&caller, &request.remittance_id)
            .await?;
        Ok(Response::new(pb::GetRemittanceResponse {
            result: Some(remittance_message(record)),
        }))
    }

    #[tracing::instrument(skip_all, fields(organization_id, period))]
    async fn close_period(
        &self,
        request: Request<pb::ClosePeriodRequest>,
    ) -> Result<Response<pb::ClosePeriodResponse>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        required("organization_id", &request.organization_id)?;
        let period = parse_period("period", &request.period)?;
        let span = tracing::Span::current();
        span.record("organization_id", request.organization_id.as_str());
        span.record("period", tracing::field::display(period));
        let closed = self
            .flows
            .close_period(&caller, &request.organization_id, period)
            .await?;
        Ok(Response::new(close_message(closed.record, closed.replayed)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_overdue(
        &self,
        request: Request<pb::ListOverdueRequest>,
    ) -> Result<Response<pb::ListOverdueResponse>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        let after = page_after::<String>(&request.page_token)?;
        let (items, next) = self
            .flows
            .list_overdue(
                &caller,
                optional(request.region_code),
                optional(request.organization_id),
                paging::page_size(request.page_size),
                after,
            )
            .await?;
        Ok(Response::new(pb::ListOverdueResponse {
            items: items.into_iter().map(overdue_message).collect(),
            next_page_token: page_token(next),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_unmatched_lines(
        &self,
        request: Request<pb::ListUnmatchedLinesRequest>,
    ) -> Result<Response<pb::ListUnmatchedLinesResponse>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        let filter = QueueFilter {
            status: queue_status(request.status)?,
            period: optional_period("period", request.period)?,
            organization_id: optional(request.organization_id),
        };
        let after = page_after(&request.page_token)?;
        let (items, next) = self
            .flows
            .list_unmatched_lines(&caller, filter, paging::page_size(request.page_size), after)
            .await?;
        Ok(Response::new(pb::ListUnmatchedLinesResponse {
            items: items.into_iter().map(queued_message).collect(),
            next_page_token: page_token(next),
        }))
    }

    #[tracing::instrument(skip_all, fields(line))]
    async fn resolve_unmatched_line(
        &self,
        request: Request<pb::ResolveUnmatchedLineRequest>,
    ) -> Result<Response<pb::ResolveUnmatchedLineResponse>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        let id = LineId::parse(&request.id).ok_or(SettlementError::UnmatchedLineNotFound)?;
        tracing::Span::current().record("line", tracing::field::display(&id));
        let resolution = resolution(&request)?;
        let line = self
            .flows
            .resolve_unmatched_line(&caller, &id, resolution, &request.note)
            .await?;
        Ok(Response::new(pb::ResolveUnmatchedLineResponse {
            line: Some(queued_message(line)),
        }))
    }
}
