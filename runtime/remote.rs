//! Approving from somewhere else: the files through which a run started with
//! `--wait-for-approval` waits at a gate, and `runbook gates`, `runbook
//! approve` and `runbook reject` answer it from another shell.
//!
//! The protocol, in the run's folder of the state dir (`runs/RUN/`):
//!
//! - `gate.json` ([`Request`]): written by the waiting run (to a temp file,
//!   then renamed, so it is never seen half-written) *after* the journal
//!   records that the run waits. It names the gate (`gate_id`, new for every
//!   gate), its message, who started the run, the context, whether the
//!   context is protected or four-eyes, the text `--confirm` must give, the
//!   expiry, and the waiting process (pid and start time, so a run that died
//!   is told apart from one that waits).
//! - `decision-GATE_ID.json` ([`Answer`]): the one decision for that gate.
//!   It is written to a temp file and hard-linked into place, which fails if
//!   the name exists: of two approvers racing (or an approver racing the
//!   expiry, which the run claims the same way) exactly one wins, the other
//!   learns who did. Decision files stay as a record; the journal is the
//!   authoritative one.
//! - The waiting run polls for its decision file every [`POLL`], and removes
//!   `gate.json` when the gate is decided (approved, rejected, expired, or
//!   interrupted by Ctrl-C).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The waiting run's request file in `runs/RUN/`.
pub const REQUEST_FILE: &str = "gate.json";

/// How often a waiting run looks for its decision.
pub const POLL: Duration = Duration::from_millis(100);

/// A run waiting at a gate, as `gate.json` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub run_id: String,
    /// New for every gate, so an answer meant for one gate never passes another.
    pub gate_id: String,
    /// The gate's message (secrets masked).
    pub message: String,
    /// `file:line:col` of the `approve` call.
    pub at: String,
    pub runbook: String,
    /// When the run started waiting, and when the gate expires (RFC 3339, UTC).
    pub since: String,
    pub expires: String,
    /// Who started the run (the identity rules of `identity::approver`).
    pub started_by: String,
    pub context: Option<String>,
    pub protected: bool,
    pub four_eyes: bool,
    /// Text `runbook approve --confirm` must give (the protected context's
    /// name, or the gate's own `confirm`).
    pub confirm: Option<String>,
    /// The waiting process.
    pub pid: u32,
    pub start_ticks: Option<u64>,
    /// `s3://BUCKET/PREFIX/RUN` when the run's journal is in S3: the gate
    /// is then answered there (`journal_store.rs`), from any machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
}

impl Request {
    /// Whether the process that wrote this request still runs (on this
    /// machine: a request read from S3 may come from another, whose pid
    /// means nothing here).
    pub fn alive(&self) -> bool {
        crate::lock::process_alive(self.pid, self.start_ticks)
    }

    /// Whether the expiry has passed at `now`.
    pub fn expired(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        chrono::DateTime::parse_from_rfc3339(&self.expires).is_ok_and(|expires| now >= expires)
    }
}

/// What a decision file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answered {
    Approved,
    Rejected,
    /// Claimed by the waiting run when `--wait-for-approval` ran out.
    Expired,
    /// Claimed by the waiting run on Ctrl-C.
    Interrupted,
}

impl Answered {
    pub fn word(self) -> &'static str {
        match self {
            Answered::Approved => "approved",
            Answered::Rejected => "rejected",
            Answered::Expired => "expired",
            Answered::Interrupted => "interrupted",
        }
    }
}

/// The one decision for a gate (`decision-GATE_ID.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub gate_id: String,
    pub decision: Answered,
    /// Who decided (`identity::approver` of the deciding process).
    pub by: String,
    /// The approver's comment, or the rejection's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// What the approver gave as `--confirm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
    pub time: String,
}

impl Answer {
    /// "approved by bob@ops2 at 2026-12-02T10:00:00.000Z".
    pub fn describe(&self) -> String {
        match self.decision {
            Answered::Expired => format!("it expired at {}", self.time),
            Answered::Interrupted => format!("the run was interrupted at {}", self.time),
            decision => format!("{} by {} at {}", decision.word(), self.by, self.time),
        }
    }
}

/// The outcome of claiming the decision of a gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This answer is the decision.
    Won,
    /// Someone decided first; theirs is the decision.
    Lost(Answer),
}

fn io_error(path: &Path, error: &std::io::Error) -> String {
    format!("`{}`: {error}", path.display())
}

pub fn request_path(run_dir: &Path) -> PathBuf {
    run_dir.join(REQUEST_FILE)
}

pub fn answer_path(run_dir: &Path, gate_id: &str) -> PathBuf {
    run_dir.join(format!("decision-{gate_id}.json"))
}

/// A new gate id: 16 hex digits.
pub fn new_gate_id() -> String {
    use rand::Rng;
    format!("{:016x}", rand::rng().random::<u64>())
}

/// A temp file next to `target`, unique to this process and call.
fn temp_path(target: &Path) -> PathBuf {
    use rand::Rng;
    let name = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(
        ".{name}.{}-{:08x}.tmp",
        std::process::id(),
        rand::rng().random::<u32>()
    ))
}

/// Write `bytes` to a new temp file next to `target`, synced; its path.
fn write_temp(target: &Path, bytes: &[u8]) -> Result<PathBuf, String> {
    let temp = temp_path(target);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(|error| io_error(&temp, &error))?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(io_error(&temp, &error));
    }
    Ok(temp)
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec_pretty(value).map_err(|error| format!("cannot encode: {error}"))
}

/// Publish the request of a waiting run (replacing an older one).
pub fn open(run_dir: &Path, request: &Request) -> Result<(), String> {
    let target = request_path(run_dir);
    let temp = write_temp(&target, &to_json(request)?)?;
    std::fs::rename(&temp, &target).map_err(|error| {
        let _ = std::fs::remove_file(&temp);
        io_error(&target, &error)
    })
}

/// The request of the run in `run_dir`: `None` when it is not waiting.
pub fn read_request(run_dir: &Path) -> Result<Option<Request>, String> {
    let path = request_path(run_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| format!("`{}` is not a gate request: {error}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io_error(&path, &error)),
    }
}

/// The decision of a gate, if there is one yet.
pub fn read_answer(run_dir: &Path, gate_id: &str) -> Result<Option<Answer>, String> {
    let path = answer_path(run_dir, gate_id);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| format!("`{}` is not a gate decision: {error}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io_error(&path, &error)),
    }
}

/// Make `answer` the decision of its gate, unless one exists: the file
/// appears whole (hard link of a finished temp file) and exactly once.
pub fn claim(run_dir: &Path, answer: &Answer) -> Result<Claim, String> {
    let target = answer_path(run_dir, &answer.gate_id);
    let temp = write_temp(&target, &to_json(answer)?)?;
    let linked = std::fs::hard_link(&temp, &target);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(Claim::Won),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            match read_answer(run_dir, &answer.gate_id)? {
                Some(existing) => Ok(Claim::Lost(existing)),
                None => Err(format!("`{}` existed and then vanished", target.display())),
            }
        }
        Err(error) => Err(io_error(&target, &error)),
    }
}

/// The waiting run is done with its gate: remove its request (only if it is
/// still this gate's).
pub fn close(run_dir: &Path, gate_id: &str) {
    if let Ok(Some(request)) = read_request(run_dir)
        && request.gate_id == gate_id
    {
        let _ = std::fs::remove_file(request_path(run_dir));
    }
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Someone answered (approved or rejected).
    Answered(Answer),
    /// The time ran out and the run claimed the decision `expired`.
    Expired(Answer),
    /// `stopped()` said stop (Ctrl-C).
    Interrupted,
    /// The decision file could not be read or written.
    Broken(String),
}

/// Wait for the decision of `request` until `deadline` or `stopped()`.
/// At the deadline the run claims the decision `expired` itself, so an
/// approval arriving at the same moment either wins (and counts) or is told
/// it came too late.
pub fn wait(
    run_dir: &Path,
    request: &Request,
    deadline: Instant,
    stopped: &dyn Fn() -> bool,
) -> Outcome {
    wait_on(
        &|| read_answer(run_dir, &request.gate_id),
        &|answer| claim(run_dir, answer),
        request,
        deadline,
        stopped,
    )
}

/// [`wait`] on any board: `read` looks for the decision, `claim` makes one.
pub fn wait_on(
    read: &dyn Fn() -> Result<Option<Answer>, String>,
    claim: &dyn Fn(&Answer) -> Result<Claim, String>,
    request: &Request,
    deadline: Instant,
    stopped: &dyn Fn() -> bool,
) -> Outcome {
    let own = |decision: Answered| Answer {
        gate_id: request.gate_id.clone(),
        decision,
        by: request.started_by.clone(),
        comment: None,
        confirm: None,
        time: crate::event::now(),
    };
    loop {
        if stopped() {
            // Recorded so that a later `runbook approve` is told why; the
            // run stops whatever the file says.
            let _ = claim(&own(Answered::Interrupted));
            return Outcome::Interrupted;
        }
        match read() {
            Ok(Some(answer)) => return Outcome::Answered(answer),
            Ok(None) => {}
            Err(problem) => return Outcome::Broken(problem),
        }
        if Instant::now() >= deadline {
            let expired = own(Answered::Expired);
            return match claim(&expired) {
                Ok(Claim::Won) => Outcome::Expired(expired),
                Ok(Claim::Lost(answer)) => Outcome::Answered(answer),
                Err(problem) => Outcome::Broken(problem),
            };
        }
        std::thread::sleep(POLL);
    }
}

/// Every waiting request in the state dir, with whether its run still runs
/// (oldest first).
pub fn list() -> Vec<(Request, bool)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(crate::journal::runs_dir()) else {
        return found;
    };
    for entry in entries.flatten() {
        if let Ok(Some(request)) = read_request(&entry.path()) {
            let alive = request.alive();
            found.push((request, alive));
        }
    }
    found.sort_by(|a, b| a.0.since.cmp(&b.0.since));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(gate_id: &str) -> Request {
        Request {
            run_id: "20261202T100000Z-ab12".into(),
            gate_id: gate_id.into(),
            message: "ship it?".into(),
            at: "f.rhai:3:1".into(),
            runbook: "f.rhai".into(),
            since: "2026-12-02T10:00:00.000Z".into(),
            expires: "2026-12-02T10:30:00.000Z".into(),
            started_by: "alice@ops1".into(),
            context: Some("prod".into()),
            protected: true,
            four_eyes: true,
            confirm: Some("prod".into()),
            pid: std::process::id(),
            start_ticks: crate::lock::start_ticks(std::process::id()),
            journal: None,
        }
    }

    fn answer(gate_id: &str, by: &str) -> Answer {
        Answer {
            gate_id: gate_id.into(),
            decision: Answered::Approved,
            by: by.into(),
            comment: Some("ok".into()),
            confirm: Some("prod".into()),
            time: "2026-12-02T10:01:00.000Z".into(),
        }
    }

    #[test]
    fn a_request_round_trips_and_closes() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_request(dir.path()).unwrap(), None);
        let gate = request("g1");
        open(dir.path(), &gate).unwrap();
        assert_eq!(read_request(dir.path()).unwrap(), Some(gate.clone()));
        assert!(gate.alive());
        // Another gate's close leaves it alone.
        close(dir.path(), "other");
        assert!(read_request(dir.path()).unwrap().is_some());
        close(dir.path(), "g1");
        assert_eq!(read_request(dir.path()).unwrap(), None);
    }

    /// Many approvers racing: exactly one decision, and every loser is told whose.
    #[test]
    fn racing_claims_produce_exactly_one_decision() {
        let dir = tempfile::tempdir().unwrap();
        let results: Vec<Claim> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|index| {
                    let dir = dir.path();
                    scope.spawn(move || claim(dir, &answer("g1", &format!("p{index}"))).unwrap())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners = results.iter().filter(|c| **c == Claim::Won).count();
        assert_eq!(winners, 1, "{results:?}");
        let decided = read_answer(dir.path(), "g1").unwrap().unwrap();
        for result in &results {
            if let Claim::Lost(existing) = result {
                assert_eq!(existing, &decided);
            }
        }
        // No temp files are left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["decision-g1.json".to_owned()]);
    }

    #[test]
    fn waiting_ends_with_the_answer_the_expiry_or_the_interrupt() {
        let dir = tempfile::tempdir().unwrap();
        let gate = request("g2");
        let never = || false;
        // Expiry: the run claims `expired`, and a late approver loses.
        match wait(dir.path(), &gate, Instant::now(), &never) {
            Outcome::Expired(answer) => assert_eq!(answer.decision, Answered::Expired),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            claim(dir.path(), &answer("g2", "bob")).unwrap(),
            Claim::Lost(Answer {
                decision: Answered::Expired,
                ..
            })
        ));
        // An answer present is taken even at the deadline.
        let gate = request("g3");
        claim(dir.path(), &answer("g3", "bob")).unwrap();
        assert_eq!(
            wait(dir.path(), &gate, Instant::now(), &never),
            Outcome::Answered(answer("g3", "bob"))
        );
        // Stopped: interrupted, whatever the time.
        let gate = request("g4");
        let far = Instant::now() + Duration::from_secs(3600);
        assert_eq!(wait(dir.path(), &gate, far, &|| true), Outcome::Interrupted);
        assert_eq!(
            read_answer(dir.path(), "g4").unwrap().map(|a| a.decision),
            Some(Answered::Interrupted)
        );
    }
}
