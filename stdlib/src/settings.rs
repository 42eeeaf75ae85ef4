//! A module's settings from the active context: `[context.NAME.KEY]` in
//! runbook.toml (or the context's top level), read with typed getters whose
//! errors name the field (`context `lab`: `s3.path_style` must be true or
//! false`). Every module reads its settings through [`Host::section`], so
//! there is one parser of the context map.
//!
//! [`Host::section`]: crate::host::Host::section

use std::path::PathBuf;
use std::time::Duration;

use rhai::{Array, Dynamic, Map};

use crate::host::StdlibError;

/// One table of the active context.
#[derive(Debug, Clone, Default)]
pub struct Section {
    /// The context's name (`(none)` without a context), for messages.
    context: String,
    /// The table's key (`s3`), or `""` for the context's top level.
    key: &'static str,
    map: Map,
}

impl Section {
    /// The table `key` of a context map (`""`: the top level). A missing
    /// table is an empty one.
    pub fn of(context: &Dynamic, key: &'static str) -> Section {
        let top = context
            .read_lock::<Map>()
            .map(|map| map.clone())
            .unwrap_or_default();
        let name = top
            .get("name")
            .and_then(|name| name.clone().into_string().ok())
            .unwrap_or_else(|| "(none)".into());
        let map = if key.is_empty() {
            top
        } else {
            top.get(key)
                .and_then(|value| value.read_lock::<Map>().map(|map| map.clone()))
                .unwrap_or_default()
        };
        Section {
            context: name,
            key,
            map,
        }
    }

    /// The context's name, for messages.
    pub fn context_name(&self) -> &str {
        &self.context
    }

    /// `ssh.persist` or `namespace`: the field as runbook.toml spells it.
    pub fn field(&self, field: &str) -> String {
        if self.key.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.key)
        }
    }

    fn wrong(&self, field: &str, expected: &str) -> StdlibError {
        StdlibError::usage(
            format!(
                "context `{}`: `{}` must be {expected}",
                self.context,
                self.field(field)
            ),
            format!("fix it under [context.{}] in runbook.toml", self.context),
        )
    }

    /// The raw value of a field, if given.
    pub fn get(&self, field: &str) -> Option<&Dynamic> {
        self.map.get(field).filter(|value| !value.is_unit())
    }

    /// A text field, trimmed; empty counts as not given.
    pub fn string(&self, field: &str) -> Result<Option<String>, StdlibError> {
        match self.get(field) {
            None => Ok(None),
            Some(value) => value
                .clone()
                .into_string()
                .map(|text| Some(text.trim().to_owned()).filter(|text| !text.is_empty()))
                .map_err(|_| self.wrong(field, "a string")),
        }
    }

    /// A path field (`~/` is the home folder).
    pub fn path(&self, field: &str) -> Result<Option<PathBuf>, StdlibError> {
        Ok(self.string(field)?.map(|path| expand_home(&path)))
    }

    /// A true/false field.
    pub fn bool(&self, field: &str) -> Result<Option<bool>, StdlibError> {
        self.get(field)
            .map(|value| {
                value
                    .as_bool()
                    .map_err(|_| self.wrong(field, "true or false"))
            })
            .transpose()
    }

    /// A duration field: a string such as `"10s"` or `"250ms"`, or whole
    /// seconds (`timeout = 10`).
    pub fn duration(&self, field: &str) -> Result<Option<Duration>, StdlibError> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        if let Ok(seconds) = value.as_int() {
            return u64::try_from(seconds)
                .map(|seconds| Some(Duration::from_secs(seconds)))
                .map_err(|_| self.wrong(field, "a duration such as \"10s\" (not negative)"));
        }
        let text = value
            .clone()
            .into_string()
            .map_err(|_| self.wrong(field, "a duration such as \"10s\""))?;
        crate::duration::parse(text.trim())
            .map(Some)
            .map_err(|problem| {
                StdlibError::usage(
                    format!(
                        "context `{}`: `{}`: {problem}",
                        self.context,
                        self.field(field)
                    ),
                    "write a duration such as \"10s\" or \"250ms\"",
                )
            })
    }

    /// A table field (`[context.NAME.hosts]`).
    pub fn table(&self, field: &str) -> Result<Map, StdlibError> {
        match self.get(field) {
            None => Ok(Map::new()),
            Some(value) => value
                .read_lock::<Map>()
                .map(|map| map.clone())
                .ok_or_else(|| self.wrong(field, "a table")),
        }
    }

    /// Whether the context's `secrets` table names this secret (the
    /// top-level section only knows).
    pub fn has_secret(&self, name: &str) -> bool {
        self.map
            .get("secrets")
            .and_then(|secrets| {
                secrets
                    .read_lock::<Array>()
                    .map(|names| names.iter().any(|known| known.to_string() == name))
            })
            .unwrap_or(false)
    }
}

/// `~/x` → `$HOME/x`.
pub fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_fields_name_the_context_and_field() {
        let mut s3 = Map::new();
        s3.insert("bucket".into(), Dynamic::from(" backups ".to_owned()));
        s3.insert("path_style".into(), Dynamic::from("yes".to_owned()));
        let mut context = Map::new();
        context.insert("name".into(), Dynamic::from("lab".to_owned()));
        context.insert("s3".into(), Dynamic::from_map(s3));
        context.insert(
            "secrets".into(),
            Dynamic::from_array(vec![Dynamic::from("pg_password".to_owned())]),
        );
        let context = Dynamic::from_map(context);
        let s3 = Section::of(&context, "s3");
        assert_eq!(s3.string("bucket").unwrap().as_deref(), Some("backups"));
        assert_eq!(s3.string("region").unwrap(), None);
        let error = s3.bool("path_style").unwrap_err().to_string();
        assert_eq!(
            error,
            "context `lab`: `s3.path_style` must be true or false"
        );
        assert_eq!(s3.duration("timeout").unwrap(), None);
        let top = Section::of(&context, "");
        assert!(top.has_secret("pg_password"));
        assert!(!top.has_secret("other"));
        assert!(
            Section::of(&Dynamic::UNIT, "pg")
                .string("url")
                .unwrap()
                .is_none()
        );
    }
}
