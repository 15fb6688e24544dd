//! `sync` on an Argo CD Application (pure): `.operation.sync` initiated by this controller, the
//! run in `info`, only when no operation is requested or running, guarded by the object's
//! resourceVersion so two syncs can never be started over each other.

use nbg_core::foreign::{Operation, OperationStatus};
use serde_json::json;

use super::{OPERATION_INFO_RUN, Plan, RunStamp, Unsupported, WaitFor};
use crate::live::LiveTarget;

fn has_run(op: Option<&Operation>, run: &str) -> bool {
    op.is_some_and(|o| {
        o.info
            .iter()
            .any(|i| i.name == OPERATION_INFO_RUN && i.value == run)
    })
}

pub fn application(live: &LiveTarget, run: &RunStamp<'_>) -> Plan {
    let Some(app) = live.application() else {
        return Plan::Unsupported(Unsupported::NotRead("an Argo CD Application"));
    };
    let requested = app.operation.as_ref();
    let state = app.status.as_ref().and_then(|s| s.operation_state.as_ref());
    // Requested by us, or finished with our run: never again for the same run.
    if has_run(requested, run.run) || has_run(state.and_then(|s| s.operation.as_ref()), run.run) {
        return Plan::AlreadyApplied;
    }
    match app.operation_status() {
        OperationStatus::Running => return Plan::Wait(WaitFor::OperationRunning),
        OperationStatus::Requested => return Plan::Wait(WaitFor::OperationRequested),
        OperationStatus::Idle => {}
    }
    Plan::Patch(json!({
        "metadata": {"resourceVersion": app.metadata.resource_version},
        "operation": {
            "sync": {},
            "initiatedBy": {"username": "trigger-controller"},
            "info": [{"name": OPERATION_INFO_RUN, "value": run.run}]
        }
    }))
}
