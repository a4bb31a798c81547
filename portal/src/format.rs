//! How the portal writes numbers, money and dates: Persian digits and Jalali
//! dates in Asia/Tehran time for Persian, Latin digits for English.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Asia::Tehran;
use parsidate::ParsiDate;

use crate::i18n::Lang;

/// Persian month names, Farvardin first.
const MONTHS_FA: [&str; 12] = [
    "فروردین",
    "اردیبهشت",
    "خرداد",
    "تیر",
    "مرداد",
    "شهریور",
    "مهر",
    "آبان",
    "آذر",
    "دی",
    "بهمن",
    "اسفند",
];

/// Jalali month names as English speakers in Iran write them.
const MONTHS_EN: [&str; 12] = [
    "Farvardin",
    "Ordibehesht",
    "Khordad",
    "Tir",
    "Mordad",
    "Shahrivar",
    "Mehr",
    "Aban",
    "Azar",
    "Dey",
    "Bahman",
    "Esfand",
];

/// Returns `text` with every ASCII digit replaced by its Persian form
/// (۰..۹); everything else is kept.
pub fn persian_digits(text: &str) -> String {
    text.chars()
        .map(|character| match character.to_digit(10) {
            Some(digit) if character.is_ascii_digit() => {
                char::from_u32(0x06F0 + digit).unwrap_or(character)
            }
            _ => character,
        })
        .collect()
}

/// Returns `text` with Persian (۰..۹) and Arabic-Indic (٠..٩) digits turned
/// into ASCII digits, as people may type either.
pub fn ascii_digits(text: &str) -> String {
    text.chars()
        .map(|character| match character as u32 {
            code @ 0x06F0..=0x06F9 => char::from_u32(code - 0x06F0 + '0' as u32),
            code @ 0x0660..=0x0669 => char::from_u32(code - 0x0660 + '0' as u32),
            _ => Some(character),
        })
        .map(|character| character.unwrap_or('?'))
        .collect()
}

/// Writes digits in the script of `lang`.
pub fn digits(text: &str, lang: Lang) -> String {
    match lang {
        Lang::Fa => persian_digits(text),
        Lang::En => text.to_owned(),
    }
}

/// Groups an integer's digits by thousands: `1,234,567` in English,
/// `۱٬۲۳۴٬۵۶۷` (Arabic thousands separator) in Persian.
pub fn grouped(value: i64, lang: Lang) -> String {
    let plain = value.unsigned_abs().to_string();
    let separator = match lang {
        Lang::Fa => '\u{066C}',
        Lang::En => ',',
    };
    let mut out = String::with_capacity(plain.len() + plain.len() / 3 + 1);
    if value < 0 {
        out.push('-');
    }
    for (index, character) in plain.chars().enumerate() {
        if index > 0 && (plain.len() - index).is_multiple_of(3) {
            out.push(separator);
        }
        out.push(character);
    }
    digits(&out, lang)
}

/// Writes an amount of rial in toman (1 toman = 10 rial, a remainder shown
/// as a tenth) with the rial amount beside it:
/// `۱٬۲۳۴ تومان (۱۲٬۳۴۰ ریال)`.
pub fn money(rial: i64, lang: Lang) -> String {
    let whole = rial / 10;
    let tenths = (rial % 10).unsigned_abs();
    let mut toman = grouped(whole, lang);
    if tenths != 0 {
        if rial < 0 && whole == 0 {
            toman.insert(0, '-');
        }
        let decimal_point = match lang {
            Lang::Fa => '\u{066B}',
            Lang::En => '.',
        };
        toman.push(decimal_point);
        toman.push_str(&digits(&tenths.to_string(), lang));
    }
    match lang {
        Lang::Fa => format!("{toman} تومان ({} ریال)", grouped(rial, lang)),
        Lang::En => format!("{toman} toman ({} rial)", grouped(rial, lang)),
    }
}

/// Returns the Jalali date of a Gregorian calendar date.
fn jalali(date: NaiveDate) -> Option<ParsiDate> {
    ParsiDate::from_gregorian(date).ok()
}

fn write_jalali(date: ParsiDate, lang: Lang) -> String {
    let month_index = (date.month() as usize).saturating_sub(1);
    match lang {
        Lang::Fa => format!(
            "{} {} {}",
            persian_digits(&date.day().to_string()),
            MONTHS_FA.get(month_index).copied().unwrap_or("?"),
            persian_digits(&date.year().to_string())
        ),
        Lang::En => format!(
            "{} {} {}",
            date.day(),
            MONTHS_EN.get(month_index).copied().unwrap_or("?"),
            date.year()
        ),
    }
}

/// Writes an instant as its Jalali date and time in Tehran:
/// `۸ آذر ۱۴۰۵، ۰۰:۰۰`.
pub fn jalali_datetime(instant: DateTime<Utc>, lang: Lang) -> String {
    let local = instant.with_timezone(&Tehran);
    let Some(date) = jalali(local.date_naive()) else {
        return instant.to_rfc3339();
    };
    let time = local.format("%H:%M").to_string();
    match lang {
        Lang::Fa => format!(
            "{}، ساعت {}",
            write_jalali(date, lang),
            persian_digits(&time)
        ),
        Lang::En => format!("{}, {} Tehran", write_jalali(date, lang), time),
    }
}

/// Writes an instant's Jalali date in Tehran, without the time.
pub fn jalali_day(instant: DateTime<Utc>, lang: Lang) -> String {
    let local = instant.with_timezone(&Tehran);
    match jalali(local.date_naive()) {
        Some(date) => write_jalali(date, lang),
        None => instant.to_rfc3339(),
    }
}

/// Writes a Gregorian `YYYY-MM-DD` (as HR dates arrive) as a Jalali date;
/// anything else is shown as given.
pub fn jalali_from_iso_date(text: &str, lang: Lang) -> String {
    match NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(jalali)
    {
        Some(date) => write_jalali(date, lang),
        None => digits(text, lang),
    }
}

/// Writes a salary period `YYYY-MM` (Jalali) as `آذر ۱۴۰۵`.
pub fn jalali_period(period: &str, lang: Lang) -> String {
    let parsed = period.split_once('-').and_then(|(year, month)| {
        let year: i32 = year.parse().ok()?;
        let month: usize = month.parse().ok()?;
        Some((year, month))
    });
    match parsed {
        Some((year, month @ 1..=12)) => match lang {
            Lang::Fa => format!(
                "{} {}",
                MONTHS_FA[month - 1],
                persian_digits(&year.to_string())
            ),
            Lang::En => format!("{} {year}", MONTHS_EN[month - 1]),
        },
        _ => digits(period, lang),
    }
}

/// Parses an RFC 3339 time as the API sends it.
pub fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|instant| instant.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn ascii_digits_become_persian_and_other_characters_stay() {
        assert_eq!(persian_digits("R01 1405-09"), "R۰۱ ۱۴۰۵-۰۹");
    }

    #[test]
    fn persian_and_arabic_indic_digits_are_read_as_ascii() {
        assert_eq!(ascii_digits("۰۹۱۲٠١٢3"), "09120123");
    }

    #[test]
    fn thousands_are_grouped_with_the_script_of_the_language() {
        assert_eq!(grouped(1_234_567, Lang::En), "1,234,567");
        assert_eq!(grouped(1_234_567, Lang::Fa), "۱٬۲۳۴٬۵۶۷");
        assert_eq!(grouped(999, Lang::En), "999");
        assert_eq!(grouped(-1000, Lang::En), "-1,000");
        assert_eq!(grouped(0, Lang::Fa), "۰");
    }

    #[test]
    fn money_shows_toman_with_rial_beside() {
        assert_eq!(
            money(12_500_000, Lang::Fa),
            "۱٬۲۵۰٬۰۰۰ تومان (۱۲٬۵۰۰٬۰۰۰ ریال)"
        );
        assert_eq!(
            money(12_500_000, Lang::En),
            "1,250,000 toman (12,500,000 rial)"
        );
    }

    #[test]
    fn a_rial_remainder_is_shown_as_a_tenth_of_a_toman() {
        assert_eq!(money(12_345, Lang::En), "1,234.5 toman (12,345 rial)");
        assert_eq!(money(12_345, Lang::Fa), "۱٬۲۳۴٫۵ تومان (۱۲٬۳۴۵ ریال)");
        assert_eq!(money(-5, Lang::En), "-0.5 toman (-5 rial)");
    }

    #[test]
    fn nowruz_1403_is_the_first_of_farvardin_in_persian_digits() {
        // 2024-03-20 00:00 Tehran is 2024-03-19 20:30 UTC.
        let instant = Utc.with_ymd_and_hms(2024, 3, 19, 20, 30, 0).unwrap();

        assert_eq!(
            jalali_datetime(instant, Lang::Fa),
            "۱ فروردین ۱۴۰۳، ساعت ۰۰:۰۰"
        );
        assert_eq!(jalali_day(instant, Lang::En), "1 Farvardin 1403");
    }

    #[test]
    fn jalali_dates_use_tehran_time_not_utc() {
        // 2025-11-28 21:00 UTC is already 29 Nov (8 Azar 1404) 00:30 in Tehran.
        let instant = Utc.with_ymd_and_hms(2025, 11, 28, 21, 0, 0).unwrap();

        assert_eq!(jalali_datetime(instant, Lang::Fa), "۸ آذر ۱۴۰۴، ساعت ۰۰:۳۰");
    }

    #[test]
    fn hr_dates_and_salary_periods_are_written_in_jalali() {
        assert_eq!(
            jalali_from_iso_date("2024-03-20", Lang::Fa),
            "۱ فروردین ۱۴۰۳"
        );
        assert_eq!(jalali_from_iso_date("not a date", Lang::En), "not a date");
        assert_eq!(jalali_period("1405-09", Lang::Fa), "آذر ۱۴۰۵");
        assert_eq!(jalali_period("1405-09", Lang::En), "Azar 1405");
        assert_eq!(jalali_period("1405-13", Lang::En), "1405-13");
    }

    #[test]
    fn api_times_with_offsets_are_parsed() {
        let instant = parse_instant("2024-03-20T00:00:00+03:30").unwrap();
        assert_eq!(
            instant,
            Utc.with_ymd_and_hms(2024, 3, 19, 20, 30, 0).unwrap()
        );
        assert!(parse_instant("yesterday").is_none());
    }
}
