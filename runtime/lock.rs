//! The local run lock: one live run of a runbook per context per state dir.
//! A second run exits 4 and says who holds the lock since when. A lock left
//! by a process that died (SIGKILL, power loss) is detected and taken over.
//! The lock keys on the runbook's canonical path (symlinks and `..`
//! resolved), so reaching the same file another way finds the same lock.
//! It is only as wide as the state dir: two people with their own state
//! dirs, or two machines, do not see each other's locks; `k8s::lock` (a
//! Kubernetes Lease) is the lock across people and machines.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::journal::{sha256_hex, state_dir};

/// Who holds a lock, as written in the lock file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// The process's start time in clock ticks (field 22 of /proc/PID/stat), so
    /// that a reused pid is not mistaken for the holder.
    pub start_ticks: Option<u64>,
    pub user: String,
    pub host: String,
    pub run_id: String,
    pub runbook: String,
    pub context: Option<String>,
    pub since: String,
}

impl Holder {
    pub fn describe(&self) -> String {
        format!(
            "{}@{} (pid {}, run {}) since {}",
            self.user, self.host, self.pid, self.run_id, self.since
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("`{runbook}` in context `{context}` is already running: held by {holder}")]
    Held {
        runbook: String,
        context: String,
        holder: String,
    },
    #[error("cannot take the run lock `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<LockError> for crate::error::Diagnostic {
    fn from(error: LockError) -> Self {
        use crate::error::{Diagnostic, Exit};
        let exit = match error {
            LockError::Held { .. } => Exit::Locked,
            LockError::Io { .. } => Exit::Usage,
        };
        Diagnostic::new(error.to_string(), exit).hint(
            "wait for it to finish; a lock of a process that died is taken over automatically",
        )
    }
}

/// A held lock; released (file removed) on drop.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The start time of process `pid` in clock ticks, if it runs.
pub(crate) fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after `)` are fixed.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

fn alive(holder: &Holder) -> bool {
    process_alive(holder.pid, holder.start_ticks)
}

/// Whether process `pid` (started at `ticks`, when known) still runs: a
/// reused pid with another start time does not count.
pub(crate) fn process_alive(pid: u32, ticks: Option<u64>) -> bool {
    match (start_ticks(pid), ticks) {
        (Some(now), Some(then)) => now == then,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn lock_path(runbook: &Path, context: Option<&str>) -> PathBuf {
    // The file itself, however it was reached: a symlink, `../x/../`, a
    // relative path all give the same key.
    let absolute = std::fs::canonicalize(runbook)
        .or_else(|_| std::path::absolute(runbook))
        .unwrap_or_else(|_| runbook.to_owned());
    let key = format!("{}\n{}", absolute.display(), context.unwrap_or(""));
    let name = absolute
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    state_dir()
        .join("locks")
        .join(format!("{name}-{}.lock", &sha256_hex(key.as_bytes())[..16]))
}

/// Take the lock for `runbook` in `context`, or say who holds it.
pub fn acquire(runbook: &Path, context: Option<&str>, run_id: &str) -> Result<RunLock, LockError> {
    let path = lock_path(runbook, context);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let pid = std::process::id();
    let holder = Holder {
        pid,
        start_ticks: start_ticks(pid),
        user: crate::identity::user(),
        host: crate::identity::hostname(),
        run_id: run_id.to_owned(),
        runbook: runbook.display().to_string(),
        context: context.map(str::to_owned),
        since: crate::event::now(),
    };
    let text = serde_json::to_string_pretty(&holder).unwrap_or_default();
    // Two tries: the second after removing a stale lock.
    for _ in 0..2 {
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut file) => {
                file.write_all(text.as_bytes()).map_err(io)?;
                return Ok(RunLock { path });
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                let existing = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|text| serde_json::from_str::<Holder>(&text).ok());
                match existing {
                    Some(other) if alive(&other) => {
                        return Err(LockError::Held {
                            runbook: runbook.display().to_string(),
                            context: context.unwrap_or("(none)").to_owned(),
                            holder: other.describe(),
                        });
                    }
                    // Dead holder, or a lock file cut short by a crash: stale.
                    _ => {
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
            Err(error) => return Err(io(error)),
        }
    }
    Err(LockError::Io {
        path,
        source: std::io::Error::other("the lock file keeps reappearing"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_or_dot_dot_path_finds_the_same_lock() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("deploy.rhai");
        std::fs::write(&file, "1").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let link = dir.path().join("link.rhai");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let dotted = dir.path().join("sub/../deploy.rhai");
        let key = lock_path(&file, Some("lab"));
        assert_eq!(lock_path(&link, Some("lab")), key);
        assert_eq!(lock_path(&dotted, Some("lab")), key);
        assert_ne!(lock_path(&file, Some("other")), key);
    }
}
