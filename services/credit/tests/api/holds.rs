//! R16, R17: holds released by the clock at 00:00 Tehran on the 8th of the next month.

use chrono::{DateTime, Duration, TimeZone, Utc};
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
