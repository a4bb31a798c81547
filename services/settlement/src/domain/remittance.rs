//! R23: matching a remittance's lines against the instalments they pay.
//!
//! Each valid line pays its employee's unsettled instalments due up to and including the
//! remittance's period, oldest first (period, then position). An exact match settles them
//! all; anything else is kept as an unmatched line with a code and, unless partial
//! settlement is configured, settles nothing. Lines are taken in order, so a second line
//! for one employee sees what the first settled. Nothing is dropped: every line either
//! settles instalments or comes back unmatched (or both, for a partial settlement).

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
    /// The employee owes nothing due up to the period.
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

fn truncate(text: &str) -> String {
    text.chars().take(MAX_RAW_NATIONAL_ID).collect()
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
    /// The period it is deducted from.
    pub period: JalaliPeriod,
    /// Its position in the purchase's schedule.
    pub seq: u32,
    /// Its amount.
    pub amount: Rial,
}

/// What the organization's books say about the employees of a remittance.
#[derive(Debug, Default)]
pub struct Ledger {
    /// National IDs with at least one instalment ever recorded in this organization.
    pub known: HashSet<NationalId>,
    /// Each employee's unsettled instalments due up to the remittance's period.
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
    /// The instalments settled, in the order the lines paid them.
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

/// Matches the lines, in order, against the ledger (R23).
pub fn match_lines(
    lines: Vec<CheckedLine>,
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
        let line = match line {
            CheckedLine::Rejected(unmatched) => {
                matching.unmatched.push(unmatched);
                continue;
            }
            CheckedLine::Valid(line) => line,
        };
        let unmatched = |amount: Rial, code| UnmatchedLine {
            line: line.line,
            national_id: line.national_id.as_str().to_owned(),
            amount,
            code,
        };
        if !known.contains(&line.national_id) {
            matching
                .unmatched
                .push(unmatched(line.amount, UnmatchedCode::UnknownEmployee));
            continue;
        }
        let queue = due.entry(line.national_id.clone()).or_default();
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
}
