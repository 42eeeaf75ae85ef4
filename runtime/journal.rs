//! The journal: every event of a run, one JSON object per line in
//! `<state dir>/runs/<run-id>/journal.jsonl`. Each line ends with `"hash"`,
//! the SHA-256 of the line's text before that field, and carries in `"prev"`
//! the hash of the line before it: an edit breaks the line's own hash, a
//! removal or reordering breaks the chain, so `runbook audit verify` names
//! the first line that does not fit. Lines are written whole and flushed as they happen, and
//! fsynced at step boundaries, so a killed run loses nothing it reported.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use runbook_stdlib::redact::Redactor;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::event::Event;

/// How each line ends: `,"hash":"<hex>"}`.
const HASH_FIELD: &str = ",\"hash\":\"";

/// Split a line into its hashed body and the hash it records.
fn split_hash(line: &str) -> Option<(&str, &str)> {
    let at = line.rfind(HASH_FIELD)?;
    let hash = line[at + HASH_FIELD.len()..].strip_suffix("\"}")?;
    Some((&line[..at], hash))
}

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
}

impl From<JournalError> for crate::error::Diagnostic {
    fn from(error: JournalError) -> Self {
        let hint = match &error {
            JournalError::Io { .. } => "set RUNBOOK_STATE_DIR to a writable folder",
            JournalError::UnknownRun(_) => "`runbook runs` lists the recorded runs",
            JournalError::Corrupt { .. } => "`runbook audit verify RUN` checks the whole journal",
        };
        crate::error::Diagnostic::new(error.to_string(), crate::error::Exit::Usage).hint(hint)
    }
}

/// `$RUNBOOK_STATE_DIR`, else `$XDG_STATE_HOME/runbook`, else `~/.local/state/runbook`.
pub fn state_dir() -> PathBuf {
    runbook_stdlib::host::state_dir()
}

/// A new run id: the UTC time and a random suffix (`20261122T013751Z-5359`).
pub fn new_run_id() -> String {
    use rand::Rng;
    let suffix: u32 = rand::rng().random_range(0..0x10000);
    format!(
        "{}-{suffix:04x}",
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
        })
    }

    /// Reopen a journal to append to it (resume). A partial last line (the
    /// process died mid-write) is cut off first; the count of cut bytes is returned.
    pub fn reopen(path: &Path, redactor: Redactor) -> Result<(Journal, usize), JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(io)?;
        let (whole, cut) = whole_lines(&text);
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
            },
            cut,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one event: masked, chained, flushed; fsynced when `sync`.
    pub fn append(&mut self, event: &Event, sync: bool) -> Result<(), JournalError> {
        let mut value = serde_json::to_value(event).unwrap_or(Value::Null);
        if let Value::Object(fields) = &mut value {
            fields.insert("seq".into(), Value::from(self.seq));
            fields.insert("prev".into(), Value::from(self.prev.clone()));
        }
        let text = serde_json::to_string(&value).unwrap_or_default();
        let text = self.redactor.mask(&text).into_owned();
        let body = text.strip_suffix('}').unwrap_or(&text);
        let hash = sha256_hex(body.as_bytes());
        let line = format!("{body}{HASH_FIELD}{hash}\"}}\n");
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(line.as_bytes()).map_err(io)?;
        if sync {
            self.file.sync_data().map_err(io)?;
        }
        self.prev = hash;
        self.seq += 1;
        Ok(())
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

/// Check the hash chain of a journal.
pub fn verify(path: &Path) -> Result<Verdict, JournalError> {
    let text = std::fs::read_to_string(path).map_err(|source| JournalError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut prev = GENESIS.to_owned();
    let mut count = 0;
    let mut complete = false;
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
                return Ok(Verdict::CutOff { lines: count });
            }
            return broken("the line is cut off (no newline)".into());
        };
        let parsed = match parse_line(line) {
            Ok(parsed) => parsed,
            Err(problem) => return broken(problem),
        };
        let Some((body, hash)) = split_hash(line) else {
            return broken("the line has no hash at its end".into());
        };
        if sha256_hex(body.as_bytes()) != hash {
            return broken("the line was edited (its hash does not match its text)".into());
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
        prev = hash.to_owned();
        complete = matches!(parsed.event, Event::End { .. });
        count = number;
    }
    if count == 0 {
        return Ok(Verdict::Broken {
            line: 1,
            problem: "the journal is empty".into(),
        });
    }
    Ok(Verdict::Intact {
        lines: count,
        complete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_journal(dir: &Path) -> PathBuf {
        let path = dir.join("journal.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let mut journal = Journal {
            path: path.clone(),
            file,
            prev: GENESIS.into(),
            seq: 0,
            redactor: Redactor::new(),
        };
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
        for status in [
            Exit::Ok,
            Exit::StepFailed,
            Exit::Usage,
            Exit::Refused,
            Exit::Locked,
            Exit::Interrupted,
            Exit::Terminated,
            Exit::HungUp,
        ] {
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
        let mut journal = Journal {
            path: path.clone(),
            file: OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap(),
            prev: GENESIS.into(),
            seq: 0,
            redactor: Redactor::new(),
        };
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
                    assert_eq!(line, 4, "{bad}");
                    assert!(text.contains(problem), "{bad}: {text}");
                }
                other => panic!("{bad}: expected a corrupt-line error, got {other:?}"),
            }
        }
        // A cut-off last line (a process killed mid-write) is left out and counted.
        std::fs::write(&path, format!("{good}{{\"event\":\"st")).unwrap();
        let recorded = read(&path).unwrap();
        assert_eq!(recorded.events.len(), 3);
        assert_eq!(recorded.cut_bytes, 12);
    }

    #[test]
    fn intact_chain_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_journal(dir.path());
        assert_eq!(
            verify(&path).unwrap(),
            Verdict::Intact {
                lines: 3,
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
                assert_eq!(line, 2);
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
            Verdict::Broken { line: 3, .. }
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
        std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        assert!(matches!(
            verify(&path).unwrap(),
            Verdict::Broken { line: 2, .. }
        ));
        std::fs::write(&path, format!("{}\n{}\n{}\n", lines[1], lines[0], lines[2])).unwrap();
        assert!(matches!(
            verify(&path).unwrap(),
            Verdict::Broken { line: 1, .. }
        ));
    }
}
