//! `--fixtures FILE` for `--dry-run --offline`: the values that reads return
//! instead of touching the world. Keys are the call as the plan shows it
//! (`shell::read("uname -r")`), or just the function (`http::get`).
//!
//! ```yaml
//! 'shell::read("git rev-parse HEAD")': {stdout: "3f2a9c1\n"}
//! http::get: {status: 200, body: "ok"}
//! 'k8s::secret("app-db")': {password: "***"}
//! ```
//!
//! A value of exactly `***` is a secret placeholder (what `runbook fixtures
//! record` writes for a secret): it is a secret, and shows as `***`.

use std::collections::BTreeMap;
use std::path::Path;

use rhai::{Dynamic, Map};
use runbook_stdlib::CallInfo;
use runbook_stdlib::Secret;

#[derive(Debug, Clone, Default)]
pub struct Fixtures {
    values: BTreeMap<String, serde_json::Value>,
}

impl Fixtures {
    pub fn load(path: &Path) -> Result<Fixtures, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read fixtures `{}`: {error}", path.display()))?;
        let values: BTreeMap<String, serde_json::Value> =
            serde_saphyr::from_str(&text).map_err(|error| {
                format!(
                    "fixtures `{}` are not a YAML map of call → value: {error}",
                    path.display()
                )
            })?;
        Ok(Fixtures { values })
    }

    /// Whether a fixture answers this call.
    pub fn has(&self, call: &CallInfo) -> bool {
        self.values.contains_key(&call.signature()) || self.values.contains_key(&call.function)
    }

    /// The fixture for a call, merged over the placeholder so that a map
    /// fixture may give only the fields that matter.
    pub fn lookup(&self, call: &CallInfo, placeholder: Dynamic) -> Option<Dynamic> {
        let value = self
            .values
            .get(&call.signature())
            .or_else(|| self.values.get(&call.function))?
            .clone();
        let fixture = from_json_strings(value);
        match (
            placeholder.try_cast::<Map>(),
            fixture.read_lock::<Map>().map(|map| map.clone()),
        ) {
            (Some(mut base), Some(fields)) => {
                base.extend(fields);
                Some(Dynamic::from_map(base))
            }
            _ => Some(fixture),
        }
    }
}

/// A fixture as a Rhai value: `"***"` becomes a secret placeholder, other
/// strings stay plain.
fn from_json_strings(value: serde_json::Value) -> Dynamic {
    runbook_stdlib::values::from_json_with(value, &mut |text| {
        if text == MASK {
            Dynamic::from(Secret::new(MASK))
        } else {
            Dynamic::from(text)
        }
    })
}

/// What a secret looks like in output, and so in recorded fixtures.
const MASK: &str = "***";
