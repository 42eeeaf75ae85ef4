//! Rhai limits are product defaults: each one hit is an error naming the
//! limit and the script position, never a crash; Ctrl-C stops a script that
//! never ends.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Scratch, binary};

fn dry(scratch: &Scratch, file: &str) -> crate::harness::Output {
    scratch
        .run(file)
        .dry_run()
        .offline()
        .state_dir(scratch.file("state"))
        .output()
}

#[test]
fn endless_recursion_names_the_call_level_limit() {
    let scratch = Scratch::new();
    scratch.write("rec.rhai", "fn f(n) { f(n + 1) }\nf(0);\n");
    dry(&scratch, "rec.rhai")
        .assert_exit(1)
        .assert_contains("calls nested too deeply: the limit is 64 call levels")
        .assert_contains("rec.rhai:2:1")
        .assert_contains("hint:");
}

/// Recursion inside nested expressions at every level (the case that
/// overflowed a 2 MiB thread stack and aborted): the limits fit the stack.
#[test]
fn recursion_inside_deep_expressions_stays_within_the_stack() {
    let scratch = Scratch::new();
    let mut body = "f(n - 1)".to_owned();
    for _ in 0..27 {
        body = format!("1 + ({body})");
    }
    let mut top = "f(62)".to_owned();
    for _ in 0..60 {
        top = format!("1 + ({top})");
    }
    scratch.write(
        "deep.rhai",
        &format!(
            "fn f(n) {{ if n <= 0 {{ return 0; }} let x = {body}; x }}\nlet y = {top};\nprint(`y=${{y}}`);\n"
        ),
    );
    dry(&scratch, "deep.rhai")
        .assert_success()
        .assert_contains("y=1734");
    // And past the limits: an error, not a stack overflow.
    scratch.write(
        "deeper.rhai",
        "fn f(n) { if n > 0 { 1 + (1 + (1 + (1 + (1 + (1 + (1 + (1 + f(n + 1)))))))) } else { f(n + 1) } }\nf(1);\n",
    );
    dry(&scratch, "deeper.rhai")
        .assert_exit(1)
        .assert_contains("the limit is 64 call levels");
}

#[test]
fn an_expression_nested_too_deeply_is_a_script_error_with_the_limits() {
    let scratch = Scratch::new();
    let text = format!("let x = {}1{};\n", "(".repeat(200), ")".repeat(200));
    scratch.write("nest.rhai", &text);
    dry(&scratch, "nest.rhai")
        .assert_exit(2)
        .assert_contains("expression nested too deeply: the limits are 128 levels")
        .assert_contains("nest.rhai:1:")
        .assert_contains("split it with `let`");
    // `check` says the same without running anything.
    scratch
        .command(["check", "nest.rhai"])
        .output()
        .assert_exit(2)
        .assert_contains("expression nested too deeply");
}

#[test]
fn a_huge_string_hits_the_string_size_limit() {
    let scratch = Scratch::new();
    scratch.write("big.rhai", "let s = \"x\";\nloop { s += s; }\n");
    dry(&scratch, "big.rhai")
        .assert_exit(1)
        .assert_contains("value too large: over the string size limit (64 MiB")
        .assert_contains("big.rhai:2:")
        .assert_contains("hint:");
}

#[test]
fn ctrl_c_stops_an_endless_loop_with_exit_130() {
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let scratch = Scratch::new();
        scratch.write("spin.rhai", "print(\"spinning\");\nloop {}\n");
        let log = std::fs::File::create(scratch.file("log")).unwrap();
        let mut child = Command::new(binary())
            .args(["run", "spin.rhai", "--dry-run", "--offline"])
            .current_dir(scratch.path())
            .env("RUNBOOK_STATE_DIR", scratch.file("state"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let started = Instant::now();
        while !scratch.read("log").contains("spinning") {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{}",
                scratch.read("log")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("{signal} did not stop `loop {{}}`\n{}", scratch.read("log"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(code), "{}", scratch.read("log"));
    }
}
