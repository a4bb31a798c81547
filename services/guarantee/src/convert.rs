//! Conversions between the guarantee service's proto messages and its domain and store
//! types.

use tavana_kit::money::Rial;
use tavana_kit::paging::{decode_token, encode_token};
use tavana_proto::guarantee::v1 as pb;

use crate::domain::RequestStatus;
use crate::error::GuaranteeError;
use crate::store::{Cursor, RequestView};

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
pub fn status_filter(value: i32) -> Result<Option<RequestStatus>, GuaranteeError> {
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

/// Reads a page token: empty means the first page.
pub fn cursor_of(token: &str) -> Result<Option<Cursor>, GuaranteeError> {
    if token.is_empty() {
        return Ok(None);
    }
    decode_token::<Cursor>(token)
        .map(Some)
        .map_err(|_| GuaranteeError::PageTokenInvalid)
}

/// Returns the page token of a cursor: empty when there is no next page.
pub fn token_of(cursor: Option<Cursor>) -> String {
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
        // Documented saturation: the column is written only from R7-checked `1..=N`, so a
        // negative value cannot be read; were it read, it shows as 0.
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
                at: Some(tavana_proto::timestamp(change.at)),
                by_role: change.by_role,
                by_employee_id: change.by_employee_id.unwrap_or_default(),
                by_national_id: change.by_national_id.unwrap_or_default(),
                reason: change.reason,
                message_fa: change.message_fa,
                message_en: change.message_en,
            })
            .collect(),
        activates_at: request.activates_at.map(tavana_proto::timestamp),
        created_at: Some(tavana_proto::timestamp(request.created_at)),
        guarantor_active_guarantees: view.guarantor_held,
    }
}

/// Converts a page of requests.
pub fn page(views: Vec<RequestView>) -> Vec<pb::CreditRequest> {
    views.into_iter().map(request_to_proto).collect()
}
