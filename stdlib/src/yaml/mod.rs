//! `yaml::*`: parsing and writing YAML (Kubernetes manifests, configs).
//! Writing a value that holds a secret gives a secret, so the text stays masked.

use rhai::Dynamic;

use crate::function;
use crate::function::{Call, Failure, Function};
use crate::host::StdlibError;
use crate::json::{parsed, text_result};
use crate::values::to_json;

fn parse_yaml(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let text = call.text(0)?;
    let value: serde_json::Value = serde_saphyr::from_str(&text.expose()).map_err(|error| {
        StdlibError::failed(
            format!("not valid YAML: {error}"),
            "`yaml::parse` reads one YAML document",
        )
    })?;
    Ok(parsed(call, &text, value))
}

pub(crate) fn functions() -> Vec<Function> {
    vec![
        function! {
            /// Parse one YAML document (e.g. a Kubernetes manifest) into a value.
            /// Parsing a secret gives secrets: every string in the result is one.
            ///
            /// ```rhai
            /// let v = yaml::parse("kind: Deployment\nspec:\n  replicas: 2\n");
            /// assert(v.spec.replicas == 2, "parse failed");
            /// ```
            local fn yaml::parse("text: string") -> "any"
            parse_yaml
        },
        function! {
            /// Write a value as YAML.
            ///
            /// ```rhai
            /// let text = yaml::stringify(#{kind: "ConfigMap", data: #{a: "1"}});
            /// ```
            local fn yaml::stringify("value: any") -> "string"
            |call| {
                let value = call.arg(0);
                let text = serde_saphyr::to_string(&to_json(&value, true))
                    .map_err(|error| StdlibError::message(format!("cannot write YAML: {error}")))?;
                Ok(text_result(call, &value, text))
            }
        },
    ]
}
