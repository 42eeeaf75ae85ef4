//! `runbook-lab`: start the local lab by hand (`up`) or around one `runbook`
//! command (`run`). Arguments are parsed by hand: two subcommands do not need clap.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode, ExitStatus};

use anyhow::{Context as _, bail};
use runbook_lab::{HcloudApi, KubeApi, Lab, PgLab, S3Kind, S3Lab, SshLab};

const HELP: &str = "\
runbook-lab: the local lab (servers and API fakes on 127.0.0.1) for runbook

Usage:
  runbook-lab up [--ssh-hosts N] [--postgres] [--s3[=moto]] [--no-kube] [--hcloud]
      Start the lab, print where everything runs and how to point runbook at
      it, and keep it running until Ctrl-C.
  runbook-lab run [--ssh-hosts N] [--postgres] [--s3[=moto]] [--no-kube] [--hcloud] [--] RUNBOOK_ARGS...
      Start the lab, run `runbook RUNBOOK_ARGS...` against it, stop the lab and
      exit with runbook's exit code. Example:
        runbook-lab run -- run examples/hello.rhai --context lab
  runbook-lab --help
      Show this help.

Options:
  --ssh-hosts N
      Serve N ssh hosts (127.0.0.1 .. 127.0.0.N, 0 to 200) from a private,
      real sshd; they appear in the contexts as hosts host01.., groups all,
      web and db, and an ssh table. Default: 4. 0 starts no sshd.
  --postgres
      Run a real PostgreSQL server (Debian's postgresql) on 127.0.0.1 with a
      seeded `todos` database (users, todos); the contexts get a pg table
      (url, bin_dir).
  --s3, --s3=s3s-fs, --s3=moto
      Run an S3 server on 127.0.0.1 with the bucket `runbook-lab`: s3s-fs (the
      default, SigV4 enforced) or moto's server (from the lab venv that
      scripts/setup.sh creates). The contexts get an s3 table (endpoint,
      bucket, region, path_style) and the secrets s3_access_key and
      s3_secret_key; runbook also gets AWS_ACCESS_KEY_ID,
      AWS_SECRET_ACCESS_KEY, AWS_REGION and AWS_ENDPOINT_URL.
  --kube, --no-kube
      Serve (the default) or not the lab's Kubernetes API, an in-process fake
      that kubectl accepts, seeded with namespaces staging and production,
      Deployments backend and frontend (registry.lab/APP:v1, 2 pods each) and
      the Secret app-secrets. The lab writes a kubeconfig (contexts lab ->
      staging, lab-production -> production); the contexts get kubeconfig,
      kube_context and namespace, and runbook gets KUBECONFIG. An image tag
      containing `broken` makes pods crash-loop.
  --hcloud
      Serve a fake of the Hetzner Cloud API (servers, actions, ssh keys,
      firewalls, server types, locations, images) that the official hcloud
      CLI and Python library accept. runbook (and a shell that pastes the
      export lines) gets HCLOUD_ENDPOINT and HCLOUD_TOKEN; the contexts get
      an hcloud table (endpoint) and the secret hcloud_token. Created
      servers boot as ssh hosts on spare addresses of the lab's sshd that
      accept the ssh keys they were created with.

The runbook binary is $RUNBOOK_BIN if set, else `runbook` next to runbook-lab
(the same cargo target folder), else `runbook` on PATH.
";

/// Ssh hosts a lab started by hand serves unless `--ssh-hosts` says otherwise.
const DEFAULT_SSH_HOSTS: usize = 4;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let command = args.first().and_then(|arg| arg.to_str());
    let result = match command {
        Some("up") => match options(&args[1..]) {
            Ok((options, [])) => up(&options),
            Ok(_) => usage(),
            Err(error) => Err(error),
        },
        Some("run") => match options(&args[1..]) {
            Ok((options, rest)) => run(&options, rest),
            Err(error) => Err(error),
        },
        Some("-h" | "--help" | "help") => {
            print!("{HELP}");
            Ok(ExitCode::SUCCESS)
        }
        _ => usage(),
    };
    result.unwrap_or_else(|error| {
        eprintln!("runbook-lab: error: {error:#}");
        ExitCode::FAILURE
    })
}

fn usage() -> anyhow::Result<ExitCode> {
    eprint!("{HELP}");
    Ok(ExitCode::from(2))
}

/// What to start besides the HTTP server.
#[derive(Debug)]
struct Options {
    ssh_hosts: usize,
    postgres: bool,
    s3: Option<S3Kind>,
    kube: bool,
    hcloud: bool,
}

/// Leading `--ssh-hosts N` / `--ssh-hosts=N` (any number, the last wins),
/// `--postgres`, `--s3[=KIND]`, a `--` that ends them, and the arguments after.
fn options(mut args: &[OsString]) -> anyhow::Result<(Options, &[OsString])> {
    let mut options = Options {
        ssh_hosts: DEFAULT_SSH_HOSTS,
        postgres: false,
        s3: None,
        kube: true,
        hcloud: false,
    };
    loop {
        let value = match args.first().and_then(|arg| arg.to_str()) {
            Some("--") => return Ok((options, &args[1..])),
            Some("--kube" | "--no-kube") => {
                options.kube = args.first().and_then(|arg| arg.to_str()) == Some("--kube");
                args = &args[1..];
                continue;
            }
            Some("--hcloud") => {
                options.hcloud = true;
                args = &args[1..];
                continue;
            }
            Some("--postgres") => {
                options.postgres = true;
                args = &args[1..];
                continue;
            }
            Some("--s3") => {
                options.s3 = Some(S3Kind::default());
                args = &args[1..];
                continue;
            }
            Some(arg) if arg.starts_with("--s3=") => {
                let kind = arg.trim_start_matches("--s3=");
                options.s3 = Some(kind.parse().context("--s3=KIND")?);
                args = &args[1..];
                continue;
            }
            Some("--ssh-hosts") => {
                let value = args.get(1).context("--ssh-hosts needs a number of hosts")?;
                args = &args[2..];
                value.to_string_lossy().into_owned()
            }
            Some(arg) if arg.starts_with("--ssh-hosts=") => {
                let value = arg.trim_start_matches("--ssh-hosts=").to_owned();
                args = &args[1..];
                value
            }
            _ => return Ok((options, args)),
        };
        options.ssh_hosts = value
            .parse()
            .ok()
            .filter(|count| *count <= SshLab::MAX_HOSTS)
            .with_context(|| {
                format!(
                    "--ssh-hosts takes a number from 0 to {}, not `{value}`",
                    SshLab::MAX_HOSTS
                )
            })?;
    }
}

fn start_lab(options: &Options) -> anyhow::Result<Lab> {
    let mut builder = Lab::builder()
        .ssh_hosts(options.ssh_hosts)
        .postgres(options.postgres)
        .kube(options.kube)
        .hcloud(options.hcloud);
    if let Some(kind) = options.s3 {
        builder = builder.s3(kind);
    }
    builder.start().with_context(|| {
        if options.ssh_hosts > 0 {
            "cannot start the lab (`--ssh-hosts 0` starts it without sshd)"
        } else {
            "cannot start the lab"
        }
    })
}

/// Start the lab and keep it up until Ctrl-C (or SIGTERM).
fn up(options: &Options) -> anyhow::Result<ExitCode> {
    let stop = Stop::listen()?;
    let lab = start_lab(options)?;
    let http = lab.http();
    println!("runbook lab is up (folder {})", lab.dir().display());
    println!();
    println!("  http     {}", http.base_url());
    println!(
        "             GET  /health           200 ok (PUT /admin/health/CODE to plant another)"
    );
    println!("             GET  /status/CODE      answers CODE");
    println!("             GET  /slow/MILLIS      answers after MILLIS");
    println!("             POST /hooks/NAME       recorded; GET /hooks/NAME lists them");
    println!("             POST /echo             echoes method, headers and body");
    if let Some(ssh) = lab.ssh() {
        print!("{}", describe_ssh(ssh));
    }
    print!("{}", describe_stores(&lab));
    if let Some(kube) = lab.kube() {
        print!("{}", describe_kube(kube));
    }
    if let Some(hcloud) = lab.hcloud() {
        print!("{}", describe_hcloud(hcloud));
    }
    println!("  config   {}", lab.config_path().display());
    println!(
        "             contexts `{}` (default) and `{}` (protected)",
        Lab::CONTEXT,
        Lab::PROTECTED_CONTEXT
    );
    println!();
    println!("Point runbook at it in another shell:");
    println!();
    for (name, value) in lab.env() {
        println!("  export {name}={}", shell_quote(&value));
    }
    println!(
        "  runbook run examples/hello.rhai --context {}",
        Lab::CONTEXT
    );
    println!();
    println!("Press Ctrl-C to stop the lab.");
    stop.wait()?;
    drop(lab);
    println!("runbook lab stopped");
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C (and SIGTERM on unix), caught from the moment [`Stop::listen`]
/// returns, so a stop that comes right after the lab is announced still drops
/// the lab and removes its folder instead of killing the process.
struct Stop {
    runtime: tokio::runtime::Runtime,
    #[cfg(unix)]
    signals: [tokio::signal::unix::Signal; 2],
}

impl Stop {
    fn listen() -> anyhow::Result<Stop> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot build a runtime to wait for Ctrl-C")?;
        #[cfg(unix)]
        let signals = {
            use tokio::signal::unix::{SignalKind, signal};
            let _entered = runtime.enter();
            [
                signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?,
                signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            ]
        };
        Ok(Stop {
            runtime,
            #[cfg(unix)]
            signals,
        })
    }

    /// Block until one of the signals arrives.
    #[cfg(unix)]
    fn wait(self) -> anyhow::Result<()> {
        let Stop {
            runtime,
            signals: [mut interrupt, mut terminate],
        } = self;
        runtime.block_on(async {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        });
        Ok(())
    }

    /// Block until Ctrl-C.
    #[cfg(not(unix))]
    fn wait(self) -> anyhow::Result<()> {
        self.runtime
            .block_on(tokio::signal::ctrl_c())
            .context("cannot listen for Ctrl-C")
    }
}

/// The `ssh` lines of `up` (and of `run`, on stderr).
fn describe_ssh(ssh: &SshLab) -> String {
    let hosts = ssh.hosts();
    if hosts.is_empty() {
        return format!(
            "  ssh      a real sshd on port {}, only for Hetzner Cloud servers, user {}\n",
            ssh.port(),
            ssh.user()
        );
    }
    let mut text = format!(
        "  ssh      {} hosts, a real sshd on port {} ({} instance(s)), user {}\n",
        hosts.len(),
        ssh.port(),
        ssh.pids().len(),
        ssh.user()
    );
    // Every host up to 8; beyond that the first and last few (all are in the config).
    let shown: Vec<usize> = if hosts.len() <= 8 {
        (0..hosts.len()).collect()
    } else {
        vec![0, 1, 2, hosts.len() - 2, hosts.len() - 1]
    };
    for (position, index) in shown.iter().enumerate() {
        if position > 0 && shown[position - 1] + 1 != *index {
            let _ = writeln!(
                text,
                "             ... ({} more)",
                index - shown[position - 1] - 1
            );
        }
        let (name, destination) = &hosts[*index];
        let _ = writeln!(text, "             {name} = {destination}");
    }
    let _ = writeln!(
        text,
        "             groups all, web (first half), db (the rest)\n             try: ssh -F {} 127.0.0.1 true",
        shell_quote(&ssh.ssh_config().display().to_string())
    );
    text
}

/// The `pg` and `s3` lines of `up` (and of `run`, on stderr).
fn describe_stores(lab: &Lab) -> String {
    let mut text = String::new();
    if let Some(pg) = lab.postgres() {
        let _ = writeln!(
            text,
            "  pg       {}  (PostgreSQL from {})\n             \
             tables users ({} rows), todos ({} rows); try: {} {}",
            pg.url(PgLab::DATABASE),
            pg.bin_dir().display(),
            PgLab::SEED_USERS,
            PgLab::SEED_TODOS,
            shell_quote(&pg.bin_dir().join("psql").display().to_string()),
            pg.url(PgLab::DATABASE),
        );
    }
    if let Some(s3) = lab.s3() {
        let _ = writeln!(
            text,
            "  s3       {}  ({}, bucket {}, region {}, path style)\n             \
             access key {}, secret key {} (also in the AWS_* variables)",
            s3.endpoint(),
            s3.kind(),
            s3.bucket(),
            s3.region(),
            S3Lab::ACCESS_KEY,
            S3Lab::SECRET_KEY,
        );
    }
    text
}

/// The `kube` lines of `up` (and of `run`, on stderr).
fn describe_kube(kube: &KubeApi) -> String {
    format!(
        "  kube     {}  (Kubernetes API fake; kubectl works against it)\n             \
         kubeconfig {}\n             \
         contexts {} (namespace staging, current) and {} (production);\n             \
         deployments backend and frontend, secrets app-secrets and (with --postgres) app-db; try: kubectl --kubeconfig {} get pods\n",
        kube.url(),
        kube.kubeconfig().display(),
        KubeApi::CONTEXT,
        KubeApi::PRODUCTION_CONTEXT,
        shell_quote(&kube.kubeconfig().display().to_string()),
    )
}

/// The `hcloud` lines of `up` (and of `run`, on stderr).
fn describe_hcloud(hcloud: &HcloudApi) -> String {
    format!(
        "  hcloud   {}  (Hetzner Cloud API fake; the hcloud CLI works against it)\n             \
         servers boot as ssh hosts on {} spare addresses; try: hcloud server-type list\n",
        hcloud.endpoint(),
        Lab::HCLOUD_SERVERS,
    )
}

/// Run `runbook ARGS...` with the lab's environment, then stop the lab.
fn run(options: &Options, args: &[OsString]) -> anyhow::Result<ExitCode> {
    let runbook = find_runbook()?;
    let lab = start_lab(options)?;
    // stdout is runbook's; what the lab says about itself goes to stderr.
    if let Some(ssh) = lab.ssh() {
        eprint!("runbook-lab:\n{}", describe_ssh(ssh));
    }
    if lab.postgres().is_some() || lab.s3().is_some() {
        eprint!("runbook-lab:\n{}", describe_stores(&lab));
    }
    if let Some(kube) = lab.kube() {
        eprint!("runbook-lab:\n{}", describe_kube(kube));
    }
    if let Some(hcloud) = lab.hcloud() {
        eprint!("runbook-lab:\n{}", describe_hcloud(hcloud));
    }
    // Ctrl-C reaches runbook too (same process group); it rolls back and
    // flushes its journal. The lab must outlive that, so it ignores Ctrl-C.
    #[cfg(unix)]
    let _ignore_interrupt = ignore_interrupt()?;
    let status = Command::new(&runbook)
        .args(args)
        .envs(lab.env())
        .status()
        .with_context(|| format!("cannot run `{}`", runbook.display()))?;
    drop(lab);
    Ok(ExitCode::from(exit_code(status)))
}

/// Install a SIGINT handler that does nothing, for as long as the returned
/// runtime and signal stream live.
#[cfg(unix)]
fn ignore_interrupt() -> anyhow::Result<(tokio::runtime::Runtime, tokio::signal::unix::Signal)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot build a runtime to handle Ctrl-C")?;
    let signal = {
        let _entered = runtime.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .context("cannot handle Ctrl-C")?
    };
    Ok((runtime, signal))
}

/// runbook's exit code; death by signal N becomes 128 + N, as shells report it.
fn exit_code(status: ExitStatus) -> u8 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(signal) = status.signal() {
            return u8::try_from(128 + signal).unwrap_or(u8::MAX);
        }
    }
    status
        .code()
        .and_then(|code| u8::try_from(code).ok())
        .unwrap_or(1)
}

/// `$RUNBOOK_BIN`, else `runbook` next to this executable, else on PATH.
fn find_runbook() -> anyhow::Result<PathBuf> {
    let name = format!("runbook{}", std::env::consts::EXE_SUFFIX);
    if let Some(path) = std::env::var_os("RUNBOOK_BIN").filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("RUNBOOK_BIN is `{}`, which is not a file", path.display());
        }
        return Ok(path);
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(&name)))
        .filter(|path| path.is_file());
    let on_path = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(&name))
                .find(|path| path.is_file())
        })
    };
    beside.or_else(on_path).context(
        "cannot find the `runbook` binary: build it with `cargo build -p runbook`, \
         put it on PATH, or set RUNBOOK_BIN to its path",
    )
}

/// `value` as one shell word, for the `export` lines people paste.
fn shell_quote(value: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-:=@%+,".contains(c);
    if !value.is_empty() && value.chars().all(plain) {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}
