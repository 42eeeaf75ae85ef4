//! `runbook runs`: one line per recorded run, newest first.

use crate::error::{Diagnostic, Exit};
use crate::event::{Event, Mode};
use crate::journal;

pub fn runs(limit: usize) -> Result<Exit, Diagnostic> {
    let dir = journal::runs_dir();
    let mut rows = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let path = entry.path().join("journal.jsonl");
            let Ok(recorded) = journal::read(&path) else {
                continue;
            };
            let Some(Event::Run {
                run_id,
                runbook,
                context,
                user,
                host,
                mode,
                time,
                ..
            }) = recorded.events.first()
            else {
                continue;
            };
            let status = match recorded.events.last() {
                Some(Event::End { status, .. }) => status.status(),
                _ => "incomplete",
            };
            let mode = match mode {
                Mode::Live => String::new(),
                other => format!(" ({})", other.name()),
            };
            rows.push((
                time.clone(),
                format!(
                    "{:<24} {:<12} {:<14} {:<20} {}  {runbook}{mode}",
                    run_id,
                    status,
                    context.as_deref().unwrap_or("-"),
                    format!("{user}@{host}"),
                    time.get(..19).unwrap_or_default().replace('T', " "),
                ),
            ));
        }
    }
    if rows.is_empty() {
        eprintln!("no runs recorded in {}", dir.display());
        return Ok(Exit::Ok);
    }
    rows.sort_by(|a, b| b.0.cmp(&a.0));
    println!(
        "{:<24} {:<12} {:<14} {:<20} {:<19}  runbook",
        "run", "status", "context", "who", "started"
    );
    for (_, row) in rows.into_iter().take(limit) {
        println!("{row}");
    }
    Ok(Exit::Ok)
}
