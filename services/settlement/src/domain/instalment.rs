//! Instalments, their states (R24) and the schedules credit records (R15, R20).

use std::collections::HashSet;
use std::fmt;

use tavana_kit::error::Violation;
use tavana_kit::jalali::JalaliPeriod;
use tavana_kit::money::Rial;

/// Where one instalment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InstalmentState {
    /// Due (or to be due) and not yet paid by a remittance.
    Unsettled,
    /// Paid by a recorded remittance (S21).
    Settled,
    /// Cancelled by a refund (R20); never deducted.
    Cancelled,
    /// Left unsettled when its period was closed, and re-aged to a later period (R29).
    Overdue,
}

impl InstalmentState {
    /// Every state.
    pub const ALL: [InstalmentState; 4] = [
        InstalmentState::Unsettled,
        InstalmentState::Settled,
        InstalmentState::Cancelled,
        InstalmentState::Overdue,
    ];

    /// The states a remittance may still settle: due and not paid (R23, R29).
    pub const OPEN: [InstalmentState; 2] = [InstalmentState::Unsettled, InstalmentState::Overdue];

    /// Returns the stored name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            InstalmentState::Unsettled => "unsettled",
            InstalmentState::Settled => "settled",
            InstalmentState::Cancelled => "cancelled",
            InstalmentState::Overdue => "overdue",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<InstalmentState> {
        match text {
            "unsettled" => Some(InstalmentState::Unsettled),
            "settled" => Some(InstalmentState::Settled),
            "cancelled" => Some(InstalmentState::Cancelled),
            "overdue" => Some(InstalmentState::Overdue),
            _ => None,
        }
    }
}

impl fmt::Display for InstalmentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which of an employee's instalments to list (R24, S20).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateFilter {
    /// Every instalment that is or was due (not cancelled).
    All,
    /// Not yet settled.
    Unsettled,
    /// Settled.
    Settled,
    /// The instalments of purchases whose every instalment is settled.
    Finished,
    /// Cancelled by refunds.
    Cancelled,
    /// Overdue: left unsettled when their period was closed (R29).
    Overdue,
}

/// One instalment of a schedule as credit sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledInstalment {
    /// Position in the purchase's schedule, from 1.
    pub seq: u32,
    /// The salary period it is deducted from.
    pub period: JalaliPeriod,
    /// The amount deducted.
    pub amount: Rial,
}

/// One instalment of a schedule before it is checked.
#[derive(Clone, Debug)]
pub struct RawScheduledInstalment {
    /// Position in the schedule.
    pub seq: u32,
    /// The period as written, `YYYY-MM`.
    pub period: String,
    /// The amount in rials.
    pub amount: i64,
}

/// Checks a schedule: every period valid, every amount above zero, positions distinct.
///
/// `field` names the list in the violations (`instalments` or `remaining`). An empty schedule
/// is allowed only when `allow_empty` (a whole refund leaves nothing due).
pub fn parse_schedule(
    field: &str,
    raw: &[RawScheduledInstalment],
    allow_empty: bool,
) -> Result<Vec<ScheduledInstalment>, Vec<Violation>> {
    let mut violations = Vec::new();
    if raw.is_empty() && !allow_empty {
        violations.push(Violation::new(
            field,
            "schedule_empty",
            "The schedule has no instalments.",
            "برنامهٔ اقساط هیچ قسطی ندارد.",
        ));
    }
    let mut seen = HashSet::new();
    let mut schedule = Vec::with_capacity(raw.len());
    for (index, item) in raw.iter().enumerate() {
        let at = format!("{field}[{index}]");
        let period = match JalaliPeriod::parse(&item.period) {
            Ok(period) => Some(period),
            Err(_) => {
                violations.push(Violation::new(
                    format!("{at}.period"),
                    "period_invalid",
                    "The period must be a Jalali month written YYYY-MM.",
                    "دوره باید ماه شمسی به صورت YYYY-MM باشد.",
                ));
                None
            }
        };
        if item.amount <= 0 {
            violations.push(Violation::new(
                format!("{at}.amount"),
                "amount_not_positive",
                "The amount must be greater than zero.",
                "مبلغ باید بیشتر از صفر باشد.",
            ));
        }
        if !seen.insert(item.seq) {
            violations.push(Violation::new(
                format!("{at}.seq"),
                "seq_duplicate",
                "Two instalments have the same position.",
                "دو قسط شمارهٔ یکسان دارند.",
            ));
        }
        if let Some(period) = period {
            schedule.push(ScheduledInstalment {
                seq: item.seq,
                period,
                amount: Rial(item.amount),
            });
        }
    }
    // R15, as credit builds schedules (`tavana_kit::money::spread`): the amounts in
    // schedule order differ by at most one rial, the larger first. Settlement refuses
    // nothing that credit's rules allow, and nothing else.
    if violations.is_empty() {
        let mut by_seq: Vec<&ScheduledInstalment> = schedule.iter().collect();
        by_seq.sort_by_key(|instalment| instalment.seq);
        let amounts: Vec<Rial> = by_seq.iter().map(|instalment| instalment.amount).collect();
        if !tavana_kit::money::is_spread(&amounts) {
            violations.push(Violation::new(
                field,
                "schedule_not_spread",
                "The instalments must differ by at most one rial, the larger first (R15).",
                "اقساط باید حداکثر یک ریال با هم فرق داشته باشند و بزرگ‌ترها اول بیایند.",
            ));
        }
    }
    if violations.is_empty() {
        Ok(schedule)
    } else {
        Err(violations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(seq: u32, period: &str, amount: i64) -> RawScheduledInstalment {
        RawScheduledInstalment {
            seq,
            period: period.to_owned(),
            amount,
        }
    }

    #[test]
    fn a_valid_schedule_parses() {
        let schedule = parse_schedule(
            "instalments",
            &[raw(1, "1405-09", 4), raw(2, "1405-10", 3)],
            false,
        )
        .unwrap();
        assert_eq!(schedule.len(), 2);
        assert_eq!(schedule[1].period.to_string(), "1405-10");
        assert_eq!(schedule[1].amount, Rial(3));
    }

    #[test]
    fn every_bad_instalment_is_reported() {
        let violations = parse_schedule(
            "instalments",
            &[raw(1, "1405-13", 4), raw(1, "1405-10", 0)],
            false,
        )
        .unwrap_err();
        let codes: Vec<&str> = violations.iter().map(|v| v.code.as_str()).collect();
        assert_eq!(
            codes,
            ["period_invalid", "amount_not_positive", "seq_duplicate"]
        );
    }

    #[test]
    fn r15_a_schedule_that_credit_could_not_have_made_is_refused() {
        let uneven = parse_schedule(
            "instalments",
            &[raw(1, "1405-09", 2), raw(2, "1405-10", 4)],
            false,
        )
        .unwrap_err();
        assert_eq!(uneven[0].code, "schedule_not_spread");
        // What credit makes of 2 rial over 3 months after R15's amendment: two of 1.
        assert!(
            parse_schedule(
                "remaining",
                &[raw(1, "1405-09", 1), raw(2, "1405-10", 1)],
                true
            )
            .is_ok()
        );
    }

    #[test]
    fn only_a_refund_may_leave_an_empty_schedule() {
        assert!(parse_schedule("instalments", &[], false).is_err());
        assert_eq!(parse_schedule("remaining", &[], true).unwrap(), vec![]);
    }

    #[test]
    fn states_round_trip() {
        for state in InstalmentState::ALL {
            assert_eq!(InstalmentState::parse(state.as_str()), Some(state));
        }
        assert_eq!(InstalmentState::parse("paid"), None);
    }
}
