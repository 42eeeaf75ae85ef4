//! `runbook run`: exit codes, params, `--output json`, rollbacks on failure,
//! and errors that point at the source.

use crate::harness::{Run, Scratch};

const PARAMS: &str = r#"//! Takes params.
//! @param version required  image tag
//! @param service default=backend  which deployment
//! @param note optional  free text
shell::run("touch RAN");
print("version=" + param("version"));
print("service=" + param("service"));
print("note=" + param("note"));
"#;

/// A failing step after a step, each with compensations appending to LOG.
const FAILING: &str = r#"//! Fails in its second step.
step("prepare", || {
    shell::run("echo prepare >> LOG");
    on_rollback(|| shell::run("echo undo-prepare >> LOG"));
});
step("change", || {
    shell::run("echo change >> LOG");
    on_rollback(|| shell::run("echo undo-change-1 >> LOG"));
    on_rollback(|| shell::run("echo undo-change-2 >> LOG"));
    fail("the change did not take");
});
shell::run("touch NEVER");
"#;

#[test]
fn a_clean_run_exits_0() {
    let scratch = Scratch::new();
    scratch.write(
        "ok.rhai",
        "//! Fine.\nstep(\"one\", || shell::run(\"touch DONE\"));\nprint(\"all good\");\n",
    );
    let output = scratch.run("ok.rhai").output();
    output.assert_success().assert_contains("finished in");
    assert_eq!(
        output.stdout,
        "all good\n",
        "stdout holds only what the script printed\n{}",
        output.report()
    );
    assert!(scratch.exists("DONE"));
}

#[test]
fn fail_exits_1() {
    let scratch = Scratch::new();
    scratch.write(
        "f.rhai",
        "//! Fails.\nfail(\"nope\");\nshell::run(\"touch AFTER\");\n",
    );
    let output = scratch.run("f.rhai").output();
    output
        .assert_exit(1)
        .assert_contains("error: nope")
        .assert_contains("f.rhai:2:1");
    assert!(!scratch.exists("AFTER"), "{}", output.report());
}

#[test]
fn a_failed_assert_exits_1() {
    let scratch = Scratch::new();
    scratch.write(
        "a.rhai",
        "//! Asserts.\nassert(1 + 1 == 3, \"arithmetic is off\");\n",
    );
    scratch
        .run("a.rhai")
        .output()
        .assert_exit(1)
        .assert_contains("arithmetic is off");
}

#[test]
fn a_failing_command_exits_1_with_its_exit_code() {
    let scratch = Scratch::new();
    scratch.write(
        "c.rhai",
        "//! A command fails.\nshell::run(\"echo oops >&2; exit 7\");\n",
    );
    scratch
        .run("c.rhai")
        .output()
        .assert_exit(1)
        .assert_contains("exited with code 7")
        .assert_contains("oops")
        .assert_contains("c.rhai:2:");
}

#[test]
fn missing_required_param_exits_2_before_anything_runs() {
    let scratch = Scratch::new();
    scratch.write("p.rhai", PARAMS);
    let output = scratch.run("p.rhai").output();
    output
        .assert_exit(2)
        .assert_contains("missing required param `version`")
        .assert_contains("version=VALUE");
    assert!(
        !scratch.exists("RAN"),
        "a write ran before the param check\n{}",
        output.report()
    );
}

#[test]
fn unknown_param_exits_2_with_the_declared_params() {
    let scratch = Scratch::new();
    scratch.write("p.rhai", PARAMS);
    let output = scratch
        .run("p.rhai")
        .param("version", "1")
        .param("verison", "1")
        .output();
    output
        .assert_exit(2)
        .assert_contains("unknown param `verison`")
        .assert_contains("version, service, note");
    assert!(!scratch.exists("RAN"), "{}", output.report());
    assert_cli_snapshot!("unknown_param", output.stderr);
}

#[test]
fn params_defaults_and_the_param_flag() {
    let scratch = Scratch::new();
    scratch.write("p.rhai", PARAMS);
    let output = scratch.run("p.rhai").param("version", "v1.4.2").output();
    output.assert_success();
    assert_eq!(
        output.stdout,
        "version=v1.4.2\nservice=backend\nnote=\n",
        "{}",
        output.report()
    );

    let output = scratch
        .run("p.rhai")
        .args(["--param", "version=v2", "--param", "note=a=b"])
        .output();
    output.assert_success();
    assert_eq!(
        output.stdout,
        "version=v2\nservice=backend\nnote=a=b\n",
        "{}",
        output.report()
    );
}

#[test]
fn a_malformed_param_is_a_usage_error() {
    let scratch = Scratch::new();
    scratch.write("p.rhai", PARAMS);
    let output = scratch.run("p.rhai").arg("=nothing").output();
    output.assert_exit(2).assert_contains("NAME=VALUE");
    assert!(!scratch.exists("RAN"));
}

#[test]
fn a_missing_file_exits_2() {
    let scratch = Scratch::new();
    scratch
        .run("missing.rhai")
        .output()
        .assert_exit(2)
        .assert_contains("missing.rhai");
}

#[test]
fn an_unknown_context_exits_2() {
    let scratch = Scratch::new();
    scratch.write("runbook.toml", "[context.dev]\ndescription = \"dev\"\n");
    scratch.write("c.rhai", "//! Context.\nshell::run(\"touch RAN\");\n");
    let output = scratch.run("c.rhai").context("prod").output();
    output
        .assert_exit(2)
        .assert_contains("no context `prod`")
        .assert_contains("dev");
    assert!(!scratch.exists("RAN"));
}

#[test]
fn the_context_is_found_next_to_the_runbook() {
    let scratch = Scratch::new();
    scratch.write(
        "runbook.toml",
        "[context.dev]\ndescription = \"dev\"\n[context.dev.vars]\ncolour = \"green\"\n",
    );
    scratch.write(
        "c.rhai",
        "//! Context.\nlet ctx = context();\nprint(ctx.name + \" \" + ctx.vars.colour);\n",
    );
    let output = Run::new(scratch.file("c.rhai")).context("dev").output();
    output.assert_success();
    assert_eq!(output.stdout, "dev green\n", "{}", output.report());
}

#[test]
fn json_output_is_only_json_events() {
    let scratch = Scratch::new();
    scratch.write("ok.rhai", "//! Fine.\nstep(\"one\", || shell::run(\"echo hi\"));\nprint(\"printed\");\nlog::info(\"logged\");\n");
    let output = scratch.run("ok.rhai").json().output();
    output.assert_success();
    let events = output.events();
    assert_eq!(
        events.first().unwrap()["event"],
        "run",
        "{}",
        output.report()
    );
    assert_eq!(events.first().unwrap()["mode"], "live");
    assert_eq!(events.first().unwrap()["runbook"], "ok.rhai");
    let end = events.last().unwrap();
    assert_eq!(end["event"], "end", "{}", output.report());
    assert_eq!(end["exit_code"], 0);
    assert_eq!(end["status"], "ok");
    let kinds: Vec<&str> = events
        .iter()
        .map(|event| event["event"].as_str().unwrap())
        .collect();
    for kind in ["step_start", "call", "step_end", "log"] {
        assert!(
            kinds.contains(&kind),
            "no `{kind}` event\n{}",
            output.report()
        );
    }
    assert!(
        output
            .events_of("log")
            .iter()
            .any(|event| event["message"] == "printed"),
        "print is a log event in JSON mode\n{}",
        output.report()
    );
}

#[test]
fn json_output_of_a_failed_run_ends_with_the_exit_code() {
    let scratch = Scratch::new();
    scratch.write("f.rhai", FAILING);
    let output = scratch.run("f.rhai").json().output();
    output.assert_exit(1);
    let events = output.events();
    assert_eq!(events.first().unwrap()["event"], "run");
    let end = events.last().unwrap();
    assert_eq!(end["event"], "end", "{}", output.report());
    assert_eq!(end["exit_code"], 1);
    assert_eq!(end["status"], "failed");
    assert_eq!(end["error"], "the change did not take");
    let failed: Vec<_> = output
        .events_of("step_end")
        .into_iter()
        .filter(|event| event["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["step"], "change");
}

#[test]
fn json_output_of_a_usage_error_prints_nothing_on_stdout() {
    let scratch = Scratch::new();
    scratch.write("p.rhai", PARAMS);
    let output = scratch.run("p.rhai").json().output();
    output.assert_exit(2);
    // Every stdout line (if any) is still JSON.
    let _ = output.events();
}

#[test]
fn a_failed_step_runs_every_compensation_newest_first() {
    let scratch = Scratch::new();
    scratch.write("f.rhai", FAILING);
    let output = scratch.run("f.rhai").output();
    output
        .assert_exit(1)
        .assert_contains("rolling back: 3 compensation(s), newest first");
    assert_eq!(
        scratch.read("LOG"),
        "prepare\nchange\nundo-change-2\nundo-change-1\nundo-prepare\n",
        "{}",
        output.report()
    );
    assert!(!scratch.exists("NEVER"), "{}", output.report());
}

#[test]
fn a_failing_compensation_does_not_stop_the_others() {
    let scratch = Scratch::new();
    scratch.write(
        "f.rhai",
        r#"//! A compensation fails.
step("change", || {
    on_rollback(|| shell::run("echo first-registered >> LOG"));
    on_rollback(|| fail("compensation broke"));
    fail("change failed");
});
"#,
    );
    let output = scratch.run("f.rhai").output();
    output.assert_exit(1).assert_contains("compensation broke");
    assert_eq!(
        scratch.read("LOG"),
        "first-registered\n",
        "{}",
        output.report()
    );
}

#[test]
fn error_points_at_file_line_and_column() {
    let scratch = Scratch::new();
    scratch.write("f.rhai", FAILING);
    let output = scratch.run("f.rhai").output();
    output
        .assert_exit(1)
        .assert_contains("f.rhai:10:5")
        .assert_contains("10 |     fail(\"the change did not take\");");
    let report = &output.stderr[output.stderr.find("error:").expect("an error report")..];
    let report: String = report
        .lines()
        .take_while(|line| !crate::harness::strip_time(line).starts_with('✗'))
        .collect::<Vec<_>>()
        .join("\n");
    assert_cli_snapshot!("error_report", report);
}

#[test]
fn human_output_of_a_failed_run() {
    let scratch = Scratch::new();
    scratch.write("f.rhai", FAILING);
    let output = scratch.run("f.rhai").output();
    output.assert_exit(1);
    assert_cli_snapshot!("failed_run_stderr", output.stderr);
}

#[test]
fn step_retries_until_success() {
    let scratch = Scratch::new();
    scratch.write(
        "r.rhai",
        r#"//! Retries.
let attempts = 0;
let value = step("flaky", #{retries: 3, backoff: "10ms"}, || {
    attempts += 1;
    if attempts < 3 { fail("attempt " + attempts); }
    attempts
});
print("succeeded on " + value);
"#,
    );
    let output = scratch.run("r.rhai").output();
    output
        .assert_success()
        .assert_contains("failed (attempt 1 of 4)");
    assert_eq!(output.stdout, "succeeded on 3\n", "{}", output.report());
}

#[test]
fn step_timeout_fails_the_step() {
    let scratch = Scratch::new();
    scratch.write(
        "t.rhai",
        "//! Times out.\nstep(\"slow\", #{timeout: \"200ms\"}, || shell::run(\"sleep 30\"));\nshell::run(\"touch AFTER\");\n",
    );
    let output = scratch.run("t.rhai").output();
    output
        .assert_exit(1)
        .assert_contains("timed out after 200ms");
    assert!(!scratch.exists("AFTER"));
}

#[test]
fn step_names_are_unique() {
    let scratch = Scratch::new();
    scratch.write(
        "s.rhai",
        "//! Twice.\nfor i in 0..2 { step(\"same\", || i); }\n",
    );
    scratch
        .run("s.rhai")
        .output()
        .assert_exit(2)
        .assert_contains("step `same` ran twice");
}

#[test]
fn main_help_documents_the_exit_codes() {
    let output = Run::command(["--help"]).output();
    output.assert_success();
    for line in [
        "0    ok",
        "1    a step failed",
        "2    usage or script error",
        "3    an approval gate was rejected",
        "4    locked",
        "130  interrupted",
    ] {
        output.assert_contains(line);
    }
}

#[test]
fn run_help_has_examples() {
    let output = Run::command(["run", "--help"]).output();
    output
        .assert_success()
        .assert_contains("Examples:")
        .assert_contains("runbook run examples/hello.rhai --approve")
        .assert_contains("--dry-run")
        .assert_contains("Exit codes:");
}

#[test]
fn no_arguments_is_a_usage_error() {
    Run::command(Vec::<&str>::new())
        .output()
        .assert_exit(2)
        .assert_contains("Usage:");
}

#[test]
fn version_prints_the_version() {
    Run::command(["--version"])
        .output()
        .assert_success()
        .assert_contains(env!("CARGO_PKG_VERSION"));
}

#[test]
fn ctrl_c_stops_the_call_rolls_back_and_exits_130() {
    let scratch = Scratch::new();
    scratch.write(
        "long.rhai",
        r#"//! Waits until interrupted.
step("long", || {
    on_rollback(|| shell::run("touch ROLLED_BACK"));
    log::info("waiting now");
    shell::run("sleep 60");
});
shell::run("touch AFTER");
"#,
    );
    let mut session = crate::harness::pty(
        &["run", "long.rhai"],
        scratch.path(),
        &scratch.file("home"),
        "xterm",
    );
    session.exp_string("waiting now").expect("the step started");
    session.send_control('c').expect("send Ctrl-C");
    assert_eq!(crate::harness::pty_exit(&mut session), 130);
    assert!(
        scratch.exists("ROLLED_BACK"),
        "the compensation did not run"
    );
    assert!(!scratch.exists("AFTER"), "the script went on after Ctrl-C");
}

#[test]
fn a_wrong_argument_names_the_parameter_of_the_form_that_was_called() {
    let scratch = Scratch::new();
    scratch.write("s.rhai", "//! Bad step.\nstep(\"x\", 42);\n");
    let output = scratch.run("s.rhai").output();
    output
        .assert_exit(2)
        .assert_contains("`step`: argument `fn` must be a closure `|| { ... }`, got an integer")
        .assert_contains("s.rhai:2:1");
    scratch.write("o.rhai", "//! Bad options.\nstep(\"x\", 42, || 1);\n");
    scratch
        .run("o.rhai")
        .output()
        .assert_exit(2)
        .assert_contains("`step`: argument `opts` must be a map");
}
