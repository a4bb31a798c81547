//! HR data of an employee (R1), parsed from what an admin or a CSV line sends (R2).

use chrono::{Datelike, NaiveDate};
use tavana_kit::error::Violation;
use tavana_kit::ids::{Mobile, NationalId, OrganizationId, RegionCode, normalize_digits};
use tavana_kit::money::Rial;

/// The CSV header of the HR import, in order.
pub const CSV_COLUMNS: [&str; 7] = [
    "national_id",
    "full_name",
    "mobile",
    "organization_id",
    "region_code",
    "net_salary",
    "service_start_date",
];

/// HR data as received, before parsing.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct RawEmployee {
    /// The national ID as written (Persian digits and spaces allowed, R2).
    pub national_id: String,
    /// The full name.
    pub full_name: String,
    /// The mobile as written (`09..`, `+989..`, Persian digits).
    pub mobile: String,
    /// The employing organization's id.
    pub organization_id: String,
    /// The region's code, e.g. `R01`.
    pub region_code: String,
    /// The monthly net salary in rial, as written.
    pub net_salary: String,
    /// The service start date, Gregorian `YYYY-MM-DD`.
    pub service_start_date: String,
}

/// Valid HR data of one employee (R1): every field parsed and normalized (R2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmployeeData {
    /// The national ID, check digit verified (R2).
    pub national_id: NationalId,
    /// The full name, trimmed.
    pub full_name: String,
    /// The mobile in its canonical `09xxxxxxxxx` form.
    pub mobile: Mobile,
    /// The employing organization's id.
    pub organization_id: String,
    /// The region's code.
    pub region_code: String,
    /// The monthly net salary; a quarter of it is the most M can be (R7).
    pub net_salary: Rial,
    /// The service start date (R8 counts service length from it).
    pub service_start_date: NaiveDate,
}

fn violation(field: &str, code: &str, en: &str, fa: &str) -> Violation {
    Violation::new(field, code, en, fa)
}

impl EmployeeData {
    /// Parses HR data; reports every invalid field, not just the first.
    ///
    /// `today` bounds the service start date: nobody started working in the future.
    pub fn parse(raw: &RawEmployee, today: NaiveDate) -> Result<EmployeeData, Vec<Violation>> {
        let mut violations = Vec::new();

        let national_id = NationalId::parse(&raw.national_id)
            .map_err(|error| {
                violations.push(violation(
                    "national_id",
                    error.code(),
                    "The national ID is invalid.",
                    error.message_fa(),
                ))
            })
            .ok();

        let full_name = raw
            .full_name
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        // A NUL (which an uploaded file may hold) is no name's, and no text column stores it.
        if full_name.is_empty() || full_name.chars().count() > 200 || full_name.contains('\0') {
            violations.push(violation(
                "full_name",
                "full_name_invalid",
                "The full name must have 1 to 200 characters, none of them NUL.",
                "نام و نام خانوادگی باید ۱ تا ۲۰۰ نویسه و بدون نویسهٔ NUL باشد.",
            ));
        }

        let mobile = Mobile::parse(&raw.mobile)
            .map_err(|error| {
                violations.push(violation(
                    "mobile",
                    error.code(),
                    "The mobile number is invalid.",
                    error.message_fa(),
                ))
            })
            .ok();

        // Codes as HR stores them: `org-01` is ORG-01, `teh-۱۹` is TEH-19.
        let organization_id = OrganizationId::parse(&raw.organization_id)
            .map(OrganizationId::into_string)
            .map_err(|error| violations.push(error.violation("organization_id")))
            .unwrap_or_default();

        let region_code = RegionCode::parse(&raw.region_code)
            .map(RegionCode::into_string)
            .map_err(|error| violations.push(error.violation("region_code")))
            .unwrap_or_default();

        let salary_text: String = normalize_digits(raw.net_salary.trim())
            .chars()
            .filter(|c| *c != ',' && *c != '_' && *c != '٬')
            .collect();
        let net_salary = match salary_text.parse::<i64>() {
            Ok(rial) if rial > 0 => Some(Rial(rial)),
            _ => {
                violations.push(violation(
                    "net_salary",
                    "net_salary_invalid",
                    "The net salary must be a positive whole number of rial.",
                    "حقوق خالص باید عددی صحیح و مثبت به ریال باشد.",
                ));
                None
            }
        };

        let date_text = normalize_digits(raw.service_start_date.trim());
        let service_start_date = match NaiveDate::parse_from_str(&date_text, "%Y-%m-%d") {
            // A year before 1900 is a Jalali date written where a Gregorian one belongs.
            Ok(date) if date.year() < 1900 => {
                violations.push(violation(
                    "service_start_date",
                    "service_start_date_invalid",
                    "The service start date must be a Gregorian date YYYY-MM-DD (this looks like a Jalali date).",
                    "تاریخ شروع خدمت باید میلادی و به شکل YYYY-MM-DD باشد (این تاریخ شمسی به نظر می‌رسد).",
                ));
                None
            }
            Ok(date) if date <= today => Some(date),
            Ok(_) => {
                violations.push(violation(
                    "service_start_date",
                    "service_start_date_in_future",
                    "The service start date is in the future.",
                    "تاریخ شروع خدمت در آینده است.",
                ));
                None
            }
            Err(_) => {
                violations.push(violation(
                    "service_start_date",
                    "service_start_date_invalid",
                    "The service start date must be a Gregorian date YYYY-MM-DD.",
                    "تاریخ شروع خدمت باید تاریخ میلادی به شکل YYYY-MM-DD باشد.",
                ));
                None
            }
        };

        match (national_id, mobile, net_salary, service_start_date) {
            (Some(national_id), Some(mobile), Some(net_salary), Some(service_start_date))
                if violations.is_empty() =>
            {
                Ok(EmployeeData {
                    national_id,
                    full_name,
                    mobile,
                    organization_id,
                    region_code,
                    net_salary,
                    service_start_date,
                })
            }
            _ => Err(violations),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()
    }

    fn raw() -> RawEmployee {
        RawEmployee {
            national_id: "0012345679".into(),
            full_name: "  علی   رضایی ".into(),
            mobile: "+989121234567".into(),
            organization_id: "ORG-01".into(),
            region_code: "r01".into(),
            net_salary: "200,000,000".into(),
            service_start_date: "2012-09-23".into(),
        }
    }

    #[test]
    fn r1_r2_valid_data_is_normalized() {
        let data = EmployeeData::parse(&raw(), today()).unwrap();
        assert_eq!(data.national_id.as_str(), "0012345679");
        assert_eq!(data.full_name, "علی رضایی");
        assert_eq!(data.mobile.as_str(), "09121234567");
        assert_eq!(data.region_code, "R01");
        assert_eq!(data.net_salary, Rial(200_000_000));
    }

    #[test]
    fn r2_persian_digits_are_accepted_everywhere() {
        let mut raw = raw();
        raw.national_id = "۰۰۱۲۳۴۵۶۷۹".into();
        raw.mobile = "۰۹۱۲۱۲۳۴۵۶۷".into();
        raw.net_salary = "۱۰۰۰".into();
        raw.service_start_date = "۲۰۱۲-۰۹-۲۳".into();
        let data = EmployeeData::parse(&raw, today()).unwrap();
        assert_eq!(data.net_salary, Rial(1000));
    }

    #[test]
    fn every_invalid_field_is_reported() {
        let raw = RawEmployee {
            national_id: "1111111111".into(),
            full_name: " ".into(),
            mobile: "02112345678".into(),
            organization_id: "".into(),
            region_code: "R 1".into(),
            net_salary: "-5".into(),
            service_start_date: "1401-01-01x".into(),
        };
        let codes: Vec<String> = EmployeeData::parse(&raw, today())
            .unwrap_err()
            .into_iter()
            .map(|v| v.code)
            .collect();
        assert_eq!(
            codes,
            [
                "national_id_invalid",
                "full_name_invalid",
                "mobile_invalid",
                "organization_id_invalid",
                "region_code_invalid",
                "net_salary_invalid",
                "service_start_date_invalid"
            ]
        );
    }

    #[test]
    fn service_start_in_the_future_is_refused() {
        let mut raw = raw();
        raw.service_start_date = "2026-01-02".into();
        let violations = EmployeeData::parse(&raw, today()).unwrap_err();
        assert_eq!(violations[0].code, "service_start_date_in_future");
        raw.service_start_date = "2026-01-01".into();
        assert!(EmployeeData::parse(&raw, today()).is_ok());
        raw.service_start_date = "1391-07-01".into();
        let violations = EmployeeData::parse(&raw, today()).unwrap_err();
        assert_eq!(violations[0].code, "service_start_date_invalid");
    }

    #[test]
    fn zero_salary_is_refused() {
        let mut raw = raw();
        raw.net_salary = "0".into();
        assert_eq!(
            EmployeeData::parse(&raw, today()).unwrap_err()[0].code,
            "net_salary_invalid"
        );
    }
}

/// One CSV line that was not imported, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RejectedLine {
    /// The line number in the file (the header is line 1).
    pub line: u32,
    /// A stable code, e.g. `national_id_invalid` or `mobile_change_requires_support`.
    pub code: String,
    /// Why, in English.
    pub message_en: String,
    /// Why, in Persian.
    pub message_fa: String,
}

/// The outcome of an HR import: a bad line rejects only itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportReport {
    /// Employees created.
    pub created: u32,
    /// Employees updated.
    pub updated: u32,
    /// Lines refused, each with its reason (R1).
    pub rejected: Vec<RejectedLine>,
}

/// Returns true when `headers` are the HR CSV columns (case and spaces aside, with or
/// without a byte-order mark).
pub fn is_csv_header(headers: &[&str]) -> bool {
    headers.len() == CSV_COLUMNS.len()
        && headers.iter().zip(CSV_COLUMNS).all(|(got, want)| {
            got.trim_start_matches('\u{feff}')
                .trim()
                .eq_ignore_ascii_case(want)
        })
}

/// Joins the violations of a line into one English and one Persian message.
pub fn rejected_line(line: u32, violations: &[Violation]) -> RejectedLine {
    let join = |message: fn(&Violation) -> String| {
        violations.iter().map(message).collect::<Vec<_>>().join(" ")
    };
    RejectedLine {
        line,
        code: violations
            .first()
            .map(|v| v.code.clone())
            .unwrap_or_else(|| "invalid_argument".to_owned()),
        message_en: join(|v| format!("{}: {}", v.field, v.message_en)),
        message_fa: join(|v| format!("{}: {}", v.field, v.message_fa)),
    }
}
