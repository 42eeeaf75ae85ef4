//! The journal: every event of a run, one JSON object per line in
//! `<state dir>/runs/<run-id>/journal.jsonl`. Each line ends with `"mac"`,
//! the HMAC-SHA256 (under the audit key, see `audit_key.rs`, kept outside the
//! journal) of the line's text before that field, and carries in `"prev"`
//! the MAC of the line before it: an edit breaks the line's own MAC, a
//! removal or reordering breaks the chain, and without the key nobody can
//! write a line that fits, so `runbook audit verify` names the first line
//! that does not. The head of the chain is also witnessed at every step end,
//! gate, rollback, resume and end record by a file of its own,
//! `witness/head-<lines>.json` next to the journal, created once (never
//! rewritten) and read-only: cutting lines off the end of a journal (even
//! of a run that was killed and has no end record) is found down to the
//! last witness, though the rest still chains; every end record must have
//! its witness.
//!
//! Secrets are masked in the event's values before it is encoded, so JSON
//! escaping cannot hide one from the redactor. Lines are written whole and
//! flushed as they happen, and fsynced at step boundaries, so a killed run
//! loses nothing it reported.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use runbook_stdlib::redact::Redactor;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::audit_key::{AuditKey, KeyError};
use crate::event::Event;

/// How each line ends: `,"mac":"<hex>"}`.
const MAC_FIELD: &str = ",\"mac\":\"";

/// Split a line into its MACed body and the MAC it records.
fn split_hash(line: &str) -> Option<(&str, &str)> {
    let at = line.rfind(MAC_FIELD)?;
    let hash = line[at + MAC_FIELD.len()..].strip_suffix("\"}")?;
    Some((&line[..at], hash))
}

/// The folder of a journal's end witnesses.
fn witness_dir(journal: &Path) -> PathBuf {
    journal
        .parent()
        .map_or_else(|| PathBuf::from("witness"), |dir| dir.join("witness"))
}

/// The witness of an end record that is line `lines` of the journal.
fn witness_path(journal: &Path, lines: u64) -> PathBuf {
    witness_dir(journal).join(format!("head-{lines}.json"))
}

/// What a witness file holds: which run, how many lines the journal had at
/// the end record, that line's MAC, and a MAC over those three.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Witness {
    run_id: String,
    lines: u64,
    line_mac: String,
    mac: String,
}

impl Witness {
    fn text(run_id: &str, lines: u64, line_mac: &str) -> String {
        format!("runbook witness\n{run_id}\n{lines}\n{line_mac}")
    }
}

/// Top-level fields of an event that are vocabulary, not data (its tag and
/// enums): never masked, so a secret that equals `approved` or `ok` cannot
/// make a line unreadable. Everything else is masked on its values.
pub const VOCABULARY: &[&str] = &[
    "event", "status", "mode", "kind", "effect", "outcome", "decision", "channel", "level",
];

/// The `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot write the journal `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no run `{0}` in the state dir")]
    UnknownRun(String),
    #[error("`{path}` line {line}: {problem}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot write the journal to S3 ({url}): {problem}")]
    Remote { url: String, problem: String },
}

impl From<JournalError> for crate::error::Diagnostic {
    fn from(error: JournalError) -> Self {
        let hint = match &error {
            JournalError::Io { .. } => "set RUNBOOK_STATE_DIR to a writable folder",
            JournalError::UnknownRun(_) => "`runbook runs` lists the recorded runs",
            JournalError::Corrupt { .. } => "`runbook audit verify RUN` checks the whole journal",
            JournalError::Key(error) => error.hint(),
            JournalError::Remote { .. } => {
                "the local copy is complete; check the S3 endpoint, then `runbook resume s3://...`"
            }
        };
        crate::error::Diagnostic::new(error.to_string(), crate::error::Exit::Usage).hint(hint)
    }
}

/// `$RUNBOOK_STATE_DIR`, else `$XDG_STATE_HOME/runbook`, else `~/.local/state/runbook`.
pub fn state_dir() -> PathBuf {
    runbook_stdlib::host::state_dir()
}

/// A new run id: the UTC time and a random 32-bit suffix
/// (`20261122T013751Z-5359ab01`): two runs started in the same second on one
/// machine do not collide (and `Journal::create` refuses an existing one).
pub fn new_run_id() -> String {
    use rand::Rng;
    let suffix: u32 = rand::rng().random();
    format!(
        "{}-{suffix:08x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    )
}

pub fn runs_dir() -> PathBuf {
    state_dir().join("runs")
}

/// The journal file of a run id, or a path given directly.
pub fn locate(run: &str) -> Result<PathBuf, JournalError> {
    let direct = Path::new(run);
    if direct.is_file() {
        return Ok(direct.to_owned());
    }
    let path = runs_dir().join(run).join("journal.jsonl");
    if path.is_file() {
        Ok(path)
    } else {
        Err(JournalError::UnknownRun(run.to_owned()))
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// An open journal, appending.
pub struct Journal {
    path: PathBuf,
    file: File,
    prev: String,
    seq: u64,
    redactor: Redactor,
    key: AuditKey,
    run_id: String,
    /// The S3 copy, when the run's journal also goes there.
    remote: Option<crate::journal_store::Sink>,
}

impl Journal {
    /// Start the journal of a new run.
    pub fn create(run_id: &str, redactor: Redactor) -> Result<Journal, JournalError> {
        let dir = runs_dir().join(run_id);
        let path = dir.join("journal.jsonl");
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let key = AuditKey::for_writing(&state_dir())?;
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        Ok(Journal {
            path,
            file,
            prev: GENESIS.to_owned(),
            seq: 0,
            redactor,
            key,
            run_id: run_id.to_owned(),
            remote: None,
        })
    }

    /// Reopen a journal to append to it (resume). A partial last line (the
    /// process died mid-write) is cut off first; the count of cut bytes is returned.
    pub fn reopen(path: &Path, redactor: Redactor) -> Result<(Journal, usize), JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        let key = AuditKey::for_reading(&key_dir(path))?;
        let text = std::fs::read_to_string(path).map_err(io)?;
        let (whole, cut) = whole_lines(&text);
        let run_id = whole
            .lines()
            .next()
            .and_then(|line| parse_line(line).ok())
            .and_then(|line| match line.event {
                Event::Run { run_id, .. } => Some(run_id),
                _ => None,
            })
            .unwrap_or_default();
        if cut > 0 {
            std::fs::write(path, whole).map_err(io)?;
        }
        let lines: Vec<&str> = whole.lines().collect();
        let prev = lines
            .last()
            .and_then(|line| split_hash(line))
            .map_or_else(|| GENESIS.to_owned(), |(_, hash)| hash.to_owned());
        let file = OpenOptions::new().append(true).open(path).map_err(io)?;
        Ok((
            Journal {
                path: path.to_owned(),
                file,
                prev,
                seq: lines.len() as u64,
                redactor,
                key,
                run_id,
                remote: None,
            },
            cut,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// From now on every line also goes to S3 (see `journal_store.rs`).
    pub fn attach_remote(&mut self, sink: crate::journal_store::Sink) {
        self.remote = Some(sink);
    }

    /// With an S3 copy: write what is queued and check that this process
    /// still holds the run (a fenced one stops here, exit 4).
    pub fn fence(&self) -> Result<(), JournalError> {
        match &self.remote {
            Some(remote) => remote.fence().map_err(|problem| JournalError::Remote {
                url: remote.url(),
                problem,
            }),
            None => Ok(()),
        }
    }

    /// The S3 store and run id, if the journal also goes there.
    pub fn remote_store(&self) -> Option<(crate::journal_store::Store, String)> {
        self.remote.as_ref().map(crate::journal_store::Sink::store)
    }

    /// Where the S3 copy is, if there is one.
    pub fn remote_url(&self) -> Option<String> {
        self.remote.as_ref().map(crate::journal_store::Sink::url)
    }

    /// Append one event: masked (on its values, before encoding), chained
    /// with the keyed MAC, flushed; fsynced when `sync`. An end record is
    /// also written to its witness file.
    pub fn append(&mut self, event: &Event, sync: bool) -> Result<(), JournalError> {
        let mut value = serde_json::to_value(event).unwrap_or(Value::Null);
        self.redactor.mask_json_except(&mut value, VOCABULARY);
        if let Value::Object(fields) = &mut value {
            fields.insert("seq".into(), Value::from(self.seq));
            fields.insert("prev".into(), Value::from(self.prev.clone()));
        }
        let text = serde_json::to_string(&value).unwrap_or_default();
        let body = text.strip_suffix('}').unwrap_or(&text);
        let mac = self.key.mac(body);
        let line = format!("{body}{MAC_FIELD}{mac}\"}}\n");
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(line.as_bytes()).map_err(io)?;
        if sync {
            self.file.sync_data().map_err(io)?;
        }
        self.prev = mac;
        self.seq += 1;
        let boundary = matches!(
            event,
            Event::StepEnd { .. }
                | Event::Gate { .. }
                | Event::Rollback { .. }
                | Event::Resume { .. }
                | Event::End { .. }
        );
        if boundary {
            self.witness()?;
        }
        if let Some(remote) = &self.remote {
            remote
                .push(line.as_bytes(), sync || boundary)
                .map_err(|problem| JournalError::Remote {
                    url: remote.url(),
                    problem,
                })?;
        }
        Ok(())
    }

    /// Write the witness of the line just appended (the chain's head):
    /// created once, read-only, never rewritten.
    fn witness(&self) -> Result<(), JournalError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = witness_path(&self.path, self.seq);
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(witness_dir(&self.path)).map_err(io)?;
        let witness = Witness {
            run_id: self.run_id.clone(),
            lines: self.seq,
            line_mac: self.prev.clone(),
            mac: self
                .key
                .mac(&Witness::text(&self.run_id, self.seq, &self.prev)),
        };
        let text = serde_json::to_string(&witness).unwrap_or_default();
        // Written whole under a temporary name, then linked into place
        // (which fails if it exists): a kill mid-write leaves no half witness.
        let temporary =
            witness_dir(&self.path).join(format!(".head-{}.{}.tmp", self.seq, std::process::id()));
        let _ = std::fs::remove_file(&temporary);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&temporary)
            .map_err(io)?;
        file.write_all(format!("{text}\n").as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        let linked = std::fs::hard_link(&temporary, &path).map_err(io);
        let _ = std::fs::remove_file(&temporary);
        linked
    }
}

/// A journal as read back: its events in order, and the bytes of a last
/// line that was cut off (what a process killed mid-write leaves behind).
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub events: Vec<Event>,
    pub cut_bytes: usize,
}

/// One journal line: the event and its place in the chain (the trailing
/// `hash` is checked by [`verify`] on the line's text).
#[derive(Debug, serde::Deserialize)]
struct Line {
    seq: u64,
    prev: String,
    #[serde(flatten)]
    event: Event,
}

/// Parse one line; the problem names what is wrong with it.
fn parse_line(line: &str) -> Result<Line, String> {
    let value: Value =
        serde_json::from_str(line).map_err(|error| format!("not valid JSON: {error}"))?;
    serde_json::from_value(value).map_err(|error| format!("not a journal event: {error}"))
}

/// The whole lines of a journal's text, and how many bytes follow the last newline.
fn whole_lines(text: &str) -> (&str, usize) {
    match text.rfind('\n') {
        Some(end) => (&text[..=end], text.len() - end - 1),
        None => ("", text.len()),
    }
}

/// What `runs` and `show` say about a journal whose last line is cut off.
pub fn cut_note(cut_bytes: usize, run: &str) -> String {
    format!(
        "the journal's last line is cut off ({cut_bytes} bytes: the run was stopped while writing it); read up to the last whole line, and `runbook resume {run}` continues from there"
    )
}

/// Read every event of a journal, typed (for show, resume, runs). A line
/// that is not an event is an error naming the line; a cut-off last line
/// is left out and counted in [`Recorded::cut_bytes`].
pub fn read(path: &Path) -> Result<Recorded, JournalError> {
    let text = std::fs::read_to_string(path).map_err(|source| JournalError::Io {
        path: path.to_owned(),
        source,
    })?;
    let (whole, cut_bytes) = whole_lines(&text);
    let events = whole
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            parse_line(line)
                .map(|line| line.event)
                .map_err(|problem| JournalError::Corrupt {
                    path: path.to_owned(),
                    line: index + 1,
                    problem,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Recorded { events, cut_bytes })
}

/// The result of `audit verify`.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every line chains to the one before; `complete` when the last is an end record.
    Intact { lines: usize, complete: bool },
    /// The first line that does not fit, 1-based, and why.
    Broken { line: usize, problem: String },
    /// Every whole line chains, but the last line is cut off (no newline):
    /// what a process killed mid-write leaves behind.
    CutOff { lines: usize },
}

/// The state dir whose audit key wrote `journal`: the one it lies in
/// (`<dir>/runs/<id>/journal.jsonl`), else the current one.
fn key_dir(journal: &Path) -> PathBuf {
    journal
        .parent()
        .and_then(Path::parent)
        .filter(|runs| runs.file_name().is_some_and(|name| name == "runs"))
        .and_then(Path::parent)
        .map_or_else(state_dir, Path::to_owned)
}

/// Check the keyed chain of a journal and its end witnesses, with
/// `RUNBOOK_AUDIT_KEY` or the audit key of the state dir that holds it.
pub fn verify(path: &Path) -> Result<Verdict, JournalError> {
    let key = AuditKey::for_reading(&key_dir(path))?;
    verify_with(path, &key)
}

/// [`verify`] with a given key.
pub fn verify_with(path: &Path, key: &AuditKey) -> Result<Verdict, JournalError> {
    let text = std::fs::read_to_string(path).map_err(|source| JournalError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut prev = GENESIS.to_owned();
    let mut count = 0;
    let mut complete = false;
    let mut run_id = String::new();
    // The end records: (lines up to and including it, its MAC).
    let mut ends: Vec<(u64, String)> = Vec::new();
    // Every line's MAC, for the witnesses.
    let mut macs: Vec<String> = Vec::new();
    let mut cut_off = false;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let number = index + 1;
        let broken = |problem: String| {
            Ok(Verdict::Broken {
                line: number,
                problem,
            })
        };
        let Some(line) = line.strip_suffix('\n') else {
            if count == number - 1 && count > 0 {
                cut_off = true;
                break;
            }
            return broken("the line is cut off (no newline)".into());
        };
        let parsed = match parse_line(line) {
            Ok(parsed) => parsed,
            Err(problem) => return broken(problem),
        };
        let Some((body, mac)) = split_hash(line) else {
            return broken("the line has no MAC at its end".into());
        };
        if !key.check(body, mac) {
            return broken(
                "the line was edited or written without the audit key (its MAC does not match its text)"
                    .into(),
            );
        }
        if parsed.prev != prev {
            return broken(if number == 1 {
                "the first line does not start the chain (lines before it were removed?)".to_owned()
            } else {
                format!(
                    "does not follow line {}: lines were removed or reordered",
                    number - 1
                )
            });
        }
        if parsed.seq != index as u64 {
            return broken(format!("sequence number {}, expected {index}", parsed.seq));
        }
        match &parsed.event {
            Event::Run { run_id: id, .. } if index == 0 => run_id.clone_from(id),
            _ if index == 0 => return broken("the first line is not the run's start".into()),
            Event::End { .. } => ends.push((number as u64, mac.to_owned())),
            _ => {}
        }
        prev = mac.to_owned();
        macs.push(mac.to_owned());
        complete = matches!(parsed.event, Event::End { .. });
        count = number;
    }
    if count == 0 {
        return Ok(Verdict::Broken {
            line: 1,
            problem: "the journal is empty".into(),
        });
    }
    // A journal in `runs/<id>/` belongs to run <id>: a swapped file is found.
    if let Some(dir) = path.parent()
        && dir
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|name| name == "runs")
        && let Some(name) = dir.file_name().and_then(|name| name.to_str())
        && name != run_id
    {
        return Ok(Verdict::Broken {
            line: 1,
            problem: format!(
                "the journal is run `{run_id}`'s, found in the folder of run `{name}` (swapped?)"
            ),
        });
    }
    if let Some(verdict) = check_witnesses(path, key, &run_id, &ends, &macs) {
        return Ok(verdict);
    }
    if cut_off {
        return Ok(Verdict::CutOff { lines: count });
    }
    Ok(Verdict::Intact {
        lines: count,
        complete,
    })
}

/// Every end record has its witness, and every witness names an end record
/// that is still there, with the same MAC.
fn check_witnesses(
    path: &Path,
    key: &AuditKey,
    run_id: &str,
    ends: &[(u64, String)],
    macs: &[String],
) -> Option<Verdict> {
    let lines = macs.len() as u64;
    let broken = |line: u64, problem: String| {
        Some(Verdict::Broken {
            line: usize::try_from(line).unwrap_or(usize::MAX),
            problem,
        })
    };
    let mut witnessed: Vec<u64> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(witness_dir(path)) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(number) = name
                .strip_prefix("head-")
                .and_then(|rest| rest.strip_suffix(".json"))
                .and_then(|number| number.parse::<u64>().ok())
            else {
                continue;
            };
            let witness: Option<Witness> = std::fs::read_to_string(entry.path())
                .ok()
                .and_then(|text| serde_json::from_str(&text).ok());
            let Some(witness) = witness.filter(|witness| {
                witness.lines == number
                    && key.check(
                        &Witness::text(&witness.run_id, witness.lines, &witness.line_mac),
                        &witness.mac,
                    )
            }) else {
                return broken(
                    number,
                    format!("the witness `{name}` was edited or written without the audit key"),
                );
            };
            if witness.run_id != run_id {
                return broken(
                    number,
                    format!(
                        "the witness `{name}` is run `{}`'s (swapped?)",
                        witness.run_id
                    ),
                );
            }
            if number > lines {
                return broken(
                    lines + 1,
                    format!(
                        "the witness `{name}` records line {number}, but the journal has {lines} lines: lines were removed from its end"
                    ),
                );
            }
            match usize::try_from(number)
                .ok()
                .and_then(|number| number.checked_sub(1))
                .and_then(|index| macs.get(index))
            {
                Some(mac) if *mac == witness.line_mac => witnessed.push(number),
                _ => {
                    return broken(
                        number,
                        format!("line {number} is not the line the witness `{name}` records"),
                    );
                }
            }
        }
    }
    ends.iter()
        .find(|(at, _)| !witnessed.contains(at))
        .and_then(|(at, _)| {
            broken(
                *at,
                format!("the end record has no witness (`witness/head-{at}.json` is missing)"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_key() -> AuditKey {
        AuditKey::from_bytes(b"a test key of thirty-two bytes!!")
    }

    fn verify(path: &Path) -> Result<Verdict, JournalError> {
        verify_with(path, &test_key())
    }

    fn open_journal(path: &Path) -> Journal {
        Journal {
            path: path.to_owned(),
            file: OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap(),
            prev: GENESIS.into(),
            seq: 0,
            redactor: Redactor::new(),
            key: test_key(),
            run_id: "20261202T100000Z-ab12".into(),
            remote: None,
        }
    }

    fn start_event() -> Event {
        every_variant().remove(0)
    }

    fn write_journal(dir: &Path) -> PathBuf {
        let path = dir.join("journal.jsonl");
        let mut journal = open_journal(&path);
        journal.append(&start_event(), true).unwrap();
        for step in ["a", "b", "c"] {
            journal
                .append(
                    &Event::StepStart {
                        step: step.into(),
                        time: "t".into(),
                    },
                    true,
                )
                .unwrap();
        }
        path
    }

    /// One event of every variant, with every enum the journal stores.
    fn every_variant() -> Vec<Event> {
        use crate::error::Exit;
        use crate::event::{CallOutcome, Channel, GateDecision, Kind, LogLevel, Mode, StepStatus};
        use runbook_stdlib::Effect;
        let time = || "2026-12-02T10:00:00.000Z".to_owned();
        let mut params = serde_json::Map::new();
        params.insert("version".into(), Value::from("v2"));
        let mut events = vec![Event::Run {
            run_id: "20261202T100000Z-ab12".into(),
            runbook: "runbooks/deploy.rhai".into(),
            cwd: "/srv".into(),
            sha256: "0".repeat(64),
            params,
            context: Some("lab".into()),
            user: "alice".into(),
            host: "ops1".into(),
            version: "0.1.0".into(),
            mode: Mode::DryRunOffline,
            kind: Kind::Repl,
            time: time(),
        }];
        events.push(Event::Input {
            line: "k8s::scale(\"web\", 3)".into(),
            time: time(),
        });
        events.push(Event::StepStart {
            step: "s".into(),
            time: time(),
        });
        for status in [StepStatus::Ok, StepStatus::Failed, StepStatus::Skipped] {
            events.push(Event::StepEnd {
                step: "s".into(),
                status,
                duration_ms: 3,
                value: Some(serde_json::json!({"a": [1, "b", null]})),
                redacted: status == StepStatus::Failed,
                sealed: (status == StepStatus::Failed).then(|| "v1:AAAA".into()),
                error: (status == StepStatus::Failed).then(|| "boom".into()),
                time: time(),
            });
        }
        for (effect, outcome) in [
            (Effect::Local, CallOutcome::Ok),
            (Effect::Read, CallOutcome::Error),
            (Effect::Write, CallOutcome::Planned),
            (Effect::Read, CallOutcome::Fixture),
            (Effect::Read, CallOutcome::Placeholder),
        ] {
            events.push(Event::Call {
                function: "shell::run".into(),
                effect,
                args: vec!["\"x\"".into()],
                arguments: Vec::new(),
                diff: None,
                redacted: false,
                at: "f.rhai:1:1".into(),
                step: Some("s".into()),
                outcome,
                duration_ms: 1,
                error: (outcome == CallOutcome::Error).then(|| "no".into()),
                result: (outcome == CallOutcome::Ok).then(|| serde_json::json!({"code": 0})),
                sealed: (outcome == CallOutcome::Ok).then(|| "v1:AAAA".into()),
                time: time(),
            });
        }
        events.push(Event::Host {
            function: "ssh::exec_all".into(),
            host: "host01".into(),
            ok: false,
            code: Some(2),
            duration_ms: 5,
            error: Some("exit 2".into()),
            step: None,
            output_tail: "tail".into(),
            connection: Some("reused".into()),
            killed: Some(true),
            time: time(),
        });
        for decision in [
            GateDecision::Approved,
            GateDecision::Rejected,
            GateDecision::Planned,
        ] {
            events.push(Event::Gate {
                message: "ok?".into(),
                confirm: Some("v2".into()),
                decision,
                approver: "alice@ops1".into(),
                how: "terminal".into(),
                at: "f.rhai:2:1".into(),
                channel: None,
                comment: None,
                expires: None,
                time: time(),
            });
        }
        for (decision, channel) in [
            (GateDecision::Waiting, Channel::Remote),
            (GateDecision::Approved, Channel::Remote),
            (GateDecision::Rejected, Channel::Terminal),
            (GateDecision::Approved, Channel::Flag),
            (GateDecision::Expired, Channel::Expired),
        ] {
            events.push(Event::Gate {
                message: "ok?".into(),
                confirm: None,
                decision,
                approver: "bob@ops2".into(),
                how: "runbook approve".into(),
                at: "f.rhai:2:1".into(),
                channel: Some(channel),
                comment: Some("looks good".into()),
                expires: Some(time()),
                time: time(),
            });
        }
        for level in [
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warn,
            LogLevel::Error,
            LogLevel::Print,
        ] {
            events.push(Event::Log {
                level,
                message: "m".into(),
                step: None,
                time: time(),
            });
        }
        events.push(Event::Rollback {
            step: "s".into(),
            status: StepStatus::Ok,
            error: None,
            time: time(),
        });
        events.push(Event::Resume {
            user: "bob".into(),
            host: "ops2".into(),
            version: "0.1.0".into(),
            force: true,
            cut_bytes: 7,
            time: time(),
        });
        for status in Exit::ALL {
            events.push(Event::End {
                status,
                exit_code: status.code(),
                duration_ms: 9,
                error: None,
                planned_changes: 1,
                time: time(),
            });
        }
        events
    }

    #[test]
    fn every_variant_round_trips_through_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut journal = open_journal(&path);
        let events = every_variant();
        for event in &events {
            journal.append(event, false).unwrap();
        }
        let recorded = read(&path).unwrap();
        assert_eq!(recorded.events, events);
        assert_eq!(recorded.cut_bytes, 0);
        assert_eq!(
            verify(&path).unwrap(),
            Verdict::Intact {
                lines: events.len(),
                complete: true
            }
        );
    }

    /// A gate line as journals wrote it before channels, comments and
    /// expiry were recorded still reads, with the new fields absent.
    #[test]
    fn a_gate_line_without_the_newer_fields_still_reads() {
        use crate::event::GateDecision;
        let line = r#"{"event":"gate","message":"ok?","decision":"approved","approver":"alice@ops1","how":"--approve","at":"f.rhai:2:1","time":"2026-11-22T01:37:51.000Z"}"#;
        let event: Event = serde_json::from_str(line).unwrap();
        assert_eq!(
            event,
            Event::Gate {
                message: "ok?".into(),
                confirm: None,
                decision: GateDecision::Approved,
                approver: "alice@ops1".into(),
                how: "--approve".into(),
                at: "f.rhai:2:1".into(),
                channel: None,
                comment: None,
                expires: None,
                time: "2026-11-22T01:37:51.000Z".into(),
            }
        );
        // And an event without them writes the same line as before.
        assert_eq!(serde_json::to_string(&event).unwrap(), line);
    }

    #[test]
    fn an_unknown_or_garbled_line_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_journal(dir.path());
        let good = std::fs::read_to_string(&path).unwrap();
        for (bad, problem) in [
            (
                "{\"event\":\"teleport\",\"seq\":3,\"prev\":\"x\"}",
                "not a journal event",
            ),
            ("{\"event\": \"step_start\"", "not valid JSON"),
            ("\u{0}\u{1}garbage", "not valid JSON"),
        ] {
            std::fs::write(&path, format!("{good}{bad}\n")).unwrap();
            match read(&path) {
                Err(JournalError::Corrupt {
                    line,
                    problem: text,
                    ..
                }) => {
                    assert_eq!(line, 5, "{bad}");
                    assert!(text.contains(problem), "{bad}: {text}");
                }
                other => panic!("{bad}: expected a corrupt-line error, got {other:?}"),
            }
        }
        // A cut-off last line (a process killed mid-write) is left out and counted.
        std::fs::write(&path, format!("{good}{{\"event\":\"st")).unwrap();
        let recorded = read(&path).unwrap();
        assert_eq!(recorded.events.len(), 4);
        assert_eq!(recorded.cut_bytes, 12);
    }

    #[test]
    fn intact_chain_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_journal(dir.path());
        assert_eq!(
            verify(&path).unwrap(),
            Verdict::Intact {
                lines: 4,
                complete: false
            }
        );
    }

    #[test]
    fn one_changed_byte_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_journal(dir.path());
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replacen("\"b\"", "\"x\"", 1);
        std::fs::write(&path, text).unwrap();
        match verify(&path).unwrap() {
            Verdict::Broken { line, problem } => {
                assert_eq!(line, 3);
                assert!(problem.contains("edited"), "{problem}");
            }
            other => panic!("expected a broken chain, got {other:?}"),
        }
    }

    #[test]
    fn an_edited_last_line_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_journal(dir.path());
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replacen("\"c\"", "\"z\"", 1);
        std::fs::write(&path, text).unwrap();
        assert!(matches!(
            verify(&path).unwrap(),
            Verdict::Broken { line: 4, .. }
        ));
    }

    #[test]
    fn removed_and_reordered_lines_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_journal(dir.path());
        let lines: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        std::fs::write(&path, format!("{}\n{}\n{}\n", lines[0], lines[1], lines[3])).unwrap();
        assert!(matches!(
            verify(&path).unwrap(),
            Verdict::Broken { line: 3, .. }
        ));
        let swapped = format!("{}\n{}\n{}\n{}\n", lines[0], lines[2], lines[1], lines[3]);
        std::fs::write(&path, swapped).unwrap();
        assert!(matches!(
            verify(&path).unwrap(),
            Verdict::Broken { line: 2, .. }
        ));
    }

    /// A finished journal: start, two steps, end (and its witness).
    fn finished_journal(dir: &Path) -> PathBuf {
        let path = write_journal(dir);
        let mut journal = open_journal(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        journal.seq = text.lines().count() as u64;
        journal.prev = split_hash(text.lines().last().unwrap())
            .unwrap()
            .1
            .to_owned();
        let end = every_variant().pop().unwrap();
        journal.append(&end, true).unwrap();
        path
    }

    fn assert_broken(path: &Path, what: &str) {
        match verify(path).unwrap() {
            Verdict::Broken { .. } => {}
            other => panic!("{what}: expected BROKEN, got {other:?}"),
        }
    }

    #[test]
    fn every_tampering_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = finished_journal(dir.path());
        let good = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            verify(&path).unwrap(),
            Verdict::Intact {
                lines: 5,
                complete: true
            }
        );
        let lines: Vec<&str> = good.lines().collect();
        let keep = |count: usize| {
            lines[..count]
                .iter()
                .map(|line| format!("{line}\n"))
                .collect::<String>()
        };
        // Delete the last line (the end record): the witness still names it.
        std::fs::write(&path, keep(4)).unwrap();
        assert_broken(&path, "delete last line");
        // Truncate to the start and forge an end record without the key.
        let forged_end = {
            let mut forger = open_journal(&dir.path().join("forged.jsonl"));
            forger.key = AuditKey::from_bytes(b"not the key, just a guess at one");
            forger.prev = split_hash(lines[1]).unwrap().1.to_owned();
            forger.seq = 2;
            forger.append(&every_variant().pop().unwrap(), true).ok();
            std::fs::read_to_string(dir.path().join("forged.jsonl")).unwrap()
        };
        std::fs::write(&path, keep(2) + forged_end.as_str()).unwrap();
        assert_broken(&path, "truncate + forged end");
        // Append a line after the end.
        std::fs::write(&path, good.clone() + lines[2] + "\n").unwrap();
        assert_broken(&path, "append");
        // Re-chain every line with plain SHA-256 (the old, unkeyed chain).
        let mut prev = GENESIS.to_owned();
        let mut rechained = String::new();
        for line in &lines {
            let (body, _) = split_hash(line).unwrap();
            let mut value: Value = serde_json::from_str(&format!("{body}}}")).unwrap();
            value["prev"] = Value::from(prev.clone());
            let text = serde_json::to_string(&value).unwrap();
            let body = text.strip_suffix('}').unwrap();
            let hash = sha256_hex(body.as_bytes());
            rechained.push_str(&format!("{body}{MAC_FIELD}{hash}\"}}\n"));
            prev = hash;
        }
        std::fs::write(&path, rechained).unwrap();
        assert_broken(&path, "re-chain without the key");
        // Remove the witness of an intact journal.
        std::fs::write(&path, &good).unwrap();
        let witness = witness_path(&path, 5);
        let mut permissions = std::fs::metadata(&witness).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        permissions.set_readonly(false);
        std::fs::set_permissions(&witness, permissions).unwrap();
        std::fs::remove_file(&witness).unwrap();
        assert_broken(&path, "witness removed");
    }
}
