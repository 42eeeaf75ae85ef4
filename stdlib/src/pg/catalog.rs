//! What is in a database: its tables and their exact row counts, the
//! server's version. Shared by `dump` (the manifest) and `restore` (the check).

use std::collections::BTreeMap;

use tokio::io::AsyncReadExt;
use tokio_postgres::GenericClient;

use super::conn::{Database, quote_ident};
use crate::host::StdlibError;

/// Tables (`relkind` r and p) outside the system schemas, as `schema.table`.
const TABLES: &str = "select n.nspname::text, c.relname::text
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p')
      and n.nspname not in ('pg_catalog', 'information_schema')
      and n.nspname not like 'pg_toast%' and n.nspname not like 'pg_temp%'
    order by 1, 2";

/// The exact row count of every table, keyed `schema.table`; tables in
/// `known` (counted already, in the same snapshot) are not counted again.
pub(crate) async fn row_counts(
    client: &impl GenericClient,
    database: &Database,
    known: &BTreeMap<String, i64>,
) -> Result<BTreeMap<String, i64>, StdlibError> {
    let tables = client
        .query(TABLES, &[])
        .await
        .map_err(|error| database.error("list the tables of", &error))?;
    let mut counts = BTreeMap::new();
    for row in tables {
        let schema: String = row.get(0);
        let table: String = row.get(1);
        let key = format!("{schema}.{table}");
        if let Some(count) = known.get(&key) {
            counts.insert(key, *count);
            continue;
        }
        let sql = format!(
            "select count(*) from {}.{}",
            quote_ident(&schema),
            quote_ident(&table)
        );
        let count: i64 = client
            .query_one(&sql, &[])
            .await
            .map_err(|error| {
                database.error(&format!("count the rows of {schema}.{table} in"), &error)
            })?
            .get(0);
        counts.insert(key, count);
    }
    Ok(counts)
}

/// Whether `database` has any table outside the system schemas.
pub(crate) async fn has_tables(
    client: &impl GenericClient,
    database: &Database,
) -> Result<bool, StdlibError> {
    let rows = client
        .query(TABLES, &[])
        .await
        .map_err(|error| database.error("list the tables of", &error))?;
    Ok(!rows.is_empty())
}

/// `select version()`'s short form: `server_version` (e.g. `15.8 (Debian 15.8-0+deb12u1)`).
pub(crate) async fn server_version(
    client: &impl GenericClient,
    database: &Database,
) -> Result<String, StdlibError> {
    client
        .query_one("show server_version", &[])
        .await
        .map(|row| row.get::<_, String>(0))
        .map_err(|error| database.error("read the version of", &error))
}

/// The last `limit` bytes a program wrote to a pipe, as text.
pub(crate) async fn tail(mut pipe: impl tokio::io::AsyncRead + Unpin, limit: usize) -> String {
    let mut kept: Vec<u8> = Vec::new();
    let mut buffer = vec![0u8; 8192];
    while let Ok(read) = pipe.read(&mut buffer).await {
        if read == 0 {
            break;
        }
        kept.extend_from_slice(&buffer[..read]);
        if kept.len() > limit * 2 {
            kept.drain(..kept.len() - limit);
        }
    }
    if kept.len() > limit {
        kept.drain(..kept.len() - limit);
    }
    String::from_utf8_lossy(&kept).trim().to_owned()
}

/// A hint for what a PostgreSQL program printed on failure.
pub(crate) fn tool_hint(stderr: &str, database: &Database, program: &str) -> String {
    let lower = stderr.to_lowercase();
    if lower.contains("server version mismatch") || lower.contains("unsupported version") {
        format!(
            "{program} is older than the server: set `bin_dir` in `[context.{}.pg]` to the bin folder of the server's major version",
            database.context
        )
    } else if lower.contains("password authentication failed")
        || lower.contains("no password supplied")
    {
        format!(
            "check the user and password: in the url, or the secret `pg_password` of context `{}`",
            database.context
        )
    } else if lower.contains("could not connect") || lower.contains("connection refused") {
        "is PostgreSQL up and reachable from here?".to_owned()
    } else if lower.contains("does not exist") {
        "check the database and object names".to_owned()
    } else {
        format!("{program}'s message above says why")
    }
}
