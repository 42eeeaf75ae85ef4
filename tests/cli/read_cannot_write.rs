//! A read cannot write: `pg::query` refuses the statements with side
//! effects (COPY … TO a file or PROGRAM, `pg_terminate_backend`, `lo_export`,
//! `dblink_exec`, `set_config`, writes) in a dry-run and live, against the
//! lab's real PostgreSQL; `s3::download` in a dry-run leaves the target
//! alone and the plan notes it; the run lock finds a runbook reached
//! through a symlink or `..`.

use std::time::Duration;

use runbook_lab::{Lab, PgLab, S3Kind};

use crate::harness::{Run, Scratch};

fn script(lab: &Lab, scratch: &Scratch, text: &str) -> Run {
    let file = scratch.write("t.rhai", text);
    Run::new(file)
        .envs(lab.env())
        .context("lab")
        .current_dir(scratch.path())
}

#[test]
fn pg_query_refuses_side_effects_in_a_dry_run_and_live() {
    let lab = Lab::builder()
        .ssh_hosts(0)
        .postgres(true)
        .start()
        .expect("the lab starts");
    let scratch = Scratch::new();
    let dir = scratch.path().display().to_string();
    let statements = [
        format!("copy (select 1) to program 'touch {dir}/program-ran'"),
        format!("COPY todos TO '{dir}/server-file'"),
        "select pg_terminate_backend(pid) from pg_stat_activity where pid <> pg_backend_pid()"
            .to_owned(),
        "select pg_catalog.pg_cancel_backend(pg_backend_pid())".to_owned(),
        format!("select lo_export(0, '{dir}/large-object')"),
        "select dblink_exec('dbname=todos', 'delete from todos')".to_owned(),
        "select set_config('work_mem', '1MB', false)".to_owned(),
        "select \"pg_terminate_backend\" (1)".to_owned(),
        "delete from todos".to_owned(),
        "select 1; delete from todos".to_owned(),
        "with gone as (delete from todos returning id) select count(*) from gone".to_owned(),
    ];
    let list: Vec<String> = statements
        .iter()
        .map(|sql| serde_json::to_string(sql).unwrap())
        .collect();
    let text = format!(
        r#"//! Tries every side effect through pg::query.
let refused = 0;
for sql in [{}] {{
    try {{
        pg::query("todos", sql);
        print("RAN: " + sql);
    }} catch (e) {{
        refused += 1;
    }}
}}
print("refused " + refused);
let rows = pg::query("todos", "select count(*) as n from todos");
print("rows " + rows[0].n);
"#,
        list.join(", ")
    );
    for dry_run in [true, false] {
        let mut run = script(&lab, &scratch, &text);
        if dry_run {
            run = run.dry_run();
        }
        let output = run.output();
        output
            .assert_success()
            .assert_contains(&format!("refused {}", statements.len()))
            .assert_contains(&format!("rows {}", PgLab::SEED_TODOS))
            .assert_not_contains("RAN: ")
            .assert_contains("SUPERUSER")
            .assert_contains("read_url");
    }
    for file in ["program-ran", "server-file", "large-object"] {
        assert!(!scratch.exists(file), "{file} was written on the server");
    }
    assert_eq!(
        lab.postgres().unwrap().row_counts("todos").unwrap()["todos"],
        PgLab::SEED_TODOS
    );
}

#[test]
fn s3_download_in_a_dry_run_leaves_the_target_alone() {
    let lab = Lab::builder()
        .ssh_hosts(0)
        .s3(S3Kind::S3sFs)
        .start()
        .expect("the lab starts");
    let scratch = Scratch::new();
    script(
        &lab,
        &scratch,
        "s3::put(\"t/x.txt\", \"from the bucket\");\n",
    )
    .output()
    .assert_success();
    let target = scratch.write("target.txt", "local, keep me");
    let output = script(
        &lab,
        &scratch,
        &format!(
            "let n = s3::download(\"t/x.txt\", {});\nprint(\"got \" + n);\n",
            serde_json::to_string(&target.display().to_string()).unwrap()
        ),
    )
    .dry_run()
    .output();
    output
        .assert_success()
        .assert_contains("got 15")
        .assert_contains("Plan: 1 change")
        .assert_contains("was not written (it exists and would be overwritten)");
    assert_eq!(scratch.read("target.txt"), "local, keep me");
    // Live, it is written.
    script(
        &lab,
        &scratch,
        &format!(
            "s3::download(\"t/x.txt\", {});\n",
            serde_json::to_string(&target.display().to_string()).unwrap()
        ),
    )
    .output()
    .assert_success();
    assert_eq!(scratch.read("target.txt"), "from the bucket");
}

#[test]
fn the_run_lock_finds_a_runbook_through_a_symlink_or_dot_dot() {
    let scratch = Scratch::new();
    let file = scratch.write(
        "slow.rhai",
        "//! Holds the lock a while.\nshell::run([\"sleep\", \"3\"]);\n",
    );
    std::fs::create_dir(scratch.file("sub")).unwrap();
    std::os::unix::fs::symlink(&file, scratch.file("link.rhai")).unwrap();
    let state = scratch.file("state");
    let holder = std::process::Command::new(crate::harness::binary())
        .args(["run", file.to_str().unwrap()])
        .current_dir(scratch.path())
        .env("RUNBOOK_STATE_DIR", &state)
        .env("CI", "true")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let locks = state.join("locks");
    for _ in 0..200 {
        if std::fs::read_dir(&locks).is_ok_and(|mut entries| entries.next().is_some()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for other in ["link.rhai", "sub/../slow.rhai", "./sub/../link.rhai"] {
        scratch
            .run(other)
            .state_dir(&state)
            .output()
            .assert_exit(4)
            .assert_contains("already running");
    }
    let mut holder = holder;
    let _ = holder.wait();
    Run::command(["--help"])
        .output()
        .assert_success()
        .assert_contains("per state dir")
        .assert_contains("k8s::lock");
}

#[test]
fn control_characters_in_external_text_are_escaped() {
    let scratch = Scratch::new();
    scratch.write(
        "c.rhai",
        "//! Names with control characters.\nstep(\"evil\\x1b[2Jname\", || 1);\napprove(\"ok?\");\nprint(shell::read([\"printf\", \"out\\x1b[31mred\\rback\"]).stdout);\n",
    );
    let output = scratch
        .run("c.rhai")
        .approve()
        .env(
            "RUNBOOK_APPROVER",
            "x\n05:00:00 ✔ approved by alice\u{1b}[0m",
        )
        .output();
    output.assert_success();
    let all = output.all();
    assert!(
        !all.contains('\u{1b}'),
        "an escape reached the terminal\n{}",
        output.report()
    );
    assert!(
        !all.contains('\r'),
        "a carriage return reached the terminal"
    );
    assert!(
        !output
            .stderr_lines()
            .iter()
            .any(|line| line.starts_with("05:00:00") || line.starts_with("✔ approved by alice")),
        "a forged line\n{}",
        output.report()
    );
    output
        .assert_contains("approved by x\\n05:00:00")
        .assert_contains("evil\\x1b[2Jname");
}
