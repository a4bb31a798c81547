//! Organizations, employees (HR data, R1), accounts (R4), role grants (R6), sessions and
//! refresh tokens, mobile changes (R5), the dev SMS inbox and the outbox (R28).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use tavana_kit::outbox;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Organization {
    Table,
    Id,
    Name,
    ContractInForce,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Employee {
    Table,
    Id,
    NationalId,
    FullName,
    Mobile,
    OrganizationId,
    RegionCode,
    NetSalary,
    ServiceStartDate,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Account {
    Table,
    EmployeeId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RoleGrant {
    Table,
    Id,
    EmployeeId,
    Role,
    /// Empty for the national roles, so that the unique index treats them as equal.
    RegionCode,
    GrantedAt,
}

/// One row per login: the session (`sid` of the access tokens) and its refresh family.
#[derive(DeriveIden)]
enum Session {
    Table,
    Id,
    EmployeeId,
    CreatedAt,
    RevokedAt,
    RevokedReason,
}

/// One row per refresh token ever issued; rotating one marks it rotated.
#[derive(DeriveIden)]
enum RefreshToken {
    Table,
    TokenHash,
    SessionId,
    IssuedAt,
    ExpiresAt,
    RotatedAt,
}

#[derive(DeriveIden)]
enum MobileChange {
    Table,
    Id,
    EmployeeId,
    OldMobile,
    NewMobile,
    RequestedByUnit,
    Reference,
    Actor,
    ChangedAt,
}

#[derive(DeriveIden)]
enum DevSms {
    Table,
    Id,
    Mobile,
    Text,
    Template,
    Code,
    SentAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Organization::Table)
                    .if_not_exists()
                    .col(string_len(Organization::Id, 64).primary_key())
                    .col(string(Organization::Name))
                    .col(boolean(Organization::ContractInForce))
                    .col(timestamp_with_time_zone(Organization::CreatedAt))
                    .col(timestamp_with_time_zone(Organization::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Employee::Table)
                    .if_not_exists()
                    .col(string_len(Employee::Id, 36).primary_key())
                    .col(string_len_uniq(Employee::NationalId, 10))
                    .col(string(Employee::FullName))
                    .col(string_len(Employee::Mobile, 11))
                    .col(string_len(Employee::OrganizationId, 64))
                    .col(string_len(Employee::RegionCode, 32))
                    .col(big_integer(Employee::NetSalary))
                    .col(date(Employee::ServiceStartDate))
                    .col(timestamp_with_time_zone(Employee::CreatedAt))
                    .col(timestamp_with_time_zone(Employee::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_employee_organization")
                            .from(Employee::Table, Employee::OrganizationId)
                            .to(Organization::Table, Organization::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_employee_mobile")
                    .table(Employee::Table)
                    .col(Employee::Mobile)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Account::Table)
                    .if_not_exists()
                    .col(string_len(Account::EmployeeId, 36).primary_key())
                    .col(timestamp_with_time_zone(Account::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_account_employee")
                            .from(Account::Table, Account::EmployeeId)
                            .to(Employee::Table, Employee::Id),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RoleGrant::Table)
                    .if_not_exists()
                    .col(big_integer(RoleGrant::Id).auto_increment().primary_key())
                    .col(string_len(RoleGrant::EmployeeId, 36))
                    .col(string_len(RoleGrant::Role, 32))
                    .col(string_len(RoleGrant::RegionCode, 32).default(""))
                    .col(timestamp_with_time_zone(RoleGrant::GrantedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_role_grant_employee")
                            .from(RoleGrant::Table, RoleGrant::EmployeeId)
                            .to(Employee::Table, Employee::Id),
                    )
                    .index(
                        Index::create()
                            .name("ux_role_grant")
                            .unique()
                            .col(RoleGrant::EmployeeId)
                            .col(RoleGrant::Role)
                            .col(RoleGrant::RegionCode),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Session::Table)
                    .if_not_exists()
                    .col(string_len(Session::Id, 36).primary_key())
                    .col(string_len(Session::EmployeeId, 36))
                    .col(timestamp_with_time_zone(Session::CreatedAt))
                    .col(timestamp_with_time_zone_null(Session::RevokedAt))
                    .col(string_null(Session::RevokedReason))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_session_employee")
                            .from(Session::Table, Session::EmployeeId)
                            .to(Employee::Table, Employee::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_session_employee")
                    .table(Session::Table)
                    .col(Session::EmployeeId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RefreshToken::Table)
                    .if_not_exists()
                    .col(string_len(RefreshToken::TokenHash, 64).primary_key())
                    .col(string_len(RefreshToken::SessionId, 36))
                    .col(timestamp_with_time_zone(RefreshToken::IssuedAt))
                    .col(timestamp_with_time_zone(RefreshToken::ExpiresAt))
                    .col(timestamp_with_time_zone_null(RefreshToken::RotatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_refresh_token_session")
                            .from(RefreshToken::Table, RefreshToken::SessionId)
                            .to(Session::Table, Session::Id),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(MobileChange::Table)
                    .if_not_exists()
                    .col(big_integer(MobileChange::Id).auto_increment().primary_key())
                    .col(string_len(MobileChange::EmployeeId, 36))
                    .col(string_len(MobileChange::OldMobile, 11))
                    .col(string_len(MobileChange::NewMobile, 11))
                    .col(string(MobileChange::RequestedByUnit))
                    .col(string(MobileChange::Reference))
                    .col(string(MobileChange::Actor))
                    .col(timestamp_with_time_zone(MobileChange::ChangedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_mobile_change_employee")
                            .from(MobileChange::Table, MobileChange::EmployeeId)
                            .to(Employee::Table, Employee::Id),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(DevSms::Table)
                    .if_not_exists()
                    .col(big_integer(DevSms::Id).auto_increment().primary_key())
                    .col(string_len(DevSms::Mobile, 11))
                    .col(text(DevSms::Text))
                    .col(string_len(DevSms::Template, 64))
                    .col(string_len_null(DevSms::Code, 16))
                    .col(timestamp_with_time_zone(DevSms::SentAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_dev_sms_mobile")
                    .table(DevSms::Table)
                    .col(DevSms::Mobile)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager.create_table(outbox::create_outbox_table()).await?;
        for index in outbox::create_outbox_indexes() {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Alias::new("outbox"),
            Alias::new("dev_sms"),
            Alias::new("mobile_change"),
            Alias::new("refresh_token"),
            Alias::new("session"),
            Alias::new("role_grant"),
            Alias::new("account"),
            Alias::new("employee"),
            Alias::new("organization"),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
