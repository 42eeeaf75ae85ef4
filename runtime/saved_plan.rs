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

    /// The changes, in order.
    pub fn changes(&self) -> Vec<Expected> {
        self.items
            .iter()
            .filter_map(|item| match item {
                SavedItem::Change {
                    number,
                    function,
                    call,
                    args,
                    ..
                } => Some(Expected {
                    number: *number,
                    function: function.clone(),
                    call: call.clone(),
                    args: args.clone(),
                }),
                SavedItem::Gate { .. } => None,
            })
            .collect()
    }
}

/// A change a live run with `--expect-plan` must make next.
#[derive(Debug, Clone)]
pub struct Expected {
    pub number: usize,
    pub function: String,
    /// The call as people read it (long values shortened).
    pub call: String,
    /// Its arguments as JSON; empty in plans saved before arguments were.
    pub args: Vec<serde_json::Value>,
}

impl Expected {
    /// Whether a call is this change: the same function with the same
    /// arguments, compared whole (not as the shortened text), or by the text
    /// for a plan that has no arguments saved.
    pub fn matches(&self, function: &str, call: &str, args: &[serde_json::Value]) -> bool {
        if self.args.is_empty() || self.function.is_empty() {
            return self.call == call;
        }
        self.function == function
            && self.args.len() == args.len()
            && self
                .args
                .iter()
                .zip(args)
                .all(|(planned, actual)| first_difference(planned, actual, String::new()).is_none())
    }

    /// Where the call differs from the plan, for the error: `; argument 1 at
    /// .data.deployed differs`.
    pub fn difference(&self, function: &str, args: &[serde_json::Value]) -> String {
        if self.function.is_empty() || self.args.is_empty() {
            return String::new();
        }
        if self.function != function {
            return format!(" (a call of `{function}`, not `{}`)", self.function);
        }
        if self.args.len() != args.len() {
            return format!(
                " ({} arguments, the plan has {})",
                args.len(),
                self.args.len()
            );
        }
        for (index, (planned, actual)) in self.args.iter().zip(args).enumerate() {
            if let Some(path) = first_difference(planned, actual, String::new()) {
                let at = if path.is_empty() {
                    String::new()
                } else {
                    format!(" at `{path}`")
                };
                return format!(" (argument {}{at} differs)", index + 1);
            }
        }
        String::new()
    }
}

/// The path of the first place two JSON values differ, if they do.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, path: String) -> Option<String> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (key, value) in x {
                match y.get(key) {
                    Some(other) => {
                        if let Some(found) = first_difference(value, other, format!("{path}.{key}"))
                        {
                            return Some(found);
                        }
                    }
                    None => return Some(format!("{path}.{key}")),
                }
            }
            y.keys()
                .find(|key| !x.contains_key(*key))
                .map(|key| format!("{path}.{key}"))
        }
        (Value::Array(x), Value::Array(y)) => {
            for (index, (value, other)) in x.iter().zip(y).enumerate() {
                if let Some(found) = first_difference(value, other, format!("{path}[{index}]")) {
                    return Some(found);
                }
            }
            (x.len() != y.len()).then(|| format!("{path}[{}]", x.len().min(y.len())))
        }
        (Value::String(planned), Value::String(actual)) => {
            (!matches_with_unknowns(planned, actual)).then_some(path)
        }
        // What the dry-run could not know (`"<shell::run(..).stdout>"`) stands for any value.
        (Value::String(planned), _) if runbook_stdlib::unknown::is_placeholder_text(planned) => {
            None
        }
        _ => (a != b).then_some(path),
    }
}

/// Whether `actual` is `planned` with each name of an unknown in it
/// (`<shell::run("mktemp -d").stdout>`) standing for any text.
fn matches_with_unknowns(planned: &str, actual: &str) -> bool {
    let mut pieces: Vec<&str> = Vec::new();
    let mut rest = planned;
    let mut wild = false;
    while let Some(start) = find_unknown(rest) {
        let (before, from) = rest.split_at(start);
        let mut depth = 0usize;
        let mut end = None;
        for (index, c) in from.char_indices() {
            match c {
                '<' => depth += 1,
                '>' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = Some(index + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(end) = end else { break };
        pieces.push(before);
        wild = true;
        rest = &from[end..];
    }
    if !wild {
        return planned == actual;
    }
    pieces.push(rest);
    // Pieces in order, the first at the start and the last at the end.
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    if !actual.starts_with(first) || !actual[first.len()..].ends_with(last) {
        return false;
    }
    let mut cursor = first.len();
    let limit = actual.len() - last.len();
    for piece in &pieces[1..pieces.len() - 1] {
        match actual[cursor..limit].find(piece) {
            Some(at) => cursor += at + piece.len(),
            None => return false,
        }
    }
    cursor <= limit
}

/// Where the next name of an unknown (`<module::function(`) starts in `text`.
fn find_unknown(text: &str) -> Option<usize> {
    text.match_indices('<')
        .map(|(index, _)| index)
        .find(|&index| {
            let after = &text[index + 1..];
            let Some((module, rest)) = after.split_once("::") else {
                return false;
            };
            !module.is_empty()
                && module
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .count()
                    > 0
        })
}

#[cfg(test)]
mod expected_tests {
    use super::Expected;
    use serde_json::json;

    #[test]
    fn a_long_argument_is_compared_whole_and_the_difference_is_named() {
        let planned = Expected {
            number: 4,
            function: "k8s::apply".into(),
            call: "k8s::apply(#{...…)".into(),
            args: vec![json!({"data": {"deployed": "v3", "note": "x".repeat(300)}})],
        };
        let same = vec![json!({"data": {"deployed": "v3", "note": "x".repeat(300)}})];
        let other = vec![json!({"data": {"deployed": "v4", "note": "x".repeat(300)}})];
        assert!(planned.matches("k8s::apply", "k8s::apply(#{...…)", &same));
        assert!(!planned.matches("k8s::apply", "k8s::apply(#{...…)", &other));
        assert_eq!(
            planned.difference("k8s::apply", &other),
            " (argument 1 at `.data.deployed` differs)"
        );
    }

    #[test]
    fn what_the_dry_run_could_not_know_matches_any_value() {
        let planned = Expected {
            number: 2,
            function: "shell::run".into(),
            call: String::new(),
            args: vec![
                json!(["rm", "-rf", "<shell::run(\"mktemp -d\").stdout>/site"]),
                json!("<k8s::image(\"x\")>"),
            ],
        };
        assert!(planned.matches(
            "shell::run",
            "",
            &[json!(["rm", "-rf", "/tmp/tmp.abc/site"]), json!("v1")]
        ));
        assert!(!planned.matches(
            "shell::run",
            "",
            &[json!(["rm", "-rf", "/tmp/tmp.abc/other"]), json!("v1")]
        ));
        assert!(!planned.matches(
            "shell::run",
            "",
            &[json!(["rm", "-r", "/tmp/x/site"]), json!("v1")]
        ));
    }
}
