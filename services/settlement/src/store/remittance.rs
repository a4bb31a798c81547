//! Recording a remittance (R23).
//!
//! The lines are matched employee by employee in national ID order, in chunks of about
//! [`REMITTANCE_CHUNK_LINES`] lines that never split an employee. Each chunk costs a few
//! statements whatever its size: a read of its employees' due instalments (and, when some
//! have none, of which of them the organization knows), one `UPDATE` that settles, one that
//! completes purchases, and its outbox rows: one batch to credit and one of SMS to identity
//! (more past [`crate::delivery::MESSAGE_ITEMS`] items), not a row per purchase and employee. A set of ids is bound as a single parameter (a
//! text array on PostgreSQL, a JSON array on SQLite), so no statement runs into the backends'
//! parameter limits. Only one chunk's instalments and messages are held at a time. All chunks
//! run in the remittance's one transaction: it settles everything or nothing.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{
    ArrayType, Condition, Expr, ExprTrait, Func, IntoColumnRef, Query, SelectStatement,
};
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, QueryResult, Statement, Value,
};
use tavana_kit::audit::AuditEntry;
use tavana_kit::ids::NationalId;
use tavana_kit::jalali::JalaliPeriod;
use tavana_kit::money::Rial;
use tavana_kit::outbox::Enqueued;

use super::{
    Instalment, NewRemittance, PurchaseSchedule, RecordedRemittance, Remittance, RemittanceRecord,
    Store, StoredUnmatched, UnmatchedLine, arrears, get, is_unique_violation, lock_organization,
    new_id, to_i32, to_i64, to_u32,
};
use crate::delivery::{self, Outgoing};
use crate::domain::instalment::InstalmentState;
use crate::domain::remittance::{
    self, AmountOverflow, DueInstalment, Ledger, Matching, SortedLines, ValidLine,
};
use crate::error::SettlementError;

/// Lines matched per chunk (more when the last employee's lines run past it): bounds what a
/// remittance holds at a time, and the ids one statement carries.
pub const REMITTANCE_CHUNK_LINES: usize = 20_000;
/// A chunk reads its employees' instalments as the range of national IDs from its first
/// employee to its last: one index range, whatever the planner's statistics, which may also
/// hold employees without a line (they are skipped). Chunks' ranges do not overlap, so a
/// remittance reads each of the organization's instalments at most once. A chunk of up to this
/// many employees also names them (one parameter), so that where it pays the database probes
/// the index for each of them instead of reading the range: a short remittance then reads only
/// its own employees' rows.
const PROBE_EMPLOYEES: usize = 1_000;
/// Unmatched lines per multi-row insert on SQLite (5 parameters each).
const UNMATCHED_INSERT_CHUNK: usize = 500;

/// Returns `values` as one PostgreSQL text array parameter.
fn text_array(values: &[&str]) -> Value {
    Value::Array(
        ArrayType::String,
        Some(Box::new(
            values
                .iter()
                .map(|value| Value::String(Some((*value).to_owned())))
                .collect(),
        )),
    )
}

/// Returns `column IN values` with the values bound as one parameter: a text array on
/// PostgreSQL, a JSON array read by `json_each` on SQLite. The statement's text is the same
/// for any number of values.
pub(super) fn one_of<C: IntoColumnRef>(
    backend: DbBackend,
    column: C,
    values: &[&str],
) -> Result<Expr, DbErr> {
    let list = bound_list(backend, values)?;
    if backend == DbBackend::Postgres {
        return Ok(Expr::col(column).eq(Func::cust("ANY").arg(list)));
    }
    let elements = Query::select()
        .column("value")
        .from_function(Func::cust("json_each").arg(list), "ids")
        .to_owned();
    Ok(Expr::col(column).in_subquery(elements))
}

/// Binds `values` as one parameter: a text array on PostgreSQL (read with `ANY` or
/// `unnest`), a JSON array on SQLite (read with `json_each`).
pub(super) fn bound_list(backend: DbBackend, values: &[&str]) -> Result<Value, DbErr> {
    if backend == DbBackend::Postgres {
        return Ok(text_array(values));
    }
    serde_json::to_string(values)
        .map(Value::from)
        .map_err(|error| DbErr::Custom(error.to_string()))
}

/// Returns the condition that selects the employees `national_ids` (ordered, not empty) of a
/// chunk: the range from the first to the last, and for a few employees their list too (see
/// [`PROBE_EMPLOYEES`]). SQLite, which has no statistics, picks the range over the list when
/// it has both, so it gets only the list; PostgreSQL gets both, so that without statistics,
/// when it filters by the list instead of probing, it still reads no more than the range.
fn national_ids(backend: DbBackend, national_ids: &[&str]) -> Result<Condition, DbErr> {
    let (Some(first), Some(last)) = (national_ids.first(), national_ids.last()) else {
        return Err(DbErr::Custom("no national IDs to select".into()));
    };
    let range = Condition::all()
        .add(Expr::col(Instalment::NationalId).gte(*first))
        .add(Expr::col(Instalment::NationalId).lte(*last));
    if national_ids.len() > PROBE_EMPLOYEES {
        return Ok(range);
    }
    let list = one_of(backend, Instalment::NationalId, national_ids)?;
    Ok(match backend {
        DbBackend::Postgres => range.add(list),
        _ => Condition::all().add(list),
    })
}

/// The totals of a remittance, summed chunk by chunk.
#[derive(Default)]
struct Settled {
    instalments: u64,
    amount: Rial,
}

impl Store {
    /// Records a remittance and settles what it pays, in one transaction (R23), with its
    /// audit entry (R32), completed here with the remittance id and totals.
    ///
    /// The same bank reference again (for the organization) returns the first result with
    /// `replayed` and settles nothing, also when both arrive at once (unique constraint);
    /// a replay is not audited again.
    #[tracing::instrument(
        skip_all,
        fields(organization_id = %remittance.organization_id, period = %remittance.period, lines = remittance.lines.len())
    )]
    ///
    /// The service passes in the rule and the SMS: `decide` matches a chunk's lines against
    /// its employees' due instalments (R23), `announce` writes the SMS a settled chunk sends
    /// the employees (R28); both run inside the transaction, while the database works on
    /// another statement of it.
    pub async fn record_remittance(
        &self,
        remittance: NewRemittance,
        now: DateTime<Utc>,
        mut audit: AuditEntry,
        decide: impl Fn(&[ValidLine], Ledger) -> Result<Matching, AmountOverflow>,
        announce: impl Fn(&SettledChunk<'_>) -> Vec<Outgoing>,
    ) -> Result<RecordedRemittance, SettlementError> {
        let replayed = |record| RecordedRemittance {
            record,
            replayed: true,
            enqueued: Enqueued::default(),
        };
        if let Some(record) = self
            .find_by_bank_reference(
                &self.db,
                &remittance.organization_id,
                &remittance.bank_reference,
            )
            .await?
        {
            return Ok(replayed(record));
        }

        let txn = tavana_kit::db::begin_write(&self.db).await?;
        lock_organization(&txn, &remittance.organization_id).await?;
        plan_generically(&txn).await?;
        let remittance_id = new_id();
        if let Err(error) = insert_remittance(&txn, &remittance_id, &remittance, now).await {
            if !is_unique_violation(&error) {
                return Err(error.into());
            }
            // Recorded by a concurrent call between our read and our lock.
            txn.rollback().await?;
            let record = self
                .find_by_bank_reference(
                    &self.db,
                    &remittance.organization_id,
                    &remittance.bank_reference,
                )
                .await?
                .ok_or(SettlementError::ConcurrentChange)?;
            return Ok(replayed(record));
        }

        let line_count = remittance.lines.len();
        let NewRemittance {
            organization_id,
            period,
            bank_reference,
            lines,
            ..
        } = remittance;
        let SortedLines {
            valid,
            mut rejected,
        } = lines.into_sorted();
        let mut unmatched = Vec::new();
        let mut settled = Settled::default();
        let mut enqueued = Enqueued::default();
        let period_text = period.to_string();
        let chunks: Vec<&[ValidLine]> =
            remittance::employee_chunks(&valid, REMITTANCE_CHUNK_LINES).collect();
        let mut matching = match chunks.first() {
            Some(lines) => Some(decide(
                lines,
                load_ledger(&txn, &organization_id, period, lines).await?,
            )?),
            None => None,
        };
        // One chunk after the other, each statement waited for, but the service's own work
        // on either side of a chunk's settle overlaps the database's (see `overlap`): the
        // next chunk's instalments, read first, are decoded while this one settles, and
        // matched while this one's messages are written. Chunks never share an employee, so
        // reading the next one early reads the same rows.
        let mut index = 0;
        while let Some(this) = matching.take() {
            let next = match chunks.get(index + 1) {
                Some(lines) => {
                    let employees = employees_of(lines);
                    let rows = read_due(&txn, &organization_id, period, &employees).await?;
                    Some((*lines, employees, rows))
                }
                None => None,
            };
            let (completed, (sms, next)) = tavana_kit::db::overlap(
                settle_and_complete(&txn, &remittance_id, &this.settled, now),
                || {
                    let sms = announce(&SettledChunk {
                        remittance_id: &remittance_id,
                        chunk: index,
                        period: &period_text,
                        settled: &this.settled,
                    });
                    let next = next.map(|(lines, employees, rows)| {
                        due_ledger(&employees, rows).map(|ledger| (lines, employees, ledger))
                    });
                    (sms, next)
                },
            )
            .await;
            let Some(completed) = completed? else {
                txn.rollback().await?;
                return Err(SettlementError::ConcurrentChange);
            };
            let partly = partly_settled(&this.settled, &completed);
            let mut outgoing =
                delivery::purchases_settled(&remittance_id, index, &completed, &partly);
            outgoing.extend(arrears::settled_arrears(&txn, &this.settled, now).await?);
            outgoing.extend(sms);
            let next = match next.transpose()? {
                Some((lines, employees, mut ledger)) => {
                    add_known(&txn, &organization_id, &employees, &mut ledger).await?;
                    Some((lines, ledger))
                }
                None => None,
            };
            let (written, next_matching) =
                tavana_kit::db::overlap(tavana_kit::outbox::enqueue_many(&txn, outgoing), || {
                    next.map(|(lines, ledger)| decide(lines, ledger))
                })
                .await;
            enqueued.extend(written?);
            matching = next_matching.transpose()?;
            settled.instalments += this.settled.len() as u64;
            settled.amount = settled
                .amount
                .checked_add(this.settled_amount)
                .ok_or(remittance::AmountOverflow)?;
            unmatched.extend(this.unmatched);
            index += 1;
        }
        drop(valid);
        unmatched.append(&mut rejected);
        unmatched.sort_by_key(|line| line.line);
        insert_unmatched(&txn, &remittance_id, &unmatched).await?;

        let totals = Query::update()
            .table(Remittance::Table)
            .value(Remittance::SettledInstalments, to_i64(settled.instalments)?)
            .value(Remittance::SettledAmount, settled.amount.as_i64())
            .and_where(Expr::col(Remittance::Id).eq(remittance_id.as_str()))
            .to_owned();
        txn.execute(&totals).await?;
        audit.details = serde_json::json!({
            "remittance_id": remittance_id,
            "period": period_text,
            "bank_reference": bank_reference,
            "lines": line_count,
            "settled_instalments": settled.instalments,
            "settled_amount": settled.amount.as_i64(),
            "unmatched": unmatched.len(),
        });
        tavana_kit::audit::record_in(&txn, &audit).await?;
        txn.commit().await?;

        tracing::info!(
            remittance_id = %remittance_id,
            settled_instalments = settled.instalments,
            settled_amount = settled.amount.as_i64(),
            unmatched = unmatched.len(),
            "remittance recorded"
        );
        Ok(RecordedRemittance {
            record: RemittanceRecord {
                id: remittance_id,
                organization_id,
                period: period_text,
                bank_reference,
                settled_instalments: settled.instalments,
                settled_amount: settled.amount,
                unmatched: unmatched
                    .into_iter()
                    .map(|line| StoredUnmatched {
                        line: line.line,
                        code: line.code.as_str().to_owned(),
                        national_id: line.national_id,
                        amount: line.amount,
                    })
                    .collect(),
                recorded_at: now,
            },
            replayed: false,
            enqueued,
        })
    }
}

/// Inserts the remittance's row, with its totals still zero.
async fn insert_remittance(
    txn: &DatabaseTransaction,
    remittance_id: &str,
    remittance: &NewRemittance,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let lines_amount = remittance.lines.amount();
    let insert = Query::insert()
        .into_table(Remittance::Table)
        .columns([
            Remittance::Id,
            Remittance::OrganizationId,
            Remittance::Period,
            Remittance::BankReference,
            Remittance::LineCount,
            Remittance::LinesAmount,
            Remittance::SettledInstalments,
            Remittance::SettledAmount,
            Remittance::RecordedBy,
            Remittance::RecordedAt,
        ])
        .values_panic([
            remittance_id.into(),
            remittance.organization_id.as_str().into(),
            remittance.period.to_string().into(),
            remittance.bank_reference.as_str().into(),
            to_i64(remittance.lines.len())?.into(),
            lines_amount.into(),
            0i64.into(),
            0i64.into(),
            remittance.recorded_by.as_str().into(),
            now.into(),
        ])
        .to_owned();
    txn.execute(&insert).await?;
    Ok(())
}

/// Reads what the organization's books say about the employees of one chunk: their
/// unsettled instalments of `period` (arrears re-aged into it included), and, for those with none,
/// whether the organization ever recorded an instalment of theirs.
pub(super) async fn load_ledger(
    txn: &DatabaseTransaction,
    organization_id: &str,
    period: JalaliPeriod,
    lines: &[ValidLine],
) -> Result<Ledger, DbErr> {
    let employees = employees_of(lines);
    let rows = read_due(txn, organization_id, period, &employees).await?;
    let mut ledger = due_ledger(&employees, rows)?;
    add_known(txn, organization_id, &employees, &mut ledger).await?;
    Ok(ledger)
}

/// The employees of `lines` (ordered by national ID), in order, without repeats.
fn employees_of(lines: &[ValidLine]) -> Vec<&NationalId> {
    let mut employees: Vec<&NationalId> = lines.iter().map(|line| &line.national_id).collect();
    employees.dedup();
    employees
}

/// Has PostgreSQL plan the rest of the transaction's statements once for any values, not
/// anew for the values of each of the first five runs (its default).
///
/// A remittance runs the same few statements chunk after chunk, each naming a chunk's
/// instalments and purchases (thousands). Planned for those values, the completion of the
/// first five chunks ([`complete_purchases`]) hashed every open instalment of the table,
/// read whole, rather than probe the instalments of 20,000 purchases by index: a cost that
/// grows with the table, not with the chunk. A generic plan counts a few values per list,
/// probes the indexes, and is what every later chunk ran anyway.
async fn plan_generically(txn: &DatabaseTransaction) -> Result<(), DbErr> {
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared("SET LOCAL plan_cache_mode = force_generic_plan")
            .await?;
    }
    Ok(())
}

/// Reads the unsettled instalments of `period` of `employees` (ordered, from
/// [`employees_of`]), for [`due_ledger`]. R23: what this period's list asked, never older
/// months.
async fn read_due(
    txn: &DatabaseTransaction,
    organization_id: &str,
    period: JalaliPeriod,
    employees: &[&NationalId],
) -> Result<Vec<QueryResult>, DbErr> {
    if employees.is_empty() {
        return Ok(Vec::new());
    }
    let texts: Vec<&str> = employees.iter().map(|id| id.as_str()).collect();
    let mut due = Query::select();
    due.columns([
        Instalment::Id,
        Instalment::PurchaseId,
        Instalment::EmployeeId,
        Instalment::NationalId,
        Instalment::Seq,
        Instalment::Amount,
    ])
    .expr_as(Expr::cust("COALESCE(due_period, period)"), "first_period")
    .column(Instalment::State)
    .from(Instalment::Table)
    .and_where(Expr::col(Instalment::OrganizationId).eq(organization_id))
    .and_where(
        Expr::col(Instalment::State).is_in(InstalmentState::OPEN.map(InstalmentState::as_str)),
    )
    .cond_where(national_ids(txn.get_database_backend(), &texts)?)
    .and_where(Expr::col(Instalment::Period).eq(period.to_string()));
    txn.query_all(&due).await
}

/// Files [`read_due`]'s rows by employee. Pure work on the rows, so that it can run while
/// the database answers another statement.
fn due_ledger(employees: &[&NationalId], rows: Vec<QueryResult>) -> Result<Ledger, DbErr> {
    let mut ledger = Ledger::default();
    for row in rows {
        let text: String = get(&row, "national_id")?;
        let Ok(index) = employees.binary_search_by(|id| id.as_str().cmp(text.as_str())) else {
            // In the range, but without a line in this chunk.
            continue;
        };
        let period: String = get(&row, "first_period")?;
        let period = JalaliPeriod::parse(&period)
            .map_err(|_| DbErr::Custom(format!("stored period {period} is invalid")))?;
        let state: String = get(&row, "state")?;
        ledger
            .due
            .entry(employees[index].clone())
            .or_default()
            .push(DueInstalment {
                id: get(&row, "id")?,
                purchase_id: get(&row, "purchase_id")?,
                employee_id: get(&row, "employee_id")?,
                period,
                seq: to_u32(get::<i32>(&row, "seq")?)?,
                amount: Rial(get(&row, "amount")?),
                overdue: state == InstalmentState::Overdue.as_str(),
            });
    }
    Ok(ledger)
}

/// Marks in `ledger` which of `employees` with nothing due the organization knows: they
/// owe nothing, the others are unknown (R23).
async fn add_known(
    txn: &DatabaseTransaction,
    organization_id: &str,
    employees: &[&NationalId],
    ledger: &mut Ledger,
) -> Result<(), DbErr> {
    let nothing_due: Vec<&str> = employees
        .iter()
        .filter(|id| !ledger.due.contains_key(**id))
        .map(|id| id.as_str())
        .collect();
    if nothing_due.is_empty() {
        return Ok(());
    }
    let known = Query::select()
        .distinct()
        .column(Instalment::NationalId)
        .from(Instalment::Table)
        .and_where(Expr::col(Instalment::OrganizationId).eq(organization_id))
        .cond_where(national_ids(txn.get_database_backend(), &nothing_due)?)
        .to_owned();
    for row in txn.query_all(&known).await? {
        let text: String = get(&row, "national_id")?;
        if let Ok(index) = employees.binary_search_by(|id| id.as_str().cmp(text.as_str())) {
            ledger.known.insert(employees[index].clone());
        }
    }
    Ok(())
}

/// Settles a chunk's instalments and completes the purchases it leaves with none open
/// (see [`settle`] and [`complete_purchases`]): `None` when one of the instalments was no
/// longer unsettled, and the caller rolls back.
pub(super) async fn settle_and_complete(
    txn: &DatabaseTransaction,
    remittance_id: &str,
    settled: &[DueInstalment],
    now: DateTime<Utc>,
) -> Result<Option<Vec<String>>, DbErr> {
    if !settle(txn, remittance_id, settled, now).await? {
        return Ok(None);
    }
    complete_purchases(txn, settled, now).await.map(Some)
}

/// Settles instalments, guarded by their state: returns false when one of them is no longer
/// unsettled (someone else changed it), and the caller rolls back.
async fn settle(
    txn: &DatabaseTransaction,
    remittance_id: &str,
    instalments: &[DueInstalment],
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    if instalments.is_empty() {
        return Ok(true);
    }
    let ids: Vec<&str> = instalments.iter().map(|d| d.id.as_str()).collect();
    let update = Query::update()
        .table(Instalment::Table)
        .value(Instalment::State, InstalmentState::Settled.as_str())
        .value(Instalment::SettledAt, now)
        .value(Instalment::RemittanceId, remittance_id)
        .and_where(one_of(txn.get_database_backend(), Instalment::Id, &ids)?)
        .and_where(
            Expr::col(Instalment::State).is_in(InstalmentState::OPEN.map(InstalmentState::as_str)),
        )
        .to_owned();
    Ok(txn.execute(&update).await?.rows_affected() == ids.len() as u64)
}

/// Returns the purchases of which `settled` holds an instalment but that are not
/// `completed`, in id order: credit refunds them no more (R20).
pub(super) fn partly_settled(settled: &[DueInstalment], completed: &[String]) -> Vec<String> {
    let completed: BTreeSet<&str> = completed.iter().map(String::as_str).collect();
    settled
        .iter()
        .map(|due| due.purchase_id.as_str())
        .filter(|id| !completed.contains(id))
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// Marks the purchases left with no unsettled instalment as completed and returns them, in
/// id order, for the message to credit (R18); a purchase completes once.
async fn complete_purchases(
    txn: &DatabaseTransaction,
    settled: &[DueInstalment],
    now: DateTime<Utc>,
) -> Result<Vec<String>, DbErr> {
    let touched: BTreeSet<&str> = settled.iter().map(|d| d.purchase_id.as_str()).collect();
    if touched.is_empty() {
        return Ok(Vec::new());
    }
    let touched: Vec<&str> = touched.into_iter().collect();
    let still_open: SelectStatement = Query::select()
        .expr(Expr::val(1))
        .from(Instalment::Table)
        .and_where(
            Expr::col((Instalment::Table, Instalment::PurchaseId))
                .equals((PurchaseSchedule::Table, PurchaseSchedule::PurchaseId)),
        )
        .and_where(
            Expr::col((Instalment::Table, Instalment::State))
                .is_in(InstalmentState::OPEN.map(InstalmentState::as_str)),
        )
        .to_owned();
    let mark = Query::update()
        .table(PurchaseSchedule::Table)
        .value(PurchaseSchedule::CompletedAt, now)
        .and_where(one_of(
            txn.get_database_backend(),
            (PurchaseSchedule::Table, PurchaseSchedule::PurchaseId),
            &touched,
        )?)
        .and_where(Expr::col(PurchaseSchedule::CompletedAt).is_null())
        .and_where(Expr::exists(still_open).not())
        .returning_col(PurchaseSchedule::PurchaseId)
        .to_owned();
    let mut completed: Vec<String> = txn
        .query_all(&mark)
        .await?
        .iter()
        .map(|row| get(row, "purchase_id"))
        .collect::<Result<_, DbErr>>()?;
    // RETURNING gives no order; the message gets the purchases in id order.
    completed.sort_unstable();
    Ok(completed)
}

/// One chunk of a remittance as it settles, for the service's SMS (R28). Credit's messages
/// (R18, R20) need what the chunk completed, which the store learns from the database while
/// the service writes these; the store sends them first, then the employees' new arrears
/// (R29), then the SMS.
#[derive(Debug)]
pub struct SettledChunk<'a> {
    /// The remittance: names the messages.
    pub remittance_id: &'a str,
    /// The chunk's index in the remittance.
    pub chunk: usize,
    /// The period paid, `YYYY-MM`.
    pub period: &'a str,
    /// The instalments settled, employee by employee; an employee is never split between
    /// chunks.
    pub settled: &'a [DueInstalment],
}

/// Keeps the unmatched lines for review: on PostgreSQL a chunk's worth per statement (an
/// array per column), on SQLite in multi-row inserts.
async fn insert_unmatched(
    txn: &DatabaseTransaction,
    remittance_id: &str,
    lines: &[remittance::UnmatchedLine],
) -> Result<(), DbErr> {
    if lines.is_empty() {
        return Ok(());
    }
    if txn.get_database_backend() == DbBackend::Postgres {
        let column = |ty, values: Vec<Value>| Value::Array(ty, Some(Box::new(values)));
        for chunk in lines.chunks(REMITTANCE_CHUNK_LINES) {
            let statement = Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO unmatched_line (remittance_id, line, national_id, amount, code) \
                 SELECT $1, line, national_id, amount, code \
                 FROM unnest($2::int4[], $3::text[], $4::int8[], $5::text[]) \
                 AS l(line, national_id, amount, code)",
                [
                    remittance_id.into(),
                    column(
                        ArrayType::Int,
                        chunk
                            .iter()
                            .map(|line| to_i32(line.line).map(Into::into))
                            .collect::<Result<_, DbErr>>()?,
                    ),
                    column(
                        ArrayType::String,
                        chunk
                            .iter()
                            .map(|line| line.national_id.as_str().into())
                            .collect(),
                    ),
                    column(
                        ArrayType::BigInt,
                        chunk
                            .iter()
                            .map(|line| line.amount.as_i64().into())
                            .collect(),
                    ),
                    column(
                        ArrayType::String,
                        chunk.iter().map(|line| line.code.as_str().into()).collect(),
                    ),
                ],
            );
            txn.execute_raw(statement).await?;
        }
        return Ok(());
    }
    for chunk in lines.chunks(UNMATCHED_INSERT_CHUNK) {
        let mut insert = Query::insert();
        insert.into_table(UnmatchedLine::Table).columns([
            UnmatchedLine::RemittanceId,
            UnmatchedLine::Line,
            UnmatchedLine::NationalId,
            UnmatchedLine::Amount,
            UnmatchedLine::Code,
        ]);
        for line in chunk {
            insert.values_panic([
                remittance_id.into(),
                to_i32(line.line)?.into(),
                line.national_id.as_str().into(),
                line.amount.as_i64().into(),
                line.code.as_str().into(),
            ]);
        }
        txn.execute(&insert).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use sea_orm::sea_query::{PostgresQueryBuilder, SqliteQueryBuilder};

    use super::*;

    fn select_where(condition: Expr) -> SelectStatement {
        Query::select()
            .column(Instalment::Id)
            .from(Instalment::Table)
            .and_where(condition)
            .to_owned()
    }

    #[test]
    fn one_of_binds_a_set_as_one_parameter() {
        let ids = ["a", "b'c", "d\"e"];
        let (sql, values) =
            select_where(one_of(DbBackend::Postgres, Instalment::Id, &ids).unwrap())
                .build(PostgresQueryBuilder);
        assert_eq!(sql, r#"SELECT "id" FROM "instalment" WHERE "id" = ANY($1)"#);
        assert_eq!(values.0.len(), 1);

        let (sql, values) = select_where(one_of(DbBackend::Sqlite, Instalment::Id, &ids).unwrap())
            .build(SqliteQueryBuilder);
        assert_eq!(
            sql,
            r#"SELECT "id" FROM "instalment" WHERE "id" IN (SELECT "value" FROM json_each(?) AS "ids")"#
        );
        assert_eq!(
            values.0,
            [Value::String(Some(r#"["a","b'c","d\"e"]"#.to_owned()))]
        );
    }

    #[test]
    fn a_few_employees_are_named_and_many_are_read_as_a_range() {
        let few = ["0012345679", "0499370899"];
        let sql = |backend, ids: &[&str]| {
            let query = Query::select()
                .column(Instalment::Id)
                .from(Instalment::Table)
                .cond_where(national_ids(backend, ids).unwrap())
                .to_owned();
            match backend {
                DbBackend::Postgres => query.to_string(PostgresQueryBuilder),
                _ => query.to_string(SqliteQueryBuilder),
            }
        };
        assert_eq!(
            sql(DbBackend::Postgres, &few),
            r#"SELECT "id" FROM "instalment" WHERE "national_id" >= '0012345679' AND "national_id" <= '0499370899' AND "national_id" = ANY(ARRAY ['0012345679','0499370899'])"#
        );
        assert_eq!(
            sql(DbBackend::Sqlite, &few),
            r#"SELECT "id" FROM "instalment" WHERE "national_id" IN (SELECT "value" FROM json_each('["0012345679","0499370899"]') AS "ids")"#
        );
        let many: Vec<String> = (0..=PROBE_EMPLOYEES).map(|n| format!("{n:010}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        for backend in [DbBackend::Postgres, DbBackend::Sqlite] {
            assert!(sql(backend, &many).ends_with(&format!(
                r#"WHERE "national_id" >= '0000000000' AND "national_id" <= '{:010}'"#,
                PROBE_EMPLOYEES
            )));
        }
    }
}
