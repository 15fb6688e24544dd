//! trigger-controller end to end, under its chart's RBAC, with the test playing the parts of
//! nvj-validator (runs marked Succeeded), KServe, Argo Rollouts and Argo CD where they matter.
//! The workloads whose pods a restart rolls - Deployments, a StatefulSet, a DaemonSet, an
//! eviction under a PodDisruptionBudget - run on a control plane of their own with a real node
//! (the pause image); the tests without pods on the shared one:
//! - a Deployment restarted once through the real deployment controller, not again after a
//!   SIGKILL; a target in another namespace without consent denied and unchanged; a malformed
//!   annotation reported and never acted on;
//! - every action on every kind, observed on the targets: InferenceService, Rollout,
//!   StatefulSet, DaemonSet, eviction under a PodDisruptionBudget, refresh, consented
//!   cross-namespace restart, and a sync of a managing Application that waits for a running
//!   operation and then syncs exactly once;
//! - malformed annotations of every kind, including the largest the API server stores;
//! - 50 NVJs completing while the controller is SIGKILLed at random points: each target
//!   written exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use nbg_core::nvj::{NotebookValidationJob, TriggerOutcome, TriggerRecord};
use nbg_e2e::harness::cluster::{dynamic_api, eventually};
use nbg_e2e::harness::controller::{ChartedController, ControllerSpec};
use nbg_e2e::harness::nvj::{annotations, create_succeeded, run_id, with_trigger_succeeded};
use nbg_e2e::harness::real_node::{RealNode, pause_image};
use nbg_e2e::{Cluster, TestNamespace};
use serde_json::{Value, json};

/// A workload of the pause image (on the real node: the sandbox image, always present).
fn workload(kind: &str, name: &str, replicas: i32) -> Value {
    let mut spec = json!({"selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {
            "containers": [{"name": "c", "image": pause_image(), "imagePullPolicy": "Never"}]}}});
    if kind != "DaemonSet" {
        spec["replicas"] = json!(replicas);
    }
    if kind == "StatefulSet" {
        spec["serviceName"] = json!(name);
    }
    json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": spec})
}

async fn create<K>(api: &Api<K>, value: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).expect("object");
    api.create(&PostParams::default(), &object)
        .await
        .expect("create")
}

/// trigger-controller from its chart; `argocd`: the namespace where the test plays Argo CD (its
/// Applications), None for a cluster without Argo CD.
async fn start_controller(
    cluster: &Cluster,
    ns: &str,
    targets: &[&str],
    argocd: Option<&str>,
) -> ChartedController {
    // `--set list={}` would be a list of one empty name, which the chart's schema refuses.
    let mut values: Vec<String> = if targets.is_empty() {
        Vec::new()
    } else {
        vec![format!("targetNamespaces={{{}}}", targets.join(","))]
    };
    values.push(match argocd {
        Some(argocd) => format!("global.argocd.namespace={argocd}"),
        None => "global.argocd.enabled=false".to_string(),
    });
    ChartedController::start(
        cluster,
        ControllerSpec {
            name: "trigger-controller",
            release_namespace: ns,
            namespaces: &[ns],
            values: &values,
            args: &[],
        },
    )
    .await
}

/// Waits until the NVJ has `n` records, all final; on timeout, says which are not.
async fn final_records(
    nvjs: &Api<NotebookValidationJob>,
    name: &str,
    n: usize,
    controller: &ChartedController,
) -> BTreeMap<String, TriggerRecord> {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let t = nvjs
            .get(name)
            .await
            .ok()
            .and_then(|n| n.status)
            .map(|s| s.triggers)
            .unwrap_or_default();
        if t.len() == n && t.iter().all(|r| r.outcome != TriggerOutcome::InProgress) {
            return t
                .into_iter()
                .map(|r| (format!("{}/{}", r.kind, r.name), r))
                .collect();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {n} final trigger records on {name}; have {t:#?} (log {})",
            controller.process.log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn record_of(
    nvjs: &Api<NotebookValidationJob>,
    nvj: &str,
    target: &str,
) -> Option<TriggerRecord> {
    nvjs.get(nvj)
        .await
        .ok()?
        .status?
        .triggers
        .into_iter()
        .find(|r| format!("{}/{}", r.kind, r.name) == target)
}

fn template_annotations(template_owner: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(
        template_owner
            .pointer("/spec/template/metadata/annotations")
            .cloned()
            .unwrap_or(json!({})),
    )
    .unwrap_or_default()
}

async fn ready_deployment(api: &Api<Deployment>, name: &str, replicas: i32) -> Option<i64> {
    let d = api.get(name).await.ok()?;
    let s = d.status?;
    (s.observed_generation >= d.metadata.generation
        && s.updated_replicas == Some(replicas)
        && s.ready_replicas == Some(replicas)
        && s.replicas == Some(replicas))
    .then_some(d.metadata.generation.unwrap_or(0))
}

/// Plays KServe: the InferenceService `fraud` reports Ready with these predictor revisions.
/// `kubectl get events -o name` with a field selector: (whether kubectl succeeded, the names).
fn event_names(cluster: &Cluster, namespace: &str, selector: &str) -> (bool, String, String) {
    cluster.kubectl(
        &[
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            selector,
            "-o",
            "name",
        ],
        None,
    )
}

/// KServe's status: the predictor's revisions and its model's load state.
async fn play_kserve(isvcs: &Api<DynamicObject>, created: &str, ready: &str, model: Value) {
    let status = json!({"status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}],
        "components": {"predictor": {"latestCreatedRevision": created, "latestReadyRevision": ready}},
        "modelStatus": model}});
    isvcs
        .patch_status("fraud", &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("KServe's status");
}

/// The restarts whose pods roll, side by side on one control plane with a real node.
#[tokio::test]
async fn restarts_roll_real_pods_on_a_real_node() {
    let node = RealNode::start("trigger-node").expect("a control plane with a real node");
    tokio::join!(
        a_succeeded_run_restarts_a_deployment_once_and_denies_without_consent(&node),
        every_action_on_every_kind(&node),
    );
}

async fn a_succeeded_run_restarts_a_deployment_once_and_denies_without_consent(node: &RealNode) {
    let cluster = node.plane.cluster.clone();
    let ns = TestNamespace::new(&cluster, "trig").await;
    let other = TestNamespace::new(&cluster, "trig-other").await;
    let client = cluster.client().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let elsewhere: Api<Deployment> = Api::namespaced(client.clone(), &other.name);
    create(&deployments, workload("Deployment", "model-server", 2)).await;
    create(&elsewhere, workload("Deployment", "shared-server", 2)).await;
    let first_generation = eventually(
        Duration::from_secs(60),
        "the model server to be ready",
        || ready_deployment(&deployments, "model-server", 2),
    )
    .await;

    // The chart may patch Deployments in the other namespace: only the missing consent stops it.
    let mut controller = start_controller(&cluster, &ns.name, &[&other.name], None).await;
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), &ns.name);
    let trigger = format!(
        "- {{apiVersion: apps/v1, kind: Deployment, name: model-server, action: restart}}\n- {{apiVersion: apps/v1, kind: Deployment, name: shared-server, namespace: {}, action: restart}}\n",
        other.name
    );
    let nvj = create_succeeded(
        &nvjs,
        "train",
        &annotations(&[("mlops.dev/on-success-trigger", &trigger)]),
    )
    .await;
    let run = run_id(&nvj);

    // The restart is recorded Succeeded once the real rollout completed.
    let by_name = final_records(&nvjs, "train", 2, &controller).await;
    let restart = &by_name["Deployment/model-server"];
    assert_eq!(
        (restart.outcome, restart.run.as_str()),
        (TriggerOutcome::Succeeded, run.as_str()),
        "{restart:?}"
    );
    let denied = &by_name["Deployment/shared-server"];
    assert_eq!(denied.outcome, TriggerOutcome::Denied, "{denied:?}");
    assert!(
        denied
            .message
            .as_deref()
            .is_some_and(|m| m.contains("allow-triggers-from")),
        "{denied:?}"
    );
    let d = deployments.get("model-server").await.expect("deployment");
    let template = template_annotations(&serde_json::to_value(&d).expect("json"));
    assert_eq!(template.get("mlops.dev/restarted-by-run"), Some(&run));
    assert!(template.contains_key("kubectl.kubernetes.io/restartedAt"));
    let restarted_generation = d.metadata.generation;
    assert_eq!(
        restarted_generation,
        Some(first_generation + 1),
        "exactly one template change"
    );
    let untouched = elsewhere.get("shared-server").await.expect("deployment");
    assert_eq!(
        untouched.metadata.generation,
        Some(1),
        "nothing changed there"
    );
    // The chart asks for JSON logs: the action is one structured line naming the run.
    let applied: Vec<Value> = controller
        .process
        .json_log()
        .into_iter()
        .filter(|l| l["message"] == "applied")
        .collect();
    assert_eq!(applied.len(), 1, "{}", controller.process.output());
    assert_eq!(
        (
            &applied[0]["run"],
            &applied[0]["action"],
            &applied[0]["kind"]
        ),
        (&json!(run), &json!("restart"), &json!("Deployment")),
        "{:?}",
        applied[0]
    );

    // Killed and restarted: the run is not acted on again.
    controller.restart();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        deployments
            .get("model-server")
            .await
            .expect("deployment")
            .metadata
            .generation,
        restarted_generation,
        "{}",
        controller.process.output()
    );
    let (ok, events, _) = event_names(&cluster, &ns.name, "reason=TriggerSucceeded");
    assert!(
        ok && events.lines().count() == 1,
        "one TriggerSucceeded Event: {events}"
    );
    let valid = nvjs
        .get("train")
        .await
        .expect("nvj")
        .status
        .and_then(|s| s.condition("TriggersValid").cloned())
        .expect("condition");
    assert_eq!(valid.status, "True");
}

/// Every action on every kind, in one NVJ's trigger list, as a training notebook would name
/// the model servers and Applications that depend on it.
async fn every_action_on_every_kind(node: &RealNode) {
    let cluster = node.plane.cluster.clone();
    let ns = TestNamespace::new(&cluster, "trig-all").await;
    let argo = TestNamespace::new(&cluster, "trig-argocd").await;
    let shared = TestNamespace::new(&cluster, "trig-shared").await;
    let client = cluster.client().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns.name);
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), &ns.name);
    let shared_deployments: Api<Deployment> = Api::namespaced(client.clone(), &shared.name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let isvcs = dynamic_api(
        &client,
        &ns.name,
        "serving.kserve.io",
        "v1beta1",
        "InferenceService",
    );
    let rollouts = dynamic_api(&client, &ns.name, "argoproj.io", "v1alpha1", "Rollout");
    let apps = dynamic_api(&client, &ns.name, "argoproj.io", "v1alpha1", "Application");
    let argo_apps = dynamic_api(
        &client,
        &argo.name,
        "argoproj.io",
        "v1alpha1",
        "Application",
    );

    create(&deployments, workload("Deployment", "evicted", 2)).await;
    create(&deployments, workload("Deployment", "features", 1)).await;
    create(&statefulsets, workload("StatefulSet", "store", 1)).await;
    // One pod: the plane has one node.
    create(&daemonsets, workload("DaemonSet", "agent", 1)).await;
    // The other namespace consents to restarts from this one.
    let mut consenting = workload("Deployment", "shared-model", 1);
    consenting["metadata"]["annotations"] =
        json!({"mlops.dev/allow-triggers-from": format!("team-x, {}", ns.name)});
    create(&shared_deployments, consenting).await;
    cluster.kubectl(
        &[
            "create",
            "poddisruptionbudget",
            "evicted",
            "-n",
            &ns.name,
            "--selector=app=evicted",
            "--min-available=1",
        ],
        None,
    );
    // KServe in serverless mode: predictor revision 1 created and ready.
    create(
        &isvcs,
        json!({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "fraud"},
               "spec": {"predictor": {"sklearn": {"storageUri": "pvc://models/fraud"}}}}),
    )
    .await;
    play_kserve(
        &isvcs,
        "fraud-predictor-00001",
        "fraud-predictor-00001",
        json!({"transitionStatus": "UpToDate"}),
    )
    .await;
    create(
        &rollouts,
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "canary"},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "canary"}}}}),
    )
    .await;
    create(
        &apps,
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "fraud-config"},
               "spec": {"project": "default"}}),
    )
    .await;
    let nvj_name = "train-fraud";
    // The Application in the Argo CD namespace manages the NVJ, and an operation is running.
    let mut app = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "fraud-serving"},
        "spec": {"project": "default"},
        "status": {"resources": [{"group": "mlops.mlops.dev", "version": "v1alpha1", "kind": "NotebookValidationJob",
                                  "namespace": ns.name, "name": nvj_name}],
                   "operationState": {"phase": "Running", "operation": {"sync": {}, "initiatedBy": {"username": "admin"}}}}});
    app = serde_json::to_value(create(&argo_apps, app).await).expect("json");
    let _ = app;

    let mut chart_targets = vec![shared.name.as_str(), argo.name.as_str()];
    chart_targets.sort();
    let controller = start_controller(&cluster, &ns.name, &chart_targets, Some(&argo.name)).await;
    let _ = eventually(
        Duration::from_secs(60),
        "the evicted Deployment to be ready",
        || ready_deployment(&deployments, "evicted", 2),
    )
    .await;
    let before_eviction: Vec<String> = pods
        .list(&ListParams::default().labels("app=evicted"))
        .await
        .expect("pods")
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(before_eviction.len(), 2);
    // Eviction only touches pods started before the run completed.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let trigger = format!(
        r#"- {{apiVersion: argoproj.io/v1alpha1, kind: Rollout, name: canary, action: restart}}
- {{apiVersion: apps/v1, kind: StatefulSet, name: store, action: restart}}
- {{apiVersion: apps/v1, kind: DaemonSet, name: agent, action: restart}}
- {{apiVersion: apps/v1, kind: Deployment, name: evicted, action: restart, strategy: evict}}
- {{apiVersion: apps/v1, kind: Deployment, name: features, action: refresh}}
- {{apiVersion: argoproj.io/v1alpha1, kind: Application, name: fraud-config, action: refresh, refresh: hard}}
- {{apiVersion: apps/v1, kind: Deployment, name: shared-model, namespace: {shared}, action: restart}}
- {{apiVersion: argoproj.io/v1alpha1, kind: Application, name: fraud-serving, namespace: {argo}, action: sync}}
"#,
        shared = shared.name,
        argo = argo.name
    );
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), &ns.name);
    let nvj = create_succeeded(
        &nvjs,
        nvj_name,
        &annotations(&[
            ("mlops.dev/on-success-trigger", &trigger),
            (
                "argocd.argoproj.io/tracking-id",
                &format!(
                    "fraud-serving:mlops.mlops.dev/NotebookValidationJob:{}/{nvj_name}",
                    ns.name
                ),
            ),
        ]),
    )
    .await;
    let run = run_id(&nvj);
    // The model server has an NVJ of its own: no other target of it wakes it, so what the
    // record says is what the InferenceService's own changes made it say.
    let serving_nvj = "reload-fraud";
    let serving = create_succeeded(
        &nvjs,
        serving_nvj,
        &annotations(&[(
            "mlops.dev/on-success-trigger",
            "- {apiVersion: serving.kserve.io/v1beta1, kind: InferenceService, name: fraud, action: restart}\n",
        )]),
    )
    .await;
    let serving_run = run_id(&serving);
    let log = controller.process.log.display().to_string();

    // KServe: the restart annotation arrives, a new predictor revision rolls out.
    let isvc = eventually(
        Duration::from_secs(30),
        &format!("the InferenceService restart (log {log})"),
        || async {
            let i = isvcs.get("fraud").await.ok()?;
            let marker = i.annotations().get("mlops.dev/restarted-at")?.clone();
            Some((marker, i))
        },
    )
    .await;
    assert!(isvc.0.starts_with(&format!("{serving_run} ")), "{}", isvc.0);
    assert_eq!(
        isvc.1
            .annotations()
            .get("mlops.dev/restarted-from-revision")
            .map(String::as_str),
        Some("fraud-predictor-00001")
    );
    // Rolling as expected: nothing to record until it completes (one status write a trigger).
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        record_of(&nvjs, serving_nvj, "InferenceService/fraud").await,
        None,
        "not done before KServe rolled a new revision"
    );
    // KServe creates revision 2, whose model fails to load: that is recorded, with KServe's why.
    play_kserve(
        &isvcs,
        "fraud-predictor-00002",
        "fraud-predictor-00001",
        json!({"transitionStatus": "BlockedByFailedLoad",
               "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "model.json: no such file"}}),
    )
    .await;
    let blocked = eventually(
        Duration::from_secs(30),
        "the blocked rollout recorded",
        || async {
            record_of(&nvjs, serving_nvj, "InferenceService/fraud")
                .await
                .filter(|r| r.outcome == TriggerOutcome::InProgress)
        },
    )
    .await;
    assert_eq!(
        blocked.message.as_deref(),
        Some(
            "restart applied; KServe reports BlockedByFailedLoad: ModelLoadFailed: model.json: no such file"
        )
    );
    // The model is fixed and loading: the record follows at once (not at the next resync).
    play_kserve(
        &isvcs,
        "fraud-predictor-00002",
        "fraud-predictor-00001",
        json!({"transitionStatus": "InProgress", "lastFailureInfo": null}),
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the record to say it rolls again",
        || async {
            record_of(&nvjs, serving_nvj, "InferenceService/fraud")
                .await
                .filter(|r| r.message.as_deref() == Some("restart applied; rolling out"))
        },
    )
    .await;
    // Revision 2 becomes ready.
    play_kserve(
        &isvcs,
        "fraud-predictor-00002",
        "fraud-predictor-00002",
        json!({"transitionStatus": "UpToDate", "lastFailureInfo": null}),
    )
    .await;

    // Argo Rollouts: restartAt set; the rollout controller restarts the pods and reports it.
    let restart_at = eventually(
        Duration::from_secs(30),
        "the Rollout's restartAt",
        || async {
            rollouts
                .get("canary")
                .await
                .ok()?
                .data
                .pointer("/spec/restartAt")?
                .as_str()
                .map(str::to_string)
        },
    )
    .await;
    rollouts
        .patch_status(
            "canary",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"restartedAt": restart_at, "phase": "Healthy"}})),
        )
        .await
        .expect("Rollout status");

    // Argo CD: the operation that was running finishes; then ours is requested, exactly once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiting = record_of(&nvjs, nvj_name, "Application/fraud-serving")
        .await
        .expect("a record");
    assert_eq!(waiting.outcome, TriggerOutcome::InProgress, "{waiting:?}");
    assert!(
        argo_apps
            .get("fraud-serving")
            .await
            .expect("app")
            .data
            .get("operation")
            .is_none(),
        "no sync over a running one"
    );
    argo_apps
        .patch(
            "fraud-serving",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"operationState": {"phase": "Succeeded"}}})),
        )
        .await
        .expect("the running operation finishes");
    let operation = eventually(Duration::from_secs(30), "the sync operation", || async {
        argo_apps
            .get("fraud-serving")
            .await
            .ok()?
            .data
            .get("operation")
            .cloned()
    })
    .await;
    assert_eq!(
        operation.pointer("/initiatedBy/username"),
        Some(&json!("trigger-controller"))
    );
    assert_eq!(
        operation.pointer("/info/0"),
        Some(&json!({"name": "nvj-run", "value": run}))
    );
    assert!(
        operation.get("sync").is_some(),
        "a sync, not a refresh: {operation}"
    );
    // Argo CD takes the operation, runs and finishes it.
    argo_apps
        .patch(
            "fraud-serving",
            &PatchParams::default(),
            &Patch::Merge(json!({"operation": null,
            "status": {"operationState": {"phase": "Running", "operation": operation.clone()}}})),
        )
        .await
        .expect("Argo CD starts the sync");
    argo_apps
        .patch(
            "fraud-serving",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"operationState": {"phase": "Succeeded"}}})),
        )
        .await
        .expect("Argo CD finishes the sync");

    let served = final_records(&nvjs, serving_nvj, 1, &controller).await;
    let restart = &served["InferenceService/fraud"];
    assert_eq!(
        (restart.outcome, restart.run.as_str()),
        (TriggerOutcome::Succeeded, serving_run.as_str()),
        "{restart:?}"
    );
    let records = final_records(&nvjs, nvj_name, 8, &controller).await;
    for (target, r) in &records {
        assert_eq!(
            (r.outcome, r.run.as_str()),
            (TriggerOutcome::Succeeded, run.as_str()),
            "{target}: {r:?}"
        );
    }
    // One sync: no operation requested again after Argo CD finished ours.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        argo_apps
            .get("fraud-serving")
            .await
            .expect("app")
            .data
            .get("operation")
            .is_none(),
        "synced exactly once"
    );

    // The workloads: rollout-restart convention, through the real controllers.
    let sts = serde_json::to_value(statefulsets.get("store").await.expect("sts")).expect("json");
    assert_eq!(
        template_annotations(&sts).get("mlops.dev/restarted-by-run"),
        Some(&run)
    );
    let ds = serde_json::to_value(daemonsets.get("agent").await.expect("ds")).expect("json");
    assert_eq!(
        template_annotations(&ds).get("mlops.dev/restarted-by-run"),
        Some(&run)
    );
    let consented = serde_json::to_value(shared_deployments.get("shared-model").await.expect("d"))
        .expect("json");
    assert_eq!(
        template_annotations(&consented).get("mlops.dev/restarted-by-run"),
        Some(&run),
        "with consent it works"
    );
    // Refreshes.
    let features = deployments.get("features").await.expect("d");
    assert_eq!(
        features
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .get("mlops.dev/refresh-requested"),
        Some(&run)
    );
    // (A Deployment's generation counts annotation changes too; its pod template is what rolls.)
    let features = serde_json::to_value(&features).expect("json");
    assert!(
        template_annotations(&features).is_empty(),
        "a refresh is not a restart"
    );
    let config_app = apps.get("fraud-config").await.expect("app");
    assert_eq!(
        config_app
            .annotations()
            .get("argocd.argoproj.io/refresh")
            .map(String::as_str),
        Some("hard")
    );
    // Eviction: both old pods replaced one at a time, the Deployment itself never changed.
    let evicted = deployments.get("evicted").await.expect("d");
    assert_eq!(
        evicted.metadata.generation,
        Some(1),
        "eviction is not a template change"
    );
    let now_pods: Vec<Pod> = pods
        .list(&ListParams::default().labels("app=evicted"))
        .await
        .expect("pods")
        .items;
    let names: Vec<String> = now_pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names.iter().all(|n| !before_eviction.contains(n)),
        "old {before_eviction:?}, now {names:?}"
    );
    let completed: Timestamp = nvjs
        .get(nvj_name)
        .await
        .expect("nvj")
        .status
        .and_then(|s| s.completion_time)
        .expect("completion time")
        .0;
    assert!(now_pods.iter().all(|p| {
        p.metadata
            .creation_timestamp
            .as_ref()
            .is_some_and(|t| t.0 >= completed)
    }));
    // Events: one TriggerSucceeded per target.
    let (_, events, _) = event_names(&cluster, &ns.name, "reason=TriggerSucceeded");
    assert_eq!(events.lines().count(), 9, "{events}");
}

/// Malformed annotations are reported with the entry and field, never acted on, never crash.
#[tokio::test]
async fn malformed_annotations_are_reported_and_never_acted_on() {
    let cluster = Cluster::get();
    let ns = TestNamespace::new(&cluster, "trig-bad").await;
    let client = cluster.client().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    create(&deployments, workload("Deployment", "model-server", 0)).await;
    let controller = start_controller(&cluster, &ns.name, &[], None).await;
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), &ns.name);

    // The API server keeps all annotations of an object under 256 KiB: the largest garbage it
    // stores. (10 MB of garbage is fed to the parser in nbg-core's tests.)
    let mut garbage = String::new();
    let mut x: u32 = 12345;
    while garbage.len() < 250 * 1024 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        garbage.push(char::from_u32(0x21 + (x >> 16) % 0x5e).unwrap_or('x'));
        if x.is_multiple_of(61) {
            garbage.push('\n');
        }
    }
    let cases = [
        ("bad-yaml", "- {apiVersion: apps/v1, kind: Deployment, name: model-server, action: restart\n".to_string(), "YAML"),
        ("unknown-action", "- {apiVersion: apps/v1, kind: Deployment, name: model-server, action: restrat}\n".to_string(), "field `action`"),
        ("missing-name", "- {apiVersion: apps/v1, kind: Deployment, action: restart}\n".to_string(), "field `name`"),
        // A valid entry beside a broken one: nothing at all is done.
        ("half-valid", "- {apiVersion: apps/v1, kind: Deployment, name: model-server, action: restart}\n- {apiVersion: apps/v1, kind: Deployment, name: 7, action: restart, strategy: bulldoze}\n".to_string(), "entry 1"),
        ("garbage", garbage, "larger than"),
    ];
    for (name, value, _) in &cases {
        create_succeeded(
            &nvjs,
            name,
            &annotations(&[("mlops.dev/on-success-trigger", value)]),
        )
        .await;
    }
    let log = controller.process.log.display().to_string();
    for (name, _, expected) in &cases {
        let condition = eventually(
            Duration::from_secs(30),
            &format!("TriggersValid=False on {name} (log {log})"),
            || async {
                nvjs.get(name)
                    .await
                    .ok()?
                    .status?
                    .condition("TriggersValid")
                    .cloned()
                    .filter(|c| c.status == "False")
            },
        )
        .await;
        assert!(
            condition.message.contains(expected),
            "{name}: {}",
            condition.message
        );
        assert_eq!(condition.reason, "InvalidTrigger");
    }
    let (_, events, _) = event_names(&cluster, &ns.name, "reason=TriggerDenied,type=Warning");
    assert_eq!(
        events.lines().count(),
        cases.len(),
        "one Warning Event each: {events}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let d = deployments.get("model-server").await.expect("d");
    assert_eq!(d.metadata.generation, Some(1), "never acted on");
    assert!(
        nvjs.list(&ListParams::default())
            .await
            .expect("nvjs")
            .items
            .iter()
            .all(|n| n.status.as_ref().is_none_or(|s| s.triggers.is_empty())),
        "no trigger recorded"
    );
    // Still alive and serving.
    assert!(
        controller
            .metric("nbg_reconciles_total{controller=\"trigger-controller\"}")
            .is_some_and(|n| n >= 5.0)
    );
    assert!(
        controller
            .process
            .output()
            .lines()
            .all(|l| !l.contains("panicked"))
    );
}

/// 50 NVJs complete while the controller is SIGKILLed at random points: every trigger is
/// applied exactly once - none missed, none repeated - counted on the targets (each restart is
/// one pod-template change, one generation).
#[tokio::test]
async fn exactly_once_under_random_sigkills() {
    const N: usize = 50;
    let cluster = Cluster::get();
    let ns = TestNamespace::new(&cluster, "trig-chaos").await;
    let client = cluster.client().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    for i in 0..N {
        // No pods: the rollout completes as soon as the deployment controller observes it, so
        // the test is about the controller, not a node.
        create(
            &deployments,
            workload("Deployment", &format!("model-{i}"), 0),
        )
        .await;
    }
    let mut controller = start_controller(&cluster, &ns.name, &[], None).await;
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), &ns.name);

    // A seeded generator: the kill points differ between seeds, and a failure names its seed.
    let seed = std::env::var("NBG_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Timestamp::now().as_millisecond() as u64);
    let mut rng = nbg_e2e::chaos::workload::Rng::new(seed);
    let mut next = move |bound: u64| rng.below(bound);
    let completing = {
        let nvjs = nvjs.clone();
        tokio::spawn(async move {
            for i in 0..N {
                let trigger = format!(
                    "- {{apiVersion: apps/v1, kind: Deployment, name: model-{i}, action: restart}}\n"
                );
                create_succeeded(
                    &nvjs,
                    &format!("train-{i}"),
                    &annotations(&[("mlops.dev/on-success-trigger", &trigger)]),
                )
                .await;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    let mut kills = 0;
    let started = std::time::Instant::now();
    while !completing.is_finished() || started.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(150 + next(900))).await;
        controller.restart();
        kills += 1;
    }
    completing.await.expect("completions");

    let log = controller.process.log.display().to_string();
    eventually(
        Duration::from_secs(120),
        &format!("all {N} restarts recorded (seed {seed}, {kills} kills, log {log})"),
        || async {
            let all = nvjs.list(&ListParams::default()).await.ok()?.items;
            (with_trigger_succeeded(&all) == N).then_some(())
        },
    )
    .await;
    let nvj_runs: BTreeMap<String, String> = nvjs
        .list(&ListParams::default())
        .await
        .expect("nvjs")
        .items
        .iter()
        .map(|n| (n.name_any().replace("train-", "model-"), run_id(n)))
        .collect();
    for d in deployments
        .list(&ListParams::default())
        .await
        .expect("deployments")
        .items
    {
        let name = d.name_any();
        assert_eq!(
            d.metadata.generation,
            Some(2),
            "{name}: exactly one restart (seed {seed}, {kills} kills)"
        );
        let template = template_annotations(&serde_json::to_value(&d).expect("json"));
        assert_eq!(
            template.get("mlops.dev/restarted-by-run"),
            nvj_runs.get(&name),
            "{name}"
        );
    }
    assert!(kills >= 5, "the controller was killed {kills} times");
}
