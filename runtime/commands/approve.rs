//! `runbook approve RUN` and `runbook reject RUN --reason TEXT`: answer the
//! gate a run started with `--wait-for-approval` waits at, from another
//! shell. The answer is a decision file created exclusively (`remote.rs`):
//! the first answer is the decision; a later one exits 4 and says whose won.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Diagnostic, Exit};
use crate::journal_store::{Store, Url};
use crate::remote::{self, Answer, Answered, Claim, Request};

/// Where a gate is answered: the run's folder in the state dir, or its
/// journal in S3 (any machine; the decision is a conditional create there).
enum Board {
    Local(PathBuf),
    S3(Store, String),
}

impl Board {
    fn read_request(&self) -> Result<Option<Request>, String> {
        match self {
            Board::Local(dir) => remote::read_request(dir),
            Board::S3(store, run) => store.read_request(run),
        }
    }

    fn read_answer(&self, gate_id: &str) -> Result<Option<Answer>, String> {
        match self {
            Board::Local(dir) => remote::read_answer(dir, gate_id),
            Board::S3(store, run) => store.read_answer(run, gate_id),
        }
    }

    fn claim(&self, answer: &Answer) -> Result<Claim, String> {
        match self {
            Board::Local(dir) => remote::claim(dir, answer),
            Board::S3(store, run) => store.claim(run, answer),
        }
    }
}

/// Which run, and through which board: `s3://BUCKET/PREFIX/RUN`, or a run
/// id with `--journal s3://BUCKET/PREFIX`, or a run id of this state dir
/// (whose gate may say it is answered in S3).
fn board(run: &str, journal: Option<&str>) -> Result<(String, Board), Diagnostic> {
    let open = |url: Url, run: String| -> Result<(String, Board), Diagnostic> {
        let store = Store::open(url, &crate::journal_store::context_for(None)?)?;
        Ok((run.clone(), Board::S3(store, run)))
    };
    if Url::is_s3(run) {
        let (url, run) = Url::parse_run(run)?;
        return open(url, run);
    }
    if let Some(journal) = journal {
        return open(Url::parse(journal)?, run.to_owned());
    }
    let dir = crate::journal::runs_dir().join(run);
    if let Ok(Some(Request {
        journal: Some(url), ..
    })) = remote::read_request(&dir)
    {
        let (url, id) = Url::parse_run(&url)?;
        return open(url, id);
    }
    Ok((run.to_owned(), Board::Local(dir)))
}

/// How long `approve`/`reject` waits for the run to take up the decision
/// before saying it has not (the run looks every `remote::POLL`).
const ACKNOWLEDGE: Duration = Duration::from_secs(3);

const GATES_HINT: &str = "`runbook gates` lists the runs waiting at a gate";

/// `runbook approve RUN [--comment TEXT] [--confirm TEXT]`.
pub fn approve(
    run: &str,
    journal: Option<&str>,
    comment: Option<String>,
    confirm: Option<String>,
) -> Result<Exit, Diagnostic> {
    let (run, dir) = board(run, journal)?;
    let run = run.as_str();
    let request = waiting(run, &dir)?;
    let me = crate::identity::approver();
    if request.four_eyes && me == request.started_by {
        let context = request.context.as_deref().unwrap_or_default();
        return Err(Diagnostic::new(
            format!(
                "context `{context}` requires four eyes: you ({me}) started run {run} and cannot approve its gates"
            ),
            Exit::Refused,
        )
        .hint(format!(
            "ask someone else to run `runbook approve {run}`; `runbook reject {run} --reason TEXT` is still yours"
        )));
    }
    if let Some(expected) = &request.confirm
        && confirm.as_deref() != Some(expected.as_str())
    {
        let what = if request.protected && request.context.as_deref() == Some(expected.as_str()) {
            format!("context `{expected}` is protected")
        } else {
            format!("this gate asks for the text `{expected}`")
        };
        let message = match &confirm {
            None => format!("{what}: approving needs --confirm {expected}"),
            Some(other) => format!("{what} and --confirm gives `{other}`"),
        };
        return Err(Diagnostic::new(message, Exit::Refused).hint(format!(
            "run `runbook approve {run} --confirm {expected}` to show you mean it"
        )));
    }
    let answer = Answer {
        gate_id: request.gate_id.clone(),
        decision: Answered::Approved,
        by: me,
        comment,
        confirm,
        time: crate::event::now(),
    };
    decide(&dir, &request, &answer)
}

/// `runbook reject RUN --reason TEXT`.
pub fn reject(run: &str, journal: Option<&str>, reason: String) -> Result<Exit, Diagnostic> {
    if reason.trim().is_empty() {
        return Err(Diagnostic::new("--reason must not be empty", Exit::Usage)
            .hint("say why, for the journal: --reason \"wrong version\""));
    }
    let (run, dir) = board(run, journal)?;
    let run = run.as_str();
    let request = waiting(run, &dir)?;
    let answer = Answer {
        gate_id: request.gate_id.clone(),
        decision: Answered::Rejected,
        by: crate::identity::approver(),
        comment: Some(reason),
        confirm: None,
        time: crate::event::now(),
    };
    decide(&dir, &request, &answer)
}

/// The run's folder and the gate it waits at, or why there is none (exit 2;
/// exit 4 when the gate has already been decided or expired).
fn waiting(run: &str, board: &Board) -> Result<Request, Diagnostic> {
    let plain = !run.is_empty()
        && run
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !plain {
        return Err(
            Diagnostic::new(format!("`{run}` is not a run id"), Exit::Usage).hint(GATES_HINT),
        );
    }
    if let Board::S3(store, _) = board {
        return waiting_in_s3(run, store, board);
    }
    let dir = crate::journal::runs_dir().join(run);
    let journal = dir.join("journal.jsonl");
    if !journal.is_file() {
        return Err(Diagnostic::new(
            format!("no run `{run}` in {}", crate::journal::runs_dir().display()),
            Exit::Usage,
        )
        .hint(format!(
            "{GATES_HINT} (is RUNBOOK_STATE_DIR the same as the run's?)"
        )));
    }
    let request =
        remote::read_request(&dir).map_err(|problem| Diagnostic::new(problem, Exit::Usage))?;
    let Some(request) = request else {
        return Err(not_waiting(run, &journal));
    };
    if let Ok(Some(answer)) = remote::read_answer(&dir, &request.gate_id) {
        return Err(already(run, &answer));
    }
    if !request.alive() {
        return Err(Diagnostic::new(
            format!(
                "run {run} stopped waiting: its process (pid {}) is gone",
                request.pid
            ),
            Exit::Usage,
        )
        .hint(format!(
            "`runbook resume {run} --wait-for-approval 30m` waits at the gate again"
        )));
    }
    if request.expired(chrono::Utc::now()) {
        return Err(expired(run, &request));
    }
    Ok(request)
}

/// [`waiting`] through S3: the waiting process may be on another machine,
/// so only the expiry says a gate is over.
fn waiting_in_s3(run: &str, store: &Store, board: &Board) -> Result<Request, Diagnostic> {
    let unusable = |problem: String| Diagnostic::new(problem, Exit::Usage);
    let Some(request) = board.read_request().map_err(unusable)? else {
        let copy = tempfile::tempdir().map_err(|error| unusable(error.to_string()))?;
        let journal = copy.path().join("journal.jsonl");
        let bytes = store.download(run)?;
        if bytes.is_empty() {
            return Err(
                Diagnostic::new(format!("no run `{run}` in {}", store.url), Exit::Usage).hint(
                    format!(
                        "`runbook gates --journal {}` lists the gates waiting there",
                        store.url
                    ),
                ),
            );
        }
        std::fs::write(&journal, bytes).map_err(|error| unusable(error.to_string()))?;
        return Err(not_waiting(run, &journal));
    };
    if let Ok(Some(answer)) = board.read_answer(&request.gate_id) {
        return Err(already(run, &answer));
    }
    if request.expired(chrono::Utc::now()) {
        return Err(expired(run, &request));
    }
    Ok(request)
}

/// Why a run with a journal has no gate request: it ended (exit 2), its
/// last gate was just decided and it runs on (exit 4: a second decision), or
/// it does not wait (exit 2).
fn not_waiting(run: &str, journal: &Path) -> Diagnostic {
    use crate::event::{Event, GateDecision};
    let events = crate::journal::read(journal)
        .map(|recorded| recorded.events)
        .unwrap_or_default();
    let ended = events.iter().rev().find_map(|event| match event {
        Event::End { status, .. } => Some(status.status()),
        _ => None,
    });
    let last_gate = events.iter().rev().find_map(|event| match event {
        Event::Gate {
            decision,
            approver,
            how,
            time,
            ..
        } => Some((*decision, approver, how, time)),
        _ => None,
    });
    let state = match (ended, last_gate) {
        (Some(status), _) => format!("it has ended ({status})"),
        (None, Some((decision, approver, how, time)))
            if !matches!(decision, GateDecision::Waiting | GateDecision::Planned) =>
        {
            let word = match decision {
                GateDecision::Approved => "approved",
                GateDecision::Expired => "expired",
                _ => "rejected",
            };
            let by = if approver.is_empty() {
                String::new()
            } else {
                format!(" by {approver}")
            };
            return Diagnostic::new(
                format!(
                    "the gate of run {run} is already decided: {word}{by} ({how}) at {time}"
                ),
                Exit::Locked,
            )
            .hint("one decision per gate: yours was not recorded (`runbook show RUN` has the journal)");
        }
        (None, _) => {
            "it was not started with --wait-for-approval, is not at a gate yet, or died".to_owned()
        }
    };
    Diagnostic::new(
        format!("run {run} is not waiting at a gate: {state}"),
        Exit::Usage,
    )
    .hint(GATES_HINT)
}

/// Someone (or the expiry) decided first: exit 4.
fn already(run: &str, answer: &Answer) -> Diagnostic {
    Diagnostic::new(
        format!(
            "the gate of run {run} is already decided: {}",
            answer.describe()
        ),
        Exit::Locked,
    )
    .hint("one decision per gate: yours was not recorded (`runbook show RUN` has the journal)")
}

/// Claim the decision, then wait (briefly) for the run to take it up.
fn decide(dir: &Board, request: &Request, answer: &Answer) -> Result<Exit, Diagnostic> {
    let run = &request.run_id;
    match dir
        .claim(answer)
        .map_err(|problem| Diagnostic::new(problem, Exit::Usage))?
    {
        Claim::Lost(existing) => return Err(already(run, &existing)),
        Claim::Won => {}
    }
    let goes_on = match answer.decision {
        Answered::Approved => "goes on",
        _ => "rolls back",
    };
    println!(
        "{} run {run} at `{}` as {}",
        answer.decision.word(),
        request.message,
        answer.by
    );
    let started = Instant::now();
    while started.elapsed() < ACKNOWLEDGE {
        let still = dir
            .read_request()
            .ok()
            .flatten()
            .is_some_and(|open| open.gate_id == request.gate_id);
        if !still {
            println!("run {run} {goes_on}");
            return Ok(Exit::Ok);
        }
        std::thread::sleep(remote::POLL / 2);
    }
    let waiter = match dir {
        Board::Local(_) => format!("pid {}", request.pid),
        Board::S3(..) => format!("{} pid {}", request.started_by, request.pid),
    };
    eprintln!(
        "note: run {run} has not taken up the decision yet ({waiter}); it does when it next looks"
    );
    Ok(Exit::Ok)
}

/// The gate of `run` ran out before this answer.
fn expired(run: &str, request: &Request) -> Diagnostic {
    Diagnostic::new(
        format!(
            "the gate of run {run} expired at {}: too late to answer",
            request.expires
        ),
        Exit::Locked,
    )
    .hint("the run rejects it and rolls back")
}
