//! Saved plans: `runbook run --dry-run --plan-out plan.json` writes what a
//! dry-run planned; `runbook run --expect-plan plan.json` runs live but stops
//! before the first write that is not the next change of the saved plan, so
//! what was reviewed is what runs.
//!
//! ```json
//! {"format": 1, "runbook": "runbooks/x.rhai", "sha256": "…", "context": "lab",
//!  "params": {"version": "v2"},
//!  "items": [{"number": 1, "kind": "change", "call": "k8s::set_image(\"backend\", \"…\")",
//!             "at": "runbooks/x.rhai:3:1", "step": "roll out", "diff": "…"},
//!            {"number": 2, "kind": "gate", "message": "Deploy?", "at": "…"}]}
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Diagnostic, Exit};
use crate::plan::PlanItem;

pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format: u32,
    pub runbook: String,
    pub sha256: String,
    pub context: Option<String>,
    pub params: BTreeMap<String, String>,
    pub items: Vec<SavedItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SavedItem {
    Change {
        number: usize,
        /// `module::name`.
        #[serde(default)]
        function: String,
        /// The call as people read it (what `--expect-plan` compares).
        call: String,
        /// The arguments as JSON values, secrets masked.
        #[serde(default)]
        args: Vec<serde_json::Value>,
        at: String,
        step: Option<String>,
        /// The backend's own dry-run diff, when it has one.
        diff: Option<String>,
        /// Offline reads the change depends on (unknown until the run).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        unknown: Vec<String>,
    },
    Gate {
        number: usize,
        message: String,
        at: String,
    },
}

/// The hex sha256 of a runbook's source.
pub fn sha256(source: &str) -> String {
    format!("{:x}", Sha256::digest(source.as_bytes()))
}

/// The plan's items as saved (and as `--output json` prints them).
pub fn items(plan: &[PlanItem]) -> Vec<SavedItem> {
    plan.iter()
        .enumerate()
        .map(|(index, item)| match item {
            PlanItem::Change {
                function,
                call,
                args,
                at,
                step,
                detail,
                unknown,
            } => SavedItem::Change {
                number: index + 1,
                function: function.clone(),
                call: call.clone(),
                args: args.clone(),
                at: at.clone(),
                step: step.clone(),
                diff: detail.clone(),
                unknown: unknown.clone(),
            },
            PlanItem::Gate { message, at, .. } => SavedItem::Gate {
                number: index + 1,
                message: message.clone(),
                at: at.clone(),
            },
        })
        .collect()
}

impl SavedPlan {
    pub fn new(
        runbook: &Path,
        source: &str,
        context: Option<String>,
        params: BTreeMap<String, String>,
        plan: &[PlanItem],
    ) -> SavedPlan {
        let items = items(plan);
        SavedPlan {
            format: FORMAT,
            runbook: runbook.display().to_string(),
            sha256: sha256(source),
            context,
            params,
            items,
        }
    }

    pub fn write(&self, path: &Path) -> Result<(), Diagnostic> {
        let text = serde_json::to_string_pretty(self).map_err(|error| {
            Diagnostic::new(format!("cannot encode the plan: {error}"), Exit::StepFailed)
        })?;
        std::fs::write(path, text + "\n").map_err(|error| {
            Diagnostic::new(
                format!("cannot write the plan `{}`: {error}", path.display()),
                Exit::Usage,
            )
        })
    }

    pub fn load(path: &Path) -> Result<SavedPlan, Diagnostic> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            Diagnostic::new(
                format!("cannot read the plan `{}`: {error}", path.display()),
                Exit::Usage,
            )
        })?;
        let plan: SavedPlan = serde_json::from_str(&text).map_err(|error| {
            Diagnostic::new(
                format!("`{}` is not a saved plan: {error}", path.display()),
                Exit::Usage,
            )
            .hint("write one with `runbook run --dry-run --plan-out FILE ...`")
        })?;
        if plan.format != FORMAT {
            return Err(Diagnostic::new(
                format!(
                    "`{}` is a plan of format {}, this runbook reads format {FORMAT}",
                    path.display(),
                    plan.format
                ),
                Exit::Usage,
            ));
        }
        Ok(plan)
    }

    /// Why this plan is not one of `source` with these params in `context`, if it is not.
    pub fn mismatch(
        &self,
        source: &str,
        context: Option<&str>,
        params: &BTreeMap<String, String>,
    ) -> Option<String> {
        if self.sha256 != sha256(source) {
            return Some(format!(
                "the runbook changed since the plan was saved (sha256 {} now, {} in the plan)",
                sha256(source),
                self.sha256
            ));
        }
        if self.context.as_deref() != context {
            return Some(format!(
                "the plan is for context `{}`, this run is in `{}`",
                self.context.as_deref().unwrap_or("(none)"),
                context.unwrap_or("(none)")
            ));
        }
        if &self.params != params {
            return Some(format!(
                "the plan was made with params {:?}, this run has {:?}",
                self.params, params
            ));
        }
        None
    }

    /// The changes, in order: `(number, call)`.
    pub fn changes(&self) -> Vec<(usize, String)> {
        self.items
            .iter()
            .filter_map(|item| match item {
                SavedItem::Change { number, call, .. } => Some((*number, call.clone())),
                SavedItem::Gate { .. } => None,
            })
            .collect()
    }
}
