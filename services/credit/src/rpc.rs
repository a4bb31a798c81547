//! tonic handlers: read the caller, convert, call the flows, convert back.

use tavana_kit::caller::{Caller, Role, caller};
use tavana_proto::credit::v1 as pb;
use tavana_proto::credit::v1::credit_service_server::CreditService;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::error::CreditError;
use crate::service::{CreditFlows, FacilityTarget, LEDGER_PAGE_MAX, OpenFacility, PurchaseRequest};
use crate::store::{facility, status_of};

/// The gRPC face of the credit service.
pub struct CreditRpc {
    flows: CreditFlows,
}

impl CreditRpc {
    /// Wraps the flows.
    pub fn new(flows: CreditFlows) -> CreditRpc {
        CreditRpc { flows }
    }

    /// Answers a facility change with the facility as it now is.
    async fn facility_answer(
        &self,
        change: impl Future<Output = Result<facility::Model, CreditError>>,
    ) -> Result<Option<pb::Facility>, CreditError> {
        let facility = change.await?;
        Ok(Some(convert::facility_to_proto(
            &facility,
            self.flows.now(),
        )))
    }

    /// Suspends (`true`) or resumes a facility named by national ID: support or a service
    /// only (R30).
    async fn suspension(
        &self,
        caller: &Caller,
        national_id: &str,
        suspended: bool,
        reason: &str,
    ) -> Result<Option<pb::Facility>, CreditError> {
        support_or_service(caller)?;
        let target = named_facility("", national_id)?;
        self.facility_answer(self.flows.set_suspended(caller, &target, suspended, reason))
            .await
    }
}

/// Accepts support users and services (R30, R31, R21's unlock).
fn support_or_service(caller: &Caller) -> Result<(), CreditError> {
    if caller.require_service(&[]).is_ok() {
        return Ok(());
    }
    Ok(caller.require_any_role(&[Role::Support])?)
}

/// The facility a support user or a service names: by national ID, or by id.
fn named_facility(facility_id: &str, national_id: &str) -> Result<FacilityTarget, CreditError> {
    if !national_id.trim().is_empty() {
        Ok(FacilityTarget::NationalId(national_id.trim().to_owned()))
    } else if !facility_id.trim().is_empty() {
        Ok(FacilityTarget::Id(facility_id.trim().to_owned()))
    } else {
        Err(CreditError::invalid(
            "national_id",
            "field_missing",
            "A required field is missing.",
            "یک فیلد الزامی خالی است.",
        ))
    }
}

#[tonic::async_trait]
impl CreditService for CreditRpc {
    #[tracing::instrument(skip_all, fields(rpc = "OpenFacility"))]
    async fn open_facility(
        &self,
        request: Request<pb::OpenFacilityRequest>,
    ) -> Result<Response<pb::OpenFacilityResponse>, Status> {
        caller(&request)
            .require_service(&[])
            .map_err(CreditError::from)?;
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
                guarantor_employee_id: message.guarantor_employee_id,
                region_code: message.region_code,
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
        let caller = caller(&request);
        let message = request.into_inner();
        // R30: an employee closes their own facility (nothing named); support (or a
        // service) names anyone's.
        let target = if message.facility_id.trim().is_empty()
            && message.national_id.trim().is_empty()
        {
            FacilityTarget::Employee(caller.require_user().map_err(CreditError::from)?.to_owned())
        } else {
            support_or_service(&caller)?;
            named_facility(&message.facility_id, &message.national_id)?
        };
        let facility = self.flows.close_facility(&caller, &target, &message.reason);
        Ok(Response::new(pb::CloseFacilityResponse {
            facility: self.facility_answer(facility).await?,
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "SuspendFacility"))]
    async fn suspend_facility(
        &self,
        request: Request<pb::SuspendFacilityRequest>,
    ) -> Result<Response<pb::SuspendFacilityResponse>, Status> {
        let caller = caller(&request);
        let message = request.into_inner();
        Ok(Response::new(pb::SuspendFacilityResponse {
            facility: self
                .suspension(&caller, &message.national_id, true, &message.reason)
                .await?,
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "ResumeFacility"))]
    async fn resume_facility(
        &self,
        request: Request<pb::ResumeFacilityRequest>,
    ) -> Result<Response<pb::ResumeFacilityResponse>, Status> {
        let caller = caller(&request);
        let message = request.into_inner();
        Ok(Response::new(pb::ResumeFacilityResponse {
            facility: self
                .suspension(&caller, &message.national_id, false, &message.reason)
                .await?,
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "ListPurchaseLedger"))]
    async fn list_purchase_ledger(
        &self,
        request: Request<pb::ListPurchaseLedgerRequest>,
    ) -> Result<Response<pb::ListPurchaseLedgerResponse>, Status> {
        support_or_service(&caller(&request))?;
        let message = request.into_inner();
        let (items, last_page) = self
            .flows
            .purchase_ledger(
                &message.after_purchase_id,
                ledger_page_size(message.page_size),
            )
            .await?;
        Ok(Response::new(pb::ListPurchaseLedgerResponse {
            items,
            last_page,
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "DigestPurchaseLedger"))]
    async fn digest_purchase_ledger(
        &self,
        request: Request<pb::DigestPurchaseLedgerRequest>,
    ) -> Result<Response<pb::DigestPurchaseLedgerResponse>, Status> {
        support_or_service(&caller(&request))?;
        let message = request.into_inner();
        Ok(Response::new(
            self.flows
                .purchase_ledger_digest(
                    &message.after_purchase_id,
                    ledger_page_size(message.page_size),
                )
                .await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetBalance"))]
    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let caller = caller(&request);
        let balance = self
            .flows
            .balance(caller.require_user().map_err(CreditError::from)?)
            .await?;
        Ok(Response::new(pb::GetBalanceResponse {
            facility: Some(convert::facility_in_status(
                &balance.facility,
                status_of(&balance.facility, self.flows.now()).with_arrears(balance.overdue_amount),
            )),
            available_monthly: balance.available.monthly.as_i64(),
            available_total: balance.available.total.as_i64(),
            next_release_at: balance.next_release_at.map(tavana_proto::timestamp),
            overdue_amount: balance.overdue_amount.as_i64(),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "CreatePurchase"))]
    async fn create_purchase(
        &self,
        request: Request<pb::CreatePurchaseRequest>,
    ) -> Result<Response<pb::CreatePurchaseResponse>, Status> {
        let caller = caller(&request);
        let employee_id = caller.require_user().map_err(CreditError::from)?;
        let message = request.into_inner();
        let result = self
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
            .await;
        count_purchase(&result);
        let answer = result?;
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
        let merchant_id = caller.require_merchant().map_err(CreditError::from)?;
        let message = request.into_inner();
        let result = self
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
            .await;
        count_purchase(&result);
        let answer = result?;
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
        let employee_id = caller.require_user().map_err(CreditError::from)?;
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
            other => Some(other.require_merchant().map_err(CreditError::from)?),
        };
        let message = request.into_inner();
        let purchase = self
            .flows
            .refund_purchase(
                merchant_id,
                &message.purchase_id,
                message.amount,
                &message.idempotency_key,
            )
            .await?;
        Ok(Response::new(pb::RefundPurchaseResponse {
            purchase: Some(purchase),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "MarkPurchasesSettled"))]
    async fn mark_purchases_settled(
        &self,
        request: Request<pb::MarkPurchasesSettledRequest>,
    ) -> Result<Response<pb::MarkPurchasesSettledResponse>, Status> {
        caller(&request)
            .require_service(&[])
            .map_err(CreditError::from)?;
        let message = request.into_inner();
        self.flows
            .mark_partly_settled(&message.partly_settled_purchase_ids)
            .await?;
        self.flows.mark_settled(&message.purchase_ids).await?;
        Ok(Response::new(pb::MarkPurchasesSettledResponse {}))
    }

    #[tracing::instrument(skip_all, fields(rpc = "SetArrears"))]
    async fn set_arrears(
        &self,
        request: Request<pb::SetArrearsRequest>,
    ) -> Result<Response<pb::SetArrearsResponse>, Status> {
        caller(&request)
            .require_service(&[])
            .map_err(CreditError::from)?;
        self.flows.set_arrears(request.into_inner().items).await?;
        Ok(Response::new(pb::SetArrearsResponse {}))
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetCard"))]
    async fn get_card(
        &self,
        request: Request<pb::GetCardRequest>,
    ) -> Result<Response<pb::GetCardResponse>, Status> {
        let caller = caller(&request);
        let card = self
            .flows
            .card(caller.require_user().map_err(CreditError::from)?)
            .await?;
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
        let employee_id = caller.require_user().map_err(CreditError::from)?;
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
        let caller = caller(&request);
        support_or_service(&caller)?;
        self.flows
            .unlock_card(&caller, &request.into_inner().customer_number)
            .await?;
        Ok(Response::new(pb::UnlockCardResponse {}))
    }
}

/// Counts a purchase in the metrics: accepted, or refused by its code (a
/// replay is the first answer again and is not counted twice).
fn count_purchase(result: &std::result::Result<crate::service::PurchaseAnswer, CreditError>) {
    match result {
        Ok(answer) if answer.replayed => {}
        Ok(_) => tavana_kit::metrics::record_purchase(None),
        Err(error) => tavana_kit::metrics::record_purchase(Some(error.code())),
    }
}

/// A ledger request's page or range size: 0 asks for the default, [`LEDGER_PAGE_MAX`].
fn ledger_page_size(requested: u32) -> u32 {
    if requested == 0 {
        LEDGER_PAGE_MAX
    } else {
        requested
    }
}
