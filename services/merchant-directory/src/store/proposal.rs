//! The `merchant_proposal` table.

// Entity columns mirror the migrations, which document them; the models carry no
// behaviour of their own.
#![allow(missing_docs)]

use sea_orm::entity::prelude::*;

/// A welfare manager's proposal of a merchant.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "merchant_proposal")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    pub name_normalized: String,
    pub kind: String,
    pub website: Option<String>,
    pub website_host: Option<String>,
    pub city: Option<String>,
    pub city_normalized: String,
    pub province: Option<String>,
    pub address: Option<String>,
    pub categories: String,
    pub supports_credit: bool,
    pub supports_instalment: bool,
    pub contact_phone: String,
    pub status: String,
    pub region_code: String,
    pub proposed_by: String,
    pub reason: Option<String>,
    pub merchant_id: Option<String>,
    pub decided_by: Option<String>,
    pub created_at: DateTimeWithTimeZone,
    pub created_micros: i64,
    pub decided_at: Option<DateTimeWithTimeZone>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
