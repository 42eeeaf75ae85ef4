//! The header of a runbook: its `//!` doc comment, which says what it does
//! and which params it takes.
//!
//! ```text
//! //! Deploy a version to production
//! //!
//! //! Longer description...
//! //! @param version required        image tag to deploy
//! //! @param service default=backend which deployment
//! //! @param note    optional        free text for the notification
//! ```

/// Whether a param must be given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Required,
    Optional,
    Default(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: String,
    pub requirement: Requirement,
    pub description: String,
    /// 1-based line of the `@param` in the file.
    pub line: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// The first line: what the runbook does.
    pub summary: String,
    /// The rest of the prose.
    pub details: String,
    pub params: Vec<ParamSpec>,
    /// Problems in the header itself (bad `@param` lines), with their line.
    pub problems: Vec<(usize, String)>,
}

impl Header {
    pub fn parse(source: &str) -> Header {
        let mut header = Header::default();
        let mut prose: Vec<&str> = Vec::new();
        for (index, line) in source.lines().enumerate() {
            let trimmed = line.trim_start();
            let Some(text) = trimmed.strip_prefix("//!") else {
                if trimmed.is_empty() || trimmed.starts_with("#!") {
                    continue;
                }
                break;
            };
            let text = text.strip_prefix(' ').unwrap_or(text);
            if let Some(spec) = text.trim_start().strip_prefix("@param") {
                match parse_param(spec, index + 1) {
                    Ok(param) => header.params.push(param),
                    Err(problem) => header.problems.push((index + 1, problem)),
                }
            } else {
                prose.push(text);
            }
        }
        let mut prose = prose.into_iter().skip_while(|line| line.trim().is_empty());
        header.summary = prose.next().unwrap_or_default().trim().to_owned();
        header.details = prose.collect::<Vec<_>>().join("\n").trim().to_owned();
        header
    }

    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|param| param.name == name)
    }
}

fn parse_param(spec: &str, line: usize) -> Result<ParamSpec, String> {
    let mut words = spec.split_whitespace();
    let name = words.next().ok_or(
        "`@param` needs a name: `@param NAME required|optional|default=VALUE  description`",
    )?;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "`{name}` is not a valid param name (letters, digits, `_`, `-`)"
        ));
    }
    let requirement = match words.next() {
        Some("required") => Requirement::Required,
        Some("optional") => Requirement::Optional,
        Some(word) if word.starts_with("default=") => {
            Requirement::Default(word.trim_start_matches("default=").to_owned())
        }
        Some(other) => {
            return Err(format!(
                "param `{name}`: expected `required`, `optional` or `default=VALUE`, found `{other}`"
            ));
        }
        None => Requirement::Optional,
    };
    Ok(ParamSpec {
        name: name.to_owned(),
        requirement,
        description: words.collect::<Vec<_>>().join(" "),
        line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_summary_details_and_params() {
        let header = Header::parse(
            "//! Deploy a version\n//!\n//! Rolls out.\n//! @param version required  image tag\n//! @param service default=backend which one\nlet x = 1;\n//! not header\n",
        );
        assert_eq!(header.summary, "Deploy a version");
        assert_eq!(header.details, "Rolls out.");
        assert_eq!(header.params.len(), 2);
        assert_eq!(header.params[0].requirement, Requirement::Required);
        assert_eq!(header.params[0].description, "image tag");
        assert_eq!(
            header.params[1].requirement,
            Requirement::Default("backend".into())
        );
        assert_eq!(header.params[1].line, 5);
    }

    #[test]
    fn reports_bad_param_lines() {
        let header = Header::parse("//! x\n//! @param v sometimes\n");
        assert_eq!(header.problems.len(), 1);
        assert_eq!(header.problems[0].0, 2);
    }
}
