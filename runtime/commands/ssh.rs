//! `runbook ssh status` and `runbook ssh close [HOST|--all]`: the ssh master
//! connections that runs left running for their context's `ssh.persist`
//! (see `runbook_stdlib::ssh_masters`).

use std::time::Duration;

use runbook_stdlib::StdlibError;
use runbook_stdlib::ssh_masters::{self, Master};

use crate::error::{Diagnostic, Exit};

fn diagnostic(error: &StdlibError) -> Diagnostic {
    let mut diagnostic = Diagnostic::new(error.to_string(), Exit::StepFailed);
    if let Some(hint) = error.hint() {
        diagnostic = diagnostic.hint(hint);
    }
    diagnostic
}

/// A failure to close one of several masters: shown, and the rest still closed.
fn report(error: &StdlibError) -> Exit {
    let diagnostic = diagnostic(error);
    eprintln!("{}", diagnostic.render());
    diagnostic.exit
}

/// `42s`, `3m05s`, `1h02m`.
fn short(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    }
}

/// The table `runbook ssh status` prints on stdout.
fn table(masters: &[Master]) -> String {
    let rows: Vec<[String; 5]> = masters
        .iter()
        .map(|master| {
            [
                master.host.clone(),
                master.destination.clone(),
                short(master.age),
                short(master.idle_left),
                master.pid.to_string(),
            ]
        })
        .collect();
    let header = ["HOST", "DESTINATION", "AGE", "IDLE LEFT", "PID"].map(str::to_owned);
    let mut widths = header.clone().map(|cell| cell.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// `runbook ssh status`: the live masters, oldest first.
pub fn status() -> Result<Exit, Diagnostic> {
    let (dir, masters) = ssh_masters::live().map_err(|error| diagnostic(&error))?;
    if masters.is_empty() {
        eprintln!("no live ssh master connections in {}", dir.display());
        return Ok(Exit::Ok);
    }
    print!("{}", table(&masters));
    eprintln!(
        "{} live in {}; each ends after its idle time unless a run uses it (`runbook ssh close` ends them now)",
        masters.len(),
        dir.display()
    );
    Ok(Exit::Ok)
}

/// Whether `name` names this master: its inventory name, its destination,
/// or its address.
fn matches(master: &Master, name: &str) -> bool {
    let address = master
        .destination
        .rsplit_once('@')
        .map_or(master.destination.as_str(), |(_, rest)| rest);
    let address = address.rsplit_once(':').map_or(address, |(host, _)| host);
    master.host == name || master.destination == name || address == name
}

/// `runbook ssh close HOST` / `--all`: end masters now.
pub fn close(host: Option<&str>, all: bool) -> Result<Exit, Diagnostic> {
    let (_, masters) = ssh_masters::live().map_err(|error| diagnostic(&error))?;
    let chosen: Vec<&Master> = masters
        .iter()
        .filter(|master| all || host.is_some_and(|name| matches(master, name)))
        .collect();
    if chosen.is_empty() {
        return match host {
            Some(name) if !all => Err(Diagnostic::new(
                format!("no live ssh master connection for `{name}`"),
                Exit::Usage,
            )
            .hint("`runbook ssh status` lists them (by host name, destination or address)")),
            _ => {
                eprintln!("no live ssh master connections");
                Ok(Exit::Ok)
            }
        };
    }
    let mut exit = Exit::Ok;
    for master in chosen {
        match ssh_masters::close(master) {
            Ok(()) => eprintln!("closed {} ({})", master.host, master.destination),
            Err(error) => exit = report(&error),
        }
    }
    Ok(exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_short() {
        assert_eq!(short(Duration::from_secs(42)), "42s");
        assert_eq!(short(Duration::from_secs(185)), "3m05s");
        assert_eq!(short(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn hosts_match_by_name_destination_or_address() {
        let master = Master {
            host: "web1".into(),
            destination: "deploy@10.0.0.1:2222".into(),
            age: Duration::ZERO,
            idle_left: Duration::ZERO,
            persist: Duration::ZERO,
            pid: 1,
            socket: "/run/user/1/runbook/ssh/x".into(),
        };
        for name in ["web1", "deploy@10.0.0.1:2222", "10.0.0.1"] {
            assert!(matches(&master, name), "{name}");
        }
        assert!(!matches(&master, "web2"));
        let text = table(std::slice::from_ref(&master));
        assert!(text.starts_with("HOST  DESTINATION"), "{text}");
        assert!(
            text.contains("web1  deploy@10.0.0.1:2222  0s   0s"),
            "{text}"
        );
    }
}
