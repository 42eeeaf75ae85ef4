//! What every resource kind shares: finding one by name, the adoption rule
//! (a resource of that name is ours when it carries all our labels), and
//! turning API objects into script maps.

use rhai::{Dynamic, Map};
use serde_json::Value;

use super::client::{Client, Request};
use super::error::HcloudError;
use super::labels::{self, Labels};

/// A resource kind: its path, the list's key and its name in messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kind {
    pub(crate) path: &'static str,
    pub(crate) list_key: &'static str,
    pub(crate) noun: &'static str,
}

pub(crate) const SERVER: Kind = Kind {
    path: "/servers",
    list_key: "servers",
    noun: "server",
};
pub(crate) const FIREWALL: Kind = Kind {
    path: "/firewalls",
    list_key: "firewalls",
    noun: "firewall",
};
pub(crate) const SSH_KEY: Kind = Kind {
    path: "/ssh_keys",
    list_key: "ssh_keys",
    noun: "ssh key",
};

/// The `id` of an API object (0 when it has none).
pub(crate) fn id_of(object: &Value) -> u64 {
    object.get("id").and_then(Value::as_u64).unwrap_or(0)
}

/// A text field of an API object (`""` when missing).
pub(crate) fn text(object: &Value, pointer: &str) -> String {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

impl Client<'_> {
    /// The resource of `kind` called `name`, if there is one.
    pub(crate) async fn find(&self, kind: Kind, name: &str) -> Result<Option<Value>, HcloudError> {
        let items = self
            .list(
                Request::get(kind.path, format!("look up {} `{name}`", kind.noun))
                    .query("name", name),
                kind.list_key,
            )
            .await?;
        Ok(items
            .into_iter()
            .find(|item| item.get("name").and_then(Value::as_str) == Some(name)))
    }

    /// Like [`Client::find`], but a missing one is an error.
    pub(crate) async fn need(&self, kind: Kind, name: &str) -> Result<Value, HcloudError> {
        self.find(kind, name)
            .await?
            .ok_or_else(|| HcloudError::Missing {
                kind: kind.noun,
                name: name.to_owned(),
            })
    }
}

/// Whether runbook may adopt `existing` for a create asking for `wanted`
/// labels; the error says whose it seems to be.
pub(crate) fn adopt(kind: Kind, existing: &Value, wanted: &Labels) -> Result<(), HcloudError> {
    let found = labels::from_json(existing.get("labels").unwrap_or(&Value::Null));
    if labels::carries(&found, wanted) {
        return Ok(());
    }
    Err(HcloudError::Foreign {
        kind: kind.noun,
        name: text(existing, "/name"),
        id: id_of(existing),
        found: if found.is_empty() {
            "none".to_owned()
        } else {
            labels::render(&found)
        },
    })
}

/// An API object's `labels` as a script map.
pub(crate) fn labels_value(object: &Value) -> Dynamic {
    crate::values::from_json(
        object
            .get("labels")
            .cloned()
            .unwrap_or(Value::Object(Default::default())),
    )
}

/// `#{id, name, labels, created}`, the fields every kind has.
pub(crate) fn base_map(object: &Value) -> Map {
    let mut map = Map::new();
    map.insert(
        "id".into(),
        Dynamic::from_int(i64::try_from(id_of(object)).unwrap_or(i64::MAX)),
    );
    map.insert("name".into(), text(object, "/name").into());
    map.insert("labels".into(), labels_value(object));
    map.insert("created".into(), text(object, "/created").into());
    map
}
