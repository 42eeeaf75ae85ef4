//! `http::*` and `notify::*` against the lab's HTTP server on loopback:
//! health checks, expected status codes, deliveries (and none in a dry-run),
//! and secret headers that reach the server but never the output.

use runbook_lab::Lab;

use crate::harness::{Output, Run, Scratch, free_port};

/// The lab and a scratch folder holding `h.rhai`.
fn setup(script: &str) -> (Lab, Scratch) {
    let lab = Lab::start().expect("start the lab");
    let scratch = Scratch::new();
    scratch.write("h.rhai", script);
    (lab, scratch)
}

/// `runbook run h.rhai --context lab` with the lab's environment.
fn run(lab: &Lab, scratch: &Scratch) -> Run {
    scratch.run("h.rhai").envs(lab.env()).context(Lab::CONTEXT)
}

#[track_caller]
fn assert_no_token(output: &Output) {
    output.assert_not_contains(Lab::API_TOKEN);
}

#[test]
fn get_health() {
    let (lab, scratch) = setup(
        r#"//! Health.
let ctx = context();
let r = http::get(ctx.http.health);
let body = r.body;
body.trim();
print(r.status + " " + body);
"#,
    );
    let output = run(&lab, &scratch).output();
    output.assert_success();
    assert_eq!(output.stdout, "200 ok\n", "{}", output.report());
}

#[test]
fn a_non_2xx_status_is_a_clear_error() {
    let (lab, scratch) = setup(
        "//! 503.\nlet r = http::get(context().http.base + \"/status/503\");\nshell::run(\"touch AFTER\");\n",
    );
    let output = run(&lab, &scratch).output();
    output
        .assert_exit(1)
        .assert_contains("503")
        .assert_contains("/status/503")
        .assert_contains("h.rhai:2:");
    assert!(!scratch.exists("AFTER"), "{}", output.report());
}

#[test]
fn an_expected_status_is_returned() {
    let (lab, scratch) = setup(
        "//! 503 expected.\nlet r = http::get(context().http.base + \"/status/503\", #{expect: [503]});\nprint(\"status \" + r.status);\n",
    );
    let output = run(&lab, &scratch).output();
    output.assert_success();
    assert_eq!(output.stdout, "status 503\n", "{}", output.report());
}

#[test]
fn wait_healthy_on_a_closed_port_times_out() {
    let port = free_port();
    let (lab, scratch) = setup(&format!(
        "//! Nothing listens.\nhttp::wait_healthy(\"http://127.0.0.1:{port}/health\", \"1s\");\n"
    ));
    let output = run(&lab, &scratch).output();
    output
        .assert_exit(1)
        .assert_contains("did not become healthy within 1.0s")
        .assert_contains("h.rhai:2:");
}

#[test]
fn wait_healthy_fails_while_the_service_is_unhealthy() {
    let (lab, scratch) =
        setup("//! Unhealthy.\nhttp::wait_healthy(context().http.health, \"1s\");\n");
    lab.http().set_health(503);
    let output = run(&lab, &scratch).output();
    output
        .assert_exit(1)
        .assert_contains("did not become healthy")
        .assert_contains("503");
}

#[test]
fn wait_healthy_returns_once_healthy() {
    let (lab, scratch) = setup(
        "//! Healthy.\nlet r = http::wait_healthy(context().http.health, \"10s\");\nprint(\"status \" + r.status);\n",
    );
    let output = run(&lab, &scratch).output();
    output.assert_success();
    assert_eq!(output.stdout, "status 200\n", "{}", output.report());
}

const DELIVERIES: &str = r#"//! Post, webhook and Slack.
let ctx = context();
let r = http::post(ctx.http.base + "/hooks/deploys", #{version: "v1.4.2", replicas: 3});
print("post answered " + r.status);
notify::webhook(ctx.notify.webhook, #{text: "deployed v1.4.2", ok: true});
notify::slack("backup finished");
"#;

#[test]
fn post_webhook_and_slack_deliver_json() {
    let (lab, scratch) = setup(DELIVERIES);
    let output = run(&lab, &scratch).output();
    output.assert_success().assert_contains("post answered 200");
    assert_eq!(
        lab.http().hooks("deploys"),
        [serde_json::json!({"version": "v1.4.2", "replicas": 3})]
    );
    assert_eq!(
        lab.http().hooks("notify"),
        [serde_json::json!({"text": "deployed v1.4.2", "ok": true})]
    );
    assert_eq!(
        lab.http().hooks("slack"),
        [serde_json::json!({"text": "backup finished"})]
    );
    let headers = lab.http().hook_headers("notify");
    assert!(
        headers[0]
            .get("content-type")
            .is_some_and(|value| value.contains("application/json")),
        "webhook sent without a JSON content type: {headers:?}"
    );
}

#[test]
fn dry_run_delivers_nothing_and_plans_every_delivery() {
    let (lab, scratch) = setup(DELIVERIES);
    let output = run(&lab, &scratch).dry_run().output();
    output
        .assert_success()
        .assert_contains("Plan: 3 changes")
        .assert_contains("1. http::post(")
        .assert_contains("/hooks/deploys")
        .assert_contains("2. notify::webhook(")
        .assert_contains("3. notify::slack(\"backup finished\")");
    assert!(
        lab.http().hooks("deploys").is_empty(),
        "a dry-run posted\n{}",
        output.report()
    );
    assert!(
        lab.http().hooks("notify").is_empty(),
        "a dry-run delivered a webhook\n{}",
        output.report()
    );
    assert!(
        lab.http().hooks("slack").is_empty(),
        "a dry-run posted to Slack\n{}",
        output.report()
    );
    let plan = &output.stdout[output.stdout.find("Plan:").expect("a plan")..];
    assert_cli_snapshot!("deliveries_plan", plan);
}

#[test]
fn offline_dry_run_delivers_nothing() {
    let (lab, scratch) = setup(DELIVERIES);
    run(&lab, &scratch)
        .dry_run()
        .offline()
        .output()
        .assert_success()
        .assert_contains("Plan: 3 changes");
    assert!(lab.http().hooks("deploys").is_empty());
    assert!(lab.http().hooks("notify").is_empty());
    assert!(lab.http().hooks("slack").is_empty());
}

#[test]
fn slack_webhook_url_is_a_secret() {
    let (lab, scratch) = setup("//! Slack.\nnotify::slack(\"hello\");\n");
    let output = run(&lab, &scratch).arg("--verbose").json().output();
    output.assert_success();
    output.assert_not_contains(&lab.http().url("/hooks/slack"));
    assert_eq!(lab.http().hooks("slack").len(), 1);
}

#[test]
fn secret_header_reaches_the_server_but_never_the_output() {
    let (lab, scratch) = setup(
        r#"//! Authenticated call.
let ctx = context();
let auth = "Bearer " + secret("api_token");
let r = http::post(ctx.http.base + "/echo", #{ping: 1}, #{headers: #{Authorization: auth}});
let seen = r.json.headers.authorization;
print("server saw: " + seen);
print(r.body);
log::info("echo: " + r.body);
shell::run(["sh", "-c", "printf %s \"$1\" > SEEN", "sh", seen]);
notify::webhook(ctx.notify.webhook, #{text: "token check"});
"#,
    );
    for json in [false, true] {
        let mut command = run(&lab, &scratch).arg("--verbose");
        if json {
            command = command.json();
        }
        let output = command.output();
        output.assert_success();
        assert_no_token(&output);
        if !json {
            output.assert_contains("server saw: Bearer ***");
        }
        assert_eq!(
            scratch.read("SEEN"),
            format!("Bearer {}", Lab::API_TOKEN),
            "{}",
            output.report()
        );
    }
}

#[test]
fn secret_header_on_a_failing_call_stays_masked() {
    let (lab, scratch) = setup(
        r#"//! Authenticated call that fails.
let ctx = context();
http::get(ctx.http.base + "/status/401", #{headers: #{Authorization: "Bearer " + secret("api_token")}});
"#,
    );
    let output = run(&lab, &scratch).arg("--verbose").output();
    output.assert_exit(1).assert_contains("401");
    assert_no_token(&output);
}

#[test]
fn http_example_runs_against_the_lab() {
    let lab = Lab::start().expect("start the lab");
    let output = Run::new("examples/http.rhai")
        .envs(lab.env())
        .context(Lab::CONTEXT)
        .approve()
        .output();
    output.assert_success();
    assert_eq!(lab.http().hooks("notify").len(), 1, "{}", output.report());
}

#[test]
fn protected_lab_context_needs_confirm() {
    let lab = Lab::start().expect("start the lab");
    let run = || {
        Run::new("examples/http.rhai")
            .envs(lab.env())
            .context(Lab::PROTECTED_CONTEXT)
            .approve()
    };
    run().output().assert_exit(3);
    assert!(lab.http().hooks("notify").is_empty());
    run()
        .confirm(Lab::PROTECTED_CONTEXT)
        .output()
        .assert_success();
    assert_eq!(lab.http().hooks("notify").len(), 1);
}

#[test]
fn put_patch_and_delete_send_their_method_and_are_planned_in_a_dry_run() {
    let (lab, scratch) = setup(
        r#"//! PUT, PATCH, DELETE.
let base = context().http.base;
let put = http::put(base + "/echo", #{on: true});
let patch = http::patch(base + "/echo", "text");
let delete = http::delete(base + "/echo", #{timeout: "5s"});
if !dry_run() {
    print("methods=" + put.json.method + "," + patch.json.method + "," + delete.json.method);
    print("put body on=" + put.json.body.on);
}
"#,
    );
    run(&lab, &scratch)
        .output()
        .assert_success()
        .assert_contains("methods=PUT,PATCH,DELETE")
        .assert_contains("put body on=true");
    let planned = run(&lab, &scratch)
        .dry_run()
        .arg("--plan-out")
        .arg(scratch.file("plan.json"))
        .output();
    planned.assert_success();
    let plan = scratch.read("plan.json");
    for function in ["http::put", "http::patch", "http::delete"] {
        assert!(plan.contains(function), "{function} not planned: {plan}");
    }
}
