//! The lab's PostgreSQL: a real server from Debian's `postgresql` package,
//! initialised into the lab folder, listening on a free port on 127.0.0.1
//! only, with trust authentication, and seeded with a sample `todos`
//! database (the seeds' schema: `users` and `todos`, thousands of rows).
//!
//! Everything lives in `DIR/pg/`:
//!
//! | path | what |
//! |---|---|
//! | `data/` | the cluster (`initdb`); `postgresql.conf` ends with the lab's settings |
//! | `initdb.log` | what `initdb` said |
//! | `postgres.log` | the server's stderr (its log) |
//! | `.s.PGSQL.PORT` | the server's unix socket (`unix_socket_directories`) |
//!
//! The server (`postgres -D DIR/pg/data`) is the lab's own child process, in
//! its own process group, rather than a daemon started by `pg_ctl start`:
//! here pid 1 does not reap orphans, so a daemonised postmaster would stay a
//! zombie once stopped. Stopping sends it SIGINT (what `pg_ctl stop -m fast`
//! sends), waits for it and reaps it.
//!
//! PostgreSQL refuses to run as root, so when the lab runs as root the
//! cluster belongs to the `postgres` system user (Debian's package creates
//! it): `DIR/pg` is chowned to it, `DIR` is made traversable (mode `o+x`) so
//! it can reach `DIR/pg`, and `initdb` and `postgres` run with its uid and gid.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read as _;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// Ports tried before giving up when another program takes ours first.
const PORT_ATTEMPTS: usize = 8;

/// How long the server has to become ready (generous: a loaded 2-core
/// machine running builds beside the tests).
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a fast shutdown may take before an immediate one, and that one
/// before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// How long one `psql` call may run before it is killed.
const PSQL_TIMEOUT: Duration = Duration::from_secs(120);

/// Lines of a log quoted in errors.
pub(crate) const LOG_TAIL_LINES: usize = 20;

/// The sample schema and its rows; deterministic (fixed timestamps) so two
/// labs hold the same data.
const SEED_SQL: &str = "
create table users (
    id serial primary key,
    email text unique not null,
    name text,
    created_at timestamptz default now()
);
create table todos (
    id serial primary key,
    user_id int references users,
    title text not null,
    done bool default false,
    created_at timestamptz default now()
);
insert into users (email, name, created_at)
select format('user%s@example.com', i),
       format('User %s', i),
       timestamptz '2026-01-01 00:00:00+00' + i * interval '1 minute'
from generate_series(1, 2000) as i;
insert into todos (user_id, title, done, created_at)
select 1 + (i - 1) % 2000,
       format('todo %s for user %s', i, 1 + (i - 1) % 2000),
       i % 3 = 0,
       timestamptz '2026-01-01 00:00:00+00' + i * interval '10 seconds'
from generate_series(1, 20000) as i;
create index todos_user_id on todos (user_id);
analyze;
";

/// The app's roles: the group `app_group` holds the grants, the login role
/// `app` is a member of it (so a second login role can join the same group
/// for a two-role rotation without copying grants).
fn app_sql() -> String {
    format!(
        "create role {group} nologin;
grant select, insert, update, delete on users, todos to {group};
grant usage, select on all sequences in schema public to {group};
create role {user} login password '{password}' in role {group};",
        group = PgLab::APP_GROUP,
        user = PgLab::APP_USER,
        password = PgLab::APP_PASSWORD,
    )
}

/// A running lab PostgreSQL server. Dropping it (or [`PgLab::stop`]) stops
/// the server and reaps it; the data stays in the folder until the folder goes.
#[derive(Debug)]
pub struct PgLab {
    dir: PathBuf,
    bin_dir: PathBuf,
    port: u16,
    /// The superuser's password (TCP logins need it: scram-sha-256).
    password: String,
    child: Option<Child>,
}

impl PgLab {
    /// The seeded database.
    pub const DATABASE: &str = "todos";

    /// The role every lab connection uses: a superuser; its password
    /// ([`PgLab::password`]) is checked on TCP (scram-sha-256), the socket
    /// in the lab folder trusts it.
    pub const USER: &str = "postgres";

    /// The app's login role (member of [`PgLab::APP_GROUP`]).
    pub const APP_USER: &str = "app";

    /// The group role that holds the app's grants.
    pub const APP_GROUP: &str = "app_group";

    /// The app role's password as the lab seeds it (also in the Secret
    /// `app-db` of the Kubernetes fake when both run).
    pub const APP_PASSWORD: &str = "lab-app-password";

    /// Rows of `users` in the seeded database.
    pub const SEED_USERS: i64 = 2_000;

    /// Rows of `todos` in the seeded database.
    pub const SEED_TODOS: i64 = 20_000;

    /// Environment variable naming a PostgreSQL `bin` folder to use instead
    /// of the newest `/usr/lib/postgresql/*/bin`.
    pub const BIN_DIR_VAR: &str = "RUNBOOK_LAB_PG_BIN";

    /// `initdb` a cluster in `dir/pg/` (which must not exist yet), start the
    /// server on a free port of 127.0.0.1, wait until it accepts connections,
    /// and create and seed the [`PgLab::DATABASE`] database.
    pub fn start(dir: &Path) -> anyhow::Result<PgLab> {
        let bin_dir = find_bin_dir()?;
        let pg_dir = dir.join("pg");
        std::fs::create_dir(&pg_dir)
            .with_context(|| format!("cannot create `{}`", pg_dir.display()))?;
        let owner = if is_root() {
            let owner = system_user(PgLab::USER)?;
            let_owner_in(dir, &pg_dir, owner)?;
            Some(owner)
        } else {
            None
        };
        let mut lab = PgLab {
            dir: pg_dir,
            bin_dir,
            port: 0,
            password: new_password(),
            child: None,
        };
        lab.initdb(owner)?;
        let mut taken = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            lab.port = free_port()?;
            match lab.start_server(owner)? {
                Started::Ready => break,
                Started::PortTaken(log) => taken.push(format!("port {}: {log}", lab.port)),
            }
        }
        if lab.child.is_none() {
            bail!(
                "cannot start PostgreSQL: another program took the port {PORT_ATTEMPTS} times:\n{}",
                taken.join("\n")
            );
        }
        lab.psql("postgres", &format!("create database {}", PgLab::DATABASE))?;
        lab.psql(PgLab::DATABASE, SEED_SQL)?;
        lab.psql(PgLab::DATABASE, &app_sql())
            .context("cannot seed the lab database")?;
        Ok(lab)
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{}:{}@{}:{}/{db}",
            PgLab::USER,
            self.password,
            Ipv4Addr::LOCALHOST,
            self.port
        )
    }

    /// The superuser's password (also what `runbook-lab up` exports as `PGPASSWORD`).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// A URL for `user` with `password` (to check a login of another role).
    pub fn url_as(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgres://{user}:{password}@{}:{}/{db}",
            Ipv4Addr::LOCALHOST,
            self.port
        )
    }

    /// Whether `user` can log in over TCP with `password` (scram-sha-256).
    pub fn login_works(&self, user: &str, password: &str, db: &str) -> bool {
        let psql = self.bin_dir.join("psql");
        let mut command = Command::new(&psql);
        command
            .args(["-X", "-A", "-t", "-q", "-w", "-d"])
            .arg(self.url_as(user, password, db))
            .args(["-c", "select 1"])
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE")
            .env_remove("PGOPTIONS");
        output_within(&mut command, PSQL_TIMEOUT).is_ok_and(|output| output.status.success())
    }

    /// The port the server listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder holding `postgres`, `psql`, `pg_dump` and `pg_restore` of
    /// the server's version.
    pub fn bin_dir(&self) -> PathBuf {
        self.bin_dir.clone()
    }

    /// The folder holding the cluster, its logs and its socket (`DIR/pg`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder of the server's unix socket (`psql -h DIR`).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The postmaster's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// Run `sql` (one or more statements) in database `db` with
    /// `psql -X -At -v ON_ERROR_STOP=1` and return its output without the
    /// final newline: one row a line, columns separated by `|`.
    pub fn psql(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        let psql = self.bin_dir.join("psql");
        let mut command = Command::new(&psql);
        command
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url(db))
            .args(["-c", sql])
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGSERVICE")
            .env_remove("PGOPTIONS");
        let output = output_within(&mut command, PSQL_TIMEOUT)
            .with_context(|| format!("cannot run `{}`", psql.display()))?;
        let what = format!("psql -d {} -c {}", self.url(db), abbreviate(sql));
        check_output(&what, &output)?;
        let mut text = String::from_utf8(output.stdout)
            .with_context(|| format!("`{what}` printed something that is not UTF-8"))?;
        if text.ends_with('\n') {
            text.pop();
        }
        Ok(text)
    }

    /// The exact row count of every table in schema `public` of `db`.
    pub fn row_counts(&self, db: &str) -> anyhow::Result<BTreeMap<String, i64>> {
        let rows = self.psql(
            db,
            "select table_name, (xpath('/row/c/text()', query_to_xml(
                 format('select count(*) as c from %I.%I', table_schema, table_name),
                 false, true, '')))[1]::text::bigint
             from information_schema.tables
             where table_schema = 'public' and table_type = 'BASE TABLE'
             order by table_name",
        )?;
        rows.lines()
            .filter(|line| !line.is_empty())
            .map(|line| {
                let (table, count) = line
                    .rsplit_once('|')
                    .with_context(|| format!("unexpected row count line `{line}`"))?;
                let count = count
                    .parse()
                    .with_context(|| format!("unexpected row count line `{line}`"))?;
                Ok((table.to_owned(), count))
            })
            .collect()
    }

    /// The md5 of `table`'s rows (as text) in `id` order:
    /// `select md5(string_agg(t::text, ',' order by id)) from TABLE t`.
    /// Empty for an empty table.
    pub fn table_checksum(&self, db: &str, table: &str) -> anyhow::Result<String> {
        let table = quote_ident(table);
        self.psql(
            db,
            &format!("select md5(string_agg(t::text, ',' order by id)) from {table} t"),
        )
    }

    /// Stop the server (fast shutdown, then immediate, then SIGKILL) and reap
    /// it. Safe to call more than once.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        for signal_name in ["INT", "QUIT"] {
            signal(signal_name, &[child.id()]);
            if wait_child(&mut child, STOP_TIMEOUT) {
                return;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// `initdb` (the superuser's password, UTF-8, C locale, no fsync), then
    /// the lab's settings and `pg_hba.conf` (scram-sha-256 on TCP, trust on
    /// the lab's own socket).
    fn initdb(&self, owner: Option<Owner>) -> anyhow::Result<()> {
        let initdb = self.bin_dir.join("initdb");
        let pwfile = self.dir.join("superuser.password");
        std::fs::write(&pwfile, format!("{}\n", self.password))
            .with_context(|| format!("cannot write `{}`", pwfile.display()))?;
        let mut command = Command::new(&initdb);
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-U", PgLab::USER, "-E", "UTF8"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--locale=C", "--no-sync", "--no-instructions"])
            .current_dir(&self.dir);
        as_owner(&mut command, owner);
        let output = output_within(&mut command, READY_TIMEOUT)
            .with_context(|| format!("cannot run `{}`", initdb.display()))?;
        let log = self.dir.join("initdb.log");
        let _ = std::fs::write(&log, [&output.stdout[..], &output.stderr[..]].concat());
        check_output(
            &format!("{} -D {}", initdb.display(), self.data_dir().display()),
            &output,
        )
        .with_context(|| match owner {
            Some(_) => format!(
                "cannot create the lab's PostgreSQL cluster as user `{}` (it must be able to reach `{}`)",
                PgLab::USER,
                self.dir.display()
            ),
            None => "cannot create the lab's PostgreSQL cluster".to_owned(),
        })?;

        let conf = self.data_dir().join("postgresql.conf");
        let mut settings = std::fs::read_to_string(&conf)
            .with_context(|| format!("cannot read `{}`", conf.display()))?;
        settings.push_str(&format!(
            "\n# runbook-lab: loopback only, socket in the lab folder, speed over durability\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = {}\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             logging_collector = off\n\
             log_min_messages = warning\n",
            conf_string(&self.dir.display().to_string())?
        ));
        std::fs::write(&conf, settings)
            .with_context(|| format!("cannot write `{}`", conf.display()))?;
        let hba = self.data_dir().join("pg_hba.conf");
        std::fs::write(
            &hba,
            "# runbook-lab: passwords (scram-sha-256) on 127.0.0.1 only; the socket in the lab folder trusts\n\
             local all         all                trust\n\
             host  all         all  127.0.0.1/32  scram-sha-256\n\
             host  replication all  127.0.0.1/32  scram-sha-256\n",
        )
        .with_context(|| format!("cannot write `{}`", hba.display()))
    }

    /// Start `postgres` on [`PgLab::port`] and wait until it is ready.
    fn start_server(&mut self, owner: Option<Owner>) -> anyhow::Result<Started> {
        let postgres = self.bin_dir.join("postgres");
        let log = self.log();
        let stderr =
            File::create(&log).with_context(|| format!("cannot create `{}`", log.display()))?;
        let mut command = Command::new(&postgres);
        command
            .arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        as_owner(&mut command, owner);
        // Its own process group: a Ctrl-C meant for the runbook that
        // `runbook-lab run` started must not stop the database under it.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let what = format!(
            "{} -D {} -p {}",
            postgres.display(),
            self.data_dir().display(),
            self.port
        );
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot run `{what}`"))?;
        let pid_file = self.data_dir().join("postmaster.pid");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    let tail = log_tail(&log);
                    if tail.contains("could not bind") || tail.contains("already in use") {
                        return Ok(Started::PortTaken(tail));
                    }
                    bail!(
                        "`{what}` exited ({status}) before it was ready; its log `{}` ends:\n{tail}",
                        log.display()
                    );
                }
                Ok(None) => {}
                Err(error) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(error).with_context(|| format!("cannot check on `{what}`"));
                }
            }
            // pg_ctl's own test: the 8th line of postmaster.pid is the
            // postmaster's status, `ready` once it accepts connections.
            let ready = std::fs::read_to_string(&pid_file).is_ok_and(|text| {
                text.lines().next() == Some(child.id().to_string().as_str())
                    && text.lines().nth(7).map(str::trim) == Some("ready")
            });
            if ready {
                self.child = Some(child);
                return Ok(Started::Ready);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "`{what}` was not ready within {READY_TIMEOUT:?}; its log `{}` ends:\n{}",
                    log.display(),
                    log_tail(&log)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PgLab {
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

/// The uid and gid the cluster belongs to when the lab runs as root.
#[derive(Debug, Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

/// Run `command` as `owner` (when the lab runs as root).
fn as_owner(command: &mut Command, owner: Option<Owner>) {
    #[cfg(unix)]
    if let Some(owner) = owner {
        use std::os::unix::process::CommandExt as _;
        // std drops the supplementary groups (setgroups(0)) before setuid.
        command.uid(owner.uid).gid(owner.gid);
        command.env("HOME", "/").env("USER", PgLab::USER);
    }
    #[cfg(not(unix))]
    let _ = (command, owner);
}

/// Hand `pg_dir` to `owner` and let it pass through `dir` (o+x: it can reach
/// names inside it, not list them).
fn let_owner_in(dir: &Path, pg_dir: &Path, owner: Owner) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::os::unix::fs::chown(pg_dir, Some(owner.uid), Some(owner.gid)).with_context(|| {
            format!(
                "cannot hand `{}` to user `{}`",
                pg_dir.display(),
                PgLab::USER
            )
        })?;
        let mode = std::fs::metadata(dir)
            .with_context(|| format!("cannot read `{}`", dir.display()))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o001))
                .with_context(|| {
                    format!("cannot let user `{}` into `{}`", PgLab::USER, dir.display())
                })?;
        }
    }
    #[cfg(not(unix))]
    let _ = (dir, pg_dir, owner);
    Ok(())
}

/// `$RUNBOOK_LAB_PG_BIN`, else the newest `/usr/lib/postgresql/N/bin` that
/// has the server and its clients.
fn find_bin_dir() -> anyhow::Result<PathBuf> {
    let complete = |dir: &Path| {
        ["postgres", "initdb", "psql", "pg_dump", "pg_restore"]
            .iter()
            .all(|name| dir.join(name).is_file())
    };
    if let Some(dir) = std::env::var_os(PgLab::BIN_DIR_VAR).filter(|dir| !dir.is_empty()) {
        let dir = PathBuf::from(dir);
        if !complete(&dir) {
            bail!(
                "{} is `{}`, which lacks one of postgres, initdb, psql, pg_dump, pg_restore",
                PgLab::BIN_DIR_VAR,
                dir.display()
            );
        }
        return Ok(dir);
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .map(|entries| {
            entries
                .filter_map(|entry| {
                    let entry = entry.ok()?;
                    let version = entry.file_name().to_str()?.parse().ok()?;
                    Some((version, entry.path().join("bin")))
                })
                .filter(|(_, bin)| complete(bin))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).with_context(|| {
        format!(
            "cannot find PostgreSQL: no {}/N/bin has postgres, initdb, psql, pg_dump and pg_restore \
             (install Debian's postgresql and postgresql-client: scripts/setup.sh), \
             or set {} to such a folder",
            root.display(),
            PgLab::BIN_DIR_VAR
        )
    })
}

/// The uid and gid of system user `name` (`getent passwd NAME`).
fn system_user(name: &str) -> anyhow::Result<Owner> {
    let output = Command::new("getent")
        .args(["passwd", name])
        .stdin(Stdio::null())
        .output()
        .context("cannot run `getent passwd`")?;
    let line = String::from_utf8_lossy(&output.stdout);
    let mut fields = line.trim().split(':').skip(2);
    let uid = fields.next().and_then(|uid| uid.parse().ok());
    let gid = fields.next().and_then(|gid| gid.parse().ok());
    match (output.status.success(), uid, gid) {
        (true, Some(uid), Some(gid)) if uid != 0 => Ok(Owner { uid, gid }),
        _ => bail!(
            "PostgreSQL will not run as root and there is no user `{name}` to run it as \
             (Debian's postgresql package creates it: scripts/setup.sh)"
        ),
    }
}

/// Whether the lab runs as root (PostgreSQL refuses to).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|uids| uids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// A string literal for `postgresql.conf`.
fn conf_string(text: &str) -> anyhow::Result<String> {
    if text.contains(['\n', '\r']) {
        bail!("`{text}` cannot be written into postgresql.conf (it has a newline)");
    }
    Ok(format!(
        "'{}'",
        text.replace('\\', "\\\\").replace('\'', "''")
    ))
}

/// An SQL identifier, double-quoted.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The start of a long SQL text, on one line, for error messages.
fn abbreviate(sql: &str) -> String {
    let line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 120 {
        format!("'{}…'", line.chars().take(120).collect::<String>())
    } else {
        format!("'{line}'")
    }
}

/// A port on 127.0.0.1 that was free a moment ago (the kernel's choice).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot bind a port on 127.0.0.1")?;
    Ok(listener
        .local_addr()
        .context("cannot read the port bound on 127.0.0.1")?
        .port())
}

/// The last lines of a log file, for error messages.
pub(crate) fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
    if tail.trim().is_empty() {
        "(empty)".to_owned()
    } else {
        tail
    }
}

/// An error unless `output` is a success, with its stderr and stdout.
pub(crate) fn check_output(what: &str, output: &Output) -> anyhow::Result<()> {
    if output.status.success() {
        return Ok(());
    }
    bail!(
        "`{what}` failed ({}): {} {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim(),
        String::from_utf8_lossy(&output.stdout).trim()
    )
}

/// `command.output()`, but killed (and reported) after `timeout`.
pub(crate) fn output_within(command: &mut Command, timeout: Duration) -> anyhow::Result<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Read both pipes on threads so a chatty child cannot block on a full pipe.
    let stdout = child.stdout.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    });
    let stderr = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("it did not finish within {timeout:?} and was killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: stdout
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default(),
        stderr: stderr
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default(),
    })
}

/// Wait up to `timeout` for `child` to exit, reaping it. False if it still runs.
pub(crate) fn wait_child(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) | Err(_) => return false,
        }
    }
}

/// `kill -SIGNAL PIDS...` (std can only SIGKILL its children). A negative
/// pid names a process group. A process that is already gone is not an error.
pub(crate) fn signal(name: &str, pids: &[u32]) {
    signal_targets(name, &pids.iter().map(u32::to_string).collect::<Vec<_>>());
}

/// `kill -SIGNAL -- -PGID`: every process of group `pgid`.
pub(crate) fn signal_group(name: &str, pgid: u32) {
    signal_targets(name, &[format!("-{pgid}")]);
}

fn signal_targets(name: &str, targets: &[String]) {
    if targets.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg("--")
        .args(targets)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Whether process `pid` is alive (a zombie counts as gone).
pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|close| stat.get(close + 1..))
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// A fresh superuser password: letters and digits only, so that it needs no
/// quoting in URLs or shells.
fn new_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    let tail: String = (0..20)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("lab{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_conf_strings_are_quoted() {
        assert_eq!(quote_ident("todos"), "\"todos\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(conf_string("/tmp/a'b").unwrap(), "'/tmp/a''b'");
        assert!(conf_string("a\nb").is_err());
    }

    #[test]
    fn long_sql_is_abbreviated_in_errors() {
        assert_eq!(abbreviate("select\n  1"), "'select 1'");
        assert!(abbreviate(SEED_SQL).ends_with("…'"));
    }

    #[test]
    fn a_taken_port_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let mut lab = PgLab::start(dir.path()).unwrap();
        lab.stop();
        assert!(lab.pid().is_none());
        let squatter = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        lab.port = squatter.local_addr().unwrap().port();
        let owner = if is_root() {
            Some(system_user(PgLab::USER).unwrap())
        } else {
            None
        };
        match lab.start_server(owner).unwrap() {
            Started::PortTaken(log) => assert!(log.contains("already in use"), "{log}"),
            Started::Ready => panic!("the taken port went unnoticed"),
        }
        assert!(lab.pid().is_none());
        // The next port works, and the data survived the stop.
        lab.port = free_port().unwrap();
        assert!(matches!(lab.start_server(owner).unwrap(), Started::Ready));
        assert_eq!(
            lab.psql(PgLab::DATABASE, "select count(*) from users")
                .unwrap(),
            PgLab::SEED_USERS.to_string()
        );
    }

    #[test]
    fn a_slow_command_is_killed() {
        let error = output_within(Command::new("sleep").arg("30"), Duration::from_millis(100))
            .unwrap_err()
            .to_string();
        assert!(error.contains("did not finish"), "{error}");
    }
}
