//! The runbook standard library: the functions runbooks call.
//!
//! Each module is a folder; [`MODULES`] is the single list of them, and
//! everything that needs to know the modules derives from it: the order of
//! `runbook doc`, the modules `check` knows, the keys a context in
//! runbook.toml may have, and what runs at the end of a run. Every function
//! is declared with [`function!`], which records its effect and doc comment;
//! [`install`] wraps each body in the gate that lets the [`host::Host`]
//! decide whether it runs.
//!
//! Adding a module: its folder, one entry in [`MODULES`], and the
//! regenerated docs/stdlib.md.

pub mod child;
pub mod duration;
pub mod function;
pub mod host;
pub mod redact;
pub mod settings;
pub mod unknown;
pub mod values;

mod builtins;
mod hcloud;
mod http;
mod json;
mod k8s;
mod log;
mod notify;
mod pg;
mod s3;
mod secrets;
mod shell;
mod ssh;
mod text;
mod yaml;

use std::future::Future;
use std::pin::Pin;

pub use function::{Call, Failure, Function, Options, Param, Text, install};
pub use host::{CallInfo, Decision, Effect, Host, Level, Outcome, Progress, Secret, StdlibError};
pub use ssh::masters as ssh_masters;
pub use text::error_chain;

/// Work a module does when a run ends.
pub type Finish = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One module of the standard library.
#[derive(Debug, Clone, Copy)]
pub struct Module {
    /// The name scripts call it by (`ssh::exec`); `""` for the built-ins.
    pub name: &'static str,
    /// Its functions, in the order `runbook doc` lists them.
    pub functions: fn() -> Vec<Function>,
    /// The keys of a `[context.NAME]` in runbook.toml that it reads.
    pub context_keys: &'static [&'static str],
    /// What it does when a run ends (close connections, release leases).
    pub finish: Option<fn() -> Finish>,
}

/// Every module, in the order `runbook doc` lists them.
pub const MODULES: &[Module] = &[
    Module {
        name: "",
        functions: builtins::functions,
        context_keys: &[],
        finish: None,
    },
    Module {
        name: "log",
        functions: log::functions,
        context_keys: &[],
        finish: None,
    },
    Module {
        name: "shell",
        functions: shell::functions,
        context_keys: &[],
        finish: None,
    },
    Module {
        name: "ssh",
        functions: ssh::functions,
        context_keys: &["hosts", "groups", "ssh"],
        finish: Some(|| Box::pin(ssh::close_connections())),
    },
    Module {
        name: "k8s",
        functions: k8s::functions,
        context_keys: &["namespace", "kube_context", "kubeconfig", "kube_timeout"],
        finish: Some(|| Box::pin(k8s::finish_run())),
    },
    Module {
        name: "hcloud",
        functions: hcloud::functions,
        context_keys: &["hcloud"],
        finish: None,
    },
    Module {
        name: "s3",
        functions: s3::functions,
        context_keys: &["s3"],
        finish: None,
    },
    Module {
        name: "pg",
        functions: pg::functions,
        context_keys: &["pg"],
        finish: None,
    },
    Module {
        name: "http",
        functions: http::functions,
        context_keys: &["http"],
        finish: None,
    },
    Module {
        name: "notify",
        functions: notify::functions,
        context_keys: &["notify"],
        finish: None,
    },
    Module {
        name: "secrets",
        functions: secrets::functions,
        context_keys: &[],
        finish: None,
    },
    Module {
        name: "json",
        functions: json::functions,
        context_keys: &[],
        finish: None,
    },
    Module {
        name: "yaml",
        functions: yaml::functions,
        context_keys: &[],
        finish: None,
    },
];

/// Keys of a context that the runtime itself reads, not a module.
pub const RUNTIME_CONTEXT_KEYS: &[&str] = &[
    "description",
    "four_eyes",
    "journal",
    "protected",
    "secrets",
    "unattended",
    "vars",
];

/// Every key a `[context.NAME]` may have: the runtime's, then each module's.
pub fn context_keys() -> Vec<&'static str> {
    RUNTIME_CONTEXT_KEYS
        .iter()
        .chain(MODULES.iter().flat_map(|module| module.context_keys))
        .copied()
        .collect()
}

/// The modules' names (without the built-ins), in doc order.
pub fn module_names() -> Vec<&'static str> {
    MODULES
        .iter()
        .map(|module| module.name)
        .filter(|name| !name.is_empty())
        .collect()
}

/// Where a module stands in doc order (unknown modules last).
pub fn module_order(name: &str) -> usize {
    MODULES
        .iter()
        .position(|module| module.name == name)
        .unwrap_or(usize::MAX)
}

/// End of a run: every module's end-of-run work (close ssh master
/// connections, release Kubernetes leases). The runtime calls this once,
/// after the last event.
pub async fn finish_run() {
    for module in MODULES {
        if let Some(finish) = module.finish {
            finish().await;
        }
    }
}

/// Every stdlib function. The runtime adds its own built-ins (`param`, `step`,
/// `approve`, ...) through the same [`Function`] type.
pub fn functions() -> Vec<Function> {
    MODULES
        .iter()
        .flat_map(|module| (module.functions)())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_sits_in_its_modules_entry() {
        for module in MODULES {
            for function in (module.functions)() {
                assert_eq!(
                    function.module,
                    module.name,
                    "{}",
                    function.qualified_name()
                );
            }
        }
        for function in functions() {
            let problems = function.spec_problems();
            assert!(problems.is_empty(), "{problems:?}");
        }
        let keys = context_keys();
        let mut unique = keys.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            keys.len(),
            "a context key is claimed twice: {keys:?}"
        );
    }
}
