//! Masks the text of every secret the run has seen, wherever it shows up:
//! output, journal and error messages. A secret that reaches a command's
//! stderr or an API error is still printed as `***`.
//!
//! Masking works on *values*, before they are escaped, quoted or indented:
//! [`Redactor::mask_json`] masks the strings inside a JSON value (never its
//! keys or structure), so a secret holding `"`, `\`, a tab or a newline is
//! found before JSON escapes it. A multi-line secret is also masked line by
//! line, so re-indented output (stderr tails, error reports) cannot show it.
//! A secret's base64, hex and reversed forms are masked too: a command given
//! the secret can print those (`| base64`, `| xxd -p`, `| rev`).
//!
//! Secrets shorter than [`MIN_SECRET_LEN`] characters are masked only where a
//! whole value equals them, never as a substring: a 1-character secret masked
//! inside every word would make output unreadable and reveal the secret.

use std::borrow::Cow;
use std::sync::{Arc, PoisonError, RwLock};

/// The mask shown in place of a secret.
pub const MASK: &str = "***";

/// Secrets shorter than this (in characters) are only masked as whole values.
pub const MIN_SECRET_LEN: usize = 6;

#[derive(Debug, Default)]
struct Known {
    /// Masked wherever they occur, longest first.
    substrings: Vec<String>,
    /// Masked only where a whole value (or a whole trimmed line) equals them.
    whole: Vec<String>,
}

/// Shared list of secret texts; clones share the same list.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    known: Arc<RwLock<Known>>,
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (index, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if index <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The forms of `text` that a command given it can print: base64 (the part
/// that does not depend on what follows the text, so `echo $S | base64`
/// matches too), hex in both cases, and the text reversed (`rev`).
fn derived_forms(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut forms = Vec::new();
    let stable = bytes.len() / 3 * 3;
    if stable > 0 {
        forms.push(base64(&bytes[..stable]));
    }
    forms.push(base64(bytes));
    forms.push(base64(format!("{text}\n").as_bytes()));
    let hex = crate::text::hex(bytes);
    forms.push(hex.to_uppercase());
    forms.push(hex);
    forms.push(text.chars().rev().collect());
    // Escaped forms, for text that was encoded before it reached the
    // redactor (a map printed by the script, an error quoting a value).
    if let Ok(json) = serde_json::to_string(text) {
        forms.push(json.trim_matches('"').to_owned());
    }
    forms.push(text.escape_debug().to_string());
    forms.push(text.escape_default().to_string());
    forms.retain(|form| form.as_str() != text);
    forms
}

impl Redactor {
    /// An empty redactor.
    pub fn new() -> Self {
        Self::default()
    }

    /// Remember a secret's text so that it is masked from now on: the whole
    /// text, each of its lines, and its derived forms. A text shorter than
    /// [`MIN_SECRET_LEN`] is masked only as a whole value.
    pub fn add(&self, text: &str) {
        if text.is_empty() {
            return;
        }
        {
            let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
            if known
                .substrings
                .iter()
                .chain(&known.whole)
                .any(|have| have == text)
            {
                return;
            }
        }
        if text.chars().count() < MIN_SECRET_LEN {
            self.add_whole(text);
            return;
        }
        let mut candidates = vec![text.to_owned()];
        for line in text.lines() {
            let line = line.trim();
            if line.chars().count() >= MIN_SECRET_LEN && line != text {
                candidates.push(line.to_owned());
            }
        }
        for form in candidates.clone() {
            candidates.extend(derived_forms(&form));
        }
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        for candidate in candidates {
            if candidate.chars().count() >= MIN_SECRET_LEN && !known.substrings.contains(&candidate)
            {
                known.substrings.push(candidate);
            }
        }
        // Longest first, so that a secret containing another is masked whole.
        known
            .substrings
            .sort_by_key(|have| std::cmp::Reverse(have.len()));
    }

    /// Remember a secret that is masked only where a whole value equals it
    /// (`secret(name, #{allow_short: true})`).
    pub fn add_whole(&self, text: &str) {
        if text.is_empty() {
            return;
        }
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        if !known.whole.iter().any(|have| have == text) {
            known.whole.push(text.to_owned());
        }
    }

    /// `text` with every known secret replaced by `***`.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
        if known
            .whole
            .iter()
            .any(|secret| secret == text || secret == text.trim())
        {
            return Cow::Borrowed(MASK);
        }
        let mut out = Cow::Borrowed(text);
        for secret in &known.substrings {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), MASK));
            }
        }
        out
    }

    /// Mask every string inside a JSON value, in place, and the keys of
    /// nested objects; numbers and the structure are left alone, so the
    /// value still encodes to valid JSON with the same shape.
    pub fn mask_json(&self, value: &mut serde_json::Value) {
        self.mask_json_except(value, &[]);
    }

    /// [`Redactor::mask_json`], leaving alone the top-level fields named in
    /// `keep` (an event's tag and enum fields, which are vocabulary, not data:
    /// a secret that happens to equal `approved` must not make a journal line
    /// unreadable). Top-level keys are never masked; nested ones are.
    pub fn mask_json_except(&self, value: &mut serde_json::Value, keep: &[&str]) {
        if self.is_empty() {
            return;
        }
        if let serde_json::Value::Object(fields) = value {
            for (key, item) in fields.iter_mut() {
                if !keep.contains(&key.as_str()) {
                    self.mask_json_inner(item);
                }
            }
        } else {
            self.mask_json_inner(value);
        }
    }

    fn mask_json_inner(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(text) => {
                let masked = self.mask(text);
                if masked != text.as_str() {
                    let masked = masked.into_owned();
                    *text = masked;
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    self.mask_json_inner(item);
                }
            }
            serde_json::Value::Object(fields) => {
                let masked: serde_json::Map<String, serde_json::Value> = std::mem::take(fields)
                    .into_iter()
                    .map(|(key, mut item)| {
                        self.mask_json_inner(&mut item);
                        (self.mask(&key).into_owned(), item)
                    })
                    .collect();
                *fields = masked;
            }
            serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {
            }
        }
    }

    /// A serializable value (an event) with every string masked, read back
    /// as its own type; `None` when it does not round-trip through JSON.
    pub fn mask_serde<T>(&self, value: &T, keep: &[&str]) -> Option<T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        let mut json = serde_json::to_value(value).ok()?;
        self.mask_json_except(&mut json, keep);
        serde_json::from_value(json).ok()
    }

    /// Whether any secret is known.
    pub fn is_empty(&self) -> bool {
        let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
        known.substrings.is_empty() && known.whole.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_longest_first() {
        let redactor = Redactor::new();
        redactor.add("hunter2");
        redactor.add("hunter2-long");
        assert_eq!(redactor.mask("a hunter2 b hunter2-long"), "a *** b ***");
        assert_eq!(redactor.mask("nothing here"), "nothing here");
    }

    #[test]
    fn ignores_empty_secrets() {
        let redactor = Redactor::new();
        redactor.add("");
        assert!(redactor.is_empty());
        assert_eq!(redactor.mask("text"), "text");
    }

    #[test]
    fn json_values_are_masked_before_escaping_and_keys_are_kept() {
        let redactor = Redactor::new();
        let secret = "ab\"Quote\\Sec\tcd\nline2-secret";
        redactor.add(secret);
        let mut value = serde_json::json!({
            "stderr": format!("x {secret} y"),
            "ab\"Quote\\Sec\tcd": [secret, 1, null],
        });
        redactor.mask_json(&mut value);
        let text = serde_json::to_string(&value).unwrap();
        assert!(
            text.contains("\"ab\\\"Quote"),
            "top-level keys stay: {text}"
        );
        assert!(!text.contains("line2"), "{text}");
        let mut nested = serde_json::json!({"params": {secret: secret}});
        redactor.mask_json(&mut nested);
        assert_eq!(nested, serde_json::json!({"params": {"***": "***"}}));
        let mut tagged = serde_json::json!({"event": secret, "message": secret});
        redactor.mask_json_except(&mut tagged, &["event"]);
        assert_eq!(tagged["message"], "***");
        assert_eq!(tagged["event"], secret);
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["stderr"], "x *** y");
    }

    #[test]
    fn multi_line_secrets_are_masked_line_by_line() {
        let redactor = Redactor::new();
        redactor.add("-----BEGIN KEY-----\nMIIEvQIBADANBgkq\nhkiG9w0BAQEFAASC\n-----END KEY-----");
        let indented = "stderr:\n    MIIEvQIBADANBgkq\n    hkiG9w0BAQEFAASC";
        assert!(!redactor.mask(indented).contains("MIIE"));
        assert!(!redactor.mask(indented).contains("hkiG"));
    }

    #[test]
    fn short_secrets_are_masked_only_as_whole_values() {
        let redactor = Redactor::new();
        redactor.add("e");
        redactor.add("1234");
        assert_eq!(redactor.mask("release the beast"), "release the beast");
        assert_eq!(redactor.mask("run 20261202T1234Z"), "run 20261202T1234Z");
        assert_eq!(redactor.mask("1234"), MASK);
        let mut value = serde_json::json!({"e": "e", "pin": "1234", "n": 1234});
        redactor.mask_json(&mut value);
        assert_eq!(
            value,
            serde_json::json!({"e": "***", "pin": "***", "n": 1234})
        );
    }

    #[test]
    fn derived_forms_are_masked() {
        let redactor = Redactor::new();
        redactor.add("CorrectHorse42");
        // printf %s S | base64 ; echo S | base64 ; | xxd -p ; | rev
        for form in [
            "Q29ycmVjdEhvcnNlNDI=",
            "Q29ycmVjdEhvcnNlNDIK",
            "436f7272656374486f7273653432",
            "24esroHtcerroC",
        ] {
            let masked = redactor.mask(form);
            assert!(masked.contains(MASK), "{form} -> {masked}");
            assert!(masked.len() <= 6, "{form} -> {masked}");
        }
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
