//! `pg::login_check` and `pg::ensure_role`: what a credential rotation needs
//! of PostgreSQL besides `pg::set_password`. A login check connects with
//! exactly the credentials given and reports instead of failing, so a
//! runbook can decide; a role is created as a member of a group role (the
//! group holds the grants), never as a copy of another role's grants.

use rhai::{Dynamic, Map};

use super::conn::{Database, quote_ident};
use crate::host::StdlibError;

/// Try to log in and run a probe; `#{ok, user, database, server, error}`.
pub(crate) async fn login_check(database: &Database) -> Map {
    let mut map = Map::new();
    map.insert(
        "user".into(),
        database
            .config
            .get_user()
            .unwrap_or_default()
            .to_owned()
            .into(),
    );
    map.insert("database".into(), database.name().into());
    map.insert("server".into(), database.display().into());
    let outcome = async {
        let client = database.connect().await?;
        let row = client
            .query_one("select current_user::text, now()::text", &[])
            .await
            .map_err(|error| database.error("run a probe in", &error))?;
        let user: String = row.get(0);
        Ok::<String, StdlibError>(user)
    }
    .await;
    match outcome {
        Ok(user) => {
            map.insert("ok".into(), true.into());
            map.insert("user".into(), user.into());
            map.insert("error".into(), Dynamic::UNIT);
        }
        Err(error) => {
            map.insert("ok".into(), false.into());
            map.insert("error".into(), error.to_string().into());
        }
    }
    map
}

/// What `pg::ensure_role` should make of a role.
pub(crate) struct RoleSpec {
    pub(crate) name: String,
    pub(crate) member_of: Vec<String>,
    pub(crate) login: bool,
}

/// Create `spec.name` if it is missing (`LOGIN` or `NOLOGIN`), and grant it
/// each group it is not yet a member of. `#{role, created, granted}`.
pub(crate) async fn ensure_role(database: &Database, spec: &RoleSpec) -> Result<Map, StdlibError> {
    let client = database.connect().await?;
    let exists = client
        .query_opt("select 1 from pg_roles where rolname = $1", &[&spec.name])
        .await
        .map_err(|error| database.error("look up roles in", &error))?
        .is_some();
    if !exists {
        let statement = format!(
            "CREATE ROLE {} {}",
            quote_ident(&spec.name),
            if spec.login { "LOGIN" } else { "NOLOGIN" }
        );
        client
            .batch_execute(&statement)
            .await
            .map_err(|error| database.error(&format!("create role `{}` in", spec.name), &error))?;
    }
    let mut granted = Vec::new();
    for group in &spec.member_of {
        let group_exists = client
            .query_opt("select 1 from pg_roles where rolname = $1", &[group])
            .await
            .map_err(|error| database.error("look up roles in", &error))?
            .is_some();
        if !group_exists {
            return Err(StdlibError::failed(
                format!(
                    "pg: group role `{group}` does not exist on `{}`",
                    database.display()
                ),
                "create the group role that holds the grants first (`CREATE ROLE app_group NOLOGIN; GRANT ... TO app_group`)",
            ));
        }
        let member = client
            .query_opt(
                "select 1 from pg_auth_members m join pg_roles g on g.oid = m.roleid \
                 join pg_roles r on r.oid = m.member where g.rolname = $1 and r.rolname = $2",
                &[group, &spec.name],
            )
            .await
            .map_err(|error| database.error("look up role memberships in", &error))?
            .is_some();
        if !member {
            let statement = format!(
                "GRANT {} TO {}",
                quote_ident(group),
                quote_ident(&spec.name)
            );
            client.batch_execute(&statement).await.map_err(|error| {
                database.error(&format!("grant `{group}` to `{}` in", spec.name), &error)
            })?;
            granted.push(Dynamic::from(group.clone()));
        }
    }
    let mut map = Map::new();
    map.insert("role".into(), spec.name.clone().into());
    map.insert("created".into(), (!exists).into());
    map.insert("granted".into(), Dynamic::from_array(granted));
    Ok(map)
}
