//! R23: matching a remittance's lines against the instalments they pay.
//!
//! Each valid line pays what the remittance's period's deduction list asked of its employee
//! (R22): their unsettled instalments of that period, arrears re-aged into it included
//! (R29), never those of older months, so an instalment missed earlier does not block this
//! one. Instalments are taken in order (original period, then position). An exact match settles them
//! all; anything else is kept as an unmatched line with a code and, unless partial
//! settlement is configured, settles nothing. One employee's lines are taken in document
//! order, so a second line sees what the first settled. Nothing is dropped: every line
//! either settles instalments or comes back unmatched (or both, for a partial settlement).
//!
//! Employees are independent of each other, so the lines are matched employee by employee
//! in national ID order: a large remittance is matched in chunks that never split an
//! employee ([`employee_chunks`]), each against the instalments of its own employees.

use std::collections::{HashMap, HashSet, VecDeque};

use tavana_kit::ids::NationalId;
use tavana_kit::jalali::JalaliPeriod;
use tavana_kit::money::Rial;

/// The longest text kept of a malformed national ID.
const MAX_RAW_NATIONAL_ID: usize = 32;

/// Why a line did not settle (all or part of) its amount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnmatchedCode {
    /// The national ID is not a valid one (R2).
    NationalIdInvalid,
    /// The amount is zero or negative.
    AmountNotPositive,
    /// No instalment was ever recorded for that employee in this organization.
    UnknownEmployee,
    /// The employee owes nothing in the period.
    NothingDue,
    /// The amount is less than what is due.
    AmountShort,
    /// The amount is more than what is due.
    AmountOver,
    /// The client could not read the line (e.g. a CSV line without an amount); its code.
    Malformed(String),
}

impl UnmatchedCode {
    /// Returns the stable snake_case code.
    pub fn as_str(&self) -> &str {
        match self {
            UnmatchedCode::NationalIdInvalid => "national_id_invalid",
            UnmatchedCode::AmountNotPositive => "amount_not_positive",
            UnmatchedCode::UnknownEmployee => "unknown_employee",
            UnmatchedCode::NothingDue => "nothing_due",
            UnmatchedCode::AmountShort => "amount_short",
            UnmatchedCode::AmountOver => "amount_over",
            UnmatchedCode::Malformed(code) => code,
        }
    }
}

/// A line as received, before it is checked.
#[derive(Clone, Debug)]
pub struct RawLine {
    /// The line's number in the uploaded document.
    pub line: u32,
    /// The national ID as written.
    pub national_id: String,
    /// The amount in rials as written.
    pub amount: i64,
    /// Set by a client that could not read the line; empty otherwise.
    pub malformed_code: String,
}

/// A line that may pay instalments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidLine {
    /// The line's number in the uploaded document.
    pub line: u32,
    /// Whose salary it was deducted from.
    pub national_id: NationalId,
    /// How much was deducted.
    pub amount: Rial,
}

/// A line kept for support to review.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnmatchedLine {
    /// The line's number in the uploaded document.
    pub line: u32,
    /// The national ID as written (normalized when valid).
    pub national_id: String,
    /// The amount that was not used to settle instalments.
    pub amount: Rial,
    /// Why.
    pub code: UnmatchedCode,
}

/// A line after checking: it may pay, or it is already unmatched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckedLine {
    /// A line that may pay instalments.
    Valid(ValidLine),
    /// A malformed line.
    Rejected(UnmatchedLine),
}

/// Returns what is kept of a line's text for review: its first [`MAX_RAW_NATIONAL_ID`]
/// characters, a NUL shown as U+FFFD (no text column stores a NUL, and a bank's file may
/// hold one: the line is kept, not the whole remittance refused).
fn truncate(text: &str) -> String {
    text.chars()
        .take(MAX_RAW_NATIONAL_ID)
        .map(|c| {
            if c == '\0' {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}

/// Checks one line: a client's malformed code, then the national ID, then the amount.
pub fn check_line(raw: &RawLine) -> CheckedLine {
    let rejected = |code| {
        CheckedLine::Rejected(UnmatchedLine {
            line: raw.line,
            national_id: truncate(raw.national_id.trim()),
            amount: Rial(raw.amount),
            code,
        })
    };
    if !raw.malformed_code.is_empty() {
        return rejected(UnmatchedCode::Malformed(truncate(&raw.malformed_code)));
    }
    let Ok(national_id) = NationalId::parse(&raw.national_id) else {
        return rejected(UnmatchedCode::NationalIdInvalid);
    };
    if raw.amount <= 0 {
        return rejected(UnmatchedCode::AmountNotPositive);
    }
    CheckedLine::Valid(ValidLine {
        line: raw.line,
        national_id,
        amount: Rial(raw.amount),
    })
}

/// An unsettled instalment that a remittance may pay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueInstalment {
    /// The instalment's id.
    pub id: String,
    /// Its purchase.
    pub purchase_id: String,
    /// Whose it is.
    pub employee_id: String,
    /// The period it was first due in (earlier than the remittance's for re-aged arrears).
    pub period: JalaliPeriod,
    /// Its position in the purchase's schedule.
    pub seq: u32,
    /// Its amount.
    pub amount: Rial,
    /// True for overdue arrears (R29): settling it may lift the employee's block.
    pub overdue: bool,
}

/// What the organization's books say about the employees of a remittance.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    /// National IDs with at least one instalment ever recorded in this organization; an
    /// employee with instalments in `due` is known whether or not listed here.
    pub known: HashSet<NationalId>,
    /// Each employee's unsettled instalments of the remittance's period (R22, R23).
    pub due: HashMap<NationalId, Vec<DueInstalment>>,
}

/// Whether a line that does not match exactly may settle whole instalments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartialSettlement {
    /// A line settles only on an exact match (the default).
    Refused,
    /// A line settles whole instalments, oldest first, while its amount covers them.
    Allowed,
}

/// The outcome of matching a remittance.
#[derive(Debug, Default)]
pub struct Matching {
    /// The instalments settled, employee by employee in national ID order, and each
    /// employee's in the order their lines paid them.
    pub settled: Vec<DueInstalment>,
    /// The lines (or the parts of them) kept for review, in line order.
    pub unmatched: Vec<UnmatchedLine>,
    /// The sum of the settled instalments.
    pub settled_amount: Rial,
}

/// The sum doesn't fit in an `i64` rial.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("amounts overflow")]
pub struct AmountOverflow;

fn sum(instalments: &VecDeque<DueInstalment>) -> Result<Rial, AmountOverflow> {
    instalments
        .iter()
        .try_fold(Rial::ZERO, |total, instalment| {
            total.checked_add(instalment.amount).ok_or(AmountOverflow)
        })
}

/// A remittance's lines as checked, kept apart as they arrive: the lines that may pay and
/// the rejected ones, each in document order. Built line by line, so that a large remittance
/// holds each of its lines once.
#[derive(Clone, Debug, Default)]
pub struct CheckedLines {
    valid: Vec<ValidLine>,
    rejected: Vec<UnmatchedLine>,
}

impl CheckedLines {
    /// Returns no lines, with room for `lines` lines that may pay.
    pub fn with_capacity(lines: usize) -> CheckedLines {
        CheckedLines {
            valid: Vec::with_capacity(lines),
            rejected: Vec::new(),
        }
    }

    /// Adds the next line of the document.
    pub fn push(&mut self, line: CheckedLine) {
        match line {
            CheckedLine::Valid(valid) => self.valid.push(valid),
            CheckedLine::Rejected(rejected) => self.rejected.push(rejected),
        }
    }

    /// The number of lines.
    pub fn len(&self) -> usize {
        self.valid.len() + self.rejected.len()
    }

    /// True when there are no lines.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sum of every line's amount as written, rejected lines included; saturates, since
    /// it is only shown (what settles is summed with overflow checks).
    pub fn amount(&self) -> i64 {
        let valid = self.valid.iter().map(|line| line.amount.as_i64());
        let rejected = self.rejected.iter().map(|line| line.amount.as_i64());
        valid.chain(rejected).fold(0i64, i64::saturating_add)
    }

    /// Orders the lines that may pay by national ID, in place.
    pub fn into_sorted(self) -> SortedLines {
        let CheckedLines {
            mut valid,
            rejected,
        } = self;
        // A stable sort: lines of one employee stay in document order.
        valid.sort_by(|a, b| a.national_id.cmp(&b.national_id));
        SortedLines { valid, rejected }
    }
}

impl FromIterator<CheckedLine> for CheckedLines {
    fn from_iter<I: IntoIterator<Item = CheckedLine>>(lines: I) -> CheckedLines {
        let mut checked = CheckedLines::default();
        for line in lines {
            checked.push(line);
        }
        checked
    }
}

/// A remittance's lines arranged for matching employee by employee.
#[derive(Debug, Default)]
pub struct SortedLines {
    /// The lines that may pay, ordered by national ID; one employee's lines keep their
    /// order in the document, so a later line still sees what an earlier one settled.
    pub valid: Vec<ValidLine>,
    /// The lines rejected when checked, in document order.
    pub rejected: Vec<UnmatchedLine>,
}

/// Separates the valid lines from the rejected ones and orders the valid ones by national ID.
pub fn sort_lines(lines: Vec<CheckedLine>) -> SortedLines {
    lines.into_iter().collect::<CheckedLines>().into_sorted()
}

/// Cuts lines ordered by national ID into runs of about `size` lines (at least one) that
/// never split an employee: each run can be matched against its employees' instalments alone.
pub fn employee_chunks(lines: &[ValidLine], size: usize) -> EmployeeChunks<'_> {
    EmployeeChunks {
        rest: lines,
        size: size.max(1),
    }
}

/// The iterator of [`employee_chunks`].
#[derive(Debug)]
pub struct EmployeeChunks<'a> {
    rest: &'a [ValidLine],
    size: usize,
}

impl<'a> Iterator for EmployeeChunks<'a> {
    type Item = &'a [ValidLine];

    fn next(&mut self) -> Option<&'a [ValidLine]> {
        if self.rest.is_empty() {
            return None;
        }
        let mut end = self.size.min(self.rest.len());
        let last = &self.rest[end - 1].national_id;
        while end < self.rest.len() && self.rest[end].national_id == *last {
            end += 1;
        }
        let (chunk, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(chunk)
    }
}

/// Matches valid lines, ordered by national ID as [`sort_lines`] leaves them, against the
/// ledger of their employees (R23). The unmatched lines come back in line order.
pub fn match_employees(
    lines: &[ValidLine],
    ledger: Ledger,
    partial: PartialSettlement,
) -> Result<Matching, AmountOverflow> {
    let Ledger { known, due } = ledger;
    let mut due: HashMap<NationalId, VecDeque<DueInstalment>> = due
        .into_iter()
        .map(|(national_id, mut instalments)| {
            instalments.sort_by(|a, b| (a.period, a.seq, &a.id).cmp(&(b.period, b.seq, &b.id)));
            (national_id, instalments.into())
        })
        .collect();
    let mut matching = Matching::default();
    for line in lines {
        let unmatched = |amount: Rial, code| UnmatchedLine {
            line: line.line,
            national_id: line.national_id.as_str().to_owned(),
            amount,
            code,
        };
        let Some(queue) = due.get_mut(&line.national_id) else {
            let code = if known.contains(&line.national_id) {
                UnmatchedCode::NothingDue
            } else {
                UnmatchedCode::UnknownEmployee
            };
            matching.unmatched.push(unmatched(line.amount, code));
            continue;
        };
        let owed = sum(queue)?;
        if owed == Rial::ZERO {
            matching
                .unmatched
                .push(unmatched(line.amount, UnmatchedCode::NothingDue));
            continue;
        }
        if line.amount == owed {
            matching.settled_amount = matching
                .settled_amount
                .checked_add(owed)
                .ok_or(AmountOverflow)?;
            matching.settled.extend(queue.drain(..));
            continue;
        }
        let code = if line.amount < owed {
            UnmatchedCode::AmountShort
        } else {
            UnmatchedCode::AmountOver
        };
        let mut left = line.amount;
        if partial == PartialSettlement::Allowed {
            while let Some(next) = queue.front() {
                if next.amount > left {
                    break;
                }
                left = left.checked_sub(next.amount).ok_or(AmountOverflow)?;
                matching.settled_amount = matching
                    .settled_amount
                    .checked_add(next.amount)
                    .ok_or(AmountOverflow)?;
                if let Some(paid) = queue.pop_front() {
                    matching.settled.push(paid);
                }
            }
        }
        if left > Rial::ZERO {
            matching.unmatched.push(unmatched(left, code));
        }
    }
    matching.unmatched.sort_by_key(|line| line.line);
    Ok(matching)
}

/// Matches a whole remittance's lines against the ledger (R23): [`match_employees`] over
/// all of them, with the rejected lines among the unmatched, in line order.
pub fn match_lines(
    lines: Vec<CheckedLine>,
    ledger: Ledger,
    partial: PartialSettlement,
) -> Result<Matching, AmountOverflow> {
    let SortedLines { valid, rejected } = sort_lines(lines);
    let mut matching = match_employees(&valid, ledger, partial)?;
    matching.unmatched.extend(rejected);
    matching.unmatched.sort_by_key(|line| line.line);
    Ok(matching)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALI: &str = "0012345679";
    const SARA: &str = "0499370899";

    fn nid(text: &str) -> NationalId {
        NationalId::parse(text).unwrap()
    }

    fn period(text: &str) -> JalaliPeriod {
        JalaliPeriod::parse(text).unwrap()
    }

    fn due(id: &str, purchase: &str, at: &str, seq: u32, amount: i64) -> DueInstalment {
        DueInstalment {
            id: id.to_owned(),
            purchase_id: purchase.to_owned(),
            employee_id: "E1".to_owned(),
            period: period(at),
            seq,
            amount: Rial(amount),
            overdue: false,
        }
    }

    fn line(number: u32, national_id: &str, amount: i64) -> CheckedLine {
        check_line(&RawLine {
            line: number,
            national_id: national_id.to_owned(),
            amount,
            malformed_code: String::new(),
        })
    }

    fn ledger(entries: Vec<(&str, Vec<DueInstalment>)>) -> Ledger {
        let mut ledger = Ledger::default();
        for (national_id, instalments) in entries {
            ledger.known.insert(nid(national_id));
            ledger.due.insert(nid(national_id), instalments);
        }
        ledger
    }

    fn codes(matching: &Matching) -> Vec<(u32, &str, i64)> {
        matching
            .unmatched
            .iter()
            .map(|u| (u.line, u.code.as_str(), u.amount.as_i64()))
            .collect()
    }

    fn settled_ids(matching: &Matching) -> Vec<&str> {
        matching.settled.iter().map(|d| d.id.as_str()).collect()
    }

    #[test]
    fn r23_malformed_lines_are_reported_with_their_codes() {
        let lines = vec![
            line(1, "0012345678", 10),
            line(2, ALI, 0),
            line(3, ALI, -5),
            check_line(&RawLine {
                line: 4,
                national_id: "x".into(),
                amount: 0,
                malformed_code: "amount_invalid".into(),
            }),
        ];
        let matching = match_lines(lines, Ledger::default(), PartialSettlement::Refused).unwrap();
        assert_eq!(
            codes(&matching),
            [
                (1, "national_id_invalid", 10),
                (2, "amount_not_positive", 0),
                (3, "amount_not_positive", -5),
                (4, "amount_invalid", 0)
            ]
        );
    }

    #[test]
    fn r23_exact_amount_settles_everything_due_oldest_first() {
        let ledger = ledger(vec![(
            ALI,
            vec![
                due("b", "P2", "1405-09", 1, 50),
                due("a", "P1", "1405-08", 2, 30),
            ],
        )]);
        let matching =
            match_lines(vec![line(1, ALI, 80)], ledger, PartialSettlement::Refused).unwrap();
        assert_eq!(settled_ids(&matching), ["a", "b"]);
        assert_eq!(matching.settled_amount, Rial(80));
        assert!(matching.unmatched.is_empty());
    }

    #[test]
    fn r23_unknown_nothing_due_short_and_over_are_kept_and_settle_nothing() {
        let ledger = ledger(vec![(ALI, vec![due("a", "P1", "1405-09", 1, 30)])]);
        let mut ledger_with_sara = ledger;
        ledger_with_sara.known.insert(nid(SARA));
        let lines = vec![
            line(1, "0084575948", 10),
            line(2, SARA, 10),
            line(3, ALI, 29),
            line(4, ALI, 31),
        ];
        let matching = match_lines(lines, ledger_with_sara, PartialSettlement::Refused).unwrap();
        assert_eq!(
            codes(&matching),
            [
                (1, "unknown_employee", 10),
                (2, "nothing_due", 10),
                (3, "amount_short", 29),
                (4, "amount_over", 31)
            ]
        );
        assert!(matching.settled.is_empty());
        assert_eq!(matching.settled_amount, Rial::ZERO);
    }

    #[test]
    fn r23_a_second_line_sees_what_the_first_settled() {
        let ledger = ledger(vec![(ALI, vec![due("a", "P1", "1405-09", 1, 30)])]);
        let lines = vec![line(1, ALI, 30), line(2, ALI, 30)];
        let matching = match_lines(lines, ledger, PartialSettlement::Refused).unwrap();
        assert_eq!(settled_ids(&matching), ["a"]);
        assert_eq!(codes(&matching), [(2, "nothing_due", 30)]);
    }

    #[test]
    fn r23_partial_settlement_pays_whole_instalments_and_keeps_the_rest() {
        let instalments = vec![
            due("a", "P1", "1405-08", 1, 30),
            due("b", "P1", "1405-09", 2, 30),
        ];
        let short = match_lines(
            vec![line(1, ALI, 45)],
            ledger(vec![(ALI, instalments.clone())]),
            PartialSettlement::Allowed,
        )
        .unwrap();
        assert_eq!(settled_ids(&short), ["a"]);
        assert_eq!(codes(&short), [(1, "amount_short", 15)]);

        let over = match_lines(
            vec![line(1, ALI, 70)],
            ledger(vec![(ALI, instalments.clone())]),
            PartialSettlement::Allowed,
        )
        .unwrap();
        assert_eq!(settled_ids(&over), ["a", "b"]);
        assert_eq!(codes(&over), [(1, "amount_over", 10)]);

        let refused = match_lines(
            vec![line(1, ALI, 45)],
            ledger(vec![(ALI, instalments)]),
            PartialSettlement::Refused,
        )
        .unwrap();
        assert!(refused.settled.is_empty());
        assert_eq!(codes(&refused), [(1, "amount_short", 45)]);
    }

    #[test]
    fn r23_short_of_even_the_oldest_instalment_settles_nothing_partially() {
        let matching = match_lines(
            vec![line(1, ALI, 10)],
            ledger(vec![(ALI, vec![due("a", "P1", "1405-08", 1, 30)])]),
            PartialSettlement::Allowed,
        )
        .unwrap();
        assert!(matching.settled.is_empty());
        assert_eq!(codes(&matching), [(1, "amount_short", 10)]);
    }

    /// The `n`th valid national ID (R2 check digit).
    fn nth_national_id(n: u32) -> String {
        let body = format!("{:09}", 100_000 + n);
        let sum: u32 = body
            .bytes()
            .zip((2..=10).rev())
            .map(|(digit, weight)| u32::from(digit - b'0') * weight)
            .sum();
        let check = match sum % 11 {
            remainder @ 0..=1 => remainder,
            remainder => 11 - remainder,
        };
        format!("{body}{check}")
    }

    fn valid_lines(lines: Vec<CheckedLine>) -> Vec<ValidLine> {
        sort_lines(lines).valid
    }

    #[test]
    fn r23_lines_are_ordered_by_employee_and_keep_their_order_within_one() {
        let lines = vec![
            line(1, SARA, 5),
            line(2, ALI, 7),
            line(3, "bad", 1),
            line(4, SARA, 3),
            line(5, ALI, 2),
        ];
        let sorted = sort_lines(lines);
        let order: Vec<u32> = sorted.valid.iter().map(|line| line.line).collect();
        assert_eq!(order, [2, 5, 1, 4]);
        assert_eq!(sorted.rejected.len(), 1);
        assert_eq!(sorted.rejected[0].line, 3);
    }

    #[test]
    fn r23_chunks_never_split_an_employee() {
        let lines = valid_lines(vec![
            line(1, ALI, 1),
            line(2, ALI, 1),
            line(3, ALI, 1),
            line(4, SARA, 1),
            line(5, &nth_national_id(7), 1),
            line(6, &nth_national_id(7), 1),
        ]);
        let chunks: Vec<Vec<u32>> = employee_chunks(&lines, 2)
            .map(|chunk| chunk.iter().map(|line| line.line).collect())
            .collect();
        // ALI's three lines stay together although the size is two; every line comes once.
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks.concat().len(), lines.len());
        for chunk in employee_chunks(&lines, 2) {
            let first = &chunk[0].national_id;
            assert!(chunk.len() <= 2 || chunk.iter().all(|line| line.national_id == *first));
        }
        assert_eq!(employee_chunks(&lines, 0).count(), 3);
        assert_eq!(employee_chunks(&[], 10).count(), 0);
    }

    /// The ledger restricted to the employees of `lines`, as the store loads it per chunk.
    fn ledger_of(ledger: &Ledger, lines: &[ValidLine]) -> Ledger {
        let mut part = Ledger::default();
        for line in lines {
            if ledger.known.contains(&line.national_id) {
                part.known.insert(line.national_id.clone());
            }
            if let Some(due) = ledger.due.get(&line.national_id) {
                part.due.insert(line.national_id.clone(), due.clone());
            }
        }
        part
    }

    proptest::proptest! {
        #[test]
        fn r23_matching_in_chunks_equals_matching_the_whole_remittance(
            raw_lines in proptest::collection::vec((0u32..6, 0i64..90), 0..40),
            owed in proptest::collection::vec(proptest::collection::vec(1i64..40, 0..4), 6),
            known in proptest::collection::vec(proptest::bool::ANY, 6),
            size in 1usize..6,
            allow_partial in proptest::bool::ANY,
        ) {
            let partial = if allow_partial {
                PartialSettlement::Allowed
            } else {
                PartialSettlement::Refused
            };
            let mut ledger = Ledger::default();
            for (employee, amounts) in owed.iter().enumerate() {
                let national_id = nid(&nth_national_id(u32::try_from(employee).expect("a few employees")));
                if known[employee] {
                    ledger.known.insert(national_id.clone());
                }
                if !amounts.is_empty() {
                    let instalments = amounts
                        .iter()
                        .enumerate()
                        .map(|(seq, amount)| {
                            let id = format!("{employee}-{seq}");
                            due(&id, &id, "1405-08", u32::try_from(seq).expect("a few instalments"), *amount)
                        })
                        .collect();
                    ledger.due.insert(national_id, instalments);
                }
            }
            let lines: Vec<CheckedLine> = raw_lines
                .iter()
                .enumerate()
                .map(|(index, (employee, amount))| {
                    line(
                        u32::try_from(index).expect("a few lines") + 1,
                        &nth_national_id(*employee),
                        *amount,
                    )
                })
                .collect();

            let whole = match_lines(lines.clone(), ledger.clone(), partial).unwrap();

            let SortedLines { valid, rejected } = sort_lines(lines);
            let mut settled = Vec::new();
            let mut unmatched = rejected;
            let mut amount = Rial::ZERO;
            for chunk in employee_chunks(&valid, size) {
                let part = match_employees(chunk, ledger_of(&ledger, chunk), partial).unwrap();
                settled.extend(part.settled);
                unmatched.extend(part.unmatched);
                amount = amount.checked_add(part.settled_amount).unwrap();
            }
            unmatched.sort_by_key(|line| line.line);
            proptest::prop_assert_eq!(settled, whole.settled);
            proptest::prop_assert_eq!(unmatched, whole.unmatched);
            proptest::prop_assert_eq!(amount, whole.settled_amount);
        }
    }
}
