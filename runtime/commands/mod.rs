//! One file per subcommand: its whole body (cli.rs only parses and dispatches).

pub mod ssh;
