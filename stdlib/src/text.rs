//! Small text helpers every module uses for messages: an error with its
//! causes on one line, a digest in hex, the tail of a command's stderr.

use std::fmt::Write as _;

/// An error and its sources on one line (a cause already in the text is
/// not repeated).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.replace('\n', " ")
}

/// Lower-case hex of a digest.
pub(crate) fn hex(digest: &[u8]) -> String {
    digest.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// The last lines of a command's stderr, for error messages.
pub(crate) fn stderr_tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.trim_end().lines().collect();
    if lines.is_empty() {
        return String::new();
    }
    let start = lines.len().saturating_sub(5);
    let mut out = String::from("; stderr:");
    for line in &lines[start..] {
        out.push_str("\n    ");
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("cannot connect")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn helpers() {
        let error = Outer(std::io::Error::other("refused\non port 1"));
        assert_eq!(error_chain(&error), "cannot connect: refused on port 1");
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        assert_eq!(stderr_tail(""), "");
        assert_eq!(stderr_tail("a\nb\n"), "; stderr:\n    a\n    b");
    }
}
