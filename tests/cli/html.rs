//! `runbook show RUN --html`: a self-contained report, judged in a real
//! headless browser (Debian's chromium): a screenshot is taken, and the DOM
//! the browser built is checked for every step and host.

use std::path::Path;
use std::process::Command;

use runbook_lab::Lab;

use crate::harness::Scratch;

/// Steps, a fan-out with one slow host, an approved gate, a failure with a
/// rollback, and text that would be markup if it were not escaped.
const REPORT: &str = r#"//! A run worth a report
step("prepare <b>now</b>", || {
    shell::run("true");
    on_rollback(|| shell::run("true"));
});
step("fan out", || {
    ssh::exec_all("all", "case \"$SSH_CONNECTION\" in *' 127.0.0.3 '*) sleep 1.5;; esac; true");
});
approve("Go on?");
step("break", || fail("disk full on /var"));
"#;

fn chromium() -> &'static str {
    let found = Command::new("sh")
        .args(["-c", "command -v chromium"])
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        found,
        "chromium is missing: run `bash scripts/setup.sh` (it installs Debian's chromium)"
    );
    "chromium"
}

/// Chromium, headless, with no network at all (a proxy that does not exist).
fn browser(args: &[&str], page: &Path, profile: &Path) -> std::process::Output {
    Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--proxy-server=127.0.0.1:9",
            "--proxy-bypass-list=<-loopback>",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs")
}

#[test]
fn the_html_report_shows_every_step_host_gate_rollback_and_error_in_a_real_browser() {
    let lab = Lab::builder().ssh_hosts(3).start().expect("the lab starts");
    let scratch = Scratch::new();
    scratch.write("report.rhai", REPORT);
    let output = scratch
        .run("report.rhai")
        .envs(lab.env())
        .context(Lab::CONTEXT)
        .approve()
        .json()
        .output();
    output.assert_exit(1);
    let run_id = output.events_of("run")[0]["run_id"]
        .as_str()
        .expect("run id")
        .to_owned();
    let shown = scratch
        .command(["show", &run_id, "--html"])
        .envs(lab.env())
        .output();
    shown.assert_success();
    let html = shown.stdout.clone();
    // Self-contained: nothing is fetched from anywhere.
    for reference in ["src=", "href=", "url(", "@import", "<script", "<link"] {
        assert!(
            !html.contains(reference),
            "the page refers to `{reference}`:\n{html}"
        );
    }
    assert!(!html.contains("<b>now</b>"), "a step name was not escaped");
    let page = scratch.write("run.html", &html);
    let profile = scratch.path().join("chromium");

    let dom = browser(&["--dump-dom"], &page, &profile);
    let dom_text = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(
        dom.status.success() && dom_text.contains("id=\"timeline\""),
        "chromium did not render the page: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    for step in ["prepare &lt;b&gt;now&lt;/b&gt;", "fan out", "break"] {
        assert!(
            dom_text.contains(&format!("data-kind=\"step\" data-name=\"{step}\"")),
            "no timeline row for step {step}"
        );
    }
    for host in ["host01", "host02", "host03"] {
        assert!(
            dom_text.contains(&format!("data-kind=\"host\" data-name=\"{host}\"")),
            "no timeline row for {host}"
        );
    }
    // The slow host stands out.
    let slow_row = dom_text
        .split("<div class=\"row host\"")
        .find(|row| row.contains("data-name=\"host03\""))
        .expect("host03's row");
    assert!(
        slow_row.contains("bar slow"),
        "host03 is not marked slow: {slow_row}"
    );
    for text in [
        "Go on?",
        "approved",
        "disk full on /var",
        "report.rhai:10:",
        "Rollbacks",
        "failed (exit 1)",
    ] {
        assert!(dom_text.contains(text), "the report does not show `{text}`");
    }

    let screenshot = std::env::var_os("RUNBOOK_HTML_SCREENSHOT")
        .map_or_else(|| scratch.path().join("run.png"), std::path::PathBuf::from);
    let shot = browser(
        &[
            &format!("--screenshot={}", screenshot.display()),
            "--window-size=1280,1600",
        ],
        &page,
        &profile,
    );
    let png = std::fs::read(&screenshot).unwrap_or_default();
    assert!(
        shot.status.success() && png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "no screenshot ({} bytes): {}",
        png.len(),
        String::from_utf8_lossy(&shot.stderr)
    );
}
