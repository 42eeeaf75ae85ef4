//! The secrets corpus: secrets that break naive masking (a quote and a
//! backslash, a tab, a newline, a PEM block, unicode, `</`, one and four
//! characters) through every sink (human stdout and stderr, `--output
//! json`, the journal, every file of the state dir, the dry-run plan, error
//! reports); the forms a command can derive from a secret (base64, hex,
//! reversed, parsed JSON/YAML, string functions); the environment children
//! get; and `/proc/*/cmdline` while the shipped example's pattern runs.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runbook_lab::{Lab, S3Kind};

use crate::harness::{Output, Run, Scratch, binary, repo_root};

const QUOTE: &str = "ab\"QuoteSec\\cd";
const TAB: &str = "Tab\tSecret-71";
const NEWLINE: &str = "Line1-Secret\nLine2-Secret";
const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\nVJTUt9Us8cKjMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuic\n-----END PRIVATE KEY-----";
const UNICODE: &str = "pässwört-Ωmega-✓";
const LT: &str = "</script>Sneaky1";
const ONE: &str = "e";
const FOUR: &str = "1234";

/// Distinctive parts of the long secrets: none may appear anywhere, in any
/// encoding (raw, JSON-escaped), whole or in part.
const NEEDLES: &[&str] = &[
    "QuoteSec",
    "Secret-71",
    "Line1-Secret",
    "Line2-Secret",
    "MIIEvQIBADANBgkq",
    "BKcwggSjAgEAAoIBAQC7",
    "VJTUt9Us8cKj",
    "NXp98C3SC6dVMvDuic",
    "pässwört",
    "p\\u00e4ssw",
    "Ωmega",
    "Sneaky1",
];

const CONFIG: &str = r#"[context.t]
description = "secrets corpus"

[context.t.secrets]
quote = "env:RBC_QUOTE"
tab = "env:RBC_TAB"
newline = "env:RBC_NEWLINE"
pem = "file:key.pem"
unicode = "env:RBC_UNICODE"
lt = "env:RBC_LT"
one = "env:RBC_ONE"
four = "env:RBC_FOUR"
"#;

/// Every sink for every long secret, the short ones as whole values, then a
/// command that fails with the PEM block on stderr (the error report).
const CORPUS: &str = r#"//! Every sink, every kind of secret.
let names = ["quote", "tab", "newline", "pem", "unicode", "lt"];
let found = [];
for name in names {
    let s = secret(name);
    found.push(s);
    print(s);
    print("value: " + s);
    print(`interpolated ${s}`);
    print(#{name: name, value: s});
    print(json::stringify(#{value: s}));
    log::info("log " + s);
    log::warn(s);
    step("step " + name, || {
        let r = shell::run(["sh", "-c", "printf '%s\n' \"$S\"; printf 'err %s\n' \"$S\" >&2", "sh"], #{env: #{S: s}});
        print(r.stdout);
        print(r.stderr);
        print(r);
        log::info(r.stdout);
        #{out: r.stdout, err: r.stderr}
    });
    try {
        shell::run(["sh", "-c", "printf '%s\n' \"$S\" >&2; exit 2", "sh"], #{env: #{S: s}});
    } catch (e) {
        log::warn("caught: " + e.message);
        print(e);
    }
    shell::run(["sh", "-c", "printf '%s' \"$S\" > \"$OUT\"", "sh"], #{env: #{S: s, OUT: "got-" + name}});
}
for name in ["one", "four"] {
    let s = secret(name, #{allow_short: true});
    print(s);
    print(shell::read(["sh", "-c", "printf '%s' \"$S\"", "sh"], #{env: #{S: s}}).stdout);
    log::info(shell::read(["sh", "-c", "printf '%s\n' \"$S\"", "sh"], #{env: #{S: s}}).stdout);
}
approve("go on with " + found[0].to_string() + "?");
shell::run(["sh", "-c", "printf '%s\n' \"$S\" >&2; exit 3", "sh"], #{env: #{S: found[3]}});
"#;

fn setup(script: &str) -> Scratch {
    let scratch = Scratch::new();
    scratch.write("runbook.toml", CONFIG);
    scratch.write("key.pem", &format!("{PEM}\n"));
    scratch.write("s.rhai", script);
    scratch
}

fn run(scratch: &Scratch) -> Run {
    scratch
        .run("s.rhai")
        .config(scratch.file("runbook.toml"))
        .context("t")
        .env("RBC_QUOTE", QUOTE)
        .env("RBC_TAB", TAB)
        .env("RBC_NEWLINE", NEWLINE)
        .env("RBC_UNICODE", UNICODE)
        .env("RBC_LT", LT)
        .env("RBC_ONE", ONE)
        .env("RBC_FOUR", FOUR)
}

/// Where `text` shows a needle: (needle, count).
fn occurrences(text: &str, needles: &[&str]) -> Vec<(String, usize)> {
    needles
        .iter()
        .map(|needle| ((*needle).to_owned(), text.matches(needle).count()))
        .filter(|(_, count)| *count > 0)
        .collect()
}

/// Every file under `dir`, read as (lossy) text.
fn all_files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((
                    path.display().to_string(),
                    String::from_utf8_lossy(&bytes).into_owned(),
                ));
            }
        }
    }
    out
}

#[track_caller]
fn assert_clean(output: &Output, needles: &[&str], what: &str) {
    let mut leaks = Vec::new();
    for (sink, text) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        for (needle, count) in occurrences(text, needles) {
            leaks.push(format!("{what} {sink}: {needle:?} ×{count}"));
        }
    }
    for (file, text) in all_files(output.state.path()) {
        for (needle, count) in occurrences(&text, needles) {
            leaks.push(format!("{what} state file {file}: {needle:?} ×{count}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "{}\n{}",
        leaks.join("\n"),
        output.report()
    );
}

/// The lines of stdout as printed (no short secret may be printed whole).
#[track_caller]
fn assert_short_secrets_masked(output: &Output) {
    for line in output.stdout.lines() {
        let line = line.trim();
        assert!(
            line != ONE && line != FOUR,
            "a short secret printed whole: {line:?}\n{}",
            output.report()
        );
    }
}

fn journal_of(output: &Output) -> std::path::PathBuf {
    let runs = output.state.path().join("runs");
    let run = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .next()
        .expect("one run")
        .path();
    run.join("journal.jsonl")
}

#[test]
fn the_corpus_never_shows_in_human_output_the_journal_or_the_state_dir() {
    let scratch = setup(CORPUS);
    let output = run(&scratch).approve().arg("--verbose").output();
    output
        .assert_exit(1)
        .assert_contains("exited with code 3")
        .assert_contains("***");
    assert_clean(&output, NEEDLES, "human");
    assert_short_secrets_masked(&output);
    // The commands got the real values.
    for (name, value) in [
        ("quote", QUOTE),
        ("tab", TAB),
        ("newline", NEWLINE),
        ("pem", PEM),
        ("unicode", UNICODE),
        ("lt", LT),
    ] {
        assert_eq!(scratch.read(&format!("got-{name}")), value, "{name}");
    }
    // The journal still reads and verifies: masking kept its structure,
    // and the 4-digit secret did not mangle the run id.
    let journal = journal_of(&output);
    let run_id = journal
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(output.stderr.contains(&run_id), "{}", output.report());
    Run::command(["audit", "verify", journal.to_str().unwrap()])
        .output()
        .assert_success()
        .assert_contains("hash chain intact");
    Run::command(["show", journal.to_str().unwrap()])
        .output()
        .assert_success()
        .assert_not_contains("QuoteSec");
}

#[test]
fn the_corpus_never_shows_in_json_output() {
    let scratch = setup(CORPUS);
    let output = run(&scratch).approve().json().output();
    output.assert_exit(1);
    assert_clean(&output, NEEDLES, "json");
    // Every line is still a JSON event, with its structure whole.
    let events = output.events();
    assert!(events.iter().any(|event| event["event"] == "step_end"));
    let start = &events[0];
    assert_eq!(start["event"], "run");
    let run_id = start["run_id"].as_str().unwrap();
    assert!(
        journal_of(&output).to_string_lossy().contains(run_id),
        "run id {run_id} mangled"
    );
    for event in &events {
        if let Some(message) = event["message"].as_str() {
            assert!(message != ONE && message != FOUR, "{event}");
        }
    }
}

#[test]
fn the_corpus_never_shows_in_a_dry_run_plan() {
    let scratch = setup(CORPUS);
    let output = run(&scratch).dry_run().output();
    output.assert_success().assert_contains("Plan:");
    assert_clean(&output, NEEDLES, "dry-run");
}

#[test]
fn a_short_secret_is_refused_unless_allowed() {
    let scratch = setup("//! Short.\nlet pin = secret(\"four\");\nprint(pin);\n");
    run(&scratch)
        .output()
        .assert_exit(2)
        .assert_contains("4 characters long")
        .assert_contains("allow_short")
        .assert_not_contains(FOUR);
    let scratch = setup("//! Short.\nlet e = secret(\"one\");\n");
    run(&scratch)
        .output()
        .assert_exit(2)
        .assert_contains("1 character long");
}

const DB_JSON: &str = r#"{"user": "app-user", "password": "Pw-For-Json-77"}"#;
const DB_YAML: &str = "user: yaml-user\npassword: Yaml-Pass-Word-88\n";
const PLAIN: &str = "CorrectHorse-Battery42";

/// Standard base64 (the test's own, to check runbook's independently).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for index in 0..4 {
            if index <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * index)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn derived_forms_of_a_secret_never_show() {
    let scratch = Scratch::new();
    scratch.write(
        "runbook.toml",
        "[context.t]\n[context.t.secrets]\ndb_json = \"env:RBC_DB_JSON\"\ndb_yaml = \"env:RBC_DB_YAML\"\nplain = \"env:RBC_PLAIN\"\n",
    );
    scratch.write(
        "s.rhai",
        r#"//! Derives from secrets every way.
let db = json::parse(secret("db_json"));
print(db.password);
print(db.user);
print(db.password.to_upper());
print(db.password.to_lower());
print(db.password.sub_string(0, 10));
print(db.password.split("-"));
print(db);
let y = yaml::parse(secret("db_yaml"));
print(y.password.to_upper());
print(y);
let s = secret("plain");
print(s.sub_string(3).to_upper());
for command in [
    "printf %s \"$S\" | base64",
    "echo \"$S\" | base64",
    "printf %s \"$S\" | od -An -tx1 -v | tr -d ' \\n'",
    "printf %s \"$S\" | od -An -tx1 -v | tr -d ' \\n' | tr a-f A-F",
    "printf %s \"$S\" | rev",
] {
    let r = shell::read(["sh", "-c", command], #{env: #{S: s}});
    print(r.stdout);
    log::info(r.stdout);
}
let upper = s.to_upper();
print(shell::read(["sh", "-c", "printf '%s' \"$S\"", "sh"], #{env: #{S: upper}}).stdout);
"#,
    );
    let output = scratch
        .run("s.rhai")
        .config(scratch.file("runbook.toml"))
        .context("t")
        .env("RBC_DB_JSON", DB_JSON)
        .env("RBC_DB_YAML", DB_YAML)
        .env("RBC_PLAIN", PLAIN)
        .arg("--verbose")
        .output();
    output.assert_success();
    let hex: String = PLAIN.bytes().map(|byte| format!("{byte:02x}")).collect();
    let reversed: String = PLAIN.chars().rev().collect();
    let derived = [
        "Pw-For-Json-77".to_owned(),
        "PW-FOR-JSON-77".to_owned(),
        "pw-for-json-77".to_owned(),
        "Pw-For-Jso".to_owned(),
        "app-user".to_owned(),
        "Yaml-Pass-Word-88".to_owned(),
        "YAML-PASS-WORD-88".to_owned(),
        "yaml-user".to_owned(),
        PLAIN.to_owned(),
        PLAIN.to_uppercase(),
        "RECTHORSE-BATTERY42".to_owned(),
        base64(PLAIN.as_bytes()),
        base64(format!("{PLAIN}\n").as_bytes()),
        // The part of the base64 that does not depend on what follows.
        base64(&PLAIN.as_bytes()[..21]),
        hex.clone(),
        hex.to_uppercase(),
        reversed,
    ];
    let needles: Vec<&str> = derived.iter().map(String::as_str).collect();
    assert_clean(&output, &needles, "derived");
    assert!(
        output.stdout.matches("***").count() >= 10,
        "{}",
        output.report()
    );
}

#[test]
fn children_do_not_inherit_undeclared_secret_variables() {
    let scratch = Scratch::new();
    scratch.write(
        "runbook.toml",
        "[context.t]\n[context.t.secrets]\ntoken = \"env:RBC_CHILD_TOKEN\"\nother = \"env:RBC_OTHER_TOKEN\"\n[context.prod.secrets]\ndb = \"env:RBC_PROD_PASSWORD\"\n",
    );
    scratch.write(
        "s.rhai",
        r#"//! Looks at what children inherit.
shell::run(["sh", "-c", "env > ENV-PLAIN"]);
shell::run(["sh", "-c", "env > ENV-GIVEN"], #{env: #{RBC_CHILD_TOKEN: secret("token")}});
"#,
    );
    let output = scratch
        .run("s.rhai")
        .config(scratch.file("runbook.toml"))
        .context("t")
        .env("RBC_CHILD_TOKEN", "child-token-value-1")
        .env("RBC_OTHER_TOKEN", "other-token-value-2")
        .env("RBC_PROD_PASSWORD", "prod-password-value-4")
        .env("AWS_SECRET_ACCESS_KEY", "aws-secret-value-3")
        .env(
            "RUNBOOK_AUDIT_KEY",
            "an-audit-key-of-at-least-32-characters",
        )
        .output();
    output.assert_success();
    let plain = scratch.read("ENV-PLAIN");
    for hidden in [
        "RBC_CHILD_TOKEN",
        "child-token-value-1",
        "RBC_OTHER_TOKEN",
        "other-token-value-2",
        "AWS_SECRET_ACCESS_KEY",
        "aws-secret-value-3",
        "RUNBOOK_AUDIT_KEY",
        "an-audit-key",
        "RBC_PROD_PASSWORD",
        "prod-password-value-4",
    ] {
        assert!(!plain.contains(hidden), "a child saw {hidden}:\n{plain}");
    }
    assert!(
        plain.contains("PATH="),
        "the child still has an environment"
    );
    // Passed explicitly, it is there; the others still are not.
    let given = scratch.read("ENV-GIVEN");
    assert!(given.contains("RBC_CHILD_TOKEN=child-token-value-1"));
    assert!(!given.contains("other-token-value-2"));
    assert!(!given.contains("aws-secret-value-3"));
}

/// The command lines of `root` and every process below it, sampled every
/// millisecond until it exits, each as its NUL-joined argv.
fn sample_cmdlines(mut child: std::process::Child) -> (std::process::ExitStatus, Vec<String>) {
    let root = child.id();
    let mut seen = Vec::new();
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return (status, seen);
        }
        assert!(started.elapsed() < Duration::from_secs(120), "hung");
        let Ok(entries) = std::fs::read_dir("/proc") else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if !descends_from(pid, root) && pid != root {
                continue;
            }
            if let Ok(bytes) = std::fs::read(format!("/proc/{pid}/cmdline")) {
                seen.push(String::from_utf8_lossy(&bytes).replace('\0', " "));
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

fn descends_from(mut pid: u32, root: u32) -> bool {
    for _ in 0..32 {
        match parent_of(pid) {
            Some(parent) if parent == root => return true,
            Some(parent) if parent > 1 => pid = parent,
            _ => return false,
        }
    }
    false
}

#[test]
fn no_secret_in_any_command_line_while_the_shipped_example_runs() {
    // examples/secrets.rhai as shipped, with its generated secrets replaced
    // by a secret this test knows, so the command lines can be searched.
    let example = std::fs::read_to_string(repo_root().join("examples/secrets.rhai")).unwrap();
    let known = example.replace(
        "secrets::generate(#{length: 24, charset: \"alphanumeric\"})",
        "secret(\"password\")",
    );
    let known = known.replace(
        "secrets::generate(#{length: 16, charset: \"hex\"})",
        "secret(\"token\")",
    );
    assert_ne!(known, example, "the example changed: update this test");
    let scratch = Scratch::new();
    scratch.write(
        "runbook.toml",
        "[context.t]\n[context.t.secrets]\npassword = \"env:RBC_PASSWORD\"\ntoken = \"env:RBC_TOKEN\"\n",
    );
    let file = scratch.write("secrets.rhai", &known);
    const PASSWORD: &str = "Abcdefghijklmnopqrstuvwx";
    const TOKEN: &str = "0123456789abcdef";
    let state = Scratch::new();
    // Every program the run starts by name goes through a wrapper that logs
    // its argv (what /proc/PID/cmdline shows) before running the real one:
    // no sampling can miss a short-lived command. /proc is sampled as well.
    let shims = scratch.path().join("shims");
    std::fs::create_dir_all(&shims).unwrap();
    let log = scratch.file("argv.log");
    for program in ["sh", "wc", "printf", "env"] {
        let real = which(program);
        let shim = shims.join(program);
        std::fs::write(
            &shim,
            format!(
                "#!/bin/sh\nprintf '%s\\0' \"$0\" \"$@\" >> '{}'\nprintf '\\n' >> '{}'\nexec {} \"$@\"\n",
                log.display(),
                log.display(),
                real.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        shims.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new(binary());
    command
        .args(["run", file.to_str().unwrap(), "--context", "t"])
        .current_dir(scratch.path())
        .env("PATH", path)
        .env("RUNBOOK_CONFIG", scratch.file("runbook.toml"))
        .env("RUNBOOK_STATE_DIR", state.path())
        .env("CI", "true")
        .env("RBC_PASSWORD", PASSWORD)
        .env("RBC_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().unwrap();
    let (status, mut seen) = sample_cmdlines(child);
    assert!(status.success(), "the example failed");
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let logged: Vec<String> = logged.lines().map(|line| line.replace('\0', " ")).collect();
    assert!(
        logged.iter().filter(|line| line.contains("wc")).count() >= 2,
        "the wrappers saw no command: {logged:?}"
    );
    seen.extend(logged);
    let leaks: Vec<&String> = seen
        .iter()
        .filter(|line| line.contains(PASSWORD) || line.contains(TOKEN))
        .collect();
    assert!(leaks.is_empty(), "a secret in a command line: {leaks:?}");
}

/// The program `name` on PATH.
fn which(name: &str) -> std::path::PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not on PATH"))
}

#[test]
fn check_warns_when_a_secret_is_concatenated_into_a_command_line() {
    let scratch = Scratch::new();
    scratch.write(
        "w.rhai",
        r#"//! Puts a secret on the command line.
let pw = secret("pw");
shell::run("mysql -p" + pw);
shell::run(["sh", "-c", `echo ${pw}`]);
ssh::exec("web1", "login " + secrets::generate(#{length: 12}));
shell::run(["sh", "-c", "tool --password-file=/dev/stdin"], #{stdin: pw});
"#,
    );
    let output = scratch.command(["check", "w.rhai"]).output();
    output.assert_success().assert_contains("ok");
    let warnings = output
        .stderr
        .matches("warning: a secret is concatenated")
        .count();
    assert_eq!(warnings, 3, "{}", output.report());
    assert!(output.stderr.contains("w.rhai:3:"), "{}", output.report());
    let shipped = Run::command(["check", "examples/secrets.rhai"])
        .current_dir(repo_root())
        .output();
    shipped
        .assert_success()
        .assert_not_contains("warning: a secret is concatenated");
}

/// `runbook ARGS` against the lab with every descendant's command line
/// sampled; the run's status and what was seen.
fn sampled_run(lab: &Lab, args: &[&str]) -> (std::process::ExitStatus, Vec<String>) {
    let mut command = Command::new(binary());
    command
        .args(args)
        .current_dir(repo_root())
        .envs(lab.env())
        .env("CI", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    sample_cmdlines(command.spawn().unwrap())
}

#[test]
fn no_secret_in_any_command_line_while_the_shipped_runbooks_run() {
    let lab = Lab::builder()
        .ssh_hosts(0)
        .postgres(true)
        .s3(S3Kind::S3sFs)
        .start()
        .expect("the lab starts");
    // Every value the lab hands runbook as a secret (keys, tokens, passwords).
    let secrets: Vec<String> = lab
        .env()
        .into_iter()
        .filter(|(name, value)| {
            let name = name.to_uppercase();
            (name.contains("SECRET") || name.contains("TOKEN") || name.contains("PASSWORD"))
                && value.len() >= 6
        })
        .map(|(_, value)| value)
        .collect();
    assert!(!secrets.is_empty(), "the lab has no secrets to look for");
    let mut seen = Vec::new();
    for args in [
        vec!["run", "runbooks/backup-db.rhai", "--context", "lab"],
        vec![
            "run",
            "runbooks/dr-restore.rhai",
            "--context",
            "lab",
            "--approve",
        ],
        vec![
            "run",
            "--dry-run",
            "runbooks/backup-db.rhai",
            "--context",
            "lab",
        ],
    ] {
        let (status, lines) = sampled_run(&lab, &args);
        assert!(status.success(), "{args:?} failed");
        seen.extend(lines);
    }
    assert!(
        seen.iter().any(|line| line.contains("pg_dump")),
        "the sampling never saw pg_dump"
    );
    let leaks: Vec<&String> = seen
        .iter()
        .filter(|line| secrets.iter().any(|secret| line.contains(secret.as_str())))
        .collect();
    assert!(leaks.is_empty(), "a secret in a command line: {leaks:?}");
}

#[test]
fn the_repl_keeps_secrets_out_of_its_output_and_history() {
    let scratch = Scratch::new();
    let config = scratch.write(
        "runbook.toml",
        "[context.t]\n[context.t.secrets]\ntoken = \"env:RBC_REPL_TOKEN\"\n",
    );
    const TOKEN: &str = "repl-Token\"Value\\77";
    let env = vec![
        ("RUNBOOK_CONFIG".to_owned(), config.display().to_string()),
        ("RBC_REPL_TOKEN".to_owned(), TOKEN.to_owned()),
    ];
    let mut session = crate::harness::pty_with_env(
        &["repl", "--context", "t"],
        scratch.path(),
        &scratch.file("home"),
        "xterm",
        &env,
    );
    session.exp_string("t> ").expect("the prompt");
    let mut seen = String::new();
    for line in [
        "let t = secret(\"token\");",
        "t",
        "#{t: t, text: shell::read([\"sh\", \"-c\", \"printf '%s' \\\"$T\\\"\"], #{env: #{T: t}}).stdout}",
        ":vars",
    ] {
        std::thread::sleep(Duration::from_millis(100));
        session.send_line(line).expect("send a line");
        seen.push_str(&session.exp_string("t> ").expect("the prompt again"));
    }
    // Typed by hand (the terminal echoes it as typed; the history must not keep it).
    std::thread::sleep(Duration::from_millis(100));
    session
        .send_line("print(\"repl-Token\\\"Value\\\\77 typed by hand\")")
        .expect("send a line");
    // Its echo first, then what it printed.
    session.exp_string("typed by hand").expect("the echo");
    let printed = session.exp_string("typed by hand").expect("the output");
    assert!(printed.ends_with("*** "), "{printed:?}");
    session.exp_string("t> ").expect("the prompt again");
    session.send_control('d').expect("Ctrl-D");
    let _ = crate::harness::pty_exit(&mut session);
    for needle in ["repl-Token", "Value\\77", "Value\\\\77"] {
        assert!(
            !seen.contains(needle),
            "{needle} in the REPL's output:\n{seen}"
        );
    }
    assert!(seen.contains("***"), "{seen}");
    let history = scratch.read("home/state/runbook/history");
    assert!(!history.contains("repl-Token"), "history: {history:?}");
    assert!(
        history.contains("secret(\\\"token\\\")") || history.contains("secret(\"token\")"),
        "history: {history:?}"
    );
}
