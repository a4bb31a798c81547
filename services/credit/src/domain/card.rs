//! Cards (R21): customer number with a check digit, masked PAN, second PIN.

use tavana_kit::ids::normalize_digits;

use crate::error::CreditError;

/// Wrong PINs that lock a card (R21).
pub const MAX_PIN_ATTEMPTS: u32 = 5;

/// The card issuer prefix of our customer numbers.
const ISSUER_PREFIX: &str = "603799";

/// A card's customer number: 16 digits, the last a Luhn check digit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CustomerNumber(String);

impl CustomerNumber {
    /// Parses 16 digits (Persian digits, spaces and dashes accepted) with a valid check digit.
    pub fn parse(input: &str) -> Result<CustomerNumber, CreditError> {
        let digits: String = normalize_digits(input)
            .chars()
            .filter(|c| !matches!(c, ' ' | '-'))
            .collect();
        if digits.len() != 16
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || luhn_check_digit(&digits[..15]) != digits.as_bytes()[15] - b'0'
        {
            return Err(CreditError::invalid(
                "customer_number",
                "customer_number_invalid",
                "The customer number is not valid.",
                "شمارهٔ مشتری معتبر نیست.",
            ));
        }
        Ok(CustomerNumber(digits))
    }

    /// Builds a customer number from nine body digits (the random part): issuer prefix,
    /// body, check digit.
    pub fn from_body(body: u64) -> CustomerNumber {
        let partial = format!("{ISSUER_PREFIX}{:09}", body % 1_000_000_000);
        let check = luhn_check_digit(&partial);
        CustomerNumber(format!("{partial}{check}"))
    }

    /// Returns the digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the masked PAN shown on the card image, e.g. `6037-99**-****-1234`.
    pub fn masked_pan(&self) -> String {
        let digits = &self.0;
        format!(
            "{}-{}**-****-{}",
            &digits[0..4],
            &digits[4..6],
            &digits[12..16]
        )
    }
}

/// Returns the Luhn check digit of `digits` (ASCII digits only).
pub fn luhn_check_digit(digits: &str) -> u8 {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(index, byte)| {
            let digit = u32::from(byte - b'0');
            if index % 2 == 0 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// A second PIN as typed: 10 digits (Persian digits accepted).
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(String);

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin(***)")
    }
}

impl Pin {
    /// Reads a PIN to verify; anything that is not 10 digits can never match.
    pub fn entered(input: &str) -> Pin {
        Pin(normalize_digits(input.trim()))
    }

    /// Parses a new PIN (R21, S12): 10 digits, not all the same digit, not the national ID.
    pub fn new_pin(input: &str, national_id: &str) -> Result<Pin, CreditError> {
        let pin = Pin::entered(input);
        if pin.0.len() != 10 || !pin.0.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CreditError::invalid(
                "new_pin",
                "pin_format_invalid",
                "The new PIN must be 10 digits.",
                "رمز دوم جدید باید ۱۰ رقم باشد.",
            ));
        }
        if pin.0.bytes().all(|b| b == pin.0.as_bytes()[0]) {
            return Err(CreditError::invalid(
                "new_pin",
                "pin_too_simple",
                "The new PIN may not repeat one digit.",
                "رمز دوم جدید نباید از یک رقم تکراری تشکیل شده باشد.",
            ));
        }
        if pin.0 == national_id {
            return Err(CreditError::invalid(
                "new_pin",
                "pin_equals_national_id",
                "The new PIN may not be your national ID.",
                "رمز دوم جدید نباید کد ملی شما باشد.",
            ));
        }
        Ok(pin)
    }

    /// Returns the initial PIN: the national ID (R21).
    pub fn initial(national_id: &str) -> Pin {
        Pin(national_id.to_owned())
    }

    /// Returns the digits, for hashing and verifying only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Returns how many wrong PINs are left after `failed` wrong ones.
pub fn attempts_left(failed: u32) -> u32 {
    MAX_PIN_ATTEMPTS.saturating_sub(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r21_customer_number_has_a_luhn_check_digit() {
        let number = CustomerNumber::from_body(123_456_789);
        assert_eq!(number.as_str().len(), 16);
        assert!(CustomerNumber::parse(number.as_str()).is_ok());
        let mut wrong = number.as_str().to_owned();
        let last = wrong.pop().unwrap();
        wrong.push(if last == '0' { '1' } else { '0' });
        assert!(CustomerNumber::parse(&wrong).is_err());
        // A known Luhn example: 7992739871 has check digit 3.
        assert_eq!(luhn_check_digit("7992739871"), 3);
    }

    #[test]
    fn r21_masked_pan_shows_prefix_and_last_four() {
        let number = CustomerNumber::from_body(1_234);
        let masked = number.masked_pan();
        assert!(masked.starts_with("6037-99**-****-"));
        assert_eq!(&masked[15..], &number.as_str()[12..]);
    }

    #[test]
    fn r21_new_pin_rules() {
        let national_id = "0012345679";
        assert!(Pin::new_pin("1234567890", national_id).is_ok());
        assert!(Pin::new_pin("۱۲۳۴۵۶۷۸۹۰", national_id).is_ok());
        let code = |pin: &str| Pin::new_pin(pin, national_id).unwrap_err().code();
        assert_eq!(code("12345"), "pin_format_invalid");
        assert_eq!(code("12345abcde"), "pin_format_invalid");
        assert_eq!(code("1111111111"), "pin_too_simple");
        assert_eq!(code(national_id), "pin_equals_national_id");
    }
}
