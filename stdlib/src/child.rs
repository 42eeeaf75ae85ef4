//! Local child processes (`shell::run`, `pg_dump`, `pg_restore`, ...): every
//! one is started here, so that all of them share the same guarantees.
//!
//! - **They die with runbook.** A child is started under `setpriv
//!   --pdeathsig KILL` (util-linux, on every Debian), which asks the kernel
//!   to kill it when runbook dies, even by `kill -9`. Without that an orphan
//!   could finish a step after the crash, and a resume would run it again.
//!   Where `setpriv` is missing the child is started directly (and only
//!   cancellation, not a SIGKILL of runbook, stops it).
//!
//! The death signal is tied to the thread that started the child; children
//! are started on the script's thread, which lives as long as the run.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// `setpriv`, if this machine has one that knows `--pdeathsig`.
fn setpriv() -> Option<&'static Path> {
    static SETPRIV: OnceLock<Option<PathBuf>> = OnceLock::new();
    SETPRIV
        .get_or_init(|| {
            let path = find_on_path(OsStr::new("setpriv"))?;
            let help = std::process::Command::new(&path)
                .arg("--help")
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output()
                .ok()?;
            String::from_utf8_lossy(&help.stdout)
                .contains("--pdeathsig")
                .then_some(path)
        })
        .as_deref()
}

/// `program` as the kernel would find it: itself when it names a path, else
/// the first match on `PATH`.
fn find_on_path(program: &OsStr) -> Option<PathBuf> {
    let given = Path::new(program);
    if given.components().count() > 1 {
        return given.is_file().then(|| given.to_owned());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// A command for `program` that dies with runbook. A program that cannot
/// be found is started directly, so that spawning fails with `NotFound`
/// (and the caller's hint) instead of a wrapper's message.
pub fn command(program: impl AsRef<OsStr>) -> tokio::process::Command {
    let program = program.as_ref();
    match (setpriv(), find_on_path(program)) {
        (Some(setpriv), Some(resolved)) => {
            let mut command = tokio::process::Command::new(setpriv);
            command
                .arg("--pdeathsig")
                .arg("KILL")
                .arg("--")
                .arg(resolved);
            command
        }
        _ => tokio::process::Command::new(program),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_program_fails_with_not_found() {
        let error = command("no-such-program-runbook-test")
            .output()
            .await
            .expect_err("cannot start");
        assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
    }
}
