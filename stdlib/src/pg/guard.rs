//! What keeps `pg::query` (a *read*, so it runs in a dry-run) from writing.
//!
//! Three layers, weakest first:
//!
//! 1. **This text check**, before anything is sent: one statement that
//!    starts with `SELECT`, `WITH`, `VALUES`, `TABLE`, `SHOW` or `EXPLAIN`,
//!    with no `COPY` and no call of a function known to have effects outside
//!    the transaction (`pg_terminate_backend`, `lo_export`, `dblink_exec`,
//!    `set_config`, ...). Comments and quoted text are blanked first, so a
//!    name inside a string literal does not count; a quoted identifier
//!    (`"pg_terminate_backend"(...)`) is read unquoted. It is a list, not a
//!    parser: a function it does not know is not refused.
//! 2. **A read-only transaction**: the server refuses INSERT, UPDATE,
//!    DELETE, DDL, `nextval` and the like itself.
//! 3. **A role without superuser** (`[context.X.pg] read_url`): the only
//!    guard that does not depend on runbook knowing every function. A
//!    superuser can reach the file system and other sessions through
//!    functions neither layer above knows of; `pg::query` warns when it is
//!    connected as one.

/// Statements `pg::query` accepts, by their first word.
const READ_STATEMENTS: &[&str] = &["select", "with", "values", "table", "show", "explain"];

/// Functions with effects outside the query's read-only transaction.
const SIDE_EFFECT_FUNCTIONS: &[&str] = &[
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_promote",
    "pg_wal_replay_pause",
    "pg_wal_replay_resume",
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_drop_replication_slot",
    "pg_replication_origin_create",
    "pg_replication_origin_drop",
    "pg_logical_emit_message",
    "pg_notify",
    "pg_advisory_lock",
    "pg_advisory_xact_lock",
    "pg_try_advisory_lock",
    "pg_file_write",
    "pg_file_rename",
    "pg_file_unlink",
    "pg_file_sync",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_stat_reset",
    "pg_stat_reset_shared",
    "pg_stat_reset_single_table_counters",
    "pg_stat_statements_reset",
    "lo_export",
    "lo_import",
    "lo_unlink",
    "lo_create",
    "lo_creat",
    "lo_from_bytea",
    "lo_put",
    "dblink",
    "dblink_exec",
    "dblink_connect",
    "dblink_send_query",
    "set_config",
    "txid_current",
    "pg_current_xact_id",
    "nextval",
    "setval",
];

/// Why `sql` is refused, if it is.
pub(crate) fn refusal(sql: &str) -> Option<String> {
    let text = blank_literals(sql);
    let words: Vec<&str> = text
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|word| !word.is_empty())
        .collect();
    let Some(first) = words.first() else {
        return Some("the statement is empty".into());
    };
    if !READ_STATEMENTS.contains(first) {
        return Some(format!(
            "`pg::query` runs only statements that read (SELECT, WITH, VALUES, TABLE, SHOW, EXPLAIN, in a read-only transaction), not `{}`",
            first.to_uppercase()
        ));
    }
    if text.trim_end().trim_end_matches(';').contains(';') {
        return Some("`pg::query` runs one statement, and this text has several".into());
    }
    if words.contains(&"copy") {
        return Some(
            "`pg::query` does not run COPY (COPY … TO a file or PROGRAM writes on the server)"
                .into(),
        );
    }
    for word in &words {
        let name = word.rsplit('.').next().unwrap_or(word);
        if SIDE_EFFECT_FUNCTIONS.contains(&name) && is_called(&text, name) {
            return Some(format!(
                "`pg::query` does not call `{name}`: it acts outside the query's read-only transaction"
            ));
        }
    }
    None
}

/// Whether `name` appears as a call: followed by `(` (after spaces).
fn is_called(text: &str, name: &str) -> bool {
    let mut rest = text;
    while let Some(at) = rest.find(name) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + name.len()..].trim_start();
        let starts_word = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if starts_word && after.starts_with('(') {
            return true;
        }
        rest = &rest[at + name.len()..];
    }
    false
}

/// `sql` in lower case with comments and string literals blanked, and
/// double-quoted identifiers unquoted (`"Pg_Cancel_Backend"` is the same
/// function to the check as `pg_cancel_backend`; quoting makes no
/// difference to the refusal).
fn blank_literals(sql: &str) -> String {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut index = 0;
    while index < chars.len() {
        let c = chars[index];
        let next = chars.get(index + 1).copied();
        match c {
            '-' if next == Some('-') => {
                while index < chars.len() && chars[index] != '\n' {
                    index += 1;
                }
                out.push(' ');
            }
            '/' if next == Some('*') => {
                let mut depth = 0;
                while index < chars.len() {
                    if chars[index] == '/' && chars.get(index + 1) == Some(&'*') {
                        depth += 1;
                        index += 2;
                    } else if chars[index] == '*' && chars.get(index + 1) == Some(&'/') {
                        depth -= 1;
                        index += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        index += 1;
                    }
                }
                out.push(' ');
            }
            '\'' => {
                index += 1;
                while index < chars.len() {
                    if chars[index] == '\'' {
                        if chars.get(index + 1) == Some(&'\'') {
                            index += 2;
                            continue;
                        }
                        break;
                    }
                    index += 1;
                }
                index += 1;
                out.push_str("''");
            }
            '$' if dollar_tag(&chars, index).is_some() => {
                let closing: Vec<char> = dollar_tag(&chars, index)
                    .unwrap_or_default()
                    .chars()
                    .collect();
                index += closing.len();
                while index < chars.len() && !chars[index..].starts_with(&closing) {
                    index += 1;
                }
                index += closing.len();
                out.push_str("''");
            }
            '"' => {
                index += 1;
                while index < chars.len() && chars[index] != '"' {
                    out.extend(chars[index].to_lowercase());
                    index += 1;
                }
                index += 1;
            }
            c => {
                out.extend(c.to_lowercase());
                index += 1;
            }
        }
    }
    out
}

/// `$tag$` starting at `index`, if one does.
fn dollar_tag(chars: &[char], index: usize) -> Option<String> {
    let mut end = index + 1;
    while end < chars.len() && (chars[end].is_alphanumeric() || chars[end] == '_') {
        end += 1;
    }
    (chars.get(end) == Some(&'$')).then(|| chars[index..=end].iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pass() {
        for sql in [
            "select count(*) as n from todos",
            "  SELECT 1;",
            "with t as (select 1) select * from t",
            "select 'pg_terminate_backend(1)' as text",
            "select 1 -- copy x to program 'y'",
            "show server_version",
            "explain select * from todos",
            "select $$ copy $$",
        ] {
            assert_eq!(refusal(sql), None, "{sql}");
        }
    }

    #[test]
    fn side_effects_are_refused() {
        for sql in [
            "copy todos to '/tmp/x'",
            "COPY (select 1) TO PROGRAM 'touch /tmp/x'",
            "select pg_terminate_backend(pid) from pg_stat_activity",
            "select pg_catalog.pg_cancel_backend(1)",
            "SELECT \"pg_terminate_backend\" (1)",
            "select lo_export(1, '/tmp/x')",
            "select dblink_exec('dbname=x', 'drop table t')",
            "select set_config('x.y', 'z', false)",
            "insert into todos values (1)",
            "delete from todos",
            "select 1; delete from todos",
            "/* hi */ update todos set done = true",
            "",
        ] {
            assert!(refusal(sql).is_some(), "{sql}");
        }
    }
}
