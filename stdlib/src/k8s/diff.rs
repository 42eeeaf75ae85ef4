//! The plan detail of an online `--dry-run`: a unified diff of the live
//! object against the one the server would store, over what the object is
//! (its `spec`, or `data` for ConfigMaps and Secrets: everything but
//! `apiVersion`, `kind`, `metadata` and `status`). Secret values show as
//! `***`, with `*** (changed)` where the value would change.

use serde_json::{Map, Value};

/// Top-level fields that describe the object's bookkeeping, not its content.
const SKIPPED: &[&str] = &["apiVersion", "kind", "metadata", "status"];

/// The part of an object a plan shows.
fn content(object: Option<&Value>) -> Map<String, Value> {
    object
        .and_then(Value::as_object)
        .map(|fields| {
            fields
                .iter()
                .filter(|(key, _)| !SKIPPED.contains(&key.as_str()))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Replace a Secret's values with `***`; in `after`, with `*** (changed)`
/// where the value differs from `before`.
fn mask(before: &mut Map<String, Value>, after: &mut Map<String, Value>) {
    for field in ["data", "stringData"] {
        let old = before.get(field).cloned();
        if let Some(Value::Object(values)) = before.get_mut(field) {
            for value in values.values_mut() {
                *value = Value::String("***".into());
            }
        }
        if let Some(Value::Object(values)) = after.get_mut(field) {
            for (key, value) in values.iter_mut() {
                let same = old
                    .as_ref()
                    .and_then(|old| old.get(key))
                    .is_some_and(|old| old == value);
                *value = Value::String(if same { "***" } else { "*** (changed)" }.into());
            }
        }
    }
}

fn yaml(fields: &Map<String, Value>) -> String {
    if fields.is_empty() {
        return String::new();
    }
    serde_saphyr::to_string(&Value::Object(fields.clone()))
        .unwrap_or_else(|error| format!("(cannot show as YAML: {error})\n"))
}

/// The unified diff of `before` (the live object; `None` when it does not
/// exist yet) against `after` (the would-be object; `None` when it would be
/// deleted). Empty when nothing the plan shows would change.
pub(crate) fn render(before: Option<&Value>, after: Option<&Value>, secret: bool) -> String {
    let mut old = content(before);
    let mut new = content(after);
    if secret {
        mask(&mut old, &mut new);
    }
    let (old, new) = (yaml(&old), yaml(&new));
    if old == new {
        return String::new();
    }
    let old_header = if before.is_some() {
        "live"
    } else {
        "live (does not exist)"
    };
    let new_header = if after.is_some() {
        "would-be"
    } else {
        "would-be (deleted)"
    };
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(old_header, new_header)
        .to_string()
}

/// A plan detail for one object: a title line and its diff, or a note that
/// nothing would change.
pub(crate) fn detail(
    title: &str,
    before: Option<&Value>,
    after: Option<&Value>,
    secret: bool,
) -> String {
    let diff = render(before, after, secret);
    if diff.is_empty() {
        format!("{title}: no change (the server accepts it as it is)")
    } else {
        format!("{title}:\n{}", diff.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment(image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "backend", "resourceVersion": "7", "generation": 3},
            "spec": {
                "replicas": 2,
                "template": {"spec": {"containers": [{"name": "backend", "image": image}]}}
            },
            "status": {"replicas": 2}
        })
    }

    #[test]
    fn an_image_change_shows_as_one_removed_and_one_added_line() {
        let diff = render(
            Some(&deployment("registry.lab/backend:v1")),
            Some(&deployment("registry.lab/backend:v2")),
            false,
        );
        let removed: Vec<&str> = diff
            .lines()
            .filter(|line| line.starts_with('-') && !line.starts_with("---"))
            .collect();
        let added: Vec<&str> = diff
            .lines()
            .filter(|line| line.starts_with('+') && !line.starts_with("+++"))
            .collect();
        assert_eq!(removed.len(), 1, "{diff}");
        assert_eq!(added.len(), 1, "{diff}");
        assert!(
            removed[0].contains("image: registry.lab/backend:v1"),
            "{diff}"
        );
        assert!(
            added[0].contains("image: registry.lab/backend:v2"),
            "{diff}"
        );
        assert!(diff.starts_with("--- live\n+++ would-be\n"), "{diff}");
        assert!(!diff.contains("resourceVersion"), "{diff}");
        assert!(!diff.contains("status"), "{diff}");
    }

    #[test]
    fn metadata_and_status_changes_are_no_change() {
        let mut after = deployment("a:v1");
        after["metadata"]["resourceVersion"] = json!("8");
        after["status"]["replicas"] = json!(3);
        assert_eq!(render(Some(&deployment("a:v1")), Some(&after), false), "");
        assert!(
            detail("deployment `backend`", Some(&after), Some(&after), false).contains("no change")
        );
    }

    #[test]
    fn creation_and_deletion_show_the_whole_content() {
        let created = render(None, Some(&deployment("a:v1")), false);
        assert!(
            created.starts_with("--- live (does not exist)\n"),
            "{created}"
        );
        assert!(
            created.contains("+      image: a:v1")
                || created.contains("+  - image: a:v1")
                || created.contains("image: a:v1"),
            "{created}"
        );
        let deleted = render(Some(&deployment("a:v1")), None, false);
        assert!(deleted.contains("+++ would-be (deleted)"), "{deleted}");
        assert!(
            deleted.lines().skip(2).all(|line| !line.starts_with('+')),
            "{deleted}"
        );
    }

    #[test]
    fn secret_values_are_masked_and_changes_marked() {
        let before =
            json!({"kind": "Secret", "data": {"password": "aHVudGVyMg==", "user": "YXBw"}});
        let after = json!({"kind": "Secret", "data": {"password": "czNjcjN0", "user": "YXBw", "new": "eA=="}});
        let diff = render(Some(&before), Some(&after), true);
        assert!(!diff.contains("aHVudGVyMg=="), "{diff}");
        assert!(!diff.contains("czNjcjN0"), "{diff}");
        assert!(!diff.contains("eA=="), "{diff}");
        assert!(
            diff.contains("-  password: '***'") || diff.contains("-  password: \"***\""),
            "{diff}"
        );
        assert!(
            diff.contains("password:") && diff.contains("*** (changed)"),
            "{diff}"
        );
        assert!(diff.contains("+  new:"), "{diff}");
        assert!(
            !diff
                .lines()
                .any(|line| line.starts_with("-  user") || line.starts_with("+  user")),
            "{diff}"
        );
    }
}
