//! Held room as counters (R16-R18): `facility_held` keeps, per facility and release, the
//! count and the sums of the holds of its unreleased purchases, as the purchases'
//! `GROUP BY` would give them. A purchase and a balance read then read a handful of
//! counter rows instead of every hold in effect.
//!
//! Triggers on `purchase` keep the counters in the transaction of every write to a hold
//! (a purchase, a refund, a settlement, a hold that waited for the contract), whatever
//! statement makes it: no writer can forget them. Every such write already holds its
//! facility's lock, so a facility's counter rows change one transaction at a time.
//!
//! A hold with no clock release (an instalment purchase until settled, or one waiting for
//! the organization's contract, R18) is counted under [`UNTIL_EVENT`], a release after any
//! clock: the primary key needs no NULL, and `release_at > now` selects every hold that
//! may be in effect in one range. Released buckets stay (one per facility and month) with
//! their purchases counted down to zero.
//!
//! No read sums the purchases' holds any more, so the covering index that served those
//! sums (`idx_purchase_facility_holds`, six columns) gives way to the narrow
//! `idx_purchase_facility` (facility, `hold_released_at`) it replaced: it still finds a
//! facility's purchases (the close, holds waiting for the contract), and every purchase
//! writes a smaller index entry.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Clone, Copy, DeriveIden)]
enum Purchase {
    Table,
    FacilityId,
    HoldMonthly,
    HoldTotal,
    HoldReleaseAt,
    HoldWaitsForContract,
    HoldReleasedAt,
}

const COVERING_INDEX: &str = "idx_purchase_facility_holds";
const COVERING_COLUMNS: [Purchase; 6] = [
    Purchase::FacilityId,
    Purchase::HoldReleasedAt,
    Purchase::HoldReleaseAt,
    Purchase::HoldWaitsForContract,
    Purchase::HoldMonthly,
    Purchase::HoldTotal,
];
const NARROW_INDEX: &str = "idx_purchase_facility";
const NARROW_COLUMNS: [Purchase; 2] = [Purchase::FacilityId, Purchase::HoldReleasedAt];

/// Creates the purchase index `name` over `columns`, then drops the index `old`.
async fn replace_index(
    manager: &SchemaManager<'_>,
    name: &str,
    columns: &[Purchase],
    old: &str,
) -> Result<(), DbErr> {
    let mut index = Index::create();
    index.name(name).table(Purchase::Table).if_not_exists();
    for column in columns {
        index.col(*column);
    }
    manager.create_index(index).await?;
    manager
        .drop_index(
            Index::drop()
                .name(old)
                .table(Purchase::Table)
                .if_exists()
                .to_owned(),
        )
        .await
}

#[derive(DeriveIden)]
enum FacilityHeld {
    Table,
    FacilityId,
    ReleaseAt,
    WaitsForContract,
    Purchases,
    Monthly,
    Total,
}

/// The release under which holds without a clock release are counted; the store reads
/// it back as "no clock release" (`tavana_credit::store::UNTIL_EVENT`, the same instant).
pub const UNTIL_EVENT: &str = "9999-12-31T00:00:00+00:00";

/// The hold columns: a change to another column of a purchase leaves the counters alone.
const HOLD_COLUMNS: &str = "facility_id, hold_monthly, hold_total, hold_release_at, hold_waits_for_contract, hold_released_at";

/// Adds a row's hold (`NEW`) to its counter, creating it at the first hold.
fn add_new() -> String {
    format!(
        "INSERT INTO facility_held \
           (facility_id, release_at, waits_for_contract, purchases, monthly, total) \
         VALUES (NEW.facility_id, COALESCE(NEW.hold_release_at, '{UNTIL_EVENT}'), \
           NEW.hold_waits_for_contract, 1, NEW.hold_monthly, NEW.hold_total) \
         ON CONFLICT (facility_id, release_at, waits_for_contract) DO UPDATE SET \
           purchases = facility_held.purchases + 1, \
           monthly = facility_held.monthly + excluded.monthly, \
           total = facility_held.total + excluded.total;"
    )
}

/// Takes a row's former hold (`OLD`) off its counter.
fn take_old() -> String {
    format!(
        "UPDATE facility_held SET purchases = purchases - 1, \
           monthly = monthly - OLD.hold_monthly, total = total - OLD.hold_total \
         WHERE facility_id = OLD.facility_id \
           AND release_at = COALESCE(OLD.hold_release_at, '{UNTIL_EVENT}') \
           AND waits_for_contract = OLD.hold_waits_for_contract;"
    )
}

/// Counts the holds of the purchases already recorded.
fn backfill() -> String {
    format!(
        "INSERT INTO facility_held \
           (facility_id, release_at, waits_for_contract, purchases, monthly, total) \
         SELECT facility_id, COALESCE(hold_release_at, '{UNTIL_EVENT}'), \
           hold_waits_for_contract, COUNT(*), SUM(hold_monthly), SUM(hold_total) \
         FROM purchase WHERE hold_released_at IS NULL \
         GROUP BY facility_id, COALESCE(hold_release_at, '{UNTIL_EVENT}'), \
           hold_waits_for_contract"
    )
}

fn postgres_triggers() -> Vec<String> {
    vec![
        format!(
            "CREATE FUNCTION purchase_held() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN \
               IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.hold_released_at IS NULL THEN {take} \
               END IF; \
               IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.hold_released_at IS NULL THEN {add} \
               END IF; \
               RETURN NULL; \
             END $$",
            take = take_old(),
            add = add_new(),
        ),
        "CREATE TRIGGER purchase_held_insert AFTER INSERT ON purchase FOR EACH ROW \
         WHEN (NEW.hold_released_at IS NULL) EXECUTE FUNCTION purchase_held()"
            .to_owned(),
        format!(
            "CREATE TRIGGER purchase_held_update AFTER UPDATE OF {HOLD_COLUMNS} ON purchase \
             FOR EACH ROW WHEN (OLD.hold_released_at IS NULL OR NEW.hold_released_at IS NULL) \
             EXECUTE FUNCTION purchase_held()"
        ),
        "CREATE TRIGGER purchase_held_delete AFTER DELETE ON purchase FOR EACH ROW \
         WHEN (OLD.hold_released_at IS NULL) EXECUTE FUNCTION purchase_held()"
            .to_owned(),
    ]
}

fn sqlite_triggers() -> Vec<String> {
    vec![
        format!(
            "CREATE TRIGGER purchase_held_insert AFTER INSERT ON purchase \
             WHEN NEW.hold_released_at IS NULL BEGIN {} END",
            add_new()
        ),
        // Taking the old hold and adding the new one commute: either may run first.
        format!(
            "CREATE TRIGGER purchase_held_update_take AFTER UPDATE OF {HOLD_COLUMNS} ON purchase \
             WHEN OLD.hold_released_at IS NULL BEGIN {} END",
            take_old()
        ),
        format!(
            "CREATE TRIGGER purchase_held_update_add AFTER UPDATE OF {HOLD_COLUMNS} ON purchase \
             WHEN NEW.hold_released_at IS NULL BEGIN {} END",
            add_new()
        ),
        format!(
            "CREATE TRIGGER purchase_held_delete AFTER DELETE ON purchase \
             WHEN OLD.hold_released_at IS NULL BEGIN {} END",
            take_old()
        ),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(FacilityHeld::Table)
                    .if_not_exists()
                    .col(string_len(FacilityHeld::FacilityId, 36))
                    .col(timestamp_with_time_zone(FacilityHeld::ReleaseAt))
                    .col(boolean(FacilityHeld::WaitsForContract))
                    .col(big_integer(FacilityHeld::Purchases))
                    .col(big_integer(FacilityHeld::Monthly))
                    .col(big_integer(FacilityHeld::Total))
                    .primary_key(
                        Index::create()
                            .col(FacilityHeld::FacilityId)
                            .col(FacilityHeld::ReleaseAt)
                            .col(FacilityHeld::WaitsForContract),
                    )
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared(&backfill()).await?;
        let triggers = match manager.get_database_backend() {
            sea_orm::DbBackend::Postgres => postgres_triggers(),
            _ => sqlite_triggers(),
        };
        for trigger in triggers {
            db.execute_unprepared(&trigger).await?;
        }
        replace_index(manager, NARROW_INDEX, &NARROW_COLUMNS, COVERING_INDEX).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        replace_index(manager, COVERING_INDEX, &COVERING_COLUMNS, NARROW_INDEX).await?;
        let db = manager.get_connection();
        for trigger in [
            "purchase_held_insert",
            "purchase_held_update",
            "purchase_held_update_take",
            "purchase_held_update_add",
            "purchase_held_delete",
        ] {
            let drop = match manager.get_database_backend() {
                sea_orm::DbBackend::Postgres => {
                    format!("DROP TRIGGER IF EXISTS {trigger} ON purchase")
                }
                _ => format!("DROP TRIGGER IF EXISTS {trigger}"),
            };
            db.execute_unprepared(&drop).await?;
        }
        if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
            db.execute_unprepared("DROP FUNCTION IF EXISTS purchase_held()")
                .await?;
        }
        manager
            .drop_table(Table::drop().table(FacilityHeld::Table).to_owned())
            .await
    }
}
