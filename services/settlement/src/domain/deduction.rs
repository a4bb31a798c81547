//! R22: the deduction list of an organization for one salary period, one row per employee.

use tavana_kit::money::Rial;

use super::remittance::AmountOverflow;

/// One instalment due in the period, as read from the books (ordered by national ID).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueEntry {
    /// The employee's national ID.
    pub national_id: String,
    /// The employee's name as recorded with the purchase.
    pub full_name: String,
    /// The instalment's id.
    pub instalment_id: String,
    /// Its purchase.
    pub purchase_id: String,
    /// Its amount.
    pub amount: Rial,
    /// The period it was first due in (earlier than the list's for re-aged arrears, R29).
    pub due_period: String,
}

/// One instalment behind a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowInstalment {
    /// The instalment's id.
    pub instalment_id: String,
    /// Its purchase.
    pub purchase_id: String,
    /// Its amount.
    pub amount: Rial,
    /// The period it was first due in.
    pub due_period: String,
}

/// One employee's deduction for the period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeductionRow {
    /// The employee's national ID.
    pub national_id: String,
    /// The employee's name.
    pub full_name: String,
    /// What is deducted from this employee's salary.
    pub total: Rial,
    /// The instalments behind the total.
    pub instalments: Vec<RowInstalment>,
}

/// The closing totals of a list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeductionTotals {
    /// Rows (employees).
    pub employees: u64,
    /// Instalments.
    pub instalments: u64,
    /// The organization's total.
    pub total: Rial,
}

impl DeductionTotals {
    /// Adds a row to the totals.
    pub fn add(&mut self, row: &DeductionRow) -> Result<(), AmountOverflow> {
        self.employees += 1;
        self.instalments += row.instalments.len() as u64;
        self.total = self.total.checked_add(row.total).ok_or(AmountOverflow)?;
        Ok(())
    }
}

/// Groups entries ordered by national ID into rows, one per employee.
///
/// The entries of one employee must be adjacent; the batches a reader loads keep every
/// employee whole, so grouping a batch never splits a row.
pub fn group_rows(entries: Vec<DueEntry>) -> Result<Vec<DeductionRow>, AmountOverflow> {
    let mut rows: Vec<DeductionRow> = Vec::new();
    for entry in entries {
        let same_employee = rows
            .last()
            .is_some_and(|row| row.national_id == entry.national_id);
        if !same_employee {
            rows.push(DeductionRow {
                national_id: entry.national_id,
                full_name: entry.full_name,
                total: Rial::ZERO,
                instalments: Vec::new(),
            });
        }
        let Some(row) = rows.last_mut() else {
            continue;
        };
        row.total = row.total.checked_add(entry.amount).ok_or(AmountOverflow)?;
        row.instalments.push(RowInstalment {
            instalment_id: entry.instalment_id,
            purchase_id: entry.purchase_id,
            amount: entry.amount,
            due_period: entry.due_period,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(national_id: &str, id: &str, amount: i64) -> DueEntry {
        DueEntry {
            national_id: national_id.to_owned(),
            full_name: format!("name {national_id}"),
            instalment_id: id.to_owned(),
            purchase_id: format!("P-{id}"),
            amount: Rial(amount),
            due_period: "1405-09".to_owned(),
        }
    }

    #[test]
    fn r22_rows_group_each_employee_with_their_total() {
        let rows = group_rows(vec![
            entry("0012345679", "a", 10),
            entry("0012345679", "b", 15),
            entry("0499370899", "c", 7),
        ])
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].total, Rial(25));
        assert_eq!(rows[0].instalments.len(), 2);
        assert_eq!(rows[1].total, Rial(7));

        let mut totals = DeductionTotals::default();
        for row in &rows {
            totals.add(row).unwrap();
        }
        assert_eq!(
            totals,
            DeductionTotals {
                employees: 2,
                instalments: 3,
                total: Rial(32)
            }
        );
    }
}
