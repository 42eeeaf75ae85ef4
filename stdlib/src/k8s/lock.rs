//! `k8s::lock(name, ttl)`: a `coordination.k8s.io/v1` Lease that keeps two
//! runs from working on the same thing. Taken when free, expired or ours;
//! renewed every ttl/3 by a background task while the process lives;
//! released (deleted) at the end of the run. Every write carries the
//! `resourceVersion` it read, so two runs racing for it cannot both win: the
//! loser's 409 makes it read again and find the winner.

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams, Preconditions};
use rhai::{Dynamic, Map};

use super::client::{Kube, connect};
use super::error::{
    CONFLICT_ATTEMPTS, Subject, api, conflict_pause, is_already_exists, is_conflict,
    too_many_conflicts,
};
use super::objects::to_value;
use super::rollout::rfc3339;
use super::{FIELD_MANAGER, Mode, diff, settings};
use crate::function::{Call, Failure};
use crate::host::{Level, StdlibError};

/// Who this process is, as written into `holderIdentity`:
/// `alice@ops1 pid 4242 started 2026-11-22T01:00:00Z`. The person comes
/// from the Host (the same identity the journal and the gates record); the
/// pid and start time tell this process from another run of the same person.
/// Fixed at the first lock of the process.
pub(crate) fn identity(actor: &str) -> &'static str {
    static IDENTITY: OnceLock<String> = OnceLock::new();
    IDENTITY.get_or_init(|| {
        format!(
            "{actor} pid {} started {}",
            std::process::id(),
            rfc3339(Timestamp::now().as_second())
        )
    })
}

/// `alice@ops1 (pid 4242)` from an identity written by [`identity`]; other
/// holders' identities as they are.
pub(crate) fn holder_display(identity: &str) -> String {
    let mut words = identity.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(who), Some("pid"), Some(pid)) => format!("{who} (pid {pid})"),
        _ => identity.to_owned(),
    }
}

/// Who holds a Lease, from our point of view.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Holder {
    /// Nobody: no holder, or a released lease.
    Free,
    /// This process.
    Ours,
    /// Someone whose lease ran out without renewal.
    Expired(String),
    /// Someone else, still within the lease: (holder, since).
    Other(String, Option<String>),
}

/// Decide about a Lease the way client-go's leader election does: held
/// while `renewTime + leaseDurationSeconds` is in the future.
pub(crate) fn assess(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Holder {
    let Some(spec) = spec else {
        return Holder::Free;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.trim().is_empty() {
        return Holder::Free;
    }
    if holder == me {
        return Holder::Ours;
    }
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|time| time.0);
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    match renewed {
        Some(renewed) if renewed.as_second().saturating_add(duration) > now.as_second() => {
            let since = spec
                .acquire_time
                .as_ref()
                .map(|time| rfc3339(time.0.as_second()));
            Holder::Other(holder, since)
        }
        _ => Holder::Expired(holder),
    }
}

/// The spec that says we hold it, now, for `ttl` seconds.
fn our_spec(
    live: Option<&LeaseSpec>,
    me: &str,
    ttl: i32,
    now: Timestamp,
    ours_already: bool,
) -> LeaseSpec {
    let mut spec = live.cloned().unwrap_or_default();
    let transitions = spec.lease_transitions.unwrap_or(0);
    if !ours_already {
        spec.acquire_time = Some(MicroTime(now));
        if live.is_some_and(|live| {
            live.holder_identity
                .as_deref()
                .is_some_and(|h| !h.is_empty())
        }) {
            spec.lease_transitions = Some(transitions + 1);
        }
    }
    spec.holder_identity = Some(me.to_owned());
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(ttl);
    spec
}

/// A lease this process holds, renewed in the background.
struct Held {
    kube: Kube,
    name: String,
    /// Our holder identity, as written into the lease.
    me: &'static str,
    renewer: tokio::task::JoinHandle<()>,
}

fn held() -> &'static Mutex<Vec<Held>> {
    static HELD: OnceLock<Mutex<Vec<Held>>> = OnceLock::new();
    HELD.get_or_init(Mutex::default)
}

fn locked_message(subject: &Subject, holder: &str, since: Option<&str>) -> String {
    let name = subject.name.as_deref().unwrap_or_default();
    let namespace = subject.namespace.as_deref().unwrap_or("default");
    format!(
        "lease `{name}` in `{namespace}` is held by {}{}",
        holder_display(holder),
        since
            .map(|since| format!(" since {since}"))
            .unwrap_or_default()
    )
}

/// Where `acquire` reports: the plan detail of a dry run, debug messages.
struct Report<'a> {
    plan: &'a dyn Fn(&str),
    debug: &'a dyn Fn(&str),
}

/// Take the lease (or, in a dry run, find out whether it could be taken and
/// what would be written). Returns the stored (would-be) lease.
async fn acquire(
    kube: &Kube,
    subject: &Subject,
    ttl: i32,
    mode: Mode,
    me: &'static str,
    report: &Report<'_>,
) -> Result<Lease, StdlibError> {
    let dry_run = mode == Mode::Preview;
    let name = subject.name.clone().unwrap_or_default();
    let leases: Api<Lease> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let params = PostParams {
        dry_run,
        field_manager: Some(FIELD_MANAGER.to_owned()),
    };
    let mut conflicts = 0;
    loop {
        let live = leases
            .get_opt(&name)
            .await
            .map_err(|error| api(kube, subject, "read", &error))?;
        let now = Timestamp::now();
        let state = assess(live.as_ref().and_then(|lease| lease.spec.as_ref()), me, now);
        if let Holder::Other(holder, since) = &state {
            let message = locked_message(subject, holder, since.as_deref());
            if dry_run {
                (report.plan)(&format!(
                    "{message}: a live run would stop here (exit code 4)"
                ));
                return live.ok_or_else(|| StdlibError::message("the lease vanished"));
            }
            return Err(StdlibError::Locked { message });
        }
        let ours = state == Holder::Ours;
        let result = match &live {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(kube.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(our_spec(None, me, ttl, now, false)),
                };
                leases.create(&params, &lease).await
            }
            Some(live) => {
                let mut lease = live.clone();
                lease.spec = Some(our_spec(live.spec.as_ref(), me, ttl, now, ours));
                leases.replace(&name, &params, &lease).await
            }
        };
        match result {
            Ok(stored) => {
                if dry_run {
                    let before = live.as_ref().map(to_value);
                    let mut detail = diff::detail(
                        &subject.describe(),
                        before.as_ref(),
                        Some(&to_value(&stored)),
                        false,
                    );
                    if let Holder::Expired(holder) = &state {
                        detail = format!(
                            "{detail}\n(the lease of {} has expired; a live run takes it over)",
                            holder_display(holder)
                        );
                    }
                    (report.plan)(&detail);
                }
                return Ok(stored);
            }
            // Someone created or renewed it since we read it: read again, decide again.
            Err(error) if is_conflict(&error) || is_already_exists(&error) => {
                conflicts += 1;
                (report.debug)(&format!(
                    "{}: written by someone else at the same moment ({}); reading it again",
                    subject.describe(),
                    super::error::brief(&error)
                ));
                if conflicts >= CONFLICT_ATTEMPTS {
                    return Err(too_many_conflicts(subject));
                }
                conflict_pause(conflicts).await;
            }
            Err(error) => return Err(api(kube, subject, "take", &error)),
        }
    }
}

/// Renew our lease once: `false` when it is no longer ours (or gone).
async fn renew(kube: &Kube, name: &str, me: &str, ttl: i32) -> bool {
    let leases: Api<Lease> = Api::namespaced(kube.client.clone(), &kube.namespace);
    for _ in 0..CONFLICT_ATTEMPTS {
        let live = match leases.get_opt(name).await {
            Ok(Some(live)) => live,
            Ok(None) => return false,
            // The API is unreachable for now: try again at the next tick.
            Err(_) => return true,
        };
        let now = Timestamp::now();
        if assess(live.spec.as_ref(), me, now) != Holder::Ours {
            return false;
        }
        let mut lease = live.clone();
        lease.spec = Some(our_spec(live.spec.as_ref(), me, ttl, now, true));
        match leases.replace(name, &PostParams::default(), &lease).await {
            Ok(_) => return true,
            Err(error) if is_conflict(&error) => continue,
            Err(_) => return true,
        }
    }
    true
}

/// Keep renewing every ttl/3 until the lease is no longer ours.
fn spawn_renewer(
    kube: Kube,
    name: String,
    me: &'static str,
    ttl: i32,
) -> tokio::task::JoinHandle<()> {
    let every = Duration::from_secs(u64::try_from(ttl).unwrap_or(1).max(1))
        .div_f64(3.0)
        .max(Duration::from_millis(200));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if !renew(&kube, &name, me, ttl).await {
                return;
            }
        }
    })
}

/// Release one lease: delete it if it is still ours.
async fn release(kube: &Kube, name: &str, me: &str) {
    let leases: Api<Lease> = Api::namespaced(kube.client.clone(), &kube.namespace);
    for attempt in 0..CONFLICT_ATTEMPTS {
        let Ok(Some(live)) = leases.get_opt(name).await else {
            return;
        };
        if live
            .spec
            .as_ref()
            .and_then(|spec| spec.holder_identity.as_deref())
            != Some(me)
        {
            return;
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: live.metadata.resource_version.clone(),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        match leases.delete(name, &params).await {
            Ok(_) => return,
            Err(error) if is_conflict(&error) => conflict_pause(attempt + 1).await,
            // Gone already, or the API is unreachable: it expires by itself.
            Err(_) => return,
        }
    }
}

/// Release every lease this process took (end of a run).
pub(crate) async fn release_all() {
    let taken: Vec<Held> = {
        let mut held = held().lock().unwrap_or_else(PoisonError::into_inner);
        held.drain(..).collect()
    };
    for lease in taken {
        lease.renewer.abort();
        release(&lease.kube, &lease.name, lease.me).await;
    }
}

/// `k8s::lock(name, ttl, opts?)`.
pub(crate) fn lock(call: &mut Call<'_>, mode: Mode) -> Result<Dynamic, Failure> {
    let dry_run = mode == Mode::Preview;
    let name = call.string(0)?;
    let ttl = call.duration(1)?;
    let ttl_seconds = i32::try_from(ttl.as_secs_f64().ceil() as i64)
        .ok()
        .filter(|seconds| *seconds >= 1)
        .ok_or_else(|| call.bad_arg(1, "must be at least 1s (and below 68 years)"))?;
    let options = call.options(2, &["namespace"])?;
    let settings = settings(call)?;
    let namespace = options.string("namespace")?;
    let host = call.host;
    let me = identity(&host.actor());
    let plan = |detail: &str| host.plan_detail(detail);
    let debug = |message: &str| host.log(Level::Debug, message);
    let report = Report {
        plan: &plan,
        debug: &debug,
    };
    let (kube, lease) = call.block_on(async {
        let kube = connect(&settings, namespace).await?;
        let subject = Subject::new("lease", &name, Some(&kube.namespace));
        let lease = acquire(&kube, &subject, ttl_seconds, mode, me, &report).await?;
        if !dry_run {
            let renewer = spawn_renewer(kube.clone(), name.clone(), me, ttl_seconds);
            let mut held = held().lock().unwrap_or_else(PoisonError::into_inner);
            // Taken again by the same run: one renewer is enough.
            if let Some(index) = held
                .iter()
                .position(|lease| lease.name == name && lease.kube.namespace == kube.namespace)
            {
                held.remove(index).renewer.abort();
            }
            held.push(Held {
                kube: kube.clone(),
                name: name.clone(),
                me,
                renewer,
            });
        }
        Ok((kube, lease))
    })?;
    let mut map = Map::new();
    map.insert("lease".into(), Dynamic::from(name));
    map.insert("namespace".into(), Dynamic::from(kube.namespace));
    map.insert(
        "holder".into(),
        Dynamic::from(
            lease
                .spec
                .and_then(|spec| spec.holder_identity)
                .unwrap_or_default(),
        ),
    );
    map.insert("ttl".into(), Dynamic::from_int(i64::from(ttl_seconds)));
    Ok(Dynamic::from_map(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    fn spec(holder: &str, acquired: i64, renewed: i64, ttl: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            acquire_time: Some(MicroTime(at(acquired))),
            renew_time: Some(MicroTime(at(renewed))),
            lease_duration_seconds: Some(ttl),
            ..LeaseSpec::default()
        }
    }

    const ALICE: &str = "alice@ops1 pid 4242 started 2026-11-22T00:59:58Z";

    #[test]
    fn a_live_lease_of_someone_else_is_held() {
        let now = 1_800_000_100;
        let lease = spec(ALICE, now - 100, now - 10, 60);
        assert_eq!(
            assess(Some(&lease), "me", at(now)),
            Holder::Other(ALICE.into(), Some(rfc3339(now - 100)))
        );
    }

    #[test]
    fn expired_free_and_own_leases_can_be_taken() {
        let now = 1_800_000_100;
        assert_eq!(
            assess(Some(&spec(ALICE, now - 100, now - 61, 60)), "me", at(now)),
            Holder::Expired(ALICE.into())
        );
        // Exactly at the end of the lease it is over.
        assert_eq!(
            assess(Some(&spec(ALICE, now - 100, now - 60, 60)), "me", at(now)),
            Holder::Expired(ALICE.into())
        );
        assert_eq!(assess(None, "me", at(now)), Holder::Free);
        assert_eq!(
            assess(Some(&spec("", now, now, 60)), "me", at(now)),
            Holder::Free
        );
        assert_eq!(
            assess(Some(&LeaseSpec::default()), "me", at(now)),
            Holder::Free
        );
        assert_eq!(
            assess(Some(&spec("me", now, now, 60)), "me", at(now)),
            Holder::Ours
        );
        // No renew time at all: nothing says it is alive.
        let stale = LeaseSpec {
            holder_identity: Some(ALICE.into()),
            ..LeaseSpec::default()
        };
        assert_eq!(
            assess(Some(&stale), "me", at(now)),
            Holder::Expired(ALICE.into())
        );
    }

    #[test]
    fn the_held_message_names_holder_and_since() {
        let subject = Subject::new("lease", "deploy-backend", Some("staging"));
        assert_eq!(
            locked_message(&subject, ALICE, Some("2026-11-22T01:00:00Z")),
            "lease `deploy-backend` in `staging` is held by alice@ops1 (pid 4242) since 2026-11-22T01:00:00Z"
        );
        assert_eq!(holder_display("controller-xyz"), "controller-xyz");
    }

    #[test]
    fn our_identity_names_the_actor_and_pid() {
        let me = identity("alice@ops1");
        assert!(me.starts_with("alice@ops1 pid "), "{me}");
        assert!(
            me.contains(&format!(" pid {} started ", std::process::id())),
            "{me}"
        );
        assert!(holder_display(me).ends_with(&format!("(pid {})", std::process::id())));
    }

    #[test]
    fn taking_over_counts_a_transition_and_keeps_renewals_cheap() {
        let now = at(1_800_000_000);
        let me = "bob@ops2 pid 7 started 2026-11-22T01:00:00Z";
        let taken = our_spec(Some(&spec(ALICE, 1, 2, 60)), me, 30, now, false);
        assert_eq!(taken.holder_identity.as_deref(), Some(me));
        assert_eq!(taken.lease_transitions, Some(1));
        assert_eq!(taken.acquire_time, Some(MicroTime(now)));
        assert_eq!(taken.lease_duration_seconds, Some(30));
        let renewed = our_spec(Some(&taken), me, 30, at(1_800_000_010), true);
        assert_eq!(renewed.acquire_time, Some(MicroTime(now)));
        assert_eq!(renewed.lease_transitions, Some(1));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(1_800_000_010))));
        let fresh = our_spec(None, me, 30, now, false);
        assert_eq!(fresh.lease_transitions, None);
    }
}
