//! `meta.pagination`: which page comes next. Every list follows it to the
//! end (the API gives at most 50 per page; `next_page` is null on the last).

use serde_json::Value;

/// The page after `current`, from `meta.pagination.next_page`; `None` on
/// the last page. An answer without pagination (or with a `next_page`
/// that does not move forward) is the last page.
pub(crate) fn next_page(body: &Value, current: u64) -> Option<u64> {
    body.pointer("/meta/pagination/next_page")
        .and_then(Value::as_u64)
        .filter(|next| *next > current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn follows_next_page_until_it_is_null() {
        let page = |next: Value| json!({"servers": [], "meta": {"pagination": {"page": 1, "per_page": 50, "previous_page": null, "next_page": next, "last_page": 3, "total_entries": 120}}});
        assert_eq!(next_page(&page(json!(2)), 1), Some(2));
        assert_eq!(next_page(&page(Value::Null), 3), None);
        assert_eq!(next_page(&json!({"servers": []}), 1), None);
        // A server that sends the same page again does not loop us.
        assert_eq!(next_page(&page(json!(1)), 1), None);
    }
}
