//! The flows of the guarantee service: read the peers, authorize, run the rules of
//! `domain` inside the store's transactions, and queue the effects (R7-R13).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use prost::Message;
use serde_json::json;
use tavana_kit::audit::AuditEntry;
use tavana_kit::caller::{Caller, Role};
use tavana_kit::clock::SharedClock;
use tavana_kit::error::Violation;
use tavana_kit::ids::NationalId;
use tavana_kit::jalali::tehran_date;
use tavana_kit::money::Rial;
use tavana_kit::outbox::OutboxHandle;
use tavana_kit::store::KvStore;
use tavana_proto::credit::v1::OpenFacilityRequest;
use tavana_proto::identity::v1::{NotifyEmployeeRequest, SmsTemplate};

use crate::delivery::{NOTIFY_EMPLOYEE, OPEN_FACILITY};
use crate::domain::access::{Denial, Parties, Standing, denial, standing};
use crate::domain::messages::{guarantee_requested_message, status_message};
use crate::domain::rules::quarter_of;
use crate::domain::{
    EmployeeProfile, FilingInput, RequestStatus, RuleFailure, check_filing, check_guarantor,
};
use crate::error::GuaranteeError;
use crate::peers::Identity;
use crate::store::{
    Cursor, Filing, HistoryEntry, ListScope, OutboxMessage, RequestView, Store, Transition,
    credit_request,
};

/// How long after finance approval a facility becomes usable (S2, R12).
pub const ACTIVATION_DELAY_HOURS: i64 = 72;

/// The role recorded in the history for each kind of actor (R11).
const BY_APPLICANT: &str = "applicant";
const BY_GUARANTOR: &str = "guarantor";
const BY_REGION_FINANCE: &str = "region_finance";

/// How long refused filings are counted (R32), on the real clock.
const REFUSED_FILINGS_WINDOW: StdDuration = StdDuration::from_secs(24 * 60 * 60);

/// The audit action of a finance decision (R32).
pub const AUDIT_FINANCE_DECISION: &str = "credit_request.finance_decision";

/// R7's bounds for an employee's next request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditLimits {
    /// A quarter of the net salary (S10).
    pub max_monthly_credit: Rial,
    /// The most instalment months a request may ask for.
    pub max_instalment_months: u32,
}

/// What an applicant files (R7).
#[derive(Clone, Debug)]
pub struct FileRequest {
    /// The guarantor's national ID as typed.
    pub guarantor_national_id: String,
    /// `M`.
    pub monthly_credit: Rial,
    /// `N`.
    pub instalment_months: u32,
}

/// A decision of the guarantor or of finance.
#[derive(Clone, Debug)]
pub struct Decision {
    /// Approve (true) or reject.
    pub approve: bool,
    /// The reason given, if any.
    pub reason: Option<String>,
}

/// The guarantee service's flows.
#[derive(Clone)]
pub struct GuaranteeFlows {
    store: Store,
    clock: SharedClock,
    identity: Identity,
    max_instalments: u32,
    outbox: OutboxHandle,
    kv: Arc<dyn KvStore>,
    refused_filings_per_day: u64,
}

fn parties(request: &credit_request::Model) -> Parties<'_> {
    Parties {
        applicant_employee_id: &request.applicant_employee_id,
        guarantor_employee_id: &request.guarantor_employee_id,
        guarantor_national_id: &request.guarantor_national_id,
        region_code: &request.region_code,
    }
}

fn denied(caller: &Caller, standing: Standing) -> GuaranteeError {
    match denial(caller, standing) {
        Denial::Hidden => GuaranteeError::RequestNotFound,
        Denial::Forbidden => GuaranteeError::PermissionDenied,
    }
}

/// Returns the Tehran date a request was filed on, the day R8's service length is
/// measured on.
fn filed_on(request: &credit_request::Model) -> NaiveDate {
    tehran_date(request.created_at).to_gregorian()
}

/// The history entry of a transition to `status` by `by` acting as `by_role` (R11, R32).
fn history(
    status: RequestStatus,
    at: DateTime<Utc>,
    by: &Caller,
    by_role: &'static str,
    reason: Option<String>,
) -> HistoryEntry {
    let message = status_message(status);
    HistoryEntry {
        status,
        at,
        by_role,
        by_employee_id: by.employee_id().map(str::to_owned),
        by_national_id: by.national_id().map(str::to_owned),
        reason,
        message_fa: message.fa.to_owned(),
        message_en: message.en.to_owned(),
    }
}

/// The SMS to the applicant after a change of their request (S3, R28).
fn notify_applicant(
    request_id: &str,
    applicant_employee_id: &str,
    status: RequestStatus,
) -> OutboxMessage {
    let message = status_message(status);
    let params = HashMap::from([
        ("request_id".to_owned(), request_id.to_owned()),
        ("status".to_owned(), status.as_str().to_owned()),
        ("message_fa".to_owned(), message.fa.to_owned()),
        ("message_en".to_owned(), message.en.to_owned()),
    ]);
    let dedup_key = format!("credit_request:{request_id}:{status}:applicant");
    OutboxMessage {
        topic: NOTIFY_EMPLOYEE,
        payload: NotifyEmployeeRequest {
            employee_id: applicant_employee_id.to_owned(),
            template: SmsTemplate::RequestStatus as i32,
            params,
            dedup_key: dedup_key.clone(),
        }
        .encode_to_vec(),
        dedup_key,
        ordering_key: None,
        version: None,
    }
}

/// The SMS to a guarantor named in a new request (S14, R28).
fn notify_guarantor(
    request_id: &str,
    guarantor_employee_id: &str,
    applicant_name: &str,
) -> OutboxMessage {
    let (message_fa, message_en) = guarantee_requested_message(applicant_name);
    let params = HashMap::from([
        ("request_id".to_owned(), request_id.to_owned()),
        ("applicant_name".to_owned(), applicant_name.to_owned()),
        ("message_fa".to_owned(), message_fa),
        ("message_en".to_owned(), message_en),
    ]);
    let dedup_key = format!("credit_request:{request_id}:guarantee_requested:guarantor");
    OutboxMessage {
        topic: NOTIFY_EMPLOYEE,
        payload: NotifyEmployeeRequest {
            employee_id: guarantor_employee_id.to_owned(),
            template: SmsTemplate::GuaranteeRequested as i32,
            params,
            dedup_key: dedup_key.clone(),
        }
        .encode_to_vec(),
        dedup_key,
        ordering_key: None,
        version: None,
    }
}

/// The message that opens the facility of an approved request (R12), keyed by the
/// request id so that credit opens it once however often it arrives.
fn open_facility(
    request: &credit_request::Model,
    applicant: &EmployeeProfile,
    activates_at: DateTime<Utc>,
) -> OutboxMessage {
    OutboxMessage {
        topic: OPEN_FACILITY,
        dedup_key: request.id.clone(),
        payload: OpenFacilityRequest {
            credit_request_id: request.id.clone(),
            employee_id: request.applicant_employee_id.clone(),
            national_id: request.applicant_national_id.clone(),
            organization_id: applicant.organization_id.clone(),
            monthly_credit: request.monthly_credit,
            // Documented saturation: written only from R7-checked `1..=N`; a negative value
            // cannot be read, and credit refuses a facility of 0 months were it ever sent.
            max_instalments: u32::try_from(request.instalment_months).unwrap_or(0),
            activates_at: Some(tavana_proto::timestamp(activates_at)),
            full_name: applicant.full_name.clone(),
            guarantor_employee_id: request.guarantor_employee_id.clone(),
            region_code: applicant.region_code.clone(),
        }
        .encode_to_vec(),
        ordering_key: None,
        version: None,
    }
}

impl GuaranteeFlows {
    /// Creates the flows.
    pub fn new(
        store: Store,
        clock: SharedClock,
        identity: Identity,
        max_instalments: u32,
        outbox: OutboxHandle,
        kv: Arc<dyn KvStore>,
        refused_filings_per_day: u64,
    ) -> GuaranteeFlows {
        GuaranteeFlows {
            store,
            clock,
            identity,
            max_instalments,
            outbox,
            kv,
            refused_filings_per_day,
        }
    }

    fn refused_filings_key(employee_id: &str) -> String {
        format!("guarantee:refused_filings:{employee_id}")
    }

    /// Refuses a filing by an employee who already had too many refused today (R32):
    /// refusals name which of a colleague's rules failed, so they are rationed.
    async fn check_refused_filings(&self, employee_id: &str) -> Result<(), GuaranteeError> {
        let key = Self::refused_filings_key(employee_id);
        let count = self
            .kv
            .get(&key)
            .await
            .map_err(|error| GuaranteeError::Unavailable(error.to_string()))?
            .and_then(|count| count.parse::<u64>().ok())
            .unwrap_or(0);
        if count < self.refused_filings_per_day {
            return Ok(());
        }
        let retry_after = self
            .kv
            .ttl(&key)
            .await
            .map_err(|error| GuaranteeError::Unavailable(error.to_string()))?
            .unwrap_or(REFUSED_FILINGS_WINDOW);
        Err(GuaranteeError::TooManyRefusedFilings {
            retry_after_seconds: retry_after.as_secs().max(1),
        })
    }

    /// Counts a refused filing (R32); a store failure only loses the count.
    async fn count_refused_filing(&self, employee_id: &str) {
        let key = Self::refused_filings_key(employee_id);
        if let Err(error) = self.kv.incr(&key, REFUSED_FILINGS_WINDOW).await {
            tracing::warn!(%error, "cannot count a refused filing");
        }
    }

    /// Files a credit request as the calling employee (R7-R9).
    pub async fn file(
        &self,
        caller: &Caller,
        input: FileRequest,
    ) -> Result<RequestView, GuaranteeError> {
        let employee_id = caller
            .employee_id()
            .ok_or(GuaranteeError::Unauthenticated)?
            .to_owned();
        self.check_refused_filings(&employee_id).await?;
        let filed = self.file_checked(caller, &employee_id, input).await;
        if matches!(filed, Err(GuaranteeError::Refused(_))) {
            self.count_refused_filing(&employee_id).await;
        }
        filed
    }

    /// R7's bounds for the calling employee's next request: a quarter of their net salary
    /// as HR records it now (S10), and the configured most instalment months.
    #[tracing::instrument(skip_all)]
    pub async fn my_credit_limits(&self, caller: &Caller) -> Result<CreditLimits, GuaranteeError> {
        let employee_id = caller
            .employee_id()
            .ok_or(GuaranteeError::Unauthenticated)?;
        let applicant = self
            .identity
            .by_employee_id(employee_id)
            .await?
            .ok_or(GuaranteeError::ApplicantNotFound)?;
        Ok(CreditLimits {
            max_monthly_credit: quarter_of(applicant.net_salary),
            max_instalment_months: self.max_instalments,
        })
    }

    async fn file_checked(
        &self,
        caller: &Caller,
        employee_id: &str,
        input: FileRequest,
    ) -> Result<RequestView, GuaranteeError> {
        let guarantor_national_id =
            NationalId::parse(&input.guarantor_national_id).map_err(|error| {
                GuaranteeError::Invalid(vec![Violation::new(
                    "guarantor_national_id",
                    error.code(),
                    "The guarantor's national ID is not valid.",
                    error.message_fa(),
                )])
            })?;

        let applicant = self
            .identity
            .by_employee_id(employee_id)
            .await?
            .ok_or(GuaranteeError::ApplicantNotFound)?;
        let guarantor = self
            .identity
            .by_national_id(guarantor_national_id.as_str())
            .await?;

        let now = self.clock.now();
        let on = tehran_date(now).to_gregorian();
        let filing_input = FilingInput {
            monthly_credit: input.monthly_credit,
            instalment_months: input.instalment_months,
            max_instalments: self.max_instalments,
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        let (request, enqueued) = self
            .store
            .file(
                &self.outbox,
                employee_id,
                guarantor_national_id.as_str(),
                |held| {
                    let failures =
                        check_filing(&applicant, guarantor.as_ref(), held, filing_input, on);
                    let Some(guarantor) = guarantor.as_ref().filter(|_| failures.is_empty()) else {
                        return Err(GuaranteeError::Refused(if failures.is_empty() {
                            vec![RuleFailure::GuarantorNotFound]
                        } else {
                            failures
                        }));
                    };
                    let request = credit_request::Model {
                        id: request_id.clone(),
                        applicant_employee_id: applicant.employee_id.clone(),
                        applicant_national_id: applicant.national_id.clone(),
                        applicant_full_name: applicant.full_name.clone(),
                        applicant_organization_id: applicant.organization_id.clone(),
                        region_code: applicant.region_code.clone(),
                        guarantor_employee_id: guarantor.employee_id.clone(),
                        guarantor_national_id: guarantor_national_id.as_str().to_owned(),
                        guarantor_full_name: guarantor.full_name.clone(),
                        monthly_credit: input.monthly_credit.as_i64(),
                        instalment_months: i32::try_from(input.instalment_months)
                            .unwrap_or(i32::MAX),
                        status: RequestStatus::PendingGuarantor.as_str().to_owned(),
                        released: false,
                        created_at: now,
                        created_micros: now.timestamp_micros(),
                        approved_at: None,
                        activates_at: None,
                        released_at: None,
                        version: 0,
                    };
                    Ok(Filing {
                        history: history(
                            RequestStatus::PendingGuarantor,
                            now,
                            caller,
                            BY_APPLICANT,
                            None,
                        ),
                        outbox: vec![
                            notify_guarantor(
                                &request_id,
                                &guarantor.employee_id,
                                &applicant.full_name,
                            ),
                            notify_applicant(
                                &request_id,
                                &applicant.employee_id,
                                RequestStatus::PendingGuarantor,
                            ),
                        ],
                        request,
                    })
                },
            )
            .await?;
        self.outbox.deliver_now(&enqueued).await;
        tracing::info!(request_id = %request.id, "credit request filed");
        self.store.view(request).await
    }

    async fn load(&self, request_id: &str) -> Result<credit_request::Model, GuaranteeError> {
        self.store
            .find(request_id)
            .await?
            .ok_or(GuaranteeError::RequestNotFound)
    }

    /// Returns a request to its applicant, its guarantor, region finance of its region,
    /// or a service; anyone else is told it does not exist (R11, R6).
    pub async fn get(
        &self,
        caller: &Caller,
        request_id: &str,
    ) -> Result<RequestView, GuaranteeError> {
        if matches!(caller, Caller::Anonymous) {
            return Err(GuaranteeError::Unauthenticated);
        }
        let request = self.load(request_id).await?;
        if !standing(caller, parties(&request)).may_see() {
            return Err(GuaranteeError::RequestNotFound);
        }
        self.store.view(request).await
    }

    /// Cancels a pending request as its applicant (R9).
    pub async fn cancel(
        &self,
        caller: &Caller,
        request_id: &str,
    ) -> Result<RequestView, GuaranteeError> {
        caller
            .employee_id()
            .ok_or(GuaranteeError::Unauthenticated)?;
        let request = self.load(request_id).await?;
        let standing = standing(caller, parties(&request));
        if !standing.applicant {
            return Err(denied(caller, standing));
        }
        let now = self.clock.now();
        let (updated, enqueued) = self
            .store
            .transition(&self.outbox, request_id, |current, status, _held| {
                if !status.is_pending() {
                    return Err(GuaranteeError::NotPending(status));
                }
                Ok(Transition {
                    history: history(RequestStatus::Cancelled, now, caller, BY_APPLICANT, None),
                    audit: None,
                    approved_at: None,
                    activates_at: None,
                    outbox: vec![notify_applicant(
                        &current.id,
                        &current.applicant_employee_id,
                        RequestStatus::Cancelled,
                    )],
                })
            })
            .await?;
        self.outbox.deliver_now(&enqueued).await;
        self.store.view(updated).await
    }

    /// Reads the current HR data of a request's applicant and guarantor, for R8's
    /// second check at an approval (R10).
    async fn current_parties(
        &self,
        request: &credit_request::Model,
    ) -> Result<(EmployeeProfile, Option<EmployeeProfile>), GuaranteeError> {
        let applicant = self
            .identity
            .by_employee_id(&request.applicant_employee_id)
            .await?
            .ok_or(GuaranteeError::ApplicantNotFound)?;
        let guarantor = self
            .identity
            .by_national_id(&request.guarantor_national_id)
            .await?;
        Ok((applicant, guarantor))
    }

    /// Approves or rejects a request as its named guarantor (R10, S14); an approval
    /// checks R8 again on current HR data.
    pub async fn decide_as_guarantor(
        &self,
        caller: &Caller,
        request_id: &str,
        decision: Decision,
    ) -> Result<RequestView, GuaranteeError> {
        caller
            .employee_id()
            .ok_or(GuaranteeError::Unauthenticated)?;
        let request = self.load(request_id).await?;
        let standing = standing(caller, parties(&request));
        if !standing.guarantor {
            return Err(denied(caller, standing));
        }
        let status = crate::store::parse_status(&request)?;
        if status != RequestStatus::PendingGuarantor {
            return Err(GuaranteeError::NotPending(status));
        }
        let current_parties = if decision.approve {
            Some(self.current_parties(&request).await?)
        } else {
            None
        };
        let now = self.clock.now();
        let (updated, enqueued) = self
            .store
            .transition(&self.outbox, request_id, |current, status, held| {
                if status != RequestStatus::PendingGuarantor {
                    return Err(GuaranteeError::NotPending(status));
                }
                let next = match &current_parties {
                    Some((applicant, guarantor)) => {
                        let failures =
                            check_guarantor(applicant, guarantor.as_ref(), held, filed_on(current));
                        if !failures.is_empty() {
                            return Err(GuaranteeError::Refused(failures));
                        }
                        RequestStatus::PendingFinance
                    }
                    None => RequestStatus::GuarantorRejected,
                };
                Ok(Transition {
                    history: history(next, now, caller, BY_GUARANTOR, decision.reason.clone()),
                    audit: None,
                    approved_at: None,
                    activates_at: None,
                    outbox: vec![notify_applicant(
                        &current.id,
                        &current.applicant_employee_id,
                        next,
                    )],
                })
            })
            .await?;
        self.outbox.deliver_now(&enqueued).await;
        self.store.view(updated).await
    }

    /// Approves or rejects a request as region finance of the applicant's region (R10);
    /// an approval checks R8 again and queues, in the same transaction, the opening of the
    /// facility usable 72 hours later (R12, S2).
    pub async fn decide_as_finance(
        &self,
        caller: &Caller,
        request_id: &str,
        decision: Decision,
    ) -> Result<RequestView, GuaranteeError> {
        caller
            .employee_id()
            .ok_or(GuaranteeError::Unauthenticated)?;
        if !caller.has_role(Role::RegionFinance) {
            return Err(GuaranteeError::PermissionDenied);
        }
        let request = self.load(request_id).await?;
        let standing = standing(caller, parties(&request));
        if !standing.region_finance {
            return Err(denied(caller, standing));
        }
        if standing.is_party() {
            return Err(GuaranteeError::ConflictOfInterest);
        }
        let status = crate::store::parse_status(&request)?;
        if status != RequestStatus::PendingFinance {
            return Err(GuaranteeError::NotPending(status));
        }
        let current_parties = if decision.approve {
            Some(self.current_parties(&request).await?)
        } else {
            None
        };
        let now = self.clock.now();
        let (updated, enqueued) = self
            .store
            .transition(&self.outbox, request_id, |current, status, held| {
                if status != RequestStatus::PendingFinance {
                    return Err(GuaranteeError::NotPending(status));
                }
                let mut outbox = Vec::new();
                let (next, approved_at, activates_at) = match &current_parties {
                    Some((applicant, guarantor)) => {
                        let failures =
                            check_guarantor(applicant, guarantor.as_ref(), held, filed_on(current));
                        if !failures.is_empty() {
                            return Err(GuaranteeError::Refused(failures));
                        }
                        let activates_at = now + Duration::hours(ACTIVATION_DELAY_HOURS);
                        outbox.push(open_facility(current, applicant, activates_at));
                        (RequestStatus::Approved, Some(now), Some(activates_at))
                    }
                    None => (RequestStatus::FinanceRejected, None, None),
                };
                outbox.push(notify_applicant(
                    &current.id,
                    &current.applicant_employee_id,
                    next,
                ));
                let audit = AuditEntry::new(
                    caller,
                    AUDIT_FINANCE_DECISION,
                    current.id.as_str(),
                    json!({
                        "approve": decision.approve,
                        "status": next.as_str(),
                        "applicant_national_id": current.applicant_national_id,
                        "region_code": current.region_code,
                        "reason": decision.reason,
                    }),
                );
                Ok(Transition {
                    history: history(
                        next,
                        now,
                        caller,
                        BY_REGION_FINANCE,
                        decision.reason.clone(),
                    ),
                    audit: Some(audit),
                    approved_at,
                    activates_at,
                    outbox,
                })
            })
            .await?;
        self.outbox.deliver_now(&enqueued).await;
        tracing::info!(request_id = %updated.id, status = %updated.status, "finance decided");
        self.store.view(updated).await
    }

    /// Releases the guarantee of a request whose facility closed owing nothing (R13);
    /// only services may call it, and a second call changes nothing.
    pub async fn release(&self, caller: &Caller, request_id: &str) -> Result<(), GuaranteeError> {
        match caller {
            Caller::Service { .. } => {}
            Caller::Anonymous => return Err(GuaranteeError::Unauthenticated),
            _ => return Err(GuaranteeError::PermissionDenied),
        }
        let released = self.store.release(request_id, self.clock.now()).await?;
        if released {
            tracing::info!(request_id, "guarantee released");
        }
        Ok(())
    }

    /// Lists the calling employee's own requests, newest first.
    pub async fn list_mine(
        &self,
        caller: &Caller,
        page_size: u64,
        after: Option<&Cursor>,
    ) -> Result<(Vec<RequestView>, Option<Cursor>), GuaranteeError> {
        let employee_id = caller
            .employee_id()
            .ok_or(GuaranteeError::Unauthenticated)?;
        self.store
            .list(
                &ListScope::Applicant(employee_id.to_owned()),
                None,
                page_size,
                after,
            )
            .await
    }

    /// Lists the requests naming the caller as guarantor (S14's "approve or reject
    /// guarantee"), newest first.
    pub async fn list_guarantees(
        &self,
        caller: &Caller,
        status: Option<RequestStatus>,
        page_size: u64,
        after: Option<&Cursor>,
    ) -> Result<(Vec<RequestView>, Option<Cursor>), GuaranteeError> {
        let employee_id = caller
            .employee_id()
            .ok_or(GuaranteeError::Unauthenticated)?;
        let scope = ListScope::Guarantor {
            employee_id: employee_id.to_owned(),
            national_id: caller.national_id().unwrap_or_default().to_owned(),
        };
        self.store.list(&scope, status, page_size, after).await
    }

    /// Lists a region's requests for region finance of that region (S2), newest first.
    pub async fn list_region(
        &self,
        caller: &Caller,
        region_code: &str,
        status: Option<RequestStatus>,
        page_size: u64,
        after: Option<&Cursor>,
    ) -> Result<(Vec<RequestView>, Option<Cursor>), GuaranteeError> {
        caller
            .employee_id()
            .ok_or(GuaranteeError::Unauthenticated)?;
        if !caller.has_regional_role(Role::RegionFinance, region_code) {
            return Err(GuaranteeError::PermissionDenied);
        }
        self.store
            .list(
                &ListScope::Region(region_code.to_owned()),
                status,
                page_size,
                after,
            )
            .await
    }
}
