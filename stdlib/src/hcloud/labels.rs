//! Labels and label selectors. Every resource runbook creates carries
//! `managed-by=runbook` plus the labels the script asked for; a resource of
//! the same name is adopted only when it carries all of them. Selectors are
//! passed to the API as written (`env=staging,role!=db`), or built from a map.

use std::collections::BTreeMap;

use rhai::{Dynamic, Map};

/// The label on everything runbook creates.
pub(crate) const MANAGED_BY: (&str, &str) = ("managed-by", "runbook");

/// Labels as the API carries them.
pub(crate) type Labels = BTreeMap<String, String>;

/// The labels a create sends: the script's, plus `managed-by=runbook`.
pub(crate) fn managed(requested: &Labels) -> Labels {
    let mut labels = requested.clone();
    labels.insert(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned());
    labels
}

/// Whether `found` carries every label of `wanted` with the same value.
pub(crate) fn carries(found: &Labels, wanted: &Labels) -> bool {
    wanted
        .iter()
        .all(|(key, value)| found.get(key) == Some(value))
}

/// `k=v,k2=v2`, in key order.
pub(crate) fn render(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Why a label key or value is not one Hetzner accepts, if it is not
/// (keys: optional DNS prefix and `/`, then ≤ 63 of `[a-zA-Z0-9-_.]`
/// starting and ending alphanumeric; values: the same, may be empty).
pub(crate) fn problem(key: &str, value: &str) -> Option<String> {
    let name = key.rsplit_once('/').map_or(
        key,
        |(prefix, name)| {
            if prefix.is_empty() { "" } else { name }
        },
    );
    let part_ok = |text: &str, empty_ok: bool| {
        if text.is_empty() {
            return empty_ok;
        }
        text.len() <= 63
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && text.starts_with(|c: char| c.is_ascii_alphanumeric())
            && text.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    if key.starts_with("hetzner.cloud/") {
        return Some(format!(
            "label `{key}`: the prefix `hetzner.cloud/` is Hetzner's"
        ));
    }
    if !part_ok(name, false) {
        return Some(format!("label key `{key}` is not a valid label name"));
    }
    if !part_ok(value, true) {
        return Some(format!(
            "label `{key}`: the value `{value}` is not a valid label value"
        ));
    }
    None
}

/// A script's labels map (values converted to text) into [`Labels`].
pub(crate) fn from_map(map: &Map) -> Result<Labels, String> {
    let mut labels = Labels::new();
    for (key, value) in map {
        let text = if value.is_string() {
            value.clone().into_string().unwrap_or_default()
        } else if value.is_int() || value.is_bool() {
            value.to_string()
        } else {
            return Err(format!("label `{key}` must be a string"));
        };
        if let Some(problem) = problem(key, &text) {
            return Err(problem);
        }
        labels.insert(key.to_string(), text);
    }
    Ok(labels)
}

/// Labels from an API object's `labels`.
pub(crate) fn from_json(value: &serde_json::Value) -> Labels {
    value
        .as_object()
        .map(|object| {
            object
                .iter()
                .map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// A selector argument: a string passes through (trimmed), a map becomes
/// `k=v,...`, `()` is no selector.
pub(crate) fn selector(value: &Dynamic) -> Result<Option<String>, String> {
    if value.is_unit() {
        return Ok(None);
    }
    if value.is_string() {
        let text = value.clone().into_string().unwrap_or_default();
        let text = text.trim();
        return Ok(Some(text.to_owned()).filter(|text| !text.is_empty()));
    }
    if let Some(map) = value.read_lock::<Map>() {
        let labels = from_map(&map)?;
        return Ok(Some(render(&labels)).filter(|text| !text.is_empty()));
    }
    Err("must be a selector string like \"env=staging\" or a map of labels".into())
}

/// Whether a target string names a label selector rather than a resource
/// name (names are RFC 1123 hostnames, which hold none of `=!(),`).
pub(crate) fn is_selector(text: &str) -> bool {
    text.contains(['=', '!', '(', ')', ',', ' '])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn created_resources_carry_managed_by_and_adoption_needs_every_label() {
        let asked = labels(&[("env", "staging"), ("runbook.name", "demo")]);
        let sent = managed(&asked);
        assert_eq!(
            render(&sent),
            "env=staging,managed-by=runbook,runbook.name=demo"
        );
        assert!(carries(&sent, &sent));
        let mut other = sent.clone();
        other.insert("extra".into(), "x".into());
        assert!(carries(&other, &sent), "extra labels do not matter");
        other.insert("env".into(), "production".into());
        assert!(!carries(&other, &sent));
        assert!(!carries(&asked, &sent), "without managed-by it is not ours");
    }

    #[test]
    fn selectors_pass_through_or_come_from_a_map() {
        let text = Dynamic::from("env=staging,role!=db".to_owned());
        assert_eq!(
            selector(&text).unwrap().as_deref(),
            Some("env=staging,role!=db")
        );
        let mut map = Map::new();
        map.insert("managed-by".into(), Dynamic::from("runbook".to_owned()));
        map.insert("env".into(), Dynamic::from("staging".to_owned()));
        assert_eq!(
            selector(&Dynamic::from_map(map)).unwrap().as_deref(),
            Some("env=staging,managed-by=runbook")
        );
        assert_eq!(selector(&Dynamic::UNIT).unwrap(), None);
        assert_eq!(selector(&Dynamic::from(" ".to_owned())).unwrap(), None);
        assert!(selector(&Dynamic::from_int(3)).is_err());
        assert!(is_selector("env=staging"));
        assert!(is_selector("!legacy"));
        assert!(!is_selector("staging-web-1"));
    }

    #[test]
    fn label_rules_follow_the_api() {
        assert_eq!(problem("env", "staging"), None);
        assert_eq!(problem("example.com/env", ""), None);
        assert!(problem("hetzner.cloud/x", "y").is_some());
        assert!(problem("-bad", "y").is_some());
        assert!(problem("env", "has space").is_some());
        assert!(problem(&"k".repeat(64), "v").is_some());
    }
}
