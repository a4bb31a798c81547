//! R16, R17: holds released by the clock at 00:00 Tehran on the 8th of the next month.

use chrono::{DateTime, Duration, TimeZone, Utc};
use tavana_credit::domain::budget::{Hold, sum_per_release};
use tavana_credit::store::hold_of;
use tavana_kit::jalali::{JalaliPeriod, release_instant, start_of_day};
use tavana_proto::credit::v1::PurchaseKind;

use crate::helpers::*;

fn noon_of(period: &str, day: u32) -> DateTime<Utc> {
    start_of_day(JalaliPeriod::parse(period).unwrap().day(day).unwrap()) + Duration::hours(12)
}

/// Buys 400 on credit at `bought`, then checks the room a minute before and after
/// `expected_release`.
async fn credit_released_exactly_at(bought: DateTime<Utc>, expected_release: DateTime<Utc>) {
    let app = spawn_service_at(bought).await;
    app.open_facility("E1", 1_000, 3).await;
    app.buy("E1", SHOP, PurchaseKind::Credit, 400, 0, "k")
        .await
        .unwrap();

    let balance = app.balance("E1").await.unwrap();
    app.set_clock(expected_release - Duration::minutes(1));
    let before = app.room("E1").await;
    app.set_clock(expected_release + Duration::minutes(1));
    let after = app.room("E1").await;
    let after_balance = app.balance("E1").await.unwrap();

    assert_eq!(
        balance.next_release_at.map(|t| t.seconds),
        Some(expected_release.timestamp())
    );
    assert_eq!(before, (600, 2_600), "held a minute before the release");
    assert_eq!(after, (1_000, 3_000), "released a minute after");
    assert_eq!(after_balance.next_release_at, None);
}

#[tokio::test]
async fn r17_credit_released_at_8th_00_00_tehran_of_next_month() {
    // Bought 1405-02-15; released 1405-03-08 00:00 Tehran = 1405-03-07 20:30 UTC.
    let release = release_instant(JalaliPeriod::parse("1405-03").unwrap());
    assert_eq!(
        release,
        Utc.with_ymd_and_hms(2026, 5, 28, 20, 30, 0).unwrap()
    );

    credit_released_exactly_at(noon_of("1405-02", 15), release).await;
}

#[tokio::test]
async fn r17_credit_bought_in_esfand_released_on_8_farvardin() {
    // 1404-12-20 -> 1405-01-08 00:00 Tehran = 2026-03-27 20:30 UTC.
    credit_released_exactly_at(
        noon_of("1404-12", 20),
        Utc.with_ymd_and_hms(2026, 3, 27, 20, 30, 0).unwrap(),
    )
    .await;
}

#[tokio::test]
async fn r17_credit_bought_on_leap_esfand_30_released_on_8_farvardin() {
    // 1403 is a leap year: Esfand has 30 days. 1403-12-30 is 2025-03-20.
    let bought = noon_of("1403-12", 30);
    assert_eq!(
        bought.date_naive(),
        chrono::NaiveDate::from_ymd_opt(2025, 3, 20).unwrap()
    );
    // 1404-01-08 00:00 Tehran = 2025-03-27 20:30 UTC.
    credit_released_exactly_at(
        bought,
        Utc.with_ymd_and_hms(2025, 3, 27, 20, 30, 0).unwrap(),
    )
    .await;
}

#[tokio::test]
async fn r17_credit_bought_just_before_midnight_of_month_end_belongs_to_that_month() {
    // 23:59 Tehran on 1405-02-31 (the last day of Ordibehesht) is still month 02.
    let last_minute =
        start_of_day(JalaliPeriod::parse("1405-03").unwrap().first_day()) - Duration::minutes(1);
    credit_released_exactly_at(
        last_minute,
        release_instant(JalaliPeriod::parse("1405-03").unwrap()),
    )
    .await;
}

#[tokio::test]
async fn r18_instalment_hold_is_not_released_by_the_clock() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    app.buy("E1", SHOP, PurchaseKind::Instalment, 900, 3, "k")
        .await
        .unwrap();

    app.advance(Duration::days(200));

    assert_eq!(app.room("E1").await, (700, 2_100));
    assert_eq!(app.balance("E1").await.unwrap().next_release_at, None);
}

fn by_release(mut holds: Vec<Hold>) -> Vec<Hold> {
    holds.sort_by_key(|hold| format!("{:?}", hold.release));
    holds
}

/// R16-R18: the store sums holds in SQL (`held_room`). At every instant, on both sides of
/// the clock releases and while a settled purchase waits for the contract, its sums are
/// the holds of the purchases one by one that are in effect, summed per release.
/// Seven purchases on one facility, one refunded wholly, one in part: three clock
/// releases, instalments until settled, and one settled while the organization's
/// contract is not in force (R18). Returns the app and the facility.
async fn holds_of_every_release() -> (TestApp, String) {
    let app = spawn_service_at(noon_of("1405-01", 10)).await;
    let facility_id = app.open_facility("E1", 100_000, 6).await.facility_id;
    let buy = async |kind, amount, months, key: &str| {
        app.buy("E1", SHOP, kind, amount, months, key)
            .await
            .unwrap()
            .purchase
            .unwrap()
            .purchase_id
    };
    buy(PurchaseKind::Credit, 100, 0, "c1").await;
    buy(PurchaseKind::Credit, 200, 0, "c2").await;
    app.set_clock(noon_of("1405-02", 5));
    let c3 = buy(PurchaseKind::Credit, 300, 0, "c3").await;
    let c4 = buy(PurchaseKind::Credit, 50, 0, "c4").await;
    let i1 = buy(PurchaseKind::Instalment, 600, 3, "i1").await;
    buy(PurchaseKind::Instalment, 901, 3, "i2").await;
    app.set_clock(noon_of("1405-03", 5));
    buy(PurchaseKind::Credit, 400, 0, "c5").await;
    app.refund(SHOP, &c3, 100).await.unwrap();
    app.refund(SHOP, &c4, 50).await.unwrap();
    app.set_contract_in_force(false);
    app.settle(&i1).await.unwrap();
    (app, facility_id)
}

#[tokio::test]
async fn r16_summed_holds_are_the_purchases_holds_in_effect_summed_per_release() {
    let (app, facility_id) = holds_of_every_release().await;
    let second = release_instant(JalaliPeriod::parse("1405-02").unwrap());
    let third = release_instant(JalaliPeriod::parse("1405-03").unwrap());
    let fourth = release_instant(JalaliPeriod::parse("1405-04").unwrap());
    let instants = [
        second - Duration::nanoseconds(1),
        second,
        noon_of("1405-03", 5),
        third - Duration::microseconds(1),
        third - Duration::nanoseconds(1),
        third,
        third + Duration::nanoseconds(1),
        third + Duration::microseconds(1),
        fourth - Duration::nanoseconds(1),
        fourth,
        fourth + Duration::days(400),
    ];
    let rows = app.store.unreleased_purchases(&facility_id).await.unwrap();
    let facility = app.store.facility(&facility_id).await.unwrap().unwrap();
    for at in instants {
        let in_effect: Vec<Hold> = rows
            .iter()
            .filter_map(hold_of)
            .filter(|hold| hold.is_in_effect(at))
            .collect();

        let held = app.store.held_room(&facility, at).await.unwrap();

        assert_eq!(
            by_release(held.holds),
            by_release(sum_per_release(&in_effect)),
            "at {at}"
        );
        assert!(held.waits_for_contract, "at {at}");
    }
    // Checked on the data it was meant for: seven purchases, one refunded wholly; three
    // clock releases, instalments until settled, one waiting for the contract.
    assert_eq!(rows.len(), 6);
    let waiting = app.store.held_room(&facility, third).await.unwrap();
    assert_eq!(waiting.holds.len(), 3);
}

/// R16: the counters the triggers keep purchase by purchase (buys, refunds, a settlement
/// that waits for the contract) are the ones the migration counts afresh from the
/// purchases, as it does for a database that had purchases before the counters.
#[tokio::test]
async fn r16_counters_kept_by_the_triggers_are_the_ones_counted_afresh_from_the_purchases() {
    use sea_orm::{EntityTrait, QueryOrder};
    use tavana_credit::store::facility_held;

    let (app, facility_id) = holds_of_every_release().await;
    let counters = async || {
        facility_held::Entity::find()
            .order_by_asc(facility_held::Column::ReleaseAt)
            .order_by_asc(facility_held::Column::WaitsForContract)
            .all(app.db())
            .await
            .unwrap()
    };
    let kept = counters().await;

    // Back to before the counters' migration (and the ones after it), then up again.
    app.migrate_down_to_before("m20261205_000001_create_facility_held")
        .await;
    app.migrate_up().await;
    let counted = counters().await;

    // The wholly refunded purchase was taken off its counter (the migration never saw it).
    let live: Vec<_> = kept
        .iter()
        .filter(|row| row.purchases > 0)
        .cloned()
        .collect();
    assert_eq!(live, counted);
    assert!(kept.iter().all(|row| row.facility_id == facility_id));
    let purchases: i64 = counted.iter().map(|row| row.purchases).sum();
    assert_eq!(purchases, 6, "six purchases hold room");
    assert_eq!(
        counted.len(),
        5,
        "three clock releases, until settled, until the contract"
    );
    let facility = app.store.facility(&facility_id).await.unwrap().unwrap();
    let now = noon_of("1405-01", 1);
    let rows = app.store.unreleased_purchases(&facility_id).await.unwrap();
    let one_by_one: Vec<Hold> = rows.iter().filter_map(hold_of).collect();
    assert_eq!(
        by_release(app.store.held_room(&facility, now).await.unwrap().holds),
        by_release(sum_per_release(&one_by_one)),
        "the counters read back after the rebuild"
    );
}
