//! `runbook gates`: the gates that runs started with `--wait-for-approval`
//! are waiting at, oldest first (from `runs/RUN/gate.json`, see `remote.rs`).

use crate::error::{Diagnostic, Exit};
use crate::remote;

pub fn gates(journal: Option<&str>) -> Result<Exit, Diagnostic> {
    // From S3 the waiting process may be on another machine: a gate is
    // listed until it is decided or expires.
    let (found, place) = match journal {
        Some(text) => {
            let url = crate::journal_store::Url::parse(text)?;
            let store =
                crate::journal_store::Store::open(url, &crate::journal_store::context_for(None)?)?;
            let now = chrono::Utc::now();
            let found = store
                .requests()?
                .into_iter()
                .filter(|request| !request.expired(now))
                .map(|request| (request, true))
                .collect();
            (found, store.url.to_string())
        }
        None => (
            remote::list(),
            crate::journal::runs_dir().display().to_string(),
        ),
    };
    let (waiting, stale): (Vec<_>, Vec<_>) = found.into_iter().partition(|(_, alive)| *alive);
    for (request, _) in &stale {
        eprintln!(
            "note: run {} stopped waiting (its process, pid {}, is gone); `runbook resume {} --wait-for-approval 30m` waits again",
            request.run_id, request.pid, request.run_id
        );
    }
    if waiting.is_empty() {
        eprintln!("no gates waiting in {place}");
        return Ok(Exit::Ok);
    }
    println!(
        "{:<24} {:<19}  {:<19}  {:<20} {:<20} gate",
        "run", "waiting since (UTC)", "expires (UTC)", "started by", "context"
    );
    for (request, _) in &waiting {
        let mut context = request.context.clone().unwrap_or_else(|| "-".to_owned());
        if request.protected {
            context.push_str(" (protected)");
        }
        if request.four_eyes {
            context.push_str(" (four eyes)");
        }
        println!(
            "{:<24} {:<19}  {:<19}  {:<20} {:<20} {} (at {})",
            request.run_id,
            short_time(&request.since),
            short_time(&request.expires),
            request.started_by,
            context,
            request.message,
            request.at,
        );
        let confirm = request
            .confirm
            .as_deref()
            .map(|text| format!(" --confirm {text}"))
            .unwrap_or_default();
        let journal = journal
            .map(|url| format!(" --journal {url}"))
            .unwrap_or_default();
        println!(
            "  runbook approve{journal} {}{confirm} [--comment TEXT]  |  runbook reject{journal} {} --reason TEXT",
            request.run_id, request.run_id
        );
    }
    Ok(Exit::Ok)
}

/// `2026-12-02T10:00:00.000Z` as `2026-12-02 10:00:00`.
fn short_time(time: &str) -> String {
    time.get(..19).unwrap_or(time).replace('T', " ")
}
