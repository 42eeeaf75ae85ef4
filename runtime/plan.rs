//! What a dry-run would change: the plan's items, collected by the gate
//! (`gate.rs`) and rendered by the printer.

/// A write not run in a dry-run, or a gate that would be asked.
#[derive(Debug, Clone)]
pub enum PlanItem {
    Change {
        /// `module::name`.
        function: String,
        /// The call as people read it: `k8s::set_image("backend", "v2")`.
        call: String,
        /// Its arguments as JSON values (secrets masked).
        args: Vec<serde_json::Value>,
        at: String,
        step: Option<String>,
        /// What the server's own dry run said would change (a diff), if it has one.
        detail: Option<String>,
        /// The offline reads (`<k8s::image("backend")>`) the change depends on:
        /// what it really does is unknown until the run.
        unknown: Vec<String>,
    },
    Gate {
        message: String,
        at: String,
        confirm: Option<String>,
    },
}
