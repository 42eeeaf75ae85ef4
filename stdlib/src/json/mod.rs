//! `json::*`: parsing and writing JSON. Writing a value that holds a secret
//! gives a secret, so the text stays masked.

use rhai::Dynamic;

use crate::function;
use crate::function::{Call, Failure, Function, Text};
use crate::host::StdlibError;
use crate::values::{contains_secret, from_json, from_json_secret, to_json};

/// Text built from `value`: a secret if any part of `value` is one.
pub(crate) fn text_result(call: &Call<'_>, value: &Dynamic, text: String) -> Dynamic {
    if contains_secret(value) {
        Dynamic::from(call.secret(text))
    } else {
        Dynamic::from(text)
    }
}

/// A parsed document as a Rhai value: when the text was a secret, every
/// string in it is a secret too (`json::parse(secret("db")).password`).
pub(crate) fn parsed(call: &Call<'_>, text: &Text, value: serde_json::Value) -> Dynamic {
    if text.is_secret() {
        from_json_secret(value, &mut |string| call.secret(string))
    } else {
        from_json(value)
    }
}

fn parse_json(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let text = call.text(0)?;
    let value: serde_json::Value = serde_json::from_str(&text.expose()).map_err(|error| {
        StdlibError::failed(
            format!("not valid JSON: {error}"),
            "check the text with `log::info(text)`; `json::parse` needs one JSON document",
        )
    })?;
    Ok(parsed(call, &text, value))
}

pub(crate) fn functions() -> Vec<Function> {
    vec![
        function! {
            /// Parse JSON text into maps, arrays, strings and numbers (`null` becomes `()`).
            /// Parsing a secret gives secrets: every string in the result is one.
            ///
            /// ```rhai
            /// let v = json::parse(`{"replicas": 3}`);
            /// assert(v.replicas == 3, "parse failed");
            /// ```
            local fn json::parse("text: string") -> "any"
            parse_json
        },
        function! {
            /// Write a value as JSON. Options: `pretty` (default false).
            ///
            /// ```rhai
            /// let text = json::stringify(#{replicas: 3});
            /// ```
            local fn json::stringify("value: any", "opts?: map") -> "string"
            |call| {
                let value = call.arg(0);
                let pretty = call.options(1, &["pretty"])?.bool("pretty")?.unwrap_or(false);
                let json = to_json(&value, true);
                let text = if pretty { serde_json::to_string_pretty(&json) } else { serde_json::to_string(&json) }
                    .map_err(|error| StdlibError::message(format!("cannot write JSON: {error}")))?;
                Ok(text_result(call, &value, text))
            }
        },
    ]
}
