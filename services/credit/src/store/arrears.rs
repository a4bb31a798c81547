//! Arrears as settlement counts them (R29).

use super::*;

impl Store {
    /// Records employees' overdue amounts, each only over an older version: a late or
    /// repeated message changes nothing (R29). Returns how many changed.
    #[tracing::instrument(skip_all, fields(items = items.len()))]
    pub async fn set_arrears(&self, items: &[employee_arrears::Model]) -> Result<u64, CreditError> {
        let mut changed = 0;
        // Five parameters a row, well under both backends' limits.
        for chunk in items.chunks(500) {
            let mut upsert = Query::insert();
            upsert
                .into_table(employee_arrears::Entity)
                .columns([
                    employee_arrears::Column::EmployeeId,
                    employee_arrears::Column::OverdueAmount,
                    employee_arrears::Column::Version,
                    employee_arrears::Column::HeldMonthly,
                    employee_arrears::Column::HeldUntilPeriod,
                ])
                .on_conflict(
                    OnConflict::column(employee_arrears::Column::EmployeeId)
                        .update_columns([
                            employee_arrears::Column::OverdueAmount,
                            employee_arrears::Column::Version,
                            employee_arrears::Column::HeldMonthly,
                            employee_arrears::Column::HeldUntilPeriod,
                        ])
                        .action_and_where(
                            Expr::col((
                                employee_arrears::Entity,
                                employee_arrears::Column::Version,
                            ))
                            .lt(Expr::cust("excluded.version")),
                        )
                        .to_owned(),
                );
            for item in chunk {
                upsert.values_panic([
                    item.employee_id.clone().into(),
                    item.overdue_amount.into(),
                    item.version.into(),
                    item.held_monthly.into(),
                    item.held_until_period.clone().into(),
                ]);
            }
            changed += tavana_kit::db::execute_write(&self.db, &upsert)
                .await?
                .rows_affected();
        }
        Ok(changed)
    }
}
