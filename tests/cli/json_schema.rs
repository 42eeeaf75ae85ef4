//! `--output json` events follow docs/events.schema.json, judged by a real
//! validator we did not write (Python's `jsonschema`, Draft 2020-12, from the
//! lab venv): every line of real runs against the lab (live, with a fan-out,
//! a gate and a rollback; dry-run with a plan; offline; usage errors).

use std::collections::BTreeSet;
use std::process::Command;

use runbook_lab::{Lab, S3Kind, S3Lab};

use crate::harness::{Run, Scratch, repo_root};

/// A failing step after a successful one: a rollback event.
const FAILS: &str = r#"//! A step that fails after one that registered its undo
step("make a change", || {
    shell::run("true");
    on_rollback(|| shell::run("true"));
});
step("break", || fail("on purpose"));
"#;

#[test]
fn every_event_of_real_runs_validates_against_the_shipped_schema() {
    let lab = Lab::builder()
        .ssh_hosts(2)
        .postgres(true)
        .s3(S3Kind::S3sFs)
        .kube(true)
        .start()
        .expect("the lab starts");
    let scratch = Scratch::new();
    scratch.write("fails.rhai", FAILS);
    let runbook = |name: &str| repo_root().join("runbooks").join(name);
    let runs = [
        Run::new(runbook("deploy-production.rhai"))
            .param("version", "v2")
            .envs(lab.env())
            .context(Lab::CONTEXT)
            .approve()
            .json(),
        Run::new(runbook("deploy-production.rhai"))
            .param("version", "v3")
            .envs(lab.env())
            .context(Lab::CONTEXT)
            .dry_run()
            .json(),
        Run::new(runbook("health-check.rhai"))
            .envs(lab.env())
            .context(Lab::CONTEXT)
            .json(),
        Run::new(runbook("backup-db.rhai"))
            .envs(lab.env())
            .context(Lab::CONTEXT)
            .approve()
            .json(),
        Run::new(runbook("rollback.rhai"))
            .config(repo_root().join("runbooks/runbook.toml"))
            .context("lab")
            .dry_run()
            .offline()
            .json(),
        scratch.run("fails.rhai").json(),
        scratch.run("missing.rhai").json(),
        scratch.command(["run", "--output", "json", "--no-such-flag", "x.rhai"]),
    ];
    let mut lines = Vec::new();
    for run in runs {
        let output = run.output();
        assert!(
            !output.stdout.trim().is_empty(),
            "no events on stdout\n{}",
            output.report()
        );
        for line in output.stdout.lines().filter(|line| !line.trim().is_empty()) {
            lines.push(line.to_owned());
        }
    }
    let kinds: BTreeSet<String> = lines
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|event| event["event"].as_str().map(str::to_owned))
        .collect();
    for kind in [
        "run",
        "step_start",
        "step_end",
        "call",
        "host",
        "gate",
        "log",
        "rollback",
        "plan",
        "end",
        "error",
    ] {
        assert!(kinds.contains(kind), "no `{kind}` event among {kinds:?}");
    }
    let events = scratch.write("events.jsonl", &(lines.join("\n") + "\n"));
    let validator = r#"
import json, sys
from jsonschema import Draft202012Validator
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
validator = Draft202012Validator(schema)
bad = 0
for number, line in enumerate(open(sys.argv[2]), 1):
    event = json.loads(line)
    errors = list(validator.iter_errors(event))
    if errors:
        bad += 1
        best = min(errors, key=lambda e: len(list(e.path)))
        print(f"line {number} ({event.get('event')}): {best.message} at {list(best.path)}")
print(f"{number} events, {bad} invalid")
sys.exit(1 if bad else 0)
"#;
    let python = S3Lab::venv().join("bin/python3");
    let result = Command::new(&python)
        .arg("-c")
        .arg(validator)
        .arg(repo_root().join("docs/events.schema.json"))
        .arg(&events)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run {} (run scripts/setup.sh): {error}",
                python.display()
            )
        });
    let report = String::from_utf8_lossy(&result.stdout).into_owned()
        + String::from_utf8_lossy(&result.stderr).as_ref();
    assert!(result.status.success(), "{report}");
    assert!(report.contains(" 0 invalid"), "{report}");
}

/// Arguments are JSON values, not Rhai literals, and are never shortened;
/// `call` is the human form.
#[test]
fn call_arguments_are_json_values_and_whole() {
    let scratch = Scratch::new();
    let long = "x".repeat(5000);
    scratch.write(
        "args.rhai",
        &format!(
            "//! JSON arguments\nstep(\"write\", || shell::run([\"printf\", \"%s\", \"{long}\"], #{{env: #{{A: \"1\"}}}}));\n"
        ),
    );
    let output = scratch.run("args.rhai").dry_run().json().output();
    output.assert_success();
    let calls = output.events_of("call");
    let call = calls.first().expect("a call event");
    assert_eq!(call["args"][0][0], "printf", "{call}");
    assert_eq!(
        call["args"][0][2].as_str().map(str::len),
        Some(5000),
        "shortened: {call}"
    );
    assert_eq!(call["args"][1]["env"]["A"], "1", "{call}");
    assert!(
        call["call"]
            .as_str()
            .is_some_and(|text| text.starts_with("shell::run([\"printf\"")),
        "{call}"
    );
    let plan = output.events_of("plan");
    assert_eq!(
        plan[0]["items"][0]["function"],
        "shell::run",
        "{}",
        output.report()
    );
    assert_eq!(
        plan[0]["items"][0]["args"][0][2].as_str().map(str::len),
        Some(5000)
    );
}
