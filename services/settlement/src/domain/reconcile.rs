//! R31: credit and settlement agree. For every purchase, the instalments settlement holds
//! (all but the cancelled ones) add up to the purchase's amount less its refunds, period
//! by period as credit scheduled them.

use tavana_kit::money::Rial;

/// What credit holds of one purchase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreditSide {
    /// The purchase.
    pub purchase_id: String,
    /// The buyer's national ID.
    pub national_id: String,
    /// What stays due: the amount less refunds.
    pub due: Rial,
    /// Credit's schedule: (period `YYYY-MM`, amount), in schedule order.
    pub schedule: Vec<(String, Rial)>,
}

/// One instalment settlement holds (not cancelled).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldInstalment {
    /// Its purchase.
    pub purchase_id: String,
    /// The buyer's national ID.
    pub national_id: String,
    /// The period it is deducted in (`YYYY-MM`): re-aged there when it became overdue
    /// (R29).
    pub period: String,
    /// The period credit scheduled it in (`YYYY-MM`): `period`, or the one it was first due
    /// in when it was re-aged (R29, R31).
    pub due_period: String,
    /// Its amount.
    pub amount: Rial,
}

/// One purchase on which the two sides differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The purchase.
    pub purchase_id: String,
    /// The buyer's national ID (from whichever side knows it).
    pub national_id: String,
    /// What credit says stays due (0 when credit does not know the purchase).
    pub credit_amount: Rial,
    /// What settlement's instalments add up to.
    pub settlement_amount: Rial,
    /// What differs.
    pub detail: String,
}

/// The outcome of a reconciliation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Purchases compared (known to either side).
    pub checked_purchases: u64,
    /// Every difference, in purchase id order.
    pub mismatches: Vec<Mismatch>,
    /// Ranges of purchases read entry by entry because their digests differed (or credit
    /// could not vouch for them); the others were checked by their digests alone.
    pub ranges_read: u64,
}

/// Both sides' sums per period (period, credit's, settlement's), in period order: credit's
/// schedule, and settlement's instalments in the period credit scheduled them (R31; a
/// re-aged instalment counts in the period it was first due in, R29).
fn per_period<'a>(credit: &'a CreditSide, held: &'a [HeldInstalment]) -> Vec<(&'a str, i64, i64)> {
    let mut sums: Vec<(&str, i64, i64)> = credit
        .schedule
        .iter()
        .map(|(period, amount)| (period.as_str(), amount.as_i64(), 0))
        .chain(held.iter().map(|instalment| {
            (
                instalment.due_period.as_str(),
                0,
                instalment.amount.as_i64(),
            )
        }))
        .collect();
    sums.sort_unstable_by(|a, b| a.0.cmp(b.0));
    sums.dedup_by(|next, kept| {
        let same = next.0 == kept.0;
        if same {
            kept.1 = kept.1.saturating_add(next.1);
            kept.2 = kept.2.saturating_add(next.2);
        }
        same
    });
    sums
}

fn total(items: impl Iterator<Item = Rial>) -> Rial {
    Rial(items.fold(0i64, |sum, amount| sum.saturating_add(amount.as_i64())))
}

/// Compares one purchase's two sides; `None` when they agree. A purchase credit does not
/// know, or settlement has no instalment of while something is due, is a difference too.
pub fn compare(credit: Option<&CreditSide>, held: &[HeldInstalment]) -> Option<Mismatch> {
    let settlement_amount = total(held.iter().map(|i| i.amount));
    let Some(credit) = credit else {
        let first = held.first()?;
        return Some(Mismatch {
            purchase_id: first.purchase_id.clone(),
            national_id: first.national_id.clone(),
            credit_amount: Rial::ZERO,
            settlement_amount,
            detail: "credit has no such purchase".to_owned(),
        });
    };
    let mismatch = |detail: String| Mismatch {
        purchase_id: credit.purchase_id.clone(),
        national_id: credit.national_id.clone(),
        credit_amount: credit.due,
        settlement_amount,
        detail,
    };
    let scheduled = total(credit.schedule.iter().map(|(_, amount)| *amount));
    if scheduled != credit.due {
        return Some(mismatch(format!(
            "credit's schedule adds up to {scheduled}, not to the amount less refunds"
        )));
    }
    if held.is_empty() && credit.due.is_positive() {
        return Some(mismatch("settlement holds no instalment".to_owned()));
    }
    let differences: Vec<String> = per_period(credit, held)
        .into_iter()
        .filter(|(_, ours, theirs)| ours != theirs)
        .map(|(period, ours, theirs)| {
            format!("period {period}: credit {ours}, settlement {theirs}")
        })
        .collect();
    if differences.is_empty() && settlement_amount == credit.due {
        None
    } else {
        Some(mismatch(differences.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credit(due: i64, schedule: &[(&str, i64)]) -> CreditSide {
        CreditSide {
            purchase_id: "P1".into(),
            national_id: "0010000011".into(),
            due: Rial(due),
            schedule: schedule
                .iter()
                .map(|(period, amount)| ((*period).to_owned(), Rial(*amount)))
                .collect(),
        }
    }

    fn held(items: &[(&str, i64)]) -> Vec<HeldInstalment> {
        items
            .iter()
            .map(|(period, amount)| HeldInstalment {
                purchase_id: "P1".into(),
                national_id: "0010000011".into(),
                period: (*period).to_owned(),
                due_period: (*period).to_owned(),
                amount: Rial(*amount),
            })
            .collect()
    }

    #[test]
    fn r29_r31_a_reaged_instalment_counts_in_the_period_credit_scheduled() {
        let credit = credit(200, &[("1405-03", 100), ("1405-04", 100)]);
        let mut held = held(&[("1405-05", 100), ("1405-04", 100)]);
        held[0].due_period = "1405-03".into();

        assert_eq!(compare(Some(&credit), &held), None);
    }

    #[test]
    fn r31_equal_sides_agree() {
        let side = credit(5, &[("1405-03", 3), ("1405-04", 2)]);
        assert_eq!(
            compare(Some(&side), &held(&[("1405-04", 2), ("1405-03", 3)])),
            None
        );
        assert_eq!(compare(Some(&credit(0, &[])), &[]), None);
    }

    #[test]
    fn r31_a_period_that_differs_is_named_even_when_the_sums_agree() {
        let side = credit(5, &[("1405-03", 3), ("1405-04", 2)]);
        let found = compare(Some(&side), &held(&[("1405-03", 2), ("1405-04", 3)])).unwrap();
        assert_eq!(found.credit_amount, Rial(5));
        assert_eq!(found.settlement_amount, Rial(5));
        assert_eq!(
            found.detail,
            "period 1405-03: credit 3, settlement 2; period 1405-04: credit 2, settlement 3"
        );
    }

    #[test]
    fn r31_several_instalments_of_one_period_are_summed_on_both_sides() {
        let side = credit(60, &[("1405-04", 10), ("1405-03", 20), ("1405-04", 30)]);
        let same = held(&[("1405-04", 25), ("1405-03", 20), ("1405-04", 15)]);
        assert_eq!(compare(Some(&side), &same), None);

        let moved = held(&[("1405-04", 40), ("1405-03", 10), ("1405-04", 10)]);
        let found = compare(Some(&side), &moved).unwrap();
        assert_eq!(
            found.detail,
            "period 1405-03: credit 20, settlement 10; period 1405-04: credit 40, settlement 50"
        );
    }

    #[test]
    fn r31_a_missing_side_is_a_difference() {
        let missing = compare(Some(&credit(1, &[("1405-03", 1)])), &[]).unwrap();
        assert_eq!(missing.detail, "settlement holds no instalment");
        let orphan = compare(None, &held(&[("1405-03", 1)])).unwrap();
        assert_eq!(orphan.detail, "credit has no such purchase");
        assert_eq!(orphan.settlement_amount, Rial(1));
    }

    #[test]
    fn r31_r20_a_refund_settlement_did_not_apply_is_reported() {
        let side = credit(1, &[("1405-03", 1)]);
        let found = compare(Some(&side), &held(&[("1405-03", 2)])).unwrap();
        assert_eq!(found.settlement_amount, Rial(2));
        assert_eq!(found.detail, "period 1405-03: credit 1, settlement 2");
    }
}
