//! The lab's ssh hosts against the real `ssh` and `sftp` clients: keys,
//! known_hosts, the 16-socket boundary between sshd instances, and that
//! nothing of the lab's outlives it.

// Helpers outside `#[test]` functions fail the test by panicking, like the tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use runbook_lab::{Lab, SshLab};

fn lab(hosts: usize) -> Lab {
    Lab::builder().ssh_hosts(hosts).start().unwrap()
}

fn ssh(lab: &Lab) -> &SshLab {
    lab.ssh().expect("the lab was started with ssh hosts")
}

/// `ssh -F <lab config> EXTRA... DESTINATION COMMAND`.
fn run_ssh(ssh: &SshLab, extra: &[&str], destination: &str, command: &str) -> Output {
    Command::new("ssh")
        .arg("-F")
        .arg(ssh.ssh_config())
        .args(extra)
        .args([destination, command])
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn alive(pid: u32) -> bool {
    // A zombie has exited; only its parent's bookkeeping is left.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        !matches!(state.and_then(|rest| rest.chars().next()), Some('Z' | 'X'))
    })
}

/// Pids of live processes whose command line contains `needle`.
fn pgrep(needle: &str) -> Vec<u32> {
    let output = Command::new("pgrep").args(["-f", needle]).output().unwrap();
    text(&output.stdout)
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .filter(|pid| *pid != std::process::id() && alive(*pid))
        .collect()
}

#[test]
fn twenty_hosts_across_two_sshd_instances_run_commands() {
    let lab = lab(20);
    let ssh = ssh(&lab);
    assert_eq!(ssh.pids().len(), 2, "16 listen sockets per sshd");
    let hosts = ssh.hosts();
    assert_eq!(hosts.len(), 20);
    assert_eq!(
        hosts[0],
        (
            "host01".to_owned(),
            format!("{}@127.0.0.1:{}", ssh.user(), ssh.port())
        )
    );
    assert_eq!(
        hosts[19],
        (
            "host20".to_owned(),
            format!("{}@127.0.0.20:{}", ssh.user(), ssh.port())
        )
    );

    // Hosts 16 and 17 sit on either side of the boundary between the instances.
    for host in [1, 16, 17, 20] {
        let address = format!("127.0.0.{host}");
        let output = run_ssh(ssh, &[], &address, "true");
        assert!(
            output.status.success(),
            "ssh {address} true: {}\nsshd logs: {}",
            text(&output.stderr),
            ssh.logs()
        );
    }

    // stdout comes back; the session is the lab's (marker set, SHLVL preset
    // so Debian's bash skips ~/.bashrc and counts up to 2).
    let output = run_ssh(
        ssh,
        &[],
        "127.0.0.17",
        &format!(
            "echo out-$((6*7)); echo err >&2; echo ${}; echo $SHLVL",
            SshLab::MARKER_VAR
        ),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "out-42");
    assert_eq!(lines[1], ssh.dir().display().to_string());
    assert_eq!(text(&output.stderr).trim(), "err");

    // The names in ssh_config work as well as the addresses.
    let output = run_ssh(ssh, &[], "host17", "echo via-name");
    assert_eq!(
        text(&output.stdout).trim(),
        "via-name",
        "{}",
        text(&output.stderr)
    );

    // Exit codes come back too.
    let output = run_ssh(ssh, &[], "127.0.0.20", "exit 3");
    assert_eq!(output.status.code(), Some(3));

    // Nothing but the 20 addresses answers.
    let output = run_ssh(ssh, &["-o", "ConnectTimeout=5"], "127.0.0.21", "true");
    assert!(!output.status.success());
}

#[test]
fn a_key_the_lab_did_not_authorize_is_refused() {
    let lab = lab(2);
    let ssh = ssh(&lab);
    let other = tempfile::tempdir().unwrap();
    let key = other.path().join("id_other");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{}", text(&keygen.stderr));

    // Not `-F <lab config>`: IdentityFile accumulates, so the lab's key
    // would be offered too. Everything else as the lab's config has it.
    let known_hosts = format!("UserKnownHostsFile={}", ssh.known_hosts().display());
    let port = ssh.port().to_string();
    let login = |identity: &Path| {
        Command::new("ssh")
            .args([
                "-F",
                "none",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .args(["-o", "StrictHostKeyChecking=yes", "-o", &known_hosts])
            .arg("-i")
            .arg(identity)
            .args(["-p", &port, "-l", &ssh.user(), "127.0.0.2", "true"])
            .output()
            .unwrap()
    };
    let refused = login(&key);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("Permission denied (publickey)"),
        "{}",
        text(&refused.stderr)
    );
    // The same command with the lab's key gets in.
    let accepted = login(&ssh.client_key());
    assert!(accepted.status.success(), "{}", text(&accepted.stderr));
}

#[test]
fn a_changed_host_key_is_refused() {
    let lab = lab(3);
    let ssh = ssh(&lab);
    let other = tempfile::tempdir().unwrap();
    let key = other.path().join("other_host_key");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{}", text(&keygen.stderr));
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let public: Vec<&str> = public.split_whitespace().take(2).collect();
    let known_hosts = other.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.3]:{} {}\n", ssh.port(), public.join(" ")),
    )
    .unwrap();

    // The first UserKnownHostsFile given wins, so this overrides the config's.
    let option = format!("UserKnownHostsFile={}", known_hosts.display());
    let output = run_ssh(ssh, &["-o", &option], "127.0.0.3", "true");
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || stderr.contains("Host key verification failed"),
        "{stderr}"
    );

    // The lab's own known_hosts has every host under `[address]:port`.
    let ours = std::fs::read_to_string(ssh.known_hosts()).unwrap();
    assert_eq!(ours.lines().count(), 3);
    assert!(ours.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", ssh.port())));
}

#[test]
fn sftp_puts_and_gets_files() {
    let lab = lab(1);
    let ssh = ssh(&lab);
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("local.txt");
    let remote = work.path().join("remote.txt");
    let back = work.path().join("back.txt");
    std::fs::write(&local, "payload over sftp\n").unwrap();
    let batch = work.path().join("batch");
    std::fs::write(
        &batch,
        format!(
            "put \"{}\" \"{}\"\nget \"{}\" \"{}\"\n",
            local.display(),
            remote.display(),
            remote.display(),
            back.display()
        ),
    )
    .unwrap();
    let output = Command::new("sftp")
        .arg("-F")
        .arg(ssh.ssh_config())
        .arg("-b")
        .arg(&batch)
        .arg("127.0.0.1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&remote).unwrap(),
        "payload over sftp\n"
    );
    assert_eq!(
        std::fs::read_to_string(&back).unwrap(),
        "payload over sftp\n"
    );
}

#[test]
fn dropping_the_lab_stops_sshd_and_what_ran_through_it() {
    let lab = lab(17);
    let ssh = ssh(&lab);
    let listeners = ssh.pids();
    assert_eq!(listeners.len(), 2);
    assert!(listeners.iter().all(|pid| alive(*pid)));

    // A "service" planted on host17 the way runbooks do it (it leaves the
    // session's process tree), and a session still running a command.
    let token = format!("lab-service-{}", std::process::id());
    let planted = run_ssh(
        ssh,
        &[],
        "127.0.0.17",
        &format!("nohup sh -c 'sleep 600' {token} >/dev/null 2>&1 &"),
    );
    assert!(planted.status.success(), "{}", text(&planted.stderr));
    let mut session = Command::new("ssh")
        .arg("-F")
        .arg(ssh.ssh_config())
        .args(["127.0.0.1", &format!("sh -c 'sleep 600' {token}-session")])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while pgrep(&format!("sleep 600 {token}")).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the sleeps never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let service = pgrep(&format!("sleep 600 {token}"));

    drop(lab);
    for pid in listeners.iter().chain(&service) {
        assert!(!alive(*pid), "pid {pid} outlived the lab");
    }
    assert!(pgrep(&format!("sleep 600 {token}")).is_empty());
    // The client sees its session end.
    let status = session.wait().unwrap();
    assert!(!status.success());
}

#[test]
fn logins_name_the_host_and_survive_a_restart() {
    let mut lab = lab(18);
    let ssh_lab = ssh(&lab);
    assert!(ssh_lab.logins().is_empty());
    // 127.0.0.17 is served by the second sshd instance.
    for address in ["127.0.0.2", "127.0.0.17", "127.0.0.2"] {
        assert!(run_ssh(ssh_lab, &[], address, "true").status.success());
    }
    let two: std::net::Ipv4Addr = "127.0.0.2".parse().unwrap();
    let seventeen: std::net::Ipv4Addr = "127.0.0.17".parse().unwrap();
    let mut logins = ssh_lab.logins();
    logins.sort();
    assert_eq!(logins, [two, two, seventeen]);
    let port = ssh_lab.port();
    let before = ssh_lab.pids();

    lab.ssh_mut().unwrap().restart().unwrap();
    let ssh_lab = ssh(&lab);
    assert_eq!(ssh_lab.port(), port, "same port after a restart");
    assert!(
        before.iter().all(|pid| !alive(*pid)),
        "old sshd still running"
    );
    let output = run_ssh(ssh_lab, &[], "127.0.0.17", "true");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        ssh_lab.logins().len(),
        4,
        "logins before the restart are kept"
    );
}
