//! The key that makes the journal's chain a keyed MAC (HMAC-SHA256): without
//! it nobody can write a line, re-chain an edited journal, or forge an end
//! record that `runbook audit verify` accepts.
//!
//! The key lives outside the journal: `$RUNBOOK_AUDIT_KEY` (its text is the
//! key, at least 32 characters), else `<state dir>/audit.key`, created on the
//! first run with mode 0600 (32 random bytes, hex). Children never see
//! `RUNBOOK_AUDIT_KEY` (see `stdlib/src/child.rs`).
//!
//! What this does and does not protect: whoever can write the journal but
//! not read the key cannot forge it unseen (a journal shipped to shared
//! storage, a state dir whose `runs/` others can write). Whoever can read
//! the key (the same user, root) can forge anything; keep the key with
//! `RUNBOOK_AUDIT_KEY` on a machine or secret store the journal's readers do
//! not control when that matters.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::hmac;

/// The environment variable that holds the key, instead of the key file.
pub const KEY_VAR: &str = "RUNBOOK_AUDIT_KEY";

/// The shortest `RUNBOOK_AUDIT_KEY` accepted.
const MIN_KEY_CHARS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no audit key: `{path}` does not exist and `RUNBOOK_AUDIT_KEY` is not set")]
    Missing { path: PathBuf },
    #[error("cannot read or create the audit key `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the audit key `{path}` can be read by others (mode {mode:o})")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("the audit key `{path}` is not 64 hex characters")]
    Malformed { path: PathBuf },
    #[error("`RUNBOOK_AUDIT_KEY` is shorter than {MIN_KEY_CHARS} characters")]
    ShortVariable,
}

impl KeyError {
    pub fn hint(&self) -> &'static str {
        match self {
            KeyError::Missing { .. } => {
                "the journal was written with another key: set RUNBOOK_AUDIT_KEY, or RUNBOOK_STATE_DIR to the state dir that wrote it"
            }
            KeyError::Io { .. } => "set RUNBOOK_STATE_DIR to a writable folder",
            KeyError::Exposed { .. } => {
                "`chmod 600` the key file (whoever can read it can forge journals)"
            }
            KeyError::Malformed { .. } => {
                "restore the key file from where it was kept, or set RUNBOOK_AUDIT_KEY"
            }
            KeyError::ShortVariable => {
                "use a long random value, e.g. `openssl rand -hex 32` (or unset it to use the key file)"
            }
        }
    }
}

/// The MAC key of journals.
pub struct AuditKey {
    key: hmac::Key,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(***)")
    }
}

/// `<state dir>/audit.key`.
pub fn key_path(state_dir: &Path) -> PathBuf {
    state_dir.join("audit.key")
}

impl AuditKey {
    pub(crate) fn from_bytes(bytes: &[u8]) -> AuditKey {
        AuditKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        }
    }

    /// The key for writing journals: the variable, else the key file,
    /// created if there is none.
    pub fn for_writing(state_dir: &Path) -> Result<AuditKey, KeyError> {
        if let Some(key) = Self::from_env()? {
            return Ok(key);
        }
        let path = key_path(state_dir);
        if !path.exists() {
            create_key_file(state_dir, &path)?;
        }
        read_key_file(&path)
    }

    /// The key for verifying: the variable, else the key file; never creates one.
    pub fn for_reading(state_dir: &Path) -> Result<AuditKey, KeyError> {
        if let Some(key) = Self::from_env()? {
            return Ok(key);
        }
        let path = key_path(state_dir);
        if !path.exists() {
            return Err(KeyError::Missing { path });
        }
        read_key_file(&path)
    }

    fn from_env() -> Result<Option<AuditKey>, KeyError> {
        match std::env::var(KEY_VAR) {
            Ok(text) if !text.is_empty() => {
                if text.chars().count() < MIN_KEY_CHARS {
                    return Err(KeyError::ShortVariable);
                }
                Ok(Some(Self::from_bytes(text.as_bytes())))
            }
            _ => Ok(None),
        }
    }

    /// HMAC-SHA256 of `text`, lower-case hex.
    pub fn mac(&self, text: &str) -> String {
        runbook_stdlib_hex(hmac::sign(&self.key, text.as_bytes()).as_ref())
    }

    /// Whether `mac` (hex) is the MAC of `text`, compared in constant time.
    pub fn check(&self, text: &str, mac: &str) -> bool {
        match decode_hex(mac) {
            Some(tag) => hmac::verify(&self.key, text.as_bytes(), &tag).is_ok(),
            None => false,
        }
    }
}

fn runbook_stdlib_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).ok())
        .collect()
}

/// Write a new random key to `path` atomically (a temporary file linked
/// into place), so that two runs starting at once end up with one key.
fn create_key_file(state_dir: &Path, path: &Path) -> Result<(), KeyError> {
    use rand::RngCore;
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(io)?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let temporary = state_dir.join(format!(".audit.key.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io)?;
    let written = file
        .write_all(runbook_stdlib_hex(&bytes).as_bytes())
        .and_then(|()| file.sync_all());
    drop(file);
    let linked = written.and_then(|()| std::fs::hard_link(&temporary, path));
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(io(error)),
    }
}

fn read_key_file(path: &Path) -> Result<AuditKey, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(io)?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Exposed {
            path: path.to_owned(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let bytes = decode_hex(text.trim())
        .filter(|bytes| bytes.len() == 32)
        .ok_or_else(|| KeyError::Malformed {
            path: path.to_owned(),
        })?;
    Ok(AuditKey::from_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let first = AuditKey::for_writing(dir.path()).unwrap();
        let mode = std::fs::metadata(key_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = AuditKey::for_reading(dir.path()).unwrap();
        let mac = first.mac("line");
        assert!(second.check("line", &mac));
        assert!(!second.check("line!", &mac));
        assert!(!second.check("line", "zz"));
    }

    #[test]
    fn reading_never_creates_and_an_exposed_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            AuditKey::for_reading(dir.path()),
            Err(KeyError::Missing { .. })
        ));
        AuditKey::for_writing(dir.path()).unwrap();
        std::fs::set_permissions(key_path(dir.path()), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        assert!(matches!(
            AuditKey::for_reading(dir.path()),
            Err(KeyError::Exposed { .. })
        ));
    }
}
