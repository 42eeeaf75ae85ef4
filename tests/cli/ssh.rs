//! `ssh::*` against the lab's real sshd: commands, fan-out, rolling batches,
//! failures (closed port, wrong key, changed host key, timeouts), SFTP,
//! dry-run, and the health-check runbook.

use std::process::Command;

use runbook_lab::Lab;

use crate::harness::{Run, Scratch};

fn lab(hosts: usize) -> Lab {
    Lab::builder()
        .ssh_hosts(hosts)
        .start()
        .expect("the lab starts")
}

/// `runbook run` of `script` (written to the scratch dir) in the lab's `lab` context.
fn run_in(lab: &Lab, scratch: &Scratch, script: &str) -> Run {
    let file = scratch.write("t.rhai", script);
    Run::new(file)
        .envs(lab.env())
        .context("lab")
        .current_dir(scratch.path())
}

#[test]
fn exec_and_read_on_one_host() {
    let lab = lab(2);
    let scratch = Scratch::new();
    let target = scratch.file("made-by-exec");
    let script = format!(
        r#"
let r = ssh::read("host01", "echo hello; echo oops >&2");
assert(r.stdout == "hello\n", "stdout: " + r.stdout);
assert(r.stderr == "oops\n", "stderr: " + r.stderr);
assert(r.code == 0 && r.host == "host01", "code and host");
ssh::exec("host02", "touch {}");
let failed = ssh::read("host01", "exit 3", #{{check: false}});
assert(failed.code == 3, "exit code");
"#,
        target.display()
    );
    run_in(&lab, &scratch, &script).output().assert_success();
    assert!(target.exists(), "ssh::exec ran on the host");
}

#[test]
fn a_failing_command_names_host_command_code_and_stderr() {
    let lab = lab(1);
    let scratch = Scratch::new();
    let out = run_in(
        &lab,
        &scratch,
        r#"ssh::exec("host01", "echo broken pipe >&2; exit 7");"#,
    )
    .output();
    out.assert_exit(1)
        .assert_contains("`host01`")
        .assert_contains("exited with code 7")
        .assert_contains("broken pipe")
        .assert_contains("t.rhai:1:6");
}

#[test]
fn exec_all_reaches_twenty_distinct_hosts() {
    let lab = lab(20);
    let scratch = Scratch::new();
    // SSH_CONNECTION's third field is the address the host answered on.
    let out = run_in(
        &lab,
        &scratch,
        r#"
let results = ssh::exec_all("all", "echo $SSH_CONNECTION | cut -d' ' -f3");
let seen = #{};
for r in results { let a = r.stdout; a.trim(); seen[a] = r.host; assert(r.ok, r.host); }
print("distinct=" + seen.len() + " results=" + results.len());
"#,
    )
    .output();
    out.assert_success()
        .assert_contains("distinct=20 results=20");
    out.assert_contains("hosts: 20 ok, 0 failed");
}

#[test]
fn rolling_batches_of_a_quarter_run_in_four_waves() {
    let lab = lab(8);
    let scratch = Scratch::new();
    let out = run_in(
        &lab,
        &scratch,
        r#"ssh::exec_all("all", "sleep 0.4", #{batch: "25%"});"#,
    )
    .json()
    .output();
    out.assert_success();
    // (start, end) of each host's command: its event's time less its duration.
    let mut spans: Vec<(f64, f64)> = out
        .events_of("host")
        .iter()
        .map(|event| {
            let end = seconds_of_day(event["time"].as_str().unwrap());
            let took = event["duration_ms"].as_f64().unwrap() / 1000.0;
            (end - took, end)
        })
        .collect();
    assert_eq!(spans.len(), 8, "one host event per host\n{}", out.report());
    spans.sort_by(|a, b| a.1.total_cmp(&b.1));
    // Four waves of two: no host of a wave starts before every host of the
    // wave before it has ended (10 ms for the rounding of journal times).
    let waves: Vec<&[(f64, f64)]> = spans.chunks(2).collect();
    for pair in waves.windows(2) {
        let ended = pair[0].iter().map(|span| span.1).fold(f64::MIN, f64::max);
        let started = pair[1].iter().map(|span| span.0).fold(f64::MAX, f64::min);
        assert!(
            started >= ended - 0.01,
            "a host started at {started} before its previous wave ended at {ended}: {spans:?}"
        );
    }
}

/// Seconds of the day from an RFC 3339 time (`2026-11-22T01:02:03.456Z`).
fn seconds_of_day(time: &str) -> f64 {
    let clock = &time[11..time.len() - 1];
    let parts: Vec<f64> = clock.split(':').map(|part| part.parse().unwrap()).collect();
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

#[test]
fn an_unreachable_host_fails_alone_and_fail_fast_stops() {
    let lab = lab(3);
    let scratch = Scratch::new();
    // Port 9 on loopback: nothing listens there.
    let out = run_in(
        &lab,
        &scratch,
        r#"
let results = ssh::exec_all(["host01", "root@127.0.0.1:9", "host02"], "true", #{check: false});
for r in results { print(r.host + " ok=" + r.ok); }
let stopped = ssh::exec_all(["root@127.0.0.1:9", "host01", "host02"], "true", #{check: false, parallel: 1, fail_fast: true});
for r in stopped { print("ff " + r.host + " ok=" + r.ok + " skipped=" + (r.skipped == true)); }
"#,
    )
    .output();
    out.assert_success()
        .assert_contains("host01 ok=true")
        .assert_contains("root@127.0.0.1:9 ok=false")
        .assert_contains("host02 ok=true")
        .assert_contains("Connection refused")
        .assert_contains("ff host01 ok=false skipped=true")
        .assert_contains("ff host02 ok=false skipped=true");
    // Without check: false the call fails and lists the host.
    let scratch = Scratch::new();
    run_in(
        &lab,
        &scratch,
        r#"ssh::exec_all(["host01", "root@127.0.0.1:9"], "true");"#,
    )
    .output()
    .assert_exit(1)
    .assert_contains("1 of 2 hosts failed")
    .assert_contains("sshd listening on that port");
}

/// A runbook.toml with one context `t` reaching host01 with the given ssh table.
fn context_with(scratch: &Scratch, lab: &Lab, ssh_table: &str) -> std::path::PathBuf {
    let ssh = lab.ssh().unwrap();
    let (_, destination) = &ssh.hosts()[0];
    scratch.write(
        "runbook.toml",
        &format!(
            "[context.t]\n[context.t.hosts]\nh = \"{destination}\"\n[context.t.ssh]\n{ssh_table}\n"
        ),
    )
}

#[test]
fn a_key_the_host_does_not_know_is_an_auth_error_with_a_hint() {
    let lab = lab(1);
    let scratch = Scratch::new();
    let key = scratch.file("other_key");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let known_hosts = lab.ssh().unwrap().known_hosts();
    let config = context_with(
        &scratch,
        &lab,
        &format!(
            "known_hosts = \"{}\"\nidentity = \"{}\"",
            known_hosts.display(),
            key.display()
        ),
    );
    let file = scratch.write("t.rhai", r#"ssh::read("h", "true");"#);
    Run::new(file)
        .config(config)
        .context("t")
        .output()
        .assert_exit(1)
        .assert_contains("Permission denied")
        .assert_contains("hint: authentication failed");
}

#[test]
fn a_changed_host_key_is_refused() {
    let lab = lab(1);
    let scratch = Scratch::new();
    let ssh = lab.ssh().unwrap();
    // A known_hosts that pins another key for the host.
    let other = scratch.file("fake_host_key");
    assert!(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&other)
            .status()
            .unwrap()
            .success()
    );
    let public = std::fs::read_to_string(format!("{}.pub", other.display())).unwrap();
    let key: Vec<&str> = public.split_whitespace().take(2).collect();
    let known_hosts = scratch.write(
        "known_hosts",
        &format!("[127.0.0.1]:{} {} {}\n", ssh.port(), key[0], key[1]),
    );
    let config = context_with(
        &scratch,
        &lab,
        &format!(
            "known_hosts = \"{}\"\nidentity = \"{}\"",
            known_hosts.display(),
            ssh.client_key().display()
        ),
    );
    let file = scratch.write("t.rhai", r#"ssh::read("h", "true");"#);
    let out = Run::new(file).config(config).context("t").output();
    out.assert_exit(1)
        .assert_contains("never accepts host keys silently");
    // And an unknown host (empty known_hosts) is refused the same way.
    let empty = scratch.write("empty_known_hosts", "");
    let config = context_with(
        &scratch,
        &lab,
        &format!(
            "known_hosts = \"{}\"\nidentity = \"{}\"",
            empty.display(),
            ssh.client_key().display()
        ),
    );
    let file = scratch.write("t.rhai", r#"ssh::read("h", "true");"#);
    Run::new(file)
        .config(config)
        .context("t")
        .output()
        .assert_exit(1)
        .assert_contains("Host key verification failed");
}

#[test]
fn a_timeout_kills_the_remote_command() {
    let lab = lab(1);
    let scratch = Scratch::new();
    let late = scratch.file("late");
    let script = format!(
        r#"ssh::exec("host01", "sleep 3; touch {}", #{{timeout: "1s"}});"#,
        late.display()
    );
    run_in(&lab, &scratch, &script)
        .output()
        .assert_exit(1)
        .assert_contains("timed out after 1.0s");
    // Had the command survived, it would have touched the file by now.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    assert!(!late.exists(), "the remote command was not killed");
}

/// How a run cancels its fan-out in [`cancel_on_8_hosts`].
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cancel {
    StepTimeout,
    CtrlC,
    Sigterm,
    /// One host fails after 2 s and the fan-out is `fail_fast`.
    FailFast,
}

/// `sleep 4; touch marker` on 8 hosts, cancelled `how`: every command is
/// killed on its host, each host's event says `killed: true`, the rollback
/// starts only after that (it finds none of the commands running), and no
/// marker appears, checked after the 4 s have passed.
fn cancel_on_8_hosts(how: Cancel) {
    let lab = lab(8);
    let scratch = Scratch::new();
    let tag = format!("{how:?}").to_lowercase();
    let marker = format!("{}/marker-{tag}", scratch.path().display());
    let (options, first) = match how {
        Cancel::StepTimeout => ("#{timeout: \"2s\"}".to_owned(), String::new()),
        Cancel::FailFast => {
            // host01 fails after 2 s; the other 7 are killed.
            let address = lab.ssh().unwrap().addresses()[0];
            (
                "#{}".to_owned(),
                format!(
                    "case $(echo $SSH_CONNECTION | cut -d' ' -f3) in {address}) sleep 2; exit 3;; esac; "
                ),
            )
        }
        Cancel::CtrlC | Cancel::Sigterm => ("#{}".to_owned(), String::new()),
    };
    let fan_out = if how == Cancel::FailFast {
        ", #{fail_fast: true}"
    } else {
        ""
    };
    let script = format!(
        r#"
// Connected first, so that the step's timeout falls while the commands run.
ssh::read_all("all", "true");
step("prepare", || on_rollback(|| {{
    let seen = ssh::read_all("all", "ps -eo args | grep -c '[m]arker-{tag}' || true", #{{check: false}});
    let running = 0;
    for r in seen {{ let n = r.stdout; n.trim(); running += parse_int(n); }}
    log::warn("the rollback finds " + running + " of the commands running");
}}));
step("slow", {options}, || ssh::exec_all("all", "{first}sleep 4; touch {marker}-$$"{fan_out}));
"#
    );
    let file = scratch.write("t.rhai", &script);
    let state = scratch.file("state");
    let started = std::time::Instant::now();
    let mut child = Command::new(crate::harness::binary())
        .args(["run", file.to_str().unwrap(), "--context", "lab"])
        .env_remove("RUNBOOK_CONFIG")
        .env_remove("RUNBOOK_CONTEXT")
        .envs(lab.env())
        .env("RUNBOOK_STATE_DIR", &state)
        .env("XDG_STATE_HOME", &state)
        .env("CI", "true")
        .env("NO_COLOR", "1")
        .current_dir(scratch.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(scratch.file("stderr")).unwrap())
        .spawn()
        .unwrap();
    if let Some(signal) = match how {
        Cancel::CtrlC => Some("-INT"),
        Cancel::Sigterm => Some("-TERM"),
        _ => None,
    } {
        // Wait until all 8 commands run on their hosts (this machine).
        let running = || {
            let out = Command::new("ps").args(["-eo", "args"]).output().unwrap();
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|line| line.starts_with("sh -c sleep 4") && line.contains(&marker))
                .count()
        };
        while running() < 8 {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "the commands never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
    }
    let code = child.wait().unwrap().code();
    let expected = match how {
        Cancel::CtrlC => 130,
        Cancel::Sigterm => 143,
        Cancel::StepTimeout | Cancel::FailFast => 1,
    };
    let stderr = std::fs::read_to_string(scratch.file("stderr")).unwrap_or_default();
    let journal = std::fs::read_dir(state.join("runs"))
        .unwrap_or_else(|error| panic!("{how:?}: no journal ({error}): {stderr}"))
        .flatten()
        .map(|entry| entry.path().join("journal.jsonl"))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("{how:?}: no journal: {stderr}"));
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let text: Vec<String> = events.iter().map(ToString::to_string).collect();
    assert_eq!(code, Some(expected), "{how:?}: {stderr}\n{text:#?}");
    let killed: Vec<usize> = (0..events.len())
        .filter(|&index| events[index]["killed"] == serde_json::json!(true))
        .collect();
    let kills = if how == Cancel::FailFast { 7 } else { 8 };
    assert_eq!(
        killed.len(),
        kills,
        "{how:?}: {stderr}\n{}: {text:#?}",
        journal.display()
    );
    let rollback = events
        .iter()
        .position(|event| event["event"] == "rollback")
        .unwrap_or_else(|| panic!("{how:?}: no rollback: {text:#?}"));
    assert!(
        killed.iter().all(|&index| index < rollback),
        "{how:?}: the rollback started before every kill was confirmed: {text:#?}"
    );
    assert!(
        text.iter()
            .any(|line| line.contains("the rollback finds 0 of the commands running")),
        "{how:?}: {text:#?}"
    );
    // Had any command survived, it would have touched its marker by now.
    std::thread::sleep(std::time::Duration::from_millis(5000).saturating_sub(started.elapsed()));
    let touched: Vec<String> = std::fs::read_dir(scratch.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("marker"))
        .collect();
    assert!(
        touched.is_empty(),
        "{how:?}: remote commands outlived the run: {touched:?}"
    );
}

#[test]
fn a_step_timeout_kills_a_single_hosts_command_and_journals_it() {
    let lab = lab(1);
    let scratch = Scratch::new();
    let late = scratch.file("late");
    let script = format!(
        r#"step("slow", #{{timeout: "1s"}}, || ssh::exec("host01", "sleep 3; touch {}"));"#,
        late.display()
    );
    let out = run_in(&lab, &scratch, &script).json().output();
    out.assert_exit(1).assert_contains("timed out after 1.0s");
    let hosts = out.events_of("host");
    assert_eq!(hosts.len(), 1, "{}", out.report());
    assert_eq!(hosts[0]["host"], "host01");
    assert_eq!(hosts[0]["killed"], true, "{}", out.report());
    assert!(
        hosts[0]["error"]
            .as_str()
            .unwrap()
            .contains("killed on the host (confirmed)"),
        "{}",
        out.report()
    );
    std::thread::sleep(std::time::Duration::from_millis(3500));
    assert!(!late.exists(), "the remote command was not killed");
}

#[test]
fn a_step_timeout_kills_the_remote_commands_before_the_rollback() {
    cancel_on_8_hosts(Cancel::StepTimeout);
}

#[test]
fn ctrl_c_kills_the_remote_commands_before_the_rollback() {
    cancel_on_8_hosts(Cancel::CtrlC);
}

#[test]
fn sigterm_kills_the_remote_commands_before_the_rollback() {
    cancel_on_8_hosts(Cancel::Sigterm);
}

#[test]
fn a_failing_fail_fast_fan_out_kills_the_others_before_the_rollback() {
    cancel_on_8_hosts(Cancel::FailFast);
}

#[test]
fn upload_then_download_round_trips_five_megabytes() {
    let lab = lab(1);
    let scratch = Scratch::new();
    let original: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let local = scratch.file("original.bin");
    std::fs::write(&local, &original).unwrap();
    let remote = scratch.file("remote.bin");
    let back = scratch.file("back.bin");
    let script = format!(
        r#"
let up = ssh::upload("host01", "{}", "{}");
let down = ssh::download("host01", "{}", "{}");
print("moved " + up + " " + down);
"#,
        local.display(),
        remote.display(),
        remote.display(),
        back.display()
    );
    run_in(&lab, &scratch, &script)
        .output()
        .assert_success()
        .assert_contains("moved 5242880 5242880");
    assert!(
        std::fs::read(&back).unwrap() == original,
        "the file came back different"
    );
}

#[test]
fn output_that_is_not_utf8_and_ten_megabytes_of_it_are_handled() {
    let lab = lab(1);
    let scratch = Scratch::new();
    let out = run_in(
        &lab,
        &scratch,
        r#"
let odd = ssh::read("host01", "printf '\\377\\376abc'");
print("odd=" + odd.stdout.len() + " ends=" + odd.stdout.ends_with("abc"));
let big = ssh::read_all(["host01"], "head -c 10000000 /dev/zero | tr '\\0' 'a'");
print("big=" + big[0].stdout.len());
"#,
    )
    .output();
    out.assert_success()
        .assert_contains("ends=true")
        .assert_contains("big=10000000");
    assert!(
        out.stderr.len() < 100_000,
        "the screen got the whole 10 MB: {} bytes",
        out.stderr.len()
    );
}

#[test]
fn dry_run_plans_exec_and_runs_read() {
    let lab = lab(1);
    let scratch = Scratch::new();
    let written = scratch.file("x");
    let observed = scratch.file("y");
    let script = format!(
        r#"
ssh::exec("host01", "touch {}");
ssh::read("host01", "touch {}");
"#,
        written.display(),
        observed.display()
    );
    let out = run_in(&lab, &scratch, &script).dry_run().output();
    out.assert_success()
        .assert_contains("Plan: 1 change")
        .assert_contains("ssh::exec(\"host01\"");
    assert!(!written.exists(), "a dry-run ran ssh::exec");
    assert!(observed.exists(), "ssh::read did not run in the dry-run");
}

#[test]
fn health_check_reports_a_service_that_is_down() {
    let lab = lab(3);
    let scratch = Scratch::new();
    // A "service": a process with its own name on the (loopback) hosts.
    let program = scratch.file("rbsvc");
    std::fs::copy("/bin/sleep", &program).unwrap();
    let mut service = Command::new(&program).arg("300").spawn().unwrap();
    let healthy = Run::new("runbooks/health-check.rhai")
        .envs(lab.env())
        .context("lab")
        .param("services", "rbsvc")
        .output();
    service.kill().unwrap();
    service.wait().unwrap();
    healthy
        .assert_success()
        .assert_contains("all healthy")
        .assert_contains("host03");
    let down = Run::new("runbooks/health-check.rhai")
        .envs(lab.env())
        .context("lab")
        .param("services", "rbsvc")
        .output();
    down.assert_exit(1)
        .assert_contains("host01: service down: rbsvc")
        .assert_contains("down: rbsvc");
    // An unhealthy HTTP endpoint is reported too.
    lab.http().set_health(503);
    Run::new("runbooks/health-check.rhai")
        .envs(lab.env())
        .context("lab")
        .output()
        .assert_exit(1)
        .assert_contains("/health")
        .assert_contains("answered 503");
}
