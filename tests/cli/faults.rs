//! Bad input never panics: regression tests from the faults probe.

use crate::harness::Scratch;

#[test]
fn a_step_name_of_64_kib_is_shortened_not_a_panic() {
    let scratch = Scratch::new();
    let name = "n".repeat(65_536);
    scratch.write("long.rhai", &format!("step(\"{name}\", || 1);\n"));
    let output = scratch.run("long.rhai").output();
    output.assert_success();
    assert!(
        output.stderr_lines().iter().any(|line| line.contains('…')),
        "the summary shortens the name"
    );
}

#[test]
fn a_script_that_is_not_utf8_is_refused_with_its_byte_offset_and_line() {
    let scratch = Scratch::new();
    std::fs::write(
        scratch.file("bad.rhai"),
        b"let a = 1;\nlet b = \"caf\xe9\";\n",
    )
    .unwrap();
    scratch
        .run("bad.rhai")
        .output()
        .assert_exit(2)
        .assert_contains("is not UTF-8: byte 23 (line 2, column 13)")
        .assert_not_contains("panicked");
}

#[test]
fn run_ids_carry_32_random_bits() {
    let scratch = Scratch::new();
    scratch.write("one.rhai", "step(\"a\", || 1);\n");
    let output = scratch.run("one.rhai").output();
    output.assert_success();
    let line = output
        .stderr_lines()
        .into_iter()
        .find(|line| line.contains("(run "))
        .expect("the journal line");
    let id = line.rsplit("(run ").next().unwrap().trim_end_matches(')');
    let suffix = id.rsplit('-').next().unwrap();
    assert_eq!(suffix.len(), 8, "{id}");
    assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
}

/// A listener on 127.0.0.1 that accepts connections and never answers.
fn black_hole() -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
            if held.len() > 16 {
                break;
            }
        }
    });
    (address, thread)
}

#[test]
fn a_kubernetes_api_or_postgres_that_never_answers_is_an_error_naming_the_wait() {
    let (address, _thread) = black_hole();
    let scratch = Scratch::new();
    scratch.write(
        "kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: hole\n  cluster:\n    server: http://{address}\ncontexts:\n- name: hole\n  context:\n    cluster: hole\n    user: u\nusers:\n- name: u\n  user: {{}}\ncurrent-context: hole\n"
        ),
    );
    scratch.write(
        "runbook.toml",
        &format!(
            "[context.hole]\nkubeconfig = \"kubeconfig\"\nkube_context = \"hole\"\nnamespace = \"default\"\nkube_timeout = \"2s\"\n[context.hole.pg]\nurl = \"postgres://u:p@{address}/db?connect_timeout=2\"\n"
        ),
    );
    scratch.write("k8s.rhai", "k8s::image(\"backend\");\n");
    scratch
        .run("k8s.rhai")
        .context("hole")
        .output()
        .assert_exit(1)
        .assert_contains("no answer from the Kubernetes API at")
        .assert_contains("kube_timeout");
    scratch.write("pg.rhai", "pg::query((), \"select 1\");\n");
    scratch
        .run("pg.rhai")
        .context("hole")
        .output()
        .assert_exit(1)
        .assert_contains("no answer from PostgreSQL at")
        .assert_contains("within 2.0s");
}

#[test]
fn with_a_full_state_dir_no_write_runs_without_its_journal_line() {
    let scratch = Scratch::new();
    let state = scratch.file("state");
    std::fs::create_dir(&state).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=96k", "tmpfs"])
        .arg(&state)
        .status()
        .is_ok_and(|status| status.success());
    if !mounted {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(state.clone());
    let marks = scratch.file("marks");
    std::fs::create_dir(&marks).unwrap();
    scratch.write(
        "many.rhai",
        &format!(
            "for i in 1..=200 {{\n    step(\"write \" + i + \" with a long name to fill the journal faster\", || shell::run([\"touch\", \"{}/w\" + i]));\n}}\n",
            marks.display()
        ),
    );
    let output = scratch
        .run("many.rhai")
        .env("RUNBOOK_STATE_DIR", &state)
        .output();
    output
        .assert_exit(1)
        .assert_contains("the journal of this run cannot be written");
    let written = std::fs::read_dir(&marks).unwrap().count();
    assert!(written < 200, "all 200 writes ran without a journal");
    let journal = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .flatten()
        .map(|entry| entry.path().join("journal.jsonl"))
        .next()
        .unwrap();
    let text = std::fs::read_to_string(&journal).unwrap_or_default();
    let journaled = text
        .lines()
        .filter(|line| line.contains("\"event\":\"call\"") && line.contains("\"outcome\":\"ok\""))
        .count();
    // Every write that ran is in the journal, but perhaps the last (its line was the one that failed).
    assert!(
        written <= journaled + 1,
        "{written} writes ran, {journaled} are journaled"
    );
    eprintln!("full state dir: {written} of 200 writes ran, {journaled} journaled");
}

#[test]
fn a_dry_run_checks_the_argument_types_of_the_writes_it_skips() {
    let scratch = Scratch::new();
    scratch.write("bad.rhai", "shell::run(true, true);\n");
    for dry in [true, false] {
        let mut run = scratch.run("bad.rhai");
        if dry {
            run = run.dry_run();
        }
        run.output()
            .assert_exit(2)
            .assert_contains("`shell::run`: argument `cmd` must be")
            .assert_contains("got a boolean");
    }
    scratch.write("offline.rhai", "k8s::set_image(\"backend\", 42);\n");
    scratch
        .run("offline.rhai")
        .dry_run()
        .offline()
        .output()
        .assert_exit(2)
        .assert_contains("must be string");
}

#[test]
fn runbook_toml_types_are_checked_at_load_with_the_line() {
    let scratch = Scratch::new();
    scratch.write("t.rhai", "log::info(\"hi\");\n");
    scratch.write(
        "runbook.toml",
        "[context.t]\nprotected = false\nhosts = 5\n",
    );
    scratch
        .run("t.rhai")
        .context("t")
        .output()
        .assert_exit(2)
        .assert_contains("runbook.toml:3:1`: `context.t.hosts` must be a table");
    scratch.write("runbook.toml", "[context.t]\nprotected = \"yes\"\n");
    scratch
        .run("t.rhai")
        .context("t")
        .output()
        .assert_exit(2)
        .assert_contains(
            "runbook.toml:2:1`: `context.t.protected` must be true or false, got a string",
        );
    scratch.write("runbook.toml", "[context.t]\n[context.t.hosts]\nweb = 3\n");
    scratch
        .run("t.rhai")
        .context("t")
        .output()
        .assert_exit(2)
        .assert_contains(
            "runbook.toml:3:1`: `context.t.hosts.web` must be a string, got an integer",
        );
}

#[test]
fn an_s3_endpoint_that_never_answers_is_an_error_naming_the_wait() {
    let (address, _thread) = black_hole();
    let scratch = Scratch::new();
    scratch.write(
        "runbook.toml",
        &format!(
            "[context.hole]\n[context.hole.s3]\nendpoint = \"http://{address}\"\nbucket = \"b\"\ntimeout = \"1s\"\nconnect_timeout = \"1s\"\n"
        ),
    );
    scratch.write("s3.rhai", "s3::exists(\"k\");\n");
    scratch
        .run("s3.rhai")
        .context("hole")
        .env("AWS_ACCESS_KEY_ID", "id")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .output()
        .assert_exit(1)
        .assert_contains(&format!(
            "no answer from the S3 endpoint at http://{address} within 1.0s"
        ))
        .assert_contains("`timeout` (or `connect_timeout`) under `[context.hole.s3]`");
}

#[test]
fn an_http_server_that_never_answers_is_an_error_naming_the_wait() {
    let (address, _thread) = black_hole();
    let scratch = Scratch::new();
    // The context's default, then the call's own.
    scratch.write(
        "runbook.toml",
        "[context.hole]\n[context.hole.http]\ntimeout = \"1s\"\n",
    );
    scratch.write(
        "http.rhai",
        &format!("http::get(\"http://{address}/health\");\n"),
    );
    scratch
        .run("http.rhai")
        .context("hole")
        .output()
        .assert_exit(1)
        .assert_contains(&format!(
            "no answer from the HTTP server at http://{address} within 1.0s"
        ));
    scratch.write(
        "http.rhai",
        &format!("http::get(\"http://{address}/health\", #{{timeout: \"500ms\"}});\n"),
    );
    scratch
        .run("http.rhai")
        .context("hole")
        .output()
        .assert_exit(1)
        .assert_contains("within 500ms");
}

#[test]
fn a_hetzner_api_that_never_answers_is_an_error_naming_the_wait() {
    let (address, _thread) = black_hole();
    let scratch = Scratch::new();
    scratch.write(
        "runbook.toml",
        &format!(
            "[context.hole]\n[context.hole.hcloud]\nendpoint = \"http://{address}/v1\"\nrequest_timeout = \"1s\"\n"
        ),
    );
    scratch.write("hcloud.rhai", "hcloud::servers();\n");
    scratch
        .run("hcloud.rhai")
        .context("hole")
        .env("HCLOUD_TOKEN", "t0ken")
        .output()
        .assert_exit(1)
        .assert_contains(&format!(
            "no answer from the Hetzner Cloud API at http://{address}/v1 within 1.0s"
        ))
        .assert_contains("request_timeout");
}

#[test]
fn an_ssh_host_that_never_answers_is_an_error_naming_the_wait() {
    let (address, _thread) = black_hole();
    let scratch = Scratch::new();
    scratch.write(
        "runbook.toml",
        &format!(
            "[context.hole]\n[context.hole.hosts]\nsilent = \"u@127.0.0.1:{}\"\n[context.hole.ssh]\nconnect_timeout = \"1s\"\nknown_hosts = \"known_hosts\"\n",
            address.port()
        ),
    );
    scratch.write("known_hosts", "");
    scratch.write("ssh.rhai", "ssh::read(\"silent\", \"true\");\n");
    scratch
        .run("ssh.rhai")
        .context("hole")
        .output()
        .assert_exit(1)
        .assert_contains("timed out")
        .assert_contains("`connect_timeout` under `[context.NAME.ssh]`");
}

#[test]
fn a_journal_cut_mid_line_is_listed_shown_and_resumed_with_the_cut_reported() {
    let scratch = Scratch::new();
    let state = scratch.file("state");
    let file = scratch.write(
        "three.rhai",
        "step(\"a\", || 1);\nstep(\"b\", || shell::run([\"sh\", \"-c\", \"echo b >> B\"]));\nstep(\"c\", || 3);\n",
    );
    crate::harness::Run::new(&file)
        .state_dir(&state)
        .current_dir(scratch.path())
        .output()
        .assert_success();
    let dir = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .next()
        .unwrap();
    let run = dir.file_name().unwrap().to_string_lossy().into_owned();
    // What a run stopped while writing the line after step b's end leaves:
    // the whole lines up to it, half of the next, no later witnesses.
    let journal = dir.join("journal.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let b_end = lines
        .iter()
        .position(|line| line.contains("\"step_end\"") && line.contains("\"step\":\"b\""))
        .unwrap();
    let next = lines[b_end + 1];
    let kept = format!("{}{}", lines[..=b_end].concat(), &next[..next.len() / 2]);
    std::fs::write(&journal, &kept).unwrap();
    for entry in std::fs::read_dir(dir.join("witness")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let number: usize = name
            .trim_start_matches("head-")
            .trim_end_matches(".json")
            .parse()
            .unwrap();
        if number > b_end + 1 {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    let cut = next.len() / 2;
    let note = format!("the journal's last line is cut off ({cut} bytes");

    let runs = crate::harness::Run::command(["runs"])
        .state_dir(&state)
        .output();
    runs.assert_success().assert_contains(&note);
    assert!(
        runs.stdout
            .lines()
            .any(|line| line.starts_with(&run) && line.contains("incomplete")),
        "{}",
        runs.report()
    );
    crate::harness::Run::command(["show", &run])
        .state_dir(&state)
        .output()
        .assert_success()
        .assert_contains("✓ b")
        .assert_contains(&note);
    crate::harness::Run::command(["resume", &run])
        .state_dir(&state)
        .current_dir(scratch.path())
        .output()
        .assert_success()
        .assert_contains(&format!(
            "the journal's cut last line, {cut} bytes, was dropped"
        ))
        .assert_contains("✓ c");
    // Step b is replayed from the journal, not run again.
    assert_eq!(scratch.read("B"), "b\n");
}
