//! The command line: clap definitions, help texts and exit codes. It only
//! parses and dispatches: every subcommand's body is in `commands/`, and
//! [`report`] is the one place a command's error is shown.

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::error::{Diagnostic, Exit};
use crate::printer::OutputFormat;
use crate::runner::RunOptions;

#[derive(Debug, Parser)]
#[command(
    name = "runbook",
    version,
    about = "Run operations runbooks written in Rhai: plans before changes, approval gates, an audit trail.",
    after_help = MAIN_AFTER,
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

const MAIN_AFTER: &str = "Examples:
  runbook run runbooks/deploy-production.rhai version=v1.4.2 --context production
  runbook run --dry-run runbooks/backup-db.rhai --context staging
  runbook check runbooks/
  runbook doc shell::run
  runbook repl --context production
  runbook gates                       gates waiting for `runbook approve` / `runbook reject`

Exit codes:
  0    ok (for --dry-run: the plan was produced)
  1    a step failed (rollbacks ran)
  2    usage or script error: bad arguments, syntax, unknown function, missing param
  3    an approval gate was rejected or expired, or could not be asked without --approve
  4    locked: another run holds the lock
  130  interrupted by Ctrl-C (rollbacks ran)
  143  stopped by SIGTERM (as Ctrl-C: rollbacks ran, journal flushed)
  129  stopped by SIGHUP (the terminal went away; as Ctrl-C)

Locks: a live run locks its runbook (by canonical path: symlinks and `..` resolved) and context
in the state dir, so a second run with the same state dir exits 4. The lock is per state dir:
other people and machines do not see it. `k8s::lock(name, ttl)` in the runbook is the lock
across people (a Kubernetes Lease).

Environment:
  RUNBOOK_CONTEXT   context when --context is not given
  RUNBOOK_CONFIG    path of runbook.toml (default: searched upward from the runbook, then the cwd)
  RUNBOOK_APPROVER  identity recorded for approvals (default: $USER@host)
  RUNBOOK_STATE_DIR journals, locks, the audit key and REPL history (default: $XDG_STATE_HOME/runbook or ~/.local/state/runbook)
  RUNBOOK_AUDIT_KEY the key of the journals' keyed hash chain (default: <state dir>/audit.key, mode 0600)
  XDG_RUNTIME_DIR   ssh master sockets go to $XDG_RUNTIME_DIR/runbook/ssh (else $RUNBOOK_STATE_DIR/ssh)
  CI                when set, gates never prompt: they need --approve
  NO_COLOR          disable colors";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a runbook (or, with --dry-run, show the plan of what it would change).
    #[command(after_help = RUN_AFTER)]
    Run(RunArgs),
    /// Check runbooks without running them: syntax, unknown functions, arity, undeclared params.
    #[command(
        after_help = "Examples:\n  runbook check runbooks/\n  runbook check runbooks/deploy-production.rhai examples/hello.rhai\n\nExit code 2 when any file has a problem."
    )]
    Check {
        /// Runbook files or folders (every *.rhai inside).
        #[arg(required = true, value_name = "FILE|DIR")]
        paths: Vec<PathBuf>,
        /// Fail (exit 2) on warnings too, for CI.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Show the standard library reference, generated from the code.
    #[command(
        after_help = "Examples:\n  runbook doc              every function, one line each\n  runbook doc shell        one module in full\n  runbook doc step         one function\n  runbook doc --markdown --out docs/stdlib.md"
    )]
    Doc {
        /// A module (`shell`, `http`, `built-ins`) or a function (`shell::run`, `step`).
        topic: Option<String>,
        /// Print the whole reference as Markdown.
        #[arg(long)]
        markdown: bool,
        /// With --markdown: write to this file instead of stdout.
        #[arg(long, requires = "markdown", value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Start a runbooks folder: runbook.toml with a `local` context, a first runbook, a .gitignore.
    #[command(
        after_help = "Refuses (exit 2) to overwrite any of its files unless --force.\n\nExamples:\n  runbook init\n  runbook init ops/runbooks\n  runbook check runbooks && runbook run --dry-run runbooks/hello.rhai"
    )]
    Init {
        /// The folder to create (default: ./runbooks).
        #[arg(default_value = "runbooks")]
        dir: PathBuf,
        /// Replace files that are already there.
        #[arg(long)]
        force: bool,
    },
    /// Print a shell completion script: subcommands, flags, runbook files, contexts, run ids.
    #[command(
        after_help = "Examples:\n  source <(runbook completions bash)                     # this shell\n  runbook completions bash > /etc/bash_completion.d/runbook\n  runbook completions zsh > \"${fpath[1]}/_runbook\"\n  runbook completions fish > ~/.config/fish/completions/runbook.fish\n\nBash and fish also complete context names (from runbook.toml) and run ids (from the state dir)."
    )]
    Completions {
        /// bash, zsh, fish, powershell or elvish.
        shell: clap_complete::Shell,
    },
    /// Print the man page (or write one per subcommand with --out DIR).
    #[command(after_help = "Examples:\n  runbook man | man -l -\n  runbook man --out docs/man")]
    Man {
        /// Write runbook.1 and runbook-SUBCOMMAND.1 pages into this folder.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Values for the completion scripts (`contexts`, `runs`), one per line.
    #[command(name = "__complete", hide = true)]
    Complete { what: String },
    /// Fixtures for offline dry-runs: `record` writes every read of an online dry-run.
    #[command(subcommand)]
    Fixtures(FixturesCommand),
    /// List runbooks with their description and params (from their `//!` header).
    #[command(after_help = "Examples:\n  runbook list\n  runbook list runbooks/")]
    List {
        /// Folder to list (default: ./runbooks if it exists, else the current folder).
        dir: Option<PathBuf>,
    },
    /// Recent runs recorded in the state dir: id, status, context, who, when, runbook.
    #[command(
        after_help = "Runs of runbooks and REPL sessions (kind `repl`) alike; dry-runs only with --all or --dry-run.\n\nExamples:\n  runbook runs\n  runbook runs --runbook deploy --status failed\n  runbook runs --all --since 1d\n  runbook runs --kind repl --context production --since 12h\n  runbook runs --status failed --since 2026-12-01\n\nJournals live in $RUNBOOK_STATE_DIR/runs/RUN/journal.jsonl (default: $XDG_STATE_HOME/runbook, else ~/.local/state/runbook)."
    )]
    Runs {
        /// How many to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only runs of runbooks (`run`) or REPL sessions (`repl`).
        #[arg(long, value_enum)]
        kind: Option<crate::event::Kind>,
        /// Only runs in this context.
        #[arg(long, value_name = "NAME")]
        context: Option<String>,
        /// Only runs started since: a duration back from now (`2h`, `7d`) or a UTC date/time (`2026-12-01`, `2026-12-01T08:00`).
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Only runs that ended so: ok, failed, error, refused, locked, interrupted, incomplete.
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
        /// List the runs of an S3 journal location (s3://BUCKET/PREFIX) instead of the state dir.
        #[arg(long, value_name = "S3_URL")]
        journal: Option<String>,
        /// Only runs of runbooks whose path contains this text (`deploy`, `runbooks/backup-db.rhai`).
        #[arg(long, value_name = "TEXT")]
        runbook: Option<String>,
        /// Live runs only: the default, said explicitly.
        #[arg(long, conflicts_with_all = ["dry_run", "all"])]
        no_dry_run: bool,
        /// Dry-runs only.
        #[arg(long, conflicts_with = "all")]
        dry_run: bool,
        /// Live runs and dry-runs.
        #[arg(long)]
        all: bool,
    },
    /// Show a run's journal for people (or raw with --output json).
    #[command(
        after_help = "Examples:\n  runbook show 20261122T013751Z-5359\n  runbook show 20261122T013751Z-5359 --output json | jq .\n  runbook show 20261122T013751Z-5359 --html > run.html"
    )]
    Show {
        /// Run id (from `runbook runs`) or a journal file.
        run: String,
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        output: OutputFormat,
        /// A self-contained HTML report on stdout: header, a timeline per step and
        /// host, gates, the plan with diffs, rollbacks, errors (`> run.html`).
        #[arg(long, conflicts_with = "output")]
        html: bool,
    },
    /// Finish a run that died or failed, by replay: completed steps run again with
    /// every call answered from the journal (so their compensations come back);
    /// the step the run died in runs again from its start.
    #[command(
        after_help = "Replay: the script runs from the top; up to where the run stopped, each stdlib call returns\nwhat the journal recorded instead of running, so completed steps return the same values and\nregister the same on_rollback compensations: a failure after the resume rolls back the whole\nrun, each compensation once. A call that does not match the journal stops with \"the runbook\ndiverged from its journal at FILE:LINE\" (exit 2, nothing rolled back).\n\nSteps must be safe to run again (like Ansible tasks): the step that was running when the\nrun died runs again, unless it is marked `once: true` (then: asked at a terminal, else exit 2).\nGates after that point are asked again. Values holding a secret come back from their sealed\ncopies: the run's key ($RUNBOOK_STATE_DIR/keys/RUN.key, or RUNBOOK_JOURNAL_KEY) must be there.\nRefuses when the runbook file changed since the run started, unless --force.\n\nFrom S3 (another machine): `runbook resume s3://BUCKET/PREFIX/RUN` takes the run over (the\nmachine that held it stops at its next journal write, exit 4), copies the journal into this\nstate dir, replays and finishes; the S3 endpoint and credentials come from --context (default:\nthe runbook.toml default context). Needs RUNBOOK_AUDIT_KEY, and RUNBOOK_JOURNAL_KEY when the\njournal holds sealed values.\n\nExamples:\n  runbook resume 20261122T013751Z-5359 --approve\n  runbook resume s3://ops-journals/runbook/20261122T013751Z-5359 --context production --approve"
    )]
    Resume {
        /// Run id (from `runbook runs`), a journal file, or s3://BUCKET/PREFIX/RUN.
        run: String,
        /// Resume even though the runbook changed since the run started.
        #[arg(long)]
        force: bool,
        /// With s3://...: the context whose [s3] table reaches the store.
        #[arg(long, env = "RUNBOOK_CONTEXT")]
        context: Option<String>,
        #[command(flatten)]
        execution: Execution,
    },
    /// Gates that runs started with --wait-for-approval are waiting at: run,
    /// since when, expiry, who started it, context, the gate's message.
    #[command(after_help = GATES_AFTER)]
    Gates {
        /// List the gates waiting in an S3 journal location (s3://BUCKET/PREFIX), from any machine.
        #[arg(long, value_name = "S3_URL")]
        journal: Option<String>,
    },
    /// Approve the gate a run waits at (started with --wait-for-approval); the
    /// run goes on within a second.
    #[command(after_help = APPROVE_AFTER)]
    Approve {
        /// With --journal s3://BUCKET/PREFIX (or as s3://BUCKET/PREFIX/RUN): answer through S3, from any machine.
        #[arg(long, value_name = "S3_URL")]
        journal: Option<String>,
        /// Run id (from `runbook gates`).
        run: String,
        /// A comment for the journal.
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
        /// For a protected context: its name, typed out (or the text the gate's
        /// own `confirm` asks for).
        #[arg(long, value_name = "TEXT")]
        confirm: Option<String>,
    },
    /// Reject the gate a run waits at (started with --wait-for-approval); the
    /// run rolls back and exits 3.
    #[command(after_help = REJECT_AFTER)]
    Reject {
        /// With --journal s3://BUCKET/PREFIX (or as s3://BUCKET/PREFIX/RUN): answer through S3, from any machine.
        #[arg(long, value_name = "S3_URL")]
        journal: Option<String>,
        /// Run id (from `runbook gates`).
        run: String,
        /// Why, for the journal (required).
        #[arg(long, value_name = "TEXT", required = true)]
        reason: String,
    },
    /// Print (or --apply) a Kubernetes CronJob that runs a runbook on a schedule, with its
    /// runbook and runbook.toml in a ConfigMap and its journal in S3.
    #[command(after_help = SCHEDULE_AFTER)]
    Schedule {
        #[command(flatten)]
        workload: Workload,
        /// The schedule, five cron fields ("0 2 * * *"), in the cluster's time zone.
        #[arg(long)]
        cron: String,
        /// Seconds a missed start may still happen.
        #[arg(long, default_value_t = 300, value_name = "SECONDS")]
        starting_deadline: u64,
    },
    /// Print (or --apply) a one-off Kubernetes Job that runs a runbook (as `schedule`, without the schedule).
    #[command(after_help = SCHEDULE_AFTER)]
    Job {
        #[command(flatten)]
        workload: Workload,
    },
    /// Audit trail checks: `audit verify RUN` checks a journal's keyed hash chain.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The ssh master connections runs leave running: list them, end them.
    #[command(subcommand, after_help = SSH_AFTER)]
    Ssh(SshCommand),
    /// An interactive shell with the standard library loaded.
    #[command(
        after_help = "Inside: `:help`, `:help NAME`, `:context`, `:vars`, `:quit`.\nInput with open brackets continues on the next line. History: $XDG_STATE_HOME/runbook/history.\n\nExample:\n  runbook repl --context production"
    )]
    Repl {
        /// Context from runbook.toml.
        #[arg(long, env = "RUNBOOK_CONTEXT")]
        context: Option<String>,
    },
}

const SSH_AFTER: &str = "\
A run keeps one ssh master connection per host. It outlives the run by the context's idle time,
`[context.NAME.ssh] persist = \"60s\"` (the default; \"0\" closes them at the end of each run, and a
protected context follows the same rule), so the next run or REPL session to the same host, with
the same user, port, identity, known_hosts and config, skips the key exchange. A master that ended
is dialled again. The sockets live in $XDG_RUNTIME_DIR/runbook/ssh, else $RUNBOOK_STATE_DIR/ssh: a
folder that must be yours alone (mode 0700), or runbook refuses it.

If your ssh_config gives a host a ControlPath and a master is running there, runbook uses your
master instead of starting its own, and never ends it (it is not listed here).

Examples:
  runbook ssh status
  runbook ssh close web1
  runbook ssh close --all";

#[derive(Debug, Subcommand)]
enum SshCommand {
    /// List live master connections: host, destination, age, idle time left.
    Status,
    /// End master connections now.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["host", "all"])))]
    Close {
        /// A host: inventory name, `user@address:port` or address.
        host: Option<String>,
        /// End every one.
        #[arg(long)]
        all: bool,
    },
}

const GATES_AFTER: &str = "\
A run without a terminal that is started with --wait-for-approval DURATION waits at a gate it
cannot pass otherwise (no --approve, a protected context without --confirm, a four-eyes context)
instead of failing. It writes $RUNBOOK_STATE_DIR/runs/RUN/gate.json, which this command lists;
answer it with `runbook approve RUN` or `runbook reject RUN --reason TEXT` from any shell that
uses the same state dir. A run whose process died is noted, not listed.

Example:
  runbook run runbooks/deploy-production.rhai version=v2 --context production --wait-for-approval 30m &
  runbook gates
  runbook approve 20261122T013751Z-5359 --confirm production --comment \"checked the diff\"";

const APPROVE_AFTER: &str = "\
The approver is $RUNBOOK_APPROVER, else $USER@host: what the environment says, not authenticated.
In a context with `four_eyes = true` the person who started the run cannot approve it. A
protected context needs its name typed out with --confirm.

Examples:
  runbook approve 20261122T013751Z-5359
  runbook approve 20261122T013751Z-5359 --confirm production --comment \"diff checked with alice\"

Exit codes:
  0  approved: the run goes on (it takes the decision up within a second)
  2  no such run, or it is not waiting at a gate (it ended, died, or was not started with
     --wait-for-approval): nothing was recorded; `runbook gates` lists the waiting ones
  3  refused: four eyes (you started the run) or --confirm missing/wrong; the gate still waits
  4  too late: the gate was already decided (another approver, a rejection, or its expiry came
     first). Like a lock someone else holds: your answer changed nothing, and the message says
     whose decision counts. (Exit 2 means you named the wrong thing; 4 means you lost a race.)";

const REJECT_AFTER: &str = "\
The run rolls back (its compensations run, newest first) and exits 3; the journal records who
rejected and why. Anyone may reject, also the person who started the run.

Example:
  runbook reject 20261122T013751Z-5359 --reason \"wrong version: v2 is not signed\"

Exit codes: 0 rejected, 2 no such run or not waiting at a gate, 4 already decided (or expired).";

#[derive(Debug, Subcommand)]
enum FixturesCommand {
    /// Run an online dry-run (reads run, writes only planned) and print every
    /// read it made, with its result, as a fixtures file (YAML) on stdout. An
    /// offline dry-run with that file (`--dry-run --offline --fixtures FILE`)
    /// answers each read the same way and so shows the same plan, in CI,
    /// without reaching any server.
    #[command(
        after_help = "Keys are the calls as the plan shows them; values are what they returned (JSON, which is YAML).
A read made more than once keeps its last result. A read whose result holds a secret is not
recorded (a comment names it); offline it returns a secret placeholder. Progress and errors go
to stderr; the exit code is the dry-run's.

Examples:
  runbook fixtures record runbooks/deploy-production.rhai version=v1.4.2 --context lab > runbooks/fixtures/deploy-production.yaml
  runbook run --dry-run --offline --fixtures runbooks/fixtures/deploy-production.yaml runbooks/deploy-production.rhai version=v1.4.2 --context lab"
    )]
    Record {
        /// The runbook (.rhai).
        file: PathBuf,
        /// Params as name=value.
        #[arg(value_name = "NAME=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// Context from runbook.toml whose servers the dry-run reads.
        #[arg(long, env = "RUNBOOK_CONTEXT")]
        context: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check a journal's keyed hash chain (HMAC-SHA256 under the audit key)
    /// and its end witnesses: exits 1 and names the first line that was
    /// edited, removed, reordered, appended or written without the key, and
    /// exits 1 when the journal has no end record (unless --allow-incomplete).
    #[command(
        after_help = "The audit key is $RUNBOOK_AUDIT_KEY, else <state dir>/audit.key (mode 0600, created by the \
first run). Whoever can read the key can forge journals: keep it where the journal's writers cannot \
read it when that matters.\n\nExit codes: 0 intact, 1 broken or incomplete, 2 no such run or no key.\n\n\
Examples:\n  runbook audit verify 20261122T013751Z-5359\n  runbook audit verify --allow-incomplete 20261122T013751Z-5359\n  runbook audit verify /backup/journals/run.jsonl"
    )]
    Verify {
        /// Run id or journal file.
        run: String,
        /// Accept a journal without an end record (a run still going, or killed).
        #[arg(long)]
        allow_incomplete: bool,
    },
}

const RUN_AFTER: &str = "\
Params are given as name=value after the file (or with --param); each must be declared in the
runbook's header (`//! @param version required  image tag`).

Examples:
  runbook run examples/hello.rhai --approve
  runbook run runbooks/deploy-production.rhai version=v1.4.2 --context production
  runbook run runbooks/deploy-production.rhai version=v1.4.2 --context production --approve --confirm production
  runbook run --dry-run runbooks/backup-db.rhai --context staging
  runbook run --dry-run --offline --fixtures ci/fixtures.yaml runbooks/backup-db.rhai
  runbook run runbooks/backup-db.rhai --output json | jq .
  runbook run --dry-run runbooks/rollback.rhai --context lab --plan-out plan.json
  runbook run runbooks/rollback.rhai --context lab --approve --expect-plan plan.json

Modes:
  live               reads and writes run; writes are journaled
  --dry-run          reads run, writes are listed in a numbered plan and not run
  --dry-run --offline  reads return --fixtures values or typed placeholders: touches nothing

Fixtures (--fixtures FILE): a YAML map from a read to the value it returns. A key is the call
as the plan and log show it, or just the function for every call of it; a map value may give
only the fields that matter (the rest keep their placeholder). The exact call wins:
  'k8s::get(\"configmap\", \"runbook-deploy-backend\")': {data: {previous: \"registry/backend:v1\"}}
  k8s::image: \"registry/backend:v1\"
  http::get: {status: 200, body: \"ok\"}
A read without a fixture returns a placeholder of its type: a string names the read
(`<k8s::image(\"backend\")>`), a map of no fixed shape is an `unknown` whose every property is
an unknown too (`<k8s::get(\"deployment\", \"backend\").spec.replicas>`; `+` keeps the name,
loops over it run zero times, comparisons are false, `is_unknown(x)` tells), numbers are 0,
lists empty. A planned change that uses one is marked \"unknown until run\".
`runbook fixtures record RUNBOOK [params] --context C > FILE` writes one from an online dry-run
(every read and what it returned), so the offline plan matches the online one.
Shipped runbooks keep theirs in runbooks/fixtures/NAME.yaml.

Gates without a terminal: --approve passes them; --wait-for-approval 30m waits for
`runbook approve RUN` / `runbook reject RUN --reason TEXT` from another shell (see `runbook gates`);
on expiry the gate is rejected (exit 3) and the journal says `expired`. Ctrl-C while waiting
stops the run like a rejection (rollbacks run, exit 130).

Exit codes: 0 ok, 1 step failed, 2 usage/script error, 3 approval refused, 4 locked, 130 interrupted (143 SIGTERM, 129 SIGHUP).";

const SCHEDULE_AFTER: &str = "\
The manifests: a ConfigMap NAME-runbook (the runbook and the runbook.toml of its context), and a
CronJob (concurrencyPolicy Forbid, startingDeadlineSeconds) or a Job: backoffLimit 0 by default
(a failed run is resumed, not re-run), activeDeadlineSeconds, ttlSecondsAfterFinished, pod
restartPolicy Never, a non-root user, the journal in S3 (--journal or the context's `journal`;
required). Secrets come as env from one Secret (--secret, default runbook-CONTEXT): the context's
env: secrets (file: secrets become env:RUNBOOK_SECRET_NAME in the ConfigMap's runbook.toml),
RUNBOOK_AUDIT_KEY and (optional) RUNBOOK_JOURNAL_KEY; create it yourself (the manifest's first
comment lists the keys).
--approve is passed only when the runbook has no gate or the context says `unattended = true`;
a gated runbook in another context is refused (exit 3). --apply pipes them to `kubectl apply`
(with the context's kubeconfig and kube_context).

Examples:
  runbook schedule runbooks/backup-db.rhai --cron \"0 2 * * *\" --context production
  runbook job runbooks/backup-db.rhai --context production --apply";

/// What `schedule` and `job` share.
#[derive(Debug, Args)]
struct Workload {
    /// The runbook (.rhai).
    file: PathBuf,
    /// Params as name=value.
    #[arg(value_name = "NAME=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Context from runbook.toml.
    #[arg(long, env = "RUNBOOK_CONTEXT")]
    context: Option<String>,
    /// The S3 journal (s3://BUCKET/PREFIX); default: the context's `journal`.
    #[arg(long, value_name = "S3_URL")]
    journal: Option<String>,
    /// Name of the CronJob/Job (default: from the file name).
    #[arg(long)]
    name: Option<String>,
    /// Namespace (default: the context's `namespace`, else default).
    #[arg(long)]
    namespace: Option<String>,
    /// The runbook image (see the Containerfile).
    #[arg(long, default_value = crate::commands::schedule::IMAGE)]
    image: String,
    /// The Secret the pod's env comes from (default: runbook-CONTEXT).
    #[arg(long)]
    secret: Option<String>,
    /// activeDeadlineSeconds of each Job.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    deadline: u64,
    /// ttlSecondsAfterFinished of each Job.
    #[arg(long, default_value_t = 86400, value_name = "SECONDS")]
    ttl: u64,
    /// backoffLimit of each Job.
    #[arg(long, default_value_t = 0)]
    backoff_limit: u32,
    /// Apply with kubectl instead of printing.
    #[arg(long)]
    apply: bool,
}

impl Workload {
    fn options(
        self,
        cron: Option<String>,
        starting_deadline: u64,
    ) -> crate::commands::schedule::ScheduleOptions {
        crate::commands::schedule::ScheduleOptions {
            file: self.file,
            params: self.params,
            context: self.context,
            cron,
            journal: self.journal,
            name: self.name,
            namespace: self.namespace,
            image: self.image,
            secret: self.secret,
            starting_deadline,
            deadline: self.deadline,
            ttl: self.ttl,
            backoff_limit: self.backoff_limit,
            apply: self.apply,
        }
    }
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The runbook (.rhai).
    file: PathBuf,
    /// Params as name=value.
    #[arg(value_name = "NAME=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// A param as name=value (same as giving it after the file).
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    param: Vec<(String, String)>,
    /// Context from runbook.toml (kube context, hosts, secrets...).
    #[arg(long, env = "RUNBOOK_CONTEXT")]
    context: Option<String>,
    /// Run reads, record writes in a plan, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: touch nothing at all; reads return fixtures or placeholders.
    #[arg(long, requires = "dry_run")]
    offline: bool,
    /// With --dry-run --offline: YAML map of call → value.
    #[arg(long, requires = "offline", value_name = "FILE")]
    fixtures: Option<PathBuf>,
    /// With --dry-run: write the plan (runbook sha256, params, context, changes with their diff, gates) as JSON.
    #[arg(long, requires = "dry_run", value_name = "FILE")]
    plan_out: Option<PathBuf>,
    /// Run live, but stop (exit 2) before the first write that is not the next change of this saved plan.
    #[arg(long, conflicts_with = "dry_run", value_name = "FILE")]
    expect_plan: Option<PathBuf>,
    /// Also write the journal to S3 (s3://BUCKET/PREFIX; endpoint and credentials from the context), so another machine can resume or approve the run. Default: the context's `journal`.
    #[arg(long, value_name = "S3_URL")]
    journal: Option<String>,
    #[command(flatten)]
    execution: Execution,
}

/// How gates are answered and what is shown: shared by `run` and `resume`.
#[derive(Debug, Args)]
struct Execution {
    /// Approve every gate in advance (needed without a terminal, e.g. in CI).
    #[arg(long)]
    approve: bool,
    /// With --approve on a protected context: the context's name, typed out.
    #[arg(long, value_name = "CONTEXT", requires = "approve")]
    confirm: Option<String>,
    /// Without a terminal, a gate nothing else approves waits this long (e.g.
    /// 30m) for `runbook approve RUN` / `runbook reject RUN` from another
    /// shell instead of failing; then it expires (exit 3).
    #[arg(long, value_name = "DURATION", value_parser = parse_wait)]
    wait_for_approval: Option<std::time::Duration>,
    /// Output for people (default) or JSON events on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    output: OutputFormat,
    /// Do not run compensations when the run fails (they are journaled as skipped).
    #[arg(long)]
    no_rollback: bool,
    /// Show every call and debug logs.
    #[arg(long, short)]
    verbose: bool,
}

fn parse_wait(text: &str) -> Result<std::time::Duration, String> {
    match runbook_stdlib::duration::parse(text)? {
        std::time::Duration::ZERO => Err("must be longer than 0 (e.g. 30m)".to_owned()),
        duration => Ok(duration),
    }
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not NAME=VALUE")),
    }
}

/// Parse arguments and run; returns the process exit code.
pub fn main() -> i32 {
    let parsed = Cli::command()
        .long_about(long_about())
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            if !error.use_stderr() {
                return Exit::Ok.code();
            }
            if json_requested() {
                let text = error.render().to_string();
                let message = text
                    .lines()
                    .find(|line| !line.trim().is_empty())
                    .unwrap_or_default()
                    .trim_start_matches("error: ")
                    .to_owned();
                error_event(&Diagnostic::new(message, Exit::Usage));
            }
            return Exit::Usage.code();
        }
    };
    match dispatch(cli.command) {
        Ok(exit) => exit.code(),
        Err(diagnostic) => report(&diagnostic),
    }
}

/// `runbook --help`'s description; the module list comes from the registry.
fn long_about() -> String {
    format!(
        "Run operations runbooks written in Rhai.\n\n\
         Runbooks call a standard library ({}) whose every function is declared local, read or \
         write. `--dry-run` runs the reads and lists the writes as a numbered plan without running \
         them; approval gates stop for a person; secrets print as ***.",
        runbook_stdlib::module_names().join(", ")
    )
}

/// The one place a command's error is shown; returns its exit code. With
/// `--output json` it is also one `error` event on stdout.
pub fn report(diagnostic: &Diagnostic) -> i32 {
    eprintln!("{}", diagnostic.render());
    if json_requested() {
        error_event(diagnostic);
    }
    diagnostic.exit.code()
}

/// Whether the command line asks for `--output json` (looked at directly,
/// so that an error in parsing the rest is still reported as JSON).
fn json_requested() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().enumerate().any(|(index, arg)| {
        arg == "--output=json"
            || (arg == "--output" && args.get(index + 1).is_some_and(|next| next == "json"))
    })
}

/// `{"event": "error", ...}` on stdout: what went wrong before (or instead
/// of) a run, for machines; the same text as stderr shows people.
fn error_event(diagnostic: &Diagnostic) {
    let at = match (&diagnostic.file, diagnostic.position.line()) {
        (Some(file), Some(line)) => Some(format!(
            "{}:{line}:{}",
            file.display(),
            diagnostic.position.position().unwrap_or(1)
        )),
        _ => None,
    };
    let event = serde_json::json!({
        "event": "error",
        "message": diagnostic.message,
        "hint": diagnostic.hint,
        "at": at,
        "exit_code": diagnostic.exit.code(),
        "time": crate::event::now(),
    });
    println!("{event}");
}

fn dispatch(command: Command) -> Result<Exit, Diagnostic> {
    use crate::commands;
    match command {
        Command::Run(args) => {
            let mut params = args.params;
            params.extend(args.param);
            commands::run::run(&RunOptions {
                file: args.file,
                params,
                context: args.context,
                dry_run: args.dry_run,
                offline: args.offline,
                fixtures: args.fixtures,
                plan_out: args.plan_out,
                expect_plan: args.expect_plan,
                journal: args.journal,
                approve: args.execution.approve,
                confirm: args.execution.confirm,
                wait_for_approval: args.execution.wait_for_approval,
                output: args.execution.output,
                no_rollback: args.execution.no_rollback,
                verbose: args.execution.verbose,
                deadline: None,
            })
        }
        Command::Check {
            paths,
            deny_warnings,
        } => commands::check::check(&paths, deny_warnings),
        Command::Doc {
            topic,
            markdown,
            out,
        } => commands::doc::doc(topic.as_deref(), markdown, out.as_deref()),
        Command::List { dir } => commands::list::list(dir),
        Command::Repl { context } => commands::repl::repl(context.as_deref()),
        Command::Init { dir, force } => commands::init::init(&dir, force),
        Command::Completions { shell } => commands::completions::completions(shell, Cli::command()),
        Command::Man { out } => {
            commands::completions::man(Cli::command().long_about(long_about()), out.as_deref())
        }
        Command::Complete { what } => commands::completions::complete(&what),
        Command::Fixtures(FixturesCommand::Record {
            file,
            params,
            context,
        }) => commands::fixtures::record(&commands::fixtures::Record {
            file: &file,
            params: &params,
            context: context.as_deref(),
        }),
        Command::Runs {
            limit,
            kind,
            context,
            since,
            status,
            journal,
            runbook,
            no_dry_run: _,
            dry_run,
            all,
        } => commands::runs::runs(&commands::runs::Filter {
            limit,
            kind,
            context,
            since,
            status,
            journal,
            runbook,
            dry_runs: if all {
                commands::runs::DryRuns::Include
            } else if dry_run {
                commands::runs::DryRuns::Only
            } else {
                commands::runs::DryRuns::Hide
            },
        }),
        Command::Show { run, output, html } => commands::show::show(&run, output, html),
        Command::Resume {
            run,
            force,
            context,
            execution,
        } => commands::resume::resume(&commands::resume::ResumeOptions {
            run,
            force,
            context,
            approve: execution.approve,
            confirm: execution.confirm,
            wait_for_approval: execution.wait_for_approval,
            output: execution.output,
            no_rollback: execution.no_rollback,
            verbose: execution.verbose,
        }),
        Command::Audit(AuditCommand::Verify {
            run,
            allow_incomplete,
        }) => commands::audit::verify(&run, allow_incomplete),
        Command::Ssh(SshCommand::Status) => commands::ssh::status(),
        Command::Ssh(SshCommand::Close { host, all }) => commands::ssh::close(host.as_deref(), all),

        Command::Schedule {
            workload,
            cron,
            starting_deadline,
        } => commands::schedule::schedule(&workload.options(Some(cron), starting_deadline)),
        Command::Job { workload } => commands::schedule::schedule(&workload.options(None, 0)),
        Command::Gates { journal } => commands::gates::gates(journal.as_deref()),
        Command::Approve {
            journal,
            run,
            comment,
            confirm,
        } => commands::approve::approve(&run, journal.as_deref(), comment, confirm),
        Command::Reject {
            journal,
            run,
            reason,
        } => commands::approve::reject(&run, journal.as_deref(), reason),
    }
}
