//! event-notifier end to end, under its chart's RBAC, with the test playing nvj-validator (run
//! statuses written with its field manager, as it writes them):
//! - success, a failed cell, a golden mismatch, retries exhausted, a new generation: exactly one
//!   Event each, with its label, reason, type and message; none for a run that ended before
//!   event-notifier was installed; `kubectl get events --field-selector` finds them;
//! - 200 runs ending while the controller is SIGKILLed at random points: exactly one Event per
//!   run, none missing.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use nbg_core::conditions;
use nbg_core::nvj::{NotebookValidationJob, Phase};
use nbg_e2e::harness::cluster::eventually;
use nbg_e2e::harness::controller::{ChartedController, ControllerSpec};
use nbg_e2e::harness::nvj::{mark_finished, minimal};
use nbg_e2e::{Cluster, TestNamespace};
use serde_json::{Value, json};

const LABEL: &str = "mlops.dev/notification-type";

/// Starts the controller and waits until it has recorded its install time (runs that end
/// before then get no Event, by design).
async fn start(cluster: &Cluster, ns: &str) -> ChartedController {
    let controller = start_process(cluster, ns).await;
    let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(cluster.client().await, ns);
    eventually(
        Duration::from_secs(30),
        "the install time recorded",
        || async {
            configmaps
                .get_opt("event-notifier-state")
                .await
                .ok()
                .flatten()
                .map(|_| ())
        },
    )
    .await;
    controller
}

async fn start_process(cluster: &Cluster, ns: &str) -> ChartedController {
    ChartedController::start(
        cluster,
        ControllerSpec {
            name: "event-notifier",
            release_namespace: ns,
            namespaces: &[ns],
            values: &[],
            // In a pod, POD_NAMESPACE says where the state ConfigMap lives.
            args: &["--state-namespace".to_string(), ns.to_string()],
        },
    )
    .await
}

async fn create(api: &Api<NotebookValidationJob>, name: &str) -> NotebookValidationJob {
    api.create(&PostParams::default(), &minimal(name, &BTreeMap::new()))
        .await
        .expect("create the NVJ")
}

/// Writes a final status as nvj-validator does: `extra` fields merged in, Ready's reason given.
async fn end_run(
    api: &Api<NotebookValidationJob>,
    name: &str,
    phase: Phase,
    reason: &str,
    extra: Value,
) {
    let nvj = api.get(name).await.expect("nvj");
    let now =
        Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH));
    let message = extra["message"].as_str().unwrap_or("done").to_string();
    let conds = conditions::for_phase(&[], phase, reason, &message, nvj.metadata.generation, &now);
    let mut status = json!({"phase": phase, "observedGeneration": nvj.metadata.generation,
        "startTime": now, "completionTime": now, "message": message, "conditions": conds});
    if let (Some(s), Some(e)) = (status.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    let body = json!({"apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob", "status": status});
    api.patch_status(
        name,
        &PatchParams::apply("nvj-validator").force(),
        &Patch::Apply(&body),
    )
    .await
    .expect("write the run's status");
}

/// The Events event-notifier created about `name`.
async fn events_of(events: &Api<Event>, name: &str) -> Vec<Event> {
    events
        .list(&ListParams::default().labels(LABEL))
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

async fn one_event(events: &Api<Event>, name: &str, count: usize) -> Event {
    let found = eventually(
        Duration::from_secs(20),
        &format!("{count} Event(s) for {name}"),
        || async {
            let found = events_of(events, name).await;
            (found.len() >= count).then_some(found)
        },
    )
    .await;
    // Nothing more comes later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = events_of(events, name).await;
    assert_eq!(
        again.len(),
        count,
        "exactly {count} Event(s) for {name}: {again:#?}"
    );
    let mut found = found;
    found.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    found.pop().expect("an Event")
}

fn check(e: &Event, type_: &str, reason: &str, label: &str, parts: &[&str]) {
    assert_eq!(e.type_.as_deref(), Some(type_));
    assert_eq!(e.reason.as_deref(), Some(reason));
    assert_eq!(e.reporting_controller.as_deref(), Some("event-notifier"));
    assert_eq!(
        e.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL))
            .map(String::as_str),
        Some(label)
    );
    let note = e.note.as_deref().unwrap_or_default();
    for p in parts {
        assert!(note.contains(p), "{p:?} not in the note {note:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_event_per_run_with_what_an_operator_needs() {
    let cluster = Cluster::get();
    let ns = TestNamespace::new(&cluster, "en-runs").await;
    let n = ns.name.as_str();
    let client = cluster.client().await;
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), n);
    let events: Api<Event> = Api::namespaced(client.clone(), n);

    // Ended before event-notifier was installed: no Event.
    let old = create(&nvjs, "before-install").await;
    mark_finished(&nvjs, &old, Phase::Failed, "old failure")
        .await
        .expect("status");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let controller = start(&cluster, n).await;

    create(&nvjs, "ok").await;
    end_run(
        &nvjs,
        "ok",
        Phase::Succeeded,
        "Succeeded",
        json!({"message": "all cells succeeded",
        "results": [{"cellIndex": 0, "status": "Success"}, {"cellIndex": 1, "status": "Success"}]}),
    )
    .await;
    create(&nvjs, "cell").await;
    end_run(&nvjs, "cell", Phase::Failed, "CellFailed", json!({"message": "cell 2 failed", "retryCount": 0,
        "results": [{"cellIndex": 0, "status": "Success"}, {"cellIndex": 1, "status": "Failure", "errorMessage": "KeyError: 'amount'\nTraceback (most recent call last)"}]})).await;
    create(&nvjs, "golden").await;
    end_run(&nvjs, "golden", Phase::Failed, "GoldenMismatch", json!({"message": "golden mismatch",
        "comparisonResult": {"strategy": "normalized", "result": "failed", "totalCells": 10, "matchedCells": 9, "mismatchedCells": 1,
            "diffs": [{"cellIndex": 6, "cellType": "code", "diffType": "output_mismatch", "diff": "- accuracy 0.93\n+ accuracy 0.71", "severity": "major"}]}})).await;
    create(&nvjs, "retries").await;
    end_run(
        &nvjs,
        "retries",
        Phase::Failed,
        "RetriesExhausted",
        json!({"message": "the validation pod was evicted 4 times", "retryCount": 3}),
    )
    .await;

    let e = one_event(&events, "ok", 1).await;
    check(
        &e,
        "Normal",
        "ValidationSucceeded",
        "validation-success",
        &[
            &format!("Validation succeeded for {n}/ok"),
            "2 cells ran",
            "https://git.example/r.git at main, a.ipynb",
        ],
    );
    let e = one_event(&events, "cell", 1).await;
    check(
        &e,
        "Warning",
        "ValidationFailed",
        "validation-failure",
        &[
            "Cell 2 failed: KeyError: 'amount'.",
            "Retries: 0.",
            "nvj-validator run a.ipynb",
        ],
    );
    let e = one_event(&events, "golden", 1).await;
    check(
        &e,
        "Warning",
        "ValidationFailed",
        "validation-failure",
        &[
            "Golden mismatch: 1 of 10 cells differ; first: cell 7 (OutputMismatch): - accuracy 0.93.",
            "update the golden notebook",
        ],
    );
    let e = one_event(&events, "retries", 1).await;
    check(
        &e,
        "Warning",
        "ValidationFailed",
        "validation-failure",
        &["Retries: 3, exhausted.", "the validation pod could not run"],
    );
    assert!(
        events_of(&events, "before-install").await.is_empty(),
        "no Event for a run that ended before the install"
    );

    // A new generation is a new run: a second Event, only one.
    nvjs.patch(
        "cell",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"notebook": {"path": "b.ipynb"}}})),
    )
    .await
    .expect("spec change");
    end_run(&nvjs, "cell", Phase::Failed, "CellFailed", json!({"message": "cell 1 failed",
        "results": [{"cellIndex": 0, "status": "Failure", "errorMessage": "ZeroDivisionError: division by zero"}]})).await;
    let e = one_event(&events, "cell", 2).await;
    check(
        &e,
        "Warning",
        "ValidationFailed",
        "validation-failure",
        &["Cell 1 failed: ZeroDivisionError", "b.ipynb"],
    );

    // A restart repeats nothing.
    let mut controller = controller;
    controller.restart();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (name, count) in [
        ("ok", 1),
        ("cell", 2),
        ("golden", 1),
        ("retries", 1),
        ("before-install", 0),
    ] {
        assert_eq!(
            events_of(&events, name).await.len(),
            count,
            "{name} after a restart"
        );
    }
    // kubectl finds them as users would look.
    let (ok, out, err) = cluster.kubectl(
        &[
            "get",
            "events",
            "-n",
            n,
            "--field-selector",
            "involvedObject.name=golden",
            "-o",
            "name",
        ],
        None,
    );
    assert!(ok && out.lines().count() == 1, "{out}{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_while_200_runs_end_leaves_exactly_one_event_each() {
    let cluster = Cluster::get();
    let ns = TestNamespace::new(&cluster, "en-kill").await;
    let n = ns.name.as_str();
    let client = cluster.client().await;
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), n);
    let events: Api<Event> = Api::namespaced(client.clone(), n);
    let mut controller = start(&cluster, n).await;
    const N: usize = 200;
    let mut created = Vec::new();
    for i in 0..N {
        created.push(create(&nvjs, &format!("run-{i:03}")).await);
    }
    let mut seed: u64 = 0xdead_beef ^ u64::from(std::process::id());
    let mut kills = 0;
    for (batch, chunk) in created.chunks(20).enumerate() {
        let writes = chunk.iter().enumerate().map(|(j, nvj)| {
            let nvjs = nvjs.clone();
            let phase = if (batch * 20 + j).is_multiple_of(4) {
                Phase::Failed
            } else {
                Phase::Succeeded
            };
            async move {
                mark_finished(&nvjs, nvj, phase, "done")
                    .await
                    .expect("status")
            }
        });
        futures::future::join_all(writes).await;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(seed % 300)).await;
        if batch.is_multiple_of(2) {
            controller.kill();
            kills += 1;
            tokio::time::sleep(Duration::from_millis(50 + seed % 250)).await;
            controller.restart();
        }
    }
    assert!(kills >= 5);
    let per_nvj = eventually(
        Duration::from_secs(60),
        "an Event for every run",
        || async {
            let list = events
                .list(&ListParams::default().labels(LABEL))
                .await
                .ok()?;
            let mut per: BTreeMap<String, usize> = BTreeMap::new();
            for e in &list.items {
                *per.entry(e.regarding.as_ref()?.name.clone()?).or_default() += 1;
            }
            (per.len() == N).then_some(per)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let list = events
        .list(&ListParams::default().labels(LABEL))
        .await
        .expect("events");
    assert_eq!(
        list.items.len(),
        N,
        "exactly one Event per run: {:?}",
        per_nvj.iter().filter(|(_, c)| **c != 1).collect::<Vec<_>>()
    );
}
