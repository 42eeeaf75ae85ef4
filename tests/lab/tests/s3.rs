//! The lab's S3 servers (s3s-fs and moto) against a client we did not write
//! (boto3 from the lab venv): the bucket, put/list/get byte for byte,
//! multipart, SigV4 enforcement, the lab contexts, cleanup.

// Helpers outside `#[test]` functions fail the test by panicking, like the tests.
#![allow(clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use runbook_lab::{Lab, S3Kind, S3Lab};

/// Deterministic bytes of every value, `len` long (no compressible runs).
fn pattern(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// The status line's code of one raw HTTP request with no signature.
fn unsigned(port: u16, request_line: &str) -> u16 {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{request_line} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply
        .strip_prefix("HTTP/1.1 ")
        .unwrap_or_else(|| panic!("{reply}"))[..3]
        .parse()
        .unwrap()
}

fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// What both servers must do, checked with boto3.
fn check_server(s3: &S3Lab, dir: &Path) {
    assert_eq!(s3.endpoint(), format!("http://127.0.0.1:{}", s3.port()));
    assert_eq!(s3.bucket(), "runbook-lab");
    assert_eq!(s3.region(), "us-east-1");
    assert_eq!(s3.access_key(), "lab-access-key");
    assert_eq!(s3.secret_key(), "runbook-lab-secret");

    // The bucket exists from the start, and is empty.
    let buckets = s3
        .boto3(
            "s3.head_bucket(Bucket=bucket)\nprint(' '.join(b['Name'] for b in s3.list_buckets()['Buckets']))",
            &[] as &[&str],
        )
        .unwrap();
    assert_eq!(buckets.trim(), "runbook-lab");
    assert!(s3.list_keys("").unwrap().is_empty());

    // Put (9 MiB + 1: boto3 goes multipart above 8 MiB), list, get back.
    let big = dir.join("big.bin");
    let bytes = pattern(9 * 1024 * 1024 + 1);
    std::fs::write(&big, &bytes).unwrap();
    let small = dir.join("small.txt");
    std::fs::write(&small, "hello from the lab\n").unwrap();
    let started = Instant::now();
    s3.upload(&big, "backups/todos/2026-11-22T00:00:00Z.dump.zst")
        .unwrap();
    eprintln!(
        "{}: 9 MiB multipart upload in {:?}",
        s3.kind(),
        started.elapsed()
    );
    s3.upload(&small, "backups/todos/manifest.json").unwrap();
    s3.upload(&small, "elsewhere/x").unwrap();
    assert_eq!(
        s3.list_keys("backups/").unwrap(),
        [
            "backups/todos/2026-11-22T00:00:00Z.dump.zst",
            "backups/todos/manifest.json"
        ]
    );
    assert_eq!(s3.list_keys("").unwrap().len(), 3);
    assert!(s3.list_keys("nothing/").unwrap().is_empty());
    let back = dir.join("back.bin");
    s3.download("backups/todos/2026-11-22T00:00:00Z.dump.zst", &back)
        .unwrap();
    assert!(
        std::fs::read(&back).unwrap() == bytes,
        "the object came back changed"
    );

    // A missing key is an error naming it.
    let error = format!("{:#}", s3.download("no/such/key", &back).unwrap_err());
    assert!(error.contains("no/such/key"), "{error}");
    assert!(
        error.contains("404") || error.contains("Not Found"),
        "{error}"
    );
}

#[test]
fn s3s_fs_serves_the_bucket_with_sigv4_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let s3 = S3Lab::start(dir.path(), S3Kind::S3sFs).unwrap();
    eprintln!("s3s-fs ready with its bucket in {:?}", started.elapsed());
    assert_eq!(s3.kind(), S3Kind::S3sFs);
    let work = tempfile::tempdir().unwrap();
    check_server(&s3, work.path());

    // s3s-fs keeps objects as plain files: the bucket is a folder.
    let on_disk = s3.root().join("runbook-lab/backups/todos/manifest.json");
    assert_eq!(
        std::fs::read_to_string(on_disk).unwrap(),
        "hello from the lab\n"
    );

    // Unsigned requests and wrong secrets are refused.
    assert_eq!(unsigned(s3.port(), "GET /runbook-lab/elsewhere/x"), 403);
    assert_eq!(unsigned(s3.port(), "GET /runbook-lab?list-type=2"), 403);
    assert_eq!(unsigned(s3.port(), "PUT /runbook-lab/planted"), 403);
    let wrong = s3
        .boto3(
            r#"
import botocore.exceptions
bad = boto3.client("s3", endpoint_url=s3.meta.endpoint_url, region_name="us-east-1",
                   aws_access_key_id="runbook-lab", aws_secret_access_key="wrong",
                   config=Config(s3={"addressing_style": "path"}))
try:
    bad.list_objects_v2(Bucket=bucket)
    print("accepted")
except botocore.exceptions.ClientError as error:
    print(error.response["ResponseMetadata"]["HTTPStatusCode"])
"#,
            &[] as &[&str],
        )
        .unwrap();
    assert_eq!(wrong.trim(), "403");
    assert_eq!(s3.list_keys("planted").unwrap(), Vec::<String>::new());

    // Dropping stops and reaps the server.
    let pid = s3.pid().unwrap();
    let port = s3.port();
    drop(s3);
    assert!(!exists(pid), "s3s-fs was not reaped");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn moto_serves_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let s3 = S3Lab::start(dir.path(), S3Kind::Moto).unwrap();
    eprintln!("moto ready with its bucket in {:?}", started.elapsed());
    assert_eq!(s3.kind(), S3Kind::Moto);
    let work = tempfile::tempdir().unwrap();
    check_server(&s3, work.path());

    let pid = s3.pid().unwrap();
    let port = s3.port();
    drop(s3);
    assert!(!exists(pid), "moto_server was not reaped");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn the_lab_contexts_and_environment_point_at_s3() {
    let lab = Lab::builder().s3(S3Kind::S3sFs).start().unwrap();
    let s3 = lab.s3().unwrap();
    let config: toml::Table = std::fs::read_to_string(lab.config_path())
        .unwrap()
        .parse()
        .unwrap();
    for name in [Lab::CONTEXT, Lab::PROTECTED_CONTEXT] {
        let context = &config["context"][name];
        let table = &context["s3"];
        assert_eq!(table["endpoint"].as_str(), Some(s3.endpoint().as_str()));
        assert_eq!(table["bucket"].as_str(), Some("runbook-lab"));
        assert_eq!(table["region"].as_str(), Some("us-east-1"));
        assert_eq!(table["path_style"].as_bool(), Some(true));
        let secrets = &context["secrets"];
        assert_eq!(
            secrets["s3_access_key"].as_str(),
            Some("env:RUNBOOK_LAB_S3_ACCESS_KEY")
        );
        assert_eq!(
            secrets["s3_secret_key"].as_str(),
            Some("env:RUNBOOK_LAB_S3_SECRET_KEY")
        );
        // The other secrets are still there.
        assert_eq!(
            secrets["api_token"].as_str(),
            Some("env:RUNBOOK_LAB_API_TOKEN")
        );
        assert!(context.get("pg").is_none());
    }
    let env = lab.env();
    let get = |name: &str| {
        env.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    assert_eq!(get("RUNBOOK_LAB_S3_ACCESS_KEY"), Some("lab-access-key"));
    assert_eq!(get("RUNBOOK_LAB_S3_SECRET_KEY"), Some("runbook-lab-secret"));
    assert_eq!(get("AWS_ACCESS_KEY_ID"), Some("lab-access-key"));
    assert_eq!(get("AWS_SECRET_ACCESS_KEY"), Some("runbook-lab-secret"));
    assert_eq!(get("AWS_REGION"), Some("us-east-1"));
    assert_eq!(get("AWS_ENDPOINT_URL"), Some(s3.endpoint().as_str()));
    assert!(get("RUNBOOK_CONFIG").is_some());
    assert!(s3.dir().starts_with(lab.dir()));
    let pid = s3.pid().unwrap();
    drop(lab);
    assert!(!exists(pid));
}

#[test]
fn a_lab_without_data_stores_has_no_s3_or_pg() {
    let lab = Lab::start().unwrap();
    assert!(lab.s3().is_none());
    assert!(lab.postgres().is_none());
    let config = std::fs::read_to_string(lab.config_path()).unwrap();
    assert!(!config.contains(".s3]"), "{config}");
    assert!(!config.contains(".pg]"), "{config}");
    assert!(!config.contains("s3_access_key"), "{config}");
    assert!(lab.env().iter().all(|(name, _)| !name.starts_with("AWS_")));
}

#[test]
fn runbook_lab_run_with_moto_hands_runbook_a_bucket() {
    // `sh` stands in for runbook; the venv's `aws`-free check: the endpoint
    // from runbook.toml answers, and the AWS variables are set.
    let script = r#"
        endpoint=$(sed -n 's/^endpoint = "\(.*\)"$/\1/p' "$RUNBOOK_CONFIG" | head -n 1)
        test "$AWS_ENDPOINT_URL" = "$endpoint" || exit 10
        test "$RUNBOOK_LAB_S3_SECRET_KEY" = runbook-lab-secret || exit 11
        grep -q '# moto' "$RUNBOOK_CONFIG" || exit 12
        echo "$endpoint"
    "#;
    let output = Command::new(env!("CARGO_BIN_EXE_runbook-lab"))
        .args(["run", "--ssh-hosts=0", "--s3=moto", "--", "-c", script])
        .env("RUNBOOK_BIN", "/bin/sh")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?} {stderr}", output.status);
    let endpoint = String::from_utf8(output.stdout).unwrap();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    assert!(stderr.contains("(moto, bucket runbook-lab"), "{stderr}");
    // The lab is gone: nothing answers there any more.
    let port: u16 = endpoint.trim().rsplit(':').next().unwrap().parse().unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn a_bad_s3_kind_is_reported() {
    let output = Command::new(env!("CARGO_BIN_EXE_runbook-lab"))
        .args(["run", "--s3=minio", "--", "-c", "exit 0"])
        .env("RUNBOOK_BIN", "/bin/sh")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("`s3s-fs` or `moto`, not `minio`"),
        "{stderr}"
    );
}
