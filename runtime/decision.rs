//! The effect × mode table (DESIGN.md, "The three modes"): whether a call
//! runs, runs its backend's own dry run, or is skipped, and why. Pure, so
//! every cell is a unit test; `gate::RunHost` wraps it with the plan, the
//! fixtures and the events, and approval gates ask it whether they are asked.

use runbook_stdlib::Effect;

use crate::event::Mode;

/// What happens to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The body runs.
    Run,
    /// The backend's own dry run runs (Kubernetes `dryRun=All`); the call is
    /// part of the plan.
    Preview,
    /// The body does not run.
    Skip(Skip),
}

/// Why a call was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// A write in a dry-run: it is part of the plan.
    Planned,
    /// An offline read answered from `--fixtures`.
    Fixture,
    /// An offline read without a fixture: a typed placeholder stands in.
    Placeholder,
}

/// Decide one call from its declared effect, the run's mode, whether a
/// fixture answers it and whether its backend has a dry run of its own.
pub fn decide(effect: Effect, mode: Mode, has_fixture: bool, has_preview: bool) -> Decision {
    match (effect, mode) {
        // A read that writes locally (a download): its dry-run body writes
        // elsewhere and the plan notes the target.
        (Effect::Read, Mode::DryRun) if has_preview => Decision::Preview,
        (Effect::Local, _)
        | (Effect::Read, Mode::Live | Mode::DryRun)
        | (Effect::Write, Mode::Live) => Decision::Run,
        (Effect::Read, Mode::DryRunOffline) if has_fixture => Decision::Skip(Skip::Fixture),
        (Effect::Read, Mode::DryRunOffline) => Decision::Skip(Skip::Placeholder),
        (Effect::Write, Mode::DryRun) if has_preview => Decision::Preview,
        (Effect::Write, Mode::DryRun | Mode::DryRunOffline) => Decision::Skip(Skip::Planned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use Decision::{Preview, Run};
    use Effect::{Local, Read, Write};
    use Mode::{DryRun, DryRunOffline, Live};

    const PLANNED: Decision = Decision::Skip(Skip::Planned);
    const FIXTURE: Decision = Decision::Skip(Skip::Fixture);
    const PLACEHOLDER: Decision = Decision::Skip(Skip::Placeholder);

    /// (effect, mode, has fixture, has preview) → decision, every cell.
    const TABLE: &[(Effect, Mode, bool, bool, Decision)] = &[
        (Local, Live, false, false, Run),
        (Local, Live, true, true, Run),
        (Local, DryRun, false, false, Run),
        (Local, DryRun, true, true, Run),
        (Local, DryRunOffline, false, false, Run),
        (Local, DryRunOffline, true, true, Run),
        (Read, Live, false, false, Run),
        (Read, Live, true, false, Run),
        (Read, DryRun, false, false, Run),
        (Read, DryRun, true, false, Run),
        (Read, DryRun, false, true, Preview),
        (Read, Live, false, true, Run),
        (Read, DryRunOffline, false, true, PLACEHOLDER),
        (Read, DryRunOffline, false, false, PLACEHOLDER),
        (Read, DryRunOffline, true, false, FIXTURE),
        (Write, Live, false, false, Run),
        (Write, Live, false, true, Run),
        (Write, DryRun, false, false, PLANNED),
        (Write, DryRun, false, true, Preview),
        (Write, DryRunOffline, false, false, PLANNED),
        (Write, DryRunOffline, false, true, PLANNED),
        (Write, DryRunOffline, true, true, PLANNED),
    ];

    #[test]
    fn every_cell_of_the_effect_table() {
        for &(effect, mode, fixture, preview, expected) in TABLE {
            assert_eq!(
                decide(effect, mode, fixture, preview),
                expected,
                "{effect} in {mode:?} (fixture: {fixture}, preview: {preview})"
            );
        }
        // Every (effect, mode) pair appears in the table.
        for effect in [Local, Read, Write] {
            for mode in [Live, DryRun, DryRunOffline] {
                assert!(
                    TABLE.iter().any(|row| row.0 == effect && row.1 == mode),
                    "{effect} × {mode:?} is not in the table"
                );
            }
        }
    }
}
