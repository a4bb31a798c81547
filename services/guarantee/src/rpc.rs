//! The tonic handlers: read the caller, convert the message, call the flows, convert back.

use tavana_kit::caller::caller;
use tavana_kit::money::Rial;
use tavana_kit::paging::{decode_token, encode_token, page_size};
use tavana_proto::guarantee::v1 as pb;
use tavana_proto::guarantee::v1::guarantee_service_server::GuaranteeService;
use tonic::{Request, Response, Status};

use crate::domain::RequestStatus;
use crate::error::GuaranteeError;
use crate::service::{Decision, FileRequest, GuaranteeFlows};
use crate::store::{Cursor, RequestView};

/// The gRPC face of the guarantee service.
pub struct GuaranteeRpc {
    flows: GuaranteeFlows,
}

impl GuaranteeRpc {
    /// Serves the given flows.
    pub fn new(flows: GuaranteeFlows) -> GuaranteeRpc {
        GuaranteeRpc { flows }
    }
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// Returns the proto status of a domain status.
pub fn status_to_proto(status: RequestStatus) -> pb::RequestStatus {
    match status {
        RequestStatus::PendingGuarantor => pb::RequestStatus::PendingGuarantor,
        RequestStatus::GuarantorRejected => pb::RequestStatus::GuarantorRejected,
        RequestStatus::PendingFinance => pb::RequestStatus::PendingFinance,
        RequestStatus::FinanceRejected => pb::RequestStatus::FinanceRejected,
        RequestStatus::Approved => pb::RequestStatus::Approved,
        RequestStatus::Cancelled => pb::RequestStatus::Cancelled,
    }
}

fn status_of_name(name: &str) -> pb::RequestStatus {
    RequestStatus::parse(name)
        .map(status_to_proto)
        .unwrap_or(pb::RequestStatus::Unspecified)
}

/// Reads an optional status filter: unspecified means every status.
fn status_filter(value: i32) -> Result<Option<RequestStatus>, GuaranteeError> {
    match pb::RequestStatus::try_from(value) {
        Ok(pb::RequestStatus::Unspecified) => Ok(None),
        Ok(pb::RequestStatus::PendingGuarantor) => Ok(Some(RequestStatus::PendingGuarantor)),
        Ok(pb::RequestStatus::GuarantorRejected) => Ok(Some(RequestStatus::GuarantorRejected)),
        Ok(pb::RequestStatus::PendingFinance) => Ok(Some(RequestStatus::PendingFinance)),
        Ok(pb::RequestStatus::FinanceRejected) => Ok(Some(RequestStatus::FinanceRejected)),
        Ok(pb::RequestStatus::Approved) => Ok(Some(RequestStatus::Approved)),
        Ok(pb::RequestStatus::Cancelled) => Ok(Some(RequestStatus::Cancelled)),
        Err(_) => Err(GuaranteeError::Invalid(vec![
            tavana_kit::error::Violation::new(
                "status",
                "status_invalid",
                "The status filter is not a known status.",
                "وضعیت انتخاب‌شده برای فیلتر معتبر نیست.",
            ),
        ])),
    }
}

fn cursor_of(token: &str) -> Result<Option<Cursor>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    decode_token::<Cursor>(token)
        .map(Some)
        .map_err(Status::from)
}

fn token_of(cursor: Option<Cursor>) -> String {
    cursor
        .map(|cursor| encode_token(&cursor))
        .unwrap_or_default()
}

/// Converts a request with its history into its proto message.
pub fn request_to_proto(view: RequestView) -> pb::CreditRequest {
    let request = view.request;
    pb::CreditRequest {
        request_id: request.id,
        status: status_of_name(&request.status) as i32,
        applicant: Some(pb::Party {
            employee_id: request.applicant_employee_id,
            national_id: request.applicant_national_id,
            full_name: request.applicant_full_name,
        }),
        guarantor: Some(pb::Party {
            employee_id: request.guarantor_employee_id,
            national_id: request.guarantor_national_id,
            full_name: request.guarantor_full_name,
        }),
        region_code: request.region_code,
        monthly_credit: request.monthly_credit,
        instalment_months: u32::try_from(request.instalment_months).unwrap_or(0),
        purchasing_power: Rial(request.monthly_credit)
            .checked_mul(i64::from(request.instalment_months))
            .map(Rial::as_i64)
            .unwrap_or(i64::MAX),
        history: view
            .history
            .into_iter()
            .map(|change| pb::StatusChange {
                status: status_of_name(&change.status) as i32,
                at: Some(timestamp(change.at)),
                by_role: change.by_role,
                reason: change.reason,
                message_fa: change.message_fa,
                message_en: change.message_en,
            })
            .collect(),
        activates_at: request.activates_at.map(timestamp),
        created_at: Some(timestamp(request.created_at)),
        guarantor_active_guarantees: view.guarantor_held,
    }
}

fn page(views: Vec<RequestView>) -> Vec<pb::CreditRequest> {
    views.into_iter().map(request_to_proto).collect()
}

#[tonic::async_trait]
impl GuaranteeService for GuaranteeRpc {
    #[tracing::instrument(skip_all)]
    async fn file_credit_request(
        &self,
        request: Request<pb::FileCreditRequestRequest>,
    ) -> Result<Response<pb::FileCreditRequestResponse>, Status> {
        let caller = caller(&request);
        let message = request.into_inner();
        let input = FileRequest {
            guarantor_national_id: message.guarantor_national_id,
            monthly_credit: Rial(message.monthly_credit),
            instalment_months: message.instalment_months,
        };
        let view = self.flows.file(&caller, input).await?;
        Ok(Response::new(pb::FileCreditRequestResponse {
            request: Some(request_to_proto(view)),
        }))
    }

    #[tracing::instrument(skip_all, fields(request_id = %request.get_ref().request_id))]
    async fn get_credit_request(
        &self,
        request: Request<pb::GetCreditRequestRequest>,
    ) -> Result<Response<pb::GetCreditRequestResponse>, Status> {
        let caller = caller(&request);
        let view = self
            .flows
            .get(&caller, &request.get_ref().request_id)
            .await?;
        Ok(Response::new(pb::GetCreditRequestResponse {
            request: Some(request_to_proto(view)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_my_credit_requests(
        &self,
        request: Request<pb::ListMyCreditRequestsRequest>,
    ) -> Result<Response<pb::ListMyCreditRequestsResponse>, Status> {
        let caller = caller(&request);
        let message = request.into_inner();
        let after = cursor_of(&message.page_token)?;
        let (items, next) = self
            .flows
            .list_mine(&caller, page_size(message.page_size), after.as_ref())
            .await?;
        Ok(Response::new(pb::ListMyCreditRequestsResponse {
            items: page(items),
            next_page_token: token_of(next),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_guarantee_requests(
        &self,
        request: Request<pb::ListGuaranteeRequestsRequest>,
    ) -> Result<Response<pb::ListGuaranteeRequestsResponse>, Status> {
        let caller = caller(&request);
        let message = request.into_inner();
        let status = status_filter(message.status)?;
        let after = cursor_of(&message.page_token)?;
        let (items, next) = self
            .flows
            .list_guarantees(
                &caller,
                status,
                page_size(message.page_size),
                after.as_ref(),
            )
            .await?;
        Ok(Response::new(pb::ListGuaranteeRequestsResponse {
            items: page(items),
            next_page_token: token_of(next),
        }))
    }

    #[tracing::instrument(skip_all, fields(region = %request.get_ref().region_code))]
    async fn list_region_credit_requests(
        &self,
        request: Request<pb::ListRegionCreditRequestsRequest>,
    ) -> Result<Response<pb::ListRegionCreditRequestsResponse>, Status> {
        let caller = caller(&request);
        let message = request.into_inner();
        let status = status_filter(message.status)?;
        let after = cursor_of(&message.page_token)?;
        let (items, next) = self
            .flows
            .list_region(
                &caller,
                &message.region_code,
                status,
                page_size(message.page_size),
                after.as_ref(),
            )
            .await?;
        Ok(Response::new(pb::ListRegionCreditRequestsResponse {
            items: page(items),
            next_page_token: token_of(next),
        }))
    }

    #[tracing::instrument(skip_all, fields(request_id = %request.get_ref().request_id))]
    async fn cancel_credit_request(
        &self,
        request: Request<pb::CancelCreditRequestRequest>,
    ) -> Result<Response<pb::CancelCreditRequestResponse>, Status> {
        let caller = caller(&request);
        let view = self
            .flows
            .cancel(&caller, &request.get_ref().request_id)
            .await?;
        Ok(Response::new(pb::CancelCreditRequestResponse {
            request: Some(request_to_proto(view)),
        }))
    }

    #[tracing::instrument(skip_all, fields(request_id = %request.get_ref().request_id))]
    async fn decide_as_guarantor(
        &self,
        request: Request<pb::DecideAsGuarantorRequest>,
    ) -> Result<Response<pb::DecideAsGuarantorResponse>, Status> {
        let caller = caller(&request);
        let message = request.into_inner();
        let decision = Decision {
            approve: message.approve,
            reason: message.reason,
        };
        let view = self
            .flows
            .decide_as_guarantor(&caller, &message.request_id, decision)
            .await?;
        Ok(Response::new(pb::DecideAsGuarantorResponse {
            request: Some(request_to_proto(view)),
        }))
    }

    #[tracing::instrument(skip_all, fields(request_id = %request.get_ref().request_id))]
    async fn decide_as_finance(
        &self,
        request: Request<pb::DecideAsFinanceRequest>,
    ) -> Result<Response<pb::DecideAsFinanceResponse>, Status> {
        let caller = caller(&request);
        let message = request.into_inner();
        let decision = Decision {
            approve: message.approve,
            reason: message.reason,
        };
        let view = self
            .flows
            .decide_as_finance(&caller, &message.request_id, decision)
            .await?;
        Ok(Response::new(pb::DecideAsFinanceResponse {
            request: Some(request_to_proto(view)),
        }))
    }

    #[tracing::instrument(skip_all, fields(request_id = %request.get_ref().credit_request_id))]
    async fn release_guarantee(
        &self,
        request: Request<pb::ReleaseGuaranteeRequest>,
    ) -> Result<Response<pb::ReleaseGuaranteeResponse>, Status> {
        let caller = caller(&request);
        self.flows
            .release(&caller, &request.get_ref().credit_request_id)
            .await?;
        Ok(Response::new(pb::ReleaseGuaranteeResponse {}))
    }
}
