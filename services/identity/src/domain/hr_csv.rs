//! The HR CSV file (R1): a header of [`CSV_COLUMNS`], then one employee a line. Each line
//! is parsed on its own, so a bad line rejects only itself, with its line number and why.

use chrono::NaiveDate;
use tavana_kit::error::Violation;

use super::employee::{CSV_COLUMNS, EmployeeData, RawEmployee, is_csv_header};

/// One data line of an HR CSV: its number in the file (the header is line 1) and the
/// employee it carries, or why it carries none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvLine {
    /// The line number in the file.
    pub line: u32,
    /// The parsed HR data, or the line's violations.
    pub parsed: Result<EmployeeData, Vec<Violation>>,
}

/// Returns the line number of a CSV position; a file of more than `u32::MAX` lines
/// reports `u32::MAX` (a documented saturation: the number is only shown to people).
fn line_number(position: &csv::Position) -> u32 {
    u32::try_from(position.line()).unwrap_or(u32::MAX)
}

/// Parses an HR CSV (R1, R2) as of `today`: refuses the whole file when its first line
/// is not the header, otherwise returns every data line, parsed or refused.
pub fn parse_hr_csv(csv: &[u8], today: NaiveDate) -> Result<Vec<CsvLine>, Violation> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(csv);
    let header_ok = match reader.headers() {
        Ok(headers) => is_csv_header(&headers.iter().collect::<Vec<_>>()),
        Err(_) => false,
    };
    if !header_ok {
        return Err(Violation::new(
            "csv",
            "csv_header_invalid",
            format!(
                "The first line must be the header {}.",
                CSV_COLUMNS.join(",")
            ),
            format!("سطر نخست باید سرستون‌های {} باشد.", CSV_COLUMNS.join(",")),
        ));
    }
    let mut lines = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut fallback_line: u32 = 1;
    loop {
        fallback_line = fallback_line.saturating_add(1);
        let read = reader.read_record(&mut record);
        let line = record.position().map(line_number).unwrap_or(fallback_line);
        match read {
            Ok(false) => break,
            Ok(true) => {}
            Err(error) => {
                lines.push(CsvLine {
                    line: error.position().map(line_number).unwrap_or(fallback_line),
                    parsed: Err(vec![Violation::new(
                        "line",
                        "csv_line_invalid",
                        "The line is not valid CSV text.",
                        "این سطر متن CSV معتبری نیست.",
                    )]),
                });
                continue;
            }
        }
        if record.len() != CSV_COLUMNS.len() {
            lines.push(CsvLine {
                line,
                parsed: Err(vec![Violation::new(
                    "line",
                    "csv_columns_invalid",
                    format!("The line must have {} columns.", CSV_COLUMNS.len()),
                    format!("این سطر باید {} ستون داشته باشد.", CSV_COLUMNS.len()),
                )]),
            });
            continue;
        }
        let field = |index: usize| record.get(index).unwrap_or_default().to_owned();
        let raw = RawEmployee {
            national_id: field(0),
            full_name: field(1),
            mobile: field(2),
            organization_id: field(3),
            region_code: field(4),
            net_salary: field(5),
            service_start_date: field(6),
        };
        lines.push(CsvLine {
            line,
            parsed: EmployeeData::parse(&raw, today),
        });
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "national_id,full_name,mobile,organization_id,region_code,net_salary,service_start_date";

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
    }

    fn codes(line: &CsvLine) -> Vec<String> {
        match &line.parsed {
            Ok(_) => Vec::new(),
            Err(violations) => violations.iter().map(|v| v.code.clone()).collect(),
        }
    }

    #[test]
    fn r1_a_file_without_the_header_is_refused_whole() {
        let refused = parse_hr_csv(
            b"0012345679,Ali,09121234567,org,R1,1000,2020-01-01\n",
            today(),
        )
        .unwrap_err();

        assert_eq!(refused.code, "csv_header_invalid");
    }

    #[test]
    fn r1_each_bad_line_rejects_only_itself_with_its_line_number() {
        let csv = format!(
            "{HEADER}\nonly,three,columns\n0012345678,Ali,09121234567,org,R1,1000,2020-01-01\n"
        );

        let lines = parse_hr_csv(csv.as_bytes(), today()).unwrap();

        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].line, 2);
        assert_eq!(codes(&lines[0]), ["csv_columns_invalid"]);
        assert_eq!(lines[1].line, 3);
        assert!(codes(&lines[1]).contains(&"national_id_invalid".to_owned()));
    }

    #[test]
    fn r1_a_header_with_a_byte_order_mark_and_other_case_is_accepted() {
        let csv = format!("\u{feff}{}\n", HEADER.to_uppercase());

        assert_eq!(parse_hr_csv(csv.as_bytes(), today()).unwrap(), Vec::new());
    }
}
