//! `pg::*`: PostgreSQL backups, restores and queries.

use crate::function::Function;

pub(crate) fn functions() -> Vec<Function> {
    Vec::new()
}
