//! `runbook init [DIR]`: a runbooks folder to start from. A runbook.toml
//! with a `local` context (and staging/production examples, commented out),
//! one runbook that passes `runbook check` and dry-runs anywhere, and a
//! `.gitignore`. Nothing is overwritten unless `--force`.

use std::path::Path;

use crate::error::{Diagnostic, Exit};

const TOML: &str = r#"# Contexts: where runbooks run. `runbook run FILE --context NAME`, or set
# RUNBOOK_CONTEXT. Secret values never live here: each secret names its
# source, `env:VAR` or `file:PATH` (relative to this file).

default_context = "local"

[context.local]
description = "this machine"
protected = false
[context.local.vars]
greeting = "hello"
[context.local.secrets]
# api_token = "env:API_TOKEN"

# [context.staging]
# description = "staging cluster and hosts"
# protected = false
# namespace = "staging"
# kube_context = "staging"
# [context.staging.hosts]
# app1 = "deploy@10.0.1.11:22"
# [context.staging.groups]
# app = ["app1"]
# [context.staging.http]
# health = "https://staging.example.com/health"
# [context.staging.secrets]
# slack_webhook = "env:SLACK_WEBHOOK"

# [context.production]
# description = "production: every gate needs a typed confirmation"
# protected = true
# four_eyes = true
# namespace = "production"
# kube_context = "production"
"#;

const RUNBOOK: &str = r#"//! Say hello: a first runbook to copy from.
//!
//! Reads run in a dry-run; writes (the file it creates) are only planned.
//! Try `runbook run --dry-run hello.rhai`, then `runbook run hello.rhai --approve`.
//! @param name default=world  who to greet

let name = param("name");
let kernel = shell::read("uname -sr").stdout;
kernel.trim();
log::info("running on " + kernel);

let file = step("write the greeting", || {
    let dir = shell::run("mktemp -d").stdout;
    dir.trim();
    let file = dir + "/greeting.txt";
    shell::run(["sh", "-c", "echo \"$1\" > \"$2\"", "sh", "hello, " + name, file]);
    // If a later step fails, this undoes the change.
    on_rollback(|| shell::run(["rm", "-rf", dir]));
    file
});

approve("Keep the greeting in " + file + "?");

step("show it", || {
    if !dry_run() {
        print(shell::read(["cat", file]).stdout);
    }
});
"#;

const GITIGNORE: &str = "# runbook: plans, fixtures recorded for local tries, run reports, and a state dir kept here\n\
plan.json\n\
*.plan.json\n\
run.html\n\
.runbook-state/\n";

/// The files `init` writes, relative to its folder.
const FILES: &[(&str, &str)] = &[
    ("runbook.toml", TOML),
    ("hello.rhai", RUNBOOK),
    (".gitignore", GITIGNORE),
];

pub fn init(dir: &Path, force: bool) -> Result<Exit, Diagnostic> {
    let existing: Vec<String> = FILES
        .iter()
        .map(|(name, _)| dir.join(name))
        .filter(|path| path.exists())
        .map(|path| path.display().to_string())
        .collect();
    if !existing.is_empty() && !force {
        return Err(Diagnostic::new(
            format!("not overwriting {}", existing.join(", ")),
            Exit::Usage,
        )
        .hint("pick another folder (`runbook init DIR`), or add --force to replace these files"));
    }
    std::fs::create_dir_all(dir).map_err(|error| {
        Diagnostic::new(
            format!("cannot create `{}`: {error}", dir.display()),
            Exit::Usage,
        )
    })?;
    for (name, text) in FILES {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|error| {
            Diagnostic::new(
                format!("cannot write `{}`: {error}", path.display()),
                Exit::Usage,
            )
        })?;
        eprintln!("wrote {}", path.display());
    }
    let shown = dir.display();
    eprintln!(
        "\nnext:\n  runbook check {shown}\n  runbook run --dry-run {shown}/hello.rhai\n  runbook run {shown}/hello.rhai --approve"
    );
    Ok(Exit::Ok)
}
