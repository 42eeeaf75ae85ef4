//! The journal: every run writes `<state dir>/runs/<run-id>/journal.jsonl`,
//! the same events `--output json` streams, chained by hashes that
//! `runbook audit verify` checks; `runbook resume` finishes a failed run
//! without re-running its completed steps.

use std::path::PathBuf;

use crate::harness::{Output, Scratch};

/// Two steps; the second fails while the file BROKEN exists.
const RESUMABLE: &str = r#"//! Resumable.
step("one", || {
    shell::run("echo one >> LOG");
    "first"
});
step("two", || {
    shell::run("echo two >> LOG");
    if shell::read("test -e BROKEN", #{check: false}).code == 0 { fail("broken"); }
    "second"
});
print("done");
"#;

/// A scratch folder with the runbook and a state dir inside it.
fn setup() -> Scratch {
    let scratch = Scratch::new();
    scratch.write("r.rhai", RESUMABLE);
    std::fs::create_dir(scratch.file("state")).unwrap();
    scratch
}

/// The id of the one run in the state dir.
fn only_run(scratch: &Scratch) -> String {
    let runs: Vec<String> = std::fs::read_dir(scratch.file("state/runs"))
        .expect("state/runs exists after a run")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(runs.len(), 1, "expected one run: {runs:?}");
    runs.into_iter().next().unwrap()
}

fn journal_path(scratch: &Scratch, run: &str) -> PathBuf {
    scratch.file(&format!("state/runs/{run}/journal.jsonl"))
}

fn journal(scratch: &Scratch, run: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(journal_path(scratch, run))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("journal lines are JSON"))
        .collect()
}

fn run_broken(scratch: &Scratch) -> Output {
    scratch.write("BROKEN", "");
    let output = scratch
        .run("r.rhai")
        .state_dir(scratch.file("state"))
        .json()
        .output();
    output.assert_exit(1);
    output
}

#[test]
fn a_run_writes_a_journal_with_the_streamed_events() {
    let scratch = setup();
    let output = run_broken(&scratch);
    let run = only_run(&scratch);
    let streamed = output.events();
    assert_eq!(streamed[0]["run_id"], run.as_str());
    let journal = journal(&scratch, &run);
    assert_eq!(journal.first().unwrap()["event"], "run");
    assert_eq!(journal.last().unwrap()["event"], "end");
    assert_eq!(journal.last().unwrap()["exit_code"], 1);
    // Every streamed event is in the journal, in order, with the same fields.
    // A call's `args` are streamed as JSON values (the journal's `arguments`)
    // and its `call` is the journal's Rhai-literal `args`, joined.
    let journal: Vec<serde_json::Value> = journal
        .into_iter()
        .map(|mut line| {
            if line["event"] == "call" {
                let literals: Vec<String> = line["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|arg| arg.as_str().unwrap().to_owned())
                    .collect();
                line["call"] = format!(
                    "{}({})",
                    line["function"].as_str().unwrap(),
                    literals.join(", ")
                )
                .into();
                line["args"] = line["arguments"].take();
            }
            line
        })
        .collect();
    let mut rest = journal.iter();
    for event in &streamed {
        let found = rest.any(|line| {
            event
                .as_object()
                .unwrap()
                .iter()
                .all(|(key, value)| &line[key] == value)
        });
        assert!(
            found,
            "streamed event missing from the journal (or out of order): {event}"
        );
    }
    // Each line carries the MAC of the one before it.
    for pair in journal.windows(2) {
        assert_eq!(
            pair[1]["prev"], pair[0]["mac"],
            "broken chain at {}",
            pair[1]
        );
    }
}

#[test]
fn audit_verify_detects_an_edited_line() {
    let scratch = setup();
    run_broken(&scratch);
    let run = only_run(&scratch);
    let verify = || {
        scratch
            .command(["audit", "verify", &run])
            .state_dir(scratch.file("state"))
            .output()
    };
    verify()
        .assert_success()
        .assert_contains("hash chain intact");

    let path = journal_path(&scratch, &run);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let edited = lines
        .iter()
        .position(|line| line.contains("\"step_start\""))
        .unwrap();
    lines[edited] = lines[edited].replace("\"one\"", "\"uno\"");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    verify()
        .assert_exit(1)
        .assert_contains(&format!("line {}", edited + 1));
}

#[test]
fn audit_verify_detects_a_removed_line() {
    let scratch = setup();
    run_broken(&scratch);
    let run = only_run(&scratch);
    let path = journal_path(&scratch, &run);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let kept: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|(index, _)| *index != 2)
        .map(|(_, line)| *line)
        .collect();
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    scratch
        .command(["audit", "verify", &run])
        .state_dir(scratch.file("state"))
        .output()
        .assert_exit(1);
}

#[test]
fn audit_verify_of_an_unknown_run_exits_2() {
    let scratch = setup();
    scratch
        .command(["audit", "verify", "20000101T000000Z-0000"])
        .state_dir(scratch.file("state"))
        .output()
        .assert_exit(2);
}

#[test]
fn runs_lists_the_run_with_its_status() {
    let scratch = setup();
    run_broken(&scratch);
    let run = only_run(&scratch);
    let output = scratch
        .command(["runs"])
        .state_dir(scratch.file("state"))
        .output();
    output.assert_success();
    let line = output.stdout.lines().find(|line| line.starts_with(&run));
    let line = line.unwrap_or_else(|| panic!("`runbook runs` misses {run}\n{}", output.report()));
    assert!(
        line.contains("failed") && line.contains("r.rhai"),
        "{line:?}"
    );
}

#[test]
fn runs_hides_dry_runs_unless_asked_and_filters_by_runbook() {
    let scratch = setup();
    scratch.write(
        "other.rhai",
        "//! Other.\nstep(\"x\", || shell::run(\"true\"));\n",
    );
    let state = scratch.file("state");
    scratch
        .run("r.rhai")
        .state_dir(&state)
        .output()
        .assert_success();
    scratch
        .run("r.rhai")
        .state_dir(&state)
        .dry_run()
        .output()
        .assert_success();
    scratch
        .run("other.rhai")
        .state_dir(&state)
        .output()
        .assert_success();
    let list = |args: &[&str]| {
        let output = scratch
            .command(["runs"])
            .args(args)
            .state_dir(&state)
            .output();
        output.assert_success();
        output
            .stdout
            .lines()
            .skip(1)
            .map(str::to_owned)
            .collect::<Vec<String>>()
    };
    let default = list(&[]);
    assert_eq!(default.len(), 2, "{default:?}");
    assert!(
        default.iter().all(|line| !line.contains("(dry-run)")),
        "{default:?}"
    );
    assert_eq!(list(&["--no-dry-run"]), default);
    let all = list(&["--all"]);
    assert_eq!(all.len(), 3, "{all:?}");
    let dry = list(&["--dry-run"]);
    assert!(
        dry.len() == 1 && dry[0].contains("r.rhai (dry-run)"),
        "{dry:?}"
    );
    let other = list(&["--runbook", "other"]);
    assert!(
        other.len() == 1 && other[0].contains("other.rhai"),
        "{other:?}"
    );
    let failed = list(&["--status", "failed"]);
    assert!(failed.is_empty(), "{failed:?}");
}

#[test]
fn resume_skips_completed_steps() {
    let scratch = setup();
    run_broken(&scratch);
    let run = only_run(&scratch);
    std::fs::remove_file(scratch.file("BROKEN")).unwrap();
    let output = scratch
        .command(["resume", &run])
        .state_dir(scratch.file("state"))
        .output();
    output.assert_success().assert_contains("done");
    // Step one ran once (in the first run); step two ran twice.
    assert_eq!(
        scratch.read("LOG"),
        "one\ntwo\ntwo\n",
        "{}",
        output.report()
    );
    // Nothing left to resume.
    scratch
        .command(["resume", &run])
        .state_dir(scratch.file("state"))
        .output()
        .assert_exit(2);
}

#[test]
fn resume_refuses_a_changed_runbook_unless_forced() {
    let scratch = setup();
    run_broken(&scratch);
    let run = only_run(&scratch);
    std::fs::remove_file(scratch.file("BROKEN")).unwrap();
    scratch.write("r.rhai", &format!("{RESUMABLE}// changed\n"));
    let resume = || {
        scratch
            .command(["resume", &run])
            .state_dir(scratch.file("state"))
    };
    resume()
        .output()
        .assert_exit(2)
        .assert_contains("changed")
        .assert_contains("--force");
    assert_eq!(
        scratch.read("LOG"),
        "one\ntwo\n",
        "a refused resume ran something"
    );
    resume().arg("--force").output().assert_success();
    assert_eq!(scratch.read("LOG"), "one\ntwo\ntwo\n");
}
