//! `unknown`: what an offline dry-run's read evaluates to when no fixture
//! answers it. It names the read (`<k8s::get("deployment", "backend")>`) so a
//! plan never shows a made-up value, and it keeps the script going the way
//! the real value would: any property or index gives a nested unknown
//! (`<k8s::get("deployment", "backend").spec.replicas>`), `+` with a string
//! gives the text with the name in it, arithmetic gives another unknown, and
//! a loop over it runs zero times.
//!
//! Comparisons (`==`, `<`, ...) with an unknown are `false` (`!=` is `true`):
//! the branch a plan takes on an unknown value is marked "unknown until run".

use rhai::{Dynamic, Engine, FLOAT, INT, ImmutableString};

/// A value only the run will know (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    /// The read, and the path into its value: `k8s::get("pod", "x").status`.
    path: String,
}

impl Unknown {
    /// The unknown result of `path` (a call's signature).
    pub fn new(path: impl Into<String>) -> Unknown {
        Unknown { path: path.into() }
    }

    /// The read and path it stands for, without the brackets.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn field(&self, name: &str) -> Unknown {
        Unknown::new(format!("{}.{name}", self.path))
    }

    fn operation(&self, op: &str, other: &str) -> Unknown {
        Unknown::new(format!("{} {op} {other}", self.path))
    }
}

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{}>", self.path)
    }
}

impl IntoIterator for Unknown {
    type Item = Dynamic;
    type IntoIter = std::iter::Empty<Dynamic>;

    /// A loop over an unknown collection runs zero times.
    fn into_iter(self) -> Self::IntoIter {
        std::iter::empty()
    }
}

/// Whether `text` is the name a dry-run gives a string it cannot know:
/// `<k8s::image("backend")>`, `<shell::run("mktemp -d").stdout>`.
pub fn is_placeholder_text(text: &str) -> bool {
    let Some(inner) = text
        .strip_prefix('<')
        .and_then(|rest| rest.strip_suffix('>'))
    else {
        return false;
    };
    let Some((module, rest)) = inner.split_once("::") else {
        return false;
    };
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    !module.is_empty()
        && module
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.is_empty()
        && rest[name.len()..].starts_with('(')
}

/// Whether `value` is, or holds (in an array or map), an unknown (or a
/// string that is a dry-run's name for one, see [`is_placeholder_text`]).
pub fn holds_unknown(value: &Dynamic) -> bool {
    if value.is::<Unknown>() {
        return true;
    }
    if let Some(text) = value.read_lock::<ImmutableString>() {
        return is_placeholder_text(&text);
    }
    if let Some(array) = value.read_lock::<rhai::Array>() {
        return array.iter().any(holds_unknown);
    }
    if let Some(map) = value.read_lock::<rhai::Map>() {
        return map.values().any(holds_unknown);
    }
    false
}

/// Register the `unknown` type and its operators.
pub fn register(engine: &mut Engine) {
    engine
        .register_type_with_name::<Unknown>("unknown")
        .register_iterator::<Unknown>()
        .register_fn("to_string", |value: &mut Unknown| value.to_string())
        .register_fn("to_debug", |value: &mut Unknown| value.to_string())
        .register_indexer_get(|value: &mut Unknown, key: ImmutableString| value.field(&key))
        .register_indexer_get(|value: &mut Unknown, index: INT| {
            Unknown::new(format!("{}[{index}]", value.path))
        })
        .register_fn("len", |value: &mut Unknown| value.field("len()"))
        .register_fn("+", |left: Unknown, right: ImmutableString| {
            format!("{left}{right}")
        })
        .register_fn("+", |left: ImmutableString, right: Unknown| {
            format!("{left}{right}")
        })
        .register_fn("+", |left: Unknown, right: Unknown| {
            format!("{left}{right}")
        })
        .register_fn("==", |_: Unknown, _: Unknown| false)
        .register_fn("!=", |_: Unknown, _: Unknown| true);
    register_with::<INT>(engine);
    register_with::<FLOAT>(engine);
    register_with::<ImmutableString>(engine);
    register_with::<bool>(engine);
    register_with::<()>(engine);
    for op in ["-", "*", "/", "%"] {
        engine
            .register_fn(op, move |left: Unknown, right: INT| {
                left.operation(op, &right.to_string())
            })
            .register_fn(op, move |left: Unknown, right: FLOAT| {
                left.operation(op, &right.to_string())
            })
            .register_fn(op, move |left: INT, right: Unknown| {
                Unknown::new(format!("{left} {op} {}", right.path))
            });
    }
    engine
        .register_fn("+", |left: Unknown, right: INT| {
            left.operation("+", &right.to_string())
        })
        .register_fn("+", |left: INT, right: Unknown| {
            Unknown::new(format!("{left} + {}", right.path))
        })
        .register_fn("+", |left: Unknown, right: FLOAT| {
            left.operation("+", &right.to_string())
        });
    register_methods(engine);
}

/// Methods scripts call on strings, arrays and maps: on an unknown, a test
/// (`starts_with`, `contains`, ...) is `false` and anything else is a nested
/// unknown naming the method (`<s3::latest("b/").key.sub_string(5)>`).
fn register_methods(engine: &mut Engine) {
    const TESTS: &[&str] = &["starts_with", "ends_with", "contains", "is_empty"];
    const VALUES: &[&str] = &[
        "sub_string",
        "split",
        "split_rev",
        "to_upper",
        "to_lower",
        "index_of",
        "parse_int",
        "parse_float",
        "keys",
        "values",
        "get",
        "chars",
        "to_json",
        "trim",
        "replace",
    ];
    for name in TESTS {
        engine
            .register_fn(*name, |_: &mut Unknown| false)
            .register_fn(*name, |_: &mut Unknown, _: Dynamic| false)
            .register_fn(*name, |_: &mut Unknown, _: Dynamic, _: Dynamic| false);
    }
    for name in VALUES {
        let method = *name;
        engine
            .register_fn(method, move |value: &mut Unknown| {
                value.field(&format!("{method}()"))
            })
            .register_fn(method, move |value: &mut Unknown, a: Dynamic| {
                value.field(&format!("{method}({})", crate::values::render(&a)))
            })
            .register_fn(
                method,
                move |value: &mut Unknown, a: Dynamic, b: Dynamic| {
                    value.field(&format!(
                        "{method}({}, {})",
                        crate::values::render(&a),
                        crate::values::render(&b)
                    ))
                },
            );
    }
}

/// Comparisons of an unknown with a known value of type `T`, both ways round.
fn register_with<T: rhai::Variant + Clone>(engine: &mut Engine) {
    for op in ["==", "<", ">", "<=", ">="] {
        engine
            .register_fn(op, |_: Unknown, _: T| false)
            .register_fn(op, |_: T, _: Unknown| false);
    }
    engine
        .register_fn("!=", |_: Unknown, _: T| true)
        .register_fn("!=", |_: T, _: Unknown| true);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        let mut engine = Engine::new();
        register(&mut engine);
        engine.register_fn("read", || {
            Unknown::new(r#"k8s::get("deployment", "backend")"#)
        });
        engine
    }

    #[test]
    fn properties_and_indexes_nest() {
        let text: String = engine()
            .eval(r#"let d = read(); `${d.spec.template.containers[0].image}`"#)
            .unwrap();
        assert_eq!(
            text,
            r#"<k8s::get("deployment", "backend").spec.template.containers[0].image>"#
        );
    }

    #[test]
    fn concatenation_keeps_the_name() {
        let text: String = engine()
            .eval(r#"let d = read(); "image: " + d.image + "!""#)
            .unwrap();
        assert_eq!(text, r#"image: <k8s::get("deployment", "backend").image>!"#);
    }

    #[test]
    fn arithmetic_loops_and_comparisons_do_not_stop_the_script() {
        let engine = engine();
        let text: String = engine
            .eval("let d = read(); (d.spec.replicas + 1).to_string()")
            .unwrap();
        assert_eq!(
            text,
            r#"<k8s::get("deployment", "backend").spec.replicas + 1>"#
        );
        let count: INT = engine
            .eval("let n = 0; for item in read().items { n += 1; } n")
            .unwrap();
        assert_eq!(count, 0);
        let branch: bool = engine
            .eval("read().status == \"ok\" || read() > 3 || read().key.starts_with(\"s3://\")")
            .unwrap();
        assert!(!branch);
        let text: String = engine
            .eval("let k = read().key; k.sub_string(5).to_string()")
            .unwrap();
        assert_eq!(
            text,
            r#"<k8s::get("deployment", "backend").key.sub_string(5)>"#
        );
        let branch: bool = engine
            .eval("read().status == \"ok\" || read() > 3")
            .unwrap();
        assert!(!branch);
        let differs: bool = engine.eval("read() != ()").unwrap();
        assert!(differs);
    }

    #[test]
    fn placeholder_texts_are_recognised_and_plain_text_is_not() {
        assert!(is_placeholder_text(r#"<k8s::image("backend")>"#));
        assert!(is_placeholder_text(r#"<shell::run("mktemp -d").stdout>"#));
        assert!(!is_placeholder_text("<b>bold</b>"));
        assert!(!is_placeholder_text("<a::b>"));
        assert!(!is_placeholder_text("plain"));
        assert!(holds_unknown(&Dynamic::from(r#"<k8s::image("backend")>"#)));
    }

    #[test]
    fn holds_unknown_looks_inside_collections() {
        let mut map = rhai::Map::new();
        map.insert("a".into(), Dynamic::from(Unknown::new("x")));
        assert!(holds_unknown(&Dynamic::from_map(map)));
        assert!(!holds_unknown(&Dynamic::from("x")));
    }
}
