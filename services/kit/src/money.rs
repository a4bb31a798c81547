//! Money: whole rials in an `i64`, with checked arithmetic only.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An amount of money in Iranian rials.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Rial(pub i64);

impl Rial {
    /// Zero rials.
    pub const ZERO: Rial = Rial(0);

    /// Returns the amount as a plain integer.
    pub const fn as_i64(self) -> i64 {
        self.0
    }

    /// Returns the sum, or `None` on overflow.
    pub fn checked_add(self, other: Rial) -> Option<Rial> {
        self.0.checked_add(other.0).map(Rial)
    }

    /// Returns the difference, or `None` on overflow.
    pub fn checked_sub(self, other: Rial) -> Option<Rial> {
        self.0.checked_sub(other.0).map(Rial)
    }

    /// Returns the amount multiplied by `factor`, or `None` on overflow.
    pub fn checked_mul(self, factor: i64) -> Option<Rial> {
        self.0.checked_mul(factor).map(Rial)
    }

    /// Returns the amount divided by `divisor`, rounded towards positive infinity
    /// (so that `n` instalments of the result cover the amount).
    ///
    /// Panics when `divisor` is zero, like integer division; see [`Rial::checked_div_ceil`].
    pub fn div_ceil(self, divisor: i64) -> Rial {
        match self.checked_div_ceil(divisor) {
            Some(value) => value,
            None => panic!("Rial::div_ceil by zero or overflow"),
        }
    }

    /// Returns the amount divided by `divisor` rounded towards positive infinity, or `None`
    /// when `divisor` is zero or the division overflows.
    pub fn checked_div_ceil(self, divisor: i64) -> Option<Rial> {
        let quotient = self.0.checked_div(divisor)?;
        let remainder = self.0.checked_rem(divisor)?;
        if remainder != 0 && ((remainder > 0) == (divisor > 0)) {
            quotient.checked_add(1).map(Rial)
        } else {
            Some(Rial(quotient))
        }
    }

    /// Returns true when the amount is above zero.
    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// Returns true when the amount is below zero.
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }
}

impl fmt::Display for Rial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<Rial> for i64 {
    fn from(value: Rial) -> i64 {
        value.0
    }
}

impl From<i64> for Rial {
    fn from(value: i64) -> Rial {
        Rial(value)
    }
}

/// Spreads `amount` over at most `months` monthly instalments as R15 says: with
/// `n = min(months, amount)`, `q = A / n` and `r = A mod n`, the first `r` are `q + 1`
/// and the rest `q`. So the amounts differ by at most one rial, the larger come first, none
/// exceeds `ceil(A / months)` and none is zero: an amount smaller than the months (after a
/// refund) is spread over as many instalments as there are rial. Nothing (an empty list)
/// for an amount that is not positive.
///
/// Credit builds every schedule with it and settlement checks every schedule it receives
/// with [`is_spread`], so that settlement never refuses what credit's rules allow.
pub fn spread(amount: Rial, months: u32) -> Vec<Rial> {
    if !amount.is_positive() || months == 0 {
        return Vec::new();
    }
    let n = i64::from(months).min(amount.as_i64());
    let q = amount.as_i64() / n;
    let r = amount.as_i64() % n;
    (0..n)
        .map(|index| Rial(if index < r { q + 1 } else { q }))
        .collect()
}

/// Returns true when `amounts`, in schedule order, are what [`spread`] makes of their sum
/// over their count (R15): none zero, the larger first, differing by at most one rial.
pub fn is_spread(amounts: &[Rial]) -> bool {
    let Some(total) = amounts
        .iter()
        .try_fold(Rial::ZERO, |sum, amount| sum.checked_add(*amount))
    else {
        return false;
    };
    let Ok(count) = u32::try_from(amounts.len()) else {
        return false;
    };
    spread(total, count) == amounts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r15_spread_puts_the_larger_first_and_never_makes_a_zero() {
        assert_eq!(spread(Rial(10), 4), [Rial(3), Rial(3), Rial(2), Rial(2)]);
        assert_eq!(spread(Rial(2), 3), [Rial(1), Rial(1)]);
        assert_eq!(spread(Rial(1), 12), [Rial(1)]);
        assert_eq!(spread(Rial(5), 12), vec![Rial(1); 5]);
        assert_eq!(spread(Rial(12), 12), vec![Rial(1); 12]);
        assert_eq!(spread(Rial(13), 12)[0], Rial(2));
        assert!(spread(Rial(0), 3).is_empty());
        assert!(spread(Rial(-4), 3).is_empty());
        assert!(spread(Rial(4), 0).is_empty());
    }

    #[test]
    fn r15_is_spread_accepts_only_what_spread_makes() {
        assert!(is_spread(&[Rial(3), Rial(3), Rial(2), Rial(2)]));
        assert!(is_spread(&[Rial(1)]));
        assert!(!is_spread(&[Rial(2), Rial(2), Rial(3)]));
        assert!(!is_spread(&[Rial(1), Rial(1), Rial(0)]));
        assert!(!is_spread(&[Rial(4), Rial(2)]));
        assert!(!is_spread(&[Rial(i64::MAX), Rial(i64::MAX)]));
        assert!(is_spread(&[]));
    }

    #[test]
    fn checked_arithmetic_reports_overflow() {
        assert_eq!(Rial(5).checked_add(Rial(7)), Some(Rial(12)));
        assert_eq!(Rial(i64::MAX).checked_add(Rial(1)), None);
        assert_eq!(Rial(5).checked_sub(Rial(7)), Some(Rial(-2)));
        assert_eq!(Rial(i64::MIN).checked_sub(Rial(1)), None);
        assert_eq!(Rial(5).checked_mul(3), Some(Rial(15)));
        assert_eq!(Rial(i64::MAX).checked_mul(2), None);
    }

    #[test]
    fn div_ceil_rounds_up_so_instalments_cover_the_amount() {
        assert_eq!(Rial(10).div_ceil(3), Rial(4));
        assert_eq!(Rial(9).div_ceil(3), Rial(3));
        assert_eq!(Rial(0).div_ceil(3), Rial(0));
        assert_eq!(Rial(-10).div_ceil(3), Rial(-3));
        assert_eq!(Rial(10).checked_div_ceil(0), None);
        assert_eq!(
            Rial(1_000_001).div_ceil(12).checked_mul(12).unwrap(),
            Rial(1_000_008)
        );
    }

    #[test]
    fn displays_plain_digits_and_serializes_as_a_number() {
        assert_eq!(Rial(1_250_000).to_string(), "1250000");
        assert_eq!(serde_json::to_string(&Rial(42)).unwrap(), "42");
        assert_eq!(serde_json::from_str::<Rial>("42").unwrap(), Rial(42));
        assert!(Rial(1).is_positive());
        assert!(!Rial::ZERO.is_positive());
        assert_eq!(i64::from(Rial(7)), 7);
    }
}
