//! Shell completions and man pages, generated from the clap definitions so
//! they cannot drift from `--help`.
//!
//! `runbook completions bash|zsh|fish|powershell` prints a script. For bash
//! and fish it completes values only a run can know, by calling back into
//! the binary (`runbook __complete contexts|runs`): context names from the
//! runbook.toml that a run here would use, run ids from the state dir, and
//! `.rhai` files where a runbook is expected. `runbook man` writes roff pages.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

use crate::error::{Diagnostic, Exit};

/// Print the completion script for `shell`.
pub fn completions(shell: Shell, mut command: clap::Command) -> Result<Exit, Diagnostic> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "runbook", &mut script);
    match shell {
        Shell::Bash => script.extend_from_slice(BASH_DYNAMIC.as_bytes()),
        Shell::Fish => script.extend_from_slice(FISH_DYNAMIC.as_bytes()),
        _ => {}
    }
    write_stdout(&script)
}

/// Values for the completion scripts: `contexts` or `runs`, one per line.
pub fn complete(what: &str) -> Result<Exit, Diagnostic> {
    let values = match what {
        "contexts" => contexts(),
        "runs" => runs(&crate::journal::runs_dir()),
        other => {
            return Err(Diagnostic::new(
                format!("`__complete {other}`: expected `contexts` or `runs`"),
                Exit::Usage,
            ));
        }
    };
    let mut text = values.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    write_stdout(text.as_bytes())
}

/// The contexts of the runbook.toml a run started here would find
/// (`$RUNBOOK_CONFIG`, else upward from `./runbooks` and the current folder).
fn contexts() -> Vec<String> {
    let here = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let runbooks = here.join("runbooks");
    match crate::context::Config::find(&[runbooks.as_path(), here.as_path()]) {
        Ok(Some(config)) => config.contexts.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Run ids in the state dir, newest first (ids start with their UTC time).
fn runs(dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.path().join("journal.jsonl").is_file())
                .filter_map(|entry| entry.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids
}

/// Write man pages: `runbook.1` and one `runbook-SUBCOMMAND.1` per
/// subcommand into `out`, or `runbook.1` alone to stdout.
pub fn man(command: clap::Command, out: Option<&Path>) -> Result<Exit, Diagnostic> {
    let command = command.name("runbook");
    let Some(out) = out else {
        let mut page = Vec::new();
        clap_mangen::Man::new(command)
            .render(&mut page)
            .map_err(|error| {
                Diagnostic::new(format!("cannot render the man page: {error}"), Exit::Usage)
            })?;
        return write_stdout(&page);
    };
    std::fs::create_dir_all(out).map_err(|error| {
        Diagnostic::new(
            format!("cannot create `{}`: {error}", out.display()),
            Exit::Usage,
        )
    })?;
    clap_mangen::generate_to(command, out).map_err(|error| {
        Diagnostic::new(
            format!("cannot write the man pages to `{}`: {error}", out.display()),
            Exit::Usage,
        )
    })?;
    eprintln!("wrote the man pages to {}", out.display());
    Ok(Exit::Ok)
}

fn write_stdout(bytes: &[u8]) -> Result<Exit, Diagnostic> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(Exit::Ok),
        // A closed pipe (`| head`) is not an error worth a report.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(Exit::Ok),
        Err(error) => Err(Diagnostic::new(
            format!("cannot write to stdout: {error}"),
            Exit::Usage,
        )),
    }
}

/// Bash: values clap cannot know, then clap's own completion.
const BASH_DYNAMIC: &str = r#"
# Values only runbook knows: contexts, run ids, runbook files.
_runbook_dynamic() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
    local self="${COMP_WORDS[0]}"
    if [[ "$prev" == "--context" ]]; then
        COMPREPLY=( $(compgen -W "$("$self" __complete contexts 2>/dev/null)" -- "$cur") )
        return 0
    fi
    # The subcommand (and `audit verify`), and how many positionals follow it.
    local i word sub="" positionals=0
    for (( i = 1; i < COMP_CWORD; i++ )); do
        word="${COMP_WORDS[i]}"
        case "$word" in
            --context|--output|--param|--fixtures|--plan-out|--expect-plan|--wait-for-approval|--confirm|--limit|--since|--status|--kind|--runbook|--journal|--out|--cron)
                (( i++ )); continue ;;
            -*) continue ;;
        esac
        if [[ -z "$sub" ]]; then sub="$word"
        elif [[ "$sub" == "audit" || "$sub" == "fixtures" ]] && (( positionals == 0 )) && [[ "$word" == verify || "$word" == record ]]; then sub="$sub $word"
        else (( positionals++ ))
        fi
    done
    if [[ "$cur" != -* ]]; then
        case "$sub" in
            show|resume|approve|reject|"audit verify")
                if (( positionals == 0 )); then
                    COMPREPLY=( $(compgen -W "$("$self" __complete runs 2>/dev/null)" -- "$cur") )
                    return 0
                fi ;;
            run|"fixtures record"|schedule|job)
                if (( positionals == 0 )); then
                    COMPREPLY=( $(compgen -f -X '!*.rhai' -- "$cur") $(compgen -d -S / -- "$cur") )
                    compopt -o nospace 2>/dev/null
                    return 0
                fi ;;
            check)
                COMPREPLY=( $(compgen -f -X '!*.rhai' -- "$cur") $(compgen -d -S / -- "$cur") )
                compopt -o nospace 2>/dev/null
                return 0 ;;
        esac
    fi
    _runbook "$@"
}
complete -F _runbook_dynamic -o bashdefault -o default runbook
"#;

/// Fish: the same dynamic values.
const FISH_DYNAMIC: &str = r#"
# Values only runbook knows: contexts, run ids, runbook files.
complete -c runbook -l context -x -a '(runbook __complete contexts 2>/dev/null)'
complete -c runbook -n '__fish_seen_subcommand_from show resume approve reject verify' -f -a '(runbook __complete runs 2>/dev/null)'
complete -c runbook -n '__fish_seen_subcommand_from run check record' -k -a '(__fish_complete_suffix .rhai)'
"#;
