//! Commands over recorded runs: `runs` (recent runs), `show RUN`,
//! `resume RUN`, `audit verify RUN|FILE`.

use std::path::PathBuf;

use serde_json::Value;

use crate::error::{Diagnostic, Exit};
use crate::event::Event;
use crate::journal::{self, Verdict};
use crate::printer::{OutputFormat, Printer};
use crate::run::{Resumed, RunOptions};

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn fail(diagnostic: &Diagnostic) -> Exit {
    eprintln!("{}", diagnostic.render(None, None));
    diagnostic.exit
}

/// One line per run, newest first.
pub fn list(limit: usize) -> Exit {
    let dir = journal::runs_dir();
    let mut rows = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let path = entry.path().join("journal.jsonl");
            let Ok(events) = journal::read(&path) else {
                continue;
            };
            let Some(first) = events.first() else {
                continue;
            };
            let status = match events
                .iter()
                .rev()
                .find(|event| text(event, "event") == "end")
            {
                Some(end)
                    if events
                        .last()
                        .is_some_and(|last| text(last, "event") == "end") =>
                {
                    text(end, "status").to_owned()
                }
                _ => "incomplete".to_owned(),
            };
            let mode = match text(first, "mode") {
                "live" => String::new(),
                other => format!(" ({})", other.replace('_', "-")),
            };
            rows.push((
                text(first, "time").to_owned(),
                format!(
                    "{:<24} {:<12} {:<14} {:<20} {}  {}{mode}",
                    text(first, "run_id"),
                    status,
                    first.get("context").and_then(Value::as_str).unwrap_or("-"),
                    format!("{}@{}", text(first, "user"), text(first, "host")),
                    text(first, "time")
                        .get(..19)
                        .unwrap_or_default()
                        .replace('T', " "),
                    text(first, "runbook"),
                ),
            ));
        }
    }
    if rows.is_empty() {
        eprintln!("no runs recorded in {}", dir.display());
        return Exit::Ok;
    }
    rows.sort_by(|a, b| b.0.cmp(&a.0));
    println!(
        "{:<24} {:<12} {:<14} {:<20} {:<19}  runbook",
        "run", "status", "context", "who", "started"
    );
    for (_, row) in rows.into_iter().take(limit) {
        println!("{row}");
    }
    Exit::Ok
}

/// Render a journal for people, or print it raw with `--output json`.
pub fn show(run: &str, output: OutputFormat) -> Exit {
    let path = match journal::locate(run) {
        Ok(path) => path,
        Err(error) => {
            return fail(
                &Diagnostic::new(error.to_string(), Exit::Usage)
                    .hint("`runbook runs` lists the recorded runs"),
            );
        }
    };
    if output == OutputFormat::Json {
        return match std::fs::read_to_string(&path) {
            Ok(text) => {
                print!("{text}");
                Exit::Ok
            }
            Err(error) => fail(&Diagnostic::new(
                format!("cannot read `{}`: {error}", path.display()),
                Exit::Usage,
            )),
        };
    }
    let events = match journal::read(&path) {
        Ok(events) => events,
        Err(error) => return fail(&Diagnostic::new(error.to_string(), Exit::Usage)),
    };
    let printer = Printer::replay(runbook_stdlib::redact::Redactor::new());
    for value in &events {
        let time = text(value, "time").to_owned();
        match serde_json::from_value::<Event>(value.clone()) {
            Ok(event) => {
                if matches!(event, Event::End { .. }) {
                    printer.summary();
                }
                printer.replay_event(&event, &time);
            }
            Err(_) => println!("(unreadable event: {value})"),
        }
    }
    Exit::Ok
}

/// Check a journal's hash chain.
pub fn verify(run: &str) -> Exit {
    let path = match journal::locate(run) {
        Ok(path) => path,
        Err(error) => return fail(&Diagnostic::new(error.to_string(), Exit::Usage)),
    };
    match journal::verify(&path) {
        Ok(Verdict::Intact { lines, complete }) => {
            println!("ok: {} — {lines} lines, hash chain intact", path.display());
            if !complete {
                println!(
                    "note: no end record (the run is still going, was killed, or its last lines are missing)"
                );
            }
            Exit::Ok
        }
        Ok(Verdict::Broken { line, problem }) => {
            println!("BROKEN: {} line {line}: {problem}", path.display());
            Exit::StepFailed
        }
        Err(error) => fail(&Diagnostic::new(error.to_string(), Exit::Usage)),
    }
}

/// Options for `runbook resume`.
#[derive(Debug, Clone, Default)]
pub struct ResumeOptions {
    pub run: String,
    pub force: bool,
    pub approve: bool,
    pub confirm: Option<String>,
    pub output: OutputFormat,
    pub no_rollback: bool,
    pub verbose: bool,
}

/// Continue a run from its journal.
pub fn resume(options: &ResumeOptions) -> Exit {
    let path = match journal::locate(&options.run) {
        Ok(path) => path,
        Err(error) => {
            return fail(
                &Diagnostic::new(error.to_string(), Exit::Usage)
                    .hint("`runbook runs` lists the recorded runs"),
            );
        }
    };
    if let Ok(Verdict::Broken { line, problem }) = journal::verify(&path) {
        // A cut-off last line is what a kill leaves behind; anything else is tampering.
        let last_line = std::fs::read_to_string(&path)
            .map(|text| text.split_inclusive('\n').count())
            .unwrap_or(0);
        if !(line == last_line && problem.contains("cut off")) {
            return fail(
                &Diagnostic::new(format!("the journal fails verification at line {line}: {problem}"), Exit::Usage)
                    .hint("`runbook audit verify RUN` shows the problem; a journal that was edited cannot be resumed"),
            );
        }
    }
    let (original, state) = match crate::resume::load(&path) {
        Ok(loaded) => loaded,
        Err(error) => return fail(&Diagnostic::new(error.to_string(), Exit::Usage)),
    };
    if original.mode != "live" {
        return fail(&Diagnostic::new(
            format!(
                "run {} was a {}; there is nothing to resume",
                original.run_id,
                original.mode.replace('_', "-")
            ),
            Exit::Usage,
        ));
    }
    if original.finished_ok {
        return fail(&Diagnostic::new(
            format!(
                "run {} finished successfully; there is nothing to resume",
                original.run_id
            ),
            Exit::Usage,
        ));
    }
    let file = PathBuf::from(&original.runbook);
    let source = match std::fs::read(&file) {
        Ok(source) => source,
        Err(error) => {
            return fail(&Diagnostic::new(format!("cannot read the runbook `{}`: {error}", file.display()), Exit::Usage)
                .hint("resume from the folder the run was started in (the journal records the path as given)"));
        }
    };
    if journal::sha256_hex(&source) != original.sha256 && !options.force {
        return fail(
            &Diagnostic::new(format!("`{}` changed since run {} started", file.display(), original.run_id), Exit::Usage)
                .hint("resuming a changed runbook may skip or repeat the wrong steps; pass --force if you are sure"),
        );
    }
    let run_options = RunOptions {
        file,
        params: original.params.clone(),
        context: original.context.clone(),
        approve: options.approve,
        confirm: options.confirm.clone(),
        output: options.output,
        no_rollback: options.no_rollback,
        verbose: options.verbose,
        ..RunOptions::default()
    };
    crate::run::run_with(
        &run_options,
        Some(Resumed {
            run_id: original.run_id,
            journal: path,
            state,
            force: options.force,
        }),
    )
}
