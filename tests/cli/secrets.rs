//! Secret values never reach the output, whatever the script does with them,
//! while commands still receive the real value.

use crate::harness::{Output, Run, Scratch};

const TOKEN: &str = "s3cr3t-VALUE-42";

const CONFIG: &str = r#"[context.t]
description = "secrets test"

[context.t.secrets]
token = "env:RB_TEST_TOKEN"
"#;

/// A scratch folder with the config and `script` as `s.rhai`.
fn setup(script: &str) -> Scratch {
    let scratch = Scratch::new();
    scratch.write("runbook.toml", CONFIG);
    scratch.write("s.rhai", script);
    scratch
}

fn run(scratch: &Scratch) -> Run {
    scratch
        .run("s.rhai")
        .config(scratch.file("runbook.toml"))
        .context("t")
        .env("RB_TEST_TOKEN", TOKEN)
}

#[track_caller]
fn assert_no_secret(output: &Output, secret: &str) {
    assert!(
        !output.stdout.contains(secret) && !output.stderr.contains(secret),
        "the secret {secret:?} appeared in the output\n{}",
        output.report()
    );
}

/// Every way a script might leak the token, then a command that fails with it on stderr.
const LEAKY: &str = r#"//! Tries hard to leak the token.
let token = secret("token");
print(token);
print("token is " + token);
print(`interpolated ${token}`);
print(#{token: token});
print(json::stringify(#{token: token}));
log::info("log says " + token);
log::warn("warn says " + token);
log::error(token);
debug(token);
step("use it", || {
    shell::run("echo " + token + " > GOT");
    let echoed = shell::run("echo " + token);
    print(echoed.stdout);
    print(echoed);
    token
});
shell::run("echo " + token + " >&2; exit 1");
"#;

#[test]
fn env_secret_never_prints_in_human_output() {
    let scratch = setup(LEAKY);
    let output = run(&scratch).arg("--verbose").output();
    // The last command fails (exit 1) after the token went to its stderr.
    output
        .assert_exit(1)
        .assert_contains("***")
        .assert_contains("exited with code 1");
    assert_no_secret(&output, TOKEN);
    // ... and the command received the real value.
    assert_eq!(scratch.read("GOT").trim(), TOKEN, "{}", output.report());
}

#[test]
fn env_secret_never_prints_in_json_output() {
    let scratch = setup(LEAKY);
    let output = run(&scratch).json().output();
    output.assert_exit(1);
    assert_no_secret(&output, TOKEN);
    // Still valid JSON lines, with the masked value where the secret was.
    let events = output.events();
    assert!(
        events.iter().any(|event| event.to_string().contains("***")),
        "{}",
        output.report()
    );
    assert_eq!(scratch.read("GOT").trim(), TOKEN);
}

#[test]
fn secret_in_a_fail_message_is_masked() {
    let scratch = setup(
        "//! Fails with the token.\nlet token = secret(\"token\");\nfail(\"bad token \" + token);\n",
    );
    let output = run(&scratch).output();
    output.assert_exit(1).assert_contains("bad token ***");
    assert_no_secret(&output, TOKEN);
    let output = run(&scratch).json().output();
    output.assert_exit(1);
    assert_no_secret(&output, TOKEN);
    let end = output.events().pop().unwrap();
    assert_eq!(end["error"], "bad token ***", "{}", output.report());
}

#[test]
fn secret_in_a_thrown_error_is_masked() {
    let scratch = setup(
        "//! Throws the token.\nlet token = secret(\"token\");\nthrow \"thrown \" + token;\n",
    );
    let output = run(&scratch).output();
    output.assert_exit(1);
    assert_no_secret(&output, TOKEN);
}

#[test]
fn secret_text_typed_by_hand_is_masked_too() {
    // The redactor masks the value's text, not only the Secret type.
    let scratch = setup(&format!(
        "//! Copies the token by hand.\nlet token = secret(\"token\");\nprint(\"{TOKEN}\");\nshell::run(\"echo {TOKEN}\");\n"
    ));
    let output = run(&scratch).output();
    output.assert_success();
    assert_no_secret(&output, TOKEN);
}

#[test]
fn secret_in_dry_run_plan_is_masked() {
    let scratch = setup(LEAKY);
    let output = run(&scratch).dry_run().output();
    output.assert_success().assert_contains("Plan:");
    assert_no_secret(&output, TOKEN);
    assert!(!scratch.exists("GOT"), "a write ran in a dry-run");
}

#[test]
fn missing_secret_variable_is_a_clear_error() {
    let scratch = setup(
        "//! Needs the token.\nshell::run(\"touch BEFORE\");\nlet token = secret(\"token\");\n",
    );
    let output = scratch
        .run("s.rhai")
        .config(scratch.file("runbook.toml"))
        .context("t")
        .env_remove("RB_TEST_TOKEN")
        .output();
    output
        .assert_exit(2)
        .assert_contains("RB_TEST_TOKEN")
        .assert_contains("s.rhai:3:");
}

#[test]
fn unknown_secret_names_the_context() {
    let scratch = setup("//! Needs another secret.\nlet other = secret(\"other\");\n");
    let output = run(&scratch).output();
    output
        .assert_exit(2)
        .assert_contains("context `t` has no secret `other`");
}

#[test]
fn generated_secrets_never_print() {
    let scratch = setup(
        r#"//! Generates secrets and leaks them every way.
let password = secrets::generate(#{length: 24});
let hex = secrets::generate(#{length: 32, charset: "hex"});
print(password);
print("password: " + password);
log::info(`hex ${hex}`);
shell::run("printf %s " + password + " > PASSWORD");
shell::run("printf %s '" + hex + "' > HEX");
print(shell::read("cat PASSWORD").stdout);
shell::run("cat HEX >&2; exit 1");
"#,
    );
    let output = run(&scratch).arg("--verbose").output();
    output.assert_exit(1);
    let password = scratch.read("PASSWORD");
    let hex = scratch.read("HEX");
    assert_eq!(password.len(), 24, "the command got the generated value");
    assert_eq!(hex.len(), 32);
    assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
    assert_no_secret(&output, &password);
    assert_no_secret(&output, &hex);
}

#[test]
fn generated_secrets_never_print_in_json() {
    let scratch = setup(
        r#"//! Generates a secret and prints it.
let password = secrets::generate(#{length: 24});
print("password: " + password);
shell::run("printf %s " + password + " > PASSWORD");
"#,
    );
    let output = run(&scratch).json().output();
    output.assert_success();
    let password = scratch.read("PASSWORD");
    assert_eq!(password.len(), 24);
    assert_no_secret(&output, &password);
    assert!(
        output
            .events_of("log")
            .iter()
            .any(|event| event["message"] == "password: ***"),
        "{}",
        output.report()
    );
}

#[test]
fn secrets_example_keeps_its_values_masked() {
    // The shipped example prints generated secrets; only *** may show.
    let output = Run::new("examples/secrets.rhai").output();
    output.assert_success().assert_contains("new password: ***");
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", output.report());
    assert!(
        lines[1].contains("***"),
        "the JSON holding the token is not masked\n{}",
        output.report()
    );
    assert_eq!(
        lines[2], "***",
        "a string function on a secret gives a secret"
    );
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn the_journal_never_holds_the_secret() {
    let scratch = setup(LEAKY);
    let output = run(&scratch).output();
    output.assert_exit(1);
    let files = files_under(output.state.path());
    let journals: Vec<_> = files
        .iter()
        .filter(|path| path.ends_with("journal.jsonl"))
        .collect();
    assert_eq!(
        journals.len(),
        1,
        "one run, one journal: {files:?}\n{}",
        output.report()
    );
    for file in &files {
        let text = String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned();
        assert!(!text.contains(TOKEN), "{} holds the secret", file.display());
    }
    let journal = std::fs::read_to_string(journals[0]).unwrap();
    assert!(
        journal.contains("***"),
        "the journal does not record the masked calls:\n{journal}"
    );
}
