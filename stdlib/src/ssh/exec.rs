//! Running one command on one host over its master connection.
//!
//! The command runs under `sh -c` on the host. Environment values (secrets
//! included) travel on the command's stdin, never in its argv, so they do not
//! show up in the host's process list. A timeout runs the command under
//! `timeout -s KILL`, which kills its whole process group on the host.
//!
//! The command dies with its call: it runs in a session of its own
//! (`setsid`) beside a watcher that holds the channel's stdin, which runbook
//! keeps open until the command ends. When the call is cancelled (Ctrl-C, a
//! step timeout) or runbook dies, the channel's stdin closes and the watcher
//! kills the command's whole process group on the host.

use openssh::Stdio;
use std::time::{Duration, Instant};

use openssh::Session;
use rhai::{Dynamic, Map};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::inventory::Target;
use crate::function::Text;
use crate::host::StdlibError;

/// Quote for a POSIX shell: `'...'` with embedded quotes escaped.
pub(crate) fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// `command` in a session of its own, killed (its whole process group) when
/// the channel's stdin closes; the exit code is the command's.
fn supervise(command: &str) -> String {
    let quoted = quote(command);
    format!(
        "exec 3<&0; \
         if command -v setsid >/dev/null 2>&1; then setsid sh -c {quoted} </dev/null 3<&- & \
         else sh -c {quoted} </dev/null 3<&- & fi; \
         pid=$!; \
         {{ cat >/dev/null; kill -KILL -$pid 2>/dev/null || kill -KILL $pid 2>/dev/null; }} <&3 >/dev/null 2>&1 & \
         watcher=$!; exec 3<&-; \
         wait $pid; code=$?; kill $watcher 2>/dev/null; exit $code"
    )
}

/// How long a cancelled command gets to report its end once the channel's
/// stdin is closed (the host's watcher kills it at once; this bounds a dead
/// connection).
pub(crate) const KILL_CONFIRM: Duration = Duration::from_secs(10);

/// Why a command gave no result.
#[derive(Debug)]
pub(crate) enum RunError {
    /// The master did not answer, so the command never started: safe to
    /// start again over a new master.
    NoMaster(StdlibError),
    /// The connection broke while the command ran: it may have run.
    Broken(StdlibError),
    /// The call was cancelled (Ctrl-C, SIGTERM, a step timeout, a fail_fast
    /// fan-out stopping): the channel's stdin was closed, so the host killed
    /// the command.
    Cancelled(Kill),
    /// The call was cancelled before the command started.
    NotStarted(String),
    /// Anything else (the command may have run).
    Failed(StdlibError),
}

/// What became of a cancelled command.
#[derive(Debug, Clone)]
pub(crate) struct Kill {
    pub(crate) host: String,
    /// Its end was seen: killed by the host's watcher, or finished just
    /// before. `false`: its end was not reported within [`KILL_CONFIRM`] (the
    /// connection is gone); the host's watcher kills it when its sshd notices.
    pub(crate) confirmed: bool,
    /// Its exit code, when its end was seen (137: killed).
    pub(crate) code: Option<i64>,
    pub(crate) duration: Duration,
}

impl Kill {
    /// What the journal and the screen say about it.
    pub(crate) fn describe(&self, command: &str) -> String {
        match (self.confirmed, self.code) {
            (true, Some(code)) if code != 137 && code >= 0 => format!(
                "`{}`: `{command}` ended (exit {code}) as it was cancelled",
                self.host
            ),
            (true, _) => format!(
                "`{}`: `{command}` cancelled: killed on the host (confirmed)",
                self.host
            ),
            (false, _) => format!(
                "`{}`: `{command}` cancelled, but its end was not confirmed within {}: it may still be running",
                self.host,
                crate::duration::human(KILL_CONFIRM)
            ),
        }
    }
}

impl RunError {
    pub(crate) fn into_error(self, command: &str) -> StdlibError {
        match self {
            RunError::NoMaster(error) | RunError::Broken(error) | RunError::Failed(error) => error,
            RunError::Cancelled(kill) => StdlibError::message(kill.describe(command)),
            RunError::NotStarted(host) => {
                StdlibError::message(format!("`{host}`: `{command}` not started (cancelled)"))
            }
        }
    }
}

/// A command to run on hosts.
#[derive(Debug, Clone)]
pub(crate) struct Exec {
    pub(crate) command: Text,
    pub(crate) env: Vec<(String, Text)>,
    pub(crate) sudo: bool,
    /// A read (`ssh::read`, `ssh::read_all`): started again over a new
    /// master when the connection broke while it ran.
    pub(crate) read: bool,
    pub(crate) timeout: Option<Duration>,
    pub(crate) check: bool,
}

/// What a command produced on one host.
#[derive(Debug, Clone)]
pub(crate) struct HostOutput {
    pub(crate) host: String,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) code: i64,
    pub(crate) duration: Duration,
}

impl HostOutput {
    pub(crate) fn into_map(self) -> Map {
        let mut map = Map::new();
        map.insert("host".into(), self.host.into());
        map.insert("stdout".into(), self.stdout.into());
        map.insert("stderr".into(), self.stderr.into());
        map.insert("code".into(), Dynamic::from_int(self.code));
        map.insert(
            "duration_ms".into(),
            Dynamic::from_int(i64::try_from(self.duration.as_millis()).unwrap_or(i64::MAX)),
        );
        map
    }
}

impl Exec {
    /// The command as shown to people (secrets masked).
    pub(crate) fn display(&self) -> String {
        self.command.to_string()
    }

    /// The remote script and the stdin that carries the environment.
    fn script(&self) -> Result<(String, Option<String>), StdlibError> {
        let mut prelude = String::new();
        let mut stdin = String::new();
        for (name, value) in &self.env {
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || name.is_empty() {
                return Err(StdlibError::usage(
                    format!("`{name}` is not a valid environment variable name"),
                    "use letters, digits and `_`",
                ));
            }
            let value = value.expose();
            if value.contains('\n') {
                return Err(StdlibError::usage(
                    format!("env `{name}`: values with newlines cannot be passed"),
                    "encode the value (e.g. base64) and decode it in the command",
                ));
            }
            prelude.push_str(&format!("IFS= read -r {name} && export {name} && "));
            stdin.push_str(&value);
            stdin.push('\n');
        }
        let mut command = self.command.expose();
        if let Some(limit) = self.timeout {
            let seconds = limit.as_secs_f64().max(0.1);
            command = format!("timeout -s KILL {seconds:.1} sh -c {}", quote(&command));
        }
        let mut script = format!("{prelude}{}", supervise(&command));
        if self.sudo {
            script = format!("sudo -n sh -c {}", quote(&script));
        }
        Ok((format!("sh -c {}", quote(&script)), Some(stdin)))
    }

    /// Run on one host. When `cancel` fires, or the backstop of a timeout
    /// passes, the channel's stdin is closed (the host kills the command) and
    /// the command's end is awaited for up to [`KILL_CONFIRM`].
    pub(crate) async fn run(
        &self,
        session: &Session,
        target: &Target,
        cancel: &CancellationToken,
    ) -> Result<HostOutput, RunError> {
        let started = Instant::now();
        let (script, stdin) = self.script().map_err(RunError::Failed)?;
        let mut command = session.raw_command(script);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawned = tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(RunError::NotStarted(target.name.clone())),
            spawned = command.spawn() => spawned,
        };
        let mut child = match spawned {
            Ok(child) => child,
            // The master's socket did not answer (gone: `Disconnected`; or
            // refused the session): the command never started.
            Err(error @ (openssh::Error::Disconnected | openssh::Error::SshMux(_))) => {
                return Err(RunError::NoMaster(super::pool::connect_error(
                    target, &error,
                )));
            }
            Err(error) => {
                return Err(RunError::Failed(super::pool::connect_error(target, &error)));
            }
        };
        // Held open until the command ends: closing it makes the host kill
        // the command (and a cancelled call closes it first thing).
        let mut keepalive = child.stdin().take();
        let send = async {
            if let (Some(text), Some(pipe)) =
                (stdin.filter(|text| !text.is_empty()), keepalive.as_mut())
            {
                pipe.write_all(text.as_bytes()).await?;
                pipe.flush().await?;
            }
            Ok::<(), std::io::Error>(())
        };
        // The remote `timeout` kills first; this is the backstop for a dead connection.
        let backstop = async {
            match self.timeout {
                Some(limit) => tokio::time::sleep(limit + Duration::from_secs(5)).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(backstop);
        let sent = tokio::select! {
            biased;
            () = cancel.cancelled() => None,
            () = &mut backstop => None,
            sent = send => Some(sent),
        };
        match sent {
            Some(Ok(())) => {}
            Some(Err(error)) => {
                return Err(RunError::Failed(StdlibError::message(format!(
                    "`{}`: cannot send the environment: {error}",
                    target.name
                ))));
            }
            None => {
                drop(keepalive);
                let kill = confirm_kill(child.wait_with_output(), target, started).await;
                return Err(self.stopped(kill, target, cancel));
            }
        }
        let waiting = child.wait_with_output();
        tokio::pin!(waiting);
        let waited = tokio::select! {
            biased;
            output = &mut waiting => Some(output),
            () = cancel.cancelled() => None,
            () = &mut backstop => None,
        };
        let output = match waited {
            Some(Ok(output)) => output,
            // The mux lost the channel while the command ran: it may have run.
            Some(Err(error)) => {
                return Err(RunError::Broken(self.broke(target, &error)));
            }
            None => {
                drop(keepalive);
                let kill = confirm_kill(waiting, target, started).await;
                return Err(self.stopped(kill, target, cancel));
            }
        };
        drop(keepalive);
        let code = output.status.code().map_or(-1, i64::from);
        let result = HostOutput {
            host: target.name.clone(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            code,
            duration: started.elapsed(),
        };
        if let Some(limit) = self.timeout
            && code == 137
            && result.duration >= limit
        {
            return Err(RunError::Failed(self.timed_out(target, limit)));
        }
        if self.check && code != 0 {
            return Err(RunError::Failed(StdlibError::failed(
                format!(
                    "`{}`: `{}` exited with code {code}{}",
                    target.name,
                    self.display(),
                    crate::text::stderr_tail(&result.stderr)
                ),
                "pass `#{check: false}` to handle the exit code yourself",
            )));
        }
        Ok(result)
    }

    /// A command stopped before its end: cancelled, or its timeout's
    /// backstop passed (the connection stopped answering).
    fn stopped(&self, kill: Kill, target: &Target, cancel: &CancellationToken) -> RunError {
        match self.timeout {
            Some(limit) if !cancel.is_cancelled() => {
                RunError::Failed(self.timed_out(target, limit))
            }
            _ => RunError::Cancelled(kill),
        }
    }

    /// The connection broke while the command ran.
    fn broke(&self, target: &Target, error: &openssh::Error) -> StdlibError {
        let detail = super::pool::connect_error(target, error);
        StdlibError::failed(
            format!(
                "`{}`: the connection broke while `{}` ran, so it may have run (not started again): {detail}",
                target.name,
                self.display(),
            ),
            "check the host before running the step again; reads are started again by themselves",
        )
    }

    fn timed_out(&self, target: &Target, limit: Duration) -> StdlibError {
        StdlibError::failed(
            format!(
                "`{}`: `{}` timed out after {}",
                target.name,
                self.display(),
                crate::duration::human(limit)
            ),
            "the command was killed on the host; raise `timeout` if it needs longer",
        )
    }
}

/// Wait (at most [`KILL_CONFIRM`]) for a cancelled command's end, its
/// channel's stdin already closed.
async fn confirm_kill(
    waiting: impl std::future::Future<Output = Result<std::process::Output, openssh::Error>>,
    target: &Target,
    started: Instant,
) -> Kill {
    let ended = tokio::time::timeout(KILL_CONFIRM, waiting).await;
    let (confirmed, code) = match ended {
        Ok(Ok(output)) => (true, Some(output.status.code().map_or(-1, i64::from))),
        // No status (the mux cannot tell a killed shell from a lost
        // connection), or none in time: not confirmed.
        Ok(Err(_)) | Err(_) => (false, None),
    };
    Kill {
        host: target.name.clone(),
        confirmed,
        code,
        duration: started.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn env_travels_on_stdin_not_argv() {
        let exec = Exec {
            command: Text::Plain("echo $TOKEN".into()),
            env: vec![(
                "TOKEN".into(),
                Text::Secret(crate::host::Secret::new("s3cr3t")),
            )],
            sudo: false,
            read: false,
            timeout: Some(Duration::from_secs(5)),
            check: true,
        };
        let (script, stdin) = exec.script().unwrap();
        assert!(!script.contains("s3cr3t"));
        assert_eq!(stdin.as_deref(), Some("s3cr3t\n"));
        assert!(script.contains("setsid"), "{script}");
        assert!(script.contains("timeout -s KILL 5.0"));
    }
}
