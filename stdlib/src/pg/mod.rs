//! `pg::*`: PostgreSQL backups, restores and queries. Dumps and restores
//! run PostgreSQL's own `pg_dump` / `pg_restore` (from the context's
//! `pg.bin_dir`, else PATH) and stream through zstd to and from the
//! context's S3 bucket; queries go through a driver (tokio-postgres).

mod archive;
mod catalog;
mod conn;
mod dump;
mod guard;
mod load;
mod password;
mod restore;
mod roles;
mod rows;

use rhai::{Dynamic, Map};

use self::conn::Database;
use self::dump::{Format, Place};
use crate::function;
use crate::function::{Call, Failure, Function, Options, Text};
use crate::host::StdlibError;
use crate::s3::client::Bucket;
use crate::s3::transfer::PART_SIZE;

const DUMP_OPTIONS: &[&str] = &["database", "to", "via", "format", "level", "part_size"];
const RESTORE_OPTIONS: &[&str] = &[
    "from",
    "database",
    "clean",
    "create",
    "no_owner",
    "single_transaction",
    "parallel",
];

fn database_option(call: &Call<'_>, options: &Options) -> Result<Database, StdlibError> {
    let text = options.text("database")?;
    Database::resolve(call, text.as_ref())
}

fn bucket_for(call: &Call<'_>, place: &Place) -> Result<Option<Bucket>, StdlibError> {
    match place {
        Place::S3(_) => Bucket::from_call(call).map(Some),
        Place::Local(_) => Ok(None),
    }
}

fn required(
    options: &Options,
    call: &Call<'_>,
    key: &str,
    example: &str,
) -> Result<String, StdlibError> {
    options
        .string(key)?
        .filter(|value| !value.is_empty())
        .ok_or_else(|| call.bad_arg(0, format!("needs `{key}`, e.g. `{example}`")))
}

fn dump_call(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let options = call.options(0, DUMP_OPTIONS)?;
    let to = Place::parse(&required(
        &options,
        call,
        "to",
        "#{to: \"s3://backups/db/20260101T000000Z.dump.zst\"}",
    )?);
    if options.string("via")?.is_some() {
        return Err(StdlibError::usage(
            "`pg::dump`: `via` (running pg_dump on another host) is not supported yet",
            "run pg_dump from here with a `database` url that reaches the server (an ssh tunnel works), or run runbook on the database host",
        )
        .into());
    }
    let format = match options.string("format")? {
        None => Format::Custom,
        Some(name) => Format::parse(&name).ok_or_else(|| {
            call.bad_arg(0, format!("`format` must be \"custom\", \"tar\" or \"plain\", got \"{name}\" (directory dumps cannot stream)"))
        })?,
    };
    let level = options.int("level")?.unwrap_or(3);
    if !(1..=19).contains(&level) {
        return Err(call.bad_arg(0, "`level` (zstd) must be 1 to 19").into());
    }
    let part_size = match options.int("part_size")? {
        None => PART_SIZE,
        Some(mib) if (5..=1024).contains(&mib) => usize::try_from(mib).unwrap_or(8) * 1024 * 1024,
        Some(_) => return Err(call.bad_arg(0, "`part_size` is in MiB, 5 to 1024").into()),
    };
    let database = database_option(call, &options)?;
    let bucket = bucket_for(call, &to)?;
    let manifest_place = to.manifest().display();
    let request = dump::Request {
        database,
        to,
        bucket,
        format,
        level: i32::try_from(level).unwrap_or(3),
        part_size,
    };
    let manifest = call.block_on(dump::run(request))?;
    let value = crate::values::from_json(manifest);
    let mut map = value.try_cast::<Map>().unwrap_or_default();
    map.insert("manifest".into(), manifest_place.into());
    Ok(Dynamic::from_map(map))
}

/// `parallel`: connections that load table data at once (default 2).
fn parallel_option(call: &Call<'_>, options: &Options) -> Result<usize, StdlibError> {
    match options.int("parallel")? {
        None => Ok(2),
        Some(count) if (1..=16).contains(&count) => Ok(usize::try_from(count).unwrap_or(2)),
        Some(_) => Err(call.bad_arg(
            0,
            "`parallel` (connections that load table data at once) must be 1 to 16",
        )),
    }
}

fn restore_call(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let options = call.options(0, RESTORE_OPTIONS)?;
    let from = Place::parse(&required(
        &options,
        call,
        "from",
        "#{from: \"s3://backups/db/20260101T000000Z.dump.zst\"}",
    )?);
    let database = database_option(call, &options)?;
    let bucket = bucket_for(call, &from)?;
    let request = restore::Request {
        from: from.clone(),
        bucket,
        database,
        clean: options.bool("clean")?.unwrap_or(false),
        create: options.bool("create")?.unwrap_or(true),
        no_owner: options.bool("no_owner")?.unwrap_or(false),
        single_transaction: options.bool("single_transaction")?.unwrap_or(true),
        parallel: parallel_option(call, &options)?,
    };
    let restored = call.block_on(restore::run(request))?;
    if restored.restarted {
        call.host.log(
            crate::host::Level::Warn,
            &format!(
                "pg::restore: `{}` was left half-restored by a restore that was stopped (it was still marked in progress); it was dropped and restored again from the start",
                restored.database
            ),
        );
    }
    let mut map = Map::new();
    map.insert("from".into(), from.display().into());
    map.insert("database".into(), restored.database.into());
    map.insert("server".into(), restored.server.into());
    map.insert("created".into(), Dynamic::from_bool(restored.created));
    map.insert(
        "bytes".into(),
        Dynamic::from_int(i64::try_from(restored.bytes).unwrap_or(i64::MAX)),
    );
    map.insert("sha256".into(), restored.sha256.into());
    map.insert("verified".into(), Dynamic::from_bool(restored.verified));
    map.insert(
        "rows".into(),
        Dynamic::from_int(restored.tables.values().sum()),
    );
    let tables: Map = restored
        .tables
        .into_iter()
        .map(|(table, count)| (table.into(), Dynamic::from_int(count)))
        .collect();
    map.insert("tables".into(), Dynamic::from_map(tables));
    map.insert(
        "connections".into(),
        Dynamic::from_int(i64::try_from(restored.connections).unwrap_or(1)),
    );
    map.insert(
        "duration_ms".into(),
        Dynamic::from_int(i64::try_from(restored.duration_ms).unwrap_or(i64::MAX)),
    );
    Ok(Dynamic::from_map(map))
}

fn database_arg(call: &Call<'_>, index: usize) -> Result<Database, StdlibError> {
    Database::resolve_value(call, &call.arg(index), false, index)
}

/// Databases `pg::query` has already warned about (connected as a superuser).
static WARNED_SUPERUSER: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn query(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let database = Database::resolve_value(call, &call.arg(0), true, 0)?;
    let sql = call.string(1)?;
    if let Some(reason) = guard::refusal(&sql) {
        return Err(StdlibError::failed(
            reason,
            "`pg::query` only reads, so that a dry-run can run it; use `pg::exec` (a write: planned in a dry-run, never run there) for anything else",
        )
        .into());
    }
    let context = call.host.section("").context_name().to_owned();
    let rows = call.block_on(async {
        let mut client = database.connect().await?;
        let superuser = client
            .query_one("select rolsuper from pg_roles where rolname = current_user", &[])
            .await
            .ok()
            .and_then(|row| row.try_get::<_, bool>(0).ok())
            .unwrap_or(false);
        if superuser {
            let key = database.display();
            let mut warned = WARNED_SUPERUSER
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !warned.contains(&key) {
                warned.push(key.clone());
                call.host.log(
                    crate::host::Level::Warn,
                    &format!(
                        "pg::query is connected to `{key}` as a SUPERUSER: the read-only guard (a read-only transaction and a list of refused functions) cannot stop a superuser from writing through functions it does not know; set `read_url` under [context.{context}.pg] to a role without superuser"
                    ),
                );
            }
        }
        let transaction = client
            .build_transaction()
            .read_only(true)
            .start()
            .await
            .map_err(|error| database.error("start a read-only transaction in", &error))?;
        let rows = transaction.query(sql.as_str(), &[]).await.map_err(|error| {
            let mut failure = database.error("run the query in", &error);
            if error.as_db_error().is_some_and(|db| db.message().contains("read-only transaction")) {
                failure = StdlibError::failed(
                    failure.to_string(),
                    "`pg::query` only reads (it runs in a read-only transaction, so a dry-run can run it); use `pg::exec` for statements that change data",
                );
            }
            failure
        })?;
        let _ = transaction.rollback().await;
        rows::to_array(&rows)
    })?;
    Ok(Dynamic::from_array(rows))
}

fn exec(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let database = database_arg(call, 0)?;
    let sql = call.text(1)?;
    let affected = call.block_on(async {
        let client = database.connect().await?;
        let messages = client
            .simple_query(&sql.expose())
            .await
            .map_err(|error| database.error("run the statements in", &error))?;
        Ok(messages
            .iter()
            .map(|message| match message {
                tokio_postgres::SimpleQueryMessage::CommandComplete(count) => *count,
                _ => 0,
            })
            .sum::<u64>())
    })?;
    Ok(Dynamic::from_int(
        i64::try_from(affected).unwrap_or(i64::MAX),
    ))
}

fn set_password(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let database = database_arg(call, 0)?;
    let role = call.string(1)?;
    let secret = match call.text(2)? {
        Text::Secret(secret) => secret,
        Text::Plain(_) => {
            return Err(call
                .bad_arg(
                    2,
                    "must be a secret (from `secret(name)` or `secrets::generate(...)`), not a plain string: a plain string is shown in plans and the journal",
                )
                .into());
        }
    };
    let password = secret.expose();
    call.host.redactor().add(&password);
    let method = call.block_on(password::set(&database, &role, &password))?;
    let mut map = Map::new();
    map.insert("role".into(), role.into());
    map.insert("database".into(), database.name().into());
    map.insert("method".into(), method.into());
    Ok(Dynamic::from_map(map))
}

fn login_check(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let database = database_arg(call, 0)?;
    let map = call.block_on(async { Ok(roles::login_check(&database).await) })?;
    Ok(Dynamic::from_map(map))
}

fn ensure_role(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let database = database_arg(call, 0)?;
    let name = call.string(1)?;
    let options = call.options(2, &["member_of", "login"])?;
    let member_of = match options.get("member_of") {
        None => Vec::new(),
        Some(value) if value.is_string() => vec![value.clone().into_string().unwrap_or_default()],
        Some(value) => match value.clone().try_cast::<rhai::Array>() {
            Some(items) if items.iter().all(Dynamic::is_string) => items
                .into_iter()
                .map(|item| item.into_string().unwrap_or_default())
                .collect(),
            _ => {
                return Err(call
                    .bad_arg(
                        2,
                        "has `member_of` that is not a role name or an array of them",
                    )
                    .into());
            }
        },
    };
    let spec = roles::RoleSpec {
        name,
        member_of,
        login: options.bool("login")?.unwrap_or(true),
    };
    let map = call.block_on(roles::ensure_role(&database, &spec))?;
    Ok(Dynamic::from_map(map))
}

pub(crate) fn functions() -> Vec<Function> {
    vec![
        function! {
            /// Dump a database with `pg_dump` (custom format by default) and stream it
            /// through zstd straight to `to`: `"s3://KEY"` (a multipart upload into the
            /// context's bucket; no temp file, bounded memory: about 50 MB with zstd on
            /// two worker threads and 8 MiB parts) or a local path. Then
            /// writes the manifest `KEY.manifest.json` beside it: exact row counts per
            /// table (from the same snapshot as the dump), `bytes`, `sha256` of the
            /// stored bytes, `pg_version`, times, database. The manifest is written
            /// last, and a failed dump aborts its upload, so `s3::latest` never picks
            /// a half backup. Options: `to` (required), `database` (url or database
            /// name; default the context's `pg.url`), `format` ("custom", "tar",
            /// "plain"), `level` (zstd, default 3), `part_size` (MiB, default 8).
            /// Returns the manifest, plus `manifest` (where it is).
            ///
            /// ```rhai
            /// let backup = pg::dump(#{to: "s3://backups/todos/" + timestamp("%Y%m%dT%H%M%SZ") + ".dump.zst"});
            /// log::info("dumped " + backup.rows + " rows, " + backup.bytes + " bytes");
            /// ```
            write fn pg::dump("opts: map") -> "#{location: string, manifest: string, database: string, bytes: int, raw_bytes: int, sha256: string, pg_version: string, rows: int, tables: map, started: string, finished: string, duration_ms: int}"
            dump_call
        },
        function! {
            /// Restore a backup made by `pg::dump`: the object (`from: "s3://KEY"`) or
            /// local file streams through zstd (never to disk) and its sha256 is
            /// checked against the manifest before anything is committed, so a
            /// damaged backup restores nothing. The target (`database`: url or name;
            /// default the context's) is created when it does not exist (`create`,
            /// default true; dropped again if the restore fails, and started over
            /// by the next restore if this one is killed). Into a database it
            /// created, a custom archive's table data is loaded over `parallel`
            /// connections at once (default 2, up to 16) between pg_restore's schema
            /// and its indexes and constraints; `parallel: 1`, an existing target,
            /// plain and tar dumps go through one `pg_restore` (`psql` for plain)
            /// in one transaction (`single_transaction`, default true); without a
            /// manifest, the backup's first bytes tell its format. A target
            /// that has tables is refused unless `clean: true`, which replaces its
            /// objects in place. Options: `from`, `database`, `clean`, `create`,
            /// `no_owner`, `single_transaction`, `parallel`. Returns `#{database,
            /// created, tables (row counts after the restore), rows, bytes, sha256,
            /// verified, connections (that loaded the data), duration_ms}`.
            ///
            /// ```rhai
            /// let r = pg::restore(#{from: "s3://backups/todos/20260101T000000Z.dump.zst", database: "todos_restored"});
            /// ```
            write fn pg::restore("opts: map") -> "#{from: string, database: string, server: string, created: bool, tables: map, rows: int, bytes: int, sha256: string, verified: bool, connections: int, duration_ms: int}"
            restore_call
        },
        function! {
            /// Run one SQL statement that reads and return its rows as maps (column →
            /// value: ints, floats, strings, bools, maps for json, `()` for NULL). It
            /// runs in a dry-run, so it must not write: only one statement that
            /// starts with SELECT, WITH, VALUES, TABLE, SHOW or EXPLAIN is sent, never
            /// COPY or a call of a function with effects outside the transaction
            /// (`pg_terminate_backend`, `lo_export`, `dblink_exec`, `set_config`, ...),
            /// and it runs in a read-only transaction. That list cannot know every
            /// function: connect as a role without superuser (`read_url` in
            /// `[context.X.pg]`, used before `url`) to rely on the server instead;
            /// `pg::query` warns when it is connected as a superuser. Use `pg::exec`
            /// to change data. `database` is a url, a database name on the context's
            /// server, or `()` for the context's `pg.read_url` / `pg.url`.
            ///
            /// ```rhai
            /// for row in pg::query("todos", "select count(*) as n from todos") {
            ///     print(row.n);
            /// }
            /// ```
            read fn pg::query("database: string | secret | map | ()", "sql: string") -> "array<map>"
            query
        },
        function! {
            /// Run SQL statements that change data or schema (one or more, separated by
            /// `;`). Returns the number of rows they affected. Not run in a dry-run.
            ///
            /// ```rhai
            /// pg::exec("todos", "update todos set done = true where id = 1");
            /// ```
            write fn pg::exec("database: string | secret | map | ()", "sql: string | secret") -> "int"
            exec
        },
        function! {
            /// Set a role's password. The password must be a secret; it never appears
            /// in argv, output, the journal or the server's statement log: the
            /// verifier (SCRAM-SHA-256, or md5 if the server's password_encryption
            /// says so) is computed here, as psql's `\password` does, and the server
            /// builds `ALTER ROLE` from bind parameters. Returns `#{role, database,
            /// method}`.
            ///
            /// ```rhai
            /// let password = secrets::generate(#{length: 32});
            /// pg::set_password("todos", "app", password);
            /// ```
            write fn pg::set_password("database: string | secret | map | ()", "role: string", "password: secret") -> "#{role: string, database: string, method: string}"
            set_password
        },
        function! {
            /// Try to log in with exactly the credentials given and run a probe
            /// query; never fails on a refused login, so the runbook decides. The
            /// database is a url, a name, `()`, or a map of connection details
            /// (`url`/`DATABASE_URL`, `host`, `port`, `user`/`username`, `password`,
            /// `database`): an app's Secret from `k8s::secret` works as it is.
            /// Returns `#{ok, user, database, server, error}` (`error` is `()` when
            /// the login worked).
            ///
            /// ```rhai
            /// let login = pg::login_check(k8s::secret("app-db", #{plain: ["username"]}));
            /// if login.ok == false { log::warn("the app's credentials do not log in: " + login.error); }
            /// ```
            read fn pg::login_check("database: string | secret | map | ()") -> "#{ok: bool, user: string, database: string, server: string, error: string | ()}"
            login_check
        },
        function! {
            /// Make sure a role exists, creating it (`LOGIN` unless `login: false`)
            /// when it is missing, and make it a member of each role in `member_of`
            /// (a name or an array): grants belong to the group role, so two login
            /// roles that share it cannot drift apart. Returns `#{role, created,
            /// granted}` (`granted`: the groups it joined now). Options:
            /// `member_of`, `login`.
            ///
            /// ```rhai
            /// pg::ensure_role("todos", "app_alt", #{member_of: "app_group"});
            /// ```
            write fn pg::ensure_role("database: string | secret | map | ()", "role: string", "opts?: map") -> "#{role: string, created: bool, granted: array<string>}"
            ensure_role
        },
    ]
}
