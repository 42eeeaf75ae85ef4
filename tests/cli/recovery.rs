//! The journal and what rests on it: resume after SIGKILL, audit verify,
//! rollback records, Ctrl-C, the run lock, secrets, `runbook show`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{Run, Scratch, binary};

/// Ten steps; each pauses, appends its name to `out`, and pauses again, so a
/// kill lands before or after the append about equally often.
const TEN_STEPS: &str = r#"//! Ten steps that append their names
//! @param out required  file to append to
let out = param("out");
for i in 1..=10 {
    step("s" + i, || {
        shell::run(["sh", "-c", "sleep 0.04; echo \"$1\" >> \"$2\"; sleep 0.04", "sh", "s" + i, out]);
    });
}
"#;

fn journals(state: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(state.join("runs")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|entry| entry.path().join("journal.jsonl"))
        .filter(|path| path.exists())
        .collect()
}

fn spawn_run(state: &Path, args: &[&str], dir: &Path) -> Child {
    Command::new(binary())
        .args(args)
        .current_dir(dir)
        .env("RUNBOOK_STATE_DIR", state)
        .env("CI", "true")
        .env("NO_COLOR", "1")
        .env_remove("RUNBOOK_CONFIG")
        .env_remove("RUNBOOK_CONTEXT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start runbook")
}

#[derive(Debug, Default)]
struct Outcomes {
    exact: usize,
    in_flight_rerun: usize,
    finished_before_kill: usize,
    killed_before_start: usize,
    /// Trials where the file changed after runbook was dead: an orphaned
    /// child finished its step (this must stay 0).
    orphan_writes: usize,
}

/// One trial: kill after `delay`, resume, check the file and the journal.
fn crash_trial(delay: Duration, outcomes: &std::sync::Mutex<Outcomes>) {
    let scratch = Scratch::new();
    let state = scratch.file("state");
    let file = scratch.write("ten.rhai", TEN_STEPS);
    let out = scratch.file("out.txt");
    let mut child = spawn_run(
        &state,
        &[
            "run",
            file.to_str().unwrap(),
            &format!("out={}", out.display()),
        ],
        scratch.path(),
    );
    std::thread::sleep(delay);
    let finished = child.try_wait().unwrap().is_some();
    child.kill().ok(); // SIGKILL
    child.wait().unwrap();
    // A child that outlived runbook would append its step's name after this.
    let at_kill = std::fs::read_to_string(&out).unwrap_or_default();
    std::thread::sleep(Duration::from_millis(150));
    if std::fs::read_to_string(&out).unwrap_or_default() != at_kill {
        outcomes.lock().unwrap().orphan_writes += 1;
    }
    let journal = journals(&state);
    if journal.is_empty() {
        // Killed before the run began (a loaded machine starts slowly): nothing ran.
        assert!(!out.exists(), "steps ran without a journal after {delay:?}");
        outcomes.lock().unwrap().killed_before_start += 1;
        return;
    }
    assert_eq!(journal.len(), 1, "one journal after {delay:?}");
    let run = journal[0]
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let resume = Run::command(["resume", &run])
        .env("RUNBOOK_STATE_DIR", &state)
        .current_dir(scratch.path())
        .output();
    let lines: Vec<String> = std::fs::read_to_string(&out)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    let mut kind = "exact";
    if finished || resume.code == 2 && resume.stderr.contains("finished successfully") {
        kind = "finished";
    } else if resume.code == 2 && resume.stderr.contains("the journal is empty") {
        // Killed before the journal's first line: nothing ran, nothing to resume.
        assert!(
            lines.is_empty(),
            "a step ran without a journal line: {lines:?}"
        );
        outcomes.lock().unwrap().killed_before_start += 1;
        return;
    } else {
        resume.assert_success();
    }
    // Every step exactly once, except possibly the one in flight, run twice in a row.
    let expected: Vec<String> = (1..=10).map(|i| format!("s{i}")).collect();
    let mut deduplicated = lines.clone();
    deduplicated.dedup();
    assert_eq!(
        deduplicated, expected,
        "after a kill at {delay:?}: {lines:?}"
    );
    match lines.len() {
        10 => {}
        11 => kind = if kind == "finished" { kind } else { "rerun" },
        _ => panic!("a completed step ran twice after a kill at {delay:?}: {lines:?}"),
    }
    Run::command(["audit", "verify", journal[0].to_str().unwrap()])
        .output()
        .assert_success();
    let mut outcomes = outcomes.lock().unwrap();
    match kind {
        "exact" => outcomes.exact += 1,
        "rerun" => outcomes.in_flight_rerun += 1,
        _ => outcomes.finished_before_kill += 1,
    }
}

#[test]
fn sigkill_at_many_points_then_resume_repeats_no_completed_step() {
    // How long one whole run takes here and now (the machine may be busy).
    let scratch = Scratch::new();
    let file = scratch.write("ten.rhai", TEN_STEPS);
    let started = std::time::Instant::now();
    Run::new(&file)
        .param("out", scratch.file("out.txt").display())
        .current_dir(scratch.path())
        .output()
        .assert_success();
    let whole = started.elapsed();
    // 40 kill points spread from 5% to 95% of that, four trials at a time.
    let delays: Vec<Duration> = (0..40u32)
        .map(|i| whole.mul_f64(0.05 + 0.9 * f64::from(i) / 40.0))
        .collect();
    let outcomes = std::sync::Mutex::new(Outcomes::default());
    std::thread::scope(|scope| {
        for chunk in delays.chunks(10) {
            let outcomes = &outcomes;
            scope.spawn(move || {
                for delay in chunk {
                    crash_trial(*delay, outcomes);
                }
            });
        }
    });
    let outcomes = outcomes.into_inner().unwrap();
    eprintln!(
        "crash trials: {} over a {whole:?} run — {outcomes:?}",
        delays.len()
    );
    assert!(
        outcomes.exact + outcomes.in_flight_rerun >= 30,
        "too few trials were killed mid-run: {outcomes:?}"
    );
    assert_eq!(
        outcomes.orphan_writes, 0,
        "a child outlived runbook and finished its step after the kill: {outcomes:?}"
    );
}

#[test]
fn editing_one_byte_fails_audit_verify_and_names_the_line() {
    let scratch = Scratch::new();
    let file = scratch.write(
        "j.rhai",
        "step(\"a\", || 1);\nstep(\"b\", || 2);\nstep(\"c\", || 3);\n",
    );
    let run = Run::new(&file).current_dir(scratch.path()).output();
    run.assert_success();
    let journal = journals(run.state.path()).pop().unwrap();
    Run::command(["audit", "verify", journal.to_str().unwrap()])
        .output()
        .assert_success()
        .assert_contains("hash chain intact");
    // Change one byte in line 4 (step "b" starts there... whatever it holds).
    let text = std::fs::read_to_string(&journal).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[3] = lines[3].replacen("\"time\":\"2", "\"time\":\"3", 1);
    std::fs::write(&journal, lines.join("\n") + "\n").unwrap();
    Run::command(["audit", "verify", journal.to_str().unwrap()])
        .output()
        .assert_exit(1)
        .assert_contains("line 4: the line was edited");
    // Removing a line is found too.
    lines.remove(5);
    let original: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut removed = original.clone();
    removed.remove(5);
    std::fs::write(&journal, removed.join("\n") + "\n").unwrap();
    Run::command(["audit", "verify", journal.to_str().unwrap()])
        .output()
        .assert_exit(1)
        .assert_contains("line 6: does not follow line 5");
}

#[test]
fn compensations_run_newest_first_and_are_journaled() {
    let scratch = Scratch::new();
    let file = scratch.write(
        "r.rhai",
        r#"
step("one", || on_rollback(|| log::warn("undo one")));
step("two", || on_rollback(|| log::warn("undo two")));
step("three", || fail("broken"));
"#,
    );
    let out = Run::new(&file).current_dir(scratch.path()).output();
    out.assert_exit(1);
    let stderr = out.stderr;
    let two = stderr.find("undo two").unwrap();
    let one = stderr.find("undo one").unwrap();
    assert!(two < one, "newest first:\n{stderr}");
    let journal = std::fs::read_to_string(journals(out.state.path()).pop().unwrap()).unwrap();
    let rollbacks: Vec<&str> = journal
        .lines()
        .filter(|line| line.contains("\"event\":\"rollback\""))
        .collect();
    assert_eq!(rollbacks.len(), 2);
    assert!(rollbacks[0].contains("\"step\":\"two\"") && rollbacks[1].contains("\"step\":\"one\""));
    assert!(
        journal
            .lines()
            .last()
            .unwrap()
            .contains("\"event\":\"end\"")
    );
    // A rejected gate runs them as well, and --no-rollback journals them as skipped.
    let gate = scratch.write(
        "g.rhai",
        r#"
step("one", || on_rollback(|| log::warn("undo one")));
approve("go?");
"#,
    );
    let out = Run::new(&gate).current_dir(scratch.path()).output();
    out.assert_exit(3).assert_contains("undo one");
    let out = Run::new(&file)
        .arg("--no-rollback")
        .current_dir(scratch.path())
        .output();
    out.assert_exit(1).assert_not_contains("undo one");
    let journal = std::fs::read_to_string(journals(out.state.path()).pop().unwrap()).unwrap();
    assert_eq!(
        journal.matches("\"status\":\"skipped\"").count(),
        2,
        "{journal}"
    );
}

#[test]
fn sigint_during_a_long_sleep_rolls_back_and_exits_130() {
    let scratch = Scratch::new();
    let state = scratch.file("state");
    let file = scratch.write(
        "long.rhai",
        r#"
step("prepare", || on_rollback(|| log::warn("compensated")));
step("wait", || sleep("30s"));
"#,
    );
    let mut child = spawn_run(&state, &["run", file.to_str().unwrap()], scratch.path());
    // Wait until the long step has started (its start is in the journal).
    for _ in 0..200 {
        let started = journals(&state)
            .first()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .is_some_and(|text| text.contains("\"step\":\"wait\""));
        if started {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let journal = std::fs::read_to_string(journals(&state).pop().unwrap()).unwrap();
    assert!(journal.contains("compensated"), "{journal}");
    let last = journal.lines().last().unwrap();
    assert!(
        last.contains("\"event\":\"end\"") && last.contains("\"exit_code\":130"),
        "{last}"
    );
}

#[test]
fn a_second_run_of_the_same_runbook_exits_4_naming_the_holder() {
    let scratch = Scratch::new();
    let state = scratch.file("state");
    let file = scratch.write("slow.rhai", "step(\"wait\", || sleep(\"20s\"));\n");
    let mut first = spawn_run(&state, &["run", file.to_str().unwrap()], scratch.path());
    for _ in 0..200 {
        if state
            .join("locks")
            .read_dir()
            .is_ok_and(|mut entries| entries.next().is_some())
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let second = Run::new(&file)
        .env("RUNBOOK_STATE_DIR", &state)
        .current_dir(scratch.path())
        .output();
    first.kill().ok();
    first.wait().ok();
    second
        .assert_exit(4)
        .assert_contains("already running: held by")
        .assert_contains(&format!("pid {}", first.id()));
    // The lock of the killed run is stale: the next run takes it over.
    let quick = scratch.write("slow.rhai", "step(\"wait\", || 1);\n");
    Run::new(&quick)
        .env("RUNBOOK_STATE_DIR", &state)
        .current_dir(scratch.path())
        .output()
        .assert_success();
}

#[test]
fn no_secret_reaches_any_journal() {
    let scratch = Scratch::new();
    let secret_value = "journal-S3CRET-77";
    let config = scratch.write(
        "runbook.toml",
        "[context.t.secrets]\ntoken = \"env:RB_JOURNAL_SECRET\"\n",
    );
    let file = scratch.write(
        "s.rhai",
        r#"
let token = secret("token");
let out = step("use", || shell::read("echo " + token + "; echo " + token + " >&2").stdout);
step("return it", || token);
log::info(out);
fail("giving up with " + token);
"#,
    );
    let out = Run::new(&file)
        .config(&config)
        .context("t")
        .env("RB_JOURNAL_SECRET", secret_value)
        .current_dir(scratch.path())
        .output();
    out.assert_exit(1).assert_not_contains(secret_value);
    let journal = std::fs::read_to_string(journals(out.state.path()).pop().unwrap()).unwrap();
    assert!(!journal.contains(secret_value), "{journal}");
    assert!(journal.contains("***"));
}

#[test]
fn show_renders_a_journal_for_people() {
    let scratch = Scratch::new();
    let file = scratch.write(
        "show.rhai",
        r#"//! Shown
step("first", || shell::read("echo hi").stdout);
step("second", || { log::warn("careful"); 2 });
"#,
    );
    let out = Run::new(&file).current_dir(scratch.path()).output();
    out.assert_success();
    let journal = journals(out.state.path()).pop().unwrap();
    let shown = Run::command(["show", journal.to_str().unwrap()]).output();
    shown.assert_success();
    let text: Vec<String> = shown
        .stdout
        .lines()
        .map(|line| crate::harness::strip_time(line).to_owned())
        .collect();
    let text = text.join("\n");
    assert_cli_snapshot!("show_journal", text);
    let raw = Run::command(["show", journal.to_str().unwrap(), "--output", "json"]).output();
    raw.assert_success();
    assert_eq!(raw.stdout, std::fs::read_to_string(&journal).unwrap());
}
