//! Every command in the README's ```sh blocks runs: each line is either run
//! here (with `runbook` on PATH, against a lab started like
//! `runbook-lab up --ssh-hosts 4`, in a folder where `runbooks/` and
//! `examples/` are the repo's) and must exit 0, or it is listed in
//! [`NOT_RUN`] with the reason. A line in neither fails the test, so a new
//! README command cannot go untested silently.

use std::path::Path;
use std::process::Command;

use runbook_lab::Lab;

use crate::harness::{Scratch, binary, repo_root};

/// Commands (by their start) this test does not run, and why.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "bash scripts/demo.sh",
        "the main job: builds in release and starts its own lab",
    ),
    (
        "bash scripts/test.sh",
        "the whole test suite, of which this test is part",
    ),
    ("cargo build", "the test already runs a built binary"),
    (
        "bash bench/fuzz.sh",
        "fuzz campaigns of minutes each; `cargo test -p runbook-fuzz` replays their corpora",
    ),
    (
        "FUZZ_TIME=",
        "a fuzz campaign; `cargo test -p runbook-fuzz` replays its corpus",
    ),
    ("alias runbook=", "the test puts runbook on PATH instead"),
    (
        "target/release/runbook-lab up",
        "the test starts the same lab in-process",
    ),
    (
        "target/release/runbook-lab run",
        "a release build; the same runs are in tests/cli/deploy.rs and ssh.rs",
    ),
    (
        "runbook repl",
        "interactive; tests/cli/repl.rs drives it through a pty",
    ),
    (
        "runbook run runbooks/setup-staging.rhai",
        "needs the `staging` context: tests/cli/staging.rs runs it against the hcloud lab",
    ),
    (
        "runbook run runbooks/teardown-staging.rhai",
        "needs the `staging` context: tests/cli/staging.rs runs it against the hcloud lab",
    ),
    (
        "runbook run --dry-run runbooks/rotate-secrets.rhai --context production",
        "needs the `production` context: tests/cli/rotate.rs plans it in the lab",
    ),
    (
        "runbook run runbooks/rotate-secrets.rhai --context production",
        "production: tests/cli/rotate.rs runs it in the lab",
    ),
];

/// The command lines of the README's ```sh blocks, comments removed.
fn commands(readme: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut inside = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            inside = line == "```sh";
            continue;
        }
        if !inside {
            continue;
        }
        // A comment starts at `#` after two spaces (or at the line's start).
        let command = match line.find("  #") {
            Some(at) => &line[..at],
            None if line.trim_start().starts_with('#') => "",
            None => line,
        };
        let command = command.trim();
        if !command.is_empty() {
            lines.push(command.to_owned());
        }
    }
    lines
}

/// The newest run id in `state` (what the README calls RUN).
fn newest_run(state: &Path) -> String {
    let mut ids: Vec<String> = std::fs::read_dir(state.join("runs"))
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids.pop().unwrap_or_default()
}

#[test]
fn the_readme_lists_its_setup_commands_first() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let first: Vec<&str> = readme.lines().take(5).collect();
    assert_eq!(first[0], "# runbook");
    assert!(first[3].starts_with("bash scripts/demo.sh "), "{first:?}");
    assert!(first[4].starts_with("bash scripts/test.sh "), "{first:?}");
}

#[test]
fn every_readme_command_runs_or_says_why_not() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let lab = Lab::builder()
        .ssh_hosts(4)
        .kube(true)
        .start()
        .expect("the lab starts");
    let scratch = Scratch::new();
    for folder in ["runbooks", "examples"] {
        std::os::unix::fs::symlink(repo_root().join(folder), scratch.file(folder)).unwrap();
    }
    let path = format!(
        "{}:{}",
        binary().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = 0;
    for command in commands(&readme) {
        if NOT_RUN.iter().any(|(start, _)| command.starts_with(start)) {
            continue;
        }
        assert!(
            command.starts_with("runbook "),
            "README command `{command}` is neither run by this test nor listed in NOT_RUN"
        );
        let command = command.replace(" RUN", &format!(" {}", newest_run(&lab.state_dir())));
        let output = Command::new("bash")
            .arg("-c")
            .arg(&command)
            .current_dir(scratch.path())
            .env("PATH", &path)
            .env("CI", "true")
            .env("NO_COLOR", "1")
            .envs(lab.env())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("bash runs");
        assert!(
            output.status.success(),
            "README command `{command}` exited {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        ran += 1;
    }
    assert!(ran >= 20, "ran {ran} README commands");
    // What the tour's commands left behind.
    let page = scratch.read("run.html");
    assert!(
        page.starts_with("<!DOCTYPE html>"),
        "run.html is the report"
    );
    assert!(scratch.exists("plan.json"), "--plan-out wrote plan.json");
    assert_eq!(scratch.read("hello.txt"), "hello, newcomer\n");
}
