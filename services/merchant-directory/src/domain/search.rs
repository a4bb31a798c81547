//! The directory search (R27): what a listing asks for, and where a page starts.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::merchant::{MerchantKind, PurchaseKind};
use super::normalize::normalize_text;
use tavana_kit::paging::page_size;

/// Where the next page of a listing starts: after this (normalized name, id). A keyset
/// position, not an offset, so merchants added meanwhile neither repeat nor hide rows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantCursor {
    /// The normalized name of the last merchant shown.
    pub name: String,
    /// Its id.
    pub id: String,
}

/// A search of contracted merchants, normalized so that equal searches are equal values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MerchantSearch {
    /// The normalized name fragment, empty for every name.
    pub q: String,
    /// Only this kind.
    pub kind: Option<MerchantKind>,
    /// Only this normalized city.
    pub city: Option<String>,
    /// Only this normalized province.
    pub province: Option<String>,
    /// Only merchants with this normalized category.
    pub category: Option<String>,
    /// Only merchants that support this kind of purchase.
    pub purchase_kind: Option<PurchaseKind>,
    /// Rows per page.
    pub page_size: u64,
    /// The page's start, or the first page.
    pub after: Option<MerchantCursor>,
}

fn filter(text: &str) -> Option<String> {
    Some(normalize_text(text)).filter(|text| !text.is_empty())
}

impl MerchantSearch {
    /// Builds a search from raw request values; text is normalized as names are (R27).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        q: &str,
        kind: Option<MerchantKind>,
        city: &str,
        province: &str,
        category: &str,
        purchase_kind: Option<PurchaseKind>,
        requested_page_size: u32,
        after: Option<MerchantCursor>,
    ) -> MerchantSearch {
        MerchantSearch {
            q: normalize_text(q),
            kind,
            city: filter(city),
            province: filter(province),
            category: filter(category),
            purchase_kind,
            page_size: page_size(requested_page_size),
            after,
        }
    }

    /// Returns a short fingerprint of the search, for cache keys.
    pub fn fingerprint(&self) -> String {
        let text = format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{}|{:?}",
            self.q,
            self.kind,
            self.city,
            self.province,
            self.category,
            self.purchase_kind,
            self.page_size,
            self.after
        );
        hex::encode(Sha256::digest(text.as_bytes()))
    }
}

/// Where the next page of a proposal listing starts: after (created_micros, id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalCursor {
    /// Creation time, microseconds since the epoch, of the last proposal shown.
    pub created_micros: i64,
    /// Its id.
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r27_search_text_is_normalized_like_names() {
        let search = MerchantSearch::new(" كتاب ", None, "تهران", "", "  ", None, 0, None);
        assert_eq!(search.q, "کتاب");
        assert_eq!(search.city.as_deref(), Some("تهران"));
        assert_eq!(search.province, None);
        assert_eq!(search.category, None);
    }

    #[test]
    fn equal_searches_have_equal_fingerprints() {
        let arabic = MerchantSearch::new("كتاب", None, "", "", "", None, 10, None);
        let persian = MerchantSearch::new("کتاب", None, "", "", "", None, 10, None);
        let other = MerchantSearch::new("کتاب", None, "", "", "", None, 11, None);
        assert_eq!(arabic.fingerprint(), persian.fingerprint());
        assert_ne!(arabic.fingerprint(), other.fingerprint());
    }
}
