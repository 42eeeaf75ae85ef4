//! Sealed values: what a resumed run must get back exactly (a step's value,
//! a call's result, a generated password) when it is or holds a secret. The
//! journal line shows the value masked (`***`) and carries the real value in
//! `sealed`, encrypted and authenticated with ChaCha20-Poly1305 under a
//! key of the run's own that is never written into the journal:
//!
//! - `RUNBOOK_JOURNAL_KEY` (64 hex digits) when set, for journals that
//!   travel between machines; else
//! - `<state dir>/keys/<RUN>.key`, a 0600 file made when the run starts and
//!   deleted when it ends successfully (a failed or killed run keeps it, so
//!   that it can be resumed).
//!
//! `runbook audit verify` checks the chain without the key; `runbook resume`
//! opens every sealed value before it runs anything and refuses a journal
//! whose key is missing or whose blobs do not open.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rhai::Dynamic;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use runbook_stdlib::Secret;
use runbook_stdlib::redact::Redactor;
use serde_json::Value;

/// The environment variable holding a run key (64 hex digits).
pub const KEY_VAR: &str = "RUNBOOK_JOURNAL_KEY";

/// The prefix of a sealed blob (the format's version).
const BLOB_PREFIX: &str = "v1:";

/// The map key that marks a secret in a sealed value's plain text.
const SECRET_TAG: &str = "$runbook.secret";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("cannot {action} the run key `{path}`: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{KEY_VAR} must be 64 hex digits (a 256-bit key)")]
    BadKey,
    #[error("cannot make a run key: the system's random source failed")]
    Random,
    #[error("a sealed value does not open: it was changed, or the key is not this run's")]
    Tampered,
}

/// Where a run's key file lives.
pub fn key_path(run_id: &str) -> PathBuf {
    crate::journal::state_dir()
        .join("keys")
        .join(format!("{run_id}.key"))
}

/// A run's key.
pub struct RunKey {
    key: LessSafeKey,
    /// The file it came from (deleted when the run ends well); `None` for the env variable.
    file: Option<PathBuf>,
}

impl std::fmt::Debug for RunKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunKey")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

fn from_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).ok()?;
    }
    Some(bytes)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn make_key(bytes: &[u8; 32]) -> Result<LessSafeKey, SealError> {
    UnboundKey::new(&CHACHA20_POLY1305, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| SealError::BadKey)
}

fn key_from_env() -> Result<Option<LessSafeKey>, SealError> {
    match std::env::var(KEY_VAR) {
        Ok(text) if !text.trim().is_empty() => {
            let bytes = from_hex(&text).ok_or(SealError::BadKey)?;
            make_key(&bytes).map(Some)
        }
        _ => Ok(None),
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), SealError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let io = |action, source| SealError::Io {
        action,
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| io("create the folder of", source))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| io("create", source))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| io("write", source))
}

impl RunKey {
    /// The key of a new run: `RUNBOOK_JOURNAL_KEY`, else a new random key
    /// in the run's 0600 key file.
    pub fn create(run_id: &str) -> Result<RunKey, SealError> {
        if let Some(key) = key_from_env()? {
            return Ok(RunKey { key, file: None });
        }
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SealError::Random)?;
        let path = key_path(run_id);
        write_private(&path, &format!("{}\n", to_hex(&bytes)))?;
        Ok(RunKey {
            key: make_key(&bytes)?,
            file: Some(path),
        })
    }

    /// The key of an earlier run, if it is here: `RUNBOOK_JOURNAL_KEY` or
    /// the run's key file.
    pub fn load(run_id: &str) -> Result<Option<RunKey>, SealError> {
        if let Some(key) = key_from_env()? {
            return Ok(Some(RunKey { key, file: None }));
        }
        let path = key_path(run_id);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bytes = from_hex(&text).ok_or(SealError::BadKey)?;
                Ok(Some(RunKey {
                    key: make_key(&bytes)?,
                    file: Some(path),
                }))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SealError::Io {
                action: "read",
                path,
                source,
            }),
        }
    }

    /// The key file, if the key is one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Delete the key file (the run ended well; nothing needs opening again).
    pub fn discard(&self) {
        if let Some(path) = &self.file {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Seal `plain` for run `run_id`: `v1:` and base64 of nonce, ciphertext and tag.
    pub fn seal(&self, run_id: &str, plain: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut data = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(run_id.as_bytes()),
                &mut data,
            )
            .map_err(|_| SealError::Random)?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&data);
        Ok(format!(
            "{BLOB_PREFIX}{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(blob)
        ))
    }

    /// Open a blob sealed by [`RunKey::seal`] for the same run.
    pub fn open(&self, run_id: &str, blob: &str) -> Result<Vec<u8>, SealError> {
        let data = blob
            .strip_prefix(BLOB_PREFIX)
            .and_then(|text| {
                base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(text)
                    .ok()
            })
            .ok_or(SealError::Tampered)?;
        if data.len() < NONCE_LEN {
            return Err(SealError::Tampered);
        }
        let (nonce, sealed) = data.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Tampered)?;
        let mut sealed = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(run_id.as_bytes()), &mut sealed)
            .map_err(|_| SealError::Tampered)?;
        Ok(plain.to_vec())
    }

    /// Seal a value that holds a secret (its secrets in the clear, tagged).
    pub fn seal_value(&self, run_id: &str, value: &Dynamic) -> Result<String, SealError> {
        let plain = serde_json::to_vec(&expose(value)).unwrap_or_default();
        self.seal(run_id, &plain)
    }

    /// Open a sealed value; its secrets become secrets again (and are masked from now on).
    pub fn open_value(
        &self,
        run_id: &str,
        blob: &str,
        redactor: &Redactor,
    ) -> Result<Dynamic, SealError> {
        let plain = self.open(run_id, blob)?;
        let value: Value = serde_json::from_slice(&plain).map_err(|_| SealError::Tampered)?;
        Ok(rebuild(value, redactor))
    }
}

/// A value as JSON with its secrets in the clear, each tagged
/// `{"$runbook.secret": [[text, is_secret], ...]}`: only ever sealed.
fn expose(value: &Dynamic) -> Value {
    if let Some(secret) = value.read_lock::<Secret>() {
        let parts = secret
            .parts()
            .map(|(text, is_secret)| Value::Array(vec![Value::from(text), Value::from(is_secret)]))
            .collect();
        let mut map = serde_json::Map::new();
        map.insert(SECRET_TAG.to_owned(), Value::Array(parts));
        return Value::Object(map);
    }
    if let Some(array) = value.read_lock::<rhai::Array>() {
        return Value::Array(array.iter().map(expose).collect());
    }
    if let Some(map) = value.read_lock::<rhai::Map>() {
        return Value::Object(
            map.iter()
                .map(|(key, item)| (key.to_string(), expose(item)))
                .collect(),
        );
    }
    runbook_stdlib::values::to_json(value, false)
}

/// The inverse of [`expose`].
fn rebuild(value: Value, redactor: &Redactor) -> Dynamic {
    match value {
        Value::Object(map) if map.len() == 1 && map.contains_key(SECRET_TAG) => {
            let parts = match map.get(SECRET_TAG) {
                Some(Value::Array(parts)) => parts.clone(),
                _ => Vec::new(),
            };
            rebuild_secret(&parts, redactor)
        }
        Value::Object(map) => Dynamic::from_map(
            map.into_iter()
                .map(|(key, item)| (key.into(), rebuild(item, redactor)))
                .collect(),
        ),
        Value::Array(items) => Dynamic::from_array(
            items
                .into_iter()
                .map(|item| rebuild(item, redactor))
                .collect(),
        ),
        other => runbook_stdlib::values::from_json(other),
    }
}

fn rebuild_secret(parts: &[Value], redactor: &Redactor) -> Dynamic {
    let mut secret: Option<Secret> = None;
    let mut plain = String::new();
    for part in parts {
        let text = part.get(0).and_then(Value::as_str).unwrap_or_default();
        if part.get(1).and_then(Value::as_bool).unwrap_or(true) {
            redactor.add(text);
            let next = Secret::new(text);
            secret = Some(match secret {
                None if plain.is_empty() => next,
                None => next.prepend(&plain),
                Some(before) => before.append(&plain).concat(&next),
            });
            plain.clear();
        } else {
            plain.push_str(text);
        }
    }
    match secret {
        Some(secret) if plain.is_empty() => Dynamic::from(secret),
        Some(secret) => Dynamic::from(secret.append(&plain)),
        None => Dynamic::from(plain),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RunKey {
        RunKey {
            key: make_key(&[7u8; 32]).expect("key"),
            file: None,
        }
    }

    #[test]
    fn a_sealed_secret_comes_back_whole_and_masked() {
        let key = key();
        let secret = Secret::new("pa\"ss\nword").prepend("postgres://app:");
        let mut map = rhai::Map::new();
        map.insert("url".into(), Dynamic::from(secret));
        map.insert("n".into(), Dynamic::from_int(3));
        let blob = key
            .seal_value("RUN", &Dynamic::from_map(map))
            .expect("seals");
        assert!(!blob.contains("word"), "{blob}");
        let redactor = Redactor::new();
        let back = key.open_value("RUN", &blob, &redactor).expect("opens");
        let map = back.cast::<rhai::Map>();
        let url = map["url"].clone().cast::<Secret>();
        assert_eq!(url.expose(), "postgres://app:pa\"ss\nword");
        assert_eq!(url.to_string(), "postgres://app:***");
        assert_eq!(map["n"].as_int(), Ok(3));
        assert_eq!(redactor.mask("x pa\"ss\nword y"), "x *** y");
    }

    #[test]
    fn a_changed_blob_or_another_run_does_not_open() {
        let key = key();
        let blob = key.seal("RUN", b"hello").expect("seals");
        assert_eq!(key.open("RUN", &blob).expect("opens"), b"hello");
        assert!(matches!(key.open("OTHER", &blob), Err(SealError::Tampered)));
        let mut bytes = blob.into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(bytes).expect("ascii");
        assert!(matches!(
            key.open("RUN", &changed),
            Err(SealError::Tampered)
        ));
    }

    #[test]
    fn keys_are_64_hex_digits() {
        assert!(from_hex(&"ab".repeat(32)).is_some());
        assert!(from_hex("abc").is_none());
        assert!(from_hex(&"zz".repeat(32)).is_none());
    }
}
