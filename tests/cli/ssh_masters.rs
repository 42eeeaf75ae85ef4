//! ssh master connections that outlive a run (`[context.X.ssh] persist`),
//! against the lab's real sshd: a second run reuses them (the journal says
//! so, and sshd logged one login per host), so does a REPL session, they end
//! after `persist` (and are replaced mid-run when they did), a
//! restarted host or a killed master is dialled again, `runbook ssh close
//! --all` ends them, the user's own ControlMaster is used, and a master
//! folder others can reach is refused.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use runbook_lab::Lab;

use crate::harness::{Output, Run, Scratch};

fn lab(hosts: usize) -> Lab {
    Lab::builder()
        .ssh_hosts(hosts)
        .start()
        .expect("the lab starts")
}

/// `(host, connection)` of every `host` event, sorted by host.
fn connections(out: &Output) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = out
        .events_of("host")
        .iter()
        .map(|event| {
            (
                event["host"].as_str().unwrap_or_default().to_owned(),
                event["connection"].as_str().unwrap_or("(none)").to_owned(),
            )
        })
        .collect();
    found.sort();
    found
}

fn all(hosts: &[&str], how: &str) -> Vec<(String, String)> {
    hosts
        .iter()
        .map(|host| ((*host).to_owned(), how.to_owned()))
        .collect()
}

/// The debug log lines of a run that say how a single-host call connected.
fn connection_notes(out: &Output) -> Vec<String> {
    out.events_of("log")
        .iter()
        .filter_map(|event| event["message"].as_str())
        .filter(|message| message.contains("(connection: "))
        .map(str::to_owned)
        .collect()
}

/// Pids of `ssh` processes whose command line names a socket under `dir`.
fn masters_under(dir: &Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.starts_with("ssh") && text.contains(&needle) {
            pids.push(pid);
        }
    }
    pids
}

/// Wait (a hang guard, not a speed assertion) until no master runs under `dir`.
fn wait_no_masters(dir: &Path, guard: Duration) -> Vec<u32> {
    let deadline = Instant::now() + guard;
    loop {
        let pids = masters_under(dir);
        if pids.is_empty() || Instant::now() > deadline {
            return pids;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sorted(mut addresses: Vec<Ipv4Addr>) -> Vec<Ipv4Addr> {
    addresses.sort();
    addresses
}

#[test]
fn a_second_run_reuses_every_hosts_master_and_close_all_ends_them() {
    let lab = lab(3);
    let ssh = lab.ssh().unwrap();
    let scratch = Scratch::new();
    let runtime_dir = scratch.file("xdg");
    let script = scratch.write(
        "t.rhai",
        r#"
let one = ssh::read("host01", "hostname");
let results = ssh::exec_all("all", "true");
print("ok=" + results.len());
"#,
    );
    let run = || {
        Run::new(&script)
            .envs(lab.env())
            .env("XDG_RUNTIME_DIR", &runtime_dir)
            .context("lab")
            .current_dir(scratch.path())
            .json()
            .output()
    };
    let hosts = ["host01", "host02", "host03"];

    let first = run();
    first.assert_success();
    assert_eq!(
        connections(&first),
        all(&hosts, "new"),
        "{}",
        first.report()
    );
    assert_eq!(
        connection_notes(&first),
        ["ssh `host01`: connected (connection: new)"]
    );
    let after_first = ssh.logins();
    assert_eq!(
        sorted(after_first.clone()),
        ssh.addresses(),
        "one login per host"
    );

    let second = run();
    second.assert_success();
    assert_eq!(
        connections(&second),
        all(&hosts, "reused"),
        "{}",
        second.report()
    );
    assert_eq!(
        connection_notes(&second),
        ["ssh `host01`: reused a live master connection from an earlier run (connection: reused)"]
    );
    assert_eq!(ssh.logins(), after_first, "the second run logged in again");

    // A protected context follows the same rule: same hosts, same options,
    // same masters.
    let read_all = scratch.write("read.rhai", r#"ssh::read_all("all", "true");"#);
    let protected = Run::new(&read_all)
        .envs(lab.env())
        .env("XDG_RUNTIME_DIR", &runtime_dir)
        .context("lab-protected")
        .json()
        .output();
    protected.assert_success();
    assert_eq!(
        connections(&protected),
        all(&hosts, "reused"),
        "{}",
        protected.report()
    );
    assert_eq!(ssh.logins(), after_first);

    // The sockets are in $XDG_RUNTIME_DIR/runbook/ssh, a folder of ours alone.
    let dir = runtime_dir.join("runbook/ssh");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&dir).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700);
    assert_eq!(masters_under(&dir).len(), 3);

    let status = Run::command(["ssh", "status"])
        .env("XDG_RUNTIME_DIR", &runtime_dir)
        .output();
    status.assert_success();
    let lines: Vec<&str> = status.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        4,
        "a header and three masters\n{}",
        status.report()
    );
    let columns = |line: &str| -> Vec<String> {
        line.split("  ")
            .map(str::trim)
            .filter(|cell| !cell.is_empty())
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        columns(lines[0]),
        ["HOST", "DESTINATION", "AGE", "IDLE LEFT", "PID"],
        "{}",
        status.report()
    );
    for (host, (name, destination)) in hosts.iter().zip(ssh.hosts()) {
        assert_eq!(*host, name);
        let row = lines
            .iter()
            .map(|line| columns(line))
            .find(|row| row[0] == name)
            .unwrap_or_else(|| panic!("{name} missing\n{}", status.report()));
        assert_eq!(row[1], destination);
        // Just used: a full idle time (60 s by default) is left, give or take a second.
        assert!(["1m00s", "59s"].contains(&row[3].as_str()), "{row:?}");
    }

    Run::command(["ssh", "close", "--all"])
        .env("XDG_RUNTIME_DIR", &runtime_dir)
        .output()
        .assert_success()
        .assert_contains("closed host01")
        .assert_contains("closed host03");
    assert_eq!(
        masters_under(&dir),
        Vec::<u32>::new(),
        "masters left running"
    );
    // Only the (empty) lock files stay.
    let leftovers: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().and_then(|ext| ext.to_str()) != Some("lock"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    Run::command(["ssh", "status"])
        .env("XDG_RUNTIME_DIR", &runtime_dir)
        .output()
        .assert_success()
        .assert_contains("no live ssh master connections");

    // After close, the next run logs in again.
    let third = run();
    assert_eq!(
        connections(&third),
        all(&hosts, "new"),
        "{}",
        third.report()
    );
    assert_eq!(ssh.logins().len(), 6);
}

/// A runbook.toml with context `t`: the lab's hosts and ssh table plus `extra`.
fn context_with(scratch: &Scratch, lab: &Lab, extra: &str) -> PathBuf {
    let ssh = lab.ssh().unwrap();
    let mut toml = String::from("[context.t]\n[context.t.hosts]\n");
    for (name, destination) in ssh.hosts() {
        toml.push_str(&format!("{name} = \"{destination}\"\n"));
    }
    toml.push_str(&format!(
        "[context.t.groups]\nall = [{}]\n[context.t.ssh]\nconfig = \"{}\"\nknown_hosts = \"{}\"\nidentity = \"{}\"\n{extra}\n",
        ssh.host_names()
            .iter()
            .map(|name| format!("\"{name}\""))
            .collect::<Vec<_>>()
            .join(", "),
        ssh.ssh_config().display(),
        ssh.known_hosts().display(),
        ssh.client_key().display(),
    ));
    scratch.write("runbook.toml", &toml)
}

#[test]
fn after_persist_elapses_a_run_connects_afresh() {
    let lab = lab(2);
    let ssh = lab.ssh().unwrap();
    let scratch = Scratch::new();
    let config = context_with(&scratch, &lab, "persist = \"1s\"");
    let state = scratch.file("state");
    let script = scratch.write("t.rhai", r#"ssh::exec_all("all", "true");"#);
    let run = || {
        Run::new(&script)
            .config(&config)
            .state_dir(&state)
            .context("t")
            .json()
            .output()
    };
    let first = run();
    first.assert_success();
    assert_eq!(connections(&first), all(&["host01", "host02"], "new"));
    // ssh's ControlPersist timer ends the masters after 1 s idle.
    let left = wait_no_masters(&state.join("ssh"), Duration::from_secs(30));
    assert!(left.is_empty(), "masters outlived persist: {left:?}");
    let second = run();
    second.assert_success();
    assert_eq!(
        connections(&second),
        all(&["host01", "host02"], "new"),
        "{}",
        second.report()
    );
    assert_eq!(ssh.logins().len(), 4, "two logins per host");

    // persist = "0": nothing outlives the run.
    let config = context_with(&scratch, &lab, "persist = \"0\"");
    let state = scratch.file("state0");
    let out = Run::new(&script)
        .config(&config)
        .state_dir(&state)
        .context("t")
        .json()
        .output();
    out.assert_success();
    assert_eq!(connections(&out), all(&["host01", "host02"], "new"));
    let left = wait_no_masters(&state.join("ssh"), Duration::from_secs(10));
    assert!(left.is_empty(), "persist = \"0\" left masters: {left:?}");
}

#[test]
fn a_master_that_idles_out_during_a_run_is_replaced() {
    let lab = lab(2);
    let scratch = Scratch::new();
    let config = context_with(&scratch, &lab, "persist = \"1s\"");
    let script = scratch.write(
        "t.rhai",
        r#"
ssh::exec_all("all", "true");
sleep("3s");
let again = ssh::exec_all("all", "echo again");
print("again=" + again.len());
"#,
    );
    let out = Run::new(&script)
        .config(&config)
        .context("t")
        .json()
        .output();
    out.assert_success().assert_contains("again=2");
    // Both calls connected: the first master of each host ended while the
    // run slept, and the second call's commands went over new ones.
    let hosts: Vec<(String, String)> = connections(&out);
    assert_eq!(
        hosts,
        [
            ("host01".to_owned(), "new".to_owned()),
            ("host01".to_owned(), "new".to_owned()),
            ("host02".to_owned(), "new".to_owned()),
            ("host02".to_owned(), "new".to_owned()),
        ],
        "{}",
        out.report()
    );
    assert_eq!(lab.ssh().unwrap().logins().len(), 4);
}

#[test]
fn a_restarted_host_or_a_killed_master_is_dialled_again() {
    let mut lab = lab(2);
    let scratch = Scratch::new();
    let script = scratch.write("t.rhai", r#"ssh::exec_all("all", "true");"#);
    let state = scratch.file("state");
    let run = |lab: &Lab| {
        Run::new(&script)
            .envs(lab.env())
            .state_dir(&state)
            .context("lab")
            .json()
            .output()
    };
    let first = run(&lab);
    first.assert_success();
    assert_eq!(connections(&first), all(&["host01", "host02"], "new"));

    // The hosts' sshd goes away and comes back: the masters' connections broke.
    lab.ssh_mut().unwrap().restart().unwrap();
    let second = run(&lab);
    second.assert_success();
    assert_eq!(
        connections(&second),
        all(&["host01", "host02"], "new"),
        "{}",
        second.report()
    );

    // host01's master dies without cleaning up: its socket stays, stale.
    let dir = state.join("ssh");
    let status = Run::command(["ssh", "status"]).state_dir(&state).output();
    let pid = status
        .stdout
        .lines()
        .find(|line| line.starts_with("host01 "))
        .and_then(|line| line.split_whitespace().last())
        .unwrap_or_else(|| panic!("no host01 master\n{}", status.report()))
        .to_owned();
    assert!(
        Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success()
    );
    let sockets = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|entry| std::os::unix::fs::FileTypeExt::is_socket(&entry.file_type().unwrap()))
            .count()
    };
    assert_eq!(
        sockets(&dir),
        2,
        "the killed master's socket is still there"
    );
    let third = run(&lab);
    third.assert_success();
    assert_eq!(
        connections(&third),
        [
            ("host01".to_owned(), "new".to_owned()),
            ("host02".to_owned(), "reused".to_owned())
        ],
        "{}",
        third.report()
    );
    assert_eq!(lab.ssh().unwrap().logins().len(), 5);
}

#[test]
fn a_repl_session_reuses_a_runs_master_and_leaves_it_running() {
    let lab = lab(1);
    let ssh = lab.ssh().unwrap();
    let scratch = Scratch::new();
    // Found upward from the REPL's working folder.
    context_with(&scratch, &lab, "");
    let home = scratch.file("home");
    // The REPL's state dir is $XDG_STATE_HOME/runbook; the run uses the same.
    let state = home.join("state/runbook");
    let script = scratch.write("t.rhai", r#"ssh::read("host01", "true");"#);
    Run::new(&script)
        .state_dir(&state)
        .context("t")
        .current_dir(scratch.path())
        .output()
        .assert_success();
    assert_eq!(ssh.logins().len(), 1);

    let mut session =
        crate::harness::pty(&["repl", "--context", "t"], scratch.path(), &home, "xterm");
    session.exp_string("t> ").expect("the prompt");
    session
        .send_line(r#"ssh::read("host01", "echo from-$((6*7))").stdout"#)
        .unwrap();
    session.exp_string("from-42").expect("the command's output");
    session.exp_string("t> ").expect("the prompt again");
    session.send_control('d').unwrap();
    assert_eq!(crate::harness::pty_exit(&mut session), 0);
    assert_eq!(ssh.logins().len(), 1, "the REPL logged in again");
    // The REPL left it running for the next one.
    assert_eq!(masters_under(&state.join("ssh")).len(), 1);
    Run::command(["ssh", "close", "--all"])
        .state_dir(&state)
        .output()
        .assert_success()
        .assert_contains("closed host01");
}

#[test]
fn the_users_own_control_master_is_used_and_left_running() {
    let lab = lab(1);
    let ssh = lab.ssh().unwrap();
    let scratch = Scratch::new();
    // The user's ssh_config: the lab's, plus ControlPath for the host.
    let socket = scratch.file("cm-mine");
    let user_config = scratch.write(
        "user_ssh_config",
        &format!(
            "Host 127.0.0.1\n  ControlMaster auto\n  ControlPath {}\n{}",
            socket.display(),
            std::fs::read_to_string(ssh.ssh_config()).unwrap()
        ),
    );
    let started = Command::new("ssh")
        .arg("-F")
        .arg(&user_config)
        .args(["-o", "ControlPersist=60", "-f", "-N", "127.0.0.1"])
        .status()
        .unwrap();
    assert!(started.success());
    assert!(socket.exists());
    let logins = ssh.logins().len();

    let mut toml = std::fs::read_to_string(context_with(&scratch, &lab, "")).unwrap();
    toml = toml.replace(
        &format!("config = \"{}\"", ssh.ssh_config().display()),
        &format!("config = \"{}\"", user_config.display()),
    );
    let config = scratch.write("runbook.toml", &toml);
    let script = scratch.write("t.rhai", r#"ssh::exec_all("all", "true");"#);
    let state = scratch.file("state");
    let out = Run::new(&script)
        .config(&config)
        .state_dir(&state)
        .context("t")
        .json()
        .output();
    out.assert_success();
    assert_eq!(
        connections(&out),
        all(&["host01"], "user"),
        "{}",
        out.report()
    );
    assert_eq!(ssh.logins().len(), logins, "runbook logged in itself");
    // runbook did not end it, and started none of its own.
    let check = Command::new("ssh")
        .arg("-F")
        .arg(&user_config)
        .args(["-O", "check", "127.0.0.1"])
        .output()
        .unwrap();
    assert!(check.status.success(), "the user's master is gone");
    assert_eq!(masters_under(&state.join("ssh")), Vec::<u32>::new());
    let _ = Command::new("ssh")
        .arg("-F")
        .arg(&user_config)
        .args(["-O", "exit", "127.0.0.1"])
        .output();
}

#[test]
fn a_master_folder_others_can_reach_or_own_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let lab = lab(1);
    let scratch = Scratch::new();
    let runtime_dir = scratch.file("xdg");
    let dir = runtime_dir.join("runbook/ssh");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = scratch.write("t.rhai", r#"ssh::read("host01", "true");"#);
    let run = || {
        Run::new(&script)
            .envs(lab.env())
            .env("XDG_RUNTIME_DIR", &runtime_dir)
            .context("lab")
            .current_dir(scratch.path())
            .output()
    };
    run()
        .assert_exit(1)
        .assert_contains(&format!(
            "refusing the ssh master folder `{}`: its mode is 0755",
            dir.display()
        ))
        .assert_contains(&format!("`chmod 700 {}`", dir.display()));
    Run::command(["ssh", "status"])
        .env("XDG_RUNTIME_DIR", &runtime_dir)
        .output()
        .assert_exit(1)
        .assert_contains("its mode is 0755");

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    run().assert_success();
    Run::command(["ssh", "close", "--all"])
        .env("XDG_RUNTIME_DIR", &runtime_dir)
        .output()
        .assert_success();

    // Another user's folder (only root can make one here).
    if std::os::unix::fs::chown(&dir, Some(4242), None).is_ok() {
        run()
            .assert_exit(1)
            .assert_contains("is owned by uid 4242, not by you");
    }

    // A bad `persist` names the key.
    let config = context_with(&scratch, &lab, "persist = \"soon\"");
    let script = scratch.write("bad.rhai", r#"ssh::read("host01", "true");"#);
    Run::new(script)
        .config(config)
        .context("t")
        .output()
        .assert_exit(2)
        .assert_contains("context `t`: `ssh.persist` is not a duration");
}

#[test]
fn ssh_close_needs_a_host_or_all_and_names_an_unknown_host() {
    let scratch = Scratch::new();
    Run::command(["ssh", "close"])
        .env("XDG_RUNTIME_DIR", scratch.path())
        .output()
        .assert_exit(2)
        .assert_contains("<HOST|--all>");
    Run::command(["ssh", "close", "web9"])
        .env("XDG_RUNTIME_DIR", scratch.path())
        .output()
        .assert_exit(2)
        .assert_contains("no live ssh master connection for `web9`")
        .assert_contains("`runbook ssh status` lists them");
    Run::command(["ssh", "status"])
        .env("XDG_RUNTIME_DIR", scratch.path())
        .output()
        .assert_success()
        .assert_contains("no live ssh master connections in");
    let help = Run::command(["ssh", "--help"]).output();
    help.assert_success()
        .assert_contains("persist = \"60s\"")
        .assert_contains("$XDG_RUNTIME_DIR/runbook/ssh")
        .assert_contains("ControlPath");
}

/// A command that kills every sshd session of the lab (the processes the
/// listeners forked per connection): every master's connection breaks.
fn drop_sessions(lab: &Lab) -> String {
    lab.ssh()
        .unwrap()
        .pids()
        .iter()
        .map(|pid| format!("pkill -KILL -P {pid}"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn a_master_whose_connection_broke_mid_run_is_dialled_again_once_per_call() {
    let lab = lab(2);
    let scratch = Scratch::new();
    let drop = drop_sessions(&lab);
    let script = scratch.write(
        "t.rhai",
        &format!(
            r#"
ssh::read_all("all", "echo one");
shell::run(["sh", "-c", "{drop}; sleep 0.2"]);
let read = ssh::read_all("all", "echo two");
print("read=" + read.len());
shell::run(["sh", "-c", "{drop}; sleep 0.2"]);
ssh::exec_all("all", "echo three");
print("write=ok");
shell::run(["sh", "-c", "{drop}; sleep 0.2"]);
step("retried", #{{retries: 3, backoff: "100ms"}}, || ssh::exec("host01", "echo four"));
print("step=ok");
"#
        ),
    );
    let out = Run::new(&script)
        .envs(lab.env())
        .context("lab")
        .json()
        .output();
    out.assert_success()
        .assert_contains("read=2")
        .assert_contains("write=ok")
        .assert_contains("step=ok");
    // One login per host for each of the four connections.
    assert_eq!(
        lab.ssh().unwrap().logins().len(),
        2 * 3 + 1,
        "{}",
        out.report()
    );
}

#[test]
fn a_write_whose_connection_broke_while_it_ran_is_not_run_again_and_says_it_may_have_run() {
    let lab = lab(1);
    let scratch = Scratch::new();
    let log = scratch.file("ran");
    let drop = drop_sessions(&lab);
    let script = scratch.write(
        "t.rhai",
        &format!(
            r#"ssh::exec("host01", "echo ran >> {}; {drop}; sleep 5");"#,
            log.display()
        ),
    );
    let out = Run::new(&script).envs(lab.env()).context("lab").output();
    out.assert_exit(1).assert_contains("it may have run");
    assert_eq!(scratch.read("ran"), "ran\n", "the write ran once");

    // A step's retry of such a write goes over a fresh connection; a read
    // whose connection broke is started again by itself.
    let script = scratch.write(
        "t.rhai",
        &format!(
            r#"
let tries = 0;
step("flaky", #{{retries: 3, backoff: "100ms"}}, || {{
    tries += 1;
    if tries == 1 {{
        ssh::exec("host01", "echo try >> {log}; {drop}; sleep 5");
    }} else {{
        ssh::exec("host01", "echo try >> {log}");
    }}
}});
print("tries=" + tries);
let read = ssh::read("host01", "if [ ! -e {log}.read ]; then touch {log}.read; {drop}; sleep 5; fi; echo read");
print("read=" + read.stdout);
"#,
            log = log.display()
        ),
    );
    std::fs::remove_file(&log).unwrap();
    let out = Run::new(&script).envs(lab.env()).context("lab").output();
    out.assert_success()
        .assert_contains("tries=2")
        .assert_contains("read=read")
        .assert_contains("may have run");
    assert_eq!(scratch.read("ran"), "try\ntry\n");
}

#[test]
fn a_host_whose_sshd_restarts_mid_run_is_reached_again_by_reads_writes_and_step_retries() {
    let mut lab = lab(2);
    let scratch = Scratch::new();
    let ready = scratch.file("ready");
    let go = scratch.file("go");
    let script = scratch.write(
        "t.rhai",
        &format!(
            r#"
ssh::exec_all("all", "true");
shell::run(["touch", "{ready}"]);
while shell::read(["test", "-e", "{go}"], #{{check: false}}).code != 0 {{ sleep("100ms"); }}
let read = ssh::read_all("all", "echo after");
step("write", #{{retries: 3, backoff: "200ms"}}, || ssh::exec_all("all", "echo write"));
print("after=" + read.len());
"#,
            ready = ready.display(),
            go = go.display()
        ),
    );
    let run = Run::new(&script).envs(lab.env()).context("lab").json();
    let running = std::thread::spawn(move || run.output());
    let started = Instant::now();
    while !ready.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run never got ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // sshd goes away (every session with it) and comes back.
    lab.ssh_mut().unwrap().restart().unwrap();
    std::fs::write(&go, "").unwrap();
    let out = running.join().unwrap();
    out.assert_success().assert_contains("after=2");
    // Each host: the first master, and one new master after the restart.
    assert_eq!(lab.ssh().unwrap().logins().len(), 4, "{}", out.report());
}
