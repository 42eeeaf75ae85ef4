//! `runbook repl` under a pseudo-terminal: evaluation, the stdlib,
//! multi-line input, `:help`, Ctrl-D, and the history file.

use rexpect::session::PtySession;

use crate::harness::{Scratch, pty, pty_exit};

const PROMPT: &str = "no context> ";

/// Start `runbook repl` on a pty with HOME and its state (history) in `scratch`.
fn spawn(scratch: &Scratch) -> PtySession {
    let mut session = pty(&["repl"], scratch.path(), &scratch.file("home"), "xterm");
    session.exp_string("REPL").expect("the banner");
    session.exp_string(PROMPT).expect("the first prompt");
    session
}

/// Send a line and wait for `expected` in what follows (a value is on a
/// line of its own: `"\n42\r\n"`).
fn eval(session: &mut PtySession, line: &str, expected: &str) -> String {
    session.send_line(line).expect("send a line");
    let before = session
        .exp_string(expected)
        .unwrap_or_else(|error| panic!("after {line:?}: no {expected:?}: {error}"));
    session
        .exp_string(PROMPT)
        .unwrap_or_else(|error| panic!("after {line:?}: no prompt: {error}"));
    before
}

/// Ctrl-D at the prompt: the REPL exits with code 0.
fn quit(mut session: PtySession) {
    session.send_control('d').expect("send Ctrl-D");
    assert_eq!(
        pty_exit(&mut session),
        0,
        "the REPL's exit code after Ctrl-D"
    );
}

#[test]
fn evaluates_expressions_and_stdlib_calls() {
    let scratch = Scratch::new();
    let mut session = spawn(&scratch);
    eval(&mut session, "40 + 2", "\n42\r\n");
    eval(&mut session, "1 + 2", "\n3\r\n");
    eval(&mut session, "json::stringify(#{a: 1})", "\n{\"a\":1}\r\n");
    eval(&mut session, "let greeting = \"hel\" + \"lo\";", "");
    eval(&mut session, "greeting.len()", "\n5\r\n");
    quit(session);
}

#[test]
fn continues_open_brackets_on_the_next_line() {
    let scratch = Scratch::new();
    let mut session = spawn(&scratch);
    session.send_line("let f = |x| {").unwrap();
    session.send_line("x * 2").unwrap();
    session.send_line("};").unwrap();
    session
        .exp_string(PROMPT)
        .expect("the prompt after the closure");
    eval(&mut session, "f.call(21)", "\n42\r\n");
    quit(session);
}

#[test]
fn help_shows_a_functions_doc() {
    let scratch = Scratch::new();
    let mut session = spawn(&scratch);
    eval(&mut session, ":help shell::run", "effect: write");
    eval(&mut session, ":help", ":quit");
    eval(
        &mut session,
        ":help nope_nothing",
        "nothing called `nope_nothing`",
    );
    quit(session);
}

#[test]
fn errors_do_not_end_the_session() {
    let scratch = Scratch::new();
    let mut session = spawn(&scratch);
    eval(&mut session, "fail(\"boom\")", "boom");
    eval(&mut session, "let y = 1 +;", "syntax error");
    eval(&mut session, "6 * 7", "\n42\r\n");
    quit(session);
}

#[test]
fn ctrl_d_exits_0_and_writes_history() {
    let scratch = Scratch::new();
    let mut session = spawn(&scratch);
    eval(&mut session, "40 + 2", "\n42\r\n");
    quit(session);
    let history = scratch.read("home/state/runbook/history");
    assert!(history.contains("40 + 2"), "history file: {history:?}");
}

#[test]
fn quit_command_exits_0() {
    let scratch = Scratch::new();
    let mut session = spawn(&scratch);
    session.send_line(":quit").unwrap();
    assert_eq!(pty_exit(&mut session), 0);
}

#[test]
fn banner_shows_on_a_dumb_terminal() {
    let scratch = Scratch::new();
    let mut session = pty(&["repl"], scratch.path(), &scratch.file("home"), "dumb");
    session.exp_string("REPL").expect("the banner");
    session.exp_string(PROMPT).expect("the prompt");
    quit(session);
}
