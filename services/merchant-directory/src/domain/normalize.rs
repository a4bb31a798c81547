//! Persian text normalization for search and duplicate detection (R26, R27).
//!
//! People type the same Persian name in several ways: with the Arabic letters «ي», «ى»
//! and «ك» (Arabic keyboards and old systems) or the Persian «ی» and «ک», with Persian
//! «۱۲۳» or Arabic-Indic «١٢٣» digits, with a zero-width non-joiner (U+200C) or a space
//! between the parts of a word, with or without diacritics and tatweel. Names, cities,
//! provinces, categories and queries all go through [`normalize_text`] before they are
//! stored or compared, so that every spelling meets the same form.

use tavana_kit::ids::normalize_digits;

/// Zero-width non-joiner, the Persian half-space.
const ZWNJ: char = '\u{200C}';
/// Zero-width joiner.
const ZWJ: char = '\u{200D}';
/// Tatweel (kashida), a stretching stroke with no meaning.
const TATWEEL: char = '\u{0640}';

/// Returns true for Arabic diacritics (harakat, tanwin, shadda, sukun, superscript alef),
/// which Persian text mostly omits.
fn is_arabic_diacritic(c: char) -> bool {
    matches!(c, '\u{064B}'..='\u{065F}' | '\u{0670}')
}

/// Maps Arabic letter forms to the Persian ones (R27).
fn persian_letter(c: char) -> char {
    match c {
        // Arabic yeh and alef maksura -> Persian yeh.
        '\u{064A}' | '\u{0649}' => '\u{06CC}',
        // Arabic kaf -> Persian keheh.
        '\u{0643}' => '\u{06A9}',
        other => other,
    }
}

/// Returns the normalized form of `text` (R27): Arabic «ي»/«ى»/«ك» become Persian «ی»/«ک»,
/// Persian and Arabic-Indic digits become ASCII, diacritics and tatweel are dropped, every
/// run of whitespace, ZWNJ and control characters (a NUL can end a string in the database's
/// text search) becomes one space, the ends are trimmed, and letters are lowercased (only
/// Latin letters have case).
pub fn normalize_text(text: &str) -> String {
    let digits = normalize_digits(text);
    let mut normalized = String::with_capacity(digits.len());
    let mut pending_space = false;
    for c in digits.chars() {
        if c == TATWEEL || c == ZWJ || is_arabic_diacritic(c) {
            continue;
        }
        if c == ZWNJ || c.is_whitespace() || c.is_control() {
            pending_space = !normalized.is_empty();
            continue;
        }
        if pending_space {
            normalized.push(' ');
            pending_space = false;
        }
        normalized.extend(persian_letter(c).to_lowercase());
    }
    normalized
}

/// A merchant's website as stored (R25): an `http`/`https` URL in normal form (host
/// lowercased, default port and credentials never kept), with its host for duplicate
/// detection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Website {
    /// The normalised URL, e.g. `https://shop.example.ir/` for `Shop.Example.IR`.
    pub url: String,
    /// The host without `www.` and a trailing dot (R26).
    pub host: String,
}

/// Parses a website as typed (a scheme is optional, `https` by default). `None` when it
/// is not an `http`/`https` address with a dotted host, or when it carries a user name
/// or password.
pub fn parse_website(website: &str) -> Option<Website> {
    let trimmed = website.trim();
    if trimmed.is_empty() || trimmed.chars().any(char::is_whitespace) {
        return None;
    }
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("https://{trimmed}")
    };
    let url = url::Url::parse(&with_scheme).ok()?;
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return None;
    }
    let host = url.host_str()?.trim_end_matches('.').to_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host).to_owned();
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < 2 || labels.iter().any(|label| label.is_empty()) {
        return None;
    }
    Some(Website {
        url: url.to_string(),
        host,
    })
}

/// Returns the host of a website for duplicate detection (R26): scheme, `www.`, port,
/// path, query and a trailing dot are dropped and the host is lowercased, so that
/// `https://www.DigiKala.com/` and `digikala.com` are the same store. `None` when the
/// text is not a website [`parse_website`] accepts.
pub fn website_host(website: &str) -> Option<String> {
    parse_website(website).map(|website| website.host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r27_arabic_yeh_and_kaf_become_persian() {
        assert_eq!(normalize_text("كتاب"), "کتاب");
        assert_eq!(normalize_text("كتاب"), normalize_text("کتاب"));
        assert_eq!(normalize_text("علي"), "علی");
        assert_eq!(normalize_text("مصطفى"), "مصطفی");
        assert_eq!(
            normalize_text("ڪتاب"),
            "ڪتاب",
            "other letters are left alone"
        );
    }

    #[test]
    fn r27_control_characters_separate_words_as_a_space_does() {
        assert_eq!(normalize_text("a\u{0}b"), "a b");
        assert_eq!(normalize_text("\u{17}ö\u{6}¸ò\u{0}\u{15}\u{96}"), "ö ¸ò");
        assert_eq!(normalize_text("\u{0}"), "");
    }

    #[test]
    fn r27_persian_and_arabic_indic_digits_become_ascii() {
        assert_eq!(normalize_text("فروشگاه ۱۲۳"), "فروشگاه 123");
        assert_eq!(normalize_text("فروشگاه ١٢٣"), "فروشگاه 123");
        assert_eq!(normalize_text("۰۹۸۷"), "0987");
    }

    #[test]
    fn r27_zwnj_and_repeated_spaces_fold_to_one_space() {
        assert_eq!(normalize_text("فروشگاه\u{200C}ایران"), "فروشگاه ایران");
        assert_eq!(normalize_text("  فروشگاه   \t ایران  "), "فروشگاه ایران");
        assert_eq!(normalize_text("کتاب\u{200C} \u{200C}فروشی"), "کتاب فروشی");
        assert_eq!(normalize_text("\u{200C}کتاب\u{200C}"), "کتاب");
        assert_eq!(normalize_text("نان\u{00A0}سنگک"), "نان سنگک");
    }

    #[test]
    fn r27_latin_letters_are_case_folded() {
        assert_eq!(normalize_text("DigiKala"), "digikala");
        assert_eq!(normalize_text("DigiKala"), normalize_text("digikala"));
        assert_eq!(normalize_text("ÉCOLE"), "école");
    }

    #[test]
    fn r27_diacritics_and_tatweel_are_dropped() {
        assert_eq!(normalize_text("كِتَابٌ"), "کتاب");
        assert_eq!(normalize_text("کتـــاب"), "کتاب");
        assert_eq!(normalize_text("مُحَمَّد"), "محمد");
    }

    #[test]
    fn normalization_is_idempotent() {
        for text in ["كتاب ۱۲۳", "فروشگاه\u{200C}ایران", " DigiKala  ", "كِتَابٌ"]
        {
            let once = normalize_text(text);
            assert_eq!(normalize_text(&once), once);
        }
    }

    #[test]
    fn r26_website_host_ignores_scheme_www_case_and_path() {
        let expected = Some("digikala.com".to_owned());
        assert_eq!(website_host("https://www.digikala.com/"), expected);
        assert_eq!(website_host("http://DigiKala.com/some/path?x=1"), expected);
        assert_eq!(website_host("www.digikala.com"), expected);
        assert_eq!(website_host("digikala.com."), expected);
        assert_eq!(website_host("https://digikala.com:443"), expected);
        assert_eq!(
            website_host("https://shop.digikala.com"),
            Some("shop.digikala.com".to_owned())
        );
    }

    #[test]
    fn r25_website_without_a_dotted_host_is_refused() {
        assert_eq!(website_host(""), None);
        assert_eq!(website_host("localhost"), None);
        assert_eq!(website_host("not a site"), None);
        assert_eq!(website_host("ftp://files.example.com"), None);
        assert_eq!(website_host("https://"), None);
        assert_eq!(website_host("javascript:alert(1)"), None);
        assert_eq!(website_host("data:text/html,x"), None);
    }

    #[test]
    fn r25_website_is_stored_normalised_without_credentials() {
        let parsed = |text: &str| parse_website(text).map(|website| website.url);

        assert_eq!(
            parsed("Shop.Example.IR").as_deref(),
            Some("https://shop.example.ir/")
        );
        assert_eq!(
            parsed("HTTP://WWW.Shop.Example.ir:80/Path?q=1").as_deref(),
            Some("http://www.shop.example.ir/Path?q=1")
        );
        assert_eq!(parsed("https://user:secret@shop.example.ir"), None);
        assert_eq!(parsed("https://user@shop.example.ir"), None);
    }
}
