//! A fake of the Hetzner Cloud API that Hetzner's own clients accept (the
//! `hcloud` CLI and the `hcloud` Python library, `tests/hcloud.rs`): an
//! in-process HTTP server on 127.0.0.1 serving `/v1` with the documented
//! shapes (ANCHORS-WAVE2.md §1), actions that progress as they are polled,
//! servers that boot as lab ssh hosts, and faults a test can inject.
//!
//! No Hetzner project can be used from the lab's machines (tests only talk
//! to 127.0.0.0/8), so this stands in for one. It is started by
//! [`crate::LabBuilder::hcloud`].
//!
//! | module | what it does |
//! |---|---|
//! | `server` | HTTP, bearer token, `/v1`, rate-limit headers, request log, lost responses |
//! | `routes` | which handler serves which path; actions and catalogue reads |
//! | `project` | the project's state under one lock, IDs, label checks |
//! | `servers` | `/servers`: create, list, get, delete, status from actions |
//! | `actions` | the action object and how it progresses |
//! | `ssh_keys` | `/ssh_keys`, MD5 fingerprints, uniqueness |
//! | `firewalls` | `/firewalls`, rules, apply/remove, `resource_in_use` |
//! | `catalog` | locations, datacenters, server types, images |
//! | `boot` | loopback addresses and authorized keys of booted servers |
//! | `faults` | injectable faults |
//! | `rate` | the `RateLimit-*` budget |
//! | `paging` | `page`/`per_page`, `meta.pagination`, `Link` |
//! | `reply` | answers, list filters and sorting |
//! | `errors` | error bodies and the one table of HTTP statuses per code |

mod actions;
mod boot;
mod catalog;
mod errors;
mod faults;
mod firewalls;
mod paging;
mod project;
mod rate;
mod reply;
mod routes;
mod server;
mod servers;
mod ssh_keys;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;
use tokio::sync::oneshot;

pub use self::actions::Settings as ActionSettings;
pub use self::boot::HostSlot;
use self::boot::Hosts;
pub use self::faults::Fault;
use self::project::Project;
pub use self::project::{ActionRecord, Request as HcloudRequest};

/// The project shared by the HTTP handlers and the helpers on [`HcloudApi`].
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    project: Arc<Mutex<Project>>,
}

impl Shared {
    /// Lock the project. A panic in a handler (a bug) should not take the
    /// lab down with it, so poisoning is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Project> {
        self.project.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The running fake. Stopped (thread joined, connections closed) when dropped.
#[derive(Debug)]
pub struct HcloudApi {
    addr: SocketAddr,
    shared: Shared,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HcloudApi {
    /// The API token the fake accepts (64 characters, like a real one);
    /// any other, or none, gets 401 `unauthorized`.
    pub const TOKEN: &str = "labhcloudtoken0labhcloudtoken0labhcloudtoken0labhcloudtoken0ab12";

    /// Start serving on 127.0.0.1. `slots` are the addresses (served by the
    /// lab's sshd) that created servers get, in order.
    pub fn start(settings: ActionSettings, slots: Vec<HostSlot>) -> anyhow::Result<HcloudApi> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("cannot bind the lab Hetzner Cloud API to 127.0.0.1")?;
        listener
            .set_nonblocking(true)
            .context("cannot make the lab Hetzner Cloud API listener non-blocking")?;
        let addr = listener
            .local_addr()
            .context("cannot read the lab Hetzner Cloud API's address")?;
        let shared = Shared {
            project: Arc::new(Mutex::new(Project::new(settings, Hosts::new(slots)))),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot build the lab Hetzner Cloud API's tokio runtime")?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener)
                .context("cannot register the lab Hetzner Cloud API listener with tokio")?
        };
        let (shutdown, stop) = oneshot::channel();
        let context = server::Context {
            shared: shared.clone(),
            token: Arc::from(HcloudApi::TOKEN),
            addr,
        };
        let thread = std::thread::Builder::new()
            .name("runbook-lab-hcloud".into())
            .spawn(move || runtime.block_on(server::serve(listener, context, stop)))
            .context("cannot start the lab Hetzner Cloud API thread")?;
        Ok(HcloudApi {
            addr,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The address the server listens on (always 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`, what `HCLOUD_ENDPOINT` is set to.
    pub fn endpoint(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `HCLOUD_ENDPOINT` and `HCLOUD_TOKEN`, the variables the official CLI
    /// (and the lab contexts' `hcloud_token` secret) read.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("HCLOUD_ENDPOINT".to_owned(), self.endpoint()),
            ("HCLOUD_TOKEN".to_owned(), HcloudApi::TOKEN.to_owned()),
        ]
    }

    /// Every server as `GET /servers/{id}` shows it (deleting ones too), by ID.
    pub fn servers(&self) -> Vec<Value> {
        let project = self.shared.lock();
        project
            .servers
            .values()
            .map(|server| server.to_json(&project))
            .collect()
    }

    /// The server called `name`, as the API shows it.
    pub fn server(&self, name: &str) -> Option<Value> {
        self.servers()
            .into_iter()
            .find(|server| server["name"] == name)
    }

    /// Every ssh key, as the API shows them.
    pub fn ssh_keys(&self) -> Vec<Value> {
        self.shared.lock().ssh_keys.values().cloned().collect()
    }

    /// Every firewall's name and the IDs of the servers it applies to.
    pub fn firewalls(&self) -> Vec<(String, Vec<u64>)> {
        let project = self.shared.lock();
        project
            .firewalls
            .values()
            .map(|firewall| {
                let servers = project
                    .servers
                    .values()
                    .filter(|server| firewall.applies_to(server))
                    .map(|server| server.id)
                    .collect();
                (firewall.name.clone(), servers)
            })
            .collect()
    }

    /// Add a fault; see [`Fault`] for when each is consumed.
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.add(fault);
    }

    /// How actions progress from now on (actions already running included).
    pub fn set_action_settings(&self, settings: ActionSettings) {
        self.shared.lock().settings = settings;
    }

    /// Every request answered (or dropped) so far, in order.
    pub fn requests(&self) -> Vec<HcloudRequest> {
        self.shared.lock().log.clone()
    }

    /// How many requests were answered (or dropped) so far.
    pub fn request_count(&self) -> usize {
        self.shared.lock().log.len()
    }

    /// Every finished action: its command, status, polls and duration.
    pub fn actions(&self) -> Vec<ActionRecord> {
        self.shared.lock().action_records()
    }

    /// The time all finished actions ran, added up: what waiting on them cost.
    pub fn action_time(&self) -> Duration {
        self.actions().iter().map(|action| action.duration).sum()
    }

    /// Wait (at most `timeout`) until `condition` holds; false if it never did.
    pub fn wait_until(&self, timeout: Duration, condition: impl Fn(&HcloudApi) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if condition(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for HcloudApi {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // An error means the server loop already ended; nothing to stop.
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panicked server thread has nothing left to clean up.
            let _ = thread.join();
        }
    }
}
