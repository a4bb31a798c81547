//! R31's digest of a range of purchases: what credit scheduled and what settlement holds,
//! each reduced to one value that both services compute alike from their own rows, so a
//! reconciliation moves a digest per range instead of every purchase, and reads a range's
//! rows only when the digests differ.
//!
//! The digest is a multiset hash: the wrapping sum of an XXH3-128 of every (purchase,
//! period, amount in that period) of the range. The sum does not depend on the order the
//! terms come in, so each side adds them in whatever order its database returns them; two
//! ranges with the same terms have the same digest, and a range with a term more, less or
//! different has another one (but for a collision of 128 bits). Equal digests therefore
//! mean that every purchase has the same amount in every period on both sides, and that
//! neither side has a purchase the other does not (no deduction is ever zero, R15).

use xxhash_rust::xxh3::Xxh3;

/// The digest of a range (see the module's comment).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedgerDigest(u128);

impl LedgerDigest {
    /// Adds one purchase's amount in one period (`YYYY-MM`); a purchase with several
    /// deductions in a period adds their sum once (see [`LedgerDigest::add_schedule`]).
    pub fn add(&mut self, purchase_id: &str, period: &str, amount: i64) {
        let mut hasher = Xxh3::new();
        // Each text ends in a byte no UTF-8 text holds, so no two triples hash one input.
        hasher.update(purchase_id.as_bytes());
        hasher.update(&[0xff]);
        hasher.update(period.as_bytes());
        hasher.update(&[0xff]);
        hasher.update(&amount.to_le_bytes());
        self.0 = self.0.wrapping_add(hasher.digest128());
    }

    /// Adds a purchase's schedule, (period, amount) in any order: the amounts of a period
    /// summed (saturating, as R31's comparison sums them), then each period once.
    pub fn add_schedule<'a>(
        &mut self,
        purchase_id: &str,
        schedule: impl IntoIterator<Item = (&'a str, i64)>,
    ) {
        let mut periods: Vec<(&str, i64)> = schedule.into_iter().collect();
        periods.sort_unstable_by(|a, b| a.0.cmp(b.0));
        periods.dedup_by(|next, kept| {
            let same = next.0 == kept.0;
            if same {
                kept.1 = kept.1.saturating_add(next.1);
            }
            same
        });
        for (period, amount) in periods {
            self.add(purchase_id, period, amount);
        }
    }

    /// Adds a purchase's schedule as [`LedgerDigest::add_schedule`] does, and says whether
    /// it adds up (saturating, as R31's comparison sums) to `due`, the amount less refunds:
    /// a schedule that does not is a difference whatever the other side holds.
    pub fn add_purchase<'a>(
        &mut self,
        purchase_id: &str,
        due: i64,
        schedule: impl IntoIterator<Item = (&'a str, i64)>,
    ) -> bool {
        let schedule: Vec<(&str, i64)> = schedule.into_iter().collect();
        let scheduled = schedule
            .iter()
            .fold(0i64, |sum, (_, amount)| sum.saturating_add(*amount));
        self.add_schedule(purchase_id, schedule);
        scheduled == due
    }

    /// The digest as sent between the services (16 bytes, big-endian).
    pub fn to_bytes(self) -> Vec<u8> {
        self.0.to_be_bytes().to_vec()
    }

    /// Reads a digest sent by [`LedgerDigest::to_bytes`]; `None` for any other length.
    pub fn from_bytes(bytes: &[u8]) -> Option<LedgerDigest> {
        Some(LedgerDigest(u128::from_be_bytes(bytes.try_into().ok()?)))
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
    }

    #[test]
    fn r31_a_schedule_counts_each_period_once_with_its_deductions_summed() {
        let mut scheduled = LedgerDigest::default();
        scheduled.add_schedule("P1", [("1405-04", 33), ("1405-03", 30), ("1405-03", 4)]);
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
    fn r31_a_digest_travels_as_sixteen_bytes_and_nothing_else_reads_as_one() {
        let sent = digest(&[("P1", "1405-03", 1)]);
        assert_eq!(LedgerDigest::from_bytes(&sent.to_bytes()), Some(sent));
        assert_eq!(LedgerDigest::from_bytes(&[0; 15]), None);
        assert_eq!(LedgerDigest::from_bytes(&[]), None);
    }
}
