//! `--dry-run` runs reads and lists writes in a numbered plan without running
//! them; `--dry-run --offline` touches nothing and answers reads from
//! `--fixtures` (or typed placeholders).

use crate::harness::Scratch;

/// A read that leaves a trace (READFILE), a write (FILE) inside a step, and a
/// read whose value the script prints.
const PROBE: &str = r#"//! Dry-run probe: a read that leaves a trace, a write, a printed read.
shell::read("touch READFILE");
step("make the file", || {
    shell::run("touch FILE");
});
let kernel = shell::read("uname -s").stdout;
kernel.trim();
print("kernel=" + kernel);
"#;

const FIXTURES: &str = r#"'shell::read("uname -s")': {stdout: "Plan9\n"}
"#;

#[test]
fn dry_run_runs_reads_and_plans_writes() {
    let scratch = Scratch::new();
    scratch.write("probe.rhai", PROBE);
    let output = scratch.run("probe.rhai").dry_run().output();
    output
        .assert_success()
        .assert_contains("Plan: 1 change, 0 approval gates")
        .assert_contains(r#"1. shell::run("touch FILE")"#);
    assert!(
        scratch.exists("READFILE"),
        "the read did not run in a dry-run\n{}",
        output.report()
    );
    assert!(
        !scratch.exists("FILE"),
        "the write ran in a dry-run\n{}",
        output.report()
    );
    // The read's real value reached the script.
    let kernel = std::process::Command::new("uname")
        .arg("-s")
        .output()
        .expect("uname");
    let kernel = String::from_utf8_lossy(&kernel.stdout).trim().to_owned();
    output.assert_contains(&format!("kernel={kernel}"));
    // The plan is data: on stdout, not mixed into the progress on stderr.
    let start = output.stdout.find("Plan:");
    assert!(
        start.is_some() && !output.stderr.contains("Plan:"),
        "the plan is not on stdout\n{}",
        output.report()
    );
    let plan = &output.stdout[start.unwrap()..];
    assert_cli_snapshot!("plan_one_change", plan);
}

#[test]
fn dry_run_offline_touches_nothing_and_uses_fixtures() {
    let scratch = Scratch::new();
    scratch.write("probe.rhai", PROBE);
    scratch.write("fixtures.yaml", FIXTURES);
    let output = scratch
        .run("probe.rhai")
        .dry_run()
        .offline()
        .fixtures("fixtures.yaml")
        .output();
    output
        .assert_success()
        .assert_contains("kernel=Plan9")
        .assert_contains("Plan: 1 change");
    assert!(
        !scratch.exists("READFILE"),
        "a read ran in an offline dry-run\n{}",
        output.report()
    );
    assert!(
        !scratch.exists("FILE"),
        "a write ran in an offline dry-run\n{}",
        output.report()
    );
}

#[test]
fn dry_run_offline_without_fixture_returns_a_placeholder() {
    let scratch = Scratch::new();
    scratch.write("probe.rhai", PROBE);
    let output = scratch
        .run("probe.rhai")
        .dry_run()
        .offline()
        .json()
        .output();
    output.assert_success();
    assert!(!scratch.exists("READFILE"));
    let reads: Vec<String> = output
        .events_of("call")
        .iter()
        .filter(|event| event["function"] == "shell::read")
        .map(|event| event["outcome"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(reads, ["placeholder", "placeholder"], "{}", output.report());
}

#[test]
fn fixture_outcome_is_reported_in_json() {
    let scratch = Scratch::new();
    scratch.write("probe.rhai", PROBE);
    scratch.write("fixtures.yaml", FIXTURES);
    let output = scratch
        .run("probe.rhai")
        .dry_run()
        .offline()
        .fixtures("fixtures.yaml")
        .json()
        .output();
    output.assert_success();
    let calls = output.events_of("call");
    let outcome = |args: &str| {
        calls
            .iter()
            .find(|event| event["args"][0] == args)
            .map(|event| event["outcome"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(
        outcome("uname -s").as_deref(),
        Some("fixture"),
        "{}",
        output.report()
    );
    assert_eq!(
        outcome("touch READFILE").as_deref(),
        Some("placeholder"),
        "{}",
        output.report()
    );
    assert_eq!(
        outcome("touch FILE").as_deref(),
        Some("planned"),
        "{}",
        output.report()
    );
    let end = output.events().pop().unwrap();
    assert_eq!(end["event"], "end");
    assert_eq!(end["planned_changes"], 1);
    // The fixture's value reached the script (print becomes a log event in JSON mode).
    assert!(
        output
            .events_of("log")
            .iter()
            .any(|event| event["message"] == "kernel=Plan9"),
        "{}",
        output.report()
    );
}

#[test]
fn dry_run_records_gates_and_goes_on() {
    let scratch = Scratch::new();
    scratch.write(
        "gated.rhai",
        r#"//! A gate between two writes.
shell::run("touch BEFORE");
approve("Ship it?", #{confirm: "ship"});
shell::run(["touch", "AFTER"]);
"#,
    );
    let output = scratch.run("gated.rhai").dry_run().output();
    output
        .assert_success()
        .assert_contains("Plan: 2 changes, 1 approval gate");
    assert!(
        !scratch.exists("BEFORE") && !scratch.exists("AFTER"),
        "{}",
        output.report()
    );
    let plan = &output.stdout[output.stdout.find("Plan:").expect("a plan")..];
    assert_cli_snapshot!("plan_with_gate", plan);
}

#[test]
fn dry_run_plan_shows_secrets_masked() {
    let scratch = Scratch::new();
    scratch.write(
        "secret.rhai",
        r#"//! A generated secret in a write.
let password = secrets::generate(#{length: 24});
shell::run("set-password " + password);
"#,
    );
    let output = scratch.run("secret.rhai").dry_run().output();
    output
        .assert_success()
        .assert_contains("1. shell::run(")
        .assert_contains("***");
}

#[test]
fn offline_needs_dry_run() {
    let scratch = Scratch::new();
    scratch.write("probe.rhai", PROBE);
    let output = scratch.run("probe.rhai").offline().output();
    output.assert_exit(2);
    assert!(
        !scratch.exists("FILE") && !scratch.exists("READFILE"),
        "{}",
        output.report()
    );
}

#[test]
fn bad_fixtures_file_is_a_usage_error() {
    let scratch = Scratch::new();
    scratch.write("probe.rhai", PROBE);
    scratch.write("fixtures.yaml", "- not\n- a map\n");
    let output = scratch
        .run("probe.rhai")
        .dry_run()
        .offline()
        .fixtures("fixtures.yaml")
        .output();
    output.assert_exit(2).assert_contains("fixtures.yaml");
    assert!(!scratch.exists("READFILE"), "{}", output.report());
}

#[test]
fn offline_placeholders_name_their_read_and_the_plan_marks_them_unknown() {
    let scratch = Scratch::new();
    scratch.write(
        "named.rhai",
        r#"//! Offline placeholders name the read they stand for.
let version = shell::read("cat VERSION").stdout;
print("version=" + version);
step("deploy", || shell::run(["deploy", "app:" + version]));
"#,
    );
    let output = scratch.run("named.rhai").dry_run().offline().output();
    output
        .assert_success()
        .assert_contains(r#"version=<shell::read("cat VERSION").stdout>"#)
        .assert_contains(r#"shell::run(["deploy", "app:<shell::read(\"cat VERSION\").stdout>"])"#)
        .assert_contains(r#"unknown until run: <shell::read("cat VERSION").stdout>"#);
}

/// A first write, then one whose argument comes from a read.
const SAVED: &str = r#"//! Saved plans: a write, then one that depends on a read.
step("first", || shell::run("touch FIRST"));
let version = shell::read("cat VERSION").stdout;
version.trim();
step("second", || shell::run(["sh", "-c", "echo \"$1\" > OUT", "sh", version]));
"#;

#[test]
fn a_saved_plan_is_written_and_a_live_run_follows_it() {
    let scratch = Scratch::new();
    scratch.write("saved.rhai", SAVED);
    scratch.write("VERSION", "1\n");
    let plan_file = scratch.file("plan.json");
    scratch
        .run("saved.rhai")
        .dry_run()
        .arg("--plan-out")
        .arg(&plan_file)
        .output()
        .assert_success();
    assert!(!scratch.exists("FIRST"), "the dry-run wrote");
    let plan: serde_json::Value = serde_json::from_str(&scratch.read("plan.json")).unwrap();
    assert_eq!(plan["format"], 1);
    assert_eq!(plan["sha256"].as_str().map(str::len), Some(64), "{plan}");
    let changes: Vec<&str> = plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["kind"] == "change")
        .map(|item| item["call"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        changes,
        [
            r#"shell::run("touch FIRST")"#,
            r#"shell::run(["sh", "-c", "echo \"$1\" > OUT", "sh", "1"])"#
        ],
        "{plan}"
    );
    scratch
        .run("saved.rhai")
        .arg("--expect-plan")
        .arg(&plan_file)
        .output()
        .assert_success();
    assert_eq!(scratch.read("OUT"), "1\n");
}

#[test]
fn a_live_run_stops_before_the_first_write_the_saved_plan_does_not_have() {
    let scratch = Scratch::new();
    scratch.write("saved.rhai", SAVED);
    scratch.write("VERSION", "1\n");
    let plan_file = scratch.file("plan.json");
    scratch
        .run("saved.rhai")
        .dry_run()
        .arg("--plan-out")
        .arg(&plan_file)
        .output()
        .assert_success();
    scratch.write("VERSION", "2\n");
    let output = scratch
        .run("saved.rhai")
        .arg("--expect-plan")
        .arg(&plan_file)
        .output();
    output
        .assert_exit(2)
        .assert_contains("not the reviewed plan: change 2 was")
        .assert_contains(r#""sh", "2"]"#);
    assert!(scratch.exists("FIRST"), "the reviewed first write ran");
    assert!(!scratch.exists("OUT"), "the write that differs ran");
    // A changed runbook is refused before anything runs.
    scratch.write("saved.rhai", &format!("{SAVED}\n// edited\n"));
    std::fs::remove_file(scratch.file("FIRST")).unwrap();
    scratch
        .run("saved.rhai")
        .arg("--expect-plan")
        .arg(&plan_file)
        .output()
        .assert_exit(2)
        .assert_contains("the runbook changed since the plan was saved");
    assert!(!scratch.exists("FIRST"));
}

/// An offline read that no fixture answers is an unknown that names the read:
/// properties of it are unknowns too, `+` keeps the name, loops over it run
/// zero times, and the plan marks what depends on it "unknown until run".
#[test]
fn offline_unknowns_name_their_read_through_properties_and_concatenation() {
    let scratch = Scratch::new();
    scratch.write(
        "unknown.rhai",
        r#"//! Unknowns in an offline plan
let d = k8s::get("deployment", "backend");
let image = d.spec.template.spec.containers[0].image;
let n = 0;
for c in d.spec.template.spec.containers { n += 1; }
print("containers seen: " + n);
print("replicas+1: " + (d.spec.replicas + 1));
step("roll", || {
    k8s::set_image("backend", image + "-next");
});
"#,
    );
    let output = scratch.run("unknown.rhai").dry_run().offline().output();
    output
        .assert_success()
        .assert_contains("containers seen: 0")
        .assert_contains(r#"replicas+1: <k8s::get("deployment", "backend").spec.replicas + 1>"#)
        .assert_contains(
            r#"k8s::set_image("backend", "<k8s::get(\"deployment\", \"backend\").spec.template.spec.containers[0].image>-next")"#,
        )
        .assert_contains(r#"unknown until run: <k8s::get("deployment", "backend")>"#);
}
