//! Approving from another shell: a run started with `--wait-for-approval`
//! waits at its gate, `runbook gates` lists it, `runbook approve`/`reject`
//! from a second process answer it (one decision per gate), expiry rejects,
//! Ctrl-C stops the wait, and `four_eyes` keeps the starter from approving.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Run, Scratch, binary};

/// A step with a compensation, a gate, a write after it, and (to keep the run
/// alive a moment after the decision) a short pause.
const GATED: &str = r#"//! Gated change.
step("one", || {
    shell::run("echo one >> LOG");
    on_rollback(|| shell::run("echo undo-one >> LOG"));
});
approve("Go on with the change?");
shell::run("touch FILE");
"#;

const CONFIG: &str = r#"[context.prod]
protected = true
four_eyes = true
description = "production, four eyes"

[context.dev]
description = "development"
"#;

/// Longest a test waits for a run to reach its gate or end (a hang guard on
/// a busy machine, not a speed assertion).
const DEADLINE: Duration = Duration::from_secs(120);

fn scratch(script: &str) -> Scratch {
    let scratch = Scratch::new();
    scratch.write("gated.rhai", script);
    scratch.write("runbook.toml", CONFIG);
    scratch
}

/// `runbook ARGS` in the background with no terminal; output goes to files
/// in `dir` (shown when a test fails).
fn spawn(dir: &Path, state: &Path, args: &[&str], approver: &str) -> Child {
    let log = |name: &str| std::fs::File::create(dir.join(name)).expect("log file");
    Command::new(binary())
        .args(args)
        .current_dir(dir)
        .env("RUNBOOK_STATE_DIR", state)
        .env("RUNBOOK_APPROVER", approver)
        .env("CI", "true")
        .env("NO_COLOR", "1")
        .env_remove("RUNBOOK_CONFIG")
        .env_remove("RUNBOOK_CONTEXT")
        .stdin(Stdio::null())
        .stdout(log("run.stdout"))
        .stderr(log("run.stderr"))
        .spawn()
        .expect("start runbook")
}

/// The id of the run that waits at a gate in `state` (polls `gate.json`).
/// alice starts gated.rhai with `--wait-for-approval 10m`; the child and its run id once it waits.
fn alice_waits(scratch: &Scratch, state: &Path) -> (Child, String) {
    let mut child = spawn(
        scratch.path(),
        state,
        &["run", "gated.rhai", "--wait-for-approval", "10m"],
        "alice",
    );
    let run = waiting_run(state, &mut child, scratch.path());
    (child, run)
}

fn waiting_run(state: &Path, child: &mut Child, dir: &Path) -> String {
    let started = Instant::now();
    loop {
        if let Ok(entries) = std::fs::read_dir(state.join("runs")) {
            for entry in entries.flatten() {
                if entry.path().join("gate.json").is_file() {
                    return entry.file_name().to_string_lossy().into_owned();
                }
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended ({status}) before waiting\n{}", run_log(dir));
        }
        assert!(
            started.elapsed() < DEADLINE,
            "no gate request within {DEADLINE:?}\n{}",
            run_log(dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait for the background run to end; its exit code.
fn exit_code(child: &mut Child, dir: &Path) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for runbook") {
            return status.code().unwrap_or(-1);
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("the run did not end within {DEADLINE:?}\n{}", run_log(dir));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_log(dir: &Path) -> String {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    format!(
        "--- run stdout:\n{}\n--- run stderr:\n{}",
        read("run.stdout"),
        read("run.stderr")
    )
}

/// The gate events of a run's journal.
fn gate_events(state: &Path, run: &str) -> Vec<serde_json::Value> {
    let path: PathBuf = state.join("runs").join(run).join("journal.jsonl");
    std::fs::read_to_string(&path)
        .expect("journal")
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("journal line"))
        .filter(|event| event["event"] == "gate")
        .collect()
}

/// `runbook ARGS` against `state`, as `approver`.
fn command(
    scratch: &Scratch,
    state: &Path,
    args: &[&str],
    approver: &str,
) -> crate::harness::Output {
    scratch
        .command(args)
        .state_dir(state)
        .env("RUNBOOK_APPROVER", approver)
        .output()
}

#[test]
fn approve_from_a_second_process_releases_the_waiting_run() {
    let scratch = scratch(GATED);
    let state = scratch.file("state");
    let mut child = spawn(
        scratch.path(),
        &state,
        &[
            "run",
            "gated.rhai",
            "--context",
            "dev",
            "--wait-for-approval",
            "10m",
        ],
        "alice",
    );
    let run = waiting_run(&state, &mut child, scratch.path());
    assert!(!scratch.exists("FILE"), "the write ran before the approval");

    // `runbook gates` lists it: run, message, who started it, context.
    let gates = command(&scratch, &state, &["gates"], "bob");
    gates
        .assert_success()
        .assert_contains(&run)
        .assert_contains("Go on with the change?")
        .assert_contains("alice")
        .assert_contains("dev")
        .assert_contains(&format!("runbook approve {run}"));

    command(
        &scratch,
        &state,
        &["approve", &run, "--comment", "checked the diff"],
        "bob",
    )
    .assert_success()
    .assert_contains(&format!("run {run} goes on"));
    assert_eq!(
        exit_code(&mut child, scratch.path()),
        0,
        "{}",
        run_log(scratch.path())
    );
    assert!(scratch.exists("FILE"), "{}", run_log(scratch.path()));
    assert_eq!(scratch.read("LOG"), "one\n");

    let gates = gate_events(&state, &run);
    assert_eq!(gates.len(), 2, "{gates:?}");
    assert_eq!(gates[0]["decision"], "waiting");
    assert_eq!(gates[0]["approver"], "alice");
    assert!(gates[0]["expires"].is_string(), "{gates:?}");
    assert_eq!(gates[1]["decision"], "approved");
    assert_eq!(gates[1]["channel"], "remote");
    assert_eq!(gates[1]["approver"], "bob");
    assert_eq!(gates[1]["comment"], "checked the diff");
    // The request is gone once the gate is decided.
    assert!(!state.join("runs").join(&run).join("gate.json").exists());

    // `runbook show` renders the decision; a late answer to an ended run is exit 2.
    command(&scratch, &state, &["show", &run], "bob")
        .assert_success()
        .assert_contains("approved by bob (runbook approve): Go on with the change?")
        .assert_contains("comment: checked the diff");
    command(&scratch, &state, &["approve", &run], "carol")
        .assert_exit(2)
        .assert_contains("is not waiting at a gate: it has ended (ok)")
        .assert_contains("runbook gates");
}

#[test]
fn reject_with_a_reason_rolls_back_and_exits_3() {
    let scratch = scratch(GATED);
    let state = scratch.file("state");
    let (mut child, run) = alice_waits(&scratch, &state);
    // The reason is required.
    command(&scratch, &state, &["reject", &run], "bob")
        .assert_exit(2)
        .assert_contains("--reason");
    command(
        &scratch,
        &state,
        &["reject", &run, "--reason", "wrong version"],
        "bob",
    )
    .assert_success();
    assert_eq!(
        exit_code(&mut child, scratch.path()),
        3,
        "{}",
        run_log(scratch.path())
    );
    assert!(!scratch.exists("FILE"));
    assert_eq!(
        scratch.read("LOG"),
        "one\nundo-one\n",
        "{}",
        run_log(scratch.path())
    );
    let gates = gate_events(&state, &run);
    let last = gates.last().expect("a decision");
    assert_eq!(last["decision"], "rejected");
    assert_eq!(last["channel"], "remote");
    assert_eq!(last["approver"], "bob");
    assert_eq!(last["comment"], "wrong version");
    assert!(run_log(scratch.path()).contains("rejected by bob: wrong version"));
}

#[test]
fn expiry_rejects_with_exit_3_and_journals_expired() {
    let scratch = scratch(GATED);
    let state = scratch.file("state");
    let output = scratch
        .run("gated.rhai")
        .args(["--wait-for-approval", "1s"])
        .state_dir(&state)
        .output();
    output
        .assert_exit(3)
        .assert_contains("the gate expired")
        .assert_contains("rollback for one ran");
    assert!(!scratch.exists("FILE"));
    let run = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .file_name()
        .to_string_lossy()
        .into_owned();
    let gates = gate_events(&state, &run);
    let last = gates.last().expect("a decision");
    assert_eq!(last["decision"], "expired", "{gates:?}");
    assert_eq!(last["channel"], "expired");
    // Too late: answering the expired gate changes nothing (the run ended: exit 2).
    command(&scratch, &state, &["approve", &run], "bob").assert_exit(2);
}

#[test]
fn two_concurrent_approvals_make_exactly_one_decision() {
    // A pause after the gate keeps the run alive while both answers land.
    let script = format!("{GATED}sleep(\"3s\");\n");
    let scratch = scratch(&script);
    let state = scratch.file("state");
    let (mut child, run) = alice_waits(&scratch, &state);
    let outputs: Vec<crate::harness::Output> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["bob", "carol"]
            .into_iter()
            .map(|approver| {
                let (scratch, state, run) = (&scratch, &state, &run);
                scope.spawn(move || {
                    command(
                        scratch,
                        state,
                        &["approve", run, "--comment", approver],
                        approver,
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut codes: Vec<i32> = outputs.iter().map(|output| output.code).collect();
    codes.sort_unstable();
    let reports: Vec<String> = outputs.iter().map(crate::harness::Output::report).collect();
    assert_eq!(codes, vec![0, 4], "{reports:#?}");
    let loser = outputs.iter().find(|output| output.code == 4).unwrap();
    loser.assert_contains("already decided: approved by");
    assert_eq!(
        exit_code(&mut child, scratch.path()),
        0,
        "{}",
        run_log(scratch.path())
    );
    let decisions: Vec<_> = gate_events(&state, &run)
        .into_iter()
        .filter(|event| event["decision"] == "approved")
        .collect();
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    let winner = outputs.iter().find(|output| output.code == 0).unwrap();
    let by = decisions[0]["approver"].as_str().unwrap();
    assert!(
        winner.description.contains(&format!("--comment {by}")),
        "{by}: {}",
        winner.report()
    );
}

#[test]
fn four_eyes_refuses_self_approval_and_accepts_someone_else() {
    let scratch = scratch(GATED);
    let state = scratch.file("state");
    // --approve on one's own run does not pass a four-eyes gate.
    let own = scratch
        .run("gated.rhai")
        .context("prod")
        .approve()
        .confirm("prod")
        .env("RUNBOOK_APPROVER", "alice")
        .output();
    own.assert_exit(3)
        .assert_contains("requires four eyes")
        .assert_contains("--wait-for-approval");
    assert!(!scratch.exists("FILE"));

    let mut child = spawn(
        scratch.path(),
        &state,
        &[
            "run",
            "gated.rhai",
            "--context",
            "prod",
            "--wait-for-approval",
            "10m",
        ],
        "alice",
    );
    let run = waiting_run(&state, &mut child, scratch.path());
    // Neither can the starter approve from another shell...
    command(
        &scratch,
        &state,
        &["approve", &run, "--confirm", "prod"],
        "alice",
    )
    .assert_exit(3)
    .assert_contains("requires four eyes: you (alice) started run");
    // ...and a protected context still needs its name typed out.
    command(&scratch, &state, &["approve", &run], "bob")
        .assert_exit(3)
        .assert_contains("approving needs --confirm prod");
    // The gate still waits; someone else approves it.
    command(&scratch, &state, &["gates"], "bob")
        .assert_success()
        .assert_contains(&run)
        .assert_contains("four eyes");
    command(
        &scratch,
        &state,
        &["approve", &run, "--confirm", "prod"],
        "bob",
    )
    .assert_success();
    assert_eq!(
        exit_code(&mut child, scratch.path()),
        0,
        "{}",
        run_log(scratch.path())
    );
    assert!(scratch.exists("FILE"));
    let last = gate_events(&state, &run).pop().unwrap();
    assert_eq!(last["decision"], "approved");
    assert_eq!(last["approver"], "bob");
}

#[test]
fn ctrl_c_while_waiting_rolls_back_and_exits_130() {
    let scratch = scratch(GATED);
    let state = scratch.file("state");
    let (mut child, run) = alice_waits(&scratch, &state);
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(
        exit_code(&mut child, scratch.path()),
        130,
        "{}",
        run_log(scratch.path())
    );
    assert_eq!(scratch.read("LOG"), "one\nundo-one\n");
    assert!(!state.join("runs").join(&run).join("gate.json").exists());
    // Nothing waits any more.
    command(&scratch, &state, &["gates"], "bob").assert_contains("no gates waiting");
}

#[test]
fn approving_an_unknown_run_exits_2_with_a_hint() {
    let scratch = scratch(GATED);
    let state = scratch.file("state");
    command(
        &scratch,
        &state,
        &["approve", "20261202T100000Z-0000"],
        "bob",
    )
    .assert_exit(2)
    .assert_contains("no run `20261202T100000Z-0000`")
    .assert_contains("runbook gates");
    command(
        &scratch,
        &state,
        &["reject", "../etc", "--reason", "x"],
        "bob",
    )
    .assert_exit(2)
    .assert_contains("is not a run id");
    Run::command(["approve", "--help"])
        .output()
        .assert_success()
        .assert_contains("Exit codes:")
        .assert_contains("already decided");
}

#[test]
fn resume_waits_at_the_gate_again_after_it_expired() {
    let scratch = scratch(GATED);
    let state = scratch.file("state");
    scratch
        .run("gated.rhai")
        .args(["--wait-for-approval", "1s"])
        .state_dir(&state)
        .output()
        .assert_exit(3);
    let run = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .file_name()
        .to_string_lossy()
        .into_owned();
    let mut child = spawn(
        scratch.path(),
        &state,
        &["resume", &run, "--wait-for-approval", "10m"],
        "alice",
    );
    assert_eq!(waiting_run(&state, &mut child, scratch.path()), run);
    command(&scratch, &state, &["approve", &run], "bob").assert_success();
    assert_eq!(
        exit_code(&mut child, scratch.path()),
        0,
        "{}",
        run_log(scratch.path())
    );
    assert!(scratch.exists("FILE"));
    let decisions: Vec<String> = gate_events(&state, &run)
        .iter()
        .map(|event| event["decision"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(decisions, ["waiting", "expired", "waiting", "approved"]);
}

#[test]
fn four_eyes_must_be_true_or_false() {
    let scratch = scratch(GATED);
    scratch.write("runbook.toml", "[context.prod]\nfour_eyes = \"yes\"\n");
    scratch
        .run("gated.rhai")
        .context("prod")
        .output()
        .assert_exit(2)
        .assert_contains("context.prod.four_eyes")
        .assert_contains("must be true or false");
}
