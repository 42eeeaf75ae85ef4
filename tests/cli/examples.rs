//! Every file in examples/ is checked, run live and dry-run. The folder is
//! enumerated, so a new example is covered without touching this file (unless
//! it has a required param this file cannot give a value for). Runs use the
//! lab's `lab` context, which examples that talk to services need.

use std::path::PathBuf;

use runbook_lab::Lab;

use crate::harness::{Run, Scratch, free_port};

/// Every `examples/*.rhai`, as paths relative to the repo root, sorted.
fn examples() -> Vec<PathBuf> {
    crate::plans::rhai_files("examples")
}

/// Whether nothing listens on `port` (a killed server may take a moment to go).
fn port_closes(port: u16) -> bool {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

#[test]
fn every_example_passes_check() {
    for file in examples() {
        Run::command(["check".as_ref(), file.as_os_str()])
            .output()
            .assert_success();
    }
}

#[test]
fn check_of_the_examples_folder_lists_every_example() {
    let output = Run::command(["check", "examples/"]).output();
    output.assert_success();
    for file in examples() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            output
                .stdout
                .lines()
                .any(|line| line.starts_with("ok") && line.ends_with(&name)),
            "`runbook check examples/` did not report {name} as ok\n{}",
            output.report()
        );
    }
}

/// `runbook run FILE --context lab` with the lab's environment and the example's params.
fn in_lab(lab: &Lab, file: &PathBuf, scratch: &Scratch) -> Run {
    Run::new(file)
        .args(crate::plans::params_for(file, scratch))
        .envs(lab.env())
        .context(Lab::CONTEXT)
}

#[test]
fn every_example_runs_live_with_approve() {
    let lab = Lab::start().expect("start the lab");
    for file in examples() {
        let scratch = Scratch::new();
        in_lab(&lab, &file, &scratch)
            .approve()
            .output()
            .assert_success();
    }
}

/// Examples whose `--dry-run` is known to fail, with why. Each has an
/// ignored test below that states the correct behaviour.
const DRY_RUN_BUGS: &[&str] = &["hello.rhai"];

fn dry_run_broken(file: &std::path::Path) -> bool {
    file.file_name()
        .is_some_and(|name| DRY_RUN_BUGS.iter().any(|bug| name == *bug))
}

/// `--dry-run` of `file` against the lab: exit 0, a plan, and no `dir` created.
fn assert_dry_run_passes(lab: &Lab, file: &PathBuf) {
    let scratch = Scratch::new();
    let output = in_lab(lab, file, &scratch).dry_run().output();
    output.assert_success().assert_contains("Plan: ");
    assert!(
        !scratch.exists(crate::plans::PARAM_DIR),
        "a dry-run of {} created its `dir`\n{}",
        file.display(),
        output.report()
    );
}

#[test]
fn every_example_dry_runs() {
    let lab = Lab::start().expect("start the lab");
    for file in examples().iter().filter(|file| !dry_run_broken(file)) {
        assert_dry_run_passes(&lab, file);
    }
    assert!(
        lab.http().hooks("notify").is_empty(),
        "a dry-run delivered a webhook"
    );
    assert!(
        lab.http().hooks("slack").is_empty(),
        "a dry-run posted to Slack"
    );
}

#[test]
fn hello_dry_runs() {
    let lab = Lab::start().expect("start the lab");
    assert_dry_run_passes(&lab, &PathBuf::from("examples/hello.rhai"));
}

#[test]
fn hello_publishes_the_greeting_and_cleans_up() {
    let port = free_port();
    let output = Run::new("examples/hello.rhai")
        .param("port", port)
        .param("greeting", "hi-from-tests")
        .approve()
        .output();
    output
        .assert_success()
        .assert_contains("published `hi-from-tests` and cleaned up");
    // The server was stopped: nothing listens on the port any more.
    assert!(
        port_closes(port),
        "the demo server still listens on {port}\n{}",
        output.report()
    );
}

#[test]
fn hello_without_approve_stops_at_the_gate_and_rolls_back() {
    let port = free_port();
    let output = Run::new("examples/hello.rhai").param("port", port).output();
    output
        .assert_exit(3)
        .assert_contains("rollback for start web server ran");
    assert!(
        port_closes(port),
        "the compensation did not stop the demo server on {port}\n{}",
        output.report()
    );
}

#[test]
fn steps_example_rolls_back_when_asked_to_fail() {
    let output = Run::new("examples/steps.rhai")
        .param("fail", "yes")
        .output();
    output
        .assert_exit(1)
        .assert_contains("asked to fail")
        .assert_contains("compensation: undrain the node");
}
