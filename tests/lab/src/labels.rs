//! Label selectors as Kubernetes and Hetzner Cloud both write them
//! (`app=web,tier in (a,b),!canary`), shared by the Kubernetes fake's
//! list and watch queries and the Hetzner fake's `label_selector`; plus
//! the structured `spec.selector` of Kubernetes workloads.

use serde_json::{Map, Value};

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    /// Parse the query form: requirements separated by commas (commas inside
    /// `( )` belong to a set).
    pub(crate) fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(requirement(part)?);
        }
        Ok(LabelSelector(requirements))
    }

    /// A workload's `spec.selector` (`matchLabels` and `matchExpressions`).
    /// A missing or malformed selector matches nothing, as the real
    /// controllers treat it.
    pub(crate) fn from_structured(selector: &Value) -> Option<LabelSelector> {
        let mut requirements = Vec::new();
        if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
            for (key, value) in labels {
                requirements.push(Requirement::Equals(key.clone(), value.as_str()?.to_owned()));
            }
        }
        if let Some(expressions) = selector.get("matchExpressions").and_then(Value::as_array) {
            for expression in expressions {
                let key = expression.get("key")?.as_str()?.to_owned();
                let values: Vec<String> = expression
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|values| {
                        values
                            .iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                requirements.push(match expression.get("operator")?.as_str()? {
                    "In" => Requirement::In(key, values),
                    "NotIn" => Requirement::NotIn(key, values),
                    "Exists" => Requirement::Exists(key),
                    "DoesNotExist" => Requirement::DoesNotExist(key),
                    _ => return None,
                });
            }
        }
        if requirements.is_empty() {
            return None;
        }
        Some(LabelSelector(requirements))
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub(crate) fn matches(&self, object: &Value) -> bool {
        self.matches_labels(
            object
                .pointer("/metadata/labels")
                .and_then(Value::as_object),
        )
    }

    /// Whether `labels` (None: no labels at all) satisfy every requirement.
    pub(crate) fn matches_labels(&self, labels: Option<&Map<String, Value>>) -> bool {
        let get = |key: &str| {
            labels
                .and_then(|labels| labels.get(key))
                .and_then(Value::as_str)
        };
        self.0.iter().all(|requirement| match requirement {
            Requirement::Equals(key, value) => get(key) == Some(value.as_str()),
            Requirement::NotEquals(key, value) => get(key) != Some(value.as_str()),
            Requirement::In(key, values) => get(key).is_some_and(|v| values.iter().any(|x| x == v)),
            Requirement::NotIn(key, values) => {
                get(key).is_none_or(|v| values.iter().all(|x| x != v))
            }
            Requirement::Exists(key) => get(key).is_some(),
            Requirement::DoesNotExist(key) => get(key).is_none(),
        })
    }

    /// The query form, as `status.selector` of a scale subresource shows it.
    pub(crate) fn to_query(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|requirement| match requirement {
                Requirement::Equals(key, value) => format!("{key}={value}"),
                Requirement::NotEquals(key, value) => format!("{key}!={value}"),
                Requirement::In(key, values) => format!("{key} in ({})", values.join(",")),
                Requirement::NotIn(key, values) => format!("{key} notin ({})", values.join(",")),
                Requirement::Exists(key) => key.clone(),
                Requirement::DoesNotExist(key) => format!("!{key}"),
            })
            .collect();
        parts.join(",")
    }
}

/// Split on commas that are not inside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0_i32;
    let mut start = 0;
    for (index, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(label_key(key)?));
    }
    if let Some((key, value)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(label_key(key)?, label_value(value)?));
    }
    if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::Equals(label_key(key)?, label_value(value)?));
    }
    for (word, set) in [(" notin ", false), (" in ", true)] {
        if let Some((key, values)) = part.split_once(word) {
            let values = values.trim();
            let inner = values
                .strip_prefix('(')
                .and_then(|v| v.strip_suffix(')'))
                .ok_or_else(|| {
                    format!("unable to parse requirement: found '{values}', expected: '('")
                })?;
            let values = inner
                .split(',')
                .map(label_value)
                .collect::<Result<Vec<_>, _>>()?;
            let key = label_key(key)?;
            return Ok(if set {
                Requirement::In(key, values)
            } else {
                Requirement::NotIn(key, values)
            });
        }
    }
    Ok(Requirement::Exists(label_key(part)?))
}

fn label_key(key: &str) -> Result<String, String> {
    let key = key.trim();
    let valid = !key.is_empty()
        && key.len() <= 317
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if valid {
        Ok(key.to_owned())
    } else {
        Err(format!(
            "unable to parse requirement: invalid label key \"{key}\""
        ))
    }
}

fn label_value(value: &str) -> Result<String, String> {
    let value = value.trim();
    let valid = value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if valid {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "unable to parse requirement: invalid label value: \"{value}\""
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(labels: Value) -> Value {
        let mut pod = json!({ "metadata": { "name": "p" }, "status": { "phase": "Running" } });
        pod["metadata"]["labels"] = labels;
        pod
    }

    #[test]
    fn label_selectors_cover_equality_sets_and_existence() {
        let web = pod(json!({ "app": "web", "tier": "front" }));
        let db = pod(json!({ "app": "db" }));
        let cases = [
            ("", true, true),
            ("app=web", true, false),
            ("app==web", true, false),
            ("app!=web", false, true),
            ("app in (web, db)", true, true),
            ("app notin (web)", false, true),
            ("tier", true, false),
            ("!tier", false, true),
            ("app in (web,db),tier", true, false),
            ("app=web,!tier", false, false),
        ];
        for (text, on_web, on_db) in cases {
            let selector = LabelSelector::parse(text).unwrap();
            assert_eq!(selector.matches(&web), on_web, "{text} on web");
            assert_eq!(selector.matches(&db), on_db, "{text} on db");
        }
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("a b=c").is_err());
    }

    #[test]
    fn structured_selectors_match_like_query_ones() {
        let selector = LabelSelector::from_structured(&json!({
            "matchLabels": { "app": "web" },
            "matchExpressions": [{ "key": "tier", "operator": "In", "values": ["front"] }],
        }))
        .unwrap();
        assert!(selector.matches(&pod(json!({ "app": "web", "tier": "front" }))));
        assert!(!selector.matches(&pod(json!({ "app": "web" }))));
        assert_eq!(selector.to_query(), "app=web,tier in (front)");
        assert!(LabelSelector::from_structured(&json!({})).is_none());
    }
}
