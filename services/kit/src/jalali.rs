//! The Jalali (Persian) calendar and the Asia/Tehran zone, from maintained crates.
//!
//! Salary periods are Jalali months; credit returns on the 8th of the next month (R17).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Asia::Tehran;
use parsidate::{MAX_PARSI_DATE, MIN_PARSI_DATE, ParsiDate};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::normalize_digits;

/// Why a Jalali period or date was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JalaliError {
    /// The text is not of the form `YYYY-MM`.
    #[error("invalid Jalali period {0:?}, expected YYYY-MM")]
    InvalidPeriod(String),
    /// The year, month and day do not name a Jalali date.
    #[error("invalid Jalali date {0}-{1}-{2}")]
    InvalidDate(i32, u32, u32),
}

impl JalaliError {
    /// Returns the stable snake_case code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            JalaliError::InvalidPeriod(_) => "period_invalid",
            JalaliError::InvalidDate(..) => "date_invalid",
        }
    }
}

const MIN_YEAR: i32 = 1;
const MAX_YEAR: i32 = 9999;

/// A salary period: one Jalali month, written `1405-09`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JalaliPeriod {
    year: i32,
    month: u32,
}

impl JalaliPeriod {
    /// Creates a period, refusing a month outside 1..=12 or a year outside 1..=9999.
    pub fn new(year: i32, month: u32) -> Result<JalaliPeriod, JalaliError> {
        if !(MIN_YEAR..=MAX_YEAR).contains(&year) || !(1..=12).contains(&month) {
            return Err(JalaliError::InvalidPeriod(format!("{year}-{month}")));
        }
        Ok(JalaliPeriod { year, month })
    }

    /// Parses `YYYY-MM` (Persian digits are accepted).
    pub fn parse(input: &str) -> Result<JalaliPeriod, JalaliError> {
        let text = normalize_digits(input.trim());
        let invalid = || JalaliError::InvalidPeriod(input.to_owned());
        let (year, month) = text.split_once('-').ok_or_else(invalid)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(invalid());
        }
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(year) || !all_digits(month) {
            return Err(invalid());
        }
        let year: i32 = year.parse().map_err(|_| invalid())?;
        let month: u32 = month.parse().map_err(|_| invalid())?;
        JalaliPeriod::new(year, month).map_err(|_| invalid())
    }

    /// Returns the Jalali year.
    pub const fn year(self) -> i32 {
        self.year
    }

    /// Returns the Jalali month, 1..=12.
    pub const fn month(self) -> u32 {
        self.month
    }

    fn index(self) -> i64 {
        i64::from(self.year) * 12 + i64::from(self.month) - 1
    }

    fn from_index(index: i64) -> JalaliPeriod {
        let max = i64::from(MAX_YEAR) * 12 + 11;
        let min = i64::from(MIN_YEAR) * 12;
        let index = index.clamp(min, max);
        // Documented saturation: the clamp above keeps the year within MIN_YEAR..=MAX_YEAR
        // and the month within 1..=12, so neither conversion can fail.
        JalaliPeriod {
            year: i32::try_from(index.div_euclid(12)).unwrap_or(MAX_YEAR),
            month: u32::try_from(index.rem_euclid(12)).unwrap_or(0) + 1,
        }
    }

    /// Returns the following month (Esfand is followed by Farvardin of the next year).
    pub fn next(self) -> JalaliPeriod {
        self.add_months(1)
    }

    /// Returns the preceding month.
    pub fn previous(self) -> JalaliPeriod {
        JalaliPeriod::from_index(self.index() - 1)
    }

    /// Returns the period `months` later (saturating at year 9999).
    pub fn add_months(self, months: u32) -> JalaliPeriod {
        JalaliPeriod::from_index(self.index() + i64::from(months))
    }

    /// Returns how many months `later` comes after `self` (negative when it comes before).
    pub fn months_between(self, later: JalaliPeriod) -> i32 {
        // Both indices lie within the supported years, so the difference fits an i32.
        i32::try_from(later.index() - self.index()).unwrap_or(i32::MAX)
    }

    /// Returns the given day of this period.
    pub fn day(self, day: u32) -> Result<JalaliDate, JalaliError> {
        JalaliDate::new(self.year, self.month, day)
    }

    /// Returns the first day of this period.
    pub fn first_day(self) -> JalaliDate {
        // Day 1 exists in every month of every year in range.
        JalaliDate::from_parsi(ParsiDate::new(self.year, self.month, 1).unwrap_or(MIN_PARSI_DATE))
    }
}

impl fmt::Display for JalaliPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for JalaliPeriod {
    type Err = JalaliError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JalaliPeriod::parse(s)
    }
}

impl Serialize for JalaliPeriod {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for JalaliPeriod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        JalaliPeriod::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A Jalali calendar date, written `1405-09-08`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JalaliDate {
    year: i32,
    month: u32,
    day: u32,
    gregorian: NaiveDate,
}

impl JalaliDate {
    /// Creates a date, refusing one that does not exist (such as Esfand 30 of a common year).
    pub fn new(year: i32, month: u32, day: u32) -> Result<JalaliDate, JalaliError> {
        let parsi = ParsiDate::new(year, month, day)
            .map_err(|_| JalaliError::InvalidDate(year, month, day))?;
        let gregorian = parsi
            .to_gregorian()
            .map_err(|_| JalaliError::InvalidDate(year, month, day))?;
        Ok(JalaliDate {
            year,
            month,
            day,
            gregorian,
        })
    }

    fn from_parsi(parsi: ParsiDate) -> JalaliDate {
        let gregorian = parsi.to_gregorian().unwrap_or(NaiveDate::MIN);
        JalaliDate {
            year: parsi.year(),
            month: parsi.month(),
            day: parsi.day(),
            gregorian,
        }
    }

    /// Returns the Jalali year.
    pub const fn year(self) -> i32 {
        self.year
    }

    /// Returns the Jalali month, 1..=12.
    pub const fn month(self) -> u32 {
        self.month
    }

    /// Returns the day of the month, 1..=31.
    pub const fn day(self) -> u32 {
        self.day
    }

    /// Returns the salary period this date falls in.
    pub fn period(self) -> JalaliPeriod {
        JalaliPeriod {
            year: self.year,
            month: self.month,
        }
    }

    /// Returns the same day in the Gregorian calendar.
    pub const fn to_gregorian(self) -> NaiveDate {
        self.gregorian
    }

    /// Returns the number of days in this date's month.
    pub fn days_in_month(self) -> u32 {
        ParsiDate::days_in_month(self.year, self.month)
    }
}

impl fmt::Display for JalaliDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl Serialize for JalaliDate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Converts a Gregorian date to the Jalali calendar.
///
/// Dates outside the supported range (before 622-03-21 or after Jalali year 9999) saturate
/// to the first or last supported day.
pub fn jalali_from_gregorian(date: NaiveDate) -> JalaliDate {
    match ParsiDate::from_gregorian(date) {
        Ok(parsi) => JalaliDate::from_parsi(parsi),
        Err(_) if date < NaiveDate::from_ymd_opt(1000, 1, 1).unwrap_or(NaiveDate::MIN) => {
            JalaliDate::from_parsi(MIN_PARSI_DATE)
        }
        Err(_) => JalaliDate::from_parsi(MAX_PARSI_DATE),
    }
}

/// Returns the (Gregorian) calendar date in Tehran at the instant `at`, by which HR dates
/// are judged.
pub fn tehran_today(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&Tehran).date_naive()
}

/// Returns the Jalali date in Tehran at the instant `at`.
pub fn tehran_date(at: DateTime<Utc>) -> JalaliDate {
    jalali_from_gregorian(tehran_today(at))
}

/// Returns the salary period in Tehran at the instant `at`.
pub fn period_of(at: DateTime<Utc>) -> JalaliPeriod {
    tehran_date(at).period()
}

/// Returns the instant the day begins in Tehran (00:00 local time, or the first existing
/// local time when a historical daylight-saving change skipped midnight).
pub fn start_of_day(date: JalaliDate) -> DateTime<Utc> {
    let midnight: NaiveDateTime = date.gregorian.and_time(chrono::NaiveTime::MIN);
    for minutes in (0..=180).step_by(15) {
        let local = midnight + Duration::minutes(minutes);
        if let Some(instant) = Tehran.from_local_datetime(&local).earliest() {
            return instant.with_timezone(&Utc);
        }
    }
    // Not reachable with the Tehran rules; the fixed standard offset is the best answer.
    Utc.from_utc_datetime(&(midnight - Duration::minutes(210)))
}

/// Returns the instant credit used in the month before `period` is released:
/// 00:00 Tehran on the 8th of `period` (R17: a purchase in month m is released at
/// `release_instant(m.next())`).
pub fn release_instant(period: JalaliPeriod) -> DateTime<Utc> {
    let eighth = period.day(8).unwrap_or_else(|_| period.first_day());
    start_of_day(eighth)
}

/// Returns the length of service from `start` to `on` in Jalali years, months and days.
///
/// A month is complete on the same day number of a later month (clamped to that month's
/// last day); the days are counted after the last complete month. Returns `(0, 0, 0)` when
/// `on` is before `start`. Used by R8 (service of 28 years 11 months or more is refused).
pub fn service_length(start: NaiveDate, on: NaiveDate) -> (u32, u32, u32) {
    if on <= start {
        return (0, 0, 0);
    }
    let (Ok(from), Ok(to)) = (
        ParsiDate::from_gregorian(start),
        ParsiDate::from_gregorian(on),
    ) else {
        return (0, 0, 0);
    };
    // A month is 1..=12, which always fits an i32.
    let month_of = |date: &ParsiDate| i32::try_from(date.month()).unwrap_or(1);
    let mut months = (to.year() - from.year()) * 12 + month_of(&to) - month_of(&from);
    let anniversary = |months: i32| from.add_months(months).ok();
    while months > 0 {
        match anniversary(months) {
            Some(date) if date <= to => break,
            _ => months -= 1,
        }
    }
    let base = anniversary(months).unwrap_or(from);
    let days =
        u32::try_from(base.days_between(&to).unwrap_or(0).unsigned_abs()).unwrap_or(u32::MAX);
    let months = months.max(0).unsigned_abs();
    (months / 12, months % 12, days)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ymd(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn nowruz_2024_is_1403_01_01() {
        let date = jalali_from_gregorian(ymd(2024, 3, 20));
        assert_eq!(date.to_string(), "1403-01-01");
        assert_eq!(date.to_gregorian(), ymd(2024, 3, 20));
        assert_eq!(
            jalali_from_gregorian(ymd(2024, 3, 19)).to_string(),
            "1402-12-29"
        );
    }

    #[test]
    fn tehran_date_changes_at_tehran_midnight_not_utc_midnight() {
        // Tehran is UTC+03:30: 20:29 UTC on 2024-03-19 is 23:59 in Tehran, still 1402-12-29.
        assert_eq!(
            tehran_date(utc("2024-03-19T20:29:00Z")).to_string(),
            "1402-12-29"
        );
        assert_eq!(
            tehran_date(utc("2024-03-19T20:30:00Z")).to_string(),
            "1403-01-01"
        );
        assert_eq!(
            period_of(utc("2024-03-19T20:30:00Z")).to_string(),
            "1403-01"
        );
    }

    #[test]
    fn r17_release_instant_is_the_8th_at_tehran_midnight() {
        let period = JalaliPeriod::parse("1405-09").unwrap();
        let release = release_instant(period);

        assert_eq!(tehran_date(release).to_string(), "1405-09-08");
        assert_eq!(
            tehran_date(release - Duration::minutes(1)).to_string(),
            "1405-09-07"
        );
        assert_eq!(
            tehran_date(release + Duration::minutes(1)).to_string(),
            "1405-09-08"
        );
        let local = release.with_timezone(&Tehran);
        assert_eq!(local.format("%H:%M").to_string(), "00:00");
        // 1405-09-08 is 2026-11-29; 00:00 +03:30 is 20:30 UTC the day before.
        assert_eq!(release, utc("2026-11-28T20:30:00Z"));
    }

    #[test]
    fn r17_purchase_in_esfand_is_released_in_farvardin_of_next_year() {
        let esfand = JalaliPeriod::parse("1403-12").unwrap();
        let next = esfand.next();
        assert_eq!(next.to_string(), "1404-01");
        assert_eq!(tehran_date(release_instant(next)).to_string(), "1404-01-08");
    }

    #[test]
    fn esfand_of_a_leap_year_has_30_days() {
        assert_eq!(JalaliDate::new(1403, 12, 30).unwrap().days_in_month(), 30);
        assert!(JalaliDate::new(1402, 12, 30).is_err());
        assert_eq!(JalaliDate::new(1402, 12, 29).unwrap().days_in_month(), 29);
        // 1403-12-30 is 2025-03-20 and the next day is Nowruz 1404.
        assert_eq!(
            jalali_from_gregorian(ymd(2025, 3, 20)).to_string(),
            "1403-12-30"
        );
        assert_eq!(
            jalali_from_gregorian(ymd(2025, 3, 21)).to_string(),
            "1404-01-01"
        );
    }

    #[test]
    fn start_of_day_is_tehran_midnight_as_utc() {
        let nowruz = JalaliDate::new(1403, 1, 1).unwrap();
        assert_eq!(start_of_day(nowruz), utc("2024-03-19T20:30:00Z"));
    }

    #[test]
    fn period_parses_displays_and_orders() {
        let period = JalaliPeriod::parse("1405-09").unwrap();
        assert_eq!((period.year(), period.month()), (1405, 9));
        assert_eq!(period.to_string(), "1405-09");
        assert_eq!(JalaliPeriod::parse("۱۴۰۵-۰۹").unwrap(), period);
        for bad in [
            "1405-13", "1405-00", "1405-9", "14050-01", "1405/09", "", "abcd-ef",
        ] {
            assert!(JalaliPeriod::parse(bad).is_err(), "{bad}");
        }
        assert!(JalaliPeriod::parse("1405-08").unwrap() < period);
        assert!(JalaliPeriod::parse("1404-12").unwrap() < JalaliPeriod::parse("1405-01").unwrap());
    }

    #[test]
    fn period_arithmetic_crosses_year_ends() {
        let period = JalaliPeriod::parse("1404-11").unwrap();
        assert_eq!(period.add_months(2).to_string(), "1405-01");
        assert_eq!(period.add_months(14).to_string(), "1406-01");
        assert_eq!(period.add_months(0), period);
        assert_eq!(period.months_between(period.add_months(14)), 14);
        assert_eq!(period.add_months(3).months_between(period), -3);
        assert_eq!(
            JalaliPeriod::parse("1405-01")
                .unwrap()
                .previous()
                .to_string(),
            "1404-12"
        );
    }

    #[test]
    fn period_serializes_as_a_string() {
        let period = JalaliPeriod::parse("1405-09").unwrap();
        assert_eq!(serde_json::to_string(&period).unwrap(), "\"1405-09\"");
        assert_eq!(
            serde_json::from_str::<JalaliPeriod>("\"1405-09\"").unwrap(),
            period
        );
        assert!(serde_json::from_str::<JalaliPeriod>("\"1405-13\"").is_err());
    }

    #[test]
    fn r8_service_length_boundaries() {
        // Started 1375-01-15; 28 years 11 months later is 1403-12-15.
        let start = JalaliDate::new(1375, 1, 15).unwrap().to_gregorian();
        let before = JalaliDate::new(1403, 12, 14).unwrap().to_gregorian();
        let at = JalaliDate::new(1403, 12, 15).unwrap().to_gregorian();

        assert_eq!(service_length(start, before), (28, 10, 29));
        assert_eq!(service_length(start, at), (28, 11, 0));
    }

    #[test]
    fn service_length_counts_jalali_months_and_days() {
        let start = JalaliDate::new(1400, 6, 31).unwrap().to_gregorian();
        // Mehr has 30 days: the month from Shahrivar 31 completes on Mehr 30.
        let mehr_29 = JalaliDate::new(1400, 7, 29).unwrap().to_gregorian();
        let mehr_30 = JalaliDate::new(1400, 7, 30).unwrap().to_gregorian();
        assert_eq!(service_length(start, mehr_29), (0, 0, 29));
        assert_eq!(service_length(start, mehr_30), (0, 1, 0));
        assert_eq!(service_length(start, start), (0, 0, 0));
        assert_eq!(service_length(mehr_30, start), (0, 0, 0));
        let later = JalaliDate::new(1402, 8, 2).unwrap().to_gregorian();
        assert_eq!(service_length(start, later), (2, 1, 2));
    }
}
