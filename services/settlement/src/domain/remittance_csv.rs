//! The bank's remittance file (R23): a CSV whose header names `national_id` and `amount` (in
//! any order, other columns ignored), then one deduction a line.
//!
//! Every data line becomes a line of the remittance, numbered by its physical line in the
//! file (the header is line 1, blank lines count). A line that cannot be read is kept with a
//! code (`line_malformed`, `amount_invalid`) and comes back unmatched: nothing is dropped.
//! The lines are checked as they are read ([`check_line`]), so the file's text is the only
//! other copy held.

use tavana_kit::error::Violation;

use super::remittance::{CheckedLines, RawLine, check_line};

/// The code of a line the CSV reader could not read, or without an amount column.
pub const LINE_MALFORMED: &str = "line_malformed";
/// The code of a line whose amount is not a whole number of rials.
pub const AMOUNT_INVALID: &str = "amount_invalid";

/// Finds the physical line of a record: the reader reports the offset where it started
/// looking, before any blank lines it skipped.
#[derive(Default)]
struct LineCounter {
    offset: usize,
    line: u32,
}

impl LineCounter {
    fn line_at(&mut self, body: &[u8], byte: u64) -> u32 {
        let mut start = usize::try_from(byte).unwrap_or(usize::MAX).min(body.len());
        while start < body.len() && matches!(body[start], b'\r' | b'\n') {
            start += 1;
        }
        if start >= self.offset {
            let newlines = newlines(&body[self.offset..start]);
            // Saturates rather than overflows: u32::MAX lines is far past any upload limit.
            self.line = self
                .line
                .saturating_add(u32::try_from(newlines).unwrap_or(u32::MAX));
            self.offset = start;
        }
        self.line.saturating_add(1)
    }
}

fn newlines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|byte| **byte == b'\n').count()
}

/// The refusal of a file whose first line is not a header naming both columns.
pub fn header_invalid() -> Violation {
    Violation::new(
        "csv",
        "csv_header_invalid",
        "The CSV must start with a header line naming national_id and amount.",
        "سطر نخست CSV باید ستون‌های national_id و amount را نام ببرد.",
    )
}

/// Reads a remittance CSV: refuses the whole file when its first line is not the header,
/// otherwise returns every data line, checked.
pub fn parse_remittance_csv(body: &[u8]) -> Result<CheckedLines, Violation> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let header = reader.headers().map_err(|_| header_invalid())?;
    let column = |name: &str| {
        header
            .iter()
            .position(|field| field.trim().eq_ignore_ascii_case(name))
    };
    let (Some(id_column), Some(amount_column)) = (column("national_id"), column("amount")) else {
        return Err(header_invalid());
    };
    let mut lines = CheckedLines::with_capacity(newlines(body));
    let mut record = csv::StringRecord::new();
    let mut counter = LineCounter::default();
    loop {
        let read = reader.read_record(&mut record);
        let line = record
            .position()
            .map_or(0, |p| counter.line_at(body, p.byte()));
        let malformed = |line| RawLine {
            line,
            national_id: String::new(),
            amount: 0,
            malformed_code: LINE_MALFORMED.to_owned(),
        };
        match read {
            Ok(false) => break,
            Ok(true) => {}
            Err(error) => {
                // A line number beyond u32 (far past any upload limit) is reported as 0, as
                // for a line without a position.
                let line = error
                    .position()
                    .map_or(line, |p| u32::try_from(p.line()).unwrap_or(0));
                lines.push(check_line(&malformed(line)));
                continue;
            }
        }
        if record.iter().all(str::is_empty) {
            continue;
        }
        let national_id = record.get(id_column).unwrap_or_default().to_owned();
        // A line without the national ID's column is malformed, whatever else it has.
        let raw = match record.get(id_column).and(record.get(amount_column)) {
            None => RawLine {
                national_id,
                ..malformed(line)
            },
            Some(text) => match text.replace(['_', ','], "").parse::<i64>() {
                Ok(amount) => RawLine {
                    line,
                    national_id,
                    amount,
                    malformed_code: String::new(),
                },
                Err(_) => RawLine {
                    national_id,
                    malformed_code: AMOUNT_INVALID.to_owned(),
                    ..malformed(line)
                },
            },
        };
        lines.push(check_line(&raw));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use tavana_kit::money::Rial;

    use super::*;
    use crate::domain::remittance::{SortedLines, UnmatchedCode, ValidLine};

    /// Every line as (line, national ID, amount, code); the code is empty for a valid line.
    fn summary(lines: CheckedLines) -> Vec<(u32, String, i64, String)> {
        let SortedLines { valid, rejected } = lines.into_sorted();
        let mut all: Vec<_> = valid
            .into_iter()
            .map(|line| {
                (
                    line.line,
                    line.national_id.as_str().to_owned(),
                    line.amount.as_i64(),
                    String::new(),
                )
            })
            .chain(rejected.into_iter().map(|line| {
                (
                    line.line,
                    line.national_id,
                    line.amount.as_i64(),
                    line.code.as_str().to_owned(),
                )
            }))
            .collect();
        all.sort();
        all
    }

    #[test]
    fn r23_csv_lines_keep_their_file_line_numbers_and_malformed_lines_are_kept() {
        let body = "\u{FEFF}amount,national_id\n40,0012345679\n\nabc,0012345679\n12\n50,0499370899,extra\n1_000,0012345679\n";
        // Line 5 has an amount but no national ID column: malformed, not an invalid ID.

        let lines = parse_remittance_csv(body.as_bytes()).unwrap();

        let row = |line: u32, id: &str, amount: i64, code: &str| {
            (line, id.to_owned(), amount, code.to_owned())
        };
        assert_eq!(
            summary(lines),
            [
                row(2, "0012345679", 40, ""),
                row(4, "0012345679", 0, AMOUNT_INVALID),
                row(5, "", 0, LINE_MALFORMED),
                row(6, "0499370899", 50, ""),
                row(7, "0012345679", 1_000, ""),
            ]
        );
    }

    #[test]
    fn r23_csv_lines_are_checked_as_they_are_read() {
        let body = "national_id,amount\n12345,10\n0012345679,0\n0012345679,1\n";

        let lines = parse_remittance_csv(body.as_bytes()).unwrap();

        assert_eq!(lines.len(), 3);
        assert_eq!(lines.amount(), 11);
        let SortedLines { valid, rejected } = lines.into_sorted();
        assert_eq!(
            valid,
            [ValidLine {
                line: 4,
                national_id: tavana_kit::ids::NationalId::parse("0012345679").unwrap(),
                amount: Rial(1),
            }]
        );
        let codes: Vec<_> = rejected
            .iter()
            .map(|line| (line.line, &line.code))
            .collect();
        assert_eq!(
            codes,
            [
                (2, &UnmatchedCode::NationalIdInvalid),
                (3, &UnmatchedCode::AmountNotPositive)
            ]
        );
    }

    #[test]
    fn a_csv_without_the_header_is_refused() {
        for body in ["0012345679,40\n", "national_id,sum\n0012345679,40\n", ""] {
            let refused = parse_remittance_csv(body.as_bytes()).unwrap_err();
            assert_eq!(refused.code, "csv_header_invalid", "{body:?}");
            assert_eq!(refused.field, "csv");
        }
    }

    #[test]
    fn a_100_000_line_csv_parses_every_line() {
        let mut body = String::from("national_id,amount\n");
        for n in 0..100_000 {
            body.push_str(&format!("{:010},{}\n", n, n + 1));
        }
        let lines = parse_remittance_csv(body.as_bytes()).unwrap();
        assert_eq!(lines.len(), 100_000);
        assert_eq!(lines.amount(), (1..=100_000i64).sum::<i64>());
        let SortedLines { valid, rejected } = lines.into_sorted();
        let numbers: std::collections::BTreeSet<u32> = valid
            .iter()
            .map(|line| line.line)
            .chain(rejected.iter().map(|line| line.line))
            .collect();
        assert_eq!(numbers.len(), 100_000);
        assert_eq!(numbers.last(), Some(&100_001));
    }
}
