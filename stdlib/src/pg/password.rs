//! `pg::set_password`: the password never leaves this process in clear.
//! Like psql's `\password`, the verifier the server stores (SCRAM-SHA-256,
//! or md5 when the server's `password_encryption` says so) is computed here,
//! and `ALTER ROLE ... PASSWORD` is built by the server with
//! `format('%I', '%L')` from bind parameters: no argv, no shell, and the
//! server's statement log (`log_statement = ddl`) never sees the password.

use super::conn::Database;
use crate::host::StdlibError;

/// Set `role`'s password; returns the method used (`scram-sha-256` or `md5`).
pub(crate) async fn set(
    database: &Database,
    role: &str,
    password: &str,
) -> Result<String, StdlibError> {
    let client = database.connect().await?;
    let exists = client
        .query_opt("select 1 from pg_roles where rolname = $1", &[&role])
        .await
        .map_err(|error| database.error("look up roles in", &error))?
        .is_some();
    if !exists {
        return Err(StdlibError::failed(
            format!(
                "pg: role `{role}` does not exist on `{}`",
                database.display()
            ),
            "check the role name: `pg::query(db, \"select rolname from pg_roles\")` lists them",
        ));
    }
    let method: String = client
        .query_one("show password_encryption", &[])
        .await
        .map_err(|error| database.error("read password_encryption of", &error))?
        .get(0);
    let verifier = if method == "md5" {
        postgres_protocol::password::md5(password.as_bytes(), role)
    } else {
        postgres_protocol::password::scram_sha_256(password.as_bytes())
    };
    let statement: String = client
        .query_one(
            "select format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)",
            &[&role, &verifier],
        )
        .await
        .map_err(|error| database.error("prepare the password change in", &error))?
        .get(0);
    client.batch_execute(&statement).await.map_err(|error| {
        database.error(&format!("set the password of role `{role}` in"), &error)
    })?;
    Ok(if method == "md5" {
        "md5".into()
    } else {
        "scram-sha-256".into()
    })
}
