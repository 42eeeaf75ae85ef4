//! `runbook show RUN --html`: a run's journal as one self-contained page
//! (inline CSS, no scripts, no fonts, no network): the header, a timeline
//! with a bar per step and per host of a fan-out (so a slow host stands
//! out), the gates and their decisions, the plan with its diffs, the
//! rollbacks, and the errors with their file:line. Everything shown comes
//! from the journal, which is already redacted, and every text is escaped.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::event::{CallOutcome, Event, GateDecision, StepStatus};

/// One bar of the timeline.
struct Bar {
    label: String,
    start_ms: i64,
    duration_ms: i64,
    class: &'static str,
    /// A host of a fan-out, drawn under its step.
    nested: bool,
    note: String,
}

fn millis(time: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(time)
        .ok()
        .map(|time| time.with_timezone(&Utc).timestamp_millis())
}

/// `text` safe inside HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn human_ms(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1d232b;background:#fafbfc}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #dde2e8;padding-bottom:4px}
.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:12px 0}
.meta dt{color:#5b6673} .meta dd{margin:0}
.status{display:inline-block;padding:1px 10px;border-radius:10px;font-weight:600;color:#fff}
.ok{background:#2f9e5b} .failed,.error{background:#d64545} .other{background:#b7791f}
.timeline{background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:10px 12px}
.row{display:grid;grid-template-columns:260px 1fr 80px;align-items:center;gap:8px;height:24px}
.row.host .label{padding-left:18px;color:#5b6673}
.label{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.track{position:relative;height:14px;background:#f0f2f5;border-radius:3px}
.bar{position:absolute;top:0;height:14px;border-radius:3px;min-width:2px}
.bar.ok{background:#3b82c4} .bar.failed{background:#d64545} .bar.skipped{background:#a0a8b3} .bar.host{background:#7aa7d6} .bar.hostfail{background:#e07b7b} .bar.slow{background:#e0a23b}
.dur{text-align:right;color:#5b6673;font-variant-numeric:tabular-nums}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde2e8}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef1f4;vertical-align:top}
th{background:#f3f5f8;font-weight:600}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}
pre{background:#f6f8fa;border:1px solid #e3e7ec;padding:8px;overflow:auto;margin:4px 0}
.add{color:#1a7f37} .del{color:#cf222e} .none{color:#5b6673}
";

/// The page for a run's events.
pub fn render(run: &str, events: &[Event], cut_bytes: usize) -> String {
    let mut title = format!("run {run}");
    let mut meta: Vec<(String, String)> = Vec::new();
    let mut start = None;
    let mut end_ms = None;
    let mut result = ("incomplete".to_owned(), "other");
    let mut bars: Vec<Bar> = Vec::new();
    let mut open_steps: Vec<(String, i64)> = Vec::new();
    let mut calls = String::new();
    let mut gates = String::new();
    let mut plan = String::new();
    let mut rollbacks = String::new();
    let mut errors = String::new();
    let mut plan_number = 0;

    for event in events {
        let at_ms = millis(event.time());
        if let Some(time) = at_ms {
            end_ms = Some(end_ms.map_or(time, |end: i64| end.max(time)));
        }
        match event {
            Event::Run {
                run_id,
                runbook,
                params,
                context,
                user,
                host,
                version,
                mode,
                time,
                ..
            } => {
                title = format!("{runbook} — run {run_id}");
                start = millis(time);
                let params = if params.is_empty() {
                    "(none)".to_owned()
                } else {
                    params
                        .iter()
                        .map(|(name, value)| match value {
                            serde_json::Value::String(text) => format!("{name}={text}"),
                            other => format!("{name}={other}"),
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                meta.extend([
                    ("runbook".to_owned(), runbook.clone()),
                    ("run".to_owned(), run_id.clone()),
                    ("params".to_owned(), params),
                    (
                        "context".to_owned(),
                        context.clone().unwrap_or_else(|| "(none)".into()),
                    ),
                    ("mode".to_owned(), mode.name().to_owned()),
                    ("who".to_owned(), format!("{user}@{host}")),
                    ("started".to_owned(), time.clone()),
                    ("runbook version".to_owned(), version.clone()),
                ]);
            }
            Event::Resume {
                user, host, time, ..
            } => {
                meta.push(("resumed".to_owned(), format!("{time} by {user}@{host}")));
            }
            Event::StepStart { step, time } => {
                open_steps.push((step.clone(), millis(time).unwrap_or_default()));
            }
            Event::StepEnd {
                step,
                status,
                duration_ms,
                error,
                time,
                ..
            } => {
                let begun = open_steps
                    .iter()
                    .rposition(|(name, _)| name == step)
                    .map(|index| open_steps.remove(index).1);
                let duration = i64::try_from(*duration_ms).unwrap_or(i64::MAX);
                let started = begun.unwrap_or_else(|| millis(time).unwrap_or_default() - duration);
                let class = match status {
                    StepStatus::Ok => "ok",
                    StepStatus::Failed => "failed",
                    StepStatus::Skipped => "skipped",
                };
                // Hosts of this step's fan-outs were pushed before its end: keep them under it.
                let hosts_at = bars
                    .iter()
                    .rposition(|bar| !bar.nested)
                    .map_or(0, |index| index + 1);
                let first_host = bars[hosts_at..]
                    .iter()
                    .position(|bar| bar.nested && bar.start_ms >= started)
                    .map_or(bars.len(), |index| hosts_at + index);
                bars.insert(
                    first_host,
                    Bar {
                        label: step.clone(),
                        start_ms: started,
                        duration_ms: duration,
                        class,
                        nested: false,
                        note: error.clone().unwrap_or_default(),
                    },
                );
                if let Some(error) = error {
                    let _ = write!(
                        errors,
                        "<tr><td>step <b>{}</b></td><td><pre>{}</pre></td></tr>",
                        escape(step),
                        escape(error)
                    );
                }
            }
            Event::Host {
                function,
                host,
                ok,
                duration_ms,
                error,
                time,
                ..
            } => {
                let duration = i64::try_from(*duration_ms).unwrap_or(i64::MAX);
                bars.push(Bar {
                    label: host.clone(),
                    start_ms: millis(time).unwrap_or_default() - duration,
                    duration_ms: duration,
                    class: if *ok { "host" } else { "hostfail" },
                    nested: true,
                    note: error.clone().unwrap_or_default(),
                });
                if let Some(error) = error {
                    let _ = write!(
                        errors,
                        "<tr><td>{} on <b>{}</b></td><td><pre>{}</pre></td></tr>",
                        escape(function),
                        escape(host),
                        escape(error)
                    );
                }
            }
            Event::Call {
                function,
                args,
                at,
                step,
                outcome,
                duration_ms,
                error,
                diff,
                ..
            } => {
                let call = format!("{function}({})", args.join(", "));
                let outcome_text = match outcome {
                    CallOutcome::Ok => "ok",
                    CallOutcome::Error => "error",
                    CallOutcome::Planned => "planned",
                    CallOutcome::Fixture => "fixture",
                    CallOutcome::Placeholder => "placeholder",
                };
                let _ = write!(
                    calls,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td class=\"dur\">{}</td><td><code>{}</code></td></tr>",
                    escape(&call),
                    escape(step.as_deref().unwrap_or("")),
                    outcome_text,
                    human_ms(i64::try_from(*duration_ms).unwrap_or(i64::MAX)),
                    escape(at)
                );
                if *outcome == CallOutcome::Planned {
                    plan_number += 1;
                    let _ = write!(
                        plan,
                        "<li><code>{}</code> <span class=\"none\">at {}</span>{}</li>",
                        escape(&call),
                        escape(at),
                        diff.as_deref().map(render_diff).unwrap_or_default()
                    );
                }
                if let Some(error) = error {
                    let _ = write!(
                        errors,
                        "<tr><td><code>{}</code> at <code>{}</code></td><td><pre>{}</pre></td></tr>",
                        escape(&call),
                        escape(at),
                        escape(error)
                    );
                }
            }
            Event::Gate {
                message,
                decision,
                approver,
                how,
                at,
                channel,
                comment,
                time,
                ..
            } => {
                let decision = match decision {
                    GateDecision::Approved => "approved",
                    GateDecision::Rejected => "rejected",
                    GateDecision::Planned => "planned (dry-run)",
                    GateDecision::Waiting => "waiting",
                    GateDecision::Expired => "expired",
                };
                let _ = write!(
                    gates,
                    "<tr><td>{}</td><td><b>{decision}</b></td><td>{}</td><td>{}{}</td><td>{}</td><td><code>{}</code></td></tr>",
                    escape(message),
                    escape(approver),
                    escape(how),
                    channel
                        .map(|channel| format!(" ({})", channel.name()))
                        .unwrap_or_default(),
                    escape(comment.as_deref().unwrap_or("")),
                    escape(at)
                );
                let _ = time;
            }
            Event::Rollback {
                step,
                status,
                error,
                time,
            } => {
                let status = match status {
                    StepStatus::Ok => "ran",
                    StepStatus::Failed => "failed",
                    StepStatus::Skipped => "skipped",
                };
                let _ = write!(
                    rollbacks,
                    "<tr><td>{}</td><td>{status}</td><td>{}</td><td>{}</td></tr>",
                    escape(step),
                    escape(error.as_deref().unwrap_or("")),
                    escape(time)
                );
            }
            Event::End {
                status,
                exit_code,
                duration_ms,
                error,
                ..
            } => {
                let class = match status.status() {
                    "ok" => "ok",
                    "failed" => "failed",
                    "error" => "error",
                    _ => "other",
                };
                result = (
                    format!(
                        "{} (exit {exit_code}) in {}",
                        status.status(),
                        human_ms(i64::try_from(*duration_ms).unwrap_or(i64::MAX))
                    ),
                    class,
                );
                if let Some(error) = error {
                    let _ = write!(
                        errors,
                        "<tr><td>the run</td><td><pre>{}</pre></td></tr>",
                        escape(error)
                    );
                }
            }
            Event::Input { .. } | Event::Log { .. } => {}
        }
    }
    // Steps still open when the journal ends (the run was killed): bars to its end.
    for (step, started) in open_steps {
        bars.push(Bar {
            label: format!("{step} (did not end)"),
            start_ms: started,
            duration_ms: end_ms.unwrap_or(started) - started,
            class: "failed",
            nested: false,
            note: "the journal ends while this step runs".to_owned(),
        });
    }

    let origin = start
        .or_else(|| bars.iter().map(|bar| bar.start_ms).min())
        .unwrap_or_default();
    let span = bars
        .iter()
        .map(|bar| bar.start_ms + bar.duration_ms)
        .chain(end_ms)
        .max()
        .unwrap_or(origin)
        .saturating_sub(origin)
        .max(1);
    // A host far slower than its peers is marked.
    let host_durations: Vec<i64> = bars
        .iter()
        .filter(|bar| bar.nested)
        .map(|bar| bar.duration_ms)
        .collect();
    let median = {
        let mut sorted = host_durations.clone();
        sorted.sort_unstable();
        sorted.get(sorted.len() / 2).copied().unwrap_or(0)
    };

    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n",
        escape(&title)
    );
    let _ = write!(
        page,
        "<h1>{}</h1><span class=\"status {}\" id=\"result\">{}</span>\n<dl class=\"meta\">",
        escape(&title),
        result.1,
        escape(&result.0)
    );
    for (name, value) in &meta {
        let _ = write!(page, "<dt>{}</dt><dd>{}</dd>", escape(name), escape(value));
    }
    if cut_bytes > 0 {
        let _ = write!(
            page,
            "<dt>journal</dt><dd>its last line was cut off ({cut_bytes} bytes): the process died while writing it</dd>"
        );
    }
    page.push_str("</dl>\n<h2>Timeline</h2><div class=\"timeline\" id=\"timeline\">\n");
    if bars.is_empty() {
        page.push_str("<p class=\"none\">no steps</p>");
    }
    for bar in &bars {
        let left = (bar.start_ms - origin) as f64 * 100.0 / span as f64;
        let width = bar.duration_ms as f64 * 100.0 / span as f64;
        let slow = bar.nested
            && median > 0
            && bar.duration_ms > median * 2
            && bar.duration_ms - median > 200;
        let class = if slow { "slow" } else { bar.class };
        let tip = if slow {
            format!(
                "{} — slow: {} against a median of {}",
                bar.note,
                human_ms(bar.duration_ms),
                human_ms(median)
            )
        } else {
            bar.note.clone()
        };
        let _ = write!(
            page,
            "<div class=\"row{}\" data-kind=\"{}\" data-name=\"{}\"><div class=\"label\" title=\"{}\">{}</div><div class=\"track\"><div class=\"bar {class}\" style=\"left:{:.3}%;width:{:.3}%\" title=\"{}\"></div></div><div class=\"dur\">{}</div></div>",
            if bar.nested { " host" } else { "" },
            if bar.nested { "host" } else { "step" },
            escape(&bar.label),
            escape(&bar.label),
            escape(&bar.label),
            left.clamp(0.0, 100.0),
            width.clamp(0.0, 100.0 - left.clamp(0.0, 100.0)),
            escape(&tip),
            human_ms(bar.duration_ms)
        );
    }
    page.push_str("</div>\n");
    section(
        &mut page,
        "Gates",
        "gates",
        "<tr><th>gate</th><th>decision</th><th>who</th><th>how</th><th>comment</th><th>at</th></tr>",
        &gates,
    );
    if plan_number > 0 {
        let _ = write!(
            page,
            "<h2>Plan ({plan_number} change{})</h2><ol id=\"plan\">{plan}</ol>",
            if plan_number == 1 { "" } else { "s" }
        );
    }
    section(
        &mut page,
        "Rollbacks",
        "rollbacks",
        "<tr><th>step</th><th>compensation</th><th>error</th><th>time</th></tr>",
        &rollbacks,
    );
    section(
        &mut page,
        "Errors",
        "errors",
        "<tr><th>where</th><th>error</th></tr>",
        &errors,
    );
    section(
        &mut page,
        "Calls",
        "calls",
        "<tr><th>call</th><th>step</th><th>outcome</th><th>took</th><th>at</th></tr>",
        &calls,
    );
    page.push_str("</body></html>\n");
    page
}

fn section(page: &mut String, title: &str, id: &str, head: &str, rows: &str) {
    if rows.is_empty() {
        return;
    }
    let _ = write!(
        page,
        "<h2>{title}</h2><table id=\"{id}\">{head}{rows}</table>"
    );
}

/// A diff with its added and removed lines coloured.
fn render_diff(diff: &str) -> String {
    let mut out = String::from("<pre>");
    for line in diff.lines() {
        let class = if line.starts_with('+') {
            "add"
        } else if line.starts_with('-') {
            "del"
        } else {
            ""
        };
        let _ = writeln!(out, "<span class=\"{class}\">{}</span>", escape(line));
    }
    out.push_str("</pre>");
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escape_leaves_no_markup() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }
}
