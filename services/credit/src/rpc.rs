//! tonic handlers: read the caller, convert, call the flows, convert back.

use tavana_kit::caller::{Caller, Role, caller};
use tavana_proto::credit::v1 as pb;
use tavana_proto::credit::v1::credit_service_server::CreditService;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::domain::CreditError;
use crate::service::{CreditFlows, OpenFacility, PurchaseRequest};

/// The gRPC face of the credit service.
pub struct CreditRpc {
    flows: CreditFlows,
}

impl CreditRpc {
    /// Wraps the flows.
    pub fn new(flows: CreditFlows) -> CreditRpc {
        CreditRpc { flows }
    }
}

fn employee(caller: &Caller) -> Result<&str, CreditError> {
    match caller {
        Caller::User { employee_id, .. } => Ok(employee_id),
        Caller::Anonymous => Err(CreditError::Unauthenticated),
        _ => Err(CreditError::PermissionDenied),
    }
}

fn merchant(caller: &Caller) -> Result<&str, CreditError> {
    match caller {
        Caller::Merchant { merchant_id } => Ok(merchant_id),
        Caller::Anonymous => Err(CreditError::Unauthenticated),
        _ => Err(CreditError::PermissionDenied),
    }
}

fn service(caller: &Caller) -> Result<(), CreditError> {
    match caller {
        Caller::Service { .. } => Ok(()),
        Caller::Anonymous => Err(CreditError::Unauthenticated),
        _ => Err(CreditError::PermissionDenied),
    }
}

fn support_or_service(caller: &Caller) -> Result<(), CreditError> {
    match caller {
        Caller::Service { .. } => Ok(()),
        Caller::User { .. } if caller.has_role(Role::Support) => Ok(()),
        Caller::Anonymous => Err(CreditError::Unauthenticated),
        _ => Err(CreditError::PermissionDenied),
    }
}

#[tonic::async_trait]
impl CreditService for CreditRpc {
    #[tracing::instrument(skip_all, fields(rpc = "OpenFacility"))]
    async fn open_facility(
        &self,
        request: Request<pb::OpenFacilityRequest>,
    ) -> Result<Response<pb::OpenFacilityResponse>, Status> {
        service(&caller(&request))?;
        let message = request.into_inner();
        let activates_at = message
            .activates_at
            .as_ref()
            .and_then(convert::from_timestamp)
            .ok_or(CreditError::invalid(
                "activates_at",
                "activates_at_missing",
                "The activation time is missing.",
                "زمان فعال‌شدن مشخص نشده است.",
            ))?;
        let facility = self
            .flows
            .open_facility(OpenFacility {
                credit_request_id: message.credit_request_id,
                employee_id: message.employee_id,
                national_id: message.national_id,
                full_name: message.full_name,
                organization_id: message.organization_id,
                monthly_credit: message.monthly_credit,
                max_instalments: message.max_instalments,
                activates_at,
            })
            .await?;
        Ok(Response::new(pb::OpenFacilityResponse {
            facility: Some(convert::facility_to_proto(&facility, self.flows.now())),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "CloseFacility"))]
    async fn close_facility(
        &self,
        request: Request<pb::CloseFacilityRequest>,
    ) -> Result<Response<pb::CloseFacilityResponse>, Status> {
        support_or_service(&caller(&request))?;
        let facility = self
            .flows
            .close_facility(&request.into_inner().facility_id)
            .await?;
        Ok(Response::new(pb::CloseFacilityResponse {
            facility: Some(convert::facility_to_proto(&facility, self.flows.now())),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetBalance"))]
    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let caller = caller(&request);
        let balance = self.flows.balance(employee(&caller)?).await?;
        Ok(Response::new(pb::GetBalanceResponse {
            facility: Some(convert::facility_to_proto(
                &balance.facility,
                self.flows.now(),
            )),
            available_monthly: balance.available.monthly.as_i64(),
            available_total: balance.available.total.as_i64(),
            next_release_at: balance.next_release_at.map(convert::timestamp),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "CreatePurchase"))]
    async fn create_purchase(
        &self,
        request: Request<pb::CreatePurchaseRequest>,
    ) -> Result<Response<pb::CreatePurchaseResponse>, Status> {
        let caller = caller(&request);
        let employee_id = employee(&caller)?;
        let message = request.into_inner();
        let answer = self
            .flows
            .create_purchase(
                employee_id,
                &message.merchant_id,
                PurchaseRequest {
                    kind: convert::kind_from_proto(message.kind),
                    amount: message.amount,
                    months: message.months,
                    idempotency_key: message.idempotency_key,
                },
            )
            .await?;
        Ok(Response::new(pb::CreatePurchaseResponse {
            purchase: Some(answer.purchase),
            replayed: answer.replayed,
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "CreateMerchantPurchase"))]
    async fn create_merchant_purchase(
        &self,
        request: Request<pb::CreateMerchantPurchaseRequest>,
    ) -> Result<Response<pb::CreateMerchantPurchaseResponse>, Status> {
        let caller = caller(&request);
        let merchant_id = merchant(&caller)?;
        let message = request.into_inner();
        let answer = self
            .flows
            .create_merchant_purchase(
                merchant_id,
                &message.customer_number,
                &message.pin,
                PurchaseRequest {
                    kind: convert::kind_from_proto(message.kind),
                    amount: message.amount,
                    months: message.months,
                    idempotency_key: message.idempotency_key,
                },
            )
            .await?;
        Ok(Response::new(pb::CreateMerchantPurchaseResponse {
            purchase: Some(answer.purchase),
            replayed: answer.replayed,
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "ListPurchases"))]
    async fn list_purchases(
        &self,
        request: Request<pb::ListPurchasesRequest>,
    ) -> Result<Response<pb::ListPurchasesResponse>, Status> {
        let caller = caller(&request);
        let employee_id = employee(&caller)?;
        let message = request.into_inner();
        let (rows, next_page_token) = self
            .flows
            .list_purchases(employee_id, message.page_size, &message.page_token)
            .await?;
        Ok(Response::new(pb::ListPurchasesResponse {
            items: rows.iter().map(convert::purchase_to_proto).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "RefundPurchase"))]
    async fn refund_purchase(
        &self,
        request: Request<pb::RefundPurchaseRequest>,
    ) -> Result<Response<pb::RefundPurchaseResponse>, Status> {
        let caller = caller(&request);
        let merchant_id = match &caller {
            Caller::Service { .. } => None,
            other => Some(merchant(other)?),
        };
        let message = request.into_inner();
        let row = self
            .flows
            .refund_purchase(
                merchant_id,
                &message.purchase_id,
                message.amount,
                &message.idempotency_key,
            )
            .await?;
        Ok(Response::new(pb::RefundPurchaseResponse {
            purchase: Some(convert::purchase_to_proto(&row)),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "MarkPurchasesSettled"))]
    async fn mark_purchases_settled(
        &self,
        request: Request<pb::MarkPurchasesSettledRequest>,
    ) -> Result<Response<pb::MarkPurchasesSettledResponse>, Status> {
        service(&caller(&request))?;
        self.flows
            .mark_settled(&request.into_inner().purchase_ids)
            .await?;
        Ok(Response::new(pb::MarkPurchasesSettledResponse {}))
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetCard"))]
    async fn get_card(
        &self,
        request: Request<pb::GetCardRequest>,
    ) -> Result<Response<pb::GetCardResponse>, Status> {
        let caller = caller(&request);
        let card = self.flows.card(employee(&caller)?).await?;
        Ok(Response::new(pb::GetCardResponse {
            card: Some(convert::card_to_proto(&card)),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "ChangePin"))]
    async fn change_pin(
        &self,
        request: Request<pb::ChangePinRequest>,
    ) -> Result<Response<pb::ChangePinResponse>, Status> {
        let caller = caller(&request);
        let employee_id = employee(&caller)?;
        let message = request.into_inner();
        self.flows
            .change_pin(employee_id, &message.current_pin, &message.new_pin)
            .await?;
        Ok(Response::new(pb::ChangePinResponse {}))
    }

    #[tracing::instrument(skip_all, fields(rpc = "UnlockCard"))]
    async fn unlock_card(
        &self,
        request: Request<pb::UnlockCardRequest>,
    ) -> Result<Response<pb::UnlockCardResponse>, Status> {
        support_or_service(&caller(&request))?;
        self.flows
            .unlock_card(&request.into_inner().customer_number)
            .await?;
        Ok(Response::new(pb::UnlockCardResponse {}))
    }
}
