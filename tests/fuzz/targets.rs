//! Fuzz targets (bolero): every input runbook reads from outside.
//!
//! Under `cargo test` each target replays its whole corpus
//! (`tests/fuzz/__fuzz__/<target>/corpus`, seeded from the shipped
//! runbooks, journals and configs, and grown by the campaigns) and its saved
//! crashes, then tries [`RANDOM_INPUTS`] random inputs. `bench/fuzz.sh` runs coverage-guided campaigns
//! with libFuzzer on stable Rust (`cargo bolero test --sanitizer NONE`).
//!
//! Each target states what must hold besides "no panic, no abort, no hang":
//! a problem is reported as an error, never as an internal error.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use bolero::check;

/// Random inputs each target tries under `cargo test`, after replaying its
/// whole corpus and every saved crash (`BOLERO_RANDOM_ITERATIONS` overrides;
/// campaigns with libFuzzer ignore it).
const RANDOM_INPUTS: usize = 200;

/// A scratch folder for the whole process (`target/tmp/runbook-fuzz-PID`):
/// the state dir (journals) and the files the targets write their input to.
/// Folders of processes that are gone are removed first.
#[allow(clippy::expect_used)] // no target can run without it
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let parent = Path::new(env!("CARGO_TARGET_TMPDIR"));
        for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("runbook-fuzz-")
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = parent.join(format!("runbook-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state")).expect("scratch folder");
        runbook_stdlib::host::set_state_dir(dir.join("state"));
        dir
    })
}

/// Write `bytes` to a scratch file named `name` and return its path.
#[allow(clippy::expect_used)] // no target can run without it
fn file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    std::fs::write(&path, bytes).expect("write scratch file");
    path
}

/// No diagnostic a user sees may be an internal error (a panic caught on
/// the way, a lost task).
fn assert_not_internal(message: &str) {
    assert!(
        !(message.starts_with("internal error")
            || message.starts_with("internal:")
            || message.contains("`: internal:")),
        "an input led to an internal error: {message}"
    );
}

/// `runbook check` on arbitrary source: header, compile, analysis, warnings.
#[test]
fn check_script() {
    scratch();
    let session = runbook::session::Session::detached().expect("detached session");
    let engine = runbook::engine::build(&session.host);
    let known =
        runbook::analysis::Known::new(&engine, &runbook::engine::all_functions(&session.host));
    // The engine is only read; a panic mid-input leaves nothing half-changed.
    let shared = AssertUnwindSafe((engine, known));
    let shared = &shared;
    check!()
        .with_iterations(RANDOM_INPUTS)
        .for_each(move |bytes: &[u8]| {
            let (engine, known) = &shared.0;
            let source = String::from_utf8_lossy(bytes);
            let header = runbook::header::Header::parse(&source);
            for param in &header.params {
                let _ = header.param(&param.name);
            }
            if let Ok(ast) = runbook::engine::compile(engine, &source, &rhai::Scope::new()) {
                for problem in runbook::analysis::check(&ast, &header, known)
                    .iter()
                    .chain(&runbook::analysis::warnings(&ast, known))
                {
                    assert_not_internal(&problem.message);
                    let _ = problem.render_with(None, Some(&source));
                }
            }
        });
}

/// The whole `runbook run --dry-run --offline` path on arbitrary scripts:
/// params, compile, checks, the engine with every stdlib function, the
/// journal, rollbacks, the plan. A script that runs long is stopped as
/// Ctrl-C would stop it.
#[test]
fn offline_dry_run() {
    scratch();
    check!()
        .with_iterations(RANDOM_INPUTS)
        .for_each(|bytes: &[u8]| {
            let path = file("dry-run.rhai", bytes);
            let options = runbook::runner::RunOptions {
                file: path,
                params: vec![("version".into(), "v1.2.3".into())],
                dry_run: true,
                offline: true,
                output: runbook::printer::OutputFormat::Json,
                deadline: Some(Duration::from_millis(500)),
                ..Default::default()
            };
            let outcome = runbook::runner::run(&options);
            // Each run leaves a journal; a campaign makes hundreds of thousands.
            let _ = std::fs::remove_dir_all(scratch().join("state/runs"));
            if let Err(diagnostic) = outcome {
                assert_not_internal(&diagnostic.message);
            }
        });
}

/// A value a script can hand a stdlib function.
#[derive(Debug, Clone, bolero::TypeGenerator)]
enum Value {
    Unit,
    Bool(bool),
    Int(i64),
    Small(u8),
    Float(f64),
    Text(String),
    Duration(u16, Unit),
    Array(Vec<Scalar>),
    Map(Vec<(Key, Scalar)>),
}

#[derive(Debug, Clone, bolero::TypeGenerator)]
enum Scalar {
    Unit,
    Bool(bool),
    Int(i64),
    Text(String),
    Strings(Vec<String>),
}

#[derive(Debug, Clone, Copy, bolero::TypeGenerator)]
enum Unit {
    Ms,
    S,
    M,
    H,
}

/// Map keys: the option names stdlib functions take, or anything.
#[derive(Debug, Clone, bolero::TypeGenerator)]
enum Key {
    Known(u8),
    Other(String),
}

const OPTION_NAMES: &[&str] = &[
    "timeout",
    "retries",
    "namespace",
    "mask",
    "missing_ok",
    "batch",
    "fail_fast",
    "hosts",
    "length",
    "alphabet",
    "body",
    "headers",
    "status",
    "mode",
    "jobs",
    "clean",
    "create",
    "to",
    "from",
    "database",
    "bucket",
    "key",
    "env",
    "cwd",
    "stdin",
    "check",
    "interval",
    "every",
    "replicas",
    "image",
    "container",
    "labels",
    "data",
    "type",
    "location",
    "server_type",
];

impl Key {
    fn name(&self) -> String {
        match self {
            Key::Known(index) => OPTION_NAMES[usize::from(*index) % OPTION_NAMES.len()].to_owned(),
            Key::Other(name) => name.clone(),
        }
    }
}

impl Scalar {
    fn dynamic(&self) -> rhai::Dynamic {
        match self {
            Scalar::Unit => rhai::Dynamic::UNIT,
            Scalar::Bool(value) => (*value).into(),
            Scalar::Int(value) => (*value).into(),
            Scalar::Text(value) => value.clone().into(),
            Scalar::Strings(values) => {
                rhai::Dynamic::from_array(values.iter().map(|value| value.clone().into()).collect())
            }
        }
    }
}

impl Value {
    fn dynamic(&self) -> rhai::Dynamic {
        match self {
            Value::Unit => rhai::Dynamic::UNIT,
            Value::Bool(value) => (*value).into(),
            Value::Int(value) => (*value).into(),
            Value::Small(value) => i64::from(*value).into(),
            Value::Float(value) => (*value).into(),
            Value::Text(value) => value.clone().into(),
            Value::Duration(amount, unit) => {
                let unit = match unit {
                    Unit::Ms => "ms",
                    Unit::S => "s",
                    Unit::M => "m",
                    Unit::H => "h",
                };
                format!("{amount}{unit}").into()
            }
            Value::Array(items) => {
                rhai::Dynamic::from_array(items.iter().map(Scalar::dynamic).collect())
            }
            Value::Map(entries) => rhai::Dynamic::from_map(
                entries
                    .iter()
                    .map(|(key, value)| (key.name().into(), value.dynamic()))
                    .collect(),
            ),
        }
    }
}

/// Functions that wait as long as they are told: called here with at most
/// a short wait, so the target tests conversion, not patience.
const WAITS: &[&str] = &["sleep", "wait_until", "retry"];

/// Every stdlib and built-in function, called with arbitrary values in an
/// offline dry-run: the same conversion and type checks as live; a wrong
/// argument is an error naming it.
#[test]
fn stdlib_arguments() {
    scratch();
    let session = runbook::session::Session::detached().expect("detached session");
    let engine = runbook::engine::build(&session.host);
    let functions: Vec<String> = runbook::engine::all_functions(&session.host)
        .iter()
        .filter(|function| !WAITS.contains(&function.name))
        .map(|function| {
            if function.module.is_empty() {
                function.name.to_owned()
            } else {
                format!("{}::{}", function.module, function.name)
            }
        })
        .collect();
    let engine = AssertUnwindSafe(engine);
    let engine = &engine;
    check!()
        .with_type::<(u16, Vec<Value>)>()
        .with_iterations(RANDOM_INPUTS)
        .for_each(move |(index, args)| {
            let name = &functions[usize::from(*index) % functions.len()];
            let mut scope = rhai::Scope::new();
            let mut names = Vec::new();
            for (position, arg) in args.iter().take(6).enumerate() {
                let variable = format!("a{position}");
                scope.push_dynamic(variable.clone(), arg.dynamic());
                names.push(variable);
            }
            let script = format!("{name}({})", names.join(", "));
            if let Err(error) = engine
                .0
                .eval_with_scope::<rhai::Dynamic>(&mut scope, &script)
            {
                let diagnostic = runbook::error::Diagnostic::from_rhai(&error);
                assert_not_internal(&diagnostic.message);
            }
        });
}

/// A journal's bytes, as `runs`, `show`, `resume` and `audit verify` read
/// them: a problem is an error naming the line.
#[test]
fn journal_reader() {
    scratch();
    check!()
        .with_iterations(RANDOM_INPUTS)
        .for_each(|bytes: &[u8]| {
            let path = file("journal.jsonl", bytes);
            if let Ok(recorded) = runbook::journal::read(&path) {
                for event in &recorded.events {
                    let _ = serde_json::to_string(event);
                }
            }
            let _ = runbook::resume::load(&path);
            let _ = runbook::journal::verify(&path);
        });
}

/// `runbook.toml`: load, then every context it names, with its secrets'
/// sources and the value scripts see as `context()`.
#[test]
fn runbook_toml() {
    scratch();
    check!()
        .with_iterations(RANDOM_INPUTS)
        .for_each(|bytes: &[u8]| {
            let path = file("runbook.toml", bytes);
            let Ok(config) = runbook::context::Config::load(&path) else {
                return;
            };
            let _ = config.secret_env_vars();
            for name in config.contexts.keys() {
                if let Ok(context) = config.context(name) {
                    let _ = context.to_dynamic();
                    let _ = context.secret_sources();
                }
            }
        });
}

/// `--fixtures FILE`: parse, then answer the reads the shipped runbooks make.
#[test]
fn fixtures() {
    scratch();
    check!()
        .with_iterations(RANDOM_INPUTS)
        .for_each(|bytes: &[u8]| {
            let path = file("fixtures.yaml", bytes);
            let Ok(fixtures) = runbook::fixtures::Fixtures::load(&path) else {
                return;
            };
            for (function, args) in [
                ("k8s::image", vec!["\"backend\"".to_owned()]),
                ("shell::read", vec!["\"git rev-parse HEAD\"".to_owned()]),
                ("http::get", vec!["\"http://127.0.0.1/\"".to_owned()]),
                ("k8s::secret", vec!["\"app-db\"".to_owned()]),
            ] {
                let call = runbook_stdlib::CallInfo {
                    function: function.to_owned(),
                    effect: runbook_stdlib::host::Effect::Read,
                    values: Vec::new(),
                    args,
                    position: rhai::Position::NONE,
                    has_preview: false,
                };
                if fixtures.has(&call) {
                    let placeholder = runbook_stdlib::values::placeholder("#{stdout: string}");
                    let _ = fixtures.lookup(&call, placeholder);
                }
            }
        });
}
