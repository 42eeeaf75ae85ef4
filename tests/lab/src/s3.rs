//! The lab's S3: a real S3-compatible server on a free port of 127.0.0.1 with
//! one bucket, [`S3Lab::BUCKET`], created at start. Two implementations
//! ([`S3Kind`]):
//!
//! - **s3s-fs** (the default): the `s3s-fs` binary (`cargo install s3s-fs
//!   --version 0.14.1 --features binary --locked`), which stores objects as
//!   files under `DIR/s3/root/` (a bucket is a folder) and enforces SigV4
//!   with the lab's fixed credentials. Ready in about 0.05 s.
//! - **moto**: `moto_server` from the lab's Python venv ([`S3Lab::venv`]),
//!   in memory; it accepts any credentials (and unsigned requests).
//!
//! Either way the server is the lab's child, in its own process group;
//! stopping the lab ends the group and reaps the server. Its output goes to
//! `DIR/s3/server.log`.
//!
//! For checks that must not depend on runbook's own S3 code, [`S3Lab`] also
//! drives a client we did not write: boto3, from the same venv
//! ([`S3Lab::list_keys`], [`S3Lab::upload`], [`S3Lab::download`],
//! [`S3Lab::boto3`]).

use std::ffi::OsStr;
use std::fmt;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::pg::{alive, check_output, free_port, log_tail, output_within, signal_group};

/// Ports tried before giving up when another program takes ours first.
const PORT_ATTEMPTS: usize = 8;

/// How long the server has to answer (moto needs about a second when idle;
/// generous for a loaded 2-core machine).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the server has to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one boto3 call may run before it is killed.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);

/// What every boto3 snippet starts with: `s3` (a client for the lab, path
/// style, SigV4) and `bucket`. The lab's settings come in through the
/// environment, never through the code's text.
const BOTO3_PRELUDE: &str = r#"
import json, os, sys
import boto3
from botocore.config import Config
s3 = boto3.client(
    "s3",
    endpoint_url=os.environ["RUNBOOK_LAB_S3_ENDPOINT"],
    region_name=os.environ["RUNBOOK_LAB_S3_REGION"],
    aws_access_key_id=os.environ["RUNBOOK_LAB_S3_ACCESS_KEY"],
    aws_secret_access_key=os.environ["RUNBOOK_LAB_S3_SECRET_KEY"],
    config=Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        connect_timeout=10,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
    ),
)
bucket = os.environ["RUNBOOK_LAB_S3_BUCKET"]
"#;

/// Which S3 server the lab runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum S3Kind {
    /// `s3s-fs` (Rust, files on disk, SigV4 enforced): the default.
    #[default]
    S3sFs,
    /// moto's server (Python, in memory, from the lab venv).
    Moto,
}

impl S3Kind {
    /// `s3s-fs` or `moto` (what [`S3Kind::from_str`] accepts).
    pub fn name(self) -> &'static str {
        match self {
            S3Kind::S3sFs => "s3s-fs",
            S3Kind::Moto => "moto",
        }
    }
}

impl fmt::Display for S3Kind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

impl FromStr for S3Kind {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<S3Kind> {
        match text {
            "s3s-fs" | "s3s" => Ok(S3Kind::S3sFs),
            "moto" => Ok(S3Kind::Moto),
            _ => bail!("the lab's S3 server is `s3s-fs` or `moto`, not `{text}`"),
        }
    }
}

/// A running lab S3 server with [`S3Lab::BUCKET`]. Dropping it (or
/// [`S3Lab::stop`]) stops the server and reaps it.
#[derive(Debug)]
pub struct S3Lab {
    kind: S3Kind,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl S3Lab {
    /// The bucket created at start.
    pub const BUCKET: &str = "runbook-lab";

    /// The region the lab claims to be.
    pub const REGION: &str = "us-east-1";

    /// The lab's access key (s3s-fs accepts only this one).
    pub const ACCESS_KEY: &str = "lab-access-key";

    /// The lab's secret key.
    pub const SECRET_KEY: &str = "runbook-lab-secret";

    /// The environment variable the lab contexts' `s3_access_key` secret is read from.
    pub const ACCESS_KEY_VAR: &str = "RUNBOOK_LAB_S3_ACCESS_KEY";

    /// The environment variable the lab contexts' `s3_secret_key` secret is read from.
    pub const SECRET_KEY_VAR: &str = "RUNBOOK_LAB_S3_SECRET_KEY";

    /// Environment variable naming the Python venv with `moto[server]` and
    /// `boto3` (default: `$XDG_CACHE_HOME/runbook-lab/venv`, else
    /// `~/.cache/runbook-lab/venv`; `scripts/setup.sh` creates it).
    pub const VENV_VAR: &str = "RUNBOOK_LAB_VENV";

    /// Environment variable naming the `s3s-fs` binary to use (default: on
    /// PATH, else `$CARGO_HOME/bin`, else `~/.cargo/bin`).
    pub const S3S_FS_VAR: &str = "RUNBOOK_LAB_S3S_FS";

    /// Start a `kind` server in `dir/s3/` (which must not exist yet) on a
    /// free port of 127.0.0.1, create [`S3Lab::BUCKET`] and wait until it
    /// answers.
    pub fn start(dir: &Path, kind: S3Kind) -> anyhow::Result<S3Lab> {
        let program = match kind {
            S3Kind::S3sFs => find_s3s_fs()?,
            S3Kind::Moto => {
                let moto = S3Lab::venv().join("bin").join("moto_server");
                if !moto.is_file() {
                    bail!(
                        "cannot find `{}`: run scripts/setup.sh, which creates the lab venv \
                         with moto[server] and boto3 (or set {} to such a venv)",
                        moto.display(),
                        S3Lab::VENV_VAR
                    );
                }
                moto
            }
        };
        let s3_dir = dir.join("s3");
        std::fs::create_dir(&s3_dir)
            .with_context(|| format!("cannot create `{}`", s3_dir.display()))?;
        let mut lab = S3Lab {
            kind,
            dir: s3_dir,
            port: 0,
            child: None,
        };
        if kind == S3Kind::S3sFs {
            // s3s-fs serves the folders of its root as buckets.
            let bucket = lab.root().join(S3Lab::BUCKET);
            std::fs::create_dir_all(&bucket)
                .with_context(|| format!("cannot create `{}`", bucket.display()))?;
        }
        let mut taken = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            lab.port = free_port()?;
            match lab.start_server(&program)? {
                Started::Ready => return Ok(lab),
                Started::PortTaken(log) => taken.push(format!("port {}: {log}", lab.port)),
            }
        }
        bail!(
            "cannot start {kind}: another program took the port {PORT_ATTEMPTS} times:\n{}",
            taken.join("\n")
        )
    }

    /// The Python venv with `moto[server]` and `boto3`: `$RUNBOOK_LAB_VENV`,
    /// else `$XDG_CACHE_HOME/runbook-lab/venv`, else `~/.cache/runbook-lab/venv`.
    pub fn venv() -> PathBuf {
        let set = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        if let Some(venv) = set(S3Lab::VENV_VAR) {
            return PathBuf::from(venv);
        }
        let cache = set("XDG_CACHE_HOME").map_or_else(
            || {
                set("HOME")
                    .map_or_else(|| PathBuf::from("/root"), PathBuf::from)
                    .join(".cache")
            },
            PathBuf::from,
        );
        cache.join("runbook-lab").join("venv")
    }

    /// Which server runs.
    pub fn kind(&self) -> S3Kind {
        self.kind
    }

    /// `http://127.0.0.1:PORT` (path-style addressing: `ENDPOINT/BUCKET/KEY`).
    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", Ipv4Addr::LOCALHOST, self.port)
    }

    /// The port the server listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// [`S3Lab::BUCKET`].
    pub fn bucket(&self) -> &'static str {
        S3Lab::BUCKET
    }

    /// [`S3Lab::REGION`].
    pub fn region(&self) -> &'static str {
        S3Lab::REGION
    }

    /// [`S3Lab::ACCESS_KEY`].
    pub fn access_key(&self) -> &'static str {
        S3Lab::ACCESS_KEY
    }

    /// [`S3Lab::SECRET_KEY`].
    pub fn secret_key(&self) -> &'static str {
        S3Lab::SECRET_KEY
    }

    /// The folder holding the server's log (and, for s3s-fs, `root/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where s3s-fs keeps the objects (`DIR/s3/root/BUCKET/KEY`); moto keeps
    /// them in memory.
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's output so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// The environment a client of the lab needs: the two variables the lab
    /// contexts' `s3_access_key` / `s3_secret_key` secrets come from, and the
    /// standard `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION` and
    /// `AWS_ENDPOINT_URL` (what [`crate::Lab::env`] adds).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            (S3Lab::ACCESS_KEY_VAR, S3Lab::ACCESS_KEY.to_owned()),
            (S3Lab::SECRET_KEY_VAR, S3Lab::SECRET_KEY.to_owned()),
            ("AWS_ACCESS_KEY_ID", S3Lab::ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", S3Lab::SECRET_KEY.to_owned()),
            ("AWS_REGION", S3Lab::REGION.to_owned()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }

    /// Run the Python `code` with boto3 from the lab venv, after a prelude
    /// that defines `s3` (a boto3 client for the lab: path style, SigV4, the
    /// lab's credentials) and `bucket`; `args` are `sys.argv[1:]`. Returns
    /// what it printed on stdout. A client we did not write, for checks that
    /// must not depend on runbook's own S3 code.
    pub fn boto3<S: AsRef<OsStr>>(&self, code: &str, args: &[S]) -> anyhow::Result<String> {
        let python = S3Lab::venv().join("bin").join("python3");
        if !python.is_file() {
            bail!(
                "cannot find `{}`: run scripts/setup.sh, which creates the lab venv with \
                 moto[server] and boto3 (or set {} to such a venv)",
                python.display(),
                S3Lab::VENV_VAR
            );
        }
        let mut command = Command::new(&python);
        command
            .arg("-c")
            .arg(format!("{BOTO3_PRELUDE}\n{code}"))
            .args(args)
            .env("RUNBOOK_LAB_S3_ENDPOINT", self.endpoint())
            .env("RUNBOOK_LAB_S3_REGION", S3Lab::REGION)
            .env(S3Lab::ACCESS_KEY_VAR, S3Lab::ACCESS_KEY)
            .env(S3Lab::SECRET_KEY_VAR, S3Lab::SECRET_KEY)
            .env("RUNBOOK_LAB_S3_BUCKET", S3Lab::BUCKET)
            // Nothing from the user's own AWS setup leaks in.
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_S3")
            .env_remove("PYTHONPATH")
            .env("PYTHONDONTWRITEBYTECODE", "1");
        let output = output_within(&mut command, CLIENT_TIMEOUT)
            .with_context(|| format!("cannot run `{}` (boto3)", python.display()))?;
        check_output(&format!("{} -c <boto3 snippet>", python.display()), &output)?;
        String::from_utf8(output.stdout).context("the boto3 snippet printed something not UTF-8")
    }

    /// Every key in the bucket that starts with `prefix`, sorted, as boto3
    /// lists them (ListObjectsV2, all pages).
    pub fn list_keys(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let printed = self
            .boto3(
                r#"
keys = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=sys.argv[1]):
    keys.extend(item["Key"] for item in page.get("Contents", []))
print(json.dumps(sorted(keys)))
"#,
                &[prefix],
            )
            .with_context(|| format!("cannot list `{prefix}` in the lab bucket with boto3"))?;
        serde_json::from_str(printed.trim())
            .with_context(|| format!("boto3's listing is not a JSON list of keys: {printed}"))
    }

    /// Upload the file `src` as `key` with boto3 (`upload_file`: multipart
    /// above 8 MiB).
    pub fn upload(&self, src: &Path, key: &str) -> anyhow::Result<()> {
        self.boto3(
            "s3.upload_file(sys.argv[1], bucket, sys.argv[2])",
            &[src.as_os_str(), OsStr::new(key)],
        )
        .with_context(|| format!("cannot upload `{}` as `{key}` with boto3", src.display()))?;
        Ok(())
    }

    /// Download `key` into the file `dest` with boto3 (`download_file`).
    pub fn download(&self, key: &str, dest: &Path) -> anyhow::Result<()> {
        self.boto3(
            "s3.download_file(bucket, sys.argv[1], sys.argv[2])",
            &[OsStr::new(key), dest.as_os_str()],
        )
        .with_context(|| format!("cannot download `{key}` to `{}` with boto3", dest.display()))?;
        Ok(())
    }

    /// Stop the server (SIGTERM to its process group, SIGKILL if it lingers)
    /// and reap it. Safe to call more than once.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // The server leads its own process group, so the group id is its
        // pid; until the server is reaped that id cannot be reused, so the
        // group is signalled only before `wait`.
        let group = child.id();
        signal_group("TERM", group);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while alive(group) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Whatever lingers, and anything the server forked, goes now.
        signal_group("KILL", group);
        let _ = child.kill();
        let _ = child.wait();
    }

    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// Start the server on [`S3Lab::port`] and wait until it answers (and,
    /// for moto, has created the bucket).
    fn start_server(&mut self, program: &Path) -> anyhow::Result<Started> {
        let log = self.log();
        let stdout = std::fs::File::create(&log)
            .with_context(|| format!("cannot create `{}`", log.display()))?;
        let stderr = stdout
            .try_clone()
            .with_context(|| format!("cannot share `{}`", log.display()))?;
        let port = self.port.to_string();
        let mut command = Command::new(program);
        match self.kind {
            S3Kind::S3sFs => {
                command
                    .args(["--host", "127.0.0.1", "--port", &port])
                    .args(["--access-key", S3Lab::ACCESS_KEY])
                    .args(["--secret-key", S3Lab::SECRET_KEY])
                    .arg(self.root())
                    .env("RUST_LOG", "warn");
            }
            S3Kind::Moto => {
                command
                    .args(["-H", "127.0.0.1", "-p", &port])
                    .env("PYTHONDONTWRITEBYTECODE", "1")
                    .env("PYTHONUNBUFFERED", "1");
            }
        }
        command
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        // Its own process group: a Ctrl-C meant for the runbook that
        // `runbook-lab run` started must not take the server away, and
        // stopping the lab ends everything the server started.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let what = format!("{} (port {port})", program.display());
        let child = command
            .spawn()
            .with_context(|| format!("cannot run `{what}`"))?;
        self.child = Some(child);
        match self.wait_ready(&what) {
            Ok(Started::Ready) => Ok(Started::Ready),
            other => {
                self.stop();
                other
            }
        }
    }

    /// Poll until the server answers HTTP: s3s-fs must refuse an unsigned
    /// request for the bucket (403: our server, SigV4 enforced); moto must
    /// create the bucket (an unsigned PUT, which it accepts).
    fn wait_ready(&mut self, what: &str) -> anyhow::Result<Started> {
        let log = self.log();
        let deadline = Instant::now() + READY_TIMEOUT;
        // What only our server answers: s3s-fs's refusal names the missing
        // signature; moto's CreateBucket has an empty body.
        let (method, path, expected, marker) = match self.kind {
            S3Kind::S3sFs => ("GET", format!("/{}", S3Lab::BUCKET), 403, "AccessDenied"),
            S3Kind::Moto => ("PUT", format!("/{}", S3Lab::BUCKET), 200, ""),
        };
        loop {
            let Some(child) = self.child.as_mut() else {
                bail!("`{what}` is not running");
            };
            if let Some(status) = child
                .try_wait()
                .with_context(|| format!("cannot check on `{what}`"))?
            {
                self.child = None;
                let tail = log_tail(&log);
                if tail.contains("in use") || tail.contains("AddrInUse") {
                    return Ok(Started::PortTaken(tail));
                }
                bail!(
                    "`{what}` exited ({status}) before it answered; its log `{}` ends:\n{tail}",
                    log.display()
                );
            }
            let last = match http_status(self.port, method, &path) {
                // Still running: a server that lost the port to another
                // program exits at once, and the answer was the other's.
                Ok((status, body)) if status == expected && body.contains(marker) => {
                    if child.try_wait().ok().flatten().is_none() {
                        return Ok(Started::Ready);
                    }
                    format!("{method} {path} answered {status}, but `{what}` has exited")
                }
                Ok((status, _)) => format!("{method} {path} answered {status}"),
                Err(error) => format!("{method} {path}: {error:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "`{what}` did not answer {method} {path} with {expected} within \
                     {READY_TIMEOUT:?} (last: {last}); its log `{}` ends:\n{}",
                    log.display(),
                    log_tail(&log)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for S3Lab {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How one start attempt ended (errors that a new port cannot fix are `Err`).
enum Started {
    Ready,
    /// Another program holds the port: the server's log.
    PortTaken(String),
}

/// The status and body of one unsigned HTTP/1.1 request with an empty body to
/// 127.0.0.1:`port` (`Content-Length: 0`: moto answers an empty PUT without
/// it with 411).
fn http_status(port: u16, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(500))?;
    // A slow first answer is asked for again, not waited on forever.
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut reply = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut reply)?;
    let reply = String::from_utf8_lossy(&reply);
    let status = reply
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| reply.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP answer: {:?}", reply.lines().next()))?;
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// `$RUNBOOK_LAB_S3S_FS`, else `s3s-fs` on PATH, else in cargo's bin folder.
fn find_s3s_fs() -> anyhow::Result<PathBuf> {
    let set = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(path) = set(S3Lab::S3S_FS_VAR) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "{} is `{}`, which is not a file",
                S3Lab::S3S_FS_VAR,
                path.display()
            );
        }
        return Ok(path);
    }
    let on_path = set("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("s3s-fs"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let cargo_home = set("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| set("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    on_path
        .into_iter()
        .chain(cargo_home.map(|home| home.join("bin").join("s3s-fs")))
        .find(|path| path.is_file())
        .with_context(|| {
            format!(
                "cannot find `s3s-fs` (looked on PATH and in cargo's bin folder): run scripts/setup.sh \
                 (cargo install s3s-fs --version 0.14.1 --features binary --locked), or set {}",
                S3Lab::S3S_FS_VAR
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_names() {
        assert_eq!(S3Kind::default(), S3Kind::S3sFs);
        for kind in [S3Kind::S3sFs, S3Kind::Moto] {
            assert_eq!(kind.name().parse::<S3Kind>().unwrap(), kind);
            assert_eq!(kind.to_string(), kind.name());
        }
        let error = "minio".parse::<S3Kind>().unwrap_err().to_string();
        assert!(error.contains("`s3s-fs` or `moto`"), "{error}");
    }

    #[test]
    fn a_taken_port_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let mut lab = S3Lab::start(dir.path(), S3Kind::S3sFs).unwrap();
        lab.stop();
        assert!(lab.pid().is_none());
        // Someone else holds the port s3s-fs is about to use, and answers
        // every connection by closing it.
        let squatter = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        lab.port = squatter.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in squatter.incoming() {
                drop(stream);
            }
        });
        match lab.start_server(&find_s3s_fs().unwrap()).unwrap() {
            Started::PortTaken(log) => assert!(log.contains("in use"), "{log}"),
            Started::Ready => panic!("the taken port went unnoticed"),
        }
        assert!(lab.pid().is_none());
    }

    #[test]
    fn nothing_listening_is_an_error_not_a_hang() {
        let port = free_port().unwrap();
        assert!(http_status(port, "GET", "/").is_err());
    }
}
