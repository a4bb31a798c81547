//! SeaORM entities of the credit service's tables.

/// A credit facility (R12).
pub mod facility {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "facility")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub credit_request_id: String,
        pub employee_id: String,
        pub open_employee_id: Option<String>,
        pub national_id: String,
        pub full_name: String,
        pub organization_id: String,
        pub monthly_credit: i64,
        pub max_instalments: i32,
        pub purchasing_power: i64,
        pub activates_at: DateTimeUtc,
        pub suspended: bool,
        pub closed_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub version: i64,
        /// The guarantor, carried to settlement for the overdue SMS (R29).
        pub guarantor_employee_id: String,
        /// The employee's region, carried to settlement for the overdue lists (R29).
        pub region_code: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A facility's card (R21).
pub mod card {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "card")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub facility_id: String,
        pub employee_id: String,
        pub customer_number: String,
        pub masked_pan: String,
        pub pin_hash: String,
        pub pin_must_change: bool,
        pub failed_attempts: i32,
        pub locked: bool,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A purchase with its schedule and holds (R15-R18).
pub mod purchase {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "purchase")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub facility_id: String,
        pub employee_id: String,
        pub merchant_id: String,
        pub merchant_name: String,
        pub kind: String,
        pub amount: i64,
        pub refunded_amount: i64,
        pub months: i32,
        pub purchase_period: String,
        pub schedule: String,
        pub created_at: DateTimeUtc,
        pub created_micros: i64,
        pub settled_at: Option<DateTimeUtc>,
        pub hold_monthly: i64,
        pub hold_total: i64,
        pub hold_release_at: Option<DateTimeUtc>,
        pub hold_waits_for_contract: bool,
        pub hold_released_at: Option<DateTimeUtc>,
        pub schedule_version: i32,
        pub partly_settled_at: Option<DateTimeUtc>,
        /// The buyer's national ID, its facility's (R31's ledger reads it from the row).
        pub national_id: String,
        /// R31's term of the schedule (`tavana_kit::ledger_digest`), written with it; none
        /// when the schedule does not add up, or for a purchase older than the column.
        pub ledger_term: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A refund (R20).
pub mod refund {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refund")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub purchase_id: String,
        pub amount: i64,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// An idempotency record (R19).
pub mod idempotency_record {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "idempotency_record")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub caller: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub idempotency_key: String,
        pub request_hash: String,
        pub response: Vec<u8>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// An employee's overdue amount as settlement last counted it (R29).
pub mod employee_arrears {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "employee_arrears")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub employee_id: String,
        pub overdue_amount: i64,
        pub version: i64,
        /// Monthly room held for arrears re-aged into periods not due yet (R16, R29).
        pub held_monthly: i64,
        /// The last of those periods (`YYYY-MM`), empty when none: held until its 8th.
        pub held_until_period: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The holds of a facility's unreleased purchases counted per release (R16-R18), kept by
/// triggers on `purchase` (migration `m20261205_000001_create_facility_held`).
pub mod facility_held {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "facility_held")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub facility_id: String,
        /// The clock release, or `UNTIL_EVENT` for holds released by an event (R18).
        #[sea_orm(primary_key, auto_increment = false)]
        pub release_at: DateTimeUtc,
        #[sea_orm(primary_key, auto_increment = false)]
        pub waits_for_contract: bool,
        /// How many unreleased purchases hold room under this release.
        pub purchases: i64,
        pub monthly: i64,
        pub total: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
