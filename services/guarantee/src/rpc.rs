//! The tonic handlers: read the caller, convert the message, call the flows, convert back.

use tavana_kit::caller::caller;
use tavana_kit::ids::RegionCode;
use tavana_kit::money::Rial;
use tavana_kit::paging::page_size;
use tavana_proto::guarantee::v1 as pb;
use tavana_proto::guarantee::v1::guarantee_service_server::GuaranteeService;
use tonic::{Request, Response, Status};

use crate::convert::{cursor_of, page, request_to_proto, status_filter, token_of};
use crate::error::GuaranteeError;
use crate::service::{Decision, FileRequest, GuaranteeFlows};

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

    #[tracing::instrument(skip_all)]
    async fn get_my_credit_limits(
        &self,
        request: Request<pb::GetMyCreditLimitsRequest>,
    ) -> Result<Response<pb::GetMyCreditLimitsResponse>, Status> {
        let limits = self.flows.my_credit_limits(&caller(&request)).await?;
        Ok(Response::new(pb::GetMyCreditLimitsResponse {
            max_monthly_credit: limits.max_monthly_credit.as_i64(),
            max_instalment_months: limits.max_instalment_months,
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
        // Matched as HR stores it: `teh-19` is region TEH-19.
        let region = RegionCode::parse(&message.region_code)
            .map_err(|error| GuaranteeError::Invalid(vec![error.violation("region_code")]))?;
        let (items, next) = self
            .flows
            .list_region(
                &caller,
                region.as_str(),
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
