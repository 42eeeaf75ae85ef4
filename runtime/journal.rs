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

/// `$RUNBOOK_STATE_DIR`, else `$XDG_STATE_HOME/runbook`, else `~/.local/state/runbook`.
pub fn state_dir() -> PathBuf {
    runbook_stdlib::host::state_dir()
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
        let (whole, cut) = match text.rfind('\n') {
            Some(end) if end + 1 < text.len() => (&text[..=end], text.len() - end - 1),
            Some(_) => (text.as_str(), 0),
            None => ("", text.len()),
        };
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

/// Read every event of a journal as JSON values (for show, resume, runs).
pub fn read(path: &Path) -> Result<Vec<Value>, JournalError> {
    let text = std::fs::read_to_string(path).map_err(|source| JournalError::Io {
        path: path.to_owned(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line).map_err(|error| JournalError::Corrupt {
                path: path.to_owned(),
                line: index + 1,
                problem: format!("not valid JSON: {error}"),
            })
        })
        .collect()
}

/// The result of `audit verify`.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every line chains to the one before; `complete` when the last is an end record.
    Intact { lines: usize, complete: bool },
    /// The first line that does not fit, 1-based, and why.
    Broken { line: usize, problem: String },
}

/// Check the hash chain of a journal.
pub fn verify(path: &Path) -> Result<Verdict, JournalError> {
    let text = std::fs::read_to_string(path).map_err(|source| JournalError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut prev = GENESIS.to_owned();
    let mut count = 0;
    let mut last_event = String::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let number = index + 1;
        let Some(line) = line.strip_suffix('\n') else {
            return Ok(Verdict::Broken {
                line: number,
                problem: "the line is cut off (no newline)".into(),
            });
        };
        let value: Value = match serde_json::from_str(line) {
            Ok(value) => value,
            Err(error) => {
                return Ok(Verdict::Broken {
                    line: number,
                    problem: format!("not valid JSON: {error}"),
                });
            }
        };
        let Some((body, hash)) = split_hash(line) else {
            return Ok(Verdict::Broken {
                line: number,
                problem: "the line has no hash at its end".into(),
            });
        };
        if sha256_hex(body.as_bytes()) != hash {
            return Ok(Verdict::Broken {
                line: number,
                problem: "the line was edited (its hash does not match its text)".into(),
            });
        }
        let recorded = value
            .get("prev")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if recorded != prev {
            let problem = if number == 1 {
                "the first line does not start the chain (lines before it were removed?)".to_owned()
            } else {
                format!(
                    "does not follow line {}: lines were removed or reordered",
                    number - 1
                )
            };
            return Ok(Verdict::Broken {
                line: number,
                problem,
            });
        }
        let seq = value.get("seq").and_then(Value::as_u64);
        if seq != Some(index as u64) {
            return Ok(Verdict::Broken {
                line: number,
                problem: format!("sequence number {seq:?}, expected {index}"),
            });
        }
        prev = hash.to_owned();
        last_event = value
            .get("event")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
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
        complete: last_event == "end",
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
