//! Installation and the gate: every function is registered into the engine
//! wrapped so that the [`Host`] decides on each call before its body runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, FnNamespace, FuncRegistration, Module, NativeCallContext};

use super::{Call, Failure, Function};
use crate::host::{CallInfo, Decision, Effect, Host, Outcome, StdlibError};
use crate::values;

/// Register `functions` into `engine`, each wrapped so that `host` decides on
/// every call. Functions of one module become a static module (`shell::run`);
/// built-ins (module `""`) are global.
pub fn install(engine: &mut Engine, host: &Arc<dyn Host>, functions: &[Function]) {
    values::register_types(engine);
    let mut modules: BTreeMap<&'static str, Module> = BTreeMap::new();
    for function in functions {
        let module = modules.entry(function.module).or_default();
        for arity in function.arities() {
            register_one(module, host, function, arity);
        }
    }
    for (name, module) in modules {
        if name.is_empty() {
            engine.register_global_module(module.into());
        } else {
            engine.register_static_module(name, module.into());
        }
    }
}

fn register_one(module: &mut Module, host: &Arc<dyn Host>, function: &Function, arity: usize) {
    let host = Arc::clone(host);
    let spec = function.clone();
    let wrapper = move |context: Option<NativeCallContext>, args: &mut [&mut Dynamic]| {
        let context = context.ok_or_else(|| {
            StdlibError::message("internal: call without a context").into_rhai(rhai::Position::NONE)
        })?;
        let args: Vec<Dynamic> = args.iter().map(|arg| (**arg).clone()).collect();
        gate(host.as_ref(), &context, &spec, args)
    };
    let mut params: Vec<String> = function
        .form(arity)
        .unwrap_or_default()
        .iter()
        .take(arity)
        .map(|param| format!("{}: {}", param.name, param.ty))
        .collect();
    params.push(function.returns.to_owned());
    let comments: Vec<String> = function
        .doc
        .lines()
        .map(|line| format!("///{line}"))
        .collect();
    FuncRegistration::new(function.name)
        .with_namespace(FnNamespace::Internal)
        .with_params_info(params)
        .with_comments([comments.join("\n")])
        .set_into_module_raw(
            module,
            vec![std::any::TypeId::of::<Dynamic>(); arity],
            rhai::RhaiFunc::Pure {
                func: rhai::Shared::new(wrapper),
                has_context: true,
                is_pure: true,
                is_volatile: true,
            },
        );
}

/// The gate: the host decides, the body runs only when told to, the outcome is reported.
fn gate(
    host: &dyn Host,
    context: &NativeCallContext,
    function: &Function,
    args: Vec<Dynamic>,
) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
    let position = context.call_position();
    // A secret derived in the script (`s.sub_string(0, 8)`, `s.to_upper()`)
    // is registered for masking when it is handed to a call, before any
    // process or server sees it and can echo it.
    for arg in &args {
        values::each_secret_text(arg, &mut |text| host.redactor().add(text));
    }
    let info = CallInfo {
        function: function.qualified_name(),
        effect: function.effect,
        args: args
            .iter()
            .map(|arg| values::render_masked(arg, host.redactor()))
            .collect(),
        values: args
            .iter()
            .map(|arg| values::to_json_masked(arg, host.redactor()))
            .collect(),
        position,
        has_preview: function.preview.is_some(),
    };
    // A local function handed a value only the run will know (an offline
    // dry-run's unknown read) cannot compute its result either: the result is
    // unknown too, named by the call. Logging and the built-ins (`is_unknown`,
    // `fail`) see the unknown itself.
    if function.effect == Effect::Local
        && !matches!(function.module, "" | "log")
        && args.iter().any(crate::unknown::holds_unknown)
    {
        return Ok(Dynamic::from(crate::unknown::Unknown::new(
            info.signature(),
        )));
    }
    let decision = host.decide(&info, &|| values::placeholder(function.returns));
    let body = match (&decision, &function.preview) {
        (Decision::Deny(error), _) => {
            host.finished(&info, Outcome::Err(&error.to_string()), Duration::ZERO);
            return Err(error.clone().into_rhai(position));
        }
        (Decision::Skip(value), _) => {
            // Not run, but its arguments are checked as a run would: a
            // dry-run fails where the live run would.
            if let Some(error) = wrong_argument(function, &args) {
                host.finished(&info, Outcome::Err(&error.to_string()), Duration::ZERO);
                return Err(error.into_rhai(position));
            }
            host.finished(&info, Outcome::Skipped, Duration::ZERO);
            return Ok(value.clone());
        }
        (Decision::Preview, Some(preview)) => preview,
        _ => &function.body,
    };
    let started = Instant::now();
    let mut call = Call {
        host,
        context,
        function,
        args,
    };
    let result = body(&mut call);
    let elapsed = started.elapsed();
    match &result {
        Ok(value) if matches!(decision, Decision::Preview) => {
            host.finished(&info, Outcome::Previewed(value), elapsed);
        }
        Ok(value) => host.finished(&info, Outcome::Ok(value), elapsed),
        Err(failure) => host.finished(&info, Outcome::Err(&failure.message()), elapsed),
    }
    result.map_err(|failure| match failure {
        Failure::Stdlib(error) => error.into_rhai(position),
        Failure::Script(error) => error,
    })
}

/// The first argument whose type the function's declaration does not accept.
fn wrong_argument(function: &Function, args: &[Dynamic]) -> Option<StdlibError> {
    let form = function.form(args.len())?;
    form.iter().zip(args).find_map(|(param, value)| {
        let fits = values::accepts(param.ty, value) || (param.optional && value.is_unit());
        (!fits).then(|| StdlibError::Argument {
            function: function.qualified_name(),
            name: param.name.to_owned(),
            problem: format!("must be {}, got {}", param.ty, values::type_name(value)),
        })
    })
}
