//! The SMS outbox (R28) and the dev provider's inbox.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Set,
};
use tavana_kit::outbox::Enqueued;

use super::entities::dev_sms;
use crate::delivery::SMS_TOPIC;
use crate::domain::sms::SmsMessage;

/// Writes an SMS to the outbox; call it inside the transaction of the change that causes it,
/// and hand what it returns to `OutboxHandle::deliver_now` after the commit.
pub async fn enqueue_sms<C: ConnectionTrait>(
    conn: &C,
    dedup_key: &str,
    sms: &SmsMessage,
) -> Result<Enqueued, DbErr> {
    let payload = serde_json::to_vec(sms).map_err(|error| DbErr::Custom(error.to_string()))?;
    tavana_kit::outbox::enqueue(conn, SMS_TOPIC, dedup_key, payload).await
}

/// Deletes the SMS delivered more than `retention` before `now` (real time); returns how
/// many.
pub async fn purge_delivered_sms(
    db: &DatabaseConnection,
    retention: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    tavana_kit::outbox::purge_delivered(db, SMS_TOPIC, now - retention).await
}

/// Returns the outbox messages of many SMS, each under its dedup key: written with
/// `OutboxHandle::enqueue`, one already there (same key) is left alone (R28).
pub fn sms_messages(
    messages: Vec<(String, SmsMessage)>,
) -> Result<Vec<tavana_kit::outbox::Message>, DbErr> {
    messages
        .into_iter()
        .map(|(dedup_key, sms)| {
            Ok(tavana_kit::outbox::Message::new(
                SMS_TOPIC,
                dedup_key,
                serde_json::to_vec(&sms).map_err(|error| DbErr::Custom(error.to_string()))?,
            ))
        })
        .collect()
}

/// Keeps a message sent through the dev provider, in this process's turn to write
/// ([`tavana_kit::db::execute_write`]).
pub async fn insert_dev_sms(
    db: &DatabaseConnection,
    sms: &SmsMessage,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let insert = dev_sms::Entity::insert(dev_sms::ActiveModel {
        id: Default::default(),
        mobile: Set(sms.mobile.clone()),
        text: Set(sms.text.clone()),
        template: Set(sms.template.as_str().to_owned()),
        code: Set(sms.code.clone()),
        sent_at: Set(now),
    })
    .into_query();
    tavana_kit::db::execute_write(db, &insert).await?;
    Ok(())
}

/// Returns the messages the dev provider kept for a mobile, newest first (at most 100).
pub async fn list_dev_sms<C: ConnectionTrait>(
    conn: &C,
    mobile: &str,
) -> Result<Vec<dev_sms::Model>, DbErr> {
    dev_sms::Entity::find()
        .filter(dev_sms::Column::Mobile.eq(mobile))
        .order_by_desc(dev_sms::Column::Id)
        .limit(100)
        .all(conn)
        .await
}
