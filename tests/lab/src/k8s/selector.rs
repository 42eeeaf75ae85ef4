//! Field selectors (`metadata.name=web`) of list and watch queries; label
//! selectors live in [`crate::labels`], shared with the Hetzner fake.

use serde_json::Value;

pub(crate) use crate::labels::LabelSelector;

/// A parsed field selector: `path=value` / `path!=value` terms, all of
/// which must hold. Any dotted path into the object is accepted
/// (`metadata.name`, `status.phase`, `spec.nodeName`, `involvedObject.uid`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub(crate) fn parse(text: &str) -> Result<FieldSelector, String> {
        let mut terms = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (path, equal, value) = if let Some((path, value)) = part.split_once("!=") {
                (path, false, value)
            } else if let Some((path, value)) =
                part.split_once("==").or_else(|| part.split_once('='))
            {
                (path, true, value)
            } else {
                return Err(format!(
                    "invalid selector: '{part}'; can't understand '{part}'"
                ));
            };
            terms.push((path.trim().to_owned(), equal, value.trim().to_owned()));
        }
        Ok(FieldSelector(terms))
    }

    pub(crate) fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(path, equal, value)| {
            let mut current = Some(object);
            for key in path.split('.') {
                current = current.and_then(|v| v.get(key));
            }
            let actual = match current {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == *value) == *equal
        })
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
    fn field_selectors_read_dotted_paths() {
        let object = pod(json!({}));
        let by_name = FieldSelector::parse("metadata.name=p").unwrap();
        assert!(by_name.matches(&object));
        assert!(
            !FieldSelector::parse("metadata.name=q")
                .unwrap()
                .matches(&object)
        );
        assert!(
            FieldSelector::parse("status.phase!=Pending,metadata.name==p")
                .unwrap()
                .matches(&object)
        );
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
