//! Merchants and proposals (R25-R27).
//!
//! Both tables keep, beside what the proposer typed, the normalized forms that
//! search and duplicate detection compare: `name_normalized`, `city_normalized`
//! (empty when there is no city, so that a unique index can hold it) and
//! `website_host`. Categories are stored normalized as one delimited column,
//! `|cat one|cat two|`, so that an exact category filter is a `LIKE '%|cat|%'`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Merchant {
    Table,
    Id,
    Name,
    NameNormalized,
    Kind,
    Website,
    WebsiteHost,
    City,
    CityNormalized,
    Province,
    ProvinceNormalized,
    Address,
    Categories,
    SupportsCredit,
    SupportsInstalment,
    ContactPhone,
    Status,
    RegionCode,
    ProposalId,
    ApiKeyHash,
    CreatedAt,
    CreatedMicros,
    SuspendedAt,
    SuspensionReason,
}

#[derive(DeriveIden)]
enum MerchantProposal {
    Table,
    Id,
    Name,
    NameNormalized,
    Kind,
    Website,
    WebsiteHost,
    City,
    CityNormalized,
    Province,
    Address,
    Categories,
    SupportsCredit,
    SupportsInstalment,
    ContactPhone,
    Status,
    RegionCode,
    ProposedBy,
    Reason,
    MerchantId,
    DecidedBy,
    CreatedAt,
    CreatedMicros,
    DecidedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Merchant::Table)
                    .col(string(Merchant::Id).primary_key())
                    .col(string(Merchant::Name))
                    .col(string(Merchant::NameNormalized))
                    .col(string(Merchant::Kind))
                    .col(string_null(Merchant::Website))
                    .col(string_null(Merchant::WebsiteHost))
                    .col(string_null(Merchant::City))
                    .col(string(Merchant::CityNormalized))
                    .col(string_null(Merchant::Province))
                    .col(string(Merchant::ProvinceNormalized))
                    .col(string_null(Merchant::Address))
                    .col(string(Merchant::Categories))
                    .col(boolean(Merchant::SupportsCredit))
                    .col(boolean(Merchant::SupportsInstalment))
                    .col(string(Merchant::ContactPhone))
                    .col(string(Merchant::Status))
                    .col(string(Merchant::RegionCode))
                    .col(string(Merchant::ProposalId))
                    .col(string(Merchant::ApiKeyHash))
                    .col(timestamp_with_time_zone(Merchant::CreatedAt))
                    .col(big_integer(Merchant::CreatedMicros))
                    .col(timestamp_with_time_zone_null(Merchant::SuspendedAt))
                    .col(string_null(Merchant::SuspensionReason))
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            // Byte order, as SQLite's BINARY: listings sort, and keyset pages compare, the
            // same way on both backends, whatever the server's locale.
            manager
                .get_connection()
                .execute_unprepared(
                    "ALTER TABLE merchant ALTER COLUMN name_normalized TYPE varchar COLLATE \"C\"",
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(MerchantProposal::Table)
                    .col(string(MerchantProposal::Id).primary_key())
                    .col(string(MerchantProposal::Name))
                    .col(string(MerchantProposal::NameNormalized))
                    .col(string(MerchantProposal::Kind))
                    .col(string_null(MerchantProposal::Website))
                    .col(string_null(MerchantProposal::WebsiteHost))
                    .col(string_null(MerchantProposal::City))
                    .col(string(MerchantProposal::CityNormalized))
                    .col(string_null(MerchantProposal::Province))
                    .col(string_null(MerchantProposal::Address))
                    .col(string(MerchantProposal::Categories))
                    .col(boolean(MerchantProposal::SupportsCredit))
                    .col(boolean(MerchantProposal::SupportsInstalment))
                    .col(string(MerchantProposal::ContactPhone))
                    .col(string(MerchantProposal::Status))
                    .col(string(MerchantProposal::RegionCode))
                    .col(string(MerchantProposal::ProposedBy))
                    .col(string_null(MerchantProposal::Reason))
                    .col(string_null(MerchantProposal::MerchantId))
                    .col(string_null(MerchantProposal::DecidedBy))
                    .col(timestamp_with_time_zone(MerchantProposal::CreatedAt))
                    .col(big_integer(MerchantProposal::CreatedMicros))
                    .col(timestamp_with_time_zone_null(MerchantProposal::DecidedAt))
                    .to_owned(),
            )
            .await?;

        // R26: one merchant per normalized name and city, one per website host, and one key
        // hash per merchant. These back the duplicate check against concurrent approvals.
        manager
            .create_index(
                Index::create()
                    .name("ux_merchant_name_city")
                    .table(Merchant::Table)
                    .col(Merchant::NameNormalized)
                    .col(Merchant::CityNormalized)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_merchant_website_host")
                    .table(Merchant::Table)
                    .col(Merchant::WebsiteHost)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_merchant_api_key_hash")
                    .table(Merchant::Table)
                    .col(Merchant::ApiKeyHash)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // R27 keyset paging: listings are ordered by (name_normalized, id) within a status.
        manager
            .create_index(
                Index::create()
                    .name("ix_merchant_status_name_id")
                    .table(Merchant::Table)
                    .col(Merchant::Status)
                    .col(Merchant::NameNormalized)
                    .col(Merchant::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_merchant_proposal_region_created")
                    .table(MerchantProposal::Table)
                    .col(MerchantProposal::RegionCode)
                    .col(MerchantProposal::CreatedMicros)
                    .col(MerchantProposal::Id)
                    .to_owned(),
            )
            .await?;

        let connection = manager.get_connection();
        // At most one pending proposal per name and city, and per website host: a second
        // manager proposing the same store at the same moment gets the duplicate answer.
        // Partial unique indexes read the same on SQLite and PostgreSQL.
        connection
            .execute_unprepared(
                "CREATE UNIQUE INDEX ux_merchant_proposal_pending_name_city \
                 ON merchant_proposal (name_normalized, city_normalized) \
                 WHERE status = 'pending'",
            )
            .await?;
        connection
            .execute_unprepared(
                "CREATE UNIQUE INDEX ux_merchant_proposal_pending_website_host \
                 ON merchant_proposal (website_host) \
                 WHERE status = 'pending' AND website_host IS NOT NULL",
            )
            .await?;

        // R27: a substring search over 100,000 names. On PostgreSQL a trigram GIN index
        // serves `name_normalized LIKE '%q%'`; SQLite (the embedded default, small data)
        // gets a plain index, which the ordered listing uses.
        if connection.get_database_backend() == DbBackend::Postgres {
            connection
                .execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_trgm")
                .await?;
            connection
                .execute_unprepared(
                    "CREATE INDEX ix_merchant_name_trgm ON merchant \
                     USING gin (name_normalized gin_trgm_ops)",
                )
                .await?;
        } else {
            manager
                .create_index(
                    Index::create()
                        .name("ix_merchant_name_normalized")
                        .table(Merchant::Table)
                        .col(Merchant::NameNormalized)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(MerchantProposal::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Merchant::Table).to_owned())
            .await
    }
}
