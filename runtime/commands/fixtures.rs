//! `runbook fixtures record RUNBOOK [params] --context C > fixtures.yaml`:
//! an online dry-run of the runbook (this same binary, `--output json`),
//! whose every read becomes a fixture, keyed by the call as the plan shows
//! it. An offline dry-run with the file then answers each read as the online
//! one saw it, and so produces the same plan.
//!
//! A write that the backend's own dry run previewed online (`s3::prune`
//! says what it would delete) is recorded with that answer too, so the
//! offline run computes with the same value.
//!
//! A secret in a result is recorded as `***`, never its value; offline a
//! `***` fixture value is a secret placeholder (it prints, and keys calls,
//! as `***` again). A read made more than once keeps its last result (a
//! poll's answer once it was satisfied).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::error::{Diagnostic, Exit};

/// What to record: the runbook, its params and the context.
#[derive(Debug)]
pub struct Record<'a> {
    pub file: &'a Path,
    pub params: &'a [(String, String)],
    pub context: Option<&'a str>,
}

/// One read seen in the dry-run.
#[derive(Debug, Default)]
struct Seen {
    value: Option<Value>,
    secret: bool,
    times: usize,
}

pub fn record(options: &Record<'_>) -> Result<Exit, Diagnostic> {
    let exe = std::env::current_exe().map_err(|error| {
        Diagnostic::new(
            format!("cannot find the runbook binary to run the dry-run: {error}"),
            Exit::Usage,
        )
    })?;
    let mut command = Command::new(exe);
    command
        .arg("run")
        .arg(options.file)
        .args(
            options
                .params
                .iter()
                .map(|(name, value)| format!("{name}={value}")),
        )
        .args(["--dry-run", "--output", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(context) = options.context {
        command.args(["--context", context]);
    }
    let output = command.output().map_err(|error| {
        Diagnostic::new(
            format!(
                "cannot start the dry-run of `{}`: {error}",
                options.file.display()
            ),
            Exit::Usage,
        )
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut reads: BTreeMap<String, Seen> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut run_id = String::new();
    for line in stdout.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let field = |name: &str| event.get(name).and_then(Value::as_str).unwrap_or_default();
        match field("event") {
            "run" => run_id = field("run_id").to_owned(),
            // Reads, and writes whose backend's dry run answered (their preview).
            "call"
                if (field("effect") == "read" && field("outcome") == "ok")
                    || (field("outcome") == "planned" && event.get("result").is_some()) =>
            {
                let key = field("call").to_owned();
                if !reads.contains_key(&key) {
                    order.push(key.clone());
                }
                let seen = reads.entry(key).or_default();
                seen.times += 1;
                seen.secret = event.get("redacted").and_then(Value::as_bool) == Some(true);
                seen.value = event.get("result").cloned();
            }
            _ => {}
        }
    }
    let code = output.status.code().unwrap_or(1);
    if code != 0 {
        return Err(Diagnostic::new(
            format!(
                "the dry-run of `{}` exited {code}: no fixtures written",
                options.file.display()
            ),
            Exit::from_code(code),
        )
        .hint("fix what the dry-run reports above, then record again"));
    }
    let text = render(options, &run_id, &order, &reads);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|error| {
            Diagnostic::new(format!("cannot write the fixtures: {error}"), Exit::Usage)
        })?;
    eprintln!(
        "recorded {} read{} of dry-run {run_id}",
        order.len(),
        if order.len() == 1 { "" } else { "s" }
    );
    Ok(Exit::Ok)
}

/// The fixtures file: YAML whose values are JSON (flow style), in the order
/// the reads were first made.
fn render(
    options: &Record<'_>,
    run_id: &str,
    order: &[String],
    reads: &BTreeMap<String, Seen>,
) -> String {
    let params: Vec<String> = options
        .params
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    let mut out = format!(
        "# Fixtures for `runbook run --dry-run --offline --fixtures FILE {}`\n\
         # recorded by `runbook fixtures record` from dry-run {run_id} (context: {}, params: {})\n",
        options.file.display(),
        options.context.unwrap_or("(none)"),
        if params.is_empty() {
            "(none)".to_owned()
        } else {
            params.join(" ")
        }
    );
    for key in order {
        let Some(seen) = reads.get(key) else {
            continue;
        };
        // A JSON string is a YAML double-quoted scalar: every character of
        // the call survives (quotes, newlines, control characters).
        let key_text = Value::String(key.clone()).to_string();
        if seen.secret {
            out.push_str("# its secrets are recorded as *** (placeholders, never the values)\n");
        }
        if seen.times > 1 {
            out.push_str(&format!(
                "# read {} times; the last result is kept\n",
                seen.times
            ));
        }
        let value = seen.value.clone().unwrap_or(Value::Null);
        out.push_str(&format!("{key_text}: {value}\n"));
    }
    out
}
