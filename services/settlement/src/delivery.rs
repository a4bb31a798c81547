//! The messages this service sends through its outbox, and their delivery.
//!
//! A remittance tells its peers in batches: per chunk of lines (see
//! [`crate::store::REMITTANCE_CHUNK_LINES`]) one message to credit with the purchases the
//! chunk completed and one to identity with the chunk's settlement SMS, each split at
//! [`MESSAGE_ITEMS`] items. A million-line remittance so writes about a hundred outbox rows,
//! not two million, and the relay makes as many calls.

use std::collections::HashMap;

use async_trait::async_trait;
use prost::Message;
use tavana_kit::caller::Caller;
use tavana_kit::forward;
use tavana_kit::grpc::{Channel, Dialer};
use tavana_kit::outbox::{Deliver, DeliveryError};
use tavana_proto::credit::v1::credit_service_client::CreditServiceClient;
use tavana_proto::credit::v1::{EmployeeArrears, MarkPurchasesSettledRequest, SetArrearsRequest};
use tavana_proto::identity::v1::identity_service_client::IdentityServiceClient;
use tavana_proto::identity::v1::{NotifyEmployeeRequest, NotifyEmployeesRequest, SmsTemplate};

/// Topic of the call that tells credit a batch of purchases is fully settled (R18).
pub const MARK_PURCHASES_SETTLED: &str = "credit.mark_purchases_settled";
/// Topic of a batch of settlement SMS (R28).
pub const NOTIFY_EMPLOYEES: &str = "identity.notify_employees";
/// Topic of a batch of employees' overdue amounts for credit, which blocks purchases while
/// one is above zero (R29).
pub const SET_ARREARS: &str = "credit.set_arrears";
/// Former topic of one settled purchase, still delivered: an outbox written by an earlier
/// release may hold such rows.
pub const MARK_PURCHASE_SETTLED: &str = "credit.mark_purchase_settled";
/// Former topic of one settlement SMS, still delivered for the same reason.
pub use tavana_kit::outbox::NOTIFY_EMPLOYEE;

/// The most items (purchases, SMS) one message carries. A settlement SMS is about 200
/// bytes encoded (two ids, a dedup key, three params): 5,000 make about 1 MB, well inside
/// the 4 MB a tonic server decodes by default (the kit sets no other limit), where a
/// whole chunk of 20,000 would not be.
pub const MESSAGE_ITEMS: usize = 5_000;

/// The name this service calls its peers with.
pub const SERVICE_NAME: &str = "settlement";

/// A message to write to the outbox.
pub use tavana_kit::outbox::Message as Outgoing;

/// Tells credit that every instalment of the `completed` purchases (of chunk `chunk` of a
/// remittance) is settled, and that some instalment of the `partly` settled ones is (so
/// that credit refunds them no more, R20): part `k` carries the `k`-th [`MESSAGE_ITEMS`]
/// purchases of each list, none for none. A purchase completes once, so it is in one message only;
/// the dedup keys name the remittance, the chunk and the part, so they are unique and the
/// same for the same chunk.
pub fn purchases_settled(
    remittance_id: &str,
    chunk: usize,
    completed: &[String],
    partly: &[String],
) -> Vec<Outgoing> {
    let parts = completed
        .len()
        .div_ceil(MESSAGE_ITEMS)
        .max(partly.len().div_ceil(MESSAGE_ITEMS));
    let part_of = |ids: &[String], part: usize| -> Vec<String> {
        ids.iter()
            .skip(part * MESSAGE_ITEMS)
            .take(MESSAGE_ITEMS)
            .cloned()
            .collect()
    };
    (0..parts)
        .map(|part| {
            Outgoing::new(
                MARK_PURCHASES_SETTLED,
                format!("settled:{remittance_id}:{chunk}:{part}"),
                MarkPurchasesSettledRequest {
                    purchase_ids: part_of(completed, part),
                    partly_settled_purchase_ids: part_of(partly, part),
                }
                .encode_to_vec(),
            )
        })
        .collect()
}

/// Sends the settlement SMS of chunk `chunk` of a remittance: one message per
/// [`MESSAGE_ITEMS`] notifications, none for none, keyed as [`purchases_settled`]'s.
pub fn settlement_sms(
    remittance_id: &str,
    chunk: usize,
    notifications: Vec<NotifyEmployeeRequest>,
) -> Vec<Outgoing> {
    sms_batches(&format!("sms:{remittance_id}:{chunk}"), notifications)
}

/// Sends notifications in messages of [`MESSAGE_ITEMS`], none for none; the dedup keys are
/// `key` and the part, so `key` must name the event uniquely.
pub fn sms_batches(key: &str, notifications: Vec<NotifyEmployeeRequest>) -> Vec<Outgoing> {
    let mut notifications = notifications.into_iter().peekable();
    let mut messages = Vec::new();
    while notifications.peek().is_some() {
        let part = messages.len();
        messages.push(Outgoing::new(
            NOTIFY_EMPLOYEES,
            format!("{key}:{part}"),
            NotifyEmployeesRequest {
                notifications: notifications.by_ref().take(MESSAGE_ITEMS).collect(),
            }
            .encode_to_vec(),
        ));
    }
    messages
}

/// Tells credit the overdue amounts of employees (R29), in messages of [`MESSAGE_ITEMS`];
/// credit applies each only over an older version, so order and repeats do not matter.
pub fn set_arrears(items: Vec<EmployeeArrears>) -> Vec<Outgoing> {
    items
        .chunks(MESSAGE_ITEMS)
        .map(|items| {
            Outgoing::new(
                SET_ARREARS,
                format!("arrears:{}", uuid::Uuid::now_v7()),
                SetArrearsRequest {
                    items: items.to_vec(),
                }
                .encode_to_vec(),
            )
        })
        .collect()
}

/// The SMS that tell an employee, and their guarantor, that an instalment of `period` is
/// overdue after the organization closed it (R29); once per employee and closed period.
pub fn overdue_notifications(
    organization_id: &str,
    period: &str,
    employee_id: &str,
    guarantor_employee_id: &str,
    full_name: &str,
    amount: i64,
) -> Vec<NotifyEmployeeRequest> {
    let params = HashMap::from([
        ("period".to_owned(), period.to_owned()),
        ("amount".to_owned(), amount.to_string()),
        ("full_name".to_owned(), full_name.to_owned()),
    ]);
    let mut notifications = vec![NotifyEmployeeRequest {
        employee_id: employee_id.to_owned(),
        template: SmsTemplate::Overdue as i32,
        params: params.clone(),
        dedup_key: format!("overdue:{organization_id}:{period}:{employee_id}"),
    }];
    if !guarantor_employee_id.is_empty() && guarantor_employee_id != employee_id {
        notifications.push(NotifyEmployeeRequest {
            employee_id: guarantor_employee_id.to_owned(),
            template: SmsTemplate::OverdueGuarantor as i32,
            params,
            dedup_key: format!("overdue-guarantor:{organization_id}:{period}:{employee_id}"),
        });
    }
    notifications
}

/// The settlement SMS of one employee and remittance (R28); identity queues it once per
/// remittance and employee, by its dedup key, whichever message carries it.
pub fn settlement_notification(
    remittance_id: &str,
    employee_id: &str,
    period: &str,
    instalments: u64,
    amount: i64,
) -> NotifyEmployeeRequest {
    let params = HashMap::from([
        ("period".to_owned(), period.to_owned()),
        ("instalments".to_owned(), instalments.to_string()),
        ("amount".to_owned(), amount.to_string()),
    ]);
    NotifyEmployeeRequest {
        employee_id: employee_id.to_owned(),
        template: SmsTemplate::Settlement as i32,
        params,
        dedup_key: format!("settlement:{remittance_id}:{employee_id}"),
    }
}

/// Delivers the outbox to credit and identity.
pub struct PeerDelivery {
    credit: CreditServiceClient<Channel>,
    identity: IdentityServiceClient<Channel>,
}

impl PeerDelivery {
    /// Creates the delivery over lazily connecting channels.
    pub fn new(credit_url: &str, identity_url: &str, dialer: &Dialer) -> anyhow::Result<Self> {
        Ok(PeerDelivery {
            credit: CreditServiceClient::new(dialer.channel(credit_url)?),
            identity: IdentityServiceClient::new(dialer.channel(identity_url)?),
        })
    }
}

#[async_trait]
impl Deliver for PeerDelivery {
    async fn deliver(&self, topic: &str, payload: &[u8]) -> Result<(), DeliveryError> {
        let caller = Caller::service(SERVICE_NAME);
        match topic {
            // A row of the former topic holds `MarkPurchaseSettledRequest { string
            // purchase_id = 1; }`. A string field and a repeated string field of the same
            // number are the same on the wire in proto3, so it decodes as a batch of one.
            MARK_PURCHASES_SETTLED | MARK_PURCHASE_SETTLED => forward!(
                self.credit,
                mark_purchases_settled,
                MarkPurchasesSettledRequest,
                payload,
                &caller
            ),
            SET_ARREARS => forward!(
                self.credit,
                set_arrears,
                SetArrearsRequest,
                payload,
                &caller
            ),
            NOTIFY_EMPLOYEES => forward!(
                self.identity,
                notify_employees,
                NotifyEmployeesRequest,
                payload,
                &caller
            ),
            NOTIFY_EMPLOYEE => forward!(
                self.identity,
                notify_employee,
                NotifyEmployeeRequest,
                payload,
                &caller
            ),
            other => {
                return Err(DeliveryError::Permanent(format!("unknown topic {other}")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tavana_kit::outbox::decode_payload;

    /// The message of one settled purchase as the former release wrote it.
    #[derive(Clone, PartialEq, prost::Message)]
    struct FormerMarkPurchaseSettledRequest {
        #[prost(string, tag = "1")]
        purchase_id: String,
    }

    #[test]
    fn r18_a_former_single_purchase_message_decodes_as_a_batch_of_one() {
        let former = FormerMarkPurchaseSettledRequest {
            purchase_id: "P1".to_owned(),
        }
        .encode_to_vec();

        let batch: MarkPurchasesSettledRequest = decode_payload(&former).unwrap();

        assert_eq!(batch.purchase_ids, ["P1"]);
    }

    #[test]
    fn r18_purchases_are_split_at_the_message_size_and_keyed_by_chunk_and_part() {
        let ids: Vec<String> = (0..MESSAGE_ITEMS + 1).map(|n| format!("P{n}")).collect();

        let messages = purchases_settled("R1", 3, &ids, &[]);
        let none = purchases_settled("R1", 4, &[], &[]);

        let keys: Vec<&str> = messages.iter().map(|m| m.dedup_key.as_str()).collect();
        assert_eq!(keys, ["settled:R1:3:0", "settled:R1:3:1"]);
        let sizes: Vec<usize> = messages
            .iter()
            .map(|m| {
                MarkPurchasesSettledRequest::decode(m.payload.as_slice())
                    .unwrap()
                    .purchase_ids
                    .len()
            })
            .collect();
        assert_eq!(sizes, [MESSAGE_ITEMS, 1]);
        assert!(none.is_empty());
    }

    #[test]
    fn r20_partly_settled_purchases_are_told_to_credit_in_the_same_batch() {
        let messages = purchases_settled("R1", 0, &["P1".to_owned()], &["P2".to_owned()]);
        let only_partly = purchases_settled("R1", 1, &[], &["P3".to_owned()]);

        assert_eq!(messages.len(), 1);
        let decoded = MarkPurchasesSettledRequest::decode(messages[0].payload.as_slice()).unwrap();
        assert_eq!(decoded.purchase_ids, ["P1"]);
        assert_eq!(decoded.partly_settled_purchase_ids, ["P2"]);
        assert_eq!(messages[0].dedup_key, "settled:R1:0:0");
        assert_eq!(only_partly.len(), 1);
    }

    #[test]
    fn r28_a_full_sms_batch_stays_well_inside_the_grpc_message_limit() {
        let id = "0190a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6b";
        let notifications = (0..MESSAGE_ITEMS + 1)
            .map(|_| settlement_notification(id, id, "1405-09", 12, 9_999_999_999))
            .collect();

        let messages = settlement_sms(id, 0, notifications);

        assert_eq!(messages.len(), 2);
        assert!(
            messages[0].payload.len() < 2 * 1024 * 1024,
            "{}",
            messages[0].payload.len()
        );
        assert_eq!(messages[1].dedup_key, format!("sms:{id}:0:1"));
    }
}
