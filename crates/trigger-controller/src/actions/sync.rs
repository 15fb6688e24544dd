//! `sync` on an Argo CD Application (pure): `.operation.sync` initiated by this controller, the
//! run in `info`, only when no operation is requested or running, guarded by the object's
//! resourceVersion so two syncs can never be started over each other.
//!
//! The operation is the one Argo CD's API server builds for `argocd app sync NAME` (a sync
//! request without options; `server/application/application.go`, `Sync`, v2.14 and v3.2): Argo
//! CD's controller applies only what the operation carries, so it copies what the server
//! copies from the Application (`spec.syncPolicy.syncOptions`, `spec.syncPolicy.retry`, the
//! source `spec.source` as v3 does, or the sources `spec.sources` with one revision each)
//! and leaves prune, dry run, strategy and resources at the request's defaults. The server
//! also resolves the revisions to commit SHAs through the repo-server; this controller cannot
//! reach it, so the target revisions go as written and Argo CD's controller resolves them when
//! the sync starts (docs/trigger-controller.md).

use nbg_core::foreign::{Application, Operation, OperationStatus};
use serde_json::{Map, Value, json};

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
    let mut operation = json!({
        "sync": sync_of(app),
        "initiatedBy": {"username": "trigger-controller"},
        "info": [{"name": OPERATION_INFO_RUN, "value": run.run}]
    });
    if let Some(retry) = spec(app, "/syncPolicy/retry").filter(|r| r.is_object()) {
        operation["retry"] = retry.clone();
    }
    Plan::Patch(json!({
        "metadata": {"resourceVersion": app.metadata.resource_version},
        "operation": operation
    }))
}

fn spec<'a>(app: &'a Application, pointer: &str) -> Option<&'a Value> {
    app.spec.as_ref()?.pointer(pointer).filter(|v| !v.is_null())
}

/// `operation.sync` as the API server builds it for a sync request without options.
fn sync_of(app: &Application) -> Value {
    let mut sync = Map::new();
    if let Some(options) =
        spec(app, "/syncPolicy/syncOptions").filter(|o| o.as_array().is_some_and(|a| !a.is_empty()))
    {
        sync.insert("syncOptions".into(), options.clone());
    }
    match spec(app, "/sources")
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty())
    {
        Some(sources) => {
            let revisions: Vec<Value> = sources
                .iter()
                .map(|s| {
                    s.get("targetRevision")
                        .cloned()
                        .unwrap_or_else(|| json!(""))
                })
                .collect();
            sync.insert("sources".into(), Value::Array(sources.clone()));
            sync.insert("revisions".into(), Value::Array(revisions));
        }
        None => {
            if let Some(source) = spec(app, "/source").filter(|s| s.is_object()) {
                sync.insert("source".into(), source.clone());
            }
        }
    }
    Value::Object(sync)
}
