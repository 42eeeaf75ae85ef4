//! The runbook standard library: the functions runbooks call.
//!
//! Each module is a folder; [`functions`] is the single list of them. Every
//! function is declared with [`function!`], which records its effect and doc
//! comment; [`function::install`] wraps each body in the gate that lets the
//! [`host::Host`] decide whether it runs.

pub mod duration;
pub mod function;
pub mod host;
pub mod redact;
pub mod values;

mod builtins;
mod data;
mod http;
mod k8s;
mod log;
mod notify;
mod pg;
mod s3;
mod secrets;
mod shell;
mod ssh;

pub use function::{Call, Failure, Function, Options, Text, install};
pub use host::{CallInfo, Decision, Effect, Host, Level, Outcome, Progress, Secret, StdlibError};
pub use ssh::masters as ssh_masters;

/// The modules of the standard library, in the order `runbook doc` lists them.
pub const MODULES: &[&str] = &[
    "", "log", "shell", "ssh", "k8s", "s3", "pg", "http", "notify", "secrets", "json", "yaml",
];

/// End of a run: close ssh master connections, release Kubernetes leases.
/// The runtime calls this once, after the last event.
pub async fn finish_run() {
    ssh::close_connections().await;
    k8s::finish_run().await;
}

/// Every stdlib function. The runtime adds its own built-ins (`param`, `step`,
/// `approve`, ...) through the same [`Function`] type.
pub fn functions() -> Vec<Function> {
    [
        builtins::functions(),
        log::functions(),
        shell::functions(),
        ssh::functions(),
        k8s::functions(),
        s3::functions(),
        pg::functions(),
        http::functions(),
        notify::functions(),
        secrets::functions(),
        data::functions(),
    ]
    .concat()
}
