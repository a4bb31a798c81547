//! Conversions between stored rows and protobuf messages, and the outbox payloads.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use prost::Message;
use tavana_proto::credit::v1 as pb;
use tavana_proto::guarantee::v1::ReleaseGuaranteeRequest;
use tavana_proto::identity::v1::{NotifyEmployeeRequest, SmsTemplate};
use tavana_proto::settlement::v1 as settlement;

use crate::delivery::{CANCEL_INSTALMENTS, NOTIFY_EMPLOYEE, RECORD_SCHEDULE, RELEASE_GUARANTEE};
use crate::domain::facility::FacilityStatus;
use crate::domain::purchase::{Deduction, PurchaseKind};
use crate::store::{OutboxMessage, card, facility, purchase, schedule_of, status_of};

/// Returns a protobuf timestamp.
pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

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
    }
}

/// Returns a facility as seen at `now`.
pub fn facility_to_proto(row: &facility::Model, now: DateTime<Utc>) -> pb::Facility {
    pb::Facility {
        facility_id: row.id.clone(),
        credit_request_id: row.credit_request_id.clone(),
        employee_id: row.employee_id.clone(),
        status: status_to_proto(status_of(row, now)) as i32,
        monthly_credit: row.monthly_credit,
        max_instalments: u32::try_from(row.max_instalments).unwrap_or(0),
        purchasing_power: row.purchasing_power,
        activates_at: Some(timestamp(row.activates_at)),
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
        months: u32::try_from(row.months).unwrap_or(0),
        instalments: schedule_of(row)
            .unwrap_or_default()
            .iter()
            .map(deduction_to_proto)
            .collect(),
        refunded_amount: row.refunded_amount,
        settled: row.settled_at.is_some(),
        created_at: Some(timestamp(row.created_at)),
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
        },
        OutboxMessage {
            topic: NOTIFY_EMPLOYEE,
            dedup_key: format!("purchase-receipt:{}", row.id),
            payload: receipt.encode_to_vec(),
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
    }
}

/// Returns the message of a refund: cancel the instalments in settlement, keeping the
/// remaining schedule (R20).
pub fn refund_messages(row: &purchase::Model, refund_id: &str) -> Vec<OutboxMessage> {
    let request = settlement::CancelInstalmentsRequest {
        purchase_id: row.id.clone(),
        refund_id: refund_id.to_owned(),
        remaining: schedule_of(row)
            .unwrap_or_default()
            .iter()
            .map(deduction_to_settlement)
            .collect(),
    };
    vec![OutboxMessage {
        topic: CANCEL_INSTALMENTS,
        dedup_key: refund_id.to_owned(),
        payload: request.encode_to_vec(),
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
    }]
}
