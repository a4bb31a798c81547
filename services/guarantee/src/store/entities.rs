//! SeaORM entities of the guarantee service's tables.

// Entity columns mirror the migrations, which document them; the models carry no
// behaviour of their own.
#![allow(missing_docs)]

/// A credit request (R7-R13).
pub mod credit_request {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "credit_request")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub applicant_employee_id: String,
        pub applicant_national_id: String,
        pub applicant_full_name: String,
        pub applicant_organization_id: String,
        pub region_code: String,
        pub guarantor_employee_id: String,
        pub guarantor_national_id: String,
        pub guarantor_full_name: String,
        pub monthly_credit: i64,
        pub instalment_months: i32,
        pub status: String,
        pub released: bool,
        pub created_at: DateTimeUtc,
        pub created_micros: i64,
        pub approved_at: Option<DateTimeUtc>,
        pub activates_at: Option<DateTimeUtc>,
        pub released_at: Option<DateTimeUtc>,
        pub version: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// One transition of a credit request (R11).
pub mod status_change {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "status_change")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub request_id: String,
        pub status: String,
        pub at: DateTimeUtc,
        pub by_role: String,
        pub by_employee_id: Option<String>,
        pub by_national_id: Option<String>,
        pub reason: Option<String>,
        pub message_fa: String,
        pub message_en: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
