//! Every way to tamper with a journal fails `runbook audit verify` (exit 1):
//! delete the last line, truncate, truncate and forge an end record,
//! append, re-chain without the key (plain SHA-256, or another key), swap
//! journals between runs, remove a witness; and a journal without an end
//! record fails unless `--allow-incomplete`. The key is outside the journal.

use std::path::{Path, PathBuf};

use crate::harness::{Output, Run, Scratch};

const SCRIPT: &str =
    "//! Three steps.\nstep(\"a\", || 1);\nstep(\"b\", || 2);\nstep(\"c\", || 3);\n";

/// A state dir with two finished runs of the script; their journals.
fn two_runs(scratch: &Scratch) -> (PathBuf, PathBuf) {
    let file = scratch.write("j.rhai", SCRIPT);
    let state = scratch.file("state");
    for _ in 0..2 {
        Run::new(&file)
            .current_dir(scratch.path())
            .state_dir(&state)
            .output()
            .assert_success();
    }
    let mut journals: Vec<PathBuf> = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .flatten()
        .map(|entry| entry.path().join("journal.jsonl"))
        .collect();
    journals.sort();
    (journals[0].clone(), journals[1].clone())
}

fn verify(scratch: &Scratch, journal: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["audit", "verify"];
    args.extend_from_slice(extra);
    let path = journal.to_str().unwrap().to_owned();
    let mut run = Run::command(args)
        .arg(path)
        .state_dir(scratch.file("state"));
    run = run.env_remove("RUNBOOK_AUDIT_KEY");
    run.output()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| format!("{line}\n"))
        .collect()
}

/// SHA-256 hex, with the system's sha256sum (the old, unkeyed chain).
fn sha256(text: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// The lines re-chained with plain SHA-256, as a forger without the key would.
fn rechain(lines: &[String]) -> String {
    let mut prev = "0".repeat(64);
    let mut out = String::new();
    for line in lines {
        let at = line.rfind(",\"mac\":\"").unwrap();
        let mut value: serde_json::Value =
            serde_json::from_str(&format!("{}}}", &line[..at])).unwrap();
        value["prev"] = serde_json::Value::from(prev.clone());
        let text = serde_json::to_string(&value).unwrap();
        let body = text.strip_suffix('}').unwrap();
        let mac = sha256(body);
        out.push_str(&format!("{body},\"mac\":\"{mac}\"}}\n"));
        prev = mac;
    }
    out
}

#[test]
fn every_tampering_fails_audit_verify() {
    let scratch = Scratch::new();
    let (journal, other) = two_runs(&scratch);
    let good = std::fs::read_to_string(&journal).unwrap();
    let other_good = std::fs::read_to_string(&other).unwrap();
    verify(&scratch, &journal, &[])
        .assert_success()
        .assert_contains("hash chain intact");
    let all = lines(&journal);
    let count = all.len();
    let end_line = all[count - 1].clone();
    let mut failures = 0;
    let mut check = |name: &str, text: String, flags: &[&str]| {
        std::fs::write(&journal, text).unwrap();
        let output = verify(&scratch, &journal, flags);
        assert_eq!(
            output.code,
            1,
            "{name} passed audit verify\n{}",
            output.report()
        );
        assert!(
            output.stdout.contains("BROKEN") || output.stdout.contains("INCOMPLETE"),
            "{name}\n{}",
            output.report()
        );
        failures += 1;
        std::fs::write(&journal, &good).unwrap();
    };
    check("delete the last line", all[..count - 1].concat(), &[]);
    check(
        "delete the last line (--allow-incomplete)",
        all[..count - 1].concat(),
        &["--allow-incomplete"],
    );
    check("truncate", all[..3].concat(), &["--allow-incomplete"]);
    // The end record of another run, with its seq and prev rewritten.
    let mut forged: serde_json::Value = serde_json::from_str(&end_line).unwrap();
    forged["seq"] = serde_json::Value::from(3);
    let prev_mac = {
        let line = &all[2];
        let at = line.rfind(",\"mac\":\"").unwrap();
        line[at + 7..line.len() - 3].to_owned()
    };
    forged["prev"] = serde_json::Value::from(prev_mac);
    check(
        "truncate + forged end",
        all[..3].concat() + serde_json::to_string(&forged).unwrap().as_str() + "\n",
        &[],
    );
    check("append a line", good.clone() + all[1].as_str(), &[]);
    check("append a copied end", good.clone() + end_line.as_str(), &[]);
    check("re-chain with plain SHA-256", rechain(&all), &[]);
    let mut reordered = all.clone();
    reordered.swap(2, 3);
    check("reorder two lines", reordered.concat(), &[]);
    check("swap journals between runs", other_good.clone(), &[]);
    let edited = good.replacen("\"a\"", "\"z\"", 1);
    check("edit a step name", edited, &[]);
    assert_eq!(failures, 10);

    // Another key re-chains nothing: a journal written under
    // RUNBOOK_AUDIT_KEY does not verify with the state dir's key.
    let file = scratch.file("j.rhai");
    let forged_state = scratch.file("forged-state");
    Run::new(&file)
        .current_dir(scratch.path())
        .state_dir(&forged_state)
        .env(
            "RUNBOOK_AUDIT_KEY",
            "a forger's key, at least 32 characters long",
        )
        .output()
        .assert_success();
    let forged_run = std::fs::read_dir(forged_state.join("runs"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    std::fs::write(
        &journal,
        std::fs::read_to_string(forged_run.join("journal.jsonl")).unwrap(),
    )
    .unwrap();
    let output = verify(&scratch, &journal, &[]);
    assert_eq!(output.code, 1, "{}", output.report());

    // Removing the witness of an intact journal is found too.
    std::fs::write(&journal, &good).unwrap();
    let witness_dir = journal.parent().unwrap().join("witness");
    let witness = witness_dir.join(format!("head-{count}.json"));
    assert!(witness.exists(), "the end record's witness");
    let mut permissions = std::fs::metadata(&witness).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(&witness, permissions).unwrap();
    std::fs::remove_file(&witness).unwrap();
    verify(&scratch, &journal, &[])
        .assert_exit(1)
        .assert_contains("no witness");
}

#[test]
fn the_key_is_outside_the_journal_and_verify_needs_it() {
    let scratch = Scratch::new();
    let (journal, _) = two_runs(&scratch);
    let key = scratch.file("state").join("audit.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the key file is private");
    let key_text = std::fs::read_to_string(&key).unwrap();
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(!text.contains(key_text.trim()), "the key is in the journal");
    // Copied away from its state dir with no key: verify cannot vouch for it.
    let copy = scratch.write("elsewhere/run.jsonl", &text);
    Run::command(["audit", "verify", copy.to_str().unwrap()])
        .output()
        .assert_exit(2)
        .assert_contains("no audit key");
}

#[test]
fn a_journal_without_an_end_fails_unless_allowed_and_still_resumes() {
    let scratch = Scratch::new();
    let file = scratch.write(
        "k.rhai",
        "//! Dies midway.\nstep(\"a\", || 1);\nstep(\"b\", || { shell::run([\"sh\", \"-c\", \"kill -9 $PPID\"]); 2 });\nstep(\"c\", || 3);\n",
    );
    let state = scratch.file("state");
    let killed = Run::new(&file)
        .current_dir(scratch.path())
        .state_dir(&state)
        .output();
    assert_ne!(killed.code, 0, "{}", killed.report());
    let journal = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path()
        .join("journal.jsonl");
    verify(&scratch, &journal, &[])
        .assert_exit(1)
        .assert_contains("no end record");
    verify(&scratch, &journal, &["--allow-incomplete"])
        .assert_success()
        .assert_contains("hash chain intact");
    // Its tail cut off below the last witness (step `a` ended): found even
    // with --allow-incomplete.
    let good = std::fs::read_to_string(&journal).unwrap();
    let kept: String = good
        .lines()
        .take(2)
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(&journal, kept).unwrap();
    verify(&scratch, &journal, &["--allow-incomplete"])
        .assert_exit(1)
        .assert_contains("lines were removed from its end");
    std::fs::write(&journal, &good).unwrap();
    // And it still resumes (the key verifies it; a killed run has no end).
    let resumed = Run::command(["resume", journal.to_str().unwrap()])
        .current_dir(scratch.path())
        .state_dir(&state)
        .output();
    assert_ne!(
        resumed.code,
        2,
        "resume refused the killed run\n{}",
        resumed.report()
    );
}
