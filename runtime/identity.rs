//! Who is acting: the user and host a run records, the approver a gate
//! records, and whether we run under CI. One place, so the journal, the
//! gates and the Kubernetes Lease holder (`k8s::lock`, through the Host)
//! name the same person.
//!
//! How far it can be trusted: `$USER`/`$LOGNAME` (else the uid's name in
//! /etc/passwd) and the kernel's hostname are what the operating system
//! says about this process; `$RUNBOOK_APPROVER` is whatever the caller set.
//! Nothing here is authenticated: it is a record of who said they acted.

/// Whether we run under CI (`CI` set to anything but empty, `0` or `false`).
pub fn ci() -> bool {
    std::env::var("CI")
        .is_ok_and(|value| !matches!(value.trim(), "" | "0" | "false" | "FALSE" | "False"))
}

/// Who acts and approves: `$RUNBOOK_APPROVER`, else `$USER@host`.
pub fn approver() -> String {
    if let Ok(name) = std::env::var("RUNBOOK_APPROVER")
        && !name.trim().is_empty()
    {
        return name;
    }
    format!("{}@{}", user(), hostname())
}

/// The user running this process: `$USER`, `$LOGNAME`, else the uid's name.
pub fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(user_from_passwd)
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The name of our uid in /etc/passwd (when USER is not set, as under cron or CI).
fn user_from_passwd() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_owned();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 2 && fields[2] == uid).then(|| fields[0].to_owned())
    })
}

/// This machine's name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}
