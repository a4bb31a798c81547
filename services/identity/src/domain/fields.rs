//! Request fields parsed into identity's types, each failure a violation that names its
//! field (R2), so a use case can report every bad field at once.

use tavana_kit::error::{Violation, codes};
use tavana_kit::ids::{Mobile, NationalId};

/// The longest free text accepted in a required text field, in characters.
pub const MAX_TEXT_CHARS: usize = 200;

/// Parses the national ID in `field` (R2).
pub fn national_id(field: &str, text: &str) -> Result<NationalId, Violation> {
    NationalId::parse(text).map_err(|error| {
        Violation::new(
            field,
            error.code(),
            "The national ID is invalid.",
            error.message_fa(),
        )
    })
}

/// Parses the mobile number in `field` (R2).
pub fn mobile(field: &str, text: &str) -> Result<Mobile, Violation> {
    Mobile::parse(text).map_err(|error| {
        Violation::new(
            field,
            error.code(),
            "The mobile number is invalid.",
            error.message_fa(),
        )
    })
}

/// Returns the trimmed text of a required field of at most [`MAX_TEXT_CHARS`] characters.
pub fn required_text(field: &str, text: &str) -> Result<String, Violation> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > MAX_TEXT_CHARS {
        return Err(Violation::new(
            field,
            codes::REQUIRED,
            "This field is required (at most 200 characters).",
            "این فیلد لازم است (حداکثر ۲۰۰ نویسه).",
        ));
    }
    Ok(text.to_owned())
}

/// Returns the violation of a required field left empty, with its own messages.
pub fn missing(field: &str, message_en: &str, message_fa: &str) -> Violation {
    Violation::new(field, codes::REQUIRED, message_en, message_fa)
}
