//! What a fresh lab cluster holds: namespaces `default`, `staging` and
//! `production`; in staging and production the Deployments `backend` and
//! `frontend` (`registry.lab/<app>:v1`, 2 replicas, label `app=<app>`),
//! already rolled out (the backend's `DATABASE_URL` comes from the Secret
//! `app-db`, which the lab adds when PostgreSQL runs too), and the Secret
//! `app-secrets`.

use base64::Engine as _;
use serde_json::{Value, json};

use super::api::{self, WriteOptions};
use super::controller::{self, Memory};
use super::errors::ApiError;
use super::resources::find;
use super::store::Store;

/// The namespaces the lab starts with.
pub(crate) const NAMESPACES: &[&str] = &["default", "staging", "production"];

/// The Deployments in staging and production.
pub(crate) const APPS: &[&str] = &["backend", "frontend"];

/// The value of `DB_PASSWORD` in the `app-secrets` Secret.
pub(crate) const DB_PASSWORD: &str = "lab-db-password";

fn deployment(app: &str) -> Value {
    let mut deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": app, "labels": { "app": app } },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": app } },
            "template": {
                "metadata": { "labels": { "app": app } },
                "spec": { "containers": [{
                    "name": app,
                    "image": format!("registry.lab/{app}:v1"),
                    "ports": [{ "containerPort": 8080, "name": "http" }],
                }] },
            },
        },
    });
    // The backend reads its database credentials from the Secret `app-db`.
    if app == "backend"
        && let Some(container) = deployment.pointer_mut("/spec/template/spec/containers/0")
    {
        container["env"] = json!([{
            "name": "DATABASE_URL",
            "valueFrom": { "secretKeyRef": { "name": APP_DB_SECRET, "key": "DATABASE_URL" } },
        }]);
    }
    deployment
}

/// The Secret the backend takes its database credentials from (created by
/// the lab when PostgreSQL runs too: it holds that server's address).
pub(crate) const APP_DB_SECRET: &str = "app-db";

/// Create the seed objects and let the controller roll them out at once.
pub(crate) fn seed(store: &mut Store, memory: &mut Memory) -> Result<(), ApiError> {
    let options = WriteOptions {
        dry_run: false,
        manager: "runbook-lab".into(),
    };
    let kind = |name: &str| find(name).ok_or_else(|| ApiError::internal(format!("no type {name}")));
    for namespace in NAMESPACES {
        api::create(
            store,
            kind("namespaces")?,
            "",
            json!({ "metadata": { "name": namespace } }),
            &options,
        )?;
    }
    for namespace in ["staging", "production"] {
        for app in APPS {
            api::create(
                store,
                kind("deployments")?,
                namespace,
                deployment(app),
                &options,
            )?;
        }
        let secret = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": { "name": "app-secrets" },
            "type": "Opaque",
            "data": { "DB_PASSWORD": base64::engine::general_purpose::STANDARD.encode(DB_PASSWORD) },
        });
        api::create(store, kind("secrets")?, namespace, secret, &options)?;
    }
    controller::settle(store, memory);
    Ok(())
}
