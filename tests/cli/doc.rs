//! Docs are data: every registered function has a doc comment and an effect,
//! its ```rhai examples pass `runbook check`, `runbook doc` lists it, and
//! docs/stdlib.md is the output of `runbook doc --markdown`.

use runbook_stdlib::{Effect, Function};

use crate::harness::{Run, Scratch, repo_root};

/// Every function a script can call, from the library itself.
fn functions() -> Vec<Function> {
    let session = runbook::session::Session::detached().expect("a detached session");
    runbook::engine::all_functions(&session.host)
}

/// `//! @param NAME optional` for each `param("NAME"` in an example, so that
/// examples reading params pass the undeclared-param check.
fn header_for(example: &str) -> String {
    let mut header = String::from("//! A doc example.\n");
    let mut rest = example;
    while let Some(start) = rest.find("param(\"") {
        let after = &rest[start + "param(\"".len()..];
        if let Some(end) = after.find('"') {
            header.push_str(&format!(
                "//! @param {} optional  used by the example\n",
                &after[..end]
            ));
        }
        rest = after;
    }
    header
}

/// Functions whose doc example cannot pass today, each with an ignored test
/// that states the correct behaviour.
const EXAMPLE_BUGS: &[&str] = &["log::debug"];

/// Each doc example written to a scratch folder as `module_name_N.rhai`.
fn write_examples(scratch: &Scratch) -> Vec<(String, String)> {
    let mut written = Vec::new();
    for function in functions() {
        if EXAMPLE_BUGS.contains(&function.qualified_name().as_str()) {
            continue;
        }
        for (index, example) in function.examples().iter().enumerate() {
            let module = if function.module.is_empty() {
                "builtin"
            } else {
                function.module
            };
            let name = format!("{module}_{}_{index}.rhai", function.name);
            scratch.write(
                &format!("examples/{name}"),
                &format!("{}{example}\n", header_for(example)),
            );
            written.push((name, function.qualified_name()));
        }
    }
    written
}

/// A context with what the doc examples refer to (nothing here is ever contacted).
const DOCS_CONTEXT: &str = r#"[context.docs]
description = "what the doc examples refer to"
[context.docs.hosts]
web1 = "deploy@127.0.0.1:9"
web2 = "deploy@127.0.0.1:9"
db1 = "deploy@127.0.0.1:9"
[context.docs.groups]
web = ["web1", "web2"]
db = ["db1"]
all = ["web1", "web2", "db1"]
[context.docs.secrets]
api_token = "env:RUNBOOK_DOCS_NEVER_SET"
slack_webhook = "env:RUNBOOK_DOCS_NEVER_SET"
"#;

#[test]
fn every_function_has_a_doc_an_effect_and_an_example() {
    let functions = functions();
    assert!(
        functions.len() > 10,
        "suspiciously few functions: {}",
        functions.len()
    );
    let mut problems = Vec::new();
    for function in &functions {
        let name = function.qualified_name();
        if function.doc_text().trim().is_empty() {
            problems.push(format!("{name}: no doc comment"));
        }
        if function.summary().trim().is_empty() {
            problems.push(format!(
                "{name}: the doc comment's first line (the summary) is empty"
            ));
        }
        if !matches!(
            function.effect,
            Effect::Local | Effect::Read | Effect::Write
        ) {
            problems.push(format!("{name}: no effect"));
        }
        if function.examples().is_empty() {
            problems.push(format!("{name}: no ```rhai example in its doc comment"));
        }
        if function.returns.trim().is_empty() {
            problems.push(format!("{name}: no return type"));
        }
    }
    assert!(
        problems.is_empty(),
        "functions without docs:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_declaration_is_well_formed() {
    // Optional parameters trail their form, forms differ in arity, and
    // every declared return type parses (for placeholders and docs).
    let problems: Vec<String> = functions()
        .iter()
        .flat_map(Function::spec_problems)
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn function_names_are_unique() {
    let mut names: Vec<String> = functions().iter().map(Function::qualified_name).collect();
    let count = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), count, "two functions share a name");
}

#[test]
fn doc_overview_lists_every_function_with_its_effect() {
    let output = Run::command(["doc"]).output();
    output.assert_success();
    for function in functions() {
        let name = function.qualified_name();
        let line = output
            .stdout
            .lines()
            .find(|line| line.trim_start().starts_with(&format!("{name}(")))
            .unwrap_or_else(|| panic!("`runbook doc` does not list {name}\n{}", output.report()));
        assert!(
            line.split_whitespace()
                .any(|word| word == function.effect.as_str()),
            "`runbook doc` shows no effect `{}` for {name}: {line:?}",
            function.effect
        );
        assert!(
            line.contains(&function.summary()),
            "`runbook doc` shows no summary for {name}: {line:?}"
        );
    }
}

#[test]
fn every_doc_example_passes_check() {
    let scratch = Scratch::new();
    let written = write_examples(&scratch);
    assert!(!written.is_empty());
    let output = scratch.command(["check", "examples"]).output();
    output.assert_success();
    for (file, function) in &written {
        assert!(
            output
                .stdout
                .lines()
                .any(|line| line.starts_with("ok") && line.ends_with(file.as_str())),
            "the doc example of {function} ({file}) was not checked ok\n{}",
            output.report()
        );
    }
}

#[test]
fn every_doc_example_runs_in_an_offline_dry_run() {
    // Offline: writes are planned, reads get placeholders, nothing is touched;
    // the local parts of each example really run, in a context that has the
    // hosts, groups and secrets the examples name.
    let scratch = Scratch::new();
    scratch.write("runbook.toml", DOCS_CONTEXT);
    for (file, function) in write_examples(&scratch) {
        let output = scratch
            .run(&format!("examples/{file}"))
            .config(scratch.file("runbook.toml"))
            .context("docs")
            .dry_run()
            .offline()
            .output();
        assert_eq!(
            output.code,
            0,
            "the doc example of {function} fails offline\n{}",
            output.report()
        );
    }
}

#[test]
fn details_go_through_rhai_debug_and_show_with_verbose() {
    // `debug` is a reserved word in Rhai, so there is no `log::debug`:
    // scripts call `debug(...)`, which logs at level debug.
    let scratch = Scratch::new();
    scratch.write(
        "d.rhai",
        "//! Debug log.\ndebug(\"a detail\");\nlog::info(\"shown\");\n",
    );
    scratch
        .command(["check", "d.rhai"])
        .output()
        .assert_success();
    scratch
        .run("d.rhai")
        .output()
        .assert_success()
        .assert_contains("shown")
        .assert_not_contains("a detail");
    scratch
        .run("d.rhai")
        .arg("--verbose")
        .output()
        .assert_success()
        .assert_contains("a detail");
    Run::command(["doc", "log"])
        .output()
        .assert_success()
        .assert_not_contains("log::debug");
}

#[test]
fn stdlib_reference_is_up_to_date() {
    let output = Run::command(["doc", "--markdown"]).output();
    output.assert_success();
    let path = repo_root().join("docs/stdlib.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == output.stdout,
        "docs/stdlib.md is stale (or missing): regenerate it with\n\n    cargo run -- doc --markdown --out docs/stdlib.md\n"
    );
}

#[test]
fn doc_markdown_out_writes_the_file() {
    let scratch = Scratch::new();
    let output = Run::command(["doc", "--markdown", "--out"])
        .arg(scratch.file("stdlib.md"))
        .output();
    output.assert_success();
    let printed = Run::command(["doc", "--markdown"]).output();
    assert_eq!(scratch.read("stdlib.md"), printed.stdout);
}

#[test]
fn doc_out_needs_markdown() {
    let scratch = Scratch::new();
    Run::command(["doc", "--out"])
        .arg(scratch.file("x.md"))
        .output()
        .assert_exit(2);
    assert!(!scratch.exists("x.md"));
}

#[test]
fn doc_of_one_function_shows_signature_and_effect() {
    let output = Run::command(["doc", "shell::run"]).output();
    output
        .assert_success()
        .assert_contains("shell::run(cmd: string | array, opts?: map) -> ")
        .assert_contains("effect: write")
        .assert_contains("```rhai");
    let output = Run::command(["doc", "shell::read"]).output();
    output.assert_success().assert_contains("effect: read");
    let output = Run::command(["doc", "step"]).output();
    output
        .assert_success()
        .assert_contains("step(name: string, fn: closure) -> any\nstep(name: string, opts: map, fn: closure) -> any")
        .assert_contains("effect: local");
}

#[test]
fn doc_of_a_module_shows_each_of_its_functions() {
    let output = Run::command(["doc", "shell"]).output();
    output.assert_success();
    for function in functions()
        .iter()
        .filter(|function| function.module == "shell")
    {
        output.assert_contains(&function.signature());
    }
    let output = Run::command(["doc", "built-ins"]).output();
    output
        .assert_success()
        .assert_contains("approve(message: string, opts?: map)");
}

#[test]
fn doc_of_an_unknown_topic_exits_2() {
    Run::command(["doc", "nope"])
        .output()
        .assert_exit(2)
        .assert_contains("no module or function `nope`");
}

#[test]
fn list_shows_each_example_with_its_description() {
    let output = Run::command(["list", "examples"]).output();
    output.assert_success();
    let mut count = 0;
    for entry in std::fs::read_dir(repo_root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|extension| extension != "rhai") {
            continue;
        }
        count += 1;
        let source = std::fs::read_to_string(&path).unwrap();
        let summary = source
            .lines()
            .next()
            .unwrap()
            .trim_start_matches("//!")
            .trim();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let listed = output.stdout.lines().position(|line| line.ends_with(&name));
        let listed = listed.unwrap_or_else(|| {
            panic!("`runbook list examples` misses {name}\n{}", output.report())
        });
        assert_eq!(
            output.stdout.lines().nth(listed + 1).map(str::trim),
            Some(summary),
            "the line after {name} is not its description\n{}",
            output.report()
        );
    }
    assert!(count > 0);
}

#[test]
fn list_shows_params() {
    let scratch = Scratch::new();
    scratch.write(
        "books/deploy.rhai",
        "//! Deploy a version.\n//! @param version required  image tag\n//! @param service default=backend  which one\nlet v = 1;\n",
    );
    scratch.write("books/bare.rhai", "let x = 1;\n");
    let output = scratch.command(["list", "books"]).output();
    output.assert_success();
    assert_cli_snapshot!("list_with_params", output.stdout);
}

#[test]
fn doc_overview_columns_line_up() {
    let output = Run::command(["doc"]).output();
    output.assert_success();
    let mut columns = std::collections::BTreeSet::new();
    for function in functions() {
        let line = output
            .stdout
            .lines()
            .find(|line| {
                line.trim_start()
                    .starts_with(&format!("{}(", function.qualified_name()))
            })
            .unwrap();
        columns.insert(line.find(&function.summary()).unwrap());
    }
    assert_eq!(
        columns.len(),
        1,
        "summaries start at columns {columns:?}\n{}",
        output.stdout
    );
}

/// Each overview line's summary is a whole sentence: it ends with a period,
/// and never inside an abbreviation (`e.g.`, `i.e.`).
#[test]
fn doc_summaries_are_whole_sentences() {
    let output = crate::harness::Run::command(["doc"]).output();
    output.assert_success();
    let mut checked = 0;
    for line in output.stdout.lines() {
        let line = line.trim_end();
        let is_function = line.starts_with("  ") && line.contains('(') && line.contains("  ");
        if !is_function {
            continue;
        }
        checked += 1;
        assert!(
            line.ends_with('.') && !line.ends_with("e.g.") && !line.ends_with("i.e."),
            "summary cut or without an end: {line}"
        );
    }
    assert!(checked > 50, "only {checked} functions in `runbook doc`");
}
