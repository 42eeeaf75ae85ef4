//! The one way these tests run `runbook`: a builder in the spirit of just's
//! `Test::new()` that runs the real binary with a clean environment (`CI=true`,
//! `NO_COLOR=1`, no stdin, no `RUNBOOK_*` from the developer's shell, a fresh
//! state dir), and insta filters that take out what changes from run to run
//! (times, durations, run ids, ports, temp paths).

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Environment variables of the developer's shell that would change what a run does.
const SCRUBBED: &[&str] = &[
    "RUNBOOK_CONFIG",
    "RUNBOOK_CONTEXT",
    "RUNBOOK_APPROVER",
    "RUNBOOK_STATE_DIR",
    "RUNBOOK_AUDIT_KEY",
    "XDG_STATE_HOME",
    // ssh master sockets: in the fresh state dir unless a test sets it.
    "XDG_RUNTIME_DIR",
    "CLICOLOR_FORCE",
];

/// Longest a single `runbook` invocation may take before the test gives up
/// on it (a hang guard, not a speed assertion).
const HANG_GUARD: Duration = Duration::from_secs(300);

/// The repository root: where `examples/` and `docs/` are.
pub(crate) fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir`, read as text (lossily), concatenated: for
/// searching a state dir for text that must not be there.
pub(crate) fn all_text(dir: &Path) -> String {
    let mut text = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return text;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            text.push_str(&all_text(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    text
}

/// The `runbook` binary under test.
pub(crate) fn binary() -> PathBuf {
    assert_cmd::cargo::cargo_bin("runbook")
}

/// One invocation of `runbook`. `Run::new(file)` is `runbook run FILE`;
/// `Run::command([...])` is any other subcommand.
#[derive(Debug)]
#[must_use]
pub(crate) struct Run {
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    current_dir: PathBuf,
    stdin: Option<Vec<u8>>,
}

impl Run {
    /// `runbook run FILE`.
    pub(crate) fn new(file: impl AsRef<OsStr>) -> Run {
        Run::command(["run".as_ref(), file.as_ref()])
    }

    /// `runbook ARGS...` (e.g. `["check", "examples/"]`).
    pub(crate) fn command<I, S>(args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Run {
            args: args
                .into_iter()
                .map(|arg| arg.as_ref().to_owned())
                .collect(),
            env: Vec::new(),
            current_dir: repo_root().to_owned(),
            stdin: None,
        }
    }

    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Run {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub(crate) fn args<I, S>(mut self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        self
    }

    /// A param as `name=value` after the file.
    pub(crate) fn param(self, name: &str, value: impl std::fmt::Display) -> Run {
        self.arg(format!("{name}={value}"))
    }

    pub(crate) fn approve(self) -> Run {
        self.arg("--approve")
    }

    pub(crate) fn confirm(self, context: &str) -> Run {
        self.args(["--confirm", context])
    }

    pub(crate) fn dry_run(self) -> Run {
        self.arg("--dry-run")
    }

    pub(crate) fn offline(self) -> Run {
        self.arg("--offline")
    }

    pub(crate) fn fixtures(self, path: impl AsRef<OsStr>) -> Run {
        self.arg("--fixtures").arg(path)
    }

    pub(crate) fn context(self, name: &str) -> Run {
        self.args(["--context", name])
    }

    /// `--output json`: JSON events on stdout.
    pub(crate) fn json(self) -> Run {
        self.args(["--output", "json"])
    }

    /// Point `RUNBOOK_CONFIG` at a `runbook.toml`.
    pub(crate) fn config(self, path: impl AsRef<OsStr>) -> Run {
        self.env("RUNBOOK_CONFIG", path)
    }

    pub(crate) fn env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Run {
        self.env
            .push((name.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Several variables at once (e.g. the lab's `env()`).
    pub(crate) fn envs<I, K, V>(mut self, vars: I) -> Run
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (name, value) in vars {
            self = self.env(name, value);
        }
        self
    }

    /// Keep journals in `dir` (to look at them, or resume) instead of a fresh
    /// state dir per invocation.
    pub(crate) fn state_dir(self, dir: impl AsRef<OsStr>) -> Run {
        self.env("RUNBOOK_STATE_DIR", dir)
    }

    pub(crate) fn env_remove(mut self, name: impl AsRef<OsStr>) -> Run {
        self.env.push((name.as_ref().to_owned(), None));
        self
    }

    pub(crate) fn current_dir(mut self, dir: impl AsRef<Path>) -> Run {
        self.current_dir = dir.as_ref().to_owned();
        self
    }

    /// No stdin (the default): gates can never prompt.
    pub(crate) fn stdin_null(mut self) -> Run {
        self.stdin = None;
        self
    }

    /// Feed this text on stdin.
    pub(crate) fn stdin(mut self, text: impl Into<Vec<u8>>) -> Run {
        self.stdin = Some(text.into());
        self
    }

    fn describe(&self) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        format!(
            "runbook {} (in {})",
            args.join(" "),
            self.current_dir.display()
        )
    }

    /// Run to completion and collect what it printed.
    pub(crate) fn output(self) -> Output {
        let state = TempDir::new().expect("a temp dir for the state");
        let mut command = Command::new(binary());
        command.args(&self.args).current_dir(&self.current_dir);
        for name in SCRUBBED {
            command.env_remove(name);
        }
        command
            .env("CI", "true")
            .env("NO_COLOR", "1")
            .env("RUNBOOK_STATE_DIR", state.path())
            .env("XDG_STATE_HOME", state.path());
        for (name, value) in &self.env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        command
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let description = self.describe();
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {description}: {error}"));
        if let Some(input) = self.stdin {
            let mut pipe = child.stdin.take().expect("stdin pipe");
            std::thread::spawn(move || {
                use std::io::Write;
                let _ = pipe.write_all(&input);
            });
        }
        let stdout = reader(child.stdout.take().expect("stdout pipe"));
        let stderr = reader(child.stderr.take().expect("stderr pipe"));
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for runbook") {
                break status;
            }
            if started.elapsed() > HANG_GUARD {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{description} did not finish within {HANG_GUARD:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let stdout = stdout.join().expect("stdout reader");
        let stderr = stderr.join().expect("stderr reader");
        Output {
            description,
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
            state,
        }
    }
}

fn reader(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// What one invocation printed and how it exited.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) description: String,
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    /// The run's state dir (journal, history); removed when the output is dropped.
    pub(crate) state: TempDir,
}

impl Output {
    /// Panic, showing everything, unless the exit code is `expected`.
    #[track_caller]
    pub(crate) fn assert_exit(&self, expected: i32) -> &Output {
        assert!(
            self.code == expected,
            "expected exit code {expected}, got {}\n{}",
            self.code,
            self.report()
        );
        self
    }

    #[track_caller]
    pub(crate) fn assert_success(&self) -> &Output {
        self.assert_exit(0)
    }

    /// Panic unless stdout or stderr contains `needle`.
    #[track_caller]
    pub(crate) fn assert_contains(&self, needle: &str) -> &Output {
        assert!(
            self.all().contains(needle),
            "expected the output to contain {needle:?}\n{}",
            self.report()
        );
        self
    }

    /// Panic if stdout or stderr contains `needle`.
    #[track_caller]
    pub(crate) fn assert_not_contains(&self, needle: &str) -> &Output {
        assert!(
            !self.all().contains(needle),
            "expected the output NOT to contain {needle:?}\n{}",
            self.report()
        );
        self
    }

    /// stdout then stderr.
    pub(crate) fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// stderr without the `HH:MM:SS ` stamps of non-interactive progress lines.
    pub(crate) fn stderr_lines(&self) -> Vec<String> {
        self.stderr
            .lines()
            .map(|line| strip_time(line).to_owned())
            .collect()
    }

    /// The JSON events of `--output json`: every stdout line must parse.
    #[track_caller]
    pub(crate) fn events(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|error| {
                    panic!(
                        "stdout line is not JSON ({error}): {line:?}\n{}",
                        self.report()
                    )
                })
            })
            .collect()
    }

    /// The events of one kind (`"gate"`, `"call"`, ...).
    pub(crate) fn events_of(&self, kind: &str) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|event| event["event"] == kind)
            .collect()
    }

    /// Everything, for failure messages.
    pub(crate) fn report(&self) -> String {
        format!(
            "--- command: {}\n--- exit code: {}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.description, self.code, self.stdout, self.stderr
        )
    }
}

/// A line without a leading `HH:MM:SS ` stamp.
pub(crate) fn strip_time(line: &str) -> &str {
    let bytes = line.as_bytes();
    let stamped = bytes.len() >= 9
        && bytes[..8].iter().enumerate().all(|(index, byte)| {
            if index == 2 || index == 5 {
                *byte == b':'
            } else {
                byte.is_ascii_digit()
            }
        })
        && bytes[8] == b' ';
    if stamped { &line[9..] } else { line }
}

/// A temp folder to write runbooks, configs and fixtures into, and to run in.
#[derive(Debug)]
pub(crate) struct Scratch {
    dir: TempDir,
}

impl Scratch {
    pub(crate) fn new() -> Scratch {
        Scratch {
            dir: TempDir::new().expect("a temp dir"),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `path()/name`.
    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Write `text` to `name` (creating folders) and return its path.
    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.file(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create folder");
        }
        std::fs::write(&path, text).expect("write scratch file");
        path
    }

    pub(crate) fn exists(&self, name: &str) -> bool {
        self.file(name).exists()
    }

    pub(crate) fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name))
            .unwrap_or_else(|error| panic!("cannot read {name}: {error}"))
    }

    /// `runbook run FILE` in this folder (so messages say `FILE:line:col`).
    pub(crate) fn run(&self, file: &str) -> Run {
        Run::new(file).current_dir(self.path())
    }

    /// `runbook ARGS...` in this folder.
    pub(crate) fn command<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Run::command(args).current_dir(self.path())
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The filters every snapshot goes through.
pub(crate) fn snapshot_filters() -> Vec<(String, String)> {
    let temp = std::env::temp_dir();
    let temp = temp.to_string_lossy();
    let temp = regex_escape(temp.trim_end_matches('/'));
    vec![
        // `01:39:20 ` at line starts (non-interactive progress lines).
        (r"(?m)^\d{2}:\d{2}:\d{2} ".to_owned(), "[TIME] ".to_owned()),
        // Run ids: 20261122T013751Z-5359.
        (
            r"\d{8}T\d{6}Z-[0-9a-f]{4,8}".to_owned(),
            "[RUN_ID]".to_owned(),
        ),
        // Temp paths: tempfile's and mktemp's.
        (format!(r"{temp}/\.tmp[A-Za-z0-9_]+"), "[TEMP]".to_owned()),
        (format!(r"{temp}/tmp\.[A-Za-z0-9_]+"), "[TEMP]".to_owned()),
        // Loopback ports.
        (
            r"(127\.0\.0\.1|localhost|\[::1\]):\d{2,5}".to_owned(),
            "$1:[PORT]".to_owned(),
        ),
        // Durations: 12ms, 1.2s, 3m04s.
        (
            r"\b(\d+m\d{2}s|\d+\.\d+s|\d+ms)\b".to_owned(),
            "[DURATION]".to_owned(),
        ),
    ]
}

/// insta settings with [`snapshot_filters`].
pub(crate) fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    for (pattern, replacement) in snapshot_filters() {
        settings.add_filter(&pattern, replacement);
    }
    settings.set_prepend_module_to_snapshot(true);
    settings
}

/// `insta::assert_snapshot!(name, text)` through the harness's filters.
macro_rules! assert_cli_snapshot {
    ($name:expr, $value:expr $(,)?) => {{
        let _settings = $crate::harness::snapshot_settings().bind_to_scope();
        insta::assert_snapshot!($name, $value);
    }};
}

/// Longest an expectation on a pseudo-terminal waits (a hang guard only).
pub(crate) const PTY_TIMEOUT_MS: u64 = 60_000;

/// `runbook ARGS...` on a pseudo-terminal in `dir`, as a person would run it:
/// `CI` unset, `NO_COLOR=1`, `TERM` as given, HOME and the state dir under
/// `home`. Escape codes are stripped from what the session reads.
pub(crate) fn pty(
    args: &[&str],
    dir: &Path,
    home: &Path,
    term: &str,
) -> rexpect::session::PtySession {
    pty_with_env(args, dir, home, term, &[])
}

/// [`pty`] with more environment (e.g. the lab's `env()`).
pub(crate) fn pty_with_env(
    args: &[&str],
    dir: &Path,
    home: &Path,
    term: &str,
    env: &[(String, String)],
) -> rexpect::session::PtySession {
    let mut command = Command::new(binary());
    command.args(args).current_dir(dir);
    for name in SCRUBBED {
        command.env_remove(name);
    }
    command
        .env_remove("CI")
        .env("NO_COLOR", "1")
        .env("TERM", term)
        .env("HOME", home)
        .env("XDG_STATE_HOME", home.join("state"))
        .envs(env.iter().map(|(name, value)| (name, value)));
    rexpect::spawn_with_options(
        command,
        rexpect::reader::Options::new()
            .timeout_ms(Some(PTY_TIMEOUT_MS))
            .strip_ansi_escape_codes(true),
    )
    .expect("spawn runbook on a pty")
}

/// Wait for a pty session's process to end; its exit code.
pub(crate) fn pty_exit(session: &mut rexpect::session::PtySession) -> i32 {
    let _ = session.exp_eof();
    match session.process().wait().expect("wait for runbook") {
        rexpect::process::WaitStatus::Exited(_, code) => code,
        other => panic!("runbook did not exit normally: {other:?}"),
    }
}
