//! Purchases: kinds and terms (R14, R15), schedules (R15) and refunds (R20).

use chrono::{DateTime, Utc};
use tavana_kit::jalali::{JalaliPeriod, release_instant};
use tavana_kit::money::Rial;

use crate::error::CreditError;

/// R15's purchase kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PurchaseKind {
    /// One deduction, from the next month's salary.
    Credit,
    /// `n` monthly deductions, `1 <= n <= N`.
    Instalment,
}

impl PurchaseKind {
    /// Returns the snake_case name (stored and shown).
    pub fn as_str(self) -> &'static str {
        match self {
            PurchaseKind::Credit => "credit",
            PurchaseKind::Instalment => "instalment",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(name: &str) -> Option<PurchaseKind> {
        match name {
            "credit" => Some(PurchaseKind::Credit),
            "instalment" => Some(PurchaseKind::Instalment),
            _ => None,
        }
    }
}

/// What is bought: kind, amount and number of months, checked (R15).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PurchaseTerms {
    kind: PurchaseKind,
    amount: Rial,
    months: u32,
}

impl PurchaseTerms {
    /// Parses a purchase's terms against the facility's instalment ceiling `N`.
    ///
    /// A `credit` purchase is one month: `months` must be 0 (absent) or 1. An `instalment`
    /// purchase needs `1 <= months <= N`.
    pub fn parse(
        kind: Option<PurchaseKind>,
        amount: i64,
        months: u32,
        max_instalments: u32,
    ) -> Result<PurchaseTerms, CreditError> {
        let terms = PurchaseTerms::parse_shape(kind, amount, months)?;
        if terms.kind == PurchaseKind::Instalment
            && (terms.months == 0 || terms.months > max_instalments)
        {
            return Err(CreditError::InstalmentMonthsOutOfRange {
                max: max_instalments,
            });
        }
        // R15: no instalment of zero rial, so at least one rial a month.
        if terms.amount.as_i64() < i64::from(terms.months) {
            return Err(CreditError::AmountBelowMonths {
                months: terms.months,
            });
        }
        Ok(terms)
    }

    /// Parses what can be checked without the facility: the kind, a positive amount, and
    /// the months of a credit purchase (normalized to 1). An instalment purchase's months
    /// are checked against `1..=N` by [`PurchaseTerms::parse`].
    pub fn parse_shape(
        kind: Option<PurchaseKind>,
        amount: i64,
        months: u32,
    ) -> Result<PurchaseTerms, CreditError> {
        let kind = kind.ok_or(CreditError::invalid(
            "kind",
            "kind_missing",
            "The purchase kind must be credit or instalment.",
            "نوع خرید باید اعتباری یا اقساطی باشد.",
        ))?;
        if amount <= 0 {
            return Err(CreditError::invalid(
                "amount",
                "amount_not_positive",
                "The amount must be above zero.",
                "مبلغ باید بیشتر از صفر باشد.",
            ));
        }
        let months = match kind {
            PurchaseKind::Credit if months <= 1 => 1,
            PurchaseKind::Credit => {
                return Err(CreditError::invalid(
                    "months",
                    "credit_months_invalid",
                    "A credit purchase is repaid in one month.",
                    "خرید اعتباری در یک ماه بازپرداخت می‌شود.",
                ));
            }
            PurchaseKind::Instalment => months,
        };
        Ok(PurchaseTerms {
            kind,
            amount: Rial(amount),
            months,
        })
    }

    /// Returns the kind.
    pub fn kind(self) -> PurchaseKind {
        self.kind
    }

    /// Returns the amount.
    pub fn amount(self) -> Rial {
        self.amount
    }

    /// Returns the number of monthly deductions (1 for credit).
    pub fn months(self) -> u32 {
        self.months
    }
}

/// One deduction of a schedule.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Deduction {
    /// 1-based position in the schedule.
    pub seq: u32,
    /// The salary period it is deducted from.
    pub period: JalaliPeriod,
    /// The amount.
    pub amount: Rial,
}

/// Splits `amount` into at most `months` deductions from `first_period` on (R15), with
/// [`tavana_kit::money::spread`]: with `q = A / n` and `r = A mod n`, the first `r` are
/// `q + 1` and the rest `q`, so no deduction exceeds `ceil(A / n)`, the amount R16 holds in
/// `M`. No deduction is ever zero: an amount smaller than the month count (what remains
/// after a partial refund) is spread over as many months as there are rial, from the first.
pub fn split_schedule(amount: Rial, months: u32, first_period: JalaliPeriod) -> Vec<Deduction> {
    tavana_kit::money::spread(amount, months.max(1))
        .into_iter()
        .zip(0u32..)
        .map(|(amount, index)| Deduction {
            seq: index + 1,
            period: first_period.add_months(index),
            amount,
        })
        .collect()
}

/// Returns the first deduction period of a purchase made in `purchase_period`: the next
/// month's salary (R15, R17).
pub fn first_deduction_period(purchase_period: JalaliPeriod) -> JalaliPeriod {
    purchase_period.next()
}

/// Returns the schedule of a purchase made in `purchase_period` (R15): a credit purchase
/// is one deduction in `m + 1`, an instalment purchase `n` deductions from `m + 1`.
pub fn schedule(terms: PurchaseTerms, purchase_period: JalaliPeriod) -> Vec<Deduction> {
    split_schedule(
        terms.amount(),
        terms.months(),
        first_deduction_period(purchase_period),
    )
}

/// Returns the instant until which a purchase made in `purchase_period` may be refunded
/// (R20: "before its first deduction is due").
///
/// We choose 00:00 Asia/Tehran on the 8th of the first deduction month, i.e.
/// `release_instant(m + 1)`: the same instant a credit purchase's room returns (R17). A
/// refund at or after it is refused, so room never returns twice, and the deduction list
/// of month `m + 1` (R22) is final from then on.
pub fn refund_deadline(purchase_period: JalaliPeriod) -> DateTime<Utc> {
    release_instant(first_deduction_period(purchase_period))
}

/// The result of a refund (R20).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundOutcome {
    /// The refunded amount of all refunds so far.
    pub refunded_total: Rial,
    /// What stays due: `A' = A - refunded`.
    pub remaining_amount: Rial,
    /// The schedule of `A'` over the same months (empty when nothing remains).
    pub remaining_schedule: Vec<Deduction>,
}

/// Applies a refund of `refund` to a purchase of `amount` made in `purchase_period` with
/// `already_refunded` refunded before (R20).
///
/// The refund must be within `1..=remaining`, and `now` before [`refund_deadline`].
/// The remaining amount is split again over the same months (R15).
pub fn apply_refund(
    amount: Rial,
    months: u32,
    purchase_period: JalaliPeriod,
    already_refunded: Rial,
    refund: i64,
    now: DateTime<Utc>,
) -> Result<RefundOutcome, CreditError> {
    let remaining_before = amount
        .checked_sub(already_refunded)
        .ok_or_else(|| CreditError::Internal(anyhow::anyhow!("refunded more than the amount")))?;
    if refund <= 0 || refund > remaining_before.as_i64() {
        return Err(CreditError::invalid(
            "amount",
            "refund_amount_out_of_range",
            "The refund must be above zero and at most what remains of the purchase.",
            "مبلغ بازگشتی باید بیشتر از صفر و حداکثر برابر مانده‌ی خرید باشد.",
        ));
    }
    if now >= refund_deadline(purchase_period) {
        return Err(CreditError::RefundWindowClosed);
    }
    let remaining_amount = Rial(remaining_before.as_i64() - refund);
    let refunded_total = Rial(already_refunded.as_i64() + refund);
    let remaining_schedule = if remaining_amount.is_positive() {
        split_schedule(
            remaining_amount,
            months,
            first_deduction_period(purchase_period),
        )
    } else {
        Vec::new()
    };
    Ok(RefundOutcome {
        refunded_total,
        remaining_amount,
        remaining_schedule,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period(text: &str) -> JalaliPeriod {
        JalaliPeriod::parse(text).unwrap()
    }

    #[test]
    fn r15_ten_rial_over_four_months_puts_the_larger_first() {
        let deductions = split_schedule(Rial(10), 4, period("1405-01"));
        let amounts: Vec<i64> = deductions.iter().map(|d| d.amount.as_i64()).collect();
        assert_eq!(amounts, vec![3, 3, 2, 2]);
        let periods: Vec<String> = deductions.iter().map(|d| d.period.to_string()).collect();
        assert_eq!(periods, vec!["1405-01", "1405-02", "1405-03", "1405-04"]);
    }

    #[test]
    fn r15_schedule_starts_the_month_after_the_purchase_across_the_year_end() {
        let terms = PurchaseTerms::parse(Some(PurchaseKind::Instalment), 100, 3, 12).unwrap();
        let deductions = schedule(terms, period("1403-12"));
        let periods: Vec<String> = deductions.iter().map(|d| d.period.to_string()).collect();
        assert_eq!(periods, vec!["1404-01", "1404-02", "1404-03"]);
        assert_eq!(
            deductions.iter().map(|d| d.amount.as_i64()).sum::<i64>(),
            100
        );
    }

    #[test]
    fn r15_credit_is_one_deduction_in_the_next_month() {
        let terms = PurchaseTerms::parse(Some(PurchaseKind::Credit), 700, 0, 12).unwrap();
        assert_eq!(terms.months(), 1);
        let deductions = schedule(terms, period("1405-06"));
        assert_eq!(deductions.len(), 1);
        assert_eq!(deductions[0].period, period("1405-07"));
        assert_eq!(deductions[0].amount, Rial(700));
    }

    #[test]
    fn r15_terms_refusals_have_their_codes() {
        let code = |r: Result<PurchaseTerms, CreditError>| r.unwrap_err().code();
        assert_eq!(code(PurchaseTerms::parse(None, 1, 1, 12)), "kind_missing");
        assert_eq!(
            code(PurchaseTerms::parse(Some(PurchaseKind::Credit), 0, 1, 12)),
            "amount_not_positive"
        );
        assert_eq!(
            code(PurchaseTerms::parse(Some(PurchaseKind::Credit), 1, 2, 12)),
            "credit_months_invalid"
        );
        assert_eq!(
            code(PurchaseTerms::parse(
                Some(PurchaseKind::Instalment),
                1,
                0,
                12
            )),
            "instalment_months_out_of_range"
        );
        assert_eq!(
            code(PurchaseTerms::parse(
                Some(PurchaseKind::Instalment),
                1,
                13,
                12
            )),
            "instalment_months_out_of_range"
        );
        assert_eq!(
            code(PurchaseTerms::parse(
                Some(PurchaseKind::Instalment),
                1,
                12,
                12
            )),
            "amount_below_months"
        );
        assert!(PurchaseTerms::parse(Some(PurchaseKind::Instalment), 12, 12, 12).is_ok());
    }

    #[test]
    fn r20_partial_refund_resplits_over_the_same_months() {
        let now = release_instant(period("1405-03")) - chrono::Duration::days(20);
        let outcome = apply_refund(Rial(1000), 3, period("1405-02"), Rial(0), 1, now).unwrap();
        assert_eq!(outcome.remaining_amount, Rial(999));
        let amounts: Vec<i64> = outcome
            .remaining_schedule
            .iter()
            .map(|d| d.amount.as_i64())
            .collect();
        assert_eq!(amounts, vec![333, 333, 333]);
    }

    #[test]
    fn r15_an_instalment_purchase_needs_at_least_one_rial_a_month() {
        let refused = PurchaseTerms::parse(Some(PurchaseKind::Instalment), 2, 3, 12);
        assert_eq!(refused.unwrap_err().code(), "amount_below_months");
        assert!(PurchaseTerms::parse(Some(PurchaseKind::Instalment), 3, 3, 12).is_ok());
        assert!(PurchaseTerms::parse(Some(PurchaseKind::Credit), 1, 1, 12).is_ok());
    }

    #[test]
    fn r15_r20_a_refund_leaving_fewer_rial_than_months_spreads_them_one_a_month() {
        let now = release_instant(period("1405-03")) - chrono::Duration::days(20);
        let outcome = apply_refund(
            Rial(1_000_000),
            12,
            period("1405-02"),
            Rial(0),
            999_995,
            now,
        )
        .unwrap();
        let amounts: Vec<i64> = outcome
            .remaining_schedule
            .iter()
            .map(|d| d.amount.as_i64())
            .collect();
        assert_eq!(amounts, vec![1; 5]);
        let periods: Vec<String> = outcome
            .remaining_schedule
            .iter()
            .map(|d| d.period.to_string())
            .collect();
        assert_eq!(
            periods,
            ["1405-03", "1405-04", "1405-05", "1405-06", "1405-07"]
        );
    }

    #[test]
    fn r20_refund_window_closes_at_the_8th_of_the_first_deduction_month() {
        let deadline = refund_deadline(period("1405-02"));
        let before = deadline - chrono::Duration::minutes(1);
        assert!(apply_refund(Rial(10), 1, period("1405-02"), Rial(0), 10, before).is_ok());
        let refused = apply_refund(Rial(10), 1, period("1405-02"), Rial(0), 10, deadline);
        assert_eq!(refused.unwrap_err().code(), "refund_window_closed");
    }

    #[test]
    fn r20_refund_amount_must_be_within_what_remains() {
        let now = release_instant(period("1405-02"));
        let code = |refund| {
            apply_refund(Rial(10), 1, period("1405-02"), Rial(4), refund, now)
                .unwrap_err()
                .code()
        };
        assert_eq!(code(0), "refund_amount_out_of_range");
        assert_eq!(code(7), "refund_amount_out_of_range");
    }
}
