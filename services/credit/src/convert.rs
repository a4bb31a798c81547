//! Conversions between stored rows and protobuf messages, and the outbox payloads.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use prost::Message;
use tavana_kit::ledger_digest::LedgerDigest;
use tavana_proto::credit::v1 as pb;
use tavana_proto::guarantee::v1::ReleaseGuaranteeRequest;
use tavana_proto::identity::v1::{NotifyEmployeeRequest, SmsTemplate};
use tavana_proto::settlement::v1 as settlement;

use crate::delivery::{CANCEL_INSTALMENTS, NOTIFY_EMPLOYEE, RECORD_SCHEDULE, RELEASE_GUARANTEE};
use crate::domain::facility::FacilityStatus;
use crate::domain::purchase::{Deduction, PurchaseKind};
use crate::store::{
    LedgerRow, OutboxMessage, card, facility, parse_schedule, purchase, schedule_of, schedule_term,
    status_of,
};

/// Reads a protobuf timestamp.
pub fn from_timestamp(at: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).ok()?)
}

/// Returns the protobuf kind.
pub fn kind_to_proto(kind: PurchaseKind) -> pb::PurchaseKind {
    match kind {
        PurchaseKind::Credit => pb::PurchaseKind::Credit,
        PurchaseKind::Instalment => pb::PurchaseKind::Instalment,
    }
}

/// Reads the protobuf kind (`None` when unspecified or unknown).
pub fn kind_from_proto(kind: i32) -> Option<PurchaseKind> {
    match pb::PurchaseKind::try_from(kind).ok()? {
        pb::PurchaseKind::Credit => Some(PurchaseKind::Credit),
        pb::PurchaseKind::Instalment => Some(PurchaseKind::Instalment),
        pb::PurchaseKind::Unspecified => None,
    }
}

fn status_to_proto(status: FacilityStatus) -> pb::FacilityStatus {
    match status {
        FacilityStatus::PendingActivation => pb::FacilityStatus::PendingActivation,
        FacilityStatus::Active => pb::FacilityStatus::Active,
        FacilityStatus::Suspended => pb::FacilityStatus::Suspended,
        FacilityStatus::Closed => pb::FacilityStatus::Closed,
        FacilityStatus::Overdue => pb::FacilityStatus::Overdue,
    }
}

/// Returns a facility as seen at `now`.
pub fn facility_to_proto(row: &facility::Model, now: DateTime<Utc>) -> pb::Facility {
    facility_in_status(row, status_of(row, now))
}

/// Returns a facility in a status computed by the caller (with arrears, R29).
pub fn facility_in_status(row: &facility::Model, status: FacilityStatus) -> pb::Facility {
    pb::Facility {
        facility_id: row.id.clone(),
        credit_request_id: row.credit_request_id.clone(),
        employee_id: row.employee_id.clone(),
        status: status_to_proto(status) as i32,
        monthly_credit: row.monthly_credit,
        max_instalments: stored_count(row.max_instalments),
        purchasing_power: row.purchasing_power,
        activates_at: Some(tavana_proto::timestamp(row.activates_at)),
    }
}

fn deduction_to_proto(deduction: &Deduction) -> pb::ScheduledInstalment {
    pb::ScheduledInstalment {
        seq: deduction.seq,
        period: deduction.period.to_string(),
        amount: deduction.amount.as_i64(),
    }
}

fn deduction_to_settlement(deduction: &Deduction) -> settlement::ScheduledInstalment {
    settlement::ScheduledInstalment {
        seq: deduction.seq,
        period: deduction.period.to_string(),
        amount: deduction.amount.as_i64(),
    }
}

/// Returns a purchase.
pub fn purchase_to_proto(row: &purchase::Model) -> pb::Purchase {
    let kind = PurchaseKind::parse(&row.kind)
        .map(kind_to_proto)
        .unwrap_or_default();
    pb::Purchase {
        purchase_id: row.id.clone(),
        merchant_id: row.merchant_id.clone(),
        merchant_name: row.merchant_name.clone(),
        kind: kind as i32,
        amount: row.amount,
        months: stored_count(row.months),
        instalments: schedule_of(row)
            .unwrap_or_default()
            .iter()
            .map(deduction_to_proto)
            .collect(),
        refunded_amount: row.refunded_amount,
        settled: row.settled_at.is_some(),
        created_at: Some(tavana_proto::timestamp(row.created_at)),
    }
}

/// Returns the encoded purchase, the answer kept for idempotent replays (R19).
pub fn encode_purchase(row: &purchase::Model) -> Vec<u8> {
    purchase_to_proto(row).encode_to_vec()
}

/// Returns a card.
pub fn card_to_proto(row: &card::Model) -> pb::Card {
    pb::Card {
        customer_number: row.customer_number.clone(),
        masked_pan: row.masked_pan.clone(),
        pin_must_change: row.pin_must_change,
        locked: row.locked,
    }
}

/// Returns the messages of a new purchase: its schedule to settlement and its receipt SMS.
pub fn purchase_messages(row: &purchase::Model, facility: &facility::Model) -> Vec<OutboxMessage> {
    let schedule = record_schedule_request(row, facility);
    let mut params = HashMap::new();
    params.insert("amount".to_owned(), row.amount.to_string());
    params.insert("merchant".to_owned(), row.merchant_name.clone());
    params.insert("kind".to_owned(), row.kind.clone());
    params.insert("months".to_owned(), row.months.to_string());
    let receipt = NotifyEmployeeRequest {
        employee_id: row.employee_id.clone(),
        template: SmsTemplate::PurchaseReceipt as i32,
        params,
        dedup_key: format!("purchase-receipt:{}", row.id),
    };
    vec![
        OutboxMessage {
            topic: RECORD_SCHEDULE,
            dedup_key: row.id.clone(),
            payload: schedule.encode_to_vec(),
            ordering_key: None,
            version: None,
        },
        OutboxMessage {
            topic: NOTIFY_EMPLOYEE,
            dedup_key: format!("purchase-receipt:{}", row.id),
            payload: receipt.encode_to_vec(),
            ordering_key: None,
            version: None,
        },
    ]
}

/// Returns the schedule settlement records for a purchase (R15, R22).
pub fn record_schedule_request(
    row: &purchase::Model,
    facility: &facility::Model,
) -> settlement::RecordScheduleRequest {
    settlement::RecordScheduleRequest {
        purchase_id: row.id.clone(),
        employee_id: facility.employee_id.clone(),
        national_id: facility.national_id.clone(),
        full_name: facility.full_name.clone(),
        organization_id: facility.organization_id.clone(),
        merchant_id: row.merchant_id.clone(),
        merchant_name: row.merchant_name.clone(),
        instalments: schedule_of(row)
            .unwrap_or_default()
            .iter()
            .map(deduction_to_settlement)
            .collect(),
        version: version_of(row),
        monthly_credit: facility.monthly_credit,
        guarantor_employee_id: facility.guarantor_employee_id.clone(),
        region_code: facility.region_code.clone(),
    }
}

/// Returns credit's side of R31's reconciliation for one purchase.
pub fn ledger_entry(row: LedgerRow) -> pb::PurchaseLedgerEntry {
    pb::PurchaseLedgerEntry {
        schedule: parse_schedule(&row.schedule)
            .unwrap_or_default()
            .iter()
            .map(deduction_to_proto)
            .collect(),
        version: schedule_version(row.schedule_version),
        purchase_id: row.id,
        national_id: row.national_id,
        amount: row.amount,
        refunded_amount: row.refunded_amount,
    }
}

/// Adds a purchase's schedule, as [`ledger_entry`] sends it, to a range's digest (R31);
/// false when the schedule cannot be read or does not add up to the amount less refunds,
/// which settlement's comparison reports whatever it holds.
pub fn add_to_digest(digest: &mut LedgerDigest, row: &LedgerRow) -> bool {
    let Ok(schedule) = parse_schedule(&row.schedule) else {
        return false;
    };
    let (term, balanced) = schedule_term(
        &row.id,
        row.amount.saturating_sub(row.refunded_amount),
        &schedule,
    );
    digest.add_term(term);
    balanced
}

/// Returns a purchase's schedule version as sent to settlement (R20). Documented
/// saturation: the store writes 1 and only ever adds one, so a stored version below 1
/// cannot be read; were it read, it is sent as 1, the first version.
fn version_of(row: &purchase::Model) -> u32 {
    schedule_version(row.schedule_version)
}

/// See [`version_of`].
fn schedule_version(stored: i32) -> u32 {
    stored_count(stored).max(1)
}

/// A stored count (instalment ceiling, months, schedule version) as the API's `u32`.
/// Documented saturation: the store writes these columns only from `u32` values checked
/// by R12 and R15, so a negative one cannot be read; were it read, it reads as 0 rather
/// than failing an answer that has already been committed.
fn stored_count(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

/// Returns the message of a refund: replace the unsettled instalments in settlement by the
/// complete schedule that stays due, with the purchase's schedule version after the refund
/// (R20), so that settlement ends on it whatever order refunds arrive in.
pub fn refund_messages(row: &purchase::Model, refund_id: &str) -> Vec<OutboxMessage> {
    let request = settlement::CancelInstalmentsRequest {
        purchase_id: row.id.clone(),
        refund_id: refund_id.to_owned(),
        remaining: schedule_of(row)
            .unwrap_or_default()
            .iter()
            .map(deduction_to_settlement)
            .collect(),
        version: version_of(row),
    };
    vec![OutboxMessage {
        topic: CANCEL_INSTALMENTS,
        dedup_key: refund_id.to_owned(),
        payload: request.encode_to_vec(),
        ordering_key: None,
        version: None,
    }]
}

/// Returns the message of a closed facility: release its guarantee (R13).
pub fn close_messages(row: &facility::Model) -> Vec<OutboxMessage> {
    let request = ReleaseGuaranteeRequest {
        credit_request_id: row.credit_request_id.clone(),
    };
    vec![OutboxMessage {
        topic: RELEASE_GUARANTEE,
        dedup_key: row.credit_request_id.clone(),
        payload: request.encode_to_vec(),
        ordering_key: None,
        version: None,
    }]
}
