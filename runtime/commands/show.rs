//! `runbook show RUN`: a journal rendered for people, raw with `--output json`,
//! or as an HTML report with `--html` (see `html.rs`).

use crate::error::{Diagnostic, Exit};
use crate::event::Event;
use crate::journal;
use crate::printer::{OutputFormat, Printer};

pub fn show(run: &str, output: OutputFormat, html: bool) -> Result<Exit, Diagnostic> {
    let path = journal::locate(run)?;
    if html {
        let recorded = journal::read(&path)?;
        print!(
            "{}",
            crate::html::render(run, &recorded.events, recorded.cut_bytes)
        );
        return Ok(Exit::Ok);
    }
    if output == OutputFormat::Json {
        let text = std::fs::read_to_string(&path).map_err(|error| {
            Diagnostic::new(
                format!("cannot read `{}`: {error}", path.display()),
                Exit::Usage,
            )
        })?;
        print!("{text}");
        return Ok(Exit::Ok);
    }
    let recorded = journal::read(&path)?;
    let printer = Printer::replay(runbook_stdlib::redact::Redactor::new());
    for event in &recorded.events {
        if matches!(event, Event::End { .. }) {
            printer.summary();
        }
        printer.replay_event(event, event.time());
    }
    if recorded.cut_bytes > 0 {
        printer.line(&journal::cut_note(recorded.cut_bytes, run));
    }
    Ok(Exit::Ok)
}
