//! app-status-aggregator end to end, under its chart's RBAC, with the test playing Argo CD
//! (Applications and their `status.resources`) and nvj-validator (run statuses):
//! - Applications in Argo CD's namespace and in another one, annotation and label tracking, an
//!   NVJ moved between Applications, a stale generation, a deleted NVJ, the last NVJ removed, a
//!   deleted and recreated Application, a forged tracking id - each observed on the annotations,
//!   every other field of the Applications unchanged;
//! - SIGKILL at random points while statuses change: the final annotations exactly right, and a
//!   restart with nothing changed writes nothing;
//! - 600 failed NVJs with names of the longest length on one Application: valid JSON, both
//!   annotations under 16 KiB;
//! - Argo CD's tracking settings read from argocd-cm and followed when it changes, without a
//!   restart; an NVJ the Application lists but tracking does not attribute to it reported on the
//!   Application (a Warning Event once, the metric), never counted silently or left out silently.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use nbg_core::annotations::{
    ARGOCD_TRACKING_ID, NOTEBOOK_STATUS, NOTEBOOK_SUMMARY, NotebookStatusSummary,
};
use nbg_core::foreign::Application;
use nbg_core::nvj::{NotebookValidationJob, Phase};
use nbg_e2e::harness::cluster::eventually;
use nbg_e2e::harness::controller::{ChartedController, ControllerSpec};
use nbg_e2e::harness::nvj::{annotations, mark_finished, minimal};
use nbg_e2e::{Cluster, TestNamespace};
use serde_json::{Value, json};

const KIND: &str = "mlops.mlops.dev/NotebookValidationJob";

async fn start(
    cluster: &Cluster,
    release_ns: &str,
    nvj_namespaces: &[&str],
    app_namespaces: &[&str],
    extra: &[String],
) -> ChartedController {
    let mut values = vec![
        format!("global.argocd.namespace={}", app_namespaces[0]),
        format!(
            "global.argocd.applicationNamespaces={{{}}}",
            app_namespaces.join(",")
        ),
    ];
    values.extend(extra.iter().cloned());
    ChartedController::start(
        cluster,
        ControllerSpec {
            name: "app-status-aggregator",
            release_namespace: release_ns,
            namespaces: nvj_namespaces,
            values: &values,
            args: &[],
        },
    )
    .await
}

/// An Application managing `listed`, with annotations of others that must survive every write.
fn application(name: &str, listed: &[(&str, &str)]) -> Value {
    let mut app = nbg_e2e::harness::argocd::application(name, listed);
    app["metadata"]["annotations"] = json!({"team.example/owner": "fraud", "notifications.argoproj.io/subscribe.on-sync-succeeded.slack": "ml"});
    app
}

async fn create_app(apps: &Api<Application>, name: &str, listed: &[(&str, &str)]) {
    let namespace = apps.namespace().unwrap_or_default().to_string();
    let dynamic = nbg_e2e::harness::argocd::applications(&apps.clone().into_client(), &namespace);
    let app: DynamicObject =
        serde_json::from_value(application(name, listed)).expect("application");
    if let Err(e) = dynamic.create(&PostParams::default(), &app).await {
        let short: String = e.to_string().chars().take(300).collect();
        panic!("create the Application {name}: {short}");
    }
}

/// Sets the Application's `status.resources`, as Argo CD does after a sync.
async fn list_in(apps: &Api<Application>, name: &str, listed: &[(&str, &str)]) {
    let status = application(name, listed)["status"].clone();
    apps.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .expect("update status.resources");
}

fn tracking_id(app: &str, ns: &str, name: &str) -> String {
    format!("{app}:{KIND}:{ns}/{name}")
}

async fn nvj(
    api: &Api<NotebookValidationJob>,
    name: &str,
    pairs: &[(&str, &str)],
    phase: Option<Phase>,
) {
    let created = api
        .create(&PostParams::default(), &minimal(name, &annotations(pairs)))
        .await
        .expect("create the NVJ");
    if let Some(phase) = phase {
        mark_finished(api, &created, phase, "done")
            .await
            .expect("status");
    }
}

async fn finish(api: &Api<NotebookValidationJob>, name: &str, phase: Phase) {
    let nvj = api.get(name).await.expect("nvj");
    mark_finished(api, &nvj, phase, "done")
        .await
        .expect("status");
}

fn status_of(app: &Application) -> Option<NotebookStatusSummary> {
    let v = app.metadata.annotations.as_ref()?.get(NOTEBOOK_STATUS)?;
    Some(NotebookStatusSummary::parse(v).expect("valid notebook-status JSON"))
}

/// Waits until the Application's summary satisfies `check`.
async fn summary(
    apps: &Api<Application>,
    name: &str,
    what: &str,
    check: impl Fn(Option<&NotebookStatusSummary>) -> bool,
) -> Application {
    eventually(Duration::from_secs(20), what, || async {
        let app = apps.get(name).await.ok()?;
        check(status_of(&app).as_ref()).then_some(app)
    })
    .await
}

fn counts(s: Option<&NotebookStatusSummary>) -> Option<(i64, i64, i64, i64)> {
    s.map(|s| (s.total, s.succeeded, s.failed, s.running))
}

/// Everything but the aggregator's annotations, for "nothing else touched".
fn untouched(app: &Application) -> Value {
    let mut a = app.metadata.annotations.clone().unwrap_or_default();
    for k in [
        "mlops.dev/notebook-status",
        "mlops.dev/notebook-summary",
        "mlops.dev/last-failed-run",
        "mlops.dev/last-succeeded-run",
    ] {
        a.remove(k);
    }
    json!({"annotations": a, "labels": app.metadata.labels, "spec": app.spec, "status": app.status})
}

#[tokio::test(flavor = "multi_thread")]
async fn aggregates_follow_nvjs_across_applications() {
    let cluster = Cluster::get();
    let argocd = TestNamespace::new(&cluster, "asa-argocd").await;
    let team = TestNamespace::new(&cluster, "asa-team").await;
    let ml = TestNamespace::new(&cluster, "asa-ml").await;
    let lab = TestNamespace::new(&cluster, "asa-lab").await;
    let (a_ns, t_ns, m, l) = (
        argocd.name.as_str(),
        team.name.as_str(),
        ml.name.as_str(),
        lab.name.as_str(),
    );
    let client = cluster.client().await;
    let apps: Api<Application> = Api::namespaced(client.clone(), a_ns);
    let team_apps: Api<Application> = Api::namespaced(client.clone(), t_ns);
    let ml_nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), m);
    let lab_nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), l);

    create_app(&apps, "train", &[(m, "a"), (m, "b"), (l, "c")]).await;
    create_app(&apps, "victim", &[]).await;
    create_app(&team_apps, "serve", &[]).await;
    let controller = start(&cluster, a_ns, &[m, l], &[a_ns, t_ns], &[]).await;

    nvj(
        &ml_nvjs,
        "a",
        &[(ARGOCD_TRACKING_ID, &tracking_id("train", m, "a"))],
        Some(Phase::Succeeded),
    )
    .await;
    nvj(
        &ml_nvjs,
        "b",
        &[(ARGOCD_TRACKING_ID, &tracking_id("train", m, "b"))],
        Some(Phase::Failed),
    )
    .await;
    nvj(
        &lab_nvjs,
        "c",
        &[(ARGOCD_TRACKING_ID, &tracking_id("train", l, "c"))],
        Some(Phase::Running),
    )
    .await;
    // Claims to belong to `victim` and to `train`; neither lists it.
    nvj(
        &ml_nvjs,
        "forged",
        &[(ARGOCD_TRACKING_ID, &tracking_id("victim", m, "forged"))],
        Some(Phase::Failed),
    )
    .await;
    nvj(
        &lab_nvjs,
        "forged2",
        &[(ARGOCD_TRACKING_ID, &tracking_id("train", l, "forged2"))],
        Some(Phase::Failed),
    )
    .await;

    let before = untouched(&apps.get("train").await.expect("train"));
    let app = summary(
        &apps,
        "train",
        "train: 1 succeeded, 1 failed, 1 running",
        |s| counts(s) == Some((3, 1, 1, 1)),
    )
    .await;
    let s = status_of(&app).expect("status");
    assert_eq!(
        s.failed_jobs,
        vec![format!("{m}/b")],
        "names carry the namespace: two namespaces"
    );
    let annotations = app.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations[NOTEBOOK_SUMMARY],
        format!("1/3 notebooks succeeded; 1 running; failed: {m}/b")
    );
    assert!(annotations["mlops.dev/last-failed-run"].contains(&format!("{m}/b ")));
    assert_eq!(
        untouched(&app),
        before,
        "nothing else of the Application touched"
    );

    // A stale generation counts as running.
    ml_nvjs
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"notebook": {"path": "v2.ipynb"}}})),
        )
        .await
        .expect("spec change");
    summary(&apps, "train", "train: a running again", |s| {
        counts(s) == Some((3, 0, 1, 2))
    })
    .await;
    finish(&ml_nvjs, "a", Phase::Succeeded).await;
    summary(&apps, "train", "train: a succeeded again", |s| {
        counts(s) == Some((3, 1, 1, 1))
    })
    .await;

    // b moves to `serve`, an Application outside Argo CD's namespace (`<ns>_<name>` tracking).
    ml_nvjs
        .patch("b", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {ARGOCD_TRACKING_ID: tracking_id(&format!("{t_ns}_serve"), m, "b")}}})))
        .await
        .expect("retrack b");
    list_in(&team_apps, "serve", &[(m, "b")]).await;
    list_in(&apps, "train", &[(m, "a"), (l, "c")]).await;
    let app = summary(&apps, "train", "train without b", |s| {
        counts(s) == Some((2, 1, 0, 1))
    })
    .await;
    assert!(status_of(&app).is_some_and(|s| s.failed_jobs.is_empty()));
    let serve = summary(&team_apps, "serve", "serve with b", |s| {
        counts(s) == Some((1, 0, 1, 0))
    })
    .await;
    assert_eq!(
        status_of(&serve).map(|s| s.failed_jobs),
        Some(vec!["b".to_string()]),
        "one namespace: plain names"
    );

    // A deleted NVJ, then the last one: the annotations go, the rest stays.
    lab_nvjs
        .delete("c", &DeleteParams::default())
        .await
        .expect("delete c");
    summary(&apps, "train", "train without c", |s| {
        counts(s) == Some((1, 1, 0, 0))
    })
    .await;
    ml_nvjs
        .delete("a", &DeleteParams::default())
        .await
        .expect("delete a");
    let app = summary(&apps, "train", "train's annotations removed", |s| {
        s.is_none()
    })
    .await;
    let left = app.metadata.annotations.clone().unwrap_or_default();
    assert!(
        !left.contains_key(NOTEBOOK_SUMMARY) && !left.contains_key("mlops.dev/last-failed-run"),
        "{left:?}"
    );
    assert_eq!(
        left.get("team.example/owner").map(String::as_str),
        Some("fraud")
    );

    // A deleted and recreated Application is written again.
    team_apps
        .delete("serve", &DeleteParams::default())
        .await
        .expect("delete serve");
    eventually(Duration::from_secs(10), "serve gone", || async {
        team_apps
            .get_opt("serve")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    create_app(&team_apps, "serve", &[(m, "b")]).await;
    summary(&team_apps, "serve", "recreated serve written", |s| {
        counts(s) == Some((1, 0, 1, 0))
    })
    .await;

    // The forged tracking ids counted nowhere, and nothing was written on the victim.
    let victim = apps.get("victim").await.expect("victim");
    assert!(
        status_of(&victim).is_none(),
        "{:?}",
        victim.metadata.annotations
    );
    assert_eq!(
        controller
            .metric("nbg_application_writes_total{change=\"updated\"}")
            .map(|v| v >= 6.0),
        Some(true)
    );
}

/// The `TrackingMismatch` Events on Application `name`.
async fn mismatch_events(client: &kube::Client, ns: &str, name: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("TrackingMismatch")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        // A repeated Event would be one object with a series count: count each repetition.
        .flat_map(|e| {
            let times = e.series.as_ref().map_or(1, |s| s.count.max(1)) as usize;
            std::iter::repeat_n(e.note.unwrap_or_default(), times)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn argocd_cm_decides_tracking_and_a_disagreement_is_reported_on_the_application() {
    let cluster = Cluster::get();
    let argocd = TestNamespace::new(&cluster, "asa-cm").await;
    let (ns, client) = (argocd.name.as_str(), cluster.client().await);
    let apps: Api<Application> = Api::namespaced(client.clone(), ns);
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), ns);
    let cm = |key: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-cm"},
               "data": {"application.resourceTrackingMethod": "label", "application.instanceLabelKey": key}})
        .to_string()
    };
    let (ok, _, err) = cluster.kubectl(
        &["apply", "-n", ns, "-f", "-"],
        Some(&cm("team.example/app")),
    );
    assert!(ok, "{err}");
    for (name, key) in [
        ("by-team-key", "team.example/app"),
        ("by-default-key", "app.kubernetes.io/instance"),
    ] {
        let mut object = minimal(name, &BTreeMap::new());
        object.metadata.labels = Some(BTreeMap::from([(key.to_string(), "train".to_string())]));
        let created = nvjs
            .create(&PostParams::default(), &object)
            .await
            .expect("create");
        mark_finished(&nvjs, &created, Phase::Succeeded, "done")
            .await
            .expect("status");
    }
    create_app(
        &apps,
        "train",
        &[(ns, "by-team-key"), (ns, "by-default-key")],
    )
    .await;
    // Chart defaults: Argo CD's settings come from argocd-cm.
    let controller = start(&cluster, ns, &[ns], &[ns], &[]).await;
    summary(
        &apps,
        "train",
        "only the NVJ tracked by argocd-cm's key counted",
        |s| counts(s) == Some((1, 1, 0, 0)),
    )
    .await;
    let notes = eventually(
        Duration::from_secs(20),
        "a TrackingMismatch Event",
        || async {
            let notes = mismatch_events(&client, ns, "train").await;
            (!notes.is_empty()).then_some(notes)
        },
    )
    .await;
    assert!(
        notes[0].starts_with(&format!("Application {ns}/train lists NotebookValidationJob {ns}/by-default-key in status.resources, but its tracking names no Application under label tracking (key team.example/app), from argocd-cm in {ns}")),
        "{notes:?}"
    );
    let metric = format!("nbg_application_untracked_nvjs{{application=\"{ns}/train\"}}");
    eventually(Duration::from_secs(10), "the metric", || async {
        (controller.metric(&metric) == Some(1.0)).then_some(())
    })
    .await;
    // More reconciles of the same disagreement: no more Events.
    finish(&nvjs, "by-team-key", Phase::Failed).await;
    summary(&apps, "train", "the failed run counted", |s| {
        counts(s) == Some((1, 0, 1, 0))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        mismatch_events(&client, ns, "train").await.len(),
        1,
        "once, not per reconcile"
    );

    // argocd-cm changes: followed without a restart.
    let (ok, _, err) = cluster.kubectl(
        &["apply", "-n", ns, "-f", "-"],
        Some(&cm("app.kubernetes.io/instance")),
    );
    assert!(ok, "{err}");
    summary(
        &apps,
        "train",
        "the NVJ tracked by the new key counted",
        |s| counts(s) == Some((1, 1, 0, 0)),
    )
    .await;
    let notes = eventually(
        Duration::from_secs(20),
        "the new disagreement reported",
        || async {
            let notes = mismatch_events(&client, ns, "train").await;
            notes
                .iter()
                .any(|n| n.contains("by-team-key"))
                .then_some(notes)
        },
    )
    .await;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("(key app.kubernetes.io/instance)")),
        "{notes:?}"
    );
    drop(controller);
}

#[tokio::test(flavor = "multi_thread")]
async fn label_tracking_and_the_longest_names_stay_bounded() {
    let cluster = Cluster::get();
    let argocd = TestNamespace::new(&cluster, "asa-lbl").await;
    let (ns, client) = (argocd.name.as_str(), cluster.client().await);
    let apps: Api<Application> = Api::namespaced(client.clone(), ns);
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), ns);
    const N: usize = 600;
    // Names of the longest length the API server accepts for an NVJ (253).
    let names: Vec<String> = (0..N)
        .map(|i| format!("{i:04}-{}", "n".repeat(248)))
        .collect();
    let listed: Vec<(&str, &str)> = names.iter().map(|n| (ns, n.as_str())).collect();
    create_app(&apps, "big", &listed).await;
    let _controller = start(
        &cluster,
        ns,
        &[ns],
        &[ns],
        &["global.argocd.trackingMethod=label".to_string()],
    )
    .await;
    let writes = futures::stream::iter(names.iter().map(|n| {
        let nvjs = nvjs.clone();
        async move {
            let mut object = minimal(n, &BTreeMap::new());
            object.metadata.labels = Some(BTreeMap::from([(
                "app.kubernetes.io/instance".to_string(),
                "big".to_string(),
            )]));
            let created = nvjs
                .create(&PostParams::default(), &object)
                .await
                .expect("create");
            mark_finished(
                &nvjs,
                &created,
                Phase::Failed,
                "cell 1 failed: \"quoted\"\nand é",
            )
            .await
            .expect("status");
        }
    }));
    use futures::StreamExt;
    writes.buffer_unordered(16).collect::<Vec<()>>().await;
    let app = summary(&apps, "big", "all 600 failed counted", |s| {
        counts(s) == Some((N as i64, 0, N as i64, 0))
    })
    .await;
    let a = app.metadata.annotations.unwrap_or_default();
    let size = a[NOTEBOOK_STATUS].len() + a[NOTEBOOK_SUMMARY].len();
    assert!(size < 16 * 1024, "{size} bytes");
    let s = NotebookStatusSummary::parse(&a[NOTEBOOK_STATUS]).expect("valid JSON");
    assert_eq!(
        (s.failed_jobs.len(), s.failed_jobs_omitted),
        (50, N as i64 - 50)
    );
    assert!(
        a[NOTEBOOK_SUMMARY].ends_with(&format!("and {} more", N - 10)),
        "{}",
        a[NOTEBOOK_SUMMARY]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_while_statuses_change_leaves_exact_aggregates_and_a_quiet_restart() {
    let cluster = Cluster::get();
    let ns = TestNamespace::new(&cluster, "asa-kill").await;
    let n = ns.name.as_str();
    let client = cluster.client().await;
    let apps: Api<Application> = Api::namespaced(client.clone(), n);
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), n);
    const APPS: usize = 5;
    const PER_APP: usize = 20;
    let name = |a: usize, i: usize| format!("app{a}-nvj{i:02}");
    for a in 0..APPS {
        let listed: Vec<String> = (0..PER_APP).map(|i| name(a, i)).collect();
        let listed: Vec<(&str, &str)> = listed.iter().map(|x| (n, x.as_str())).collect();
        create_app(&apps, &format!("app{a}"), &listed).await;
        for i in 0..PER_APP {
            nvj(
                &nvjs,
                &name(a, i),
                &[(
                    ARGOCD_TRACKING_ID,
                    &tracking_id(&format!("app{a}"), n, &name(a, i)),
                )],
                None,
            )
            .await;
        }
    }
    let mut controller = start(&cluster, n, &[n], &[n], &[]).await;
    // Every NVJ's final phase: a mix, reached through Running, while the controller is killed.
    let final_phase = |a: usize, i: usize| match (a + i) % 3 {
        0 => Phase::Failed,
        1 => Phase::Succeeded,
        _ => Phase::Running,
    };
    let mut seed: u64 = 0x9e37_79b9 ^ u64::from(std::process::id());
    let mut kills = 0;
    for a in 0..APPS {
        for i in 0..PER_APP {
            let nvj = nvjs.get(&name(a, i)).await.expect("nvj");
            mark_finished(&nvjs, &nvj, Phase::Running, "executing")
                .await
                .expect("running");
            if final_phase(a, i) != Phase::Running {
                mark_finished(&nvjs, &nvj, final_phase(a, i), "done")
                    .await
                    .expect("final");
            }
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if seed.is_multiple_of(9) {
                controller.kill();
                kills += 1;
                tokio::time::sleep(Duration::from_millis(seed % 300)).await;
                controller.restart();
            }
        }
    }
    assert!(kills >= 3, "only {kills} kills");
    for a in 0..APPS {
        let want = |p: Phase| (0..PER_APP).filter(|i| final_phase(a, *i) == p).count() as i64;
        let expected = (
            PER_APP as i64,
            want(Phase::Succeeded),
            want(Phase::Failed),
            want(Phase::Running),
        );
        let app = summary(
            &apps,
            &format!("app{a}"),
            "the exact final aggregate",
            |s| counts(s) == Some(expected),
        )
        .await;
        let mut failed: Vec<String> = (0..PER_APP)
            .filter(|i| final_phase(a, *i) == Phase::Failed)
            .map(|i| name(a, i))
            .collect();
        failed.sort();
        assert_eq!(status_of(&app).map(|s| s.failed_jobs), Some(failed));
    }
    // A restart with nothing changed writes nothing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    controller.restart();
    let reconciled = eventually(
        Duration::from_secs(20),
        "the restarted controller reconciled every Application",
        || async {
            let seen =
                controller.metric("nbg_reconciles_total{controller=\"app-status-aggregator\"}")?;
            (seen >= APPS as f64).then_some(seen)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(reconciled >= APPS as f64);
    assert_eq!(
        controller
            .metric("nbg_api_requests_total{verb=\"patch\"}")
            .unwrap_or(0.0),
        0.0,
        "{}",
        controller.metrics()
    );
}
