//! `runbook resume RUN`: continue a run from its journal (see `resume.rs`
//! for what is taken from it).

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Diagnostic, Exit};
use crate::event::{Kind, Mode};
use crate::journal::{self, Verdict};
use crate::printer::OutputFormat;
use crate::runner::{Resumed, RunOptions};
use crate::seal::RunKey;

/// Options for `runbook resume`.
#[derive(Debug, Clone, Default)]
pub struct ResumeOptions {
    pub run: String,
    pub force: bool,
    /// With `s3://...`: the context whose `[s3]` table reaches the store.
    pub context: Option<String>,
    pub approve: bool,
    pub confirm: Option<String>,
    pub wait_for_approval: Option<std::time::Duration>,
    pub output: OutputFormat,
    pub no_rollback: bool,
    pub verbose: bool,
}

pub fn resume(options: &ResumeOptions) -> Result<Exit, Diagnostic> {
    // A run of this state dir whose journal is also in S3 continues there.
    let marker = journal::runs_dir()
        .join(&options.run)
        .join(crate::journal_store::MARKER);
    let options = &match std::fs::read_to_string(marker) {
        Ok(url) if !crate::journal_store::Url::is_s3(&options.run) => ResumeOptions {
            run: url.trim().to_owned(),
            ..options.clone()
        },
        _ => options.clone(),
    };
    let (path, remote) = if crate::journal_store::Url::is_s3(&options.run) {
        let (path, remote) = take_over(options)?;
        (path, Some(remote))
    } else {
        (journal::locate(&options.run)?, None)
    };
    // A cut-off last line is what a kill leaves behind (reopening cuts it);
    // anything else is tampering.
    if let Verdict::Broken { line, problem } = journal::verify(&path)? {
        // Killed between creating the journal and writing its first line:
        // nothing ran (every call is journaled before it runs).
        if line == 1 && problem == "the journal is empty" {
            return Err(Diagnostic::new(
                format!(
                    "run {} stopped before its first journal line: nothing ran, the journal is empty",
                    options.run
                ),
                Exit::Usage,
            )
            .hint("start it again with `runbook run`"));
        }
        return Err(Diagnostic::new(
            format!("the journal fails verification at line {line}: {problem}"),
            Exit::Usage,
        )
        .hint("`runbook audit verify RUN` shows the problem; a journal that was edited cannot be resumed"));
    }
    let (original, state) = crate::resume::load(&path)?;
    if original.kind == Kind::Repl {
        return Err(Diagnostic::new(
            format!(
                "run {} is a REPL session; there is nothing to resume",
                original.run_id
            ),
            Exit::Usage,
        )
        .hint("`runbook show RUN` shows what was typed and done in it"));
    }
    if original.mode != Mode::Live {
        return Err(Diagnostic::new(
            format!(
                "run {} was a {}; there is nothing to resume",
                original.run_id,
                original.mode.name()
            ),
            Exit::Usage,
        ));
    }
    if original.finished_ok {
        return Err(Diagnostic::new(
            format!(
                "run {} finished successfully; there is nothing to resume",
                original.run_id
            ),
            Exit::Usage,
        ));
    }
    let file = PathBuf::from(&original.runbook);
    let source = std::fs::read(&file).map_err(|error| {
        Diagnostic::new(
            format!("cannot read the runbook `{}`: {error}", file.display()),
            Exit::Usage,
        )
        .hint(
            "resume from the folder the run was started in (the journal records the path as given)",
        )
    })?;
    if journal::sha256_hex(&source) != original.sha256 && !options.force {
        return Err(Diagnostic::new(
            format!(
                "`{}` changed since run {} started",
                file.display(),
                original.run_id
            ),
            Exit::Usage,
        )
        .hint("resuming a changed runbook may skip or repeat the wrong steps; pass --force if you are sure"));
    }
    let key = open_sealed(&original.run_id, &state)?;
    let run_options = RunOptions {
        file,
        params: original.params.clone(),
        context: original.context.clone(),
        approve: options.approve,
        confirm: options.confirm.clone(),
        wait_for_approval: options.wait_for_approval,
        output: options.output,
        no_rollback: options.no_rollback,
        verbose: options.verbose,
        ..RunOptions::default()
    };
    crate::runner::run_with(
        &run_options,
        Some(Resumed {
            run_id: original.run_id,
            journal: path,
            state,
            force: options.force,
            key,
            remote,
        }),
    )
}

type Remote = (
    crate::journal_store::Store,
    crate::journal_store::Lease,
    u64,
);

/// `runbook resume s3://BUCKET/PREFIX/RUN`: take the run's lease over (the
/// old holder is fenced at its next write), and copy its journal from S3
/// into this state dir (a local copy already there is kept aside as
/// `replaced/RUN.TIME` in the state dir: S3 is the run's journal now).
fn take_over(options: &ResumeOptions) -> Result<(PathBuf, Remote), Diagnostic> {
    use crate::journal_store::{self as store, Store, Url};
    store::require_shared_audit_key()?;
    let (url, run) = Url::parse_run(&options.run)?;
    let context = store::context_for(options.context.as_deref())?;
    let store = Store::open(url, &context)?;
    store.probe()?;
    // Before fencing anyone: the journal is there, and its sealed values
    // can be opened here (a resume that cannot finish must not stop a
    // holder that is alive).
    let before = store.download(&run)?;
    if before.is_empty() {
        return Err(Diagnostic::new(
            format!("no run at `{}`", store.url.run_url(&run)),
            Exit::Usage,
        )
        .hint(format!(
            "`runbook runs --journal {}` lists the runs there",
            store.url
        )));
    }
    let sealed = String::from_utf8_lossy(&before).contains("\"sealed\":\"");
    if sealed
        && RunKey::load(&run)
            .map_err(|error| Diagnostic::new(error.to_string(), Exit::Usage))?
            .is_none()
    {
        return Err(missing_key(&run));
    }
    let (lease, bytes, previous) = store.take_over(&run)?;
    let lines = bytes.iter().filter(|byte| **byte == b'\n').count() as u64;
    let dir = journal::runs_dir().join(&run);
    let io = |error: std::io::Error| {
        Diagnostic::new(
            format!(
                "cannot copy the journal of run {run} into `{}`: {error}",
                dir.display()
            ),
            Exit::Usage,
        )
        .hint("set RUNBOOK_STATE_DIR to a writable folder")
    };
    if dir.exists() {
        let replaced = journal::state_dir().join("replaced");
        let aside = replaced.join(format!(
            "{run}.{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
        ));
        std::fs::create_dir_all(&replaced)
            .and_then(|()| std::fs::rename(&dir, &aside))
            .map_err(io)?;
    }
    std::fs::create_dir_all(&dir).map_err(io)?;
    let path = dir.join("journal.jsonl");
    std::fs::write(&path, &bytes).map_err(io)?;
    eprintln!(
        "resume: took run {run} over from {previous} (now epoch {}); {lines} journal line(s) copied from {}",
        lease.body.epoch,
        store.url.run_url(&run)
    );
    Ok((path, (store, lease, lines)))
}

/// The run key is needed and not here.
fn missing_key(run_id: &str) -> Diagnostic {
    Diagnostic::new(
        format!(
            "the journal holds sealed values; the run key `{}` is missing",
            crate::seal::key_path(run_id).display()
        ),
        Exit::Usage,
    )
    .hint(format!(
        "resume on the machine and state dir the run started in, or set {} to the run's key (keep it in your secret store, never next to the journal); nothing was run",
        crate::seal::KEY_VAR
    ))
}

/// The run's key, and proof that it opens every sealed value the replay
/// needs, before anything runs.
fn open_sealed(
    run_id: &str,
    state: &crate::resume::ResumeState,
) -> Result<Option<Arc<RunKey>>, Diagnostic> {
    let key =
        RunKey::load(run_id).map_err(|error| Diagnostic::new(error.to_string(), Exit::Usage))?;
    if state.sealed == 0 {
        return Ok(key.map(Arc::new));
    }
    let Some(key) = key else {
        return Err(missing_key(run_id));
    };
    let scratch = runbook_stdlib::redact::Redactor::new();
    for blob in state.sealed_blobs() {
        let _ = key.open_value(run_id, blob, &scratch).map_err(|error| {
            Diagnostic::new(format!("the journal's sealed values cannot be used: {error}"), Exit::Usage)
                .hint("`runbook audit verify RUN` checks the journal; a journal whose sealed values were changed cannot be resumed; nothing was run")
        })?;
    }
    Ok(Some(Arc::new(key)))
}
