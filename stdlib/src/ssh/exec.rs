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

/// Why a command gave no result.
#[derive(Debug)]
pub(crate) enum RunError {
    /// The master did not answer, so the command never started: safe to
    /// start again over a new master.
    NoMaster(StdlibError),
    /// Anything else (the command may have run).
    Failed(StdlibError),
}

impl RunError {
    pub(crate) fn into_error(self) -> StdlibError {
        match self {
            RunError::NoMaster(error) | RunError::Failed(error) => error,
        }
    }
}

/// A command to run on hosts.
#[derive(Debug, Clone)]
pub(crate) struct Exec {
    pub(crate) command: Text,
    pub(crate) env: Vec<(String, Text)>,
    pub(crate) sudo: bool,
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

    /// Run on one host.
    pub(crate) async fn run(
        &self,
        session: &Session,
        target: &Target,
    ) -> Result<HostOutput, RunError> {
        let started = Instant::now();
        let (script, stdin) = self.script().map_err(RunError::Failed)?;
        let mut command = session.raw_command(script);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match command.spawn().await {
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
        let work = async {
            // Held open until the command ends: closing it (a cancelled call
            // drops this future) makes the host kill the command.
            let mut keepalive = child.stdin().take();
            if let (Some(text), Some(pipe)) =
                (stdin.filter(|text| !text.is_empty()), keepalive.as_mut())
            {
                pipe.write_all(text.as_bytes()).await.map_err(|error| {
                    StdlibError::message(format!(
                        "`{}`: cannot send the environment: {error}",
                        target.name
                    ))
                })?;
                pipe.flush().await.map_err(|error| {
                    StdlibError::message(format!(
                        "`{}`: cannot send the environment: {error}",
                        target.name
                    ))
                })?;
            }
            let output = child
                .wait_with_output()
                .await
                .map_err(|error| super::pool::connect_error(target, &error));
            drop(keepalive);
            output
        };
        let output = match self.timeout {
            // The remote `timeout` kills first; this is the backstop for a dead connection.
            Some(limit) => tokio::time::timeout(limit + Duration::from_secs(5), work)
                .await
                .map_err(|_| RunError::Failed(self.timed_out(target, limit)))?
                .map_err(RunError::Failed)?,
            None => work.await.map_err(RunError::Failed)?,
        };
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
