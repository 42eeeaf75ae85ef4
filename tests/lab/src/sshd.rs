//! The lab's ssh hosts: the system's real OpenSSH `sshd`, run privately on
//! loopback with generated keys, listening on 127.0.0.1 .. 127.0.0.N (one
//! port for all of them), so fan-out over many "hosts" exercises real ssh.
//!
//! Everything lives in `DIR/ssh/`:
//!
//! | file | what |
//! |---|---|
//! | `host_ed25519_key(.pub)` | the host key every lab host presents |
//! | `id_ed25519(.pub)` | the client key, the only one `authorized_keys` accepts |
//! | `authorized_keys` | the client public key |
//! | `spare-127.0.0.X.keys` | what a spare address accepts (a Hetzner fake server's keys once it runs) |
//! | `known_hosts` | `[127.0.0.X]:PORT ssh-ed25519 …` for every host and spare address |
//! | `ssh_config` | for `ssh -F`: key, known_hosts, port, user, batch mode |
//! | `sshd-K.conf`, `sshd-K.log`, `sshd-K.pid` | instance K's config, stderr (LogLevel VERBOSE: one `Connection from` and one `Accepted publickey` line per login) and pid |
//! | `sshd-K.earlier.log` | instance K's log before the last [`SshLab::restart`] |
//!
//! OpenSSH listens on at most 16 sockets per `sshd` (`MAX_LISTEN_SOCKS`), so
//! N hosts take ceil(N/16) instances. Each instance sets
//! [`SshLab::MARKER_VAR`] in every session it starts; stopping the lab ends
//! every process that carries it (commands still running, services planted
//! with `nohup … &`), then the session processes, then the listeners.
//!
//! Nothing here touches the system's sshd service, `/etc/ssh` or `~/.ssh`;
//! the one thing outside the folder is `/run/sshd`, sshd's privilege
//! separation directory, which is created if missing (sshd needs it when
//! started as root).

use std::fmt::Write as _;
use std::fs::File;
use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// Listen sockets one sshd accepts (OpenSSH's compiled-in `MAX_LISTEN_SOCKS`).
const SOCKETS_PER_SSHD: usize = 16;

/// Ports tried before giving up when another program takes ours first.
const PORT_ATTEMPTS: usize = 8;

/// How long every address has to start accepting connections.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// How long each stop phase waits for processes to go before the next step.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// Lines of an sshd log quoted in errors.
const LOG_TAIL_LINES: usize = 20;

/// One `sshd` process and the addresses it listens on.
#[derive(Debug)]
struct Instance {
    child: Child,
    config: PathBuf,
    log: PathBuf,
    addresses: Vec<Ipv4Addr>,
}

/// A running set of lab ssh hosts. Dropping it (or [`SshLab::stop`]) stops
/// every sshd it started and every process started through them.
#[derive(Debug)]
pub struct SshLab {
    dir: PathBuf,
    sshd: PathBuf,
    port: u16,
    user: String,
    count: usize,
    /// Addresses after the hosts' that sshd also serves, each with its own
    /// authorized keys file (servers of the Hetzner Cloud fake boot there).
    spares: usize,
    instances: Vec<Instance>,
}

impl SshLab {
    /// The most hosts one lab serves (127.0.0.1 .. 127.0.0.200).
    pub const MAX_HOSTS: usize = 200;

    /// Set to the lab's ssh folder in every session the lab's sshd starts;
    /// how stopping the lab finds what was started on its hosts.
    pub const MARKER_VAR: &str = "RUNBOOK_LAB_SSHD";

    /// Generate keys in `dir/ssh/` (which must not exist yet), start sshd on
    /// 127.0.0.1 .. 127.0.0.`hosts` and wait until every address accepts
    /// connections.
    pub fn start(dir: &Path, hosts: usize) -> anyhow::Result<SshLab> {
        if !(1..=SshLab::MAX_HOSTS).contains(&hosts) {
            bail!(
                "the lab serves 1 to {} ssh hosts, not {hosts}",
                SshLab::MAX_HOSTS
            );
        }
        SshLab::start_with_spares(dir, hosts, 0)
    }

    /// Like [`SshLab::start`], plus `spares` addresses after the hosts'
    /// (127.0.0.`hosts+1` ...) that accept only the keys written into each
    /// one's own file ([`SshLab::spare_slots`]), empty at first. `hosts`
    /// may be 0 when there are spares.
    pub fn start_with_spares(dir: &Path, hosts: usize, spares: usize) -> anyhow::Result<SshLab> {
        if !(1..=SshLab::MAX_HOSTS).contains(&(hosts + spares)) {
            bail!(
                "the lab serves 1 to {} ssh hosts and spare addresses, not {hosts} + {spares}",
                SshLab::MAX_HOSTS
            );
        }
        let ssh_dir = dir.join("ssh");
        std::fs::create_dir(&ssh_dir)
            .with_context(|| format!("cannot create `{}`", ssh_dir.display()))?;
        let sshd = find_sshd()?;
        privilege_separation_dir()?;
        let mut lab = SshLab {
            dir: ssh_dir,
            sshd,
            port: 0,
            user: current_user()?,
            count: hosts,
            spares,
            instances: Vec::new(),
        };
        lab.generate_keys()?;
        let authorized = lab.path("authorized_keys");
        std::fs::copy(lab.client_key().with_extension("pub"), &authorized)
            .with_context(|| format!("cannot write `{}`", authorized.display()))?;
        for slot in lab.spare_slots() {
            std::fs::write(&slot.authorized_keys, "")
                .with_context(|| format!("cannot write `{}`", slot.authorized_keys.display()))?;
        }

        let mut taken = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            lab.port = free_port(&lab.listen_addresses())?;
            match lab.start_instances()? {
                Started::Ready => break,
                Started::PortTaken(why) => {
                    taken.push(format!("port {}: {why}", lab.port));
                    lab.stop();
                }
            }
        }
        if lab.instances.is_empty() {
            bail!(
                "cannot start sshd: another program took the port {PORT_ATTEMPTS} times:\n{}",
                taken.join("\n")
            );
        }
        lab.write_client_files()?;
        Ok(lab)
    }

    /// `(name, "user@127.0.0.X:PORT")` for every host, in order: `host01`,
    /// `host02`, ... (three digits from 100 hosts on).
    pub fn hosts(&self) -> Vec<(String, String)> {
        host_names(self.count)
            .into_iter()
            .zip(self.addresses())
            .map(|(name, address)| (name, format!("{}@{address}:{}", self.user, self.port)))
            .collect()
    }

    /// The host names alone, in order.
    pub fn host_names(&self) -> Vec<String> {
        host_names(self.count)
    }

    /// The loopback address of every host, in order (127.0.0.1 first).
    pub fn addresses(&self) -> Vec<Ipv4Addr> {
        (1..=self.count)
            .map(|index| Ipv4Addr::new(127, 0, 0, u8::try_from(index).unwrap_or(u8::MAX)))
            .collect()
    }

    /// The spare addresses and the authorized keys file of each, in order.
    pub fn spare_slots(&self) -> Vec<crate::HostSlot> {
        (self.count + 1..=self.count + self.spares)
            .map(|index| {
                let address = Ipv4Addr::new(127, 0, 0, u8::try_from(index).unwrap_or(u8::MAX));
                crate::HostSlot {
                    address,
                    authorized_keys: self.path(&format!("spare-{address}.keys")),
                }
            })
            .collect()
    }

    /// Every address sshd listens on: the hosts', then the spares.
    fn listen_addresses(&self) -> Vec<Ipv4Addr> {
        let mut addresses = self.addresses();
        addresses.extend(self.spare_slots().into_iter().map(|slot| slot.address));
        addresses
    }

    /// The port every host listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user the hosts are logged into: the user running the lab.
    pub fn user(&self) -> String {
        self.user.clone()
    }

    /// The client's private key (`id_ed25519`, unencrypted).
    pub fn client_key(&self) -> PathBuf {
        self.path("id_ed25519")
    }

    /// The `known_hosts` file with every host's `[127.0.0.X]:PORT` entry.
    pub fn known_hosts(&self) -> PathBuf {
        self.path("known_hosts")
    }

    /// An `ssh_config` for `ssh -F` / `sftp -F`: `ssh -F FILE 127.0.0.3 true`
    /// (or `ssh -F FILE host03 true`) needs nothing else.
    pub fn ssh_config(&self) -> PathBuf {
        self.path("ssh_config")
    }

    /// The folder holding keys, configs and sshd logs (`DIR/ssh`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pids of the running sshd listeners (one per 16 hosts).
    pub fn pids(&self) -> Vec<u32> {
        self.instances
            .iter()
            .map(|instance| instance.child.id())
            .collect()
    }

    /// Everything the sshd instances logged (LogLevel VERBOSE: connections,
    /// logins, disconnects, errors), including before a restart.
    pub fn logs(&self) -> String {
        (0..self.count.div_ceil(SOCKETS_PER_SSHD))
            .flat_map(|index| {
                [
                    self.path(&format!("sshd-{index}.earlier.log")),
                    self.path(&format!("sshd-{index}.log")),
                ]
            })
            .map(|log| std::fs::read_to_string(log).unwrap_or_default())
            .collect()
    }

    /// Every successful login since the lab started (restarts included), as
    /// the address the client connected to, in log order: sshd logs
    /// `Connection from A port P on ADDRESS port …`, then `Accepted publickey
    /// for USER from A port P`.
    pub fn logins(&self) -> Vec<Ipv4Addr> {
        let logs = self.logs();
        let mut address_of_port = std::collections::HashMap::new();
        let mut logins = Vec::new();
        for line in logs.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let Some(at) = words.iter().position(|word| *word == "Connection")
                && words.get(at + 1) == Some(&"from")
                && words.get(at + 5) == Some(&"on")
                && let (Some(port), Some(address)) = (words.get(at + 4), words.get(at + 6))
                && let Ok(address) = address.parse::<Ipv4Addr>()
            {
                address_of_port.insert((*port).to_owned(), address);
            }
            if let Some(at) = words.iter().position(|word| *word == "Accepted")
                && words.get(at + 1) == Some(&"publickey")
                && let Some(from) = words.iter().skip(at).position(|word| *word == "port")
                && let Some(port) = words.get(at + from + 1)
                && let Some(address) = address_of_port.get(*port)
            {
                logins.push(*address);
            }
        }
        logins
    }

    /// Stop every sshd (and everything started through it, as [`SshLab::stop`]),
    /// then start them again on the same port with the same keys: what a
    /// host's reboot looks like to a client. Earlier logs move to
    /// `sshd-K.earlier.log`.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        for index in 0..self.count.div_ceil(SOCKETS_PER_SSHD) {
            let log = self.path(&format!("sshd-{index}.log"));
            let earlier = self.path(&format!("sshd-{index}.earlier.log"));
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let mut kept = std::fs::read_to_string(&earlier).unwrap_or_default();
            kept.push_str(&text);
            std::fs::write(&earlier, kept)
                .with_context(|| format!("cannot write `{}`", earlier.display()))?;
        }
        match self.start_instances()? {
            Started::Ready => Ok(()),
            Started::PortTaken(why) => {
                self.stop();
                bail!(
                    "cannot restart sshd on port {}: another program took it: {why}",
                    self.port
                )
            }
        }
    }

    /// Stop every process started through the lab's sshd, then the sshd
    /// instances themselves, and reap them. Safe to call more than once.
    pub fn stop(&mut self) {
        if self.instances.is_empty() {
            return;
        }
        let listeners: Vec<u32> = self.pids();
        let marker = format!("{}={}", SshLab::MARKER_VAR, self.dir.display());
        let ours = started_through(&listeners, &marker);
        // Commands and planted services first, while the session processes
        // above them still live to reap them; then the sessions, which the
        // listeners reap; then the listeners, which we reap.
        let (sessions, commands): (Vec<Proc>, Vec<Proc>) =
            ours.into_iter().partition(|proc| proc.comm == "sshd");
        for group in [commands, sessions] {
            let pids: Vec<u32> = group.iter().map(|proc| proc.pid).collect();
            signal("TERM", &pids);
            if !wait_gone(&pids, STOP_TIMEOUT) {
                signal("KILL", &pids);
                wait_gone(&pids, STOP_TIMEOUT);
            }
        }
        signal("TERM", &listeners);
        let deadline = Instant::now() + STOP_TIMEOUT;
        for mut instance in self.instances.drain(..) {
            loop {
                match instance.child.try_wait() {
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Ok(None) | Err(_) => {
                        // Still running after SIGTERM: SIGKILL, then reap.
                        let _ = instance.child.kill();
                        let _ = instance.child.wait();
                        break;
                    }
                    Ok(Some(_)) => break,
                }
            }
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn host_key(&self) -> PathBuf {
        self.path("host_ed25519_key")
    }

    /// One host key and one client key, generated side by side.
    fn generate_keys(&self) -> anyhow::Result<()> {
        let keygen = |path: PathBuf, comment: &str| {
            let mut command = Command::new("ssh-keygen");
            command
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(path)
                .stdin(Stdio::null());
            command
        };
        let mut host = keygen(self.host_key(), "runbook-lab-host");
        let mut client = keygen(self.client_key(), "runbook-lab-client");
        let host = host
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run `ssh-keygen` (is openssh-client installed?)")?;
        let client = client.output();
        let host = host.wait_with_output();
        for (what, output) in [("host", host), ("client", client)] {
            let output = output.with_context(|| format!("cannot run `ssh-keygen` ({what} key)"))?;
            check_output(&format!("ssh-keygen -t ed25519 ({what} key)"), &output)?;
        }
        Ok(())
    }

    /// Start ceil(N/16) sshd on [`SshLab::port`] and wait for every address.
    fn start_instances(&mut self) -> anyhow::Result<Started> {
        let addresses = self.listen_addresses();
        for (index, chunk) in addresses.chunks(SOCKETS_PER_SSHD).enumerate() {
            let config = self.path(&format!("sshd-{index}.conf"));
            let log = self.path(&format!("sshd-{index}.log"));
            std::fs::write(&config, self.sshd_config(index, chunk)?)
                .with_context(|| format!("cannot write `{}`", config.display()))?;
            let stderr =
                File::create(&log).with_context(|| format!("cannot create `{}`", log.display()))?;
            let mut command = Command::new(&self.sshd);
            command
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr);
            // Its own process group: a Ctrl-C meant for the runbook that
            // `runbook-lab run` started must not take the hosts away while
            // that runbook rolls back. The lab stops sshd when it is dropped.
            #[cfg(unix)]
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
            let child = command.spawn().with_context(|| {
                format!(
                    "cannot run `{} -D -e -f {}`",
                    self.sshd.display(),
                    config.display()
                )
            })?;
            self.instances.push(Instance {
                child,
                config,
                log,
                addresses: chunk.to_vec(),
            });
        }
        self.wait_ready()
    }

    /// Wait until every address accepts a TCP connection; an sshd that exits
    /// or cannot bind one of its addresses is reported.
    fn wait_ready(&mut self) -> anyhow::Result<Started> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let sshd = self.sshd.display().to_string();
        for instance in &mut self.instances {
            for address in &instance.addresses {
                let socket = SocketAddr::V4(SocketAddrV4::new(*address, self.port));
                loop {
                    if let Some(status) = instance
                        .child
                        .try_wait()
                        .with_context(|| format!("cannot check on `{sshd}`"))?
                    {
                        let log = log_tail(&instance.log);
                        if port_taken(&log) {
                            return Ok(Started::PortTaken(log));
                        }
                        bail!(
                            "`{sshd} -D -e -f {}` exited ({status}) before listening on {socket}; its log `{}` ends:\n{log}",
                            instance.config.display(),
                            instance.log.display()
                        );
                    }
                    if TcpStream::connect_timeout(&socket, Duration::from_millis(200)).is_ok() {
                        break;
                    }
                    if Instant::now() >= deadline {
                        bail!(
                            "`{sshd}` did not accept connections on {socket} within {READY_TIMEOUT:?}; its log `{}` ends:\n{}",
                            instance.log.display(),
                            log_tail(&instance.log)
                        );
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        // sshd only logs an address it cannot bind and carries on with the
        // rest, so what answered may be another program: the kernel's socket
        // table says who listens where (where there is one to read).
        let listening = listening_sockets(self.port);
        for instance in &self.instances {
            let log = log_tail(&instance.log);
            if port_taken(&log) {
                return Ok(Started::PortTaken(log));
            }
            let Some(listening) = &listening else {
                continue;
            };
            let held = socket_inodes(instance.child.id());
            for address in &instance.addresses {
                if !listening
                    .iter()
                    .any(|(bound, inode)| bound == address && held.contains(inode))
                {
                    return Ok(Started::PortTaken(format!(
                        "{address}:{} answers, but not from sshd (pid {}); its log ends:\n{log}",
                        self.port,
                        instance.child.id()
                    )));
                }
            }
        }
        Ok(Started::Ready)
    }

    /// The config of instance `index`, listening on `addresses`.
    fn sshd_config(&self, index: usize, addresses: &[Ipv4Addr]) -> anyhow::Result<String> {
        let mut config = String::from("# written by runbook-lab; see tests/lab/src/sshd.rs\n");
        for address in addresses {
            let _ = writeln!(config, "ListenAddress {address}:{}", self.port);
        }
        let host_key = config_path(&self.host_key())?;
        let pid_file = config_path(&self.path(&format!("sshd-{index}.pid")))?;
        let authorized = config_path(&self.path("authorized_keys"))?.replace('%', "%%");
        let marker = config_word(&format!("{}={}", SshLab::MARKER_VAR, self.dir.display()))?;
        let _ = write!(
            config,
            "\
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
MaxStartups 500:30:1000
MaxSessions 100
# Debian's bash skips ~/.bashrc for ssh commands when SHLVL >= 2 on start
# (DEPENDENCIES.md §8); the marker lets SshLab::stop find what was started here.
SetEnv SHLVL=1 {marker}
AcceptEnv *
Subsystem sftp internal-sftp
LogLevel VERBOSE
"
        );
        for slot in self.spare_slots() {
            if addresses.contains(&slot.address) {
                let keys = config_path(&slot.authorized_keys)?.replace('%', "%%");
                let _ = write!(
                    config,
                    "Match LocalAddress {}\n  AuthorizedKeysFile {keys}\n",
                    slot.address
                );
            }
        }
        Ok(config)
    }

    /// `known_hosts` and `ssh_config`, once the port is settled.
    fn write_client_files(&self) -> anyhow::Result<()> {
        let host_key_file = self.host_key().with_extension("pub");
        let public = std::fs::read_to_string(&host_key_file)
            .with_context(|| format!("cannot read `{}`", host_key_file.display()))?;
        let key: Vec<&str> = public.split_whitespace().take(2).collect();
        let [kind, blob] = key[..] else {
            bail!(
                "`{}` is not an ssh public key: {public}",
                host_key_file.display()
            );
        };
        let mut known_hosts = String::new();
        for address in self.listen_addresses() {
            let _ = writeln!(
                known_hosts,
                "{} {kind} {blob}",
                known_host(address, self.port)
            );
        }
        std::fs::write(self.known_hosts(), known_hosts)
            .with_context(|| format!("cannot write `{}`", self.known_hosts().display()))?;

        let mut config =
            String::from("# written by runbook-lab: ssh -F THIS_FILE 127.0.0.1 true (or host01)\n");
        for (name, address) in self.host_names().into_iter().zip(self.addresses()) {
            let _ = writeln!(config, "Host {name}\n  HostName {address}");
        }
        let identity = config_path(&self.client_key())?.replace('%', "%%");
        let known = config_path(&self.known_hosts())?.replace('%', "%%");
        let user = config_word(&self.user)?;
        let _ = write!(
            config,
            "\
Host *
  IdentityFile {identity}
  IdentitiesOnly yes
  UserKnownHostsFile {known}
  StrictHostKeyChecking yes
  UpdateHostKeys no
  BatchMode yes
  Port {port}
  User {user}
  LogLevel ERROR
",
            port = self.port,
        );
        std::fs::write(self.ssh_config(), config)
            .with_context(|| format!("cannot write `{}`", self.ssh_config().display()))
    }
}

impl Drop for SshLab {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How one start attempt ended (errors that a new port cannot fix are `Err`).
enum Started {
    Ready,
    /// Another program holds the port on one of the addresses: sshd's log.
    PortTaken(String),
}

/// `host01`..`hostNN`: two digits, or three for 100 hosts and more.
pub(crate) fn host_names(count: usize) -> Vec<String> {
    let width = if count >= 100 { 3 } else { 2 };
    (1..=count)
        .map(|index| format!("host{index:0width$}"))
        .collect()
}

/// The `known_hosts` name of `address:port` (`[addr]:port` unless port 22).
fn known_host(address: Ipv4Addr, port: u16) -> String {
    if port == 22 {
        address.to_string()
    } else {
        format!("[{address}]:{port}")
    }
}

/// A port free on every address right now (the kernel picks one on the
/// first address; the others are checked by binding it too).
fn free_port(addresses: &[Ipv4Addr]) -> anyhow::Result<u16> {
    let first = addresses.first().copied().unwrap_or(Ipv4Addr::LOCALHOST);
    let mut last_error = None;
    for _ in 0..PORT_ATTEMPTS * 4 {
        let listener = TcpListener::bind((first, 0))
            .with_context(|| format!("cannot bind a port on {first}"))?;
        let port = listener
            .local_addr()
            .with_context(|| format!("cannot read the port bound on {first}"))?
            .port();
        let others: Result<Vec<TcpListener>, _> = addresses
            .iter()
            .skip(1)
            .map(|address| TcpListener::bind((*address, port)).map_err(|error| (*address, error)))
            .collect();
        match others {
            Ok(_) => return Ok(port),
            Err((address, error)) => last_error = Some(format!("{address}:{port}: {error}")),
        }
    }
    bail!(
        "cannot find a port free on all of 127.0.0.1..{}: last try {}",
        addresses.last().copied().unwrap_or(first),
        last_error.unwrap_or_default()
    )
}

/// Whether an sshd log says one of its addresses was taken.
fn port_taken(log: &str) -> bool {
    log.contains("Bind to port") || log.contains("Cannot bind any address")
}

/// The last lines of a log file, for error messages.
fn log_tail(path: &Path) -> String {
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

fn check_output(what: &str, output: &Output) -> anyhow::Result<()> {
    if output.status.success() {
        return Ok(());
    }
    bail!(
        "`{what}` failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim(),
        String::from_utf8_lossy(&output.stdout).trim()
    )
}

/// A path as one word of an sshd/ssh config line (double-quoted).
fn config_path(path: &Path) -> anyhow::Result<String> {
    config_word(&path.display().to_string())
}

/// Text as one word of an sshd/ssh config line (double-quoted).
fn config_word(text: &str) -> anyhow::Result<String> {
    if text.contains(['"', '\\', '\n', '\r']) {
        bail!(
            "`{text}` cannot be written into an ssh config file (it has a quote, backslash or newline)"
        );
    }
    Ok(format!("\"{text}\""))
}

/// sshd must be run by absolute path (it re-executes itself).
fn find_sshd() -> anyhow::Result<PathBuf> {
    let fixed = ["/usr/sbin/sshd", "/usr/local/sbin/sshd"]
        .into_iter()
        .map(PathBuf::from);
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("sshd"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    fixed
        .chain(on_path)
        .find(|path| path.is_absolute() && path.is_file())
        .context("cannot find `sshd` (looked in /usr/sbin, /usr/local/sbin and PATH): install openssh-server")
}

/// `/run/sshd`, which sshd started as root insists on (DEPENDENCIES.md §8).
/// Other users' sshd does not use it, so failing to create it is only an
/// error for root.
fn privilege_separation_dir() -> anyhow::Result<()> {
    let dir = Path::new("/run/sshd");
    if dir.is_dir() {
        return Ok(());
    }
    match std::fs::create_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(_) if current_uid() != Some(0) => Ok(()),
        Err(error) => {
            Err(error).context("cannot create sshd's privilege separation directory `/run/sshd`")
        }
    }
}

/// The user running the lab: `$USER`, else the `/etc/passwd` entry of our uid.
fn current_user() -> anyhow::Result<String> {
    if let Some(user) = std::env::var("USER").ok().filter(|user| !user.is_empty()) {
        return Ok(user);
    }
    let uid = current_uid().context(
        "cannot tell which user runs the lab: $USER is unset and /proc/self/status has no Uid",
    )?;
    let passwd = std::fs::read_to_string("/etc/passwd")
        .context("cannot read `/etc/passwd` to find the user running the lab ($USER is unset)")?;
    passwd
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let entry_uid = fields.nth(1)?.parse::<u32>().ok()?;
            (entry_uid == uid && !name.is_empty()).then(|| name.to_owned())
        })
        .with_context(|| format!("$USER is unset and uid {uid} has no entry in `/etc/passwd`"))
}

/// Our real uid, from `/proc/self/status` (std has no getuid).
fn current_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `(address, socket inode)` of every IPv4 TCP socket listening on `port`,
/// from `/proc/net/tcp`; `None` where there is no such file to read.
fn listening_sockets(port: u16) -> Option<Vec<(Ipv4Addr, u64)>> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let sockets = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (address, bound_port) = fields.get(1)?.split_once(':')?;
            // 0A is TCP_LISTEN; the address is a u32 printed in host byte order.
            if *fields.get(3)? != "0A" || u16::from_str_radix(bound_port, 16).ok()? != port {
                return None;
            }
            let address = Ipv4Addr::from(u32::from_str_radix(address, 16).ok()?.to_ne_bytes());
            Some((address, fields.get(9)?.parse().ok()?))
        })
        .collect();
    Some(sockets)
}

/// The inodes of the sockets process `pid` holds open.
fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.filter_map(|fd| {
        let target = std::fs::read_link(fd.ok()?.path()).ok()?;
        let target = target.to_str()?;
        target
            .strip_prefix("socket:[")?
            .strip_suffix(']')?
            .parse()
            .ok()
    })
    .collect()
}

/// One process, from `/proc/PID/stat`.
#[derive(Debug, Clone)]
struct Proc {
    pid: u32,
    ppid: u32,
    comm: String,
    zombie: bool,
}

fn read_proc(pid: u32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `PID (COMM) STATE PPID ...`; COMM may itself hold spaces and parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(Proc {
        pid,
        ppid,
        comm,
        zombie: state == "Z" || state == "X",
    })
}

fn all_procs() -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read_proc)
        .collect()
}

/// Live processes below the listeners, plus live processes carrying the
/// lab's marker (services planted with `nohup … &` have left the tree).
fn started_through(listeners: &[u32], marker: &str) -> Vec<Proc> {
    let me = std::process::id();
    let procs: Vec<Proc> = all_procs()
        .into_iter()
        .filter(|proc| !proc.zombie && proc.pid != me && !listeners.contains(&proc.pid))
        .collect();
    let mut ours: Vec<u32> = listeners.to_vec();
    let mut grew = true;
    while grew {
        grew = false;
        for proc in &procs {
            if ours.contains(&proc.ppid) && !ours.contains(&proc.pid) {
                ours.push(proc.pid);
                grew = true;
            }
        }
    }
    procs
        .into_iter()
        .filter(|proc| ours.contains(&proc.pid) || has_marker(proc.pid, marker))
        .collect()
}

fn has_marker(pid: u32, marker: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
        environ
            .split(|byte| *byte == 0)
            .any(|variable| variable == marker.as_bytes())
    })
}

/// `kill -SIGNAL PIDS...` (std has no kill(2) for pids it did not spawn).
/// A process that is already gone is not an error.
fn signal(name: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .args(pids.iter().map(u32::to_string))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Wait until none of `pids` is alive (a zombie counts as gone: its parent
/// reaps it, or, orphaned, nobody can). False if some outlived `timeout`.
fn wait_gone(pids: &[u32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let alive = pids
            .iter()
            .any(|pid| read_proc(*pid).is_some_and(|proc| !proc.zombie));
        if !alive {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_have_two_digits_then_three_from_a_hundred() {
        assert_eq!(host_names(3), ["host01", "host02", "host03"]);
        assert_eq!(host_names(99).last().map(String::as_str), Some("host99"));
        let hundred = host_names(100);
        assert_eq!(hundred.first().map(String::as_str), Some("host001"));
        assert_eq!(hundred.last().map(String::as_str), Some("host100"));
    }

    #[test]
    fn known_hosts_names_carry_the_port() {
        assert_eq!(
            known_host(Ipv4Addr::new(127, 0, 0, 7), 2222),
            "[127.0.0.7]:2222"
        );
        assert_eq!(known_host(Ipv4Addr::new(127, 0, 0, 7), 22), "127.0.0.7");
    }

    #[test]
    fn host_counts_out_of_range_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for count in [0, SshLab::MAX_HOSTS + 1] {
            let error = SshLab::start(dir.path(), count).unwrap_err().to_string();
            assert!(error.contains("1 to 200 ssh hosts"), "{error}");
        }
        assert!(!dir.path().join("ssh").exists());
    }

    #[test]
    fn a_port_taken_on_one_address_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let mut lab = SshLab::start(dir.path(), 2).unwrap();
        lab.stop();
        assert!(lab.pids().is_empty());
        // Someone else holds 127.0.0.2 on the port sshd is about to use.
        let squatter = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 2), 0)).unwrap();
        lab.port = squatter.local_addr().unwrap().port();
        match lab.start_instances().unwrap() {
            Started::PortTaken(log) => {
                // From sshd's log, or from the socket table if sshd had not
                // logged yet.
                assert!(log.contains("127.0.0.2"), "{log}");
            }
            Started::Ready => panic!("the taken port went unnoticed"),
        }
        let pids = lab.pids();
        lab.stop();
        assert!(pids.iter().all(|pid| read_proc(*pid).is_none()));
    }

    #[test]
    fn the_socket_table_says_who_listens() {
        let address = Ipv4Addr::new(127, 0, 0, 3);
        let listener = TcpListener::bind((address, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let listening = listening_sockets(port).unwrap();
        let ours = socket_inodes(std::process::id());
        assert!(
            listening
                .iter()
                .any(|(bound, inode)| *bound == address && ours.contains(inode)),
            "{listening:?}"
        );
    }

    #[test]
    fn proc_stat_is_parsed() {
        let me = read_proc(std::process::id()).unwrap();
        assert!(me.ppid > 0);
        assert!(!me.zombie);
        assert!(!me.comm.is_empty());
    }

    #[test]
    fn the_current_user_is_known() {
        let user = current_user().unwrap();
        assert!(!user.is_empty());
    }

    #[test]
    fn config_words_are_quoted() {
        assert_eq!(config_path(Path::new("/tmp/a b")).unwrap(), "\"/tmp/a b\"");
        assert!(config_word("a\"b").is_err());
    }
}
