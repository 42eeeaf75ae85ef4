//! What a dry-run would change: the plan's items, collected by the gate
//! (`gate.rs`) and rendered by the printer.

/// A write not run in a dry-run, or a gate that would be asked.
#[derive(Debug, Clone)]
pub enum PlanItem {
    Change {
        call: String,
        at: String,
        step: Option<String>,
        /// What the server's own dry run said would change (a diff), if it has one.
        detail: Option<String>,
    },
    Gate {
        message: String,
        at: String,
        confirm: Option<String>,
    },
}
