//! Running one local process: output capture, timeout, and killing the whole
//! process group when the call is cancelled.

use std::process::Stdio;
use std::time::{Duration, Instant};

use rhai::{Dynamic, Map};
use tokio::io::AsyncWriteExt;

use crate::function::Text;
use crate::host::StdlibError;

/// A command ready to run.
#[derive(Debug, Clone)]
pub(crate) struct Command {
    pub(crate) argv: Vec<Text>,
    /// Whether argv is `sh -c <script>` (shown as the script alone).
    pub(crate) shell: bool,
    pub(crate) env: Vec<(String, Text)>,
    pub(crate) cwd: Option<String>,
    pub(crate) stdin: Option<Text>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) check: bool,
}

/// What a finished command produced.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) code: i64,
    pub(crate) duration: Duration,
}

impl Output {
    pub(crate) fn into_dynamic(self) -> Dynamic {
        let mut map = Map::new();
        map.insert("stdout".into(), self.stdout.into());
        map.insert("stderr".into(), self.stderr.into());
        map.insert("code".into(), Dynamic::from_int(self.code));
        let millis = i64::try_from(self.duration.as_millis()).unwrap_or(i64::MAX);
        map.insert("duration_ms".into(), Dynamic::from_int(millis));
        Dynamic::from_map(map)
    }
}

/// Kills the command's process group unless disarmed, so that a cancelled or
/// timed-out `sh -c` takes its children with it.
struct GroupGuard {
    pid: Option<u32>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            // `kill -- -PGID` signals the whole group; std has no killpg.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Command {
    /// The command as shown to people: the script for `sh -c`, else argv; secrets masked.
    pub(crate) fn display(&self) -> String {
        if self.shell {
            self.argv
                .last()
                .map(ToString::to_string)
                .unwrap_or_default()
        } else {
            self.argv
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        }
    }

    pub(crate) async fn run(self) -> Result<Output, StdlibError> {
        let started = Instant::now();
        let program = self.argv[0].expose();
        let mut command = crate::child::command(&program);
        command
            .args(self.argv[1..].iter().map(Text::expose))
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for (key, value) in &self.env {
            command.env(key, value.expose());
        }
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        let mut child = command.spawn().map_err(|error| {
            let hint = if error.kind() == std::io::ErrorKind::NotFound {
                format!("is `{program}` installed and on PATH?")
            } else {
                "check the program path and the working directory".to_owned()
            };
            StdlibError::failed(format!("cannot start `{}`: {error}", self.display()), hint)
        })?;
        let mut guard = GroupGuard { pid: child.id() };
        if let (Some(text), Some(mut stdin)) = (&self.stdin, child.stdin.take()) {
            let bytes = text.expose().into_bytes();
            tokio::spawn(async move {
                let _ = stdin.write_all(&bytes).await;
            });
        }
        let waited = match self.timeout {
            Some(limit) => tokio::time::timeout(limit, child.wait_with_output()).await.map_err(|_| {
                StdlibError::failed(
                    format!("`{}` timed out after {}", self.display(), crate::duration::human(limit)),
                    "the command and its children were killed; raise `timeout` if it needs longer",
                )
            })?,
            None => child.wait_with_output().await,
        };
        let output = waited.map_err(|error| {
            StdlibError::message(format!("waiting for `{}` failed: {error}", self.display()))
        })?;
        guard.pid = None;
        let code = output.status.code().map_or(-1, i64::from);
        let result = Output {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            code,
            duration: started.elapsed(),
        };
        if self.check && code != 0 {
            return Err(StdlibError::failed(
                format!(
                    "`{}` exited with code {code}{}",
                    self.display(),
                    crate::text::stderr_tail(&result.stderr)
                ),
                "pass `#{check: false}` to handle the exit code yourself",
            ));
        }
        Ok(result)
    }
}
