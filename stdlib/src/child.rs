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
//! - **They do not inherit secrets.** Variables that hold secrets (every
//!   `env:VAR` secret source of the active context, registered by the
//!   runtime with [`hide_env`], and a few well-known ones such as
//!   `AWS_SECRET_ACCESS_KEY` and runbook's own key variables) are removed
//!   from the child's environment. A script that wants a child to have one
//!   passes it explicitly (`#{env: #{TOKEN: secret("token")}}`), which is
//!   set after the removal and wins.
//!
//! The death signal is tied to the thread that started the child; children
//! are started on the script's thread, which lives as long as the run. It
//! is set after the fork, so the wrapper checks that its parent is still
//! runbook before it `exec`s the program (else it exits 137 at once).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{OnceLock, PoisonError, RwLock};

/// Variables that hold secrets in any setup, removed from every child.
pub const ALWAYS_HIDDEN: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "HCLOUD_TOKEN",
    "RUNBOOK_AUDIT_KEY",
    "RUNBOOK_JOURNAL_KEY",
];

fn hidden() -> &'static RwLock<BTreeSet<String>> {
    static HIDDEN: OnceLock<RwLock<BTreeSet<String>>> = OnceLock::new();
    HIDDEN.get_or_init(|| {
        RwLock::new(
            ALWAYS_HIDDEN
                .iter()
                .map(|name| (*name).to_owned())
                .collect(),
        )
    })
}

/// Remove these variables from the environment of every child started
/// from now on (the runtime passes the `env:` secret sources of the
/// context it loads).
pub fn hide_env<I, S>(names: I)
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut hidden = hidden().write().unwrap_or_else(PoisonError::into_inner);
    hidden.extend(names.into_iter().map(Into::into));
}

/// The variables removed from children.
pub fn hidden_env() -> Vec<String> {
    hidden()
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .cloned()
        .collect()
}

/// Remove the hidden variables from a command started another way (the
/// `ssh` master process, which the openssh crate starts itself).
pub fn scrub_env(command: &mut tokio::process::Command) {
    for name in hidden_env() {
        command.env_remove(name);
    }
}

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
/// Its environment is runbook's minus the hidden variables ([`hide_env`]).
pub fn command(program: impl AsRef<OsStr>) -> tokio::process::Command {
    let program = program.as_ref();
    let mut command = match (setpriv(), find_on_path(program)) {
        (Some(setpriv), Some(resolved)) => {
            // The death signal is set after the fork: if runbook died in
            // between, nobody would send it. So the wrapped program starts
            // only if its parent is still runbook (a `sh` that then `exec`s it).
            let mut command = tokio::process::Command::new(setpriv);
            command
                .arg("--pdeathsig")
                .arg("KILL")
                .arg("--")
                .arg("/bin/sh")
                .arg("-c")
                .arg(format!(
                    "[ \"$PPID\" = {} ] || exit 137; exec \"$0\" \"$@\"",
                    std::process::id()
                ))
                .arg(resolved);
            command
        }
        _ => tokio::process::Command::new(program),
    };
    scrub_env(&mut command);
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hidden_variables_are_removed_unless_passed() {
        hide_env(["RUNBOOK_TEST_HIDDEN_A"]);
        let mut command = command("env");
        command.env("RUNBOOK_TEST_HIDDEN_A", "given");
        let output = command.output().await.expect("env runs");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(text.contains("RUNBOOK_TEST_HIDDEN_A=given"), "{text}");
        let output = super::command("env").output().await.expect("env runs");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(!text.contains("RUNBOOK_TEST_HIDDEN_A"), "{text}");
        assert!(
            hidden_env()
                .iter()
                .any(|name| name == "AWS_SECRET_ACCESS_KEY")
        );
    }

    #[tokio::test]
    async fn arguments_reach_the_wrapped_program_intact() {
        let output = command("printf")
            .args(["%s|", "a b", "c'd\"e", "$HOME", ""])
            .output()
            .await
            .expect("printf runs");
        assert!(output.status.success());
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "a b|c'd\"e|$HOME||"
        );
    }

    #[tokio::test]
    async fn a_missing_program_fails_with_not_found() {
        let error = command("no-such-program-runbook-test")
            .output()
            .await
            .expect_err("cannot start");
        assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
    }
}
