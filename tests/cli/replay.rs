//! Resume by replay, against the real lab (PostgreSQL with scram-sha-256
//! logins, the Kubernetes API fake): a secret rotation killed with SIGKILL
//! at every step boundary and inside every step, resumed, then failed on
//! purpose — the database must take the original password again, the Secret
//! must hold the original value, every compensation must run exactly once.
//! Also: sealed values (no secret text anywhere in the state dir, a missing
//! key or a changed blob refuses the resume), `once` steps, divergence, and
//! signals (SIGTERM/SIGHUP like Ctrl-C; no child outlives a SIGKILL).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use runbook_lab::{Lab, PgLab};
use serde_json::Value;

use crate::harness::{Output, Run, Scratch, all_text, binary};

/// The rotation under test: read → set the database password → update the
/// Secret → restart → health check, each undoable. The health check fails
/// while the file `plant` exists.
const ROTATION: &str = r#"//! Rotate the app's database password (a test of resume by replay)
//! @param plant required  while this file exists the health check fails
let plant = param("plant");
let current = step("read current values", || {
    sleep("30ms");
    k8s::secret("app-secrets")
});
let new_password = step("set new database password", || {
    sleep("30ms");
    let password = secrets::generate(#{length: 24});
    pg::set_password((), "app", password);
    on_rollback(|| { pg::set_password((), "app", current.DB_PASSWORD); });
    sleep("30ms");
    password
});
step("update the Kubernetes Secret", || {
    sleep("30ms");
    k8s::set_secret("app-secrets", #{DB_PASSWORD: new_password});
    on_rollback(|| { k8s::set_secret("app-secrets", #{DB_PASSWORD: current.DB_PASSWORD}); });
    sleep("30ms");
});
step("restart", || {
    sleep("30ms");
    k8s::restart("backend");
    on_rollback(|| { k8s::restart("backend"); });
    sleep("30ms");
});
step("health check", || {
    sleep("30ms");
    shell::run(["sh", "-c", "test ! -e \"$1\"", "sh", plant]);
});
"#;

fn script() -> String {
    ROTATION.to_owned()
}

/// The lab's seeded value of `DB_PASSWORD` in the `app-secrets` Secret.
const ORIGINAL: &str = "lab-db-password";

fn lab() -> Lab {
    let lab = Lab::builder()
        .ssh_hosts(0)
        .postgres(true)
        .kube(true)
        .start()
        .expect("the lab starts");
    let pg = lab.postgres().expect("postgres");
    pg.psql(
        PgLab::DATABASE,
        &format!("alter role app password '{ORIGINAL}'"),
    )
    .expect("set the app role's password");
    assert!(pg.login_works("app", ORIGINAL, PgLab::DATABASE));
    assert!(
        !pg.login_works("app", "not-the-password", PgLab::DATABASE),
        "the lab's PostgreSQL must check passwords on TCP"
    );
    lab
}

fn secret_value(lab: &Lab) -> String {
    use base64::Engine as _;
    let secret = lab
        .kube()
        .expect("kube")
        .get("secrets", "staging", "app-secrets")
        .expect("the Secret exists");
    let encoded = secret
        .pointer("/data/DB_PASSWORD")
        .and_then(Value::as_str)
        .unwrap_or_default();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap_or_default(),
    )
    .unwrap_or_default()
}

/// `runbook ARGS...` in the background in `dir` with state dir `state`,
/// quiet, with no stdin and no journal key from the environment.
fn background(state: &Path, dir: &Path) -> Command {
    let mut command = Command::new(binary());
    command
        .current_dir(dir)
        .env("RUNBOOK_STATE_DIR", state)
        .env("CI", "true")
        .env("NO_COLOR", "1")
        .env_remove("RUNBOOK_CONTEXT")
        .env_remove("RUNBOOK_JOURNAL_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

fn spawn(lab: &Lab, state: &Path, dir: &Path, args: &[&str]) -> Child {
    background(state, dir)
        .args(args)
        .envs(lab.env())
        .env("RUNBOOK_STATE_DIR", state)
        .spawn()
        .expect("start runbook")
}

/// `runbook run FILE ARGS...` in the background, outside the lab, quiet.
fn spawn_local(scratch: &Scratch, state: &Path, file: &Path, args: &[String]) -> Child {
    background(state, scratch.path())
        .arg("run")
        .arg(file)
        .args(args)
        .spawn()
        .expect("start runbook")
}

fn journal_of(state: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(state.join("runs")).ok()?;
    entries
        .flatten()
        .map(|entry| entry.path().join("journal.jsonl"))
        .find(|path| path.exists())
}

fn events(journal: &Path) -> Vec<Value> {
    std::fs::read_to_string(journal)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn run_id(journal: &Path) -> String {
    journal
        .parent()
        .and_then(Path::file_name)
        .and_then(|name| name.to_str())
        .unwrap_or_default()
        .to_owned()
}

/// Where a trial kills the run: when the journal shows the `nth` event of
/// this kind (`step_start` kills inside the step, `step_end` at its end).
#[derive(Debug, Clone, Copy)]
struct KillPoint {
    kind: &'static str,
    nth: usize,
}

/// Start the rotation, SIGKILL it at `point`; returns the journal, or
/// `None` when the run ended before the point was reached.
fn run_and_kill(lab: &Lab, scratch: &Scratch, file: &Path, point: KillPoint) -> Option<PathBuf> {
    let state = scratch.file("state");
    let plant = scratch.file("plant");
    let mut child = spawn(
        lab,
        &state,
        scratch.path(),
        &[
            "run",
            file.to_str().unwrap_or_default(),
            &format!("plant={}", plant.display()),
            "--context",
            "lab",
        ],
    );
    let started = Instant::now();
    loop {
        if let Some(journal) = journal_of(&state) {
            let seen = events(&journal)
                .iter()
                .filter(|event| event["event"] == point.kind)
                .count();
            if seen >= point.nth {
                break;
            }
        }
        if child.try_wait().ok().flatten().is_some() {
            return None;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the run never reached {point:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().ok(); // SIGKILL
    child.wait().ok();
    journal_of(&state)
}

fn count_calls(events: &[Value], function: &str) -> usize {
    events
        .iter()
        .filter(|event| event["event"] == "call" && event["function"] == function)
        .count()
}

/// One trial; returns how the kill landed (for the closing figures).
fn trial(lab: &Lab, point: KillPoint) -> &'static str {
    let scratch = Scratch::new();
    let file = scratch.write("rotate.rhai", &script());
    let state = scratch.file("state");
    let Some(journal) = run_and_kill(lab, &scratch, &file, point) else {
        panic!("the run ended before {point:?}");
    };
    let before = events(&journal);
    let completed_before = before
        .iter()
        .filter(|event| event["event"] == "step_end" && event["status"] == "ok")
        .count();
    // Plant the failure, then resume: the health check fails, everything rolls back.
    std::fs::write(scratch.file("plant"), "fail").expect("plant");
    let resume = Run::command(["resume", &run_id(&journal)])
        .envs(lab.env())
        .env("RUNBOOK_STATE_DIR", &state)
        .current_dir(scratch.path())
        .output();
    resume.assert_exit(1);
    let after = events(&journal);

    // The database takes the original password again, the Secret holds it.
    let pg = lab.postgres().expect("postgres");
    assert!(
        pg.login_works("app", ORIGINAL, PgLab::DATABASE),
        "after {point:?}: the original password no longer logs in\n{}",
        resume.report()
    );
    assert_eq!(secret_value(lab), ORIGINAL, "after {point:?}");
    // A completed first step is replayed, not read again (the Secret may
    // hold the new password by then).
    let reads = count_calls(&after, "k8s::secret");
    if completed_before >= 1 {
        assert_eq!(reads, 1, "after {point:?}: the Secret was read again");
    } else {
        assert!(reads <= 2, "after {point:?}: {reads} reads");
    }
    // Every compensation ran exactly once, newest first.
    let rollbacks: Vec<&str> = after
        .iter()
        .filter(|event| event["event"] == "rollback")
        .map(|event| event["step"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        rollbacks,
        [
            "restart",
            "update the Kubernetes Secret",
            "set new database password"
        ],
        "after {point:?}\n{}",
        resume.report()
    );
    assert!(
        after
            .iter()
            .filter(|event| event["event"] == "rollback")
            .all(|event| event["status"] == "ok"),
        "after {point:?}: {rollbacks:?}"
    );
    // Neither password is anywhere in the state dir or the output.
    let everything = all_text(&state) + resume.all().as_str();
    assert!(
        !everything.contains(ORIGINAL),
        "after {point:?}: the old password leaked"
    );
    Run::command(["audit", "verify", journal.to_str().unwrap_or_default()])
        .env("RUNBOOK_STATE_DIR", &state)
        .output()
        .assert_success();
    if point.kind == "step_start" {
        "inside a step"
    } else {
        "at a step boundary"
    }
}

#[test]
fn a_rotation_killed_anywhere_and_resumed_rolls_everything_back_exactly_once() {
    let lab = lab();
    // Kill inside each of the first four steps and at the end of each of them.
    let mut points = Vec::new();
    for nth in 1..=4 {
        points.push(KillPoint {
            kind: "step_start",
            nth,
        });
        points.push(KillPoint {
            kind: "step_end",
            nth,
        });
    }
    points.push(KillPoint {
        kind: "step_start",
        nth: 5,
    });
    let started = Instant::now();
    let mut landed = std::collections::BTreeMap::<&str, usize>::new();
    let trials = 5;
    for _ in 0..trials {
        for point in &points {
            *landed.entry(trial(&lab, *point)).or_default() += 1;
        }
    }
    eprintln!(
        "rotation trials: {} in {:?} — {landed:?}",
        trials * points.len(),
        started.elapsed()
    );
}

#[test]
fn a_resumed_rotation_that_succeeds_leaves_no_secret_and_no_key() {
    let lab = lab();
    let scratch = Scratch::new();
    let file = scratch.write("rotate.rhai", &script());
    let state = scratch.file("state");
    let journal = run_and_kill(
        &lab,
        &scratch,
        &file,
        KillPoint {
            kind: "step_end",
            nth: 3,
        },
    )
    .expect("killed after the Secret update");
    let run = run_id(&journal);
    let key = state.join("keys").join(format!("{run}.key"));
    assert!(
        key.exists(),
        "a run with sealed values keeps its key while it can be resumed"
    );
    let line = std::fs::read_to_string(&journal).expect("journal");
    assert!(
        line.contains("\"sealed\":\"v1:"),
        "the read of the Secret is sealed"
    );
    let resume = Run::command(["resume", &run])
        .envs(lab.env())
        .env("RUNBOOK_STATE_DIR", &state)
        .current_dir(scratch.path())
        .output();
    resume.assert_success();
    let new_password = secret_value(&lab);
    assert_ne!(new_password, ORIGINAL);
    let pg = lab.postgres().expect("postgres");
    assert!(pg.login_works("app", &new_password, PgLab::DATABASE));
    assert!(!pg.login_works("app", ORIGINAL, PgLab::DATABASE));
    assert!(!key.exists(), "the key is deleted when the run ends well");
    let everything = all_text(&state) + resume.all().as_str();
    assert!(
        !everything.contains(&new_password),
        "the new password leaked"
    );
    assert!(!everything.contains(ORIGINAL), "the old password leaked");
    assert_eq!(count_calls(&events(&journal), "secrets::generate"), 1);
}

/// A run killed after its first step read the Secret (a sealed value).
fn killed_with_a_sealed_value(lab: &Lab, scratch: &Scratch) -> (PathBuf, PathBuf) {
    let file = scratch.write("rotate.rhai", &script());
    let journal = run_and_kill(
        lab,
        scratch,
        &file,
        KillPoint {
            kind: "step_end",
            nth: 1,
        },
    )
    .expect("killed after the first step");
    (journal, scratch.file("state"))
}

fn resume_in(lab: &Lab, scratch: &Scratch, state: &Path, journal: &Path) -> Output {
    Run::command(["resume", &run_id(journal)])
        .envs(lab.env())
        .env("RUNBOOK_STATE_DIR", state)
        .current_dir(scratch.path())
        .output()
}

#[test]
fn resume_without_the_run_key_refuses_and_runs_nothing() {
    let lab = lab();
    let scratch = Scratch::new();
    let (journal, state) = killed_with_a_sealed_value(&lab, &scratch);
    let lines = events(&journal).len();
    std::fs::remove_file(state.join("keys").join(format!("{}.key", run_id(&journal))))
        .expect("remove the key");
    let resume = resume_in(&lab, &scratch, &state, &journal);
    resume
        .assert_exit(2)
        .assert_contains("the journal holds sealed values; the run key")
        .assert_contains("is missing");
    assert_eq!(
        events(&journal).len(),
        lines,
        "a refused resume wrote to the journal"
    );
    assert!(
        lab.postgres()
            .expect("pg")
            .login_works("app", ORIGINAL, PgLab::DATABASE)
    );
    // The key given by RUNBOOK_JOURNAL_KEY is not this run's: the blob does not open.
    let with_wrong_key = Run::command(["resume", &run_id(&journal)])
        .envs(lab.env())
        .env("RUNBOOK_STATE_DIR", &state)
        .env("RUNBOOK_JOURNAL_KEY", "ab".repeat(32))
        .current_dir(scratch.path())
        .output();
    with_wrong_key
        .assert_exit(2)
        .assert_contains("sealed values cannot be used");
    assert_eq!(events(&journal).len(), lines);
}

#[test]
fn a_changed_sealed_blob_fails_audit_verify_and_resume() {
    let lab = lab();
    let scratch = Scratch::new();
    let (journal, state) = killed_with_a_sealed_value(&lab, &scratch);
    let text = std::fs::read_to_string(&journal).expect("journal");
    let at = text.find("\"sealed\":\"v1:").expect("a sealed value") + 20;
    let mut bytes = text.into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(&journal, &bytes).expect("tamper");
    Run::command(["audit", "verify", journal.to_str().unwrap_or_default()])
        .env("RUNBOOK_STATE_DIR", &state)
        .output()
        .assert_exit(1);
    resume_in(&lab, &scratch, &state, &journal)
        .assert_exit(2)
        .assert_contains("fails verification");
}

#[test]
fn a_resume_that_diverges_from_its_journal_stops_and_rolls_nothing_back() {
    let lab = lab();
    let scratch = Scratch::new();
    let file = scratch.write("rotate.rhai", &script());
    let journal = run_and_kill(
        &lab,
        &scratch,
        &file,
        KillPoint {
            kind: "step_end",
            nth: 2,
        },
    )
    .expect("killed after the password step");
    let state = scratch.file("state");
    // The runbook changes what its completed first step reads.
    std::fs::write(
        &file,
        script().replace(
            "    k8s::secret(\"app-secrets\")\n});",
            "    k8s::secret(\"other-secrets\")\n});",
        ),
    )
    .expect("edit");
    let resume = Run::command(["resume", &run_id(&journal), "--force"])
        .envs(lab.env())
        .env("RUNBOOK_STATE_DIR", &state)
        .current_dir(scratch.path())
        .output();
    resume
        .assert_exit(2)
        .assert_contains("the runbook diverged from its journal at")
        .assert_contains("rotate.rhai:6")
        .assert_contains("not rolled back");
    let after = events(&journal);
    assert!(after.iter().all(|event| event["event"] != "rollback"));
    // The password step ran and was not undone: the app logs in with neither
    // password we know, and the Secret is untouched.
    assert_eq!(secret_value(&lab), ORIGINAL);
}

const ONCE: &str = r#"//! A step that must not run twice
//! @param out required  file the charge is appended to
let out = param("out");
step("prepare", || { shell::run(["true"]); });
step("charge the card", #{once: true}, || {
    shell::run(["sh", "-c", "echo charged >> \"$1\"; sleep 30", "sh", out]);
});
step("receipt", || { shell::run(["true"]); });
"#;

#[test]
fn a_once_step_cut_off_by_a_kill_is_not_run_again_without_a_person() {
    let scratch = Scratch::new();
    let file = scratch.write("once.rhai", ONCE);
    let out = scratch.file("out.txt");
    let state = scratch.file("state");
    let mut child = spawn_local(&scratch, &state, &file, &[format!("out={}", out.display())]);
    let started = Instant::now();
    while !out.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the charge never ran"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().ok();
    child.wait().ok();
    let journal = journal_of(&state).expect("journal");
    let resume = Run::command(["resume", &run_id(&journal)])
        .env("RUNBOOK_STATE_DIR", &state)
        .current_dir(scratch.path())
        .output();
    resume
        .assert_exit(2)
        .assert_contains("step `charge the card` is marked `once`")
        .assert_contains("not rolled back");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap_or_default(),
        "charged\n",
        "the once step ran again"
    );
}

#[test]
fn sigterm_and_sighup_stop_a_run_like_ctrl_c() {
    for (signal, code, status) in [("TERM", 143, "terminated"), ("HUP", 129, "hangup")] {
        let scratch = Scratch::new();
        let file = scratch.write(
            "long.rhai",
            r#"//! A long step with a compensation
step("change", || {
    on_rollback(|| { shell::run(["touch", "undone"]); });
    shell::run(["sleep", "30"]);
});
"#,
        );
        let state = scratch.file("state");
        let child = spawn_local(&scratch, &state, &file, &[]);
        let started = Instant::now();
        loop {
            let ready = journal_of(&state).is_some_and(|journal| {
                events(&journal)
                    .iter()
                    .any(|event| event["event"] == "call" || event["event"] == "step_start")
            });
            if ready {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60));
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        let pid = child.id().to_string();
        Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("kill");
        let output = child.wait_with_output().expect("wait");
        assert_eq!(output.status.code(), Some(code), "SIG{signal}");
        assert!(
            scratch.exists("undone"),
            "SIG{signal}: the compensation did not run"
        );
        let journal = journal_of(&state).expect("journal");
        let end = events(&journal)
            .into_iter()
            .rfind(|event| event["event"] == "end")
            .expect("an end record");
        assert_eq!(end["status"], status, "SIG{signal}");
        assert_eq!(end["exit_code"], code);
    }
}

#[test]
fn no_local_child_outlives_a_killed_runbook() {
    let scratch = Scratch::new();
    let file = scratch.write(
        "slow.rhai",
        r#"//! A child that would finish after the kill
step("slow", || {
    shell::run(["sh", "-c", "echo started > started; sleep 1; touch finished"]);
});
"#,
    );
    let state = scratch.file("state");
    let mut child = spawn_local(&scratch, &state, &file, &[]);
    let started = Instant::now();
    while !scratch.exists("started") {
        assert!(started.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().ok();
    child.wait().ok();
    std::thread::sleep(Duration::from_millis(1600));
    assert!(
        !scratch.exists("finished"),
        "the shell kept running after runbook was killed"
    );
}
