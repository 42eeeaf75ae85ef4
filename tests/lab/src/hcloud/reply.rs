//! What a handler answers, and the list machinery every collection shares:
//! `name`/`label_selector` filters, `sort`, pagination.

use serde_json::{Map, Value};

use super::errors::ApiError;
use super::paging;
use crate::labels::LabelSelector;
use crate::query::Query;

/// A handler's answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    /// None: no body (204).
    pub(crate) body: Option<Value>,
    pub(crate) link: Option<String>,
    /// Close the connection without answering (a lost response).
    pub(crate) drop: bool,
}

impl Reply {
    pub(crate) fn ok(body: Value) -> Reply {
        Reply::with_status(200, body)
    }

    pub(crate) fn created(body: Value) -> Reply {
        Reply::with_status(201, body)
    }

    pub(crate) fn with_status(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: Some(body),
            link: None,
            drop: false,
        }
    }

    pub(crate) fn no_content() -> Reply {
        Reply {
            status: 204,
            body: None,
            link: None,
            drop: false,
        }
    }
}

/// Where a request came in, for the `Link` URLs of lists.
#[derive(Debug)]
pub(crate) struct Origin<'a> {
    /// `http://127.0.0.1:PORT/v1/servers` (no query).
    pub(crate) url: String,
    pub(crate) raw_query: &'a str,
    pub(crate) query: &'a Query,
}

/// The `label_selector` parameter, parsed (invalid_input when it does not parse).
pub(crate) fn selector(query: &Query) -> Result<LabelSelector, ApiError> {
    LabelSelector::parse(query.get("label_selector").unwrap_or_default())
        .map_err(|why| ApiError::invalid("label_selector", &why))
}

/// Filter by `name` and `label_selector`, sort by `sort` (`id`, `name`,
/// `created`, each with `:asc`/`:desc`; repeatable), paginate, and answer
/// `{key: [...], meta}`.
pub(crate) fn list(
    key: &str,
    mut items: Vec<Value>,
    origin: &Origin<'_>,
) -> Result<Reply, ApiError> {
    let query = origin.query;
    let selector = selector(query)?;
    if let Some(name) = query.get("name") {
        items.retain(|item| item["name"] == name);
    }
    items.retain(|item| selector.matches_labels(item.get("labels").and_then(Value::as_object)));
    for sort in query.all("sort").into_iter().rev() {
        let (field, descending) = match sort.split_once(':') {
            Some((field, "desc")) => (field, true),
            Some((field, "asc")) | Some((field, "")) => (field, false),
            None => (sort, false),
            Some(_) => return Err(ApiError::invalid("sort", &format!("invalid sort '{sort}'"))),
        };
        if !["id", "name", "created"].contains(&field) {
            return Err(ApiError::invalid(
                "sort",
                &format!("invalid sort field '{field}'"),
            ));
        }
        items.sort_by(|a, b| {
            let order = compare(&a[field], &b[field]);
            if descending { order.reverse() } else { order }
        });
    }
    let page = paging::page(items, query, &origin.url, origin.raw_query)?;
    let mut body = Map::new();
    body.insert(key.to_owned(), Value::Array(page.items));
    body.insert("meta".into(), page.meta);
    let mut reply = Reply::ok(Value::Object(body));
    reply.link = page.link;
    Ok(reply)
}

fn compare(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a.as_u64(), b.as_u64()) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => a
            .as_str()
            .unwrap_or_default()
            .cmp(b.as_str().unwrap_or_default()),
    }
}

/// A path segment that must be an ID.
pub(crate) fn id(segment: &str, what: &str) -> Result<u64, ApiError> {
    segment.parse().map_err(|_| ApiError::not_found(what))
}

/// `{key: value}`.
pub(crate) fn one(key: &str, value: Value) -> Value {
    let mut map = Map::new();
    map.insert(key.to_owned(), value);
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn origin<'a>(raw: &'a str, query: &'a Query) -> Origin<'a> {
        Origin {
            url: "http://h/v1/servers".into(),
            raw_query: raw,
            query,
        }
    }

    #[test]
    fn lists_filter_by_name_and_labels_and_sort() {
        let items = vec![
            json!({"id": 1, "name": "b", "labels": {"env": "prod"}}),
            json!({"id": 2, "name": "a", "labels": {"env": "staging", "team": "x"}}),
            json!({"id": 3, "name": "c", "labels": {}}),
        ];
        let names = |raw: &str| -> Vec<String> {
            let query = Query::parse(Some(raw));
            let reply = list("servers", items.clone(), &origin(raw, &query)).unwrap();
            reply.body.unwrap()["servers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(names(""), ["b", "a", "c"]);
        assert_eq!(names("sort=name"), ["a", "b", "c"]);
        assert_eq!(names("sort=id:desc"), ["c", "a", "b"]);
        assert_eq!(names("name=a"), ["a"]);
        assert_eq!(names("label_selector=env%3Dprod"), ["b"]);
        assert_eq!(names("label_selector=env%21%3Dprod"), ["a", "c"]);
        assert_eq!(
            names("label_selector=env%20in%20(prod,staging),!team"),
            ["b"]
        );
        assert_eq!(names("label_selector=env%20notin%20(prod)"), ["a", "c"]);
        assert_eq!(names("label_selector=team"), ["a"]);
        assert_eq!(names("label_selector=env%3D%3Dstaging%2Cteam%3Dx"), ["a"]);
        let query = Query::parse(Some("label_selector=a%20in%20b"));
        let error = list("servers", items, &origin("", &query)).unwrap_err();
        assert_eq!(error.code, "invalid_input");
    }
}
