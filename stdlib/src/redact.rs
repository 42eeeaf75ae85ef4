//! Masks the text of every secret the run has seen, wherever it shows up:
//! output, journal and error messages. A secret that reaches a command's
//! stderr or an API error is still printed as `***`.

use std::borrow::Cow;
use std::sync::{Arc, PoisonError, RwLock};

/// The mask shown in place of a secret.
pub const MASK: &str = "***";

/// Shared list of secret texts; clones share the same list.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
}

impl Redactor {
    /// An empty redactor.
    pub fn new() -> Self {
        Self::default()
    }

    /// Remember a secret's text so that it is masked from now on.
    pub fn add(&self, text: &str) {
        if text.is_empty() {
            return;
        }
        let mut secrets = self.secrets.write().unwrap_or_else(PoisonError::into_inner);
        if !secrets.iter().any(|known| known == text) {
            secrets.push(text.to_owned());
            // Longest first, so that a secret containing another is masked whole.
            secrets.sort_by_key(|known| std::cmp::Reverse(known.len()));
        }
    }

    /// `text` with every known secret replaced by `***`.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let secrets = self.secrets.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = Cow::Borrowed(text);
        for secret in secrets.iter() {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), MASK));
            }
        }
        out
    }

    /// Whether any secret is known.
    pub fn is_empty(&self) -> bool {
        self.secrets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
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
}
