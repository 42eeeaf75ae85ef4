//! Values crossing between Rhai and Rust: how arguments are shown, what a
//! skipped call evaluates to, the `Secret` and `Error` script types, and JSON.

use std::time::Duration;

use rhai::{Array, Dynamic, Engine, ImmutableString, Map};

use crate::host::{Secret, StdlibError};

/// A type name for error messages: "a string", "an integer", "a map".
pub fn type_name(value: &Dynamic) -> &'static str {
    if value.is_unit() {
        "nothing `()`"
    } else if value.is_string() {
        "a string"
    } else if value.is_int() {
        "an integer"
    } else if value.is_float() {
        "a float"
    } else if value.is_bool() {
        "a boolean"
    } else if value.is_array() {
        "an array"
    } else if value.is_map() {
        "a map"
    } else if value.is_fnptr() {
        "a function"
    } else if value.is::<Secret>() {
        "a secret"
    } else if value.is::<crate::unknown::Unknown>() {
        "a value unknown until the run (offline dry-run)"
    } else if value.is_blob() {
        "a blob"
    } else {
        "a value of another type"
    }
}

const MAX_RENDERED: usize = 200;

/// Render an argument for plans, the journal and errors: strings quoted,
/// secrets as `***`, long values shortened.
pub fn render(value: &Dynamic) -> String {
    render_masked(value, &crate::redact::Redactor::new())
}

/// [`render`] with every string masked before it is quoted or shortened,
/// so neither escaping nor the cut can leave part of a secret showing.
pub fn render_masked(value: &Dynamic, redactor: &crate::redact::Redactor) -> String {
    let mut out = String::new();
    render_into(value, &mut out, 0, redactor);
    if out.chars().count() > MAX_RENDERED {
        let cut: String = out.chars().take(MAX_RENDERED).collect();
        format!("{cut}…")
    } else {
        out
    }
}

fn render_into(
    value: &Dynamic,
    out: &mut String,
    depth: usize,
    redactor: &crate::redact::Redactor,
) {
    if depth > 4 {
        out.push('…');
        return;
    }
    if let Some(secret) = value.read_lock::<Secret>() {
        out.push_str(&secret.to_string());
    } else if let Some(unknown) = value.read_lock::<crate::unknown::Unknown>() {
        out.push_str(&redactor.mask(&unknown.to_string()));
    } else if value.is_string() {
        let text = value.clone().into_string().unwrap_or_default();
        let text = redactor.mask(&text).into_owned();
        out.push_str(&serde_json::Value::String(text).to_string());
    } else if let Some(array) = value.read_lock::<Array>() {
        out.push('[');
        for (index, item) in array.iter().enumerate() {
            if index > 0 {
                out.push_str(", ");
            }
            render_into(item, out, depth + 1, redactor);
        }
        out.push(']');
    } else if let Some(map) = value.read_lock::<Map>() {
        out.push_str("#{");
        for (index, (key, item)) in map.iter().enumerate() {
            if index > 0 {
                out.push_str(", ");
            }
            out.push_str(&redactor.mask(key));
            out.push_str(": ");
            render_into(item, out, depth + 1, redactor);
        }
        out.push('}');
    } else if value.is_fnptr() {
        out.push_str("<closure>");
    } else if value.is_unit() {
        out.push_str("()");
    } else {
        out.push_str(&value.to_string());
    }
}

/// The value a call evaluates to when it is not run (a dry-run write, an
/// offline read without fixture): the zero value of its declared return type.
///
/// Notation: `()`, `string`, `int`, `float`, `bool`, `secret`, `blob`,
/// `array` or `array<T>`, `map`, `#{name: T, ...}`; a union `A | B` takes `A`.
pub fn placeholder(returns: &str) -> Dynamic {
    let returns = returns.trim();
    let first = split_top_level(returns, '|')
        .into_iter()
        .next()
        .unwrap_or_default();
    let ty = first.trim();
    if let Some(fields) = ty
        .strip_prefix("#{")
        .and_then(|rest| rest.strip_suffix('}'))
    {
        let mut map = Map::new();
        for field in split_top_level(fields, ',') {
            if let Some((name, field_ty)) = field.split_once(':') {
                map.insert(name.trim().into(), placeholder(field_ty));
            }
        }
        return Dynamic::from_map(map);
    }
    match ty {
        "string" => Dynamic::from(ImmutableString::new()),
        "int" => Dynamic::from_int(0),
        "float" => Dynamic::from_float(0.0),
        "bool" => Dynamic::FALSE,
        "secret" => Dynamic::from(Secret::new("")),
        "blob" => Dynamic::from_blob(Vec::new()),
        "map" => Dynamic::from_map(Map::new()),
        _ if ty.starts_with("array") => Dynamic::from_array(Array::new()),
        _ => Dynamic::UNIT,
    }
}

/// The simple types of the return-type notation.
const SIMPLE_TYPES: &[&str] = &[
    "()", "string", "int", "float", "bool", "secret", "blob", "map", "array", "any", "closure",
];

/// Whether `text` is a return type in the notation [`placeholder`] reads;
/// the error says what does not parse.
pub fn check_shape(text: &str) -> Result<(), String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("an empty type".into());
    }
    let mut depth: i64 = 0;
    for c in text.chars() {
        match c {
            '{' | '<' | '[' => depth += 1,
            '}' | '>' | ']' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return Err(format!("`{c}` closes nothing"));
        }
    }
    if depth != 0 {
        return Err("a bracket is not closed".into());
    }
    let alternatives = split_top_level(text, '|');
    if alternatives.len() > 1 {
        return alternatives.into_iter().try_for_each(check_shape);
    }
    if let Some(fields) = text
        .strip_prefix("#{")
        .and_then(|rest| rest.strip_suffix('}'))
    {
        for field in split_top_level(fields, ',') {
            let Some((name, ty)) = field.split_once(':') else {
                return Err(format!("field `{}` has no `: type`", field.trim()));
            };
            if !rhai::is_valid_identifier(name.trim()) {
                return Err(format!("`{}` is not a field name", name.trim()));
            }
            check_shape(ty)?;
        }
        return Ok(());
    }
    if let Some(item) = text
        .strip_prefix("array<")
        .and_then(|rest| rest.strip_suffix('>'))
    {
        return check_shape(item);
    }
    if SIMPLE_TYPES.contains(&text) {
        Ok(())
    } else {
        Err(format!(
            "unknown type `{text}` (known: {})",
            SIMPLE_TYPES.join(", ")
        ))
    }
}

fn split_top_level(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (index, c) in text.char_indices() {
        match c {
            '{' | '<' | '[' => depth += 1,
            '}' | '>' | ']' => depth = depth.saturating_sub(1),
            c if c == separator && depth == 0 => {
                parts.push(&text[start..index]);
                start = index + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// A duration from `"30s"`-style text or a number of seconds.
pub fn to_duration(value: &Dynamic) -> Result<Duration, String> {
    if let Ok(seconds) = value.as_int() {
        return u64::try_from(seconds)
            .map(Duration::from_secs)
            .map_err(|_| format!("must not be negative, got {seconds}"));
    }
    if let Ok(seconds) = value.as_float() {
        return Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("must be a positive number of seconds, got {seconds}"));
    }
    match value.clone().into_string() {
        Ok(text) => crate::duration::parse(&text),
        Err(_) => Err(format!(
            "must be a duration like \"30s\", got {}",
            type_name(value)
        )),
    }
}

/// Whether a value is, or holds, a secret.
pub fn contains_secret(value: &Dynamic) -> bool {
    if value.is::<Secret>() {
        return true;
    }
    if let Some(array) = value.read_lock::<Array>() {
        return array.iter().any(contains_secret);
    }
    if let Some(map) = value.read_lock::<Map>() {
        return map.values().any(contains_secret);
    }
    false
}

/// Call `found` with the text of every secret part inside `value`.
pub fn each_secret_text(value: &Dynamic, found: &mut dyn FnMut(&str)) {
    if let Some(secret) = value.read_lock::<Secret>() {
        secret.secret_texts().for_each(found);
    } else if let Some(array) = value.read_lock::<Array>() {
        for item in array.iter() {
            each_secret_text(item, found);
        }
    } else if let Some(map) = value.read_lock::<Map>() {
        for item in map.values() {
            each_secret_text(item, found);
        }
    }
}

/// Convert JSON into a Rhai value.
pub fn from_json(value: serde_json::Value) -> Dynamic {
    from_json_with(value, &mut |text| Dynamic::from(text))
}

/// Convert JSON parsed from a secret into a Rhai value: every string in it
/// becomes a secret (made by `secret`, which also registers it for masking);
/// keys, numbers and booleans stay plain.
pub fn from_json_secret(
    value: serde_json::Value,
    secret: &mut dyn FnMut(String) -> Secret,
) -> Dynamic {
    from_json_with(value, &mut |text| Dynamic::from(secret(text)))
}

/// Convert JSON into a Rhai value, each string made by `string`.
pub fn from_json_with(
    value: serde_json::Value,
    string: &mut dyn FnMut(String) -> Dynamic,
) -> Dynamic {
    match value {
        serde_json::Value::Null => Dynamic::UNIT,
        serde_json::Value::Bool(b) => Dynamic::from_bool(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => string(s),
        serde_json::Value::Array(items) => Dynamic::from_array(
            items
                .into_iter()
                .map(|item| from_json_with(item, string))
                .collect(),
        ),
        serde_json::Value::Object(fields) => Dynamic::from_map(
            fields
                .into_iter()
                .map(|(key, value)| (key.into(), from_json_with(value, string)))
                .collect(),
        ),
    }
}

/// Convert a Rhai value into JSON. Secrets become `"***"` unless `expose` is
/// set (for bodies sent to servers that need the value).
pub fn to_json(value: &Dynamic, expose: bool) -> serde_json::Value {
    if let Some(secret) = value.read_lock::<Secret>() {
        let text = if expose {
            secret.expose()
        } else {
            secret.to_string()
        };
        return serde_json::Value::String(text);
    }
    if let Some(unknown) = value.read_lock::<crate::unknown::Unknown>() {
        return serde_json::Value::String(unknown.to_string());
    }
    if value.is_unit() {
        serde_json::Value::Null
    } else if let Ok(b) = value.as_bool() {
        serde_json::Value::Bool(b)
    } else if let Ok(i) = value.as_int() {
        serde_json::Value::from(i)
    } else if let Ok(f) = value.as_float() {
        serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, serde_json::Value::Number)
    } else if value.is_string() {
        serde_json::Value::String(value.clone().into_string().unwrap_or_default())
    } else if let Some(array) = value.read_lock::<Array>() {
        serde_json::Value::Array(array.iter().map(|item| to_json(item, expose)).collect())
    } else if let Some(map) = value.read_lock::<Map>() {
        serde_json::Value::Object(
            map.iter()
                .map(|(key, item)| (key.to_string(), to_json(item, expose)))
                .collect(),
        )
    } else if let Some(blob) = value.read_lock::<rhai::Blob>() {
        serde_json::Value::String(String::from_utf8_lossy(&blob).into_owned())
    } else {
        serde_json::Value::String(value.to_string())
    }
}

/// Above this many bytes of JSON text, an argument is shown by its size and
/// first characters instead ([`to_json_masked`]).
pub const MAX_JSON_ARGUMENT: usize = 1 << 20;

/// An argument as JSON for machines: secrets as `***`, every string (and
/// key) masked, closures as `"<closure>"`. Nothing is shortened up to
/// [`MAX_JSON_ARGUMENT`] bytes; a bigger value is replaced, explicitly, by
/// `{"$cut": {"bytes": N, "head": "<first 4096 characters of its JSON>"}}`.
pub fn to_json_masked(value: &Dynamic, redactor: &crate::redact::Redactor) -> serde_json::Value {
    let json = masked_json(value, redactor, 0);
    let text = json.to_string();
    if text.len() <= MAX_JSON_ARGUMENT {
        return json;
    }
    let head: String = text.chars().take(4096).collect();
    serde_json::json!({"$cut": {"bytes": text.len(), "head": head}})
}

fn masked_json(
    value: &Dynamic,
    redactor: &crate::redact::Redactor,
    depth: usize,
) -> serde_json::Value {
    use serde_json::Value;
    // Deeper than any manifest; a cycle through shared values cannot recurse forever.
    if depth > 64 {
        return Value::String("<too deep>".to_owned());
    }
    if let Some(secret) = value.read_lock::<Secret>() {
        return Value::String(secret.to_string());
    }
    if let Some(unknown) = value.read_lock::<crate::unknown::Unknown>() {
        return Value::String(redactor.mask(&unknown.to_string()).into_owned());
    }
    if value.is_string() {
        let text = value.clone().into_string().unwrap_or_default();
        return Value::String(redactor.mask(&text).into_owned());
    }
    if let Some(array) = value.read_lock::<Array>() {
        return Value::Array(
            array
                .iter()
                .map(|item| masked_json(item, redactor, depth + 1))
                .collect(),
        );
    }
    if let Some(map) = value.read_lock::<Map>() {
        return Value::Object(
            map.iter()
                .map(|(key, item)| {
                    (
                        redactor.mask(key).into_owned(),
                        masked_json(item, redactor, depth + 1),
                    )
                })
                .collect(),
        );
    }
    if value.is_fnptr() {
        return Value::String("<closure>".to_owned());
    }
    if let Some(blob) = value.read_lock::<rhai::Blob>() {
        return serde_json::json!({"$blob": {"bytes": blob.len()}});
    }
    match to_json(value, false) {
        Value::String(text) => Value::String(redactor.mask(&text).into_owned()),
        other => other,
    }
}

/// Register the script-visible types: `Secret` (prints as `***`, `+` with a
/// string gives a secret) and `Error` (what `catch (e)` sees for stdlib errors).
pub fn register_types(engine: &mut Engine) {
    engine
        .register_type_with_name::<Secret>("Secret")
        .register_fn("to_string", |secret: &mut Secret| secret.to_string())
        .register_fn("to_debug", |secret: &mut Secret| secret.to_string())
        .register_fn("len", |secret: &mut Secret| {
            i64::try_from(secret.expose().chars().count()).unwrap_or(i64::MAX)
        })
        .register_fn("is_empty", |secret: &mut Secret| secret.expose().is_empty())
        .register_fn("+", |left: Secret, right: ImmutableString| {
            left.append(&right)
        })
        .register_fn("+", |left: ImmutableString, right: Secret| {
            right.prepend(&left)
        })
        .register_fn("+", |left: Secret, right: Secret| left.concat(&right))
        .register_fn("+", |left: Secret, right: i64| {
            left.append(&right.to_string())
        })
        .register_fn("+", |left: i64, right: Secret| {
            right.prepend(&left.to_string())
        })
        .register_fn("==", |left: Secret, right: Secret| {
            left.expose() == right.expose()
        })
        .register_fn("==", |left: Secret, right: ImmutableString| {
            left.expose() == right.as_str()
        })
        .register_fn("!=", |left: Secret, right: ImmutableString| {
            left.expose() != right.as_str()
        })
        .register_fn("!=", |left: Secret, right: Secret| {
            left.expose() != right.expose()
        });
    register_secret_strings(engine);
    crate::unknown::register(engine);
    engine
        .register_type_with_name::<StdlibError>("Error")
        .register_fn("to_string", |error: &mut StdlibError| error.to_string())
        .register_fn("to_debug", |error: &mut StdlibError| error.to_string())
        .register_get("message", |error: &mut StdlibError| error.to_string())
        .register_get("hint", |error: &mut StdlibError| {
            error
                .hint()
                .map_or(Dynamic::UNIT, |hint| Dynamic::from(hint.to_owned()))
        });
}

/// A secret derived from another by a string function: wholly secret (the
/// runtime registers its text for masking when it is handed to a call).
fn derived(text: impl Into<std::sync::Arc<str>>) -> Secret {
    Secret::new(text)
}

fn char_range(text: &str, start: i64, len: Option<i64>) -> String {
    let count = i64::try_from(text.chars().count()).unwrap_or(i64::MAX);
    let start = if start < 0 {
        (count + start).max(0)
    } else {
        start.min(count)
    };
    let len = len.unwrap_or(count - start).clamp(0, count - start);
    text.chars()
        .skip(usize::try_from(start).unwrap_or(0))
        .take(usize::try_from(len).unwrap_or(0))
        .collect()
}

/// String functions on a secret give secrets: `to_upper`, `sub_string`,
/// `split`, `trim`, `replace`... never the plain text.
fn register_secret_strings(engine: &mut Engine) {
    engine
        .register_fn("to_upper", |secret: &mut Secret| {
            derived(secret.expose().to_uppercase())
        })
        .register_fn("to_lower", |secret: &mut Secret| {
            derived(secret.expose().to_lowercase())
        })
        .register_fn("make_upper", |secret: &mut Secret| {
            *secret = derived(secret.expose().to_uppercase());
        })
        .register_fn("make_lower", |secret: &mut Secret| {
            *secret = derived(secret.expose().to_lowercase());
        })
        .register_fn("trim", |secret: &mut Secret| {
            *secret = derived(secret.expose().trim());
        })
        .register_fn("trimmed", |secret: &mut Secret| {
            derived(secret.expose().trim())
        })
        .register_fn("sub_string", |secret: &mut Secret, start: i64, len: i64| {
            derived(char_range(&secret.expose(), start, Some(len)))
        })
        .register_fn("sub_string", |secret: &mut Secret, start: i64| {
            derived(char_range(&secret.expose(), start, None))
        })
        .register_fn("crop", |secret: &mut Secret, start: i64, len: i64| {
            *secret = derived(char_range(&secret.expose(), start, Some(len)));
        })
        .register_fn("crop", |secret: &mut Secret, start: i64| {
            *secret = derived(char_range(&secret.expose(), start, None));
        })
        .register_fn("truncate", |secret: &mut Secret, len: i64| {
            *secret = derived(char_range(&secret.expose(), 0, Some(len)));
        })
        .register_fn(
            "split",
            |secret: &mut Secret, separator: ImmutableString| {
                secret
                    .expose()
                    .split(separator.as_str())
                    .map(|part| Dynamic::from(derived(part)))
                    .collect::<Array>()
            },
        )
        .register_fn("split", |secret: &mut Secret| {
            secret
                .expose()
                .split_whitespace()
                .map(|part| Dynamic::from(derived(part)))
                .collect::<Array>()
        })
        .register_fn("lines", |secret: &mut Secret| {
            secret
                .expose()
                .lines()
                .map(|part| Dynamic::from(derived(part)))
                .collect::<Array>()
        })
        .register_fn(
            "replace",
            |secret: &mut Secret, find: ImmutableString, with: ImmutableString| {
                *secret = derived(secret.expose().replace(find.as_str(), with.as_str()));
            },
        )
        .register_fn("contains", |secret: &mut Secret, find: ImmutableString| {
            secret.expose().contains(find.as_str())
        })
        .register_fn(
            "starts_with",
            |secret: &mut Secret, find: ImmutableString| secret.expose().starts_with(find.as_str()),
        )
        .register_fn("ends_with", |secret: &mut Secret, find: ImmutableString| {
            secret.expose().ends_with(find.as_str())
        })
        .register_fn("+=", |secret: &mut Secret, plain: ImmutableString| {
            *secret = secret.append(&plain);
        })
        .register_fn("+=", |secret: &mut Secret, other: Secret| {
            *secret = secret.concat(&other);
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_functions_on_a_secret_give_secrets() {
        let mut engine = Engine::new();
        register_types(&mut engine);
        let mut scope = rhai::Scope::new();
        scope.push("s", Secret::new("Hunter2-Secret value"));
        for script in [
            "s.to_upper()",
            "s.to_lower()",
            "s.sub_string(0, 7)",
            "s.sub_string(3)",
            "s.split(\"-\")[0]",
            "s.split()[1]",
            "{ let t = s; t.trim(); t }",
            "{ let t = s; t.replace(\"Hunter\", \"x\"); t }",
        ] {
            let value: Dynamic = engine.eval_with_scope(&mut scope, script).unwrap();
            assert!(value.is::<Secret>(), "{script}: {}", type_name(&value));
            assert_eq!(render(&value), "***", "{script}");
        }
        let upper: Dynamic = engine.eval_with_scope(&mut scope, "s.to_upper()").unwrap();
        assert_eq!(upper.cast::<Secret>().expose(), "HUNTER2-SECRET VALUE");
    }

    #[test]
    fn json_parsed_from_a_secret_holds_secrets() {
        let value = from_json_secret(
            serde_json::json!({"user": "app", "password": "pw-123456", "port": 5432}),
            &mut |text| Secret::new(text),
        );
        let map = value.cast::<Map>();
        assert!(map["password"].is::<Secret>());
        assert!(map["user"].is::<Secret>());
        assert_eq!(map["port"].as_int().unwrap(), 5432);
    }

    #[test]
    fn return_types_are_checked() {
        for good in [
            "()",
            "string | blob",
            "#{stdout: string, code: int, items: array<map>} | ()",
            "array<#{revision: int, image: string}>",
        ] {
            assert_eq!(check_shape(good), Ok(()), "{good}");
        }
        for bad in ["", "strng", "#{a string}", "array<int", "#{a: }", "map |"] {
            assert!(check_shape(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn placeholders_follow_the_declared_shape() {
        let value = placeholder("#{stdout: string, code: int, items: array<map>} | ()");
        let map = value.cast::<Map>();
        assert_eq!(map["stdout"].clone().into_string().unwrap(), "");
        assert_eq!(map["code"].as_int().unwrap(), 0);
        assert!(map["items"].is_array());
        assert!(placeholder("()").is_unit());
        assert!(placeholder("bool").as_bool().is_ok());
    }

    #[test]
    fn renders_secrets_masked_and_strings_quoted() {
        let mut map = Map::new();
        map.insert("password".into(), Dynamic::from(Secret::new("hunter2")));
        map.insert("user".into(), Dynamic::from("app".to_owned()));
        let rendered = render(&Dynamic::from_map(map));
        assert_eq!(rendered, r#"#{password: ***, user: "app"}"#);
    }

    #[test]
    fn json_round_trip_masks_secrets_unless_exposed() {
        let value = Dynamic::from(Secret::new("s3cr3t"));
        assert_eq!(to_json(&value, false), serde_json::json!("***"));
        assert_eq!(to_json(&value, true), serde_json::json!("s3cr3t"));
        let parsed = from_json(serde_json::json!({"a": [1, 2.5, true, null]}));
        assert_eq!(
            to_json(&parsed, false),
            serde_json::json!({"a": [1, 2.5, true, null]})
        );
    }
}

/// Whether `value` can be an argument of declared type `ty` (the notation of
/// [`placeholder`]: `string`, `int`, `map`, `array<...>`, `secret`, `()`,
/// unions with `|`). Lenient where it cannot know: `any`, unknown type
/// names, and values of types other than Rhai's own (placeholders) pass.
pub fn accepts(ty: &str, value: &Dynamic) -> bool {
    let known = value.is_string()
        || value.is_int()
        || value.is_float()
        || value.is_bool()
        || value.is_unit()
        || value.is_array()
        || value.is_map()
        || value.is::<rhai::FnPtr>()
        || value.is::<Secret>()
        || value.is::<rhai::Blob>();
    if !known {
        return true;
    }
    split_union(ty).into_iter().any(|alternative| {
        let alternative = alternative.trim();
        let base = alternative.split('<').next().unwrap_or_default().trim();
        match base {
            "any" | "" => true,
            // Most string parameters take a secret too (`call.text`).
            "string" => value.is_string() || value.is::<Secret>(),
            "secret" => value.is::<Secret>(),
            "int" => value.is_int(),
            "float" => value.is_float() || value.is_int(),
            "bool" => value.is_bool(),
            "()" => value.is_unit(),
            "array" => value.is_array(),
            "map" => value.is_map(),
            "closure" | "fn" => value.is::<rhai::FnPtr>(),
            "blob" => value.is::<rhai::Blob>(),
            _ if base.starts_with("#{") => value.is_map(),
            _ => true,
        }
    })
}

/// `a | array<b | c> | #{x: d | e}` → its top-level alternatives.
fn split_union(ty: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (index, character) in ty.char_indices() {
        match character {
            '<' | '{' | '(' => depth += 1,
            '>' | '}' | ')' => depth = depth.saturating_sub(1),
            '|' if depth == 0 => {
                parts.push(&ty[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&ty[start..]);
    parts
}

#[cfg(test)]
mod accepts_tests {
    use super::*;

    #[test]
    fn declared_types_accept_their_values_only() {
        assert!(!accepts("string | array", &Dynamic::from_bool(true)));
        assert!(accepts("string | array", &Dynamic::from("x".to_owned())));
        assert!(accepts("array<map>", &Dynamic::from_array(Vec::new())));
        assert!(!accepts("map", &Dynamic::from_int(1)));
        assert!(accepts("#{a: int}", &Dynamic::from_map(Map::new())));
        assert!(accepts("string | secret | map | ()", &Dynamic::UNIT));
        assert!(accepts("any", &Dynamic::from_bool(true)));
    }
}
