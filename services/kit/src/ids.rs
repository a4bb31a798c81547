//! Identifiers of people: the national ID (R2) and the Iranian mobile number; and the
//! codes of regions and organizations, matched as HR stores them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The ASCII digit of `c`, a digit of the block starting at `zero`.
fn shift_digit(c: char, zero: char) -> char {
    char::from_digit(u32::from(c) - u32::from(zero), 10).unwrap_or(c)
}

/// Replaces Persian (U+06F0..U+06F9) and Arabic-Indic (U+0660..U+0669) digits with ASCII digits.
pub fn normalize_digits(input: &str) -> String {
    input
        .chars()
        .map(|c| match c {
            '\u{06F0}'..='\u{06F9}' => shift_digit(c, '\u{06F0}'),
            '\u{0660}'..='\u{0669}' => shift_digit(c, '\u{0660}'),
            other => other,
        })
        .collect()
}

/// Why an identifier was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The text is not a valid national ID.
    #[error("national ID is invalid")]
    InvalidNationalId,
    /// The text is not a valid Iranian mobile number.
    #[error("mobile number is invalid")]
    InvalidMobile,
    /// The text is not a valid region code.
    #[error("region code is invalid")]
    InvalidRegionCode,
    /// The text is not a valid organization id.
    #[error("organization id is invalid")]
    InvalidOrganizationId,
}

impl IdError {
    /// Returns the stable snake_case code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            IdError::InvalidNationalId => "national_id_invalid",
            IdError::InvalidMobile => "mobile_invalid",
            IdError::InvalidRegionCode => "region_code_invalid",
            IdError::InvalidOrganizationId => "organization_id_invalid",
        }
    }

    /// Returns the error as a violation of `field`.
    pub fn violation(&self, field: &str) -> crate::error::Violation {
        crate::error::Violation::new(field, self.code(), self.to_string(), self.message_fa())
    }

    /// Returns the Persian message shown to users.
    pub fn message_fa(&self) -> &'static str {
        match self {
            IdError::InvalidNationalId => "کد ملی معتبر نیست",
            IdError::InvalidMobile => "شماره تلفن همراه معتبر نیست",
            IdError::InvalidRegionCode => "کد منطقه معتبر نیست",
            IdError::InvalidOrganizationId => "شناسهٔ سازمان معتبر نیست",
        }
    }
}

/// Returns a code as HR stores it: trimmed, Persian and Arabic digits folded to ASCII,
/// ASCII letters in upper case; `None` unless it is 1 to 64 of `A-Z 0-9 - _`.
fn normalize_code(input: &str) -> Option<String> {
    let code = normalize_digits(input.trim()).to_ascii_uppercase();
    let valid = (1..=64).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    valid.then_some(code)
}

macro_rules! code_type {
    ($(#[$doc:meta])* $name:ident, $error:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Parses a code as typed (`teh-19`, ` TEH-۱۹ `) into the form HR stores
            /// (`TEH-19`): every edge (paths, bodies, CSV, CLI, proto) goes through this.
            pub fn parse(input: &str) -> Result<$name, IdError> {
                normalize_code(input).map($name).ok_or(IdError::$error)
            }

            /// Returns the normalized code.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Returns the normalized code as a `String`.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                $name::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

code_type!(
    /// A region code (R1, R10, R31), e.g. `TEH-19`: `teh-19` and `TEH-19` are one region.
    RegionCode,
    InvalidRegionCode
);

code_type!(
    /// An employer organization's id, e.g. `ORG-01`: `org-01` and `ORG-01` are one
    /// organization.
    OrganizationId,
    InvalidOrganizationId
);

/// Removes whitespace and dashes and normalizes the digits.
fn compact(input: &str) -> String {
    normalize_digits(input)
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-' && *c != '\u{200C}')
        .collect()
}

/// A valid Iranian national ID (کد ملی): ten digits with a correct check digit (R2).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NationalId(String);

impl NationalId {
    /// Parses a national ID.
    ///
    /// Accepts Persian and Arabic-Indic digits, surrounding spaces, and 8 or 9 digits (which
    /// are left-padded with zeros); refuses a wrong check digit and ten identical digits.
    pub fn parse(input: &str) -> Result<NationalId, IdError> {
        let digits = compact(input);
        if !(8..=10).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdError::InvalidNationalId);
        }
        let padded = format!("{digits:0>10}");
        let bytes: Vec<u32> = padded.bytes().map(|b| u32::from(b - b'0')).collect();
        if bytes.iter().all(|d| *d == bytes[0]) {
            return Err(IdError::InvalidNationalId);
        }
        let sum: u32 = bytes[..9]
            .iter()
            .zip((2..=10).rev())
            .map(|(digit, weight)| digit * weight)
            .sum();
        let remainder = sum % 11;
        let check = if remainder < 2 {
            remainder
        } else {
            11 - remainder
        };
        if check != bytes[9] {
            return Err(IdError::InvalidNationalId);
        }
        Ok(NationalId(padded))
    }

    /// Returns the ten digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the ID with all but the last four digits hidden, for logs.
    pub fn masked(&self) -> String {
        format!("******{}", &self.0[6..])
    }
}

impl fmt::Display for NationalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Debug output is masked so that a national ID never reaches a log by accident.
impl fmt::Debug for NationalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NationalId({})", self.masked())
    }
}

impl FromStr for NationalId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NationalId::parse(s)
    }
}

impl Serialize for NationalId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for NationalId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        NationalId::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An Iranian mobile number in its canonical form `09xxxxxxxxx`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mobile(String);

impl Mobile {
    /// Parses a mobile number.
    ///
    /// Accepts `09…`, `+989…`, `989…`, `00989…` and `9…` (ten digits), with Persian or
    /// Arabic-Indic digits, spaces and dashes.
    pub fn parse(input: &str) -> Result<Mobile, IdError> {
        let compacted = compact(input);
        let without_plus = compacted.strip_prefix('+').unwrap_or(&compacted);
        if without_plus.is_empty() || !without_plus.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdError::InvalidMobile);
        }
        let national = if let Some(rest) = without_plus.strip_prefix("0098") {
            rest
        } else if let (Some(rest), 12) = (without_plus.strip_prefix("98"), without_plus.len()) {
            rest
        } else if let (Some(rest), 11) = (without_plus.strip_prefix('0'), without_plus.len()) {
            rest
        } else {
            without_plus
        };
        if national.len() != 10 || !national.starts_with('9') {
            return Err(IdError::InvalidMobile);
        }
        Ok(Mobile(format!("0{national}")))
    }

    /// Returns the canonical eleven digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the number with the middle digits hidden, for logs (`0912***4567`).
    pub fn masked(&self) -> String {
        format!("{}***{}", &self.0[..4], &self.0[7..])
    }
}

impl fmt::Display for Mobile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Debug output is masked so that a mobile number never reaches a log by accident.
impl fmt::Debug for Mobile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mobile({})", self.masked())
    }
}

impl FromStr for Mobile {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mobile::parse(s)
    }
}

impl Serialize for Mobile {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Mobile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Mobile::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_persian_and_arabic_indic_digits() {
        assert_eq!(normalize_digits("۰۱۲۳۴۵۶۷۸۹"), "0123456789");
        assert_eq!(normalize_digits("٠١٢٣٤٥٦٧٨٩"), "0123456789");
        assert_eq!(normalize_digits("a۱b2"), "a1b2");
    }

    #[test]
    fn r2_accepts_valid_national_ids() {
        for valid in [
            "0012345679",
            "1234567891",
            "2718281820",
            "3141592659",
            "9876543210",
        ] {
            assert_eq!(NationalId::parse(valid).unwrap().as_str(), valid);
        }
    }

    #[test]
    fn r2_refuses_a_wrong_check_digit() {
        assert_eq!(
            NationalId::parse("0012345678"),
            Err(IdError::InvalidNationalId)
        );
        assert_eq!(
            NationalId::parse("1234567890"),
            Err(IdError::InvalidNationalId)
        );
    }

    #[test]
    fn r2_refuses_identical_digits_even_with_a_valid_check_digit() {
        // 1111111111: sum 54, 54 mod 11 = 10, check 1, so only the same-digit rule refuses it.
        assert_eq!(
            NationalId::parse("1111111111"),
            Err(IdError::InvalidNationalId)
        );
        assert_eq!(
            NationalId::parse("0000000000"),
            Err(IdError::InvalidNationalId)
        );
    }

    #[test]
    fn r2_pads_short_ids_with_zeros() {
        assert_eq!(
            NationalId::parse("12345679").unwrap().as_str(),
            "0012345679"
        );
        assert_eq!(
            NationalId::parse("42567734").unwrap().as_str(),
            "0042567734"
        );
        assert_eq!(
            NationalId::parse("042567734").unwrap().as_str(),
            "0042567734"
        );
    }

    #[test]
    fn r2_refuses_wrong_lengths_and_letters() {
        for invalid in ["", "1234567", "12345678912", "00123a5679", "abc"] {
            assert_eq!(
                NationalId::parse(invalid),
                Err(IdError::InvalidNationalId),
                "{invalid}"
            );
        }
    }

    #[test]
    fn r2_accepts_persian_digits_and_surrounding_spaces() {
        assert_eq!(
            NationalId::parse(" ۰۰۱۲۳۴۵۶۷۹ ").unwrap().as_str(),
            "0012345679"
        );
        assert_eq!(
            NationalId::parse("٠٠١٢٣٤٥٦٧٩").unwrap().as_str(),
            "0012345679"
        );
    }

    #[test]
    fn national_id_masks_and_round_trips_through_serde() {
        let id = NationalId::parse("0012345679").unwrap();
        assert_eq!(id.masked(), "******5679");
        assert!(!format!("{id:?}").contains("001234"));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"0012345679\"");
        assert_eq!(serde_json::from_str::<NationalId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<NationalId>("\"0012345678\"").is_err());
        assert_eq!(IdError::InvalidNationalId.code(), "national_id_invalid");
    }

    #[test]
    fn mobile_accepts_every_common_form() {
        for input in [
            "09121234567",
            "+989121234567",
            "989121234567",
            "00989121234567",
            "9121234567",
            "0912 123 4567",
            "0912-123-4567",
            "۰۹۱۲۱۲۳۴۵۶۷",
            "+٩٨٩١٢١٢٣٤٥٦٧",
        ] {
            assert_eq!(
                Mobile::parse(input).unwrap().as_str(),
                "09121234567",
                "{input}"
            );
        }
    }

    #[test]
    fn mobile_refuses_landlines_and_wrong_lengths() {
        for input in [
            "02112345678",
            "0912123456",
            "091212345678",
            "+98212345678",
            "",
            "0912abc4567",
        ] {
            assert_eq!(Mobile::parse(input), Err(IdError::InvalidMobile), "{input}");
        }
        assert_eq!(IdError::InvalidMobile.code(), "mobile_invalid");
    }

    #[test]
    fn mobile_masks_and_round_trips_through_serde() {
        let mobile = Mobile::parse("09121234567").unwrap();
        assert_eq!(mobile.masked(), "0912***4567");
        let json = serde_json::to_string(&mobile).unwrap();
        assert_eq!(serde_json::from_str::<Mobile>(&json).unwrap(), mobile);
    }

    #[test]
    fn region_codes_are_matched_as_hr_stores_them() {
        let stored = RegionCode::parse("TEH-19").unwrap();
        for typed in ["teh-19", " TEH-19 ", "Teh-۱۹", "teh-١٩"] {
            assert_eq!(RegionCode::parse(typed).unwrap(), stored, "{typed}");
        }
        assert_eq!(stored.as_str(), "TEH-19");
        assert_eq!(OrganizationId::parse("org-01").unwrap().as_str(), "ORG-01");
    }

    #[test]
    fn codes_outside_the_charset_are_refused() {
        for bad in [
            "",
            "   ",
            "TEH 19",
            "TEH/19",
            "تهران",
            "R01;DROP",
            &"A".repeat(65),
        ] {
            assert_eq!(
                RegionCode::parse(bad),
                Err(IdError::InvalidRegionCode),
                "{bad}"
            );
        }
        assert_eq!(
            OrganizationId::parse("org 1").unwrap_err().code(),
            "organization_id_invalid"
        );
        assert!(serde_json::from_str::<RegionCode>("\"a b\"").is_err());
        assert_eq!(
            serde_json::from_str::<RegionCode>("\"r01\"")
                .unwrap()
                .as_str(),
            "R01"
        );
    }
}
