//! `runbook runs`: one line per recorded run or REPL session, newest first,
//! filtered by kind, context, start time, status and runbook; dry-runs
//! only when asked for (`--all`, `--dry-run`).

use crate::error::{Diagnostic, Exit};
use crate::event::{Event, Kind, Mode};
use crate::journal;

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub limit: usize,
    pub kind: Option<Kind>,
    pub context: Option<String>,
    /// A duration back from now, or a UTC date/time prefix.
    pub since: Option<String>,
    pub status: Option<String>,
    /// `--journal s3://BUCKET/PREFIX`: list the runs there instead.
    pub journal: Option<String>,
    /// Only runs whose runbook path contains this text.
    pub runbook: Option<String>,
    /// Which dry-runs to list (none by default).
    pub dry_runs: DryRuns,
}

/// Dry-runs in `runbook runs`: hidden unless asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DryRuns {
    /// Live runs only (the default; `--no-dry-run` says so explicitly).
    #[default]
    Hide,
    /// Dry-runs only (`--dry-run`).
    Only,
    /// Both (`--all`).
    Include,
}

const STATUSES: &[&str] = &[
    "ok",
    "failed",
    "error",
    "refused",
    "locked",
    "interrupted",
    "incomplete",
];

/// The earliest start time (RFC 3339, comparable as text) `--since` allows.
fn since_bound(since: &str) -> Result<String, Diagnostic> {
    if let Ok(back) = runbook_stdlib::duration::parse(since) {
        let back = chrono::Duration::from_std(back).map_err(|_| {
            Diagnostic::new(
                format!("`--since {since}` reaches too far back"),
                Exit::Usage,
            )
        })?;
        let start = chrono::Utc::now() - back;
        return Ok(start.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
    }
    let looks_like_date = since.len() >= 10
        && since.as_bytes()[4] == b'-'
        && since.as_bytes()[7] == b'-'
        && since[..4].chars().all(|c| c.is_ascii_digit());
    if looks_like_date {
        return Ok(since.to_owned());
    }
    Err(Diagnostic::new(
        format!("`--since {since}` is neither a duration nor a date"),
        Exit::Usage,
    )
    .hint("use a duration back from now (`2h`, `7d`) or a UTC date (`2026-12-01`, `2026-12-01T08:00`)"))
}

pub fn runs(filter: &Filter) -> Result<Exit, Diagnostic> {
    if let Some(status) = &filter.status
        && !STATUSES.contains(&status.as_str())
    {
        return Err(
            Diagnostic::new(format!("`--status {status}` is not a status"), Exit::Usage)
                .hint(format!("the statuses are: {}", STATUSES.join(", "))),
        );
    }
    let since = filter.since.as_deref().map(since_bound).transpose()?;
    // From S3: the journals are copied into a temporary folder first.
    let downloaded = filter
        .journal
        .as_deref()
        .map(crate::journal_store::download_runs)
        .transpose()?;
    let dir = downloaded
        .as_ref()
        .map_or_else(journal::runs_dir, |(folder, _)| folder.path().to_owned());
    let mut rows = Vec::new();
    // Journals that cannot be listed, or were cut: said, never hidden.
    let mut notes = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let path = entry.path().join("journal.jsonl");
            let name = entry.file_name().to_string_lossy().into_owned();
            let recorded = match journal::read(&path) {
                Ok(recorded) => recorded,
                Err(error) => {
                    if path.exists() {
                        notes.push(format!("run {name}: its journal cannot be read: {error}"));
                    }
                    continue;
                }
            };
            if recorded.cut_bytes > 0 {
                notes.push(format!(
                    "run {name}: {}",
                    journal::cut_note(recorded.cut_bytes, &name)
                ));
            }
            if recorded.events.is_empty() {
                notes.push(format!("run {name}: its journal holds no whole line"));
                continue;
            }
            let Some(Event::Run {
                run_id,
                runbook,
                context,
                user,
                host,
                mode,
                kind,
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
            let keep = filter.kind.is_none_or(|wanted| wanted == *kind)
                && filter
                    .context
                    .as_deref()
                    .is_none_or(|wanted| context.as_deref() == Some(wanted))
                && since.as_deref().is_none_or(|bound| time.as_str() >= bound)
                && filter
                    .status
                    .as_deref()
                    .is_none_or(|wanted| wanted == status)
                && filter
                    .runbook
                    .as_deref()
                    .is_none_or(|wanted| runbook.contains(wanted))
                && match filter.dry_runs {
                    DryRuns::Hide => !mode.is_dry(),
                    DryRuns::Only => mode.is_dry(),
                    DryRuns::Include => true,
                };
            if !keep {
                continue;
            }
            let mode = match mode {
                Mode::Live => String::new(),
                other => format!(" ({})", other.name()),
            };
            rows.push((
                time.clone(),
                format!(
                    "{:<24} {:<12} {:<5} {:<14} {:<20} {}  {runbook}{mode}",
                    run_id,
                    status,
                    kind.name(),
                    context.as_deref().unwrap_or("-"),
                    format!("{user}@{host}"),
                    time.get(..19).unwrap_or_default().replace('T', " "),
                ),
            ));
        }
    }
    for note in &notes {
        eprintln!("note: {note}");
    }
    if rows.is_empty() {
        let hint = if filter.dry_runs == DryRuns::Hide {
            " (dry-runs are hidden: --all shows them)"
        } else {
            ""
        };
        let place = downloaded
            .as_ref()
            .map_or_else(|| dir.display().to_string(), |(_, url)| url.clone());
        eprintln!("no runs recorded in {place} match{hint}");
        return Ok(Exit::Ok);
    }
    rows.sort_by(|a, b| b.0.cmp(&a.0));
    println!(
        "{:<24} {:<12} {:<5} {:<14} {:<20} {:<19}  runbook",
        "run", "status", "kind", "context", "who", "started"
    );
    for (_, row) in rows.into_iter().take(filter.limit) {
        println!("{row}");
    }
    Ok(Exit::Ok)
}
