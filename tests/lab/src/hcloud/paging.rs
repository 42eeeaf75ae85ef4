//! Pagination of every list: `page` (from 1) and `per_page` (default 25,
//! at most 50) in, `meta.pagination` and a `Link` header (`prev`, `next`,
//! `last`) out, as the API's overview documents them.

use serde_json::{Value, json};

use super::errors::ApiError;
use crate::query::Query;

pub(crate) const DEFAULT_PER_PAGE: usize = 25;
pub(crate) const MAX_PER_PAGE: usize = 50;

/// One page of a list.
#[derive(Debug)]
pub(crate) struct Page {
    pub(crate) items: Vec<Value>,
    pub(crate) meta: Value,
    pub(crate) link: Option<String>,
}

/// Cut `items` to the page the query asks for. `url` is the list's
/// absolute URL and `raw_query` the request's query string, from which the
/// `Link` URLs are made (its other parameters kept).
pub(crate) fn page(
    items: Vec<Value>,
    query: &Query,
    url: &str,
    raw_query: &str,
) -> Result<Page, ApiError> {
    let number = |key: &str, default: usize| -> Result<usize, ApiError> {
        match query.get(key) {
            None | Some("") => Ok(default),
            Some(text) => match text.parse::<usize>() {
                Ok(value) if value >= 1 => Ok(value),
                _ => Err(ApiError::invalid(key, "must be a positive integer")),
            },
        }
    };
    let page = number("page", 1)?;
    let per_page = number("per_page", DEFAULT_PER_PAGE)?.min(MAX_PER_PAGE);
    let total = items.len();
    let last = total.div_ceil(per_page).max(1);
    let previous = (page > 1).then(|| (page - 1).min(last));
    let next = (page < last).then_some(page + 1);
    let items: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    let meta = json!({"pagination": {
        "page": page, "per_page": per_page, "previous_page": previous,
        "next_page": next, "last_page": last, "total_entries": total,
    }});
    let others: Vec<&str> = raw_query
        .split('&')
        .filter(|pair| {
            !pair.is_empty() && !pair.starts_with("page=") && !pair.starts_with("per_page=")
        })
        .collect();
    let link_to = |target: usize, rel: &str| {
        let mut parts = others.clone();
        let page = format!("page={target}");
        let per_page = format!("per_page={per_page}");
        parts.push(&page);
        parts.push(&per_page);
        format!("<{url}?{}>; rel=\"{rel}\"", parts.join("&"))
    };
    let mut links = Vec::new();
    if let Some(previous) = previous {
        links.push(link_to(previous, "prev"));
    }
    if let Some(next) = next {
        links.push(link_to(next, "next"));
    }
    links.push(link_to(last, "last"));
    Ok(Page {
        items,
        meta,
        link: Some(links.join(", ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(count: u64) -> Vec<Value> {
        (1..=count).map(Value::from).collect()
    }

    #[test]
    fn defaults_to_25_and_links_to_the_next_and_last_pages() {
        let page = page(numbers(60), &Query::parse(None), "http://h/v1/servers", "").unwrap();
        assert_eq!(page.items.len(), 25);
        assert_eq!(
            page.meta["pagination"],
            json!({"page": 1, "per_page": 25, "previous_page": null, "next_page": 2, "last_page": 3, "total_entries": 60})
        );
        assert_eq!(
            page.link.as_deref(),
            Some(
                "<http://h/v1/servers?page=2&per_page=25>; rel=\"next\", <http://h/v1/servers?page=3&per_page=25>; rel=\"last\""
            )
        );
    }

    #[test]
    fn per_page_is_capped_at_50_and_other_parameters_are_kept() {
        let raw = "label_selector=a%3Db&page=2&per_page=80";
        let page = page(numbers(120), &Query::parse(Some(raw)), "http://h/v1/x", raw).unwrap();
        assert_eq!(page.items.first(), Some(&Value::from(51)));
        assert_eq!(page.items.len(), 50);
        assert_eq!(page.meta["pagination"]["previous_page"], 1);
        assert_eq!(page.meta["pagination"]["next_page"], 3);
        assert!(
            page.link.unwrap().starts_with(
                "<http://h/v1/x?label_selector=a%3Db&page=1&per_page=50>; rel=\"prev\""
            )
        );
    }

    #[test]
    fn an_empty_list_has_one_empty_page_and_bad_numbers_are_invalid_input() {
        let page_one = page(Vec::new(), &Query::parse(None), "u", "").unwrap();
        assert!(page_one.items.is_empty());
        assert_eq!(page_one.meta["pagination"]["last_page"], 1);
        assert_eq!(page_one.meta["pagination"]["next_page"], Value::Null);
        let error = page(Vec::new(), &Query::parse(Some("per_page=0")), "u", "").unwrap_err();
        assert_eq!(error.code, "invalid_input");
    }
}
