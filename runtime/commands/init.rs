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

const RUNBOOK: &str = r#"//! Hello: a first runbook to copy from. It looks around, asks before it changes anything, writes a greeting, and takes it back if a later step fails.
//!
//! Try it: `runbook run --dry-run hello.rhai` (the plan), then
//! `runbook run hello.rhai --approve` (for real).
//! @param name default=world  who to greet
//! @param file default=hello.txt  the file to write (relative to the current folder)

let name = param("name");
let file = param("file");

// A read: it only observes, so it runs in dry-runs too.
let system = step("look around", || {
    let uname = shell::read("uname -sr").stdout;
    uname.trim();
    uname
});
log::info("running on " + system);

// A gate: a person says yes before anything changes (`--approve` in CI).
approve("Write a greeting for " + name + " to " + file + "?");

// A write: a dry-run lists it in the plan and does not run it.
step("write greeting", || {
    shell::run(["sh", "-c", "printf 'hello, %s\n' \"$1\" > \"$2\"", "sh", name, file]);
    // If a later step fails, the file goes away again.
    on_rollback(|| shell::run(["rm", "-f", file]));
});

step("check", || {
    if !dry_run() {
        let text = shell::read(["cat", file]).stdout;
        assert(text.contains(name), file + " says `" + text + "`");
    }
});
print("greeted " + name + " in " + file);
"#;

const GITIGNORE: &str = "\
# runbook state when RUNBOOK_STATE_DIR points here (journals, locks, the audit key)
/.runbook/
# plans saved with --plan-out
*.plan.json
# secret files named by `file:` sources in runbook.toml
/secrets/
# what hello.rhai writes
hello.txt
";

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
