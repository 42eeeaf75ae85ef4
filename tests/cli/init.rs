//! `runbook init`: a runbooks folder that checks and dry-runs as written,
//! and is never overwritten without --force.

use crate::harness::Scratch;

#[test]
fn init_scaffolds_a_folder_that_checks_and_dry_runs_and_refuses_to_overwrite() {
    let scratch = Scratch::new();
    scratch.command(["init"]).output().assert_success();
    for file in [
        "runbooks/runbook.toml",
        "runbooks/hello.rhai",
        "runbooks/.gitignore",
    ] {
        assert!(scratch.exists(file), "init did not write {file}");
    }
    let toml = scratch.read("runbooks/runbook.toml");
    assert!(toml.contains("[context.local]"), "{toml}");
    assert!(toml.contains("# [context.production]"), "{toml}");
    scratch
        .command(["check", "--deny-warnings", "runbooks"])
        .output()
        .assert_success();
    scratch
        .command(["run", "--dry-run", "runbooks/hello.rhai"])
        .output()
        .assert_success()
        .assert_contains("Plan: 1 change, 1 approval gate")
        .assert_contains("(local, dry-run");
    scratch
        .command(["run", "runbooks/hello.rhai", "--approve", "name=on-call"])
        .output()
        .assert_success()
        .assert_contains("greeted on-call in hello.txt");
    assert_eq!(scratch.read("hello.txt"), "hello, on-call\n");

    // A second init changes nothing and says why.
    scratch.write("runbooks/hello.rhai", "//! mine\n");
    scratch
        .command(["init"])
        .output()
        .assert_exit(2)
        .assert_contains("not overwriting")
        .assert_contains("--force");
    assert_eq!(scratch.read("runbooks/hello.rhai"), "//! mine\n");
    scratch
        .command(["init", "--force"])
        .output()
        .assert_success();
    assert!(
        scratch
            .read("runbooks/hello.rhai")
            .contains("a first runbook to copy from")
    );
}
