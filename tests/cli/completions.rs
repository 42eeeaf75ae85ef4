//! Completions are judged by running the real bash completion function; man
//! pages in docs/man are what `runbook man --out` writes today.

use std::process::Command;

use crate::harness::{Scratch, binary, repo_root};

/// What bash completes for `words` (the last one is being typed), in `dir`.
fn complete(scratch: &Scratch, words: &[&str]) -> Vec<String> {
    let script = scratch.path().join("completion.bash");
    let output = Command::new(binary())
        .args(["completions", "bash"])
        .output()
        .expect("runbook completions bash");
    assert!(output.status.success());
    std::fs::write(&script, &output.stdout).expect("write the script");
    let bin_dir = binary().parent().expect("the binary's folder").to_owned();
    let words_text: Vec<String> = words.iter().map(|word| format!("'{word}'")).collect();
    let program = format!(
        "source '{}'; COMP_WORDS=(runbook {}); COMP_CWORD={}; COMP_LINE='runbook {}'; _runbook_dynamic runbook \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        words_text.join(" "),
        words.len(),
        words.join(" ")
    );
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("bash")
        .arg("-c")
        .arg(program)
        .current_dir(scratch.path())
        .env("PATH", path)
        .env("RUNBOOK_STATE_DIR", scratch.path().join("state"))
        .env_remove("RUNBOOK_CONFIG")
        .output()
        .expect("bash");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .filter(|line| !line.is_empty())
        .collect()
}

#[test]
fn bash_completes_subcommands_flags_contexts_run_ids_and_runbooks() {
    let scratch = Scratch::new();
    scratch.command(["init"]).output().assert_success();
    scratch.write(
        "runbooks/runbook.toml",
        &(scratch.read("runbooks/runbook.toml") + "\n[context.staging]\ndescription = \"s\"\n"),
    );
    // A run, so there is a run id to complete.
    scratch
        .command(["run", "--dry-run", "runbooks/hello.rhai"])
        .env("RUNBOOK_STATE_DIR", scratch.path().join("state"))
        .output()
        .assert_success();
    let run_id = std::fs::read_dir(scratch.path().join("state/runs"))
        .expect("runs")
        .next()
        .expect("one run")
        .expect("entry")
        .file_name()
        .into_string()
        .expect("utf-8 id");

    let subcommands = complete(&scratch, &["re"]);
    assert!(
        subcommands.contains(&"resume".to_owned()) && subcommands.contains(&"repl".to_owned()),
        "{subcommands:?}"
    );
    let flags = complete(&scratch, &["run", "--dry"]);
    assert!(flags.contains(&"--dry-run".to_owned()), "{flags:?}");
    let contexts = complete(&scratch, &["run", "runbooks/hello.rhai", "--context", ""]);
    assert_eq!(contexts, ["local", "staging"], "{contexts:?}");
    let runs = complete(&scratch, &["show", ""]);
    assert_eq!(runs, std::slice::from_ref(&run_id));
    let runs = complete(&scratch, &["audit", "verify", &run_id[..8]]);
    assert_eq!(runs, [run_id]);
    let files = complete(&scratch, &["run", "runbooks/he"]);
    assert_eq!(files, ["runbooks/hello.rhai"], "{files:?}");
}

#[test]
fn every_shell_gets_a_script() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let output = Command::new(binary())
            .args(["completions", shell])
            .output()
            .expect("runbook completions");
        assert!(output.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("dry-run"), "{shell}: no flags in\n{text}");
    }
}

#[test]
fn docs_man_is_what_runbook_man_writes() {
    let scratch = Scratch::new();
    scratch
        .command(["man", "--out", "man"])
        .output()
        .assert_success();
    let shipped = repo_root().join("docs/man");
    let mut names: Vec<String> = std::fs::read_dir(scratch.path().join("man"))
        .expect("man pages")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .into_string()
                .expect("name")
        })
        .collect();
    names.sort();
    assert!(
        names.contains(&"runbook.1".to_owned()) && names.contains(&"runbook-run.1".to_owned()),
        "{names:?}"
    );
    for name in &names {
        let fresh =
            std::fs::read_to_string(scratch.path().join("man").join(name)).expect("fresh page");
        let committed = std::fs::read_to_string(shipped.join(name)).unwrap_or_default();
        assert!(
            fresh == committed,
            "docs/man/{name} is stale: run `runbook man --out docs/man`"
        );
    }
    let committed = std::fs::read_dir(&shipped).expect("docs/man").count();
    assert_eq!(
        committed,
        names.len(),
        "docs/man has pages runbook no longer writes"
    );
}
