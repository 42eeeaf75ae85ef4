//! The `runbook-lab` binary, driven as a user would. `RUNBOOK_BIN` points it
//! at `sh`, standing in for runbook, so these tests check what the lab hands
//! the runbook process without needing runbook built.

// Helpers outside `#[test]` functions fail the test by panicking, like the tests.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn lab(args: &[&str], runbook_bin: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runbook-lab"))
        .args(args)
        .env("RUNBOOK_BIN", runbook_bin)
        .output()
        .unwrap()
}

fn sh() -> String {
    ["/bin/sh", "/usr/bin/sh"]
        .into_iter()
        .find(|path| std::path::Path::new(path).is_file())
        .unwrap()
        .to_owned()
}

#[test]
fn help_explains_both_commands() {
    let output = lab(&["--help"], "");
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.contains("runbook-lab up"));
    assert!(help.contains("runbook-lab run"));
    assert!(help.contains("RUNBOOK_BIN"));
}

#[test]
fn no_command_is_a_usage_error() {
    let output = lab(&[], "");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8(output.stderr).unwrap().contains("Usage:"));
}

#[test]
fn run_passes_the_lab_and_the_exit_code_through() {
    // The child sees the lab's config, secret and state folder; its exit code
    // becomes the lab's.
    let script = r#"
        test -f "$RUNBOOK_CONFIG" || exit 10
        grep -q 'default_context = "lab"' "$RUNBOOK_CONFIG" || exit 11
        test "$RUNBOOK_LAB_API_TOKEN" = "lab-token-6f1d2c9a" || exit 12
        test -d "$RUNBOOK_STATE_DIR" || exit 13
        test -f "$(dirname "$RUNBOOK_CONFIG")/slack_webhook" || exit 14
        echo "config=$RUNBOOK_CONFIG"
        exit 7
    "#;
    let output = lab(&["run", "--", "-c", script], &sh());
    assert_eq!(
        output.status.code(),
        Some(7),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let config = stdout.trim().strip_prefix("config=").unwrap();
    // The lab cleaned up after itself.
    assert!(!std::path::Path::new(config).exists());
}

#[test]
fn run_reports_a_missing_runbook_binary() {
    let output = lab(&["run", "run", "x.rhai"], "/nonexistent/runbook");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("runbook-lab: error:"), "{stderr}");
    assert!(stderr.contains("/nonexistent/runbook"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn up_serves_until_sigterm_then_cleans_up() {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};

    let mut child = Command::new(env!("CARGO_BIN_EXE_runbook-lab"))
        .arg("up")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut announced = String::new();
    while !announced.contains("Press Ctrl-C") {
        assert!(stdout.read_line(&mut announced).unwrap() > 0, "{announced}");
    }
    let value = |prefix: &str| {
        let line = announced
            .lines()
            .find(|line| line.contains(prefix))
            .unwrap();
        line.split_once(prefix).unwrap().1.trim().to_owned()
    };
    let config = value("export RUNBOOK_CONFIG=");
    let base = value("http     ");
    assert!(announced.contains("runbook run examples/hello.rhai --context lab"));
    // Four ssh hosts unless told otherwise.
    assert!(announced.contains("ssh      4 hosts"), "{announced}");
    assert!(announced.contains("host04 = "), "{announced}");
    let try_ssh = value("try: ");
    assert!(try_ssh.starts_with("ssh -F ") && try_ssh.ends_with(" 127.0.0.1 true"));
    assert!(std::path::Path::new(&config).is_file());

    let addr = base.strip_prefix("http://").unwrap();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("runbook lab stopped"), "{rest}");
    assert!(!std::path::Path::new(&config).exists());
}

#[test]
fn run_with_ssh_hosts_hands_runbook_working_hosts() {
    // The child finds the ssh config through runbook.toml, as runbook does,
    // and reaches the last host with it.
    let script = r#"
        grep -q '^host03 = ' "$RUNBOOK_CONFIG" || exit 10
        grep -q '^host04 = ' "$RUNBOOK_CONFIG" && exit 11
        grep -q '^web = \["host01", "host02"\]' "$RUNBOOK_CONFIG" || exit 12
        config=$(sed -n 's/^config = "\(.*\)"$/\1/p' "$RUNBOOK_CONFIG" | head -n 1)
        test -f "$config" || exit 13
        ssh -F "$config" 127.0.0.3 'echo from-$((1+2))'
    "#;
    let output = lab(&["run", "--ssh-hosts", "3", "--", "-c", script], &sh());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?} {stderr}", output.status);
    assert_eq!(String::from_utf8(output.stdout).unwrap(), "from-3\n");
    // What the lab says about itself goes to stderr, runbook's stdout stays clean.
    assert!(stderr.contains("ssh      3 hosts"), "{stderr}");
}

#[test]
fn run_without_ssh_hosts_has_no_inventory() {
    let script = r#"grep -q 'hosts\]' "$RUNBOOK_CONFIG" && exit 10; exit 0"#;
    let output = lab(&["run", "--ssh-hosts=0", "-c", script], &sh());
    assert!(
        output.status.success(),
        "{:?} {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_bad_ssh_host_count_is_reported() {
    for bad in ["x", "201", "-1"] {
        let output = lab(&["run", "--ssh-hosts", bad, "--", "-c", "exit 0"], &sh());
        assert_eq!(output.status.code(), Some(1), "{bad}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(
            stderr.contains("--ssh-hosts takes a number from 0 to 200"),
            "{stderr}"
        );
    }
    let output = lab(&["up", "--ssh-hosts"], "");
    assert_eq!(output.status.code(), Some(1));
    let output = lab(&["up", "extra"], "");
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn run_with_hcloud_hands_runbook_the_endpoint_and_token() {
    // What the official hcloud CLI reads, and the context's hcloud table and
    // token secret pointing at the same fake.
    let script = r#"
        case "$HCLOUD_ENDPOINT" in http://127.0.0.1:*/v1) ;; *) exit 10 ;; esac
        test "${#HCLOUD_TOKEN}" = 64 || exit 11
        grep -q "^endpoint = \"$HCLOUD_ENDPOINT\"" "$RUNBOOK_CONFIG" || exit 12
        grep -q '^hcloud_token = "env:HCLOUD_TOKEN"' "$RUNBOOK_CONFIG" || exit 13
        test "$(grep -c '^\[context\..*\.hcloud\]' "$RUNBOOK_CONFIG")" = 2 || exit 14
        echo ok
    "#;
    let output = lab(
        &[
            "run",
            "--hcloud",
            "--ssh-hosts",
            "0",
            "--no-kube",
            "--",
            "-c",
            script,
        ],
        &sh(),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?} {stderr}", output.status);
    assert_eq!(String::from_utf8(output.stdout).unwrap(), "ok\n");
    assert!(stderr.contains("hcloud   http://127.0.0.1:"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn up_with_hcloud_prints_the_variables_the_hcloud_cli_reads() {
    use std::io::{BufRead as _, BufReader};

    let mut child = Command::new(env!("CARGO_BIN_EXE_runbook-lab"))
        .args(["up", "--hcloud", "--ssh-hosts", "0", "--no-kube"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut announced = String::new();
    while !announced.contains("Press Ctrl-C") {
        assert!(stdout.read_line(&mut announced).unwrap() > 0, "{announced}");
    }
    let export = |name: &str| {
        announced
            .lines()
            .find_map(|line| line.trim().strip_prefix(&format!("export {name}=")))
            .unwrap()
            .to_owned()
    };
    let endpoint = export("HCLOUD_ENDPOINT");
    assert!(
        endpoint.starts_with("http://127.0.0.1:") && endpoint.ends_with("/v1"),
        "{endpoint}"
    );
    assert_eq!(export("HCLOUD_TOKEN"), runbook_lab::HcloudApi::TOKEN);
    assert!(
        announced.contains(&format!("  hcloud   {endpoint}")),
        "{announced}"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success());
}
