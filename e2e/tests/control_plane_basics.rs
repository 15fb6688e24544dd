//! The basics, end to end on the real local control plane: our CRD applies, NVJs in the Go
//! operator's style are accepted and malformed ones rejected naming the field, status
//! round-trips through the status subresource, the garbage collector removes pods owned by a
//! deleted NVJ, and a ServiceAccount without a permission gets a 403.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use nbg_core::nvj::{NotebookValidationJob, NotebookValidationJobStatus, Phase};
use nbg_e2e::harness::cluster::{eventually, repo_root};
use nbg_e2e::harness::process::service_account_kubeconfig;
use nbg_e2e::{Cluster, TestNamespace};

fn fixtures(kind: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("e2e/fixtures/nvj").join(kind))
        .expect("fixtures dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
}

#[tokio::test]
async fn go_operator_style_nvjs_are_accepted_and_parse() {
    let cluster = Cluster::get();
    let ns = TestNamespace::new(&cluster, "accept").await;
    let mut names = Vec::new();
    for file in fixtures("valid") {
        let (ok, out, err) = cluster.kubectl(
            &["apply", "-n", &ns.name, "-f", &file.to_string_lossy()],
            None,
        );
        assert!(ok, "{} was rejected: {err}", file.display());
        names.extend(
            out.lines()
                .filter_map(|l| l.split_whitespace().next())
                .map(|s| {
                    s.trim_start_matches("notebookvalidationjob.mlops.mlops.dev/")
                        .to_string()
                }),
        );
    }
    let api: Api<NotebookValidationJob> = Api::namespaced(cluster.client().await, &ns.name);
    let listed = api
        .list(&ListParams::default())
        .await
        .expect("typed list parses every sample");
    assert_eq!(
        listed.items.len(),
        names.len(),
        "every applied sample is stored: {names:?}"
    );
    let basic = api.get("basic").await.expect("basic");
    assert_eq!(basic.spec.timeout, "5m");
    let extensions = api.get("go-operator-extensions").await.expect("extensions");
    assert!(
        extensions.spec.pod_config.build_config.is_some()
            && extensions.spec.model_validation.is_some()
    );
    let pod_config = api.get("pod-config").await.expect("pod-config");
    assert_eq!(pod_config.spec.pod_config.volumes.len(), 5);
    assert_eq!(
        pod_config.spec.pod_config.credentials,
        vec!["aws-credentials", "database-credentials"]
    );
    // The printer columns of the Go operator.
    let (ok, table, err) = cluster.kubectl(&["get", "nvj", "-n", &ns.name, "-o", "wide"], None);
    assert!(ok, "{err}");
    let header = table.lines().next().unwrap_or_default();
    for column in ["PHASE", "NOTEBOOK", "AGE", "MESSAGE", "GIT-URL", "TIMEOUT"] {
        assert!(
            header.contains(column),
            "missing column {column} in {header}"
        );
    }
}

#[tokio::test]
async fn malformed_nvjs_are_rejected_naming_the_field() {
    let cluster = Cluster::get();
    let ns = TestNamespace::new(&cluster, "reject").await;
    for file in fixtures("invalid") {
        let text = std::fs::read_to_string(&file).expect("fixture");
        let field = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# The API server must reject this, naming "))
            .map(|f| f.trim_end_matches('.'))
            .expect("fixture names its field");
        let (ok, _, err) = cluster.kubectl(
            &["apply", "-n", &ns.name, "-f", &file.to_string_lossy()],
            None,
        );
        assert!(!ok, "{} was accepted", file.display());
        assert!(
            err.contains(field),
            "{}: rejection does not name {field}: {err}",
            file.display()
        );
    }
}

fn minimal_nvj(name: &str) -> NotebookValidationJob {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob",
        "metadata": {"name": name},
        "spec": {"notebook": {"git": {"url": "https://example.com/r.git", "ref": "main"}, "path": "a.ipynb"},
                 "podConfig": {"containerImage": "img"}}
    }))
    .expect("valid NVJ")
}

#[tokio::test]
async fn status_round_trips_through_the_status_subresource() {
    let cluster = Cluster::get();
    let ns = TestNamespace::new(&cluster, "status").await;
    let api: Api<NotebookValidationJob> = Api::namespaced(cluster.client().await, &ns.name);
    let created = api
        .create(&PostParams::default(), &minimal_nvj("round-trip"))
        .await
        .expect("create");
    assert_eq!(created.spec.timeout, "30m", "the schema default applies");
    let generation = created.metadata.generation;

    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let status = NotebookValidationJobStatus {
        phase: Some(Phase::Succeeded),
        observed_generation: generation,
        conditions: nbg_core::conditions::for_phase(
            &[],
            Phase::Succeeded,
            "Succeeded",
            "all 3 cells passed",
            generation,
            &now,
        ),
        message: Some("all 3 cells passed".into()),
        retry_count: Some(0),
        ..NotebookValidationJobStatus::default()
    };
    let patch = serde_json::json!({"apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob", "status": status});
    api.patch_status(
        "round-trip",
        &PatchParams::apply("nbg-e2e").force(),
        &Patch::Apply(&patch),
    )
    .await
    .expect("status patch");

    let read = api.get("round-trip").await.expect("get");
    let read_status = read.status.clone().expect("status stored");
    assert_eq!(read_status.phase, Some(Phase::Succeeded));
    assert_eq!(read_status.message.as_deref(), Some("all 3 cells passed"));
    assert!(nbg_core::conditions::is_true(
        &read_status.conditions,
        "Ready"
    ));
    assert_eq!(
        read.metadata.generation, generation,
        "a status write does not bump the generation"
    );
    assert_eq!(read.current_phase(), Some(Phase::Succeeded));

    // A status written through the main resource is ignored: status is a subresource.
    let mut via_main = read.clone();
    if let Some(s) = via_main.status.as_mut() {
        s.phase = Some(Phase::Failed);
    }
    via_main.metadata.managed_fields = None;
    let replaced = api
        .replace("round-trip", &PostParams::default(), &via_main)
        .await
        .expect("replace");
    assert_eq!(
        replaced.status.and_then(|s| s.phase),
        Some(Phase::Succeeded)
    );

    // `kubectl wait --for=condition=Ready` works on it.
    let (ok, _, err) = cluster.kubectl(
        &[
            "wait",
            "-n",
            &ns.name,
            "--for=condition=Ready",
            "nvj/round-trip",
            "--timeout=10s",
        ],
        None,
    );
    assert!(ok, "kubectl wait: {err}");
}

#[tokio::test]
async fn garbage_collector_removes_the_pod_of_a_deleted_nvj() {
    let cluster = Cluster::get();
    let ns = TestNamespace::new(&cluster, "gc").await;
    let client = cluster.client().await;
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), &ns.name);
    let pods: Api<Pod> = Api::namespaced(client, &ns.name);
    let nvj = nvjs
        .create(&PostParams::default(), &minimal_nvj("owner"))
        .await
        .expect("create nvj");
    let owner: OwnerReference = nvj.controller_owner_ref(&()).expect("owner ref");
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some("owned".into()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some("img".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create owned pod");
    nvjs.delete("owner", &DeleteParams::background())
        .await
        .expect("delete nvj");
    eventually(
        Duration::from_secs(60),
        "the garbage collector to delete the owned pod",
        || {
            let pods = pods.clone();
            async move {
                pods.get_opt("owned")
                    .await
                    .ok()
                    .and_then(|p| p.is_none().then_some(()))
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_service_account_without_a_permission_gets_403() {
    let cluster = Cluster::get();
    let ns = TestNamespace::new(&cluster, "rbac").await;
    let kubeconfig = service_account_kubeconfig(&cluster, &ns.name, "no-rights", "").await;

    // Through our own client, as a controller would.
    let limited = cluster.client_for(&kubeconfig).await;
    let pods: Api<Pod> = Api::namespaced(limited.clone(), &ns.name);
    match pods.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403, got {other:?}"),
    }
    // Through a separate process using the token.
    let (ok, _, err) = nbg_e2e::harness::process::run_with_input(
        &cluster.kubectl,
        &kubeconfig,
        &["get", "pods", "-n", &ns.name],
        None,
    );
    assert!(!ok && err.contains("Forbidden"), "{err}");

    // Granting exactly that permission makes the same call succeed: the token and RBAC are real.
    let role = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: list-pods, namespace: {ns}}}\nrules:\n- apiGroups: [\"\"]\n  resources: [pods]\n  verbs: [list]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: list-pods, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: list-pods}}\nsubjects:\n- {{kind: ServiceAccount, name: no-rights, namespace: {ns}}}\n",
        ns = ns.name
    );
    let (ok, _, err) = cluster.kubectl(&["apply", "-f", "-"], Some(&role));
    assert!(ok, "{err}");
    eventually(
        Duration::from_secs(10),
        "the RoleBinding to take effect",
        || {
            let pods = pods.clone();
            async move { pods.list(&ListParams::default()).await.ok().map(|_| ()) }
        },
    )
    .await;
}
