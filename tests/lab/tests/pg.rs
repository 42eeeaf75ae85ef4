//! The lab's PostgreSQL against the real server and its own clients (psql,
//! pg_dump): the seeded data, versions, databases, the lab contexts, cleanup.

// Helpers outside `#[test]` functions fail the test by panicking, like the tests.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use runbook_lab::{Lab, PgLab};

/// Whether `pid` is a live process (a zombie counts as alive here: it means
/// nobody reaped it).
fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The pids whose parent is `parent` (the postmaster's backends and workers).
fn children(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                let rest = &stat[stat.rfind(')').unwrap() + 1..];
                rest.split_whitespace().nth(1) == Some(parent.to_string().as_str())
            })
        })
        .collect()
}

/// Bounded: the processes are reaped by the time `stop` returns, but /proc
/// may lag a moment for grandchildren re-parented elsewhere.
fn gone_within(pids: &[u32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while pids.iter().any(|pid| exists(*pid)) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn the_seeded_server_answers_real_clients_and_stops_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let pg = PgLab::start(dir.path()).unwrap();
    eprintln!(
        "PostgreSQL initialised, started and seeded in {:?}",
        started.elapsed()
    );

    // Seeded as promised.
    let counts = pg.row_counts(PgLab::DATABASE).unwrap();
    assert_eq!(
        counts,
        BTreeMap::from([
            ("todos".to_owned(), PgLab::SEED_TODOS),
            ("users".to_owned(), PgLab::SEED_USERS),
        ])
    );
    assert_eq!(
        pg.psql(
            PgLab::DATABASE,
            "select count(*) from todos t join users u on u.id = t.user_id"
        )
        .unwrap(),
        PgLab::SEED_TODOS.to_string()
    );
    assert_eq!(
        pg.psql(
            PgLab::DATABASE,
            "select email, name from users where id = 7"
        )
        .unwrap(),
        "user7@example.com|User 7"
    );

    // Loopback only, as the postgres superuser with its password, at the advertised URL.
    assert_eq!(
        pg.url("todos"),
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/todos",
            pg.password(),
            pg.port()
        )
    );
    // TCP logins need the password (scram-sha-256).
    assert!(pg.login_works("postgres", pg.password(), "todos"));
    assert!(!pg.login_works("postgres", "wrong", "todos"));
    assert_eq!(
        pg.psql("postgres", "show listen_addresses").unwrap(),
        "127.0.0.1"
    );
    assert_eq!(
        pg.psql("todos", "select current_user, current_database()")
            .unwrap(),
        "postgres|todos"
    );
    assert_eq!(pg.psql("postgres", "show fsync").unwrap(), "off");

    // The checksum is stable, and sees a change.
    let before = pg.table_checksum("todos", "todos").unwrap();
    assert_eq!(before.len(), 32, "{before}");
    assert!(before.chars().all(|c| c.is_ascii_hexdigit()), "{before}");
    assert_eq!(pg.table_checksum("todos", "todos").unwrap(), before);
    assert_ne!(pg.table_checksum("todos", "users").unwrap(), before);
    pg.psql("todos", "update todos set done = not done where id = 1")
        .unwrap();
    assert_ne!(pg.table_checksum("todos", "todos").unwrap(), before);
    pg.psql("todos", "update todos set done = not done where id = 1")
        .unwrap();
    assert_eq!(pg.table_checksum("todos", "todos").unwrap(), before);

    // pg_dump from bin_dir is the server's major version.
    let server = pg.psql("postgres", "show server_version_num").unwrap();
    let server_major = server.parse::<u32>().unwrap() / 10_000;
    let dump = Command::new(pg.bin_dir().join("pg_dump"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(dump.status.success());
    let dump_version = String::from_utf8(dump.stdout).unwrap();
    let dump_major = dump_version
        .split_whitespace()
        .nth(2)
        .and_then(|version| version.split('.').next())
        .unwrap();
    assert_eq!(dump_major, server_major.to_string(), "{dump_version}");
    // ... and it can dump the seeded database over the URL.
    let schema = Command::new(pg.bin_dir().join("pg_dump"))
        .args(["--schema-only", "-d", &pg.url("todos")])
        .output()
        .unwrap();
    assert!(
        schema.status.success(),
        "{}",
        String::from_utf8_lossy(&schema.stderr)
    );
    let schema = String::from_utf8(schema.stdout).unwrap();
    assert!(schema.contains("CREATE TABLE public.todos"), "{schema}");

    // A second database comes and goes.
    pg.psql("postgres", "create database scratch").unwrap();
    pg.psql(
        "scratch",
        "create table t (id int primary key); insert into t values (1), (2)",
    )
    .unwrap();
    assert_eq!(
        pg.row_counts("scratch").unwrap(),
        BTreeMap::from([("t".to_owned(), 2)])
    );
    pg.psql("postgres", "drop database scratch").unwrap();
    let databases = pg
        .psql("postgres", "select datname from pg_database order by 1")
        .unwrap();
    assert_eq!(databases, "postgres\ntemplate0\ntemplate1\ntodos");

    // A failing statement is an error that names it and what the server said.
    let error = format!(
        "{:#}",
        pg.psql("todos", "select * from nosuchtable").unwrap_err()
    );
    assert!(error.contains("nosuchtable"), "{error}");
    assert!(error.contains("does not exist"), "{error}");

    // Dropping stops the postmaster and its backends, and reaps them.
    let postmaster = pg.pid().unwrap();
    let mut pids = children(postmaster);
    assert!(!pids.is_empty(), "the postmaster has no workers");
    pids.push(postmaster);
    let port = pg.port();
    let stopping = Instant::now();
    drop(pg);
    eprintln!("PostgreSQL stopped in {:?}", stopping.elapsed());
    assert!(!exists(postmaster), "the postmaster was not reaped");
    assert!(gone_within(&pids, Duration::from_secs(10)), "{pids:?}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn the_lab_contexts_point_at_postgres() {
    let lab = Lab::builder().postgres(true).start().unwrap();
    let pg = lab.postgres().unwrap();
    let config: toml::Table = std::fs::read_to_string(lab.config_path())
        .unwrap()
        .parse()
        .unwrap();
    for name in [Lab::CONTEXT, Lab::PROTECTED_CONTEXT] {
        let table = &config["context"][name]["pg"];
        assert_eq!(table["url"].as_str(), Some(pg.url("todos").as_str()));
        assert_eq!(
            table["bin_dir"].as_str(),
            Some(pg.bin_dir().display().to_string().as_str())
        );
        assert!(config["context"][name].get("s3").is_none());
    }
    assert!(pg.dir().starts_with(lab.dir()));
    assert!(lab.s3().is_none());
    let dir = lab.dir().to_owned();
    let pid = pg.pid().unwrap();
    drop(lab);
    assert!(!exists(pid));
    assert!(!dir.exists());
}

#[test]
fn runbook_lab_run_with_postgres_hands_runbook_a_database() {
    // `sh` stands in for runbook: it finds the URL and psql through
    // runbook.toml and queries the seeded database.
    let script = r#"
        url=$(sed -n 's/^url = "\(.*\)"$/\1/p' "$RUNBOOK_CONFIG" | head -n 1)
        bin=$(sed -n 's/^bin_dir = "\(.*\)"$/\1/p' "$RUNBOOK_CONFIG" | head -n 1)
        "$bin/psql" -X -At -d "$url" -c 'select count(*) from users'
    "#;
    let output = Command::new(env!("CARGO_BIN_EXE_runbook-lab"))
        .args(["run", "--ssh-hosts", "0", "--postgres", "--", "-c", script])
        .env("RUNBOOK_BIN", "/bin/sh")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?} {stderr}", output.status);
    assert_eq!(String::from_utf8(output.stdout).unwrap(), "2000\n");
    assert!(
        stderr.contains("pg       postgres://postgres:lab"),
        "{stderr}"
    );
}
