//! Static checks of a runbook, without running it: syntax, calls to unknown
//! functions or modules, wrong arity, and params the header does not declare.
//! `runbook check` reports them all; `runbook run` refuses to start on any.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use rhai::{AST, ASTNode, Engine, Expr, Position, Stmt};
use runbook_stdlib::Function;

use crate::error::{Diagnostic, Exit};
use crate::header::Header;

/// Functions the evaluator handles itself; they are not in the registry.
const EVALUATOR_FUNCTIONS: &[&str] = &[
    "print",
    "debug",
    "type_of",
    "Fn",
    "call",
    "curry",
    "is_def_var",
    "is_def_fn",
    "is_shared",
    "eval",
];

/// What calls may name: stdlib modules and their functions, global functions.
pub struct Known {
    /// module → function → accepted arities
    modules: BTreeMap<String, BTreeMap<String, BTreeSet<usize>>>,
    /// our built-ins with their arities
    builtins: BTreeMap<String, BTreeSet<usize>>,
    /// every other global function name Rhai knows (its packages)
    globals: HashSet<String>,
    /// `module::name` of every function that changes the world
    writes: HashSet<String>,
}

impl Known {
    pub fn new(engine: &Engine, functions: &[Function]) -> Known {
        let mut modules: BTreeMap<String, BTreeMap<String, BTreeSet<usize>>> = BTreeMap::new();
        let mut builtins: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
        let writes = functions
            .iter()
            .filter(|function| function.effect == runbook_stdlib::Effect::Write)
            .map(Function::qualified_name)
            .collect();
        for function in functions {
            let arities: BTreeSet<usize> = function.arities().into_iter().collect();
            if function.module.is_empty() {
                builtins
                    .entry(function.name.to_owned())
                    .or_default()
                    .extend(arities);
            } else {
                modules
                    .entry(function.module.to_owned())
                    .or_default()
                    .entry(function.name.to_owned())
                    .or_default()
                    .extend(arities);
            }
        }
        // Rhai's own functions, from an engine without ours: a built-in of ours
        // with the same name (`timestamp`) keeps Rhai's arities too.
        let _ = engine;
        let mut globals: HashSet<String> = HashSet::new();
        for signature in Engine::new().gen_fn_signatures(true) {
            if signature.contains("::") {
                continue;
            }
            let Some((head, rest)) = signature.split_once('(') else {
                continue;
            };
            let name = head.rsplit(' ').next().unwrap_or(head).to_owned();
            let params = rest.split(')').next().unwrap_or_default().trim();
            let arity = if params.is_empty() {
                0
            } else {
                params.split(',').count()
            };
            match builtins.get_mut(&name) {
                Some(arities) => {
                    arities.insert(arity);
                }
                None => {
                    globals.insert(name);
                }
            }
        }
        globals.extend(EVALUATOR_FUNCTIONS.iter().map(|name| (*name).to_owned()));
        Known {
            modules,
            builtins,
            globals,
            writes,
        }
    }

    pub fn module_names(&self) -> Vec<&str> {
        self.modules.keys().map(String::as_str).collect()
    }
}

fn arity_text(arities: &BTreeSet<usize>) -> String {
    let list: Vec<String> = arities.iter().map(ToString::to_string).collect();
    match list.as_slice() {
        [one] if one == "1" => "1 argument".to_owned(),
        [one] => format!("{one} arguments"),
        [init @ .., last] => format!("{} or {last} arguments", init.join(", ")),
        [] => "no arguments".to_owned(),
    }
}

/// Closest name by edit distance, for "did you mean".
fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a String>) -> Option<&'a String> {
    candidates
        .map(|candidate| (distance(name, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            current.push(
                (previous[j] + cost)
                    .min(previous[j + 1] + 1)
                    .min(current[j] + 1),
            );
        }
        previous = current;
    }
    previous[b.len()]
}

/// All problems in a compiled script.
pub fn check(ast: &AST, header: &Header, known: &Known) -> Vec<Diagnostic> {
    let mut problems: Vec<Diagnostic> = header
        .problems
        .iter()
        .map(|(line, problem)| {
            Diagnostic::new(problem.clone(), Exit::Usage)
                .at(Position::new(u16::try_from(*line).unwrap_or(u16::MAX), 1))
        })
        .collect();

    // Script-defined functions and every variable name (a variable may hold a closure).
    let mut script_functions: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    let mut variables: HashSet<String> = HashSet::new();
    for function in ast.iter_functions() {
        script_functions
            .entry(function.name.to_owned())
            .or_default()
            .insert(function.params.len());
        variables.extend(function.params.iter().map(|param| (*param).to_owned()));
    }
    let mut has_imports = false;
    ast.walk(&mut |nodes: &[ASTNode]| {
        match nodes.last() {
            Some(ASTNode::Stmt(Stmt::Var(declaration, ..))) => {
                variables.insert(declaration.0.name.to_string());
            }
            Some(ASTNode::Stmt(Stmt::Import(..))) => has_imports = true,
            Some(ASTNode::Stmt(Stmt::For(details, ..))) => {
                variables.insert(details.0.name.to_string());
                if let Some(counter) = &details.1 {
                    variables.insert(counter.name.to_string());
                }
            }
            _ => {}
        }
        true
    });

    ast.walk(&mut |nodes: &[ASTNode]| {
        let (call, position) = match nodes.last() {
            Some(ASTNode::Expr(Expr::FnCall(call, position))) => (&**call, position),
            Some(ASTNode::Stmt(Stmt::FnCall(call, position))) => (&**call, position),
            _ => return true,
        };
        let name = call.name.as_str();
        let arity = call.args.len();
        if call.op_token.is_some() || !rhai::is_valid_identifier(name) {
            return true;
        }
        let position = *position;
        if !call.namespace.is_empty() {
            let module = call.namespace.to_string();
            match known.modules.get(&module) {
                None if has_imports => {}
                None => {
                    let mut problem = Diagnostic::new(format!("unknown module `{module}` in `{module}::{name}`"), Exit::Usage)
                        .at(position);
                    problem = match suggest(&module, known.modules.keys()) {
                        Some(close) => problem.hint(format!("did you mean `{close}::{name}`? `runbook doc` lists the modules")),
                        None => problem.hint(format!("the modules are: {}", known.module_names().join(", "))),
                    };
                    problems.push(problem);
                }
                Some(functions) => match functions.get(name) {
                    None => {
                        let mut problem = Diagnostic::new(format!("no function `{module}::{name}`"), Exit::Usage).at(position);
                        problem = match suggest(name, functions.keys()) {
                            Some(close) => problem.hint(format!("did you mean `{module}::{close}`? `runbook doc {module}` lists its functions")),
                            None => problem.hint(format!("`runbook doc {module}` lists its functions")),
                        };
                        problems.push(problem);
                    }
                    Some(arities) if !arities.contains(&arity) => problems.push(
                        Diagnostic::new(
                            format!("`{module}::{name}` takes {}, but {arity} were given", arity_text(arities)),
                            Exit::Usage,
                        )
                        .at(position)
                        .hint(format!("`runbook doc {module}::{name}` shows the parameters")),
                    ),
                    Some(_) => {}
                },
            }
            return true;
        }
        let script_ok = script_functions.get(name).is_some_and(|arities| arities.contains(&arity));
        if script_ok || variables.contains(name) {
            return true;
        }
        if let Some(arities) = known.builtins.get(name) {
            if !arities.contains(&arity) {
                problems.push(
                    Diagnostic::new(
                        format!("`{name}` takes {}, but {arity} were given", arity_text(arities)),
                        Exit::Usage,
                    )
                    .at(position)
                    .hint(format!("`runbook doc {name}` shows the parameters")),
                );
            }
        } else if !known.globals.contains(name) && !script_functions.contains_key(name) {
            let all = known.builtins.keys().chain(script_functions.keys());
            let mut problem = Diagnostic::new(format!("unknown function `{name}`"), Exit::Usage).at(position);
            problem = match suggest(name, all) {
                Some(close) => problem.hint(format!("did you mean `{close}`?")),
                None => problem.hint("`runbook doc` lists the functions; module functions are called as `module::name`"),
            };
            problems.push(problem);
        } else if let Some(arities) = script_functions.get(name)
            && !known.globals.contains(name)
        {
            problems.push(
                Diagnostic::new(
                    format!("`{name}` takes {}, but {arity} were given", arity_text(arities)),
                    Exit::Usage,
                )
                .at(position),
            );
        }
        // Params must be declared in the header.
        if name == "param"
            && let Some(Expr::StringConstant(param, param_position)) = call.args.first()
            && header.param(param).is_none()
        {
            problems.push(
                Diagnostic::new(format!("param `{param}` is not declared in the runbook's header"), Exit::Usage)
                    .at(*param_position)
                    .hint(format!(
                        "declare it at the top of the file: `//! @param {param} required  what it is` (or `default=VALUE`, `optional`)"
                    )),
            );
        }
        true
    });
    problems.sort_by_key(|problem| (problem.position.line(), problem.position.position()));
    problems
}

/// Calls that run a command line, and which argument is the command.
const COMMAND_CALLS: &[(&str, &str, usize)] = &[
    ("shell", "run", 0),
    ("shell", "read", 0),
    ("ssh", "exec", 1),
    ("ssh", "read", 1),
    ("ssh", "exec_all", 1),
    ("k8s", "exec", 1),
];

/// Calls whose result is a secret.
fn makes_secret(call: &rhai::FnCallExpr) -> bool {
    let module = call.namespace.to_string();
    matches!(
        (module.as_str(), call.name.as_str()),
        ("", "secret") | ("secrets", "generate") | ("k8s", "secret")
    )
}

/// Whether `expr` builds text out of pieces (`+`, `${...}`) one of which is
/// a secret: a variable bound to one, or a call that makes one.
fn concatenates_secret(expr: &Expr, secrets: &HashSet<String>) -> bool {
    fn holds_secret(expr: &Expr, secrets: &HashSet<String>) -> bool {
        match expr {
            Expr::Variable(variable, ..) => secrets.contains(variable.1.as_str()),
            Expr::FnCall(call, _) | Expr::MethodCall(call, _) => {
                makes_secret(call) || call.args.iter().any(|arg| holds_secret(arg, secrets))
            }
            Expr::InterpolatedString(parts, _) | Expr::Array(parts, _) => {
                parts.iter().any(|part| holds_secret(part, secrets))
            }
            Expr::Dot(binary, ..) | Expr::Index(binary, ..) => holds_secret(&binary.lhs, secrets),
            _ => false,
        }
    }
    match expr {
        Expr::InterpolatedString(parts, _) => parts.iter().any(|part| holds_secret(part, secrets)),
        Expr::FnCall(call, _) if call.op_token.is_some() && call.name == "+" => {
            call.args.iter().any(|arg| holds_secret(arg, secrets))
        }
        Expr::Array(items, _) => items.iter().any(|item| concatenates_secret(item, secrets)),
        _ => false,
    }
}

/// Advice that does not stop a run: a secret concatenated into a command
/// line (which every local user can read in `/proc/*/cmdline`, and a remote
/// host logs) instead of going through `env` or `stdin`; the result of an
/// in-place string method (`let a = b.trim()` is `()`) used as a value; a
/// write made outside any step.
pub fn warnings(ast: &AST, known: &Known) -> Vec<Diagnostic> {
    let mut secrets: HashSet<String> = HashSet::new();
    ast.walk(&mut |nodes: &[ASTNode]| {
        if let Some(ASTNode::Stmt(Stmt::Var(declaration, ..))) = nodes.last()
            && let Expr::FnCall(call, _) | Expr::MethodCall(call, _) = &declaration.1
            && makes_secret(call)
        {
            secrets.insert(declaration.0.name.to_string());
        }
        true
    });
    let mut warnings = Vec::new();
    ast.walk(&mut |nodes: &[ASTNode]| {
        let (call, position) = match nodes.last() {
            Some(ASTNode::Expr(Expr::FnCall(call, position))) => (&**call, position),
            Some(ASTNode::Stmt(Stmt::FnCall(call, position))) => (&**call, position),
            _ => return true,
        };
        let module = call.namespace.to_string();
        let Some((_, _, index)) = COMMAND_CALLS
            .iter()
            .find(|(m, name, _)| *m == module && *name == call.name.as_str())
        else {
            return true;
        };
        if call
            .args
            .get(*index)
            .is_some_and(|command| concatenates_secret(command, &secrets))
        {
            warnings.push(
                Diagnostic::new(
                    format!(
                        "a secret is concatenated into the command line of `{module}::{}`: while it runs, any local user can read it in /proc/*/cmdline (and a remote host may log it)",
                        call.name
                    ),
                    Exit::Usage,
                )
                .at(*position)
                .hint("pass it through the environment or stdin: `shell::run([\"sh\", \"-c\", \"tool --password-file=/dev/stdin\"], #{stdin: pw})` or `#{env: #{PGPASSWORD: pw}}`"),
            );
        }
        true
    });
    ast.walk(&mut |nodes: &[ASTNode]| {
        let value = match nodes.last() {
            Some(ASTNode::Stmt(Stmt::Var(declaration, ..))) => Some(&declaration.1),
            Some(ASTNode::Stmt(Stmt::Assignment(assignment))) => Some(&assignment.1.rhs),
            _ => None,
        };
        if let Some((method, position)) = value.and_then(in_place_call) {
            warnings.push(
                Diagnostic::new(
                    format!(
                        "`{method}` changes its string in place and returns `()`: the value used here is `()`"
                    ),
                    Exit::Usage,
                )
                .at(position)
                .hint(format!(
                    "call it on its own line, then use the variable: `let s = text; s.{method}(...);`"
                )),
            );
        }
        true
    });
    warnings.extend(writes_outside_steps(ast, known));
    warnings.sort_by_key(|warning| (warning.position.line(), warning.position.position()));
    warnings
}

/// Writes made outside any step: not journaled as part of a step, not
/// retried, and without a place for an `on_rollback`. A write counts as in a
/// step when a `step(...)` call encloses it, or it is in a closure handed to
/// `step` or `on_rollback` (or to a closure that is, and so on). Writes in
/// named functions are not judged: where they are called decides.
fn writes_outside_steps(ast: &AST, known: &Known) -> Vec<Diagnostic> {
    /// Calls whose closure arguments run as (or on behalf of) a step.
    const STEP_LIKE: &[&str] = &["step", "on_rollback"];
    // The main body, and each function on its own, so every node's owner is known.
    let mut parts: Vec<(Option<String>, AST)> = vec![(None, ast.clone_statements_only())];
    let names: Vec<(String, usize)> = ast
        .iter_fn_def()
        .map(|function| (function.name.to_string(), function.params.len()))
        .collect();
    // `clone_functions_only_filtered` ignores its filter when it starts from an
    // empty module (rhai 1.27), so each function is merged into an AST that
    // holds one empty function of its own.
    let functions = ast.clone_functions_only();
    let seed = rhai::Engine::new_raw()
        .compile("fn __runbook_seed__() {}")
        .unwrap_or_default();
    for (name, arity) in &names {
        let only = seed.merge_filtered(&functions, |_, _, _, candidate, candidate_arity| {
            candidate == name && candidate_arity == *arity
        });
        parts.push((Some(name.clone()), only));
    }
    let in_step = |nodes: &[ASTNode]| {
        nodes[..nodes.len().saturating_sub(1)]
            .iter()
            .any(|node| match node {
                ASTNode::Expr(Expr::FnCall(call, _)) | ASTNode::Stmt(Stmt::FnCall(call, _)) => {
                    call.namespace.is_empty() && STEP_LIKE.contains(&call.name.as_str())
                }
                _ => false,
            })
    };
    // closure → (where it is referenced from, whether inside a step there)
    let mut references: Vec<(String, Option<String>, bool)> = Vec::new();
    // (write, position, owner, inside a step there)
    let mut writes: Vec<(String, Position, Option<String>, bool)> = Vec::new();
    for (owner, part) in &parts {
        part.walk(&mut |nodes: &[ASTNode]| {
            match nodes.last() {
                Some(ASTNode::Expr(Expr::DynamicConstant(value, _))) => {
                    if let Some(pointer) = value.read_lock::<rhai::FnPtr>() {
                        references.push((
                            pointer.fn_name().to_owned(),
                            owner.clone(),
                            in_step(nodes),
                        ));
                    }
                }
                Some(ASTNode::Expr(Expr::FnCall(call, position)))
                | Some(ASTNode::Stmt(Stmt::FnCall(call, position))) => {
                    let name = format!("{}::{}", call.namespace, call.name);
                    if !call.namespace.is_empty() && known.writes.contains(&name) {
                        writes.push((name, *position, owner.clone(), in_step(nodes)));
                    }
                }
                _ => {}
            }
            true
        });
    }
    // Named functions are covered (their callers decide); closures are
    // covered once a covered place hands them over.
    let mut covered: HashSet<String> = names
        .iter()
        .map(|(name, _)| name)
        .filter(|name| !name.starts_with("anon$"))
        .cloned()
        .collect();
    loop {
        let before = covered.len();
        for (closure, from, stepped) in &references {
            let from_covered = from.as_ref().is_some_and(|from| covered.contains(from));
            if *stepped || from_covered {
                covered.insert(closure.clone());
            }
        }
        if covered.len() == before {
            break;
        }
    }
    writes
        .into_iter()
        .filter(|(_, _, owner, stepped)| {
            !stepped && !owner.as_ref().is_some_and(|owner| covered.contains(owner))
        })
        .map(|(name, position, ..)| {
            Diagnostic::new(
                format!("`{name}` is a write outside any step: it is not part of a step's journal record, cannot be retried, and has no place for an `on_rollback`"),
                Exit::Usage,
            )
            .at(position)
            .hint(format!("wrap it in a step: `step(\"what it does\", || {{ {name}(...); }});`"))
        })
        .collect()
}

/// Rhai's string methods that change the string and return `()`.
const IN_PLACE: &[&str] = &[
    "replace",
    "trim",
    "make_upper",
    "make_lower",
    "pad",
    "truncate",
    "crop",
];

/// The in-place string method whose result `expr` is (`b.replace(..)`,
/// `r.stdout.trim()`), with its position.
fn in_place_call(expr: &Expr) -> Option<(String, rhai::Position)> {
    match expr {
        Expr::Dot(binary, ..) => in_place_call(&binary.rhs),
        Expr::MethodCall(call, position) if IN_PLACE.contains(&call.name.as_str()) => {
            Some((call.name.to_string(), *position))
        }
        _ => None,
    }
}
