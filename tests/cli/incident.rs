//! Incident mode under a pseudo-terminal, against the lab: a REPL session is
//! a journaled, gated run (a protected context asks for its name before a
//! write, `:unlock`, `:dry-run on` plans instead of changing, Ctrl-C stops the
//! call in flight and keeps the session, `:save` writes a runbook draft that
//! checks and runs, `:run --step`), and bad input at every prompt is a
//! message, never the end of the session.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rexpect::session::PtySession;
use runbook_lab::Lab;

use crate::harness::{Scratch, pty_exit, pty_with_env};

fn kube_lab() -> Lab {
    crate::k8s::lab()
}

/// `runbook repl --context CONTEXT` in the lab, on a pty.
fn repl(lab: &Lab, scratch: &Scratch, context: &str) -> PtySession {
    let mut session = pty_with_env(
        &["repl", "--context", context],
        scratch.path(),
        &scratch.file("home"),
        "xterm",
        &lab.env(),
    );
    session.exp_string("REPL").expect("the banner");
    session
        .exp_string(&format!("{context}> "))
        .expect("the first prompt");
    session
}

/// Send a line, expect `expected` after it.
fn expect_after(session: &mut PtySession, line: &str, expected: &str) {
    // The line editor may drop typeahead sent before its prompt is up.
    std::thread::sleep(Duration::from_millis(100));
    session.send_line(line).expect("send a line");
    session
        .exp_string(expected)
        .unwrap_or_else(|error| panic!("after {line:?}: no {expected:?}: {error}"));
}

/// Ctrl-D: the session ends with exit 0.
fn leave(mut session: PtySession) {
    session.send_control('d').expect("Ctrl-D");
    assert_eq!(pty_exit(&mut session), 0, "the REPL's exit code");
}

fn replicas(lab: &Lab, namespace: &str, name: &str) -> i64 {
    lab.kube()
        .and_then(|kube| kube.get("deployments", namespace, name))
        .and_then(|deployment| deployment["spec"]["replicas"].as_i64())
        .expect("the deployment")
}

/// Every journal under the lab's state dir, as text.
fn journals(state: &Path) -> Vec<(PathBuf, String)> {
    let Ok(runs) = std::fs::read_dir(state.join("runs")) else {
        return Vec::new();
    };
    runs.filter_map(Result::ok)
        .map(|run| run.path().join("journal.jsonl"))
        .filter_map(|path| std::fs::read_to_string(&path).ok().map(|text| (path, text)))
        .collect()
}

#[test]
fn a_write_in_a_protected_session_waits_for_the_typed_name() {
    let lab = kube_lab();
    let scratch = Scratch::new();
    let before = replicas(&lab, "production", "frontend");
    let mut session = repl(&lab, &scratch, "lab-protected");
    expect_after(
        &mut session,
        "k8s::scale(\"frontend\", 5)",
        "type `lab-protected` to run it",
    );
    expect_after(&mut session, "lab-protected-ish", "was not confirmed");
    assert_eq!(
        replicas(&lab, "production", "frontend"),
        before,
        "refused, yet changed"
    );
    expect_after(
        &mut session,
        "k8s::scale(\"frontend\", 5);",
        "type `lab-protected` to run it",
    );
    expect_after(&mut session, "lab-protected", "lab-protected> ");
    assert_eq!(replicas(&lab, "production", "frontend"), 5);
    // `:unlock` after the name: writes run without asking, the prompt counts down.
    expect_after(&mut session, ":unlock 5m", "type `lab-protected` to unlock");
    expect_after(&mut session, "lab-protected", "unlocked for 5m");
    session
        .exp_string("[unlocked 4:5")
        .expect("the countdown in the prompt");
    expect_after(
        &mut session,
        &format!("k8s::scale(\"frontend\", {before});"),
        "[unlocked",
    );
    assert_eq!(replicas(&lab, "production", "frontend"), before);
    expect_after(&mut session, ":plan", "2 write(s) so far");
    leave(session);

    // The session is a run of kind repl: listed, shown, verified.
    let state = lab.state_dir();
    let sessions = journals(&state);
    assert_eq!(sessions.len(), 1, "one journal for the session");
    let (path, journal) = &sessions[0];
    assert!(journal.contains("\"kind\":\"repl\""), "{journal}");
    assert!(journal.contains("\"event\":\"input\""), "{journal}");
    assert!(journal.contains("\"decision\":\"rejected\""), "{journal}");
    assert!(journal.contains("unlock writes for 5m"), "{journal}");
    let run = path
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let runs = crate::harness::Run::command(["runs", "--kind", "repl"])
        .envs(lab.env())
        .output();
    runs.assert_success()
        .assert_contains(&run)
        .assert_contains("repl");
    crate::harness::Run::command(["runs", "--kind", "run"])
        .envs(lab.env())
        .output()
        .assert_not_contains(&run);
    crate::harness::Run::command(["audit", "verify", &run])
        .envs(lab.env())
        .output()
        .assert_success()
        .assert_contains("hash chain intact");
    crate::harness::Run::command(["show", &run])
        .envs(lab.env())
        .output()
        .assert_success()
        .assert_contains("REPL session")
        .assert_contains("› k8s::scale(\"frontend\", 5)");
}

#[test]
fn without_a_terminal_a_protected_write_is_refused() {
    let lab = kube_lab();
    let before = replicas(&lab, "production", "frontend");
    let output = crate::harness::Run::command(["repl", "--context", "lab-protected"])
        .envs(lab.env())
        .stdin("k8s::scale(\"frontend\", 7)\n")
        .output();
    output.assert_contains("there is no terminal to confirm it on");
    assert_eq!(replicas(&lab, "production", "frontend"), before);
}

#[test]
fn dry_run_in_a_session_plans_with_the_diff_and_changes_nothing() {
    let lab = kube_lab();
    let scratch = Scratch::new();
    let dump = lab.kube().unwrap().dump();
    let mut session = repl(&lab, &scratch, "lab");
    expect_after(&mut session, ":dry-run on", "dry-run on");
    session
        .exp_string("lab [dry-run]> ")
        .expect("the dry-run prompt");
    session
        .send_line("k8s::set_image(\"backend\", \"registry.lab/backend:v7\");")
        .unwrap();
    session.exp_string("lab [dry-run]> ").unwrap();
    expect_after(
        &mut session,
        ":plan",
        "k8s::set_image(\"backend\", \"registry.lab/backend:v7\")",
    );
    session
        .exp_string("+        image: registry.lab/backend:v7")
        .expect("the diff");
    expect_after(&mut session, ":dry-run off", "lab> ");
    leave(session);
    assert_eq!(
        lab.kube().unwrap().dump(),
        dump,
        "a dry-run changed the cluster"
    );
}

#[test]
fn ctrl_c_stops_a_remote_command_and_keeps_the_session() {
    let lab = Lab::builder().ssh_hosts(1).start().expect("the lab");
    let scratch = Scratch::new();
    let marker = scratch.file("late");
    let mut session = repl(&lab, &scratch, "lab");
    session.send_line("let a = 41;").unwrap();
    session.exp_string("lab> ").unwrap();
    session
        .send_line(&format!(
            "ssh::read(\"host01\", \"sleep 3; touch {}\")",
            marker.display()
        ))
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    session.send_control('c').unwrap();
    session.exp_string("interrupted").expect("the call stops");
    session.exp_string("lab> ").unwrap();
    expect_after(&mut session, "a + 1", "42");
    // Ctrl-C twice at an empty prompt: the line is cleared, the session goes on.
    session.send_control('c').unwrap();
    session.exp_string("lab> ").unwrap();
    session.send_control('c').unwrap();
    session.exp_string("lab> ").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    expect_after(&mut session, "a", "41");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(!marker.exists(), "the remote command outlived Ctrl-C");
    leave(session);
}

#[test]
fn bad_input_at_the_prompt_is_a_message() {
    let lab = Lab::start().expect("the lab");
    let scratch = Scratch::new();
    let mut session = repl(&lab, &scratch, "lab");
    expect_after(&mut session, ":nope", "unknown command `:nope`");
    expect_after(&mut session, "let x = ;", "syntax error");
    expect_after(&mut session, ":save", "needs a file");
    expect_after(
        &mut session,
        ":run missing.rhai",
        "cannot read `missing.rhai`",
    );
    expect_after(&mut session, ":unlock soon", "not protected");
    expect_after(&mut session, "let big = \"xyz\";", "lab> ");
    expect_after(&mut session, ":help big", "a variable of this session");
    expect_after(&mut session, ":help :plan", "the writes planned");
    leave(session);
}

#[test]
fn a_huge_paste_is_evaluated_like_any_line() {
    // Without a terminal the line editor reads plain lines, so a huge one
    // arrives whole (on a pty, rustyline redraws per character).
    let lab = Lab::start().expect("the lab");
    let huge = format!("let big = \"{}\";\nbig.len()\n", "x".repeat(200_000));
    crate::harness::Run::command(["repl", "--context", "lab"])
        .envs(lab.env())
        .stdin(huge)
        .output()
        .assert_success()
        .assert_contains("200000");
}

#[test]
fn save_writes_a_draft_that_checks_and_runs() {
    let lab = Lab::start().expect("the lab");
    let scratch = Scratch::new();
    let mut session = repl(&lab, &scratch, "lab");
    session.send_line("let name = \"done\";").unwrap();
    session.exp_string("lab> ").unwrap();
    session
        .send_line("shell::run([\"touch\", name + \".txt\"]);")
        .unwrap();
    session.exp_string("lab> ").unwrap();
    expect_after(&mut session, "let n = 40 + 2;", "lab> ");
    expect_after(&mut session, ":save draft.rhai", "wrote draft.rhai");
    leave(session);
    let draft = scratch.read("draft.rhai");
    assert!(draft.contains("//! @param name default=done"), "{draft}");
    assert!(draft.contains("step(\"shell::run #1\""), "{draft}");
    std::fs::remove_file(scratch.file("done.txt")).unwrap();
    crate::harness::Run::command(["check", "draft.rhai"])
        .current_dir(scratch.path())
        .envs(lab.env())
        .output()
        .assert_success();
    crate::harness::Run::command(["run", "draft.rhai", "name=again", "--context", "lab"])
        .current_dir(scratch.path())
        .envs(lab.env())
        .output()
        .assert_success();
    assert!(
        scratch.exists("again.txt"),
        "the draft did not run its step"
    );
}

#[test]
fn run_with_step_asks_before_every_step() {
    let lab = Lab::start().expect("the lab");
    let scratch = Scratch::new();
    scratch.write(
        "two.rhai",
        "//! Two steps.\n//! @param tag required  a tag\nstep(\"first\", || shell::run([\"touch\", param(\"tag\") + \"-1\"]));\nstep(\"second\", || shell::run([\"touch\", param(\"tag\") + \"-2\"]));\n",
    );
    let mut session = repl(&lab, &scratch, "lab");
    expect_after(&mut session, ":run two.rhai", "needs tag");
    expect_after(
        &mut session,
        ":run two.rhai tag=t --step",
        "next step `first`",
    );
    expect_after(&mut session, "x", "is not an answer here");
    expect_after(&mut session, "s", "next step `second`");
    expect_after(&mut session, "c", "finished");
    leave(session);
    assert!(!scratch.exists("t-1"), "a skipped step ran");
    assert!(scratch.exists("t-2"), "a continued step did not run");
}

#[test]
fn a_secret_never_reaches_the_session_journal() {
    let lab = Lab::start().expect("the lab");
    let scratch = Scratch::new();
    let token = lab
        .env()
        .into_iter()
        .find(|(name, _)| name == "RUNBOOK_LAB_API_TOKEN")
        .map(|(_, value)| value)
        .expect("the lab's token");
    let mut session = repl(&lab, &scratch, "lab");
    expect_after(&mut session, "let t = secret(\"api_token\");", "lab> ");
    expect_after(&mut session, "t", "***");
    expect_after(&mut session, "shell::run([\"echo\", t]).stdout", "***");
    expect_after(&mut session, "\"token: \" + t", "token: ***");
    leave(session);
    for (path, journal) in journals(&lab.state_dir()) {
        assert!(
            !journal.contains(&token),
            "{} holds the secret",
            path.display()
        );
    }
}
