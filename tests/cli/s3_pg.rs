//! `s3::*` and `pg::*` against the lab's real PostgreSQL and real S3 servers
//! (s3s-fs, and moto once): the backup-db / dr-restore runbooks around a
//! dropped table, the backup read back by clients we did not write (boto3,
//! `zstd`, `pg_restore --list`), retention with planted old backups and its
//! dry-run plan, a server killed mid-upload, and a password that must not leak.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use runbook_lab::{Lab, PgLab, S3Kind};

use crate::harness::{Output, Run, Scratch, repo_root};

fn lab(postgres: bool, s3: Option<S3Kind>) -> Lab {
    let mut builder = Lab::builder().ssh_hosts(0).postgres(postgres);
    if let Some(kind) = s3 {
        builder = builder.s3(kind);
    }
    builder.start().expect("the lab starts")
}

/// `runbook run runbooks/NAME` in the lab context.
fn runbook(lab: &Lab, name: &str) -> Run {
    runbook_in(lab, name, "lab")
}

/// `runbook run runbooks/NAME` in `context`.
fn runbook_in(lab: &Lab, name: &str, context: &str) -> Run {
    Run::new(repo_root().join("runbooks").join(name))
        .envs(lab.env())
        .context(context)
}

/// `runbook run` of `script` (written to the scratch dir) in the lab context.
fn script(lab: &Lab, scratch: &Scratch, text: &str) -> Run {
    let file = scratch.write("t.rhai", text);
    Run::new(file)
        .envs(lab.env())
        .context("lab")
        .current_dir(scratch.path())
}

/// Row counts and content checksums of every table of `db`.
fn snapshot(lab: &Lab, db: &str) -> (BTreeMap<String, i64>, BTreeMap<String, String>) {
    let pg = lab.postgres().unwrap();
    let counts = pg.row_counts(db).unwrap();
    let sums = counts
        .keys()
        .map(|table| (table.clone(), pg.table_checksum(db, table).unwrap()))
        .collect();
    (counts, sums)
}

/// The backup key a backup-db run printed (`... s3://KEY, N bytes ...`).
fn backup_key(out: &Output) -> String {
    let all = out.all();
    let start = all
        .find("): s3://")
        .unwrap_or_else(|| panic!("no backup key in the output\n{}", out.report()))
        + "): s3://".len();
    let rest = &all[start..];
    rest[..rest.find(',').unwrap()].to_owned()
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn backup_drop_a_table_restore_fresh_and_in_place_everything_matches() {
    let lab = lab(true, Some(S3Kind::S3sFs));
    let pg = lab.postgres().unwrap();
    let s3 = lab.s3().unwrap();
    let before = snapshot(&lab, PgLab::DATABASE);
    assert_eq!(before.0["todos"], PgLab::SEED_TODOS);

    let out = runbook(&lab, "backup-db.rhai").output();
    out.assert_success()
        .assert_contains("verified s3://backups/todos/");
    let key = backup_key(&out);
    assert!(
        key.starts_with("backups/todos/") && key.ends_with(".dump.zst"),
        "{key}"
    );
    // The webhook heard about it.
    assert!(!lab.http().hooks("notify").is_empty(), "no notification");

    // boto3, a client we did not write, sees the backup and its manifest.
    let keys = s3.list_keys("backups/todos/").unwrap();
    assert_eq!(keys, vec![key.clone(), format!("{key}.manifest.json")]);
    let scratch = Scratch::new();
    let compressed = scratch.file("backup.dump.zst");
    s3.download(&key, &compressed).unwrap();
    let manifest_file = scratch.file("manifest.json");
    s3.download(&format!("{key}.manifest.json"), &manifest_file)
        .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_file).unwrap()).unwrap();
    assert_eq!(manifest["tables"]["public.todos"], PgLab::SEED_TODOS);
    assert_eq!(manifest["tables"]["public.users"], PgLab::SEED_USERS);
    assert_eq!(manifest["consistent"], true);
    assert_eq!(manifest["sha256"], sha256_of(&compressed));
    assert_eq!(
        manifest["bytes"],
        std::fs::metadata(&compressed).unwrap().len()
    );
    // zstd and pg_restore read it (zstd: Debian's `zstd` package).
    let dump = scratch.file("backup.dump");
    match Command::new("zstd")
        .args(["-d", "-q", "-o"])
        .arg(&dump)
        .arg(&compressed)
        .status()
    {
        Ok(status) => {
            assert!(status.success(), "zstd -d failed on the backup");
            let listing = Command::new(pg.bin_dir().join("pg_restore"))
                .arg("--list")
                .arg(&dump)
                .output()
                .unwrap();
            let listing = String::from_utf8_lossy(&listing.stdout);
            assert!(listing.contains("TABLE public todos"), "{listing}");
            assert!(listing.contains("TABLE public users"), "{listing}");
        }
        Err(error) => eprintln!("SKIPPED pg_restore --list of the backup: no zstd ({error})"),
    }

    // The disaster.
    pg.psql(PgLab::DATABASE, "drop table todos").unwrap();
    assert!(
        !pg.row_counts(PgLab::DATABASE)
            .unwrap()
            .contains_key("todos")
    );

    // Restore into a fresh database (the default), then in place.
    let out = runbook(&lab, "dr-restore.rhai")
        .param("target", "todos_fresh")
        .approve()
        .output();
    out.assert_success()
        .assert_contains(&format!("backup:  s3://{key}"))
        .assert_contains("public.todos: 20000 rows")
        .assert_contains("match the manifest")
        .assert_contains("within the RTO of 4 h");
    assert_eq!(snapshot(&lab, "todos_fresh"), before);

    let out = runbook(&lab, "dr-restore.rhai")
        .param("in_place", "true")
        .approve()
        .output();
    out.assert_success()
        .assert_contains("IN PLACE")
        .assert_contains("match the manifest");
    assert_eq!(snapshot(&lab, PgLab::DATABASE), before);

    // Without clean, a target with tables is refused.
    runbook(&lab, "dr-restore.rhai")
        .param("target", "todos")
        .approve()
        .output()
        .assert_exit(1)
        .assert_contains("already has tables")
        .assert_contains("clean: true");
}

#[test]
fn dr_restore_in_a_protected_context_needs_the_typed_confirmation() {
    let lab = lab(true, Some(S3Kind::S3sFs));
    runbook(&lab, "backup-db.rhai").output().assert_success();
    let refused = runbook_in(&lab, "dr-restore.rhai", "lab-protected")
        .approve()
        .output();
    refused
        .assert_exit(3)
        .assert_contains("--confirm lab-protected");
    assert!(
        !lab.postgres()
            .unwrap()
            .psql("postgres", "select datname from pg_database")
            .unwrap()
            .contains("todos_restored"),
        "a refused gate restored anyway"
    );
    runbook_in(&lab, "dr-restore.rhai", "lab-protected")
        .approve()
        .confirm("lab-protected")
        .output()
        .assert_success();
}

/// Plant a backup taken `days` ago (timestamp in its key) with a manifest.
fn plant(lab: &Lab, prefix: &str, days: i64) -> String {
    let time = chrono::Utc::now() - chrono::Duration::days(days);
    let key = format!("{prefix}{}.dump.zst", time.format("%Y%m%dT%H%M%SZ"));
    lab.s3()
        .unwrap()
        .boto3(
            "s3.put_object(Bucket=bucket, Key=sys.argv[1], Body=b'old backup')\n\
             s3.put_object(Bucket=bucket, Key=sys.argv[1] + '.manifest.json', Body=b'{}')",
            &[&key],
        )
        .unwrap();
    key
}

#[test]
fn prune_deletes_exactly_the_expired_backups_and_dry_run_only_plans() {
    let lab = lab(false, Some(S3Kind::S3sFs));
    let s3 = lab.s3().unwrap();
    let ages = [1, 5, 12, 20, 29, 35, 45, 60, 75, 90, 120, 200];
    let keys: Vec<(i64, String)> = ages
        .iter()
        .map(|days| (*days, plant(&lab, "backups/app/", *days)))
        .collect();
    let expired: Vec<&String> = keys
        .iter()
        .filter(|(days, _)| *days >= 60)
        .map(|(_, key)| key)
        .collect();
    let everything = s3.list_keys("backups/app/").unwrap();
    assert_eq!(everything.len(), 24);
    let scratch = Scratch::new();
    let text = r#"
let r = s3::prune("backups/app/", #{keep_days: 30, keep_last: 7});
print("deleted=" + r.deleted.len() + " kept=" + r.kept.len());
"#;

    // Online dry-run: the plan lists each deletion; nothing is deleted.
    let out = script(&lab, &scratch, text).dry_run().output();
    out.assert_success().assert_contains("deleted=5 kept=7");
    for key in &expired {
        out.assert_contains(&format!("delete {key} ("));
    }
    out.assert_contains("keep 7 backups");
    assert_eq!(s3.list_keys("backups/app/").unwrap(), everything);

    // Offline dry-run: the call is recorded, S3 is not even asked.
    let out = script(&lab, &scratch, text).dry_run().offline().output();
    out.assert_success()
        .assert_contains("s3::prune(\"backups/app/\"");
    assert_eq!(s3.list_keys("backups/app/").unwrap(), everything);

    // Live: exactly the five expired ones go, each with its manifest.
    script(&lab, &scratch, text)
        .output()
        .assert_success()
        .assert_contains("deleted=5 kept=7");
    let mut left = s3.list_keys("backups/app/").unwrap();
    left.sort();
    let mut expected: Vec<String> = keys
        .iter()
        .filter(|(days, _)| *days < 60)
        .flat_map(|(_, key)| [key.clone(), format!("{key}.manifest.json")])
        .collect();
    expected.sort();
    assert_eq!(left, expected);

    // keep_days wins over a small keep_last: everything younger than 30 days stays.
    script(
        &lab,
        &scratch,
        r#"let r = s3::prune("backups/app/", #{keep_days: 30, keep_last: 2}); print("deleted=" + r.deleted.len());"#,
    )
    .output()
    .assert_success()
    .assert_contains("deleted=2");
    assert_eq!(s3.list_keys("backups/app/").unwrap().len(), 10);

    // keep_last 0 would delete everything: refused.
    script(
        &lab,
        &scratch,
        r#"s3::prune("backups/app/", #{keep_days: 0, keep_last: 0});"#,
    )
    .output()
    .assert_exit(2)
    .assert_contains("keep_last");
}

#[test]
fn objects_round_trip_and_boto3_agrees() {
    let lab = lab(false, Some(S3Kind::S3sFs));
    let s3 = lab.s3().unwrap();
    let scratch = Scratch::new();
    // 20 MiB + 3 bytes of non-repeating bytes: a multipart upload of 3 parts.
    let big = scratch.file("big.bin");
    let mut data = Vec::with_capacity(20 * 1024 * 1024 + 3);
    let mut x: u32 = 12345;
    while data.len() < 20 * 1024 * 1024 + 3 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        data.push((x >> 16) as u8);
    }
    std::fs::write(&big, &data).unwrap();
    let back = scratch.file("back.bin");
    let text = format!(
        r#"
let put = s3::put("t/hello.txt", "hello s3");
assert(put.size == 8, "size");
assert(s3::get("t/hello.txt") == "hello s3", "get");
s3::put("t/blob.bin", blob(3, 7));
let b = s3::get("t/blob.bin", #{{blob: true}});
assert(b.len() == 3 && b[0] == 7, "blob");
assert(s3::exists("t/hello.txt"), "exists");
assert(!s3::exists("t/missing.txt"), "missing");
let up = s3::upload("{big}", "t/big.bin");
assert(up.size == {size}, "upload size " + up.size);
let sum = s3::checksum("t/big.bin");
assert(sum.sha256 == up.sha256, "checksum");
assert(s3::download("t/big.bin", "{back}") == {size}, "download");
let listed = s3::list("t/");
assert(listed.len() == 3, "list " + listed.len());
assert(listed[0].key == "t/big.bin" && listed[0].size == {size}, "list entry");
assert(s3::list("t/he").len() == 1, "string prefix");
assert(s3::latest("t/") == (), "nothing has a manifest");
assert(s3::latest("t/", #{{require_manifest: false}}) != (), "any object");
s3::delete("t/hello.txt");
s3::delete("t/hello.txt");
assert(!s3::exists("t/hello.txt"), "deleted");
print("sha=" + up.sha256);
"#,
        big = big.display(),
        back = back.display(),
        size = data.len()
    );
    let out = script(&lab, &scratch, &text).output();
    out.assert_success();
    assert_eq!(std::fs::read(&back).unwrap(), data);
    out.assert_contains(&format!("sha={}", sha256_of(&big)));
    // boto3 reads what runbook wrote, byte for byte.
    let theirs = scratch.file("boto3.bin");
    s3.download("t/big.bin", &theirs).unwrap();
    assert_eq!(std::fs::read(&theirs).unwrap(), data);
    assert_eq!(
        s3.list_keys("t/").unwrap(),
        vec!["t/big.bin".to_owned(), "t/blob.bin".to_owned()]
    );
    // A missing key names key and bucket and says what to do.
    script(&lab, &scratch, r#"s3::get("t/nope.txt");"#)
        .output()
        .assert_exit(1)
        .assert_contains("`t/nope.txt`")
        .assert_contains("s3::list");
}

#[test]
fn backup_and_restore_against_moto() {
    let lab = lab(true, Some(S3Kind::Moto));
    let before = snapshot(&lab, PgLab::DATABASE);
    let out = runbook(&lab, "backup-db.rhai").output();
    out.assert_success();
    let key = backup_key(&out);
    assert_eq!(
        lab.s3().unwrap().list_keys("backups/").unwrap(),
        vec![key.clone(), format!("{key}.manifest.json")]
    );
    lab.postgres()
        .unwrap()
        .psql(PgLab::DATABASE, "drop table todos")
        .unwrap();
    runbook(&lab, "dr-restore.rhai")
        .param("in_place", "true")
        .approve()
        .output()
        .assert_success()
        .assert_contains("match the manifest");
    assert_eq!(snapshot(&lab, PgLab::DATABASE), before);
}

/// Every file below `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(files(&path));
            } else {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn a_killed_s3_server_mid_upload_is_a_clear_error_and_leaves_no_backup() {
    let lab = lab(true, Some(S3Kind::S3sFs));
    // Enough data for many parts: about 60 MB of hex text.
    lab.postgres()
        .unwrap()
        .psql(
            PgLab::DATABASE,
            "create table big as select i as id, md5(i::text) || md5((i + 1)::text) as a \
             from generate_series(1, 600000) i",
        )
        .unwrap();
    let s3 = lab.s3().unwrap();
    let pid = s3.pid().unwrap();
    let root = s3.root();
    let killed = Arc::new(AtomicBool::new(false));
    let watcher = {
        let killed = Arc::clone(&killed);
        let root = root.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            // Kill the server once the first part has arrived.
            while Instant::now() < deadline {
                let parts = files(&root).iter().any(|path| {
                    let name = path.file_name().unwrap().to_string_lossy().into_owned();
                    name.contains(".upload_id-") && name.contains(".part-")
                });
                if parts {
                    Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status()
                        .unwrap();
                    killed.store(true, Ordering::SeqCst);
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let started = Instant::now();
    let out = runbook(&lab, "backup-db.rhai").output();
    watcher.join().unwrap();
    assert!(
        killed.load(Ordering::SeqCst),
        "the upload never started\n{}",
        out.report()
    );
    out.assert_exit(1)
        .assert_contains("s3: cannot")
        .assert_contains("backups/todos/")
        .assert_contains("cannot reach http://127.0.0.1:");
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "giving up took {:?}",
        started.elapsed()
    );
    // Nothing complete and no manifest: `s3::latest` has nothing to pick.
    let left: Vec<PathBuf> = files(&root.join(s3.bucket()));
    assert!(
        left.iter().all(|path| {
            let name = path.to_string_lossy();
            !name.ends_with(".dump.zst") && !name.ends_with(".manifest.json")
        }),
        "left behind: {left:?}"
    );
}

#[test]
fn set_password_keeps_the_secret_out_of_argv_output_journal_and_server_log() {
    let lab = lab(true, None);
    let pg = lab.postgres().unwrap();
    pg.psql("postgres", "alter role app password 'old'")
        .unwrap();
    let secret = Lab::API_TOKEN;
    let scratch = Scratch::new();
    // Watch every process's argv while the run goes on.
    let done = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let watcher = {
        let (done, seen) = (Arc::clone(&done), Arc::clone(&seen));
        std::thread::spawn(move || {
            let mut scans = 0;
            while !done.load(Ordering::SeqCst) {
                for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                    if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                        if cmdline.contains(secret) {
                            seen.lock().unwrap().push(cmdline);
                        }
                    }
                }
                scans += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            scans
        })
    };
    let out = script(
        &lab,
        &scratch,
        r#"
let r = pg::set_password((), "app", secret("api_token"));
print("method=" + r.method);
"#,
    )
    .output();
    done.store(true, Ordering::SeqCst);
    let scans = watcher.join().unwrap();
    out.assert_success().assert_contains("method=scram-sha-256");
    assert!(scans > 0);
    assert!(
        seen.lock().unwrap().is_empty(),
        "in argv: {:?}",
        seen.lock().unwrap()
    );
    out.assert_not_contains(secret);
    for file in files(&lab.state_dir()) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        assert!(!text.contains(secret), "in {}", file.display());
    }
    assert!(!pg.logs().contains(secret), "in the server log");

    // The stored SCRAM verifier is for exactly this password (checked with
    // Python's hashlib, not our code).
    let stored = pg
        .psql(
            "postgres",
            "select rolpassword from pg_authid where rolname = 'app'",
        )
        .unwrap();
    assert!(stored.starts_with("SCRAM-SHA-256$4096:"), "{stored}");
    let check = Command::new("python3")
        .arg("-c")
        .arg(
            "import base64, hashlib, hmac, sys\n\
             stored, password = sys.argv[1], sys.argv[2].encode()\n\
             head, keys = stored.split('$', 1)[1].split('$')\n\
             iterations, salt = head.split(':')\n\
             stored_key = keys.split(':')[0]\n\
             salted = hashlib.pbkdf2_hmac('sha256', password, base64.b64decode(salt), int(iterations))\n\
             client = hmac.new(salted, b'Client Key', hashlib.sha256).digest()\n\
             print(base64.b64encode(hashlib.sha256(client).digest()).decode() == stored_key)",
        )
        .arg(&stored)
        .arg(secret)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "True");

    // A plain string is refused before anything happens.
    script(
        &lab,
        &scratch,
        r#"pg::set_password((), "app", "plain-text-password");"#,
    )
    .output()
    .assert_exit(2)
    .assert_contains("must be a secret");
}

#[test]
fn query_returns_typed_rows_and_refuses_to_write() {
    let lab = lab(true, None);
    let scratch = Scratch::new();
    script(
        &lab,
        &scratch,
        r#"
let rows = pg::query("todos", "select count(*) as n, max(id) as top, 1.50::numeric as price, 2.5::float8 as f, true as yes, null as nothing, '{\"a\": [1, 2]}'::jsonb as doc, array[1, 2, 3] as list, 'x'::text as t, timestamptz '2026-01-01 00:00:00+00' as at from todos");
let r = rows[0];
assert(r.n == 20000, "count " + r.n);
assert(r.top == 20000, "max");
assert(r.price == "1.50", "numeric " + r.price);
assert(r.f == 2.5 && r.yes == true && r.nothing == (), "scalars");
assert(r.doc.a[1] == 2, "jsonb");
assert(r.list.len() == 3 && r.list[2] == 3, "array");
assert(r.at == "2026-01-01T00:00:00Z", "time " + r.at);
assert(pg::exec("todos", "update todos set done = true where id <= 10") == 10, "exec");
print("ok");
"#,
    )
    .output()
    .assert_success()
    .assert_contains("ok");
    script(
        &lab,
        &scratch,
        r#"pg::query("todos", "delete from todos");"#,
    )
    .output()
    .assert_exit(1)
    .assert_contains("read-only transaction")
    .assert_contains("pg::exec");
    assert_eq!(
        lab.postgres().unwrap().row_counts("todos").unwrap()["todos"],
        PgLab::SEED_TODOS
    );
}

/// The lab's runbook.toml with each line starting with `key =` replaced.
fn config_with(lab: &Lab, scratch: &Scratch, key: &str, value: &str) -> PathBuf {
    let text = std::fs::read_to_string(lab.config_path()).unwrap();
    let changed: Vec<String> = text
        .lines()
        .map(|line| {
            if line.starts_with(&format!("{key} =")) {
                format!("{key} = \"{value}\"")
            } else {
                line.to_owned()
            }
        })
        .collect();
    scratch.write("runbook.toml", &changed.join("\n"))
}

#[test]
fn failures_name_the_bucket_and_database_and_hint_at_the_cause() {
    let lab = lab(true, Some(S3Kind::S3sFs));
    let scratch = Scratch::new();
    let put = r#"s3::put("x.txt", "x");"#;

    script(&lab, &scratch, put)
        .env("RUNBOOK_LAB_S3_SECRET_KEY", "wrong-secret")
        .output()
        .assert_exit(1)
        .assert_contains("`x.txt`")
        .assert_contains("refused the credentials");

    // (s3s-fs creates a missing bucket on PUT, so list.)
    let config = config_with(&lab, &scratch, "bucket", "no-such-bucket");
    script(&lab, &scratch, r#"s3::list("a/");"#)
        .config(&config)
        .output()
        .assert_exit(1)
        .assert_contains("bucket `no-such-bucket`")
        .assert_contains("does not exist");

    let config = config_with(&lab, &scratch, "endpoint", "http://127.0.0.1:9");
    script(&lab, &scratch, put)
        .config(&config)
        .output()
        .assert_exit(1)
        .assert_contains("cannot reach http://127.0.0.1:9");

    let config = config_with(&lab, &scratch, "bin_dir", "/nonexistent/pg/bin");
    script(
        &lab,
        &scratch,
        r#"pg::dump(#{to: "s3://backups/x.dump.zst"});"#,
    )
    .config(&config)
    .output()
    .assert_exit(1)
    .assert_contains("cannot find `/nonexistent/pg/bin/pg_dump`")
    .assert_contains("bin_dir");
    assert!(lab.s3().unwrap().list_keys("backups/").unwrap().is_empty());

    script(&lab, &scratch, r#"pg::query("nodb", "select 1");"#)
        .output()
        .assert_exit(1)
        .assert_contains("/nodb`")
        .assert_contains("does not exist");
}

#[test]
fn dump_to_a_local_file_and_restore_it_without_s3() {
    let lab = lab(true, None);
    let scratch = Scratch::new();
    let before = snapshot(&lab, PgLab::DATABASE);
    let file = scratch.file("todos.dump.zst");
    script(
        &lab,
        &scratch,
        &format!(
            r#"
let m = pg::dump(#{{to: "{file}"}});
assert(m.tables["public.todos"] == 20000, "manifest counts");
let r = pg::restore(#{{from: "{file}", database: "todos_local"}});
assert(r.created && r.verified, "created and verified");
assert(r.tables == m.tables, "row counts");
print("ok " + m.manifest);
"#,
            file = file.display()
        ),
    )
    .output()
    .assert_success()
    .assert_contains(".dump.zst.manifest.json");
    assert!(file.exists());
    assert_eq!(snapshot(&lab, "todos_local"), before);
    // Only the dump and its manifest: no temp file left behind.
    let mut names: Vec<String> = std::fs::read_dir(scratch.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("todos"))
        .collect();
    names.sort();
    assert_eq!(names, ["todos.dump.zst", "todos.dump.zst.manifest.json"]);

    // A damaged backup restores nothing, and the database it created is gone.
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    script(
        &lab,
        &scratch,
        &format!(
            r#"pg::restore(#{{from: "{}", database: "todos_damaged"}});"#,
            file.display()
        ),
    )
    .output()
    .assert_exit(1)
    .assert_contains("nothing was restored");
    assert!(
        !lab.postgres()
            .unwrap()
            .psql("postgres", "select datname from pg_database")
            .unwrap()
            .contains("todos_damaged")
    );
}

/// Decompress, change and recompress a `pg::dump` file with Debian's `zstd`;
/// false (and a note) when `zstd` is not installed.
fn rewrite_dump(file: &Path, change: impl FnOnce(&mut Vec<u8>)) -> bool {
    let raw = file.with_extension("raw");
    match Command::new("zstd")
        .args(["-d", "-q", "-f", "-o"])
        .arg(&raw)
        .arg(file)
        .status()
    {
        Ok(status) => assert!(status.success(), "zstd -d failed"),
        Err(error) => {
            eprintln!("SKIPPED rewriting the dump: no zstd ({error})");
            return false;
        }
    }
    let mut bytes = std::fs::read(&raw).unwrap();
    change(&mut bytes);
    std::fs::write(&raw, bytes).unwrap();
    let status = Command::new("zstd")
        .args(["-q", "-f", "--rm", "-o"])
        .arg(file)
        .arg(&raw)
        .status()
        .unwrap();
    assert!(status.success(), "zstd failed");
    true
}

#[test]
fn a_fresh_restore_loads_over_several_connections_and_matches_one_pg_restore() {
    let lab = lab(true, None);
    let scratch = Scratch::new();
    let pg = lab.postgres().unwrap();
    // Rows that span many batches, with text COPY has to escape (tabs,
    // newlines, backslashes, non-ASCII), an index, a sequence and a NULL.
    pg.psql(
        PgLab::DATABASE,
        r"create table notes (id bigserial primary key, body text, extra text);
          insert into notes (body, extra)
            select repeat(md5(i::text), 40) || E'\ttab\nnew line\\back ü €',
                   case when i % 7 = 0 then null else i::text end
            from generate_series(1, 30000) as i;
          create index notes_extra on notes (extra);
          create table readings (id int, at date, value float8) partition by range (at);
          create table readings_2025 partition of readings for values from ('2025-01-01') to ('2026-01-01');
          create table readings_2026 partition of readings for values from ('2026-01-01') to ('2027-01-01');
          insert into readings select i, date '2025-06-01' + (i % 400), i / 3.0 from generate_series(1, 5000) as i;
          create table nothing_yet (id int primary key);",
    )
    .unwrap();
    let before = snapshot(&lab, PgLab::DATABASE);
    let file = scratch.file("all.dump.zst");
    script(
        &lab,
        &scratch,
        &format!(
            r#"
let m = pg::dump(#{{to: "{file}"}});
let four = pg::restore(#{{from: "{file}", database: "r_four", parallel: 4}});
let two = pg::restore(#{{from: "{file}", database: "r_two"}});
let one = pg::restore(#{{from: "{file}", database: "r_one", parallel: 1}});
print("connections " + four.connections + " " + two.connections + " " + one.connections);
// Counted in the stream (partitions, empty tables) and by the server (the
// partitioned parent, which has no rows of its own in the archive).
assert(m.tables["public.notes"] == 30000 && m.tables["public.nothing_yet"] == 0, "stream counts");
assert(m.tables["public.readings"] == 5000, "parent: " + m.tables["public.readings"]);
assert(m.tables["public.readings_2025"] + m.tables["public.readings_2026"] == 5000, "partitions");
assert(four.tables == m.tables && two.tables == m.tables && one.tables == m.tables, "row counts");
"#,
            file = file.display()
        ),
    )
    .output()
    .assert_success()
    .assert_contains("connections 4 2 1");
    for db in ["r_four", "r_two", "r_one"] {
        assert_eq!(snapshot(&lab, db), before, "{db}");
        let indexes = pg
            .psql(
                db,
                "select indexname from pg_indexes where tablename = 'notes' order by 1",
            )
            .unwrap();
        assert_eq!(indexes, "notes_extra\nnotes_pkey", "{db}");
        assert_eq!(
            pg.psql(db, "select nextval('notes_id_seq')").unwrap(),
            "30001",
            "{db}: the sequence goes on where it was"
        );
        assert_eq!(
            pg.psql(db, "select coalesce(shobj_description(oid, 'pg_database'), '') from pg_database where datname = current_database()")
                .unwrap(),
            "",
            "{db}: no in-progress mark left"
        );
    }

    // A database a killed restore left (marked in progress, half filled) is
    // started over; one with tables and no mark is refused.
    pg.psql("postgres", "create database r_left").unwrap();
    pg.psql("r_left", "create table junk (id int)").unwrap();
    pg.psql(
        "postgres",
        "comment on database r_left is 'runbook: pg::restore in progress'",
    )
    .unwrap();
    let restore_into = |db: &str| {
        script(
            &lab,
            &scratch,
            &format!(
                r#"let r = pg::restore(#{{from: "{}", database: "{db}"}}); print("created " + r.created);"#,
                file.display()
            ),
        )
        .output()
    };
    restore_into("r_left")
        .assert_success()
        .assert_contains("created true")
        .assert_contains("was left half-restored by a restore that was stopped");
    assert_eq!(snapshot(&lab, "r_left"), before);
    pg.psql("postgres", "create database r_taken").unwrap();
    pg.psql("r_taken", "create table junk (id int)").unwrap();
    restore_into("r_taken")
        .assert_exit(1)
        .assert_contains("already has tables");

    // Rows the server refuses: the error names the table, nothing is left.
    std::fs::remove_file(scratch.file("all.dump.zst.manifest.json")).unwrap();
    let rewritten = rewrite_dump(&file, |bytes| {
        let needle = b"new line\\\\back";
        let at = bytes
            .windows(needle.len())
            .rposition(|window| window == needle)
            .expect("a notes row in the dump");
        // pg_dump writes every row as a chunk of its own: the previous row's
        // end, the chunk's length (a sign byte and 4 bytes), then the row.
        // Make the last row's id not a number.
        let start = bytes[..at].iter().rposition(|byte| *byte == b'\n').unwrap() + 6;
        assert!(bytes[start..].starts_with(b"30000\t"), "the last notes row");
        bytes[start] = b'x';
    });
    if rewritten {
        restore_into("r_bad")
            .assert_exit(1)
            .assert_contains("load the rows of `notes`")
            .assert_contains("invalid input syntax");
        assert!(
            !pg.psql("postgres", "select datname from pg_database")
                .unwrap()
                .contains("r_bad")
        );
    }
}

#[test]
fn dumps_pg_dump_made_without_a_manifest_restore_by_what_their_first_bytes_say() {
    let lab = lab(true, None);
    let scratch = Scratch::new();
    let pg = lab.postgres().unwrap();
    let before = snapshot(&lab, PgLab::DATABASE);
    // pg_dump's own gzip (custom), uncompressed custom, tar and plain SQL.
    let kinds = [
        ("gzip.dump", vec!["-Fc"], 1),
        ("raw.dump", vec!["-Fc", "-Z0"], 2),
        ("dump.tar", vec!["-Ft"], 1),
        ("dump.sql", vec!["-Fp"], 1),
    ];
    for (name, flags, connections) in kinds {
        let file = scratch.file(name);
        let status = Command::new(pg.bin_dir().join("pg_dump"))
            .args(&flags)
            .arg("-f")
            .arg(&file)
            .arg(pg.url(PgLab::DATABASE))
            .status()
            .unwrap();
        assert!(status.success(), "pg_dump {flags:?}");
        let db = format!("from_{}", name.replace('.', "_"));
        script(
            &lab,
            &scratch,
            &format!(
                r#"let r = pg::restore(#{{from: "{}", database: "{db}"}}); print("connections " + r.connections + ", verified " + r.verified);"#,
                file.display()
            ),
        )
        .output()
        .assert_success()
        .assert_contains(&format!("connections {connections}, verified false"));
        assert_eq!(snapshot(&lab, &db), before, "{name}");
    }
}

#[test]
fn a_loading_connection_the_server_ends_fails_the_restore_and_leaves_nothing() {
    let lab = lab(true, None);
    let scratch = Scratch::new();
    let pg = lab.postgres().unwrap();
    pg.psql(
        PgLab::DATABASE,
        "create table big (id int primary key, body text);
         insert into big select i, repeat(md5(i::text), 4) from generate_series(1, 1500000) as i",
    )
    .unwrap();
    let file = scratch.file("big.dump.zst");
    script(
        &lab,
        &scratch,
        &format!(r#"pg::dump(#{{to: "{}"}});"#, file.display()),
    )
    .output()
    .assert_success();
    // The restore runs while this thread ends its COPY connections; a
    // restore that finished before one was caught is tried again.
    for attempt in 1..=3 {
        let db = format!("cut_{attempt}");
        let run = script(
            &lab,
            &scratch,
            &format!(
                r#"pg::restore(#{{from: "{}", database: "{db}"}});"#,
                file.display()
            ),
        );
        let restore = std::thread::spawn(move || run.output());
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut ended = false;
        while !restore.is_finished() && Instant::now() < deadline {
            let count = pg
                .psql(
                    "postgres",
                    &format!(
                        "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity
                         where datname = '{db}' and query ilike 'copy%') as ended"
                    ),
                )
                .unwrap();
            if count != "0" {
                ended = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = restore.join().unwrap();
        if !ended {
            eprintln!("attempt {attempt}: the restore finished before a COPY was caught");
            continue;
        }
        out.assert_exit(1)
            .assert_contains("cannot load the rows of `big`")
            .assert_contains("the server ended the connection");
        assert!(
            !pg.psql("postgres", "select datname from pg_database")
                .unwrap()
                .contains(&db),
            "the database of a failed restore is dropped"
        );
        return;
    }
    panic!("no COPY connection was caught in 3 restores");
}
