//! The wave-marker examples of `manifests/examples/wave-marker/`, applied as written (only their
//! namespaces replaced by the test's), with wave-marker under its chart's RBAC. The workflow
//! engines' controllers are not run: each waiting step's command is taken from the applied
//! resource and run as the engine would run it, with the step's ServiceAccount:
//! 1. the serving Application's Sync hook Job, waiting for the training NVJ that blocks wave 4;
//! 2. the Argo Workflows WorkflowTemplate: its `validate` step creates the NVJ, its `wait` step
//!    fails when the validation fails (so `deploy` never runs);
//! 3. the Tekton Task, with its parameters.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kube::api::Api;
use nbg_core::nvj::{NotebookValidationJob, Phase};
use nbg_e2e::harness::cluster::{repo_root, workspace_binary};
use nbg_e2e::harness::controller::{ChartedController, ControllerSpec};
use nbg_e2e::harness::nvj::mark_finished;
use nbg_e2e::harness::process::{LocalProcess, run_with_input, service_account_kubeconfig};
use nbg_e2e::{Cluster, TestNamespace};
use serde_json::Value;

fn example(path: &str) -> String {
    let file = repo_root().join("manifests/examples").join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The YAML documents of a manifest.
fn documents(yaml: &str) -> Vec<Value> {
    yaml.split("\n---")
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .map(|d| serde_saphyr::from_str::<Value>(d).expect("a YAML document"))
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in the example"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn apply(cluster: &Cluster, namespace: &str, yaml: &str) {
    let (ok, _, err) = cluster.kubectl(&["apply", "-n", namespace, "-f", "-"], Some(yaml));
    assert!(ok, "kubectl apply failed: {err}");
}

async fn start_marker(
    cluster: &Cluster,
    ns: &str,
    waiter: &str,
    waiter_ns: &str,
) -> ChartedController {
    ChartedController::start(
        cluster,
        ControllerSpec {
            name: "wave-marker",
            release_namespace: ns,
            namespaces: &[ns],
            values: &[
                format!("waiters[0].name={waiter}"),
                format!("waiters[0].namespace={waiter_ns}"),
                format!("waiters[0].readNamespaces={{{ns}}}"),
            ],
            args: &[],
        },
    )
    .await
}

/// Runs a step's `wave-marker` arguments as its container would, as `kubeconfig`'s account.
fn run_step(kubeconfig: &PathBuf, args: &[String]) -> LocalProcess {
    assert_eq!(args.first().map(String::as_str), Some("wait"), "{args:?}");
    let mut cmd = Command::new(workspace_binary("wave-marker"));
    cmd.args(args).arg("--kubeconfig").arg(kubeconfig);
    LocalProcess::spawn("wave-marker-step", cmd)
}

fn exit_of(mut step: LocalProcess, within: Duration) -> (i32, String) {
    let status = step.wait_exit(within);
    let out = step.output();
    let status =
        status.unwrap_or_else(|| panic!("the step did not exit within {within:?}:\n{out}"));
    (status.code().unwrap_or(-1), out)
}

async fn finish(api: &Api<NotebookValidationJob>, name: &str, phase: Phase, message: &str) {
    let nvj = api.get(name).await.expect("the NVJ");
    mark_finished(api, &nvj, phase, message)
        .await
        .expect("write the run's status");
}

#[tokio::test(flavor = "multi_thread")]
async fn serving_sync_hook_waits_for_the_training_nvj() {
    let cluster = Cluster::get();
    let training = TestNamespace::new(&cluster, "wm-ex-train").await;
    let serving = TestNamespace::new(&cluster, "wm-ex-serve").await;
    let (t, s) = (training.name.as_str(), serving.name.as_str());

    // The waiter as waiter-values.yaml declares it, in the test's namespaces.
    let values = documents(&example("wave-marker/serving-hook/waiter-values.yaml"));
    let waiter = values[0]["waiters"][0]["name"]
        .as_str()
        .expect("waiter name")
        .to_string();
    assert_eq!(
        strings(&values[0]["waiters"][0]["readNamespaces"]),
        ["fraud-detection"]
    );
    let _marker = start_marker(&cluster, t, &waiter, s).await;

    // The training side: the fraud-detection example's NVJ (block-wave 4).
    apply(
        &cluster,
        t,
        &example("fraud-detection/30-train-fraud-model.yaml"),
    );
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(cluster.client().await, t);
    finish(&nvjs, "train-fraud-model", Phase::Running, "executing").await;

    // The serving side: the hook Job and wave 1, as Argo CD applies them.
    let hook_yaml = example("wave-marker/serving-hook/wait-for-training.yaml").replace(
        "--namespace, fraud-detection,",
        &format!("--namespace, {t},"),
    );
    // `create`, as Argo CD does: the hook has a generateName (a new Job per sync).
    let (ok, _, err) = cluster.kubectl(&["create", "-n", s, "-f", "-"], Some(&hook_yaml));
    assert!(ok, "kubectl create failed: {err}");
    apply(
        &cluster,
        s,
        &example("wave-marker/serving-hook/fraud-model-server.yaml"),
    );
    let job = &documents(&hook_yaml)[0];
    assert_eq!(
        job["metadata"]["annotations"]["argocd.argoproj.io/hook"],
        "Sync"
    );
    assert_eq!(
        job["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"],
        "0"
    );
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], waiter.as_str());
    let args = strings(&pod["containers"][0]["args"]);
    let kubeconfig = service_account_kubeconfig(&cluster, s, &waiter, "").await;

    let mut step = run_step(&kubeconfig, &args);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        step.is_running(),
        "the hook passed while training runs:\n{}",
        step.output()
    );
    finish(
        &nvjs,
        "train-fraud-model",
        Phase::Succeeded,
        "all cells succeeded",
    )
    .await;
    let (code, out) = exit_of(step, Duration::from_secs(20));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("complete  {t}/train-fraud-model")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn argo_workflow_creates_the_nvj_and_its_wait_step_fails_with_the_validation() {
    let cluster = Cluster::get();
    let ns = TestNamespace::new(&cluster, "wm-ex-wf").await;
    let n = ns.name.as_str();
    let _marker = start_marker(&cluster, n, "unused-waiter", n).await;
    let yaml = example("wave-marker/argo-workflows/train-validate-deploy.yaml")
        .replace("namespace: fraud-detection", &format!("namespace: {n}"));
    apply(&cluster, n, &yaml);
    let docs = documents(&yaml);
    let template = of_kind(&docs, "WorkflowTemplate");
    let account = template["spec"]["serviceAccountName"]
        .as_str()
        .expect("serviceAccountName");
    let kubeconfig = service_account_kubeconfig(&cluster, n, account, "").await;
    let templates = template["spec"]["templates"].as_array().expect("templates");
    let named = |name: &str| {
        templates
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("no template {name}"))
    };
    // Argo Workflows' substitution for a workflow `train-validate-deploy-x7k2p`.
    let workflow = "train-validate-deploy-x7k2p";
    let substitute = |s: &str| {
        s.replace("{{workflow.name}}", workflow)
            .replace("{{workflow.namespace}}", n)
            .replace("{{workflow.parameters.git-ref}}", "main")
    };

    // Step `validate`: the resource template's manifest, created with the workflow's account.
    let manifest = substitute(
        named("create-validation")["resource"]["manifest"]
            .as_str()
            .expect("manifest"),
    );
    let (ok, _, err) = run_with_input(
        &cluster.kubectl,
        &kubeconfig,
        &["create", "-n", n, "-f", "-"],
        Some(&manifest),
    );
    assert!(ok, "the validate step's create failed: {err}");

    // Step `wait`, while the validation runs; then the validation fails.
    let args: Vec<String> = strings(&named("wait-for-validation")["container"]["args"])
        .iter()
        .map(|a| substitute(a))
        .collect();
    let mut step = run_step(&kubeconfig, &args);
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(cluster.client().await, n);
    let name = format!("fraud-model-{workflow}");
    finish(&nvjs, &name, Phase::Running, "executing").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(step.is_running(), "{}", step.output());
    finish(
        &nvjs,
        &name,
        Phase::Failed,
        "golden mismatch: cell 7 accuracy 0.71 vs 0.93",
    )
    .await;
    let (code, out) = exit_of(step, Duration::from_secs(20));
    assert_eq!(
        code, 1,
        "a failed validation fails the step, so deploy never runs:\n{out}"
    );
    assert!(
        out.contains(&format!("{n}/{name}: golden mismatch")),
        "{out}"
    );
    // The deploy step comes after it.
    let steps = strings(&Value::Array(
        template["spec"]["templates"][0]["steps"]
            .as_array()
            .map(|s| s.iter().map(|g| g[0]["name"].clone()).collect())
            .unwrap_or_default(),
    ));
    assert_eq!(steps, ["validate", "wait", "deploy"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn tekton_task_waits_for_the_block_wave() {
    let cluster = Cluster::get();
    let ns = TestNamespace::new(&cluster, "wm-ex-tk").await;
    let n = ns.name.as_str();
    let _marker = start_marker(&cluster, n, "nvj-waiter", n).await;
    let yaml = example("wave-marker/tekton/wait-for-notebook-validation.yaml");
    apply(&cluster, n, &yaml);
    let task = &documents(&yaml)[0];
    // Tekton's parameter substitution: the TaskRun's values, then the defaults.
    let mut params = vec![
        ("namespace".to_string(), n.to_string()),
        ("block-wave".to_string(), "4".to_string()),
    ];
    for p in task["spec"]["params"].as_array().expect("params") {
        if let (Some(name), Some(default)) = (p["name"].as_str(), p["default"].as_str()) {
            params.push((name.to_string(), default.to_string()));
        }
    }
    let args: Vec<String> = strings(&task["spec"]["steps"][0]["args"])
        .iter()
        .map(|a| {
            params.iter().fold(a.clone(), |a, (k, v)| {
                a.replace(&format!("$(params.{k})"), v)
            })
        })
        .collect();
    assert!(!args.iter().any(|a| a.contains("$(")), "{args:?}");
    let kubeconfig = service_account_kubeconfig(&cluster, n, "nvj-waiter", "").await;
    apply(
        &cluster,
        n,
        &example("fraud-detection/30-train-fraud-model.yaml"),
    );
    let mut step = run_step(&kubeconfig, &args);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(step.is_running(), "{}", step.output());
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(cluster.client().await, n);
    finish(
        &nvjs,
        "train-fraud-model",
        Phase::Succeeded,
        "all cells succeeded",
    )
    .await;
    let (code, out) = exit_of(step, Duration::from_secs(20));
    assert_eq!(code, 0, "{out}");
    let last: Value =
        serde_json::from_str(out.lines().last().unwrap_or_default()).expect("JSON result");
    assert_eq!(last["result"], "complete", "{out}");
}
