//! `reconcile` on a Flux object (pure): Flux's own request, `reconcile.fluxcd.io/requestedAt`
//! with the time as `flux reconcile` writes it, and `mlops.dev/reconcile-requested: "<run>
//! <time>"` beside it in the same patch. Flux copies the value it handled into
//! `status.lastHandledReconcileAt`, which tells this request's completion
//! (`rollout::flux_reconcile_state`). A suspended object is never reconciled: refused, naming
//! how to resume it, rather than waited on.

use nbg_core::annotations::RECONCILE_REQUESTED;
use nbg_core::foreign::RestartMarker;
use nbg_core::foreign::flux::RECONCILE_REQUESTED_AT;
use serde_json::json;

use super::{Plan, RunStamp, Unsupported};
use crate::live::LiveTarget;

pub fn flux(live: &LiveTarget, run: &RunStamp<'_>) -> Plan {
    let Some(object) = live.flux() else {
        return Plan::Unsupported(Unsupported::NotRead("a Flux object"));
    };
    let marker = live
        .annotation("/metadata/annotations", RECONCILE_REQUESTED)
        .map(RestartMarker::parse);
    if marker.is_some_and(|m| m.run == run.run) {
        return Plan::AlreadyApplied;
    }
    if object.spec.suspend {
        let kind = live.text("/kind").unwrap_or_default().to_string();
        return Plan::Unsupported(Unsupported::Suspended {
            command: match kind.as_str() {
                "Kustomization" => "kustomization",
                "HelmRelease" => "helmrelease",
                "GitRepository" => "source git",
                "OCIRepository" => "source oci",
                _ => "<kind>",
            },
            kind,
            namespace: object.metadata.namespace.clone().unwrap_or_default(),
            name: object.metadata.name.clone().unwrap_or_default(),
        });
    }
    Plan::Patch(json!({"metadata": {"annotations": {
        RECONCILE_REQUESTED_AT: run.now,
        RECONCILE_REQUESTED: format!("{} {}", run.run, run.now),
    }}}))
}
