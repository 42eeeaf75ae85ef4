//! Approval gates: without a terminal they fail closed (exit 3) unless the run
//! has `--approve`; a protected context also needs `--confirm CONTEXT`; a
//! rejected gate runs the compensations registered before it, newest first.

use crate::harness::{Scratch, pty, pty_exit};

/// Two steps with compensations that append to LOG, a gate, then a write.
const GATED: &str = r#"//! Gated change.
step("one", || {
    shell::run("echo one >> LOG");
    on_rollback(|| shell::run("echo undo-one >> LOG"));
});
step("two", || {
    on_rollback(|| shell::run("echo undo-two >> LOG"));
});
approve("Go on with the change?");
shell::run("touch FILE");
"#;

const PROTECTED_CONFIG: &str = r#"[context.prod]
protected = true
description = "production"

[context.dev]
description = "development"
"#;

fn gated() -> Scratch {
    let scratch = Scratch::new();
    scratch.write("gated.rhai", GATED);
    scratch.write("runbook.toml", PROTECTED_CONFIG);
    scratch
}

#[test]
fn without_approve_the_gate_fails_closed() {
    let scratch = gated();
    let output = scratch.run("gated.rhai").stdin_null().output();
    output
        .assert_exit(3)
        .assert_contains("approval needed: Go on with the change?")
        .assert_contains("gated.rhai:9:1")
        .assert_contains("--approve");
    assert!(
        !scratch.exists("FILE"),
        "a step after the rejected gate ran\n{}",
        output.report()
    );
}

#[test]
fn rejected_gate_runs_compensations_newest_first() {
    let scratch = gated();
    let output = scratch.run("gated.rhai").output();
    output.assert_exit(3);
    assert_eq!(
        scratch.read("LOG"),
        "one\nundo-two\nundo-one\n",
        "{}",
        output.report()
    );
    // The output reports them in the same order.
    let lines = output.stderr_lines();
    let position = |needle: &str| lines.iter().position(|line| line.contains(needle));
    let two = position("rollback for two ran").expect("rollback of two reported");
    let one = position("rollback for one ran").expect("rollback of one reported");
    assert!(two < one, "rollbacks out of order\n{}", output.report());
}

#[test]
fn with_approve_the_run_goes_on() {
    let scratch = gated();
    let output = scratch.run("gated.rhai").approve().output();
    output.assert_success().assert_contains("approved by");
    assert!(scratch.exists("FILE"), "{}", output.report());
    assert_eq!(
        scratch.read("LOG"),
        "one\n",
        "no compensation may run on success\n{}",
        output.report()
    );
}

#[test]
fn stdin_answers_are_ignored_without_a_terminal() {
    // Even a "yes" on a pipe does not approve: only a terminal or --approve does.
    let scratch = gated();
    let output = scratch.run("gated.rhai").stdin("y\n").output();
    output.assert_exit(3);
    assert!(!scratch.exists("FILE"), "{}", output.report());
}

#[test]
fn protected_context_needs_confirm() {
    let scratch = gated();
    let config = scratch.file("runbook.toml");

    let output = scratch
        .run("gated.rhai")
        .config(&config)
        .context("prod")
        .approve()
        .output();
    output.assert_exit(3).assert_contains("--confirm prod");
    assert!(
        !scratch.exists("FILE"),
        "--approve alone passed a protected gate\n{}",
        output.report()
    );

    let output = scratch
        .run("gated.rhai")
        .config(&config)
        .context("prod")
        .approve()
        .confirm("wrong")
        .output();
    output.assert_exit(3);
    assert!(
        !scratch.exists("FILE"),
        "--confirm with the wrong name passed\n{}",
        output.report()
    );

    let output = scratch
        .run("gated.rhai")
        .config(&config)
        .context("prod")
        .approve()
        .confirm("prod")
        .output();
    output.assert_success();
    assert!(scratch.exists("FILE"), "{}", output.report());
}

#[test]
fn unprotected_context_needs_no_confirm() {
    let scratch = gated();
    let output = scratch
        .run("gated.rhai")
        .config(scratch.file("runbook.toml"))
        .context("dev")
        .approve()
        .output();
    output.assert_success();
    assert!(scratch.exists("FILE"));
}

#[test]
fn confirm_needs_approve() {
    let scratch = gated();
    let output = scratch.run("gated.rhai").confirm("prod").output();
    output.assert_exit(2);
    assert!(
        !scratch.exists("LOG"),
        "a usage error must run nothing\n{}",
        output.report()
    );
}

#[test]
fn gate_decision_and_approver_are_in_json_events() {
    let scratch = gated();
    let output = scratch
        .run("gated.rhai")
        .approve()
        .json()
        .env("RUNBOOK_APPROVER", "alice")
        .output();
    output.assert_success();
    let gates = output.events_of("gate");
    assert_eq!(gates.len(), 1, "{}", output.report());
    assert_eq!(gates[0]["decision"], "approved");
    assert_eq!(gates[0]["approver"], "alice");
    assert_eq!(gates[0]["message"], "Go on with the change?");
    assert_eq!(gates[0]["at"], "gated.rhai:9:1");
    assert!(gates[0]["time"].is_string());

    let output = scratch
        .run("gated.rhai")
        .json()
        .env("RUNBOOK_APPROVER", "alice")
        .output();
    output.assert_exit(3);
    let gates = output.events_of("gate");
    assert_eq!(gates.len(), 1, "{}", output.report());
    assert_eq!(gates[0]["decision"], "rejected");
    assert_eq!(gates[0]["approver"], "alice");
    let end = output.events().pop().unwrap();
    assert_eq!(end["event"], "end");
    assert_eq!(end["status"], "refused");
    assert_eq!(end["exit_code"], 3);
    // The compensations are events too, newest first.
    let rollbacks: Vec<String> = output
        .events_of("rollback")
        .iter()
        .map(|event| event["step"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(rollbacks, ["two", "one"], "{}", output.report());
}

#[test]
fn approver_shows_in_human_output() {
    let scratch = gated();
    let output = scratch
        .run("gated.rhai")
        .approve()
        .env("RUNBOOK_APPROVER", "alice")
        .output();
    output
        .assert_success()
        .assert_contains("approved by alice (--approve): Go on with the change?");
}

#[test]
fn protected_approval_records_how() {
    let scratch = gated();
    let output = scratch
        .run("gated.rhai")
        .config(scratch.file("runbook.toml"))
        .context("prod")
        .approve()
        .confirm("prod")
        .json()
        .env("RUNBOOK_APPROVER", "alice")
        .output();
    output.assert_success();
    let gates = output.events_of("gate");
    assert_eq!(gates[0]["decision"], "approved", "{}", output.report());
    assert_eq!(gates[0]["how"], "--approve --confirm prod");
}

#[test]
fn no_rollback_skips_compensations() {
    let scratch = gated();
    let output = scratch.run("gated.rhai").arg("--no-rollback").output();
    output.assert_exit(3).assert_contains("skipped");
    assert_eq!(scratch.read("LOG"), "one\n", "{}", output.report());
}

#[test]
fn rejected_gate_human_output() {
    let scratch = gated();
    let output = scratch
        .run("gated.rhai")
        .env("RUNBOOK_APPROVER", "alice")
        .output();
    output.assert_exit(3);
    assert_cli_snapshot!("rejected_gate_stderr", output.stderr);
}

const MENU: &str = "[a]pprove  [r]eject  [i]nspect  [p]lan  [?]help";

/// `runbook run gated.rhai ARGS...` on a terminal, at its gate's menu.
fn gate_on_a_terminal(scratch: &Scratch, args: &[&str]) -> rexpect::session::PtySession {
    let mut command = vec!["run", "gated.rhai"];
    command.extend_from_slice(args);
    let mut session = pty(&command, scratch.path(), &scratch.file("home"), "xterm");
    session
        .exp_string(MENU)
        .unwrap_or_else(|error| panic!("no gate menu: {error}"));
    session
}

/// Send `line`, then expect `next` in what follows.
fn answer(session: &mut rexpect::session::PtySession, line: &str, next: &str) {
    session.send_line(line).expect("answer");
    session
        .exp_string(next)
        .unwrap_or_else(|error| panic!("after {line:?}: no {next:?}: {error}"));
}

#[test]
fn terminal_gate_approved_with_a() {
    let scratch = gated();
    let mut session = gate_on_a_terminal(&scratch, &[]);
    session.send_line("a").unwrap();
    assert_eq!(pty_exit(&mut session), 0);
    assert!(scratch.exists("FILE"));
    assert_eq!(scratch.read("LOG"), "one\n");
}

#[test]
fn terminal_gate_rejected_with_a_reason_runs_compensations() {
    let scratch = gated();
    let mut session = gate_on_a_terminal(&scratch, &[]);
    answer(&mut session, "r", "reason (required)");
    // An empty reason is asked again.
    answer(&mut session, "", "a rejection needs a reason");
    session.send_line("the backup is missing").unwrap();
    assert_eq!(pty_exit(&mut session), 3);
    assert!(!scratch.exists("FILE"));
    assert_eq!(scratch.read("LOG"), "one\nundo-two\nundo-one\n");
    // The reason is journaled with the decision.
    let runs = scratch.file("home/state/runbook/runs");
    let journal: String = std::fs::read_dir(&runs)
        .unwrap()
        .filter_map(Result::ok)
        .map(|run| std::fs::read_to_string(run.path().join("journal.jsonl")).unwrap_or_default())
        .collect();
    assert!(journal.contains("the backup is missing"), "{journal}");
}

#[test]
fn unknown_answers_and_help_ask_again() {
    let scratch = gated();
    let mut session = gate_on_a_terminal(&scratch, &[]);
    answer(&mut session, "?", "inspect: a REPL in the paused run");
    answer(&mut session, "", MENU);
    answer(&mut session, "maybe", "`maybe` is not an answer here");
    answer(&mut session, "p", "1 write(s) ran so far");
    session.send_line("a").unwrap();
    assert_eq!(pty_exit(&mut session), 0);
    assert!(scratch.exists("FILE"));
}

#[test]
fn inspect_sees_the_run_and_reject_ends_it() {
    let scratch = gated();
    // A variable of the run, computed before its gate.
    scratch.write(
        "gated.rhai",
        &GATED.replace("approve(", "let current = \"v1-\" + \"current\";\napprove("),
    );
    let mut session = gate_on_a_terminal(&scratch, &[]);
    answer(&mut session, "i", "inspect> ");
    // A run variable, computed before the gate, is there.
    answer(&mut session, "current", "v1-current");
    answer(&mut session, "current.len() * 2", "20");
    // Bad input is a message, not the end.
    answer(&mut session, "let x = (", "error: syntax error");
    answer(&mut session, ":nope", "unknown command `:nope`");
    answer(&mut session, ":reject", "needs a reason");
    session.send_line(":reject not today").unwrap();
    assert_eq!(pty_exit(&mut session), 3);
    assert!(!scratch.exists("FILE"));
    assert_eq!(scratch.read("LOG"), "one\nundo-two\nundo-one\n");
}

#[test]
fn terminal_gate_of_a_protected_context_needs_the_typed_name() {
    // runbook.toml sits next to gated.rhai: found without RUNBOOK_CONFIG.
    let scratch = gated();
    let args = ["--context", "prod"];
    let mut session = gate_on_a_terminal(&scratch, &args);
    answer(&mut session, "a", "type `prod` to approve");
    // `y` is not the context's name: not approved, asked again.
    answer(&mut session, "y", "not approved: that was not `prod`");
    answer(&mut session, "a", "type `prod` to approve");
    session.send_line("prod").unwrap();
    assert_eq!(pty_exit(&mut session), 0);
    assert!(scratch.exists("FILE"));
}
