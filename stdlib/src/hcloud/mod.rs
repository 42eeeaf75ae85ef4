//! `hcloud::*`: the Hetzner Cloud API over a thin reqwest client. The token
//! is the context's secret `hcloud_token` (else `$HCLOUD_TOKEN`); the
//! endpoint is `[context.NAME.hcloud] endpoint` (else `$HCLOUD_ENDPOINT`,
//! else the public API).
//!
//! | file | job |
//! |---|---|
//! | `client.rs` | settings, token, timeouts, the one `send` with retries and rate limits, paginated lists |
//! | `backoff.rs` | how long to wait: jittered retries, `RateLimit-Reset`, poll intervals |
//! | `paging.rs` | `meta.pagination.next_page` |
//! | `actions.rs` | the action waiter (`GET /actions?id=..`, batches of 25) |
//! | `labels.rs` | `managed-by=runbook`, adoption by labels, selectors |
//! | `resource.rs` | find by name, the adoption rule, common fields |
//! | `servers.rs` | servers: list, get, create, delete |
//! | `firewalls.rs` | firewalls: create, apply, delete |
//! | `ssh_keys.rs` | ssh keys: list, create, delete |
//! | `snapshots.rs` | snapshots and `wait_action` |
//! | `error.rs` | `HcloudError` and its hints |
//!
//! Every write is idempotent (a resource of that name carrying this
//! runbook's labels is adopted, not created twice) and has a preview: an
//! online `--dry-run` looks up what exists and puts what would be created
//! or deleted, with the IDs found, into the plan.

mod actions;
mod backoff;
mod client;
mod error;
mod firewalls;
mod labels;
mod paging;
mod resource;
mod servers;
mod snapshots;
mod ssh_keys;

use std::sync::Arc;

use crate::function;
use crate::function::{Body, Call, Failure, Function};

/// A write with a preview body.
fn with_preview(
    function: Function,
    preview: fn(&mut Call<'_>) -> Result<rhai::Dynamic, Failure>,
) -> Function {
    Function {
        preview: Some(Arc::new(preview) as Body),
        ..function
    }
}

pub(crate) fn functions() -> Vec<Function> {
    vec![
        function! {
            /// Servers of the project (every page), as maps `#{id, name, status,
            /// ipv4, ipv6, server_type, location, image, labels, created, locked}`.
            /// Options: `label` (a selector such as "env=staging,role!=db", or a
            /// map of labels), `name`, `status`.
            ///
            /// ```rhai
            /// for s in hcloud::servers(#{label: "managed-by=runbook"}) {
            ///     log::info(s.name + " " + s.status + " " + s.ipv4);
            /// }
            /// ```
            read fn hcloud::servers("opts?: map") -> "array<map>"
            servers::servers
        },
        function! {
            /// The server called `name` as a map (see `hcloud::servers`), or `()`
            /// when there is none.
            ///
            /// ```rhai
            /// let s = hcloud::server("staging-demo");
            /// if s == () { log::info("no server yet"); }
            /// ```
            read fn hcloud::server("name: string") -> "map | ()"
            servers::server
        },
        with_preview(
            function! {
                /// Create a server and wait until it runs: the spec has `name`,
                /// `server_type`, `image` (required), `location`, `ssh_keys` (names or
                /// IDs), `firewalls` (names), `labels`, `user_data`, `timeout` (default
                /// "30m"). Waits for its `create_server` action and every
                /// `next_actions` entry, then for `status == running`. Idempotent: it
                /// carries `managed-by=runbook` plus `labels`, and a server of that
                /// name carrying them is adopted (`adopted: true`) instead of created;
                /// one with other labels is an error. A create whose answer was lost
                /// is looked up by name before it is sent again. In a dry run the
                /// plan says what would be created, or which existing server is adopted.
                ///
                /// ```rhai
                /// let s = hcloud::create_server(#{
                ///     name: "staging-demo", server_type: "cx22", image: "debian-12",
                ///     location: "fsn1", ssh_keys: ["staging-demo"], labels: #{env: "staging"}
                /// });
                /// log::info("server at " + s.ipv4);
                /// ```
                write fn hcloud::create_server("spec: map") -> "#{id: int, name: string, status: string, ipv4: string, ipv6: string, server_type: string, location: string, image: string, labels: map, created: string, locked: bool, adopted: bool}"
                servers::create_server
            },
            servers::create_server_preview,
        ),
        with_preview(
            function! {
                /// Delete the server called `name` and wait for its action. Returns
                /// true, or false when there was no such server (deleting twice is
                /// not an error).
                ///
                /// ```rhai
                /// if !hcloud::delete_server("staging-demo") { log::info("already gone"); }
                /// ```
                write fn hcloud::delete_server("name: string") -> "bool"
                servers::delete_server
            },
            servers::delete_server_preview,
        ),
        with_preview(
            function! {
                /// Create a firewall: the spec has `name`, `rules` (maps of
                /// `direction`, `protocol`, `port`, `source_ips`, `destination_ips`,
                /// `description`), `labels` and `apply_to` (server names or label
                /// selectors). Waits for its actions. Idempotent like `create_server`;
                /// an adopted firewall whose rules differ gets the asked-for rules.
                /// Returns `#{id, name, labels, rules, applied_to, adopted}`.
                ///
                /// ```rhai
                /// hcloud::create_firewall(#{
                ///     name: "staging-demo",
                ///     rules: [#{direction: "in", protocol: "tcp", port: "22", source_ips: ["0.0.0.0/0", "::/0"]}],
                ///     labels: #{env: "staging"}
                /// });
                /// ```
                write fn hcloud::create_firewall("spec: map") -> "#{id: int, name: string, labels: map, created: string, rules: array, applied_to: array, adopted: bool}"
                firewalls::create_firewall
            },
            firewalls::create_firewall_preview,
        ),
        function! {
            /// Firewalls of the project (every page): `#{id, name, labels, rules,
            /// applied_to, created}`. Options: `label` (selector), `name`.
            ///
            /// ```rhai
            /// for f in hcloud::firewalls(#{label: "managed-by=runbook"}) { log::info(f.name); }
            /// ```
            read fn hcloud::firewalls("opts?: map") -> "array<map>"
            firewalls::firewalls
        },
        with_preview(
            function! {
                /// Delete the firewall called `name`, after removing it from the
                /// servers and selectors it applies to. Returns true, or false when
                /// there was none.
                ///
                /// ```rhai
                /// hcloud::delete_firewall("staging-demo");
                /// ```
                write fn hcloud::delete_firewall("name: string") -> "bool"
                firewalls::delete_firewall
            },
            firewalls::delete_firewall_preview,
        ),
        with_preview(
            function! {
                /// Apply the firewall `name` to a server (its name, or the map
                /// `hcloud::server` returns) or to a label selector ("env=staging"),
                /// and wait for `apply_firewall`. Returns true when it was applied
                /// now, false when it already applied.
                ///
                /// ```rhai
                /// hcloud::apply_firewall("staging-demo", "staging-demo");
                /// hcloud::apply_firewall("staging-demo", "env=staging");
                /// ```
                write fn hcloud::apply_firewall("name: string", "server_or_selector: string | map") -> "bool"
                firewalls::apply_firewall
            },
            firewalls::apply_firewall_preview,
        ),
        function! {
            /// The project's ssh keys: `#{id, name, fingerprint, public_key,
            /// labels, created}`. Options: `label` (selector).
            ///
            /// ```rhai
            /// for key in hcloud::ssh_keys() { log::info(key.name + " " + key.fingerprint); }
            /// ```
            read fn hcloud::ssh_keys("opts?: map") -> "array<map>"
            ssh_keys::ssh_keys
        },
        with_preview(
            function! {
                /// Upload an ssh public key as `name`. Idempotent: a key of that
                /// name with the same key text and this runbook's labels is adopted.
                /// Options: `labels`. Returns `#{id, name, fingerprint, public_key,
                /// labels, adopted}`.
                ///
                /// ```rhai
                /// hcloud::create_ssh_key("ops", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDocExampleKeyDocExampleKeyDocExample ops@example", #{labels: #{env: "staging"}});
                /// ```
                write fn hcloud::create_ssh_key("name: string", "public_key: string", "opts?: map") -> "#{id: int, name: string, fingerprint: string, public_key: string, labels: map, created: string, adopted: bool}"
                ssh_keys::create_ssh_key
            },
            ssh_keys::create_ssh_key_preview,
        ),
        with_preview(
            function! {
                /// Delete the ssh key `name`. Returns true, or false when there was none.
                ///
                /// ```rhai
                /// hcloud::delete_ssh_key("ops");
                /// ```
                write fn hcloud::delete_ssh_key("name: string") -> "bool"
                ssh_keys::delete_ssh_key
            },
            ssh_keys::delete_ssh_key_preview,
        ),
        with_preview(
            function! {
                /// Take a snapshot of the server `server` (an image of type
                /// `snapshot`, labelled `managed-by=runbook` plus the `labels`
                /// option) and wait until it is done. Options: `labels`, `timeout`
                /// (default "10m"). Returns `#{id, name, description, status,
                /// from_server, labels, created}`.
                ///
                /// ```rhai
                /// let image = hcloud::create_snapshot("staging-demo", "before upgrade");
                /// log::info("snapshot " + image.id);
                /// ```
                write fn hcloud::create_snapshot("server: string", "description: string", "opts?: map") -> "#{id: int, name: string, description: string, status: string, from_server: string, labels: map, created: string}"
                snapshots::create_snapshot
            },
            snapshots::create_snapshot_preview,
        ),
        function! {
            /// Snapshots of the project (every page): `#{id, description, status,
            /// from_server, labels, created}`. Options: `label` (selector).
            ///
            /// ```rhai
            /// let old = hcloud::snapshots(#{label: "managed-by=runbook"});
            /// log::info(old.len() + " snapshots");
            /// ```
            read fn hcloud::snapshots("opts?: map") -> "array<map>"
            snapshots::snapshots
        },
        function! {
            /// Wait for the action `id` to succeed (polling from the context's
            /// `poll_interval`, default 1 s, up to 10 s between polls); an action
            /// ending in `error` fails with its code and message. Returns
            /// `#{id, status, waited_ms}`.
            ///
            /// ```rhai
            /// hcloud::wait_action(42, "5m");
            /// ```
            read fn hcloud::wait_action("id: int", "timeout: string") -> "#{id: int, status: string, waited_ms: int}"
            snapshots::wait_action
        },
    ]
}
