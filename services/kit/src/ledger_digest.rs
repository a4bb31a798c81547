//! R31's digest of a range of purchases: what credit scheduled and what settlement holds,
//! each reduced to one value that both services compute alike from their own rows, so a
//! reconciliation moves a digest per range instead of every purchase, and reads a range's
//! rows only when the digests differ.
//!
//! The digest is a multiset hash, linear in the amounts: the sum, modulo the prime
//! 2^61 - 1, of `weight(purchase, period) x amount` over every (purchase, period, amount)
//! of the range, where the weight is an XXH3-64 of the purchase and the period (never 0).
//! The sum does not depend on the order the terms come in, and since it is linear, the
//! deductions of a period add up to the period's amount by themselves: each side adds its
//! rows as they come, one term per deduction or instalment. Two ranges with the same
//! amounts per purchase and period have the same digest; for two that differ, the digests
//! are equal only if the differences, weighted, cancel modulo the prime (about one chance
//! in 2^61 for weights that behave as random). Equal digests therefore mean that every
//! purchase has the same amount in every period on both sides, and that neither side has a
//! purchase the other does not (no deduction is ever zero, R15, and no amount reaches the
//! prime).
//!
//! Each row's term is a function of its own columns, so a service stores it with the row
//! (credit one per purchase, the sum of its schedule's terms; settlement one per instalment)
//! and its database sums a range's terms without sending a row: [`sum_columns`] splits the
//! sum so that it cannot overflow a 64-bit `SUM`, and [`LedgerDigest::from_sums`] joins it.

use sea_orm_migration::prelude::{Alias, ColumnDef, DbErr, SchemaManager, Table};
use xxhash_rust::xxh3::Xxh3;

/// The column a service stores its rows' terms in (empty for a row it cannot vouch for).
pub const TERM_COLUMN: &str = "ledger_term";

/// Adds [`TERM_COLUMN`] to `table`, in a migration: a `BIGINT`, empty for the rows already
/// there.
pub async fn add_term_column(manager: &SchemaManager<'_>, table: &str) -> Result<(), DbErr> {
    manager
        .alter_table(
            Table::alter()
                .table(Alias::new(table))
                .add_column(ColumnDef::new(Alias::new(TERM_COLUMN)).big_integer().null())
                .to_owned(),
        )
        .await
}

/// Drops [`TERM_COLUMN`] from `table`, in a migration's `down`.
pub async fn drop_term_column(manager: &SchemaManager<'_>, table: &str) -> Result<(), DbErr> {
    manager
        .alter_table(
            Table::alter()
                .table(Alias::new(table))
                .drop_column(Alias::new(TERM_COLUMN))
                .to_owned(),
        )
        .await
}

/// The prime the digest is taken modulo (a Mersenne prime: 2^61 - 1).
const PRIME: u64 = (1 << 61) - 1;

/// The bits of a stored term that [`sum_columns`] sums apart from the rest: a range of up
/// to 2^32 terms then sums to less than 2^63 in each part.
const LOW_BITS: u32 = 31;

/// The digest of a range (see the module's comment): a value below the prime.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedgerDigest(u64);

/// One purchase's amount in one period, weighted: the term [`LedgerDigest::add`] adds, and
/// what settlement stores with an instalment (in `[0, 2^61 - 1)`).
pub fn term(purchase_id: &str, period: &str, amount: i64) -> i64 {
    let mut hasher = Xxh3::new();
    // Each text ends in a byte no UTF-8 text holds, so no two pairs hash one input.
    hasher.update(purchase_id.as_bytes());
    hasher.update(&[0xff]);
    hasher.update(period.as_bytes());
    hasher.update(&[0xff]);
    let weight = (hasher.digest() % PRIME).max(1);
    let amount = reduce(i128::from(amount));
    // Both factors are below 2^61, so their product fits.
    as_term(reduce(i128::from(weight) * i128::from(amount)))
}

/// `value` modulo the prime, in `[0, 2^61 - 1)`.
fn reduce(value: i128) -> u64 {
    // A Euclidean remainder by the prime is below it, so it fits.
    u64::try_from(value.rem_euclid(i128::from(PRIME))).unwrap_or_default()
}

/// A value reduced below the prime, as a stored term (it fits: the prime is below 2^61).
fn as_term(reduced: u64) -> i64 {
    i64::try_from(reduced).unwrap_or_default()
}

/// The four SQL expressions that digest the stored terms ([`TERM_COLUMN`]) of the rows a
/// query selects, for [`LedgerDigest::from_sums`]: the rows counted, the rows with a term
/// counted, and the terms' high bits and low bits summed apart (0 for none), each a
/// `BIGINT` that cannot overflow.
pub fn sum_columns() -> [String; 4] {
    let low_mask = (1u64 << LOW_BITS) - 1;
    let column = TERM_COLUMN;
    [
        "COUNT(*)".to_owned(),
        format!("COUNT({column})"),
        format!("CAST(COALESCE(SUM({column} >> {LOW_BITS}), 0) AS BIGINT)"),
        format!("CAST(COALESCE(SUM({column} & {low_mask}), 0) AS BIGINT)"),
    ]
}

impl LedgerDigest {
    /// Adds one deduction or instalment: a purchase's amount in one period (`YYYY-MM`).
    /// Several in the same period add up to the period's amount.
    pub fn add(&mut self, purchase_id: &str, period: &str, amount: i64) {
        self.add_term(term(purchase_id, period, amount));
    }

    /// Adds a term made by [`term`] (or a purchase's, by [`LedgerDigest::purchase_term`]).
    pub fn add_term(&mut self, term: i64) {
        self.0 = reduce(i128::from(self.0) + i128::from(term));
    }

    /// The digest of the rows the expressions of [`sum_columns`] were computed over, from
    /// what they returned: none when a row has no term (its digest must come from its
    /// columns).
    pub fn from_sums(rows: i64, termed: i64, high: i64, low: i64) -> Option<LedgerDigest> {
        (termed == rows)
            .then(|| LedgerDigest(reduce((i128::from(high) << LOW_BITS) + i128::from(low))))
    }

    /// Adds a purchase's schedule, (period, amount) in any order, and says whether it adds
    /// up (saturating, as R31's comparison sums) to `due`, the amount less refunds:
    /// a schedule that does not is a difference whatever the other side holds.
    pub fn add_purchase<'a>(
        &mut self,
        purchase_id: &str,
        due: i64,
        schedule: impl IntoIterator<Item = (&'a str, i64)>,
    ) -> bool {
        let (term, balanced) = LedgerDigest::purchase_term(purchase_id, due, schedule);
        self.add_term(term);
        balanced
    }

    /// A purchase's term, what credit stores with it (the sum of its schedule's terms), and
    /// whether the schedule adds up (saturating) to `due`, the amount less refunds.
    pub fn purchase_term<'a>(
        purchase_id: &str,
        due: i64,
        schedule: impl IntoIterator<Item = (&'a str, i64)>,
    ) -> (i64, bool) {
        let mut digest = LedgerDigest::default();
        let mut scheduled = 0i64;
        for (period, amount) in schedule {
            scheduled = scheduled.saturating_add(amount);
            digest.add(purchase_id, period, amount);
        }
        (as_term(digest.0), scheduled == due)
    }

    /// The digest as sent between the services (8 bytes, big-endian).
    pub fn to_bytes(self) -> Vec<u8> {
        self.0.to_be_bytes().to_vec()
    }

    /// Reads a digest sent by [`LedgerDigest::to_bytes`]; `None` for any other length or a
    /// value no digest takes.
    pub fn from_bytes(bytes: &[u8]) -> Option<LedgerDigest> {
        let value = u64::from_be_bytes(bytes.try_into().ok()?);
        (value < PRIME).then_some(LedgerDigest(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(terms: &[(&str, &str, i64)]) -> LedgerDigest {
        let mut digest = LedgerDigest::default();
        for (purchase_id, period, amount) in terms {
            digest.add(purchase_id, period, *amount);
        }
        digest
    }

    #[test]
    fn r31_the_same_terms_in_any_order_give_the_same_digest() {
        let terms = [
            ("P1", "1405-03", 34),
            ("P1", "1405-04", 33),
            ("P2", "1405-03", 1),
        ];
        let mut reversed = terms;
        reversed.reverse();
        assert_eq!(digest(&terms), digest(&reversed));
        assert_ne!(digest(&terms), LedgerDigest::default());
    }

    #[test]
    fn r31_a_rial_a_period_or_a_purchase_more_or_less_changes_the_digest() {
        let base = digest(&[("P1", "1405-03", 34), ("P1", "1405-04", 33)]);
        for changed in [
            digest(&[("P1", "1405-03", 34), ("P1", "1405-04", 32)]),
            digest(&[("P1", "1405-03", 34), ("P1", "1405-05", 33)]),
            digest(&[("P1", "1405-03", 34)]),
            digest(&[
                ("P1", "1405-03", 34),
                ("P1", "1405-04", 33),
                ("P2", "1405-03", 1),
            ]),
            digest(&[("P1", "1405-03", 34), ("P2", "1405-04", 33)]),
            // The same amounts swapped between periods.
            digest(&[("P1", "1405-03", 33), ("P1", "1405-04", 34)]),
            // Ids and periods that run into each other.
            digest(&[("P11", "405-03", 34), ("P1", "1405-04", 33)]),
        ] {
            assert_ne!(base, changed);
        }
        // The weights are hashed, not a period's number: a month's amount is not the
        // average of its neighbours'.
        assert_ne!(
            digest(&[("P1", "1405-03", 100), ("P1", "1405-05", 100)]),
            digest(&[("P1", "1405-04", 200)])
        );
    }

    #[test]
    fn r31_a_periods_deductions_add_up_to_its_amount_in_any_order() {
        let scheduled = digest(&[
            ("P1", "1405-04", 33),
            ("P1", "1405-03", 30),
            ("P1", "1405-03", 4),
        ]);
        // Settlement's instalments of a period, added one by one, give the period's term.
        assert_eq!(
            (term("P1", "1405-03", 30) + term("P1", "1405-03", 4)) % PRIME.cast_signed(),
            term("P1", "1405-03", 34)
        );
        assert_eq!(
            scheduled,
            digest(&[("P1", "1405-03", 34), ("P1", "1405-04", 33)])
        );
    }

    #[test]
    fn r31_a_purchase_is_digested_as_its_schedule_and_checked_against_what_stays_due() {
        let mut purchase = LedgerDigest::default();
        assert!(purchase.add_purchase("P1", 67, [("1405-03", 34), ("1405-04", 33)]));
        assert_eq!(
            purchase,
            digest(&[("P1", "1405-03", 34), ("P1", "1405-04", 33)])
        );
        // 1 rial of 5 scheduled: digested all the same, but not balanced.
        assert!(!LedgerDigest::default().add_purchase("P2", 5, [("1405-03", 1)]));
        // Nothing due, nothing scheduled (a whole refund, R20).
        assert!(LedgerDigest::default().add_purchase("P3", 0, []));
    }

    #[test]
    fn r31_a_digest_travels_as_eight_bytes_and_nothing_else_reads_as_one() {
        let sent = digest(&[("P1", "1405-03", 1)]);
        assert_eq!(sent.to_bytes().len(), 8);
        assert_eq!(LedgerDigest::from_bytes(&sent.to_bytes()), Some(sent));
        assert_eq!(LedgerDigest::from_bytes(&[0; 16]), None);
        assert_eq!(LedgerDigest::from_bytes(&[]), None);
        // No digest reaches the prime.
        assert_eq!(LedgerDigest::from_bytes(&PRIME.to_be_bytes()), None);
    }

    #[test]
    fn r31_stored_terms_summed_in_two_parts_give_the_digest_of_their_rows() {
        let rows = [
            ("P1", "1405-03", 1),
            ("P1", "1405-04", 9_999_999_999_999),
            ("P2", "1405-03", 33),
            ("P3", "1405-12", i64::MAX),
        ];
        let terms: Vec<i64> = rows
            .iter()
            .map(|(p, period, a)| term(p, period, *a))
            .collect();
        assert!(terms.iter().all(|t| (1..PRIME.cast_signed()).contains(t)));
        // What `sum_columns` has a database compute, done here.
        let high: i64 = terms.iter().map(|t| t >> LOW_BITS).sum();
        let low: i64 = terms.iter().map(|t| t & ((1 << LOW_BITS) - 1)).sum();
        let count = i64::try_from(terms.len()).unwrap();
        assert_eq!(
            LedgerDigest::from_sums(count, count, high, low),
            Some(digest(&rows))
        );
        // A row without a term leaves the digest to the rows' columns.
        assert_eq!(LedgerDigest::from_sums(count + 1, count, high, low), None);
        // A purchase's stored term is its schedule's terms summed.
        let (p1, balanced) = LedgerDigest::purchase_term(
            "P1",
            10_000_000_000_000,
            [("1405-04", 9_999_999_999_999), ("1405-03", 1)],
        );
        assert!(balanced);
        let mut by_purchase = LedgerDigest::default();
        for stored in [p1, terms[2], terms[3]] {
            by_purchase.add_term(stored);
        }
        assert_eq!(by_purchase, digest(&rows));
        // Nothing summed is nothing.
        assert_eq!(
            LedgerDigest::from_sums(0, 0, 0, 0),
            Some(LedgerDigest::default())
        );
        assert_eq!(
            sum_columns()[2],
            "CAST(COALESCE(SUM(ledger_term >> 31), 0) AS BIGINT)"
        );
    }
}
