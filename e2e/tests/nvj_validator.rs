//! nvj-validator end to end on a real node (containerd, runc, the kubelet; `RealNode`): the
//! controller runs as a process under exactly the RBAC of its chart, each scenario in a namespace
//! of its own that enforces the "restricted" Pod Security Standard; validation pods run the
//! notebook-runner image (real git over HTTP from a git server on the host, reached by a
//! Service's name; real papermill and a Jupyter kernel) with nvj-validator's image as the runner.
//! One control plane with its node for the file: the scenarios run side by side on it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use nbg_core::conditions;
use nbg_core::nvj::{CellStatus, NotebookValidationJob, Phase};
use nbg_e2e::harness::cluster::{eventually, repo_root};
use nbg_e2e::harness::controller::{ChartedController, ControllerSpec};
use nbg_e2e::harness::git_server::{
    GitRepo, GitServer, credentials_secret, notebook, tagged_notebook,
};
use nbg_e2e::harness::nvj;
use nbg_e2e::harness::real_node::RealNode;
use nbg_e2e::{Cluster, TestNamespace};

struct Env<'a> {
    node: &'a RealNode,
    cluster: Cluster,
    ns: TestNamespace,
    nvjs: Api<NotebookValidationJob>,
    pods: Api<Pod>,
    controller: ChartedController,
    git: GitServer,
    /// The git server by its Service's cluster DNS name.
    git_service: String,
}

impl<'a> Env<'a> {
    async fn start(
        node: &'a RealNode,
        prefix: &str,
        extra_args: &[&str],
        auth: Option<(&str, &str)>,
    ) -> Self {
        let cluster = node.plane.cluster.clone();
        let labels = BTreeMap::from([(
            "pod-security.kubernetes.io/enforce".to_string(),
            "restricted".to_string(),
        )]);
        let ns = TestNamespace::with_labels(&cluster, prefix, labels).await;
        let mut args = node.validator_args();
        // A scenario's own runner path replaces the image's.
        if extra_args.contains(&"--runner-path")
            && let Some(at) = args.iter().position(|a| a == "--runner-path")
        {
            args.drain(at..at + 2);
        }
        args.extend(["--retry-backoff".to_string(), "1s".to_string()]);
        args.extend(extra_args.iter().map(|a| a.to_string()));
        let controller = ChartedController::start(
            &cluster,
            ControllerSpec {
                name: "nvj-validator",
                release_namespace: &ns.name,
                namespaces: &[&ns.name],
                values: &[],
                args: &args,
            },
        )
        .await;
        let client = cluster.client().await;
        let git = GitServer::start_on(
            node.host_ip,
            &repo_root().join(format!("target/e2e-git/{}", ns.name)),
            auth,
        )
        .await;
        let git_service = node
            .service_to_host(&client, &ns.name, "git", git.addr.port())
            .await
            .expect("the git server's Service");
        Self {
            node,
            nvjs: Api::namespaced(client.clone(), &ns.name),
            pods: Api::namespaced(client, &ns.name),
            cluster,
            ns,
            controller,
            git,
            git_service,
        }
    }

    /// A repository of this scenario's git server as pods reach it.
    fn url(&self, repo: &str) -> String {
        format!("http://{}/{repo}.git", self.git_service)
    }

    async fn create(&self, name: &str, spec: serde_json::Value) -> NotebookValidationJob {
        let nvj: NotebookValidationJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob", "metadata": {"name": name}, "spec": spec
        }))
        .expect("nvj");
        self.nvjs
            .create(&PostParams::default(), &nvj)
            .await
            .expect("create nvj")
    }

    /// Waits for the current generation to reach a terminal phase.
    async fn finished(&self, name: &str, within: Duration) -> NotebookValidationJob {
        nvj::finished(&self.nvjs, name, within, &self.controller.process.log).await
    }

    fn spec(&self, repo: &str, path: &str, reference: &str) -> serde_json::Value {
        serde_json::json!({
            "notebook": {"git": {"url": self.url(repo), "ref": reference}, "path": path},
            "podConfig": {"containerImage": self.node.notebook_image, "imagePullPolicy": "Never"},
            // Room for a loaded 2-core CI machine: a three-cell run took over 2 minutes there
            // (2026-12-06) with nine groups of tests beside it.
            "timeout": "4m"
        })
    }
}

#[tokio::test]
async fn validation_runs_report_compare_time_out_and_retry_on_a_real_node() {
    let node = RealNode::start("nvj-validator-node").expect("a control plane with a real node");
    tokio::join!(
        passing_and_failing_notebooks_report_every_cell_and_run_once(&node),
        golden_comparison_within_and_beyond_tolerance(&node),
        a_timeout_fails_well_before_the_notebook_would_end(&node),
        a_private_repository_with_a_credentials_secret_and_no_secret_in_the_pod(&node),
        a_spec_change_after_failure_reruns_and_a_deleted_pod_is_retried(&node),
        exhausting_retries_fails_with_the_count_and_names_the_failed_container(&node),
    );
    // After the others: three more notebooks beside them made a two-cell run take 90 s on a
    // loaded CI machine.
    parameters_and_output_checks_judge_what_the_notebook_produced(&node).await;
}

/// spec.notebook.parameters and spec.validationConfig in a validation pod: the parameter reaches
/// the notebook and the status, a cell found by its tag and one by its index are checked, and a
/// warning fails the run that asks so - each named in the status.
async fn parameters_and_output_checks_judge_what_the_notebook_produced(node: &RealNode) {
    let env = Env::start(node, "nvj-checks", &[], None).await;
    let repo = GitRepo::create(&env.git, "notebooks");
    let cells: &[(&[&str], &str)] = &[
        (&["parameters"], "epochs = 1"),
        (&["metrics"], "accuracy = (80 + epochs * 5) / 100\naccuracy"),
        (&[], "[[1, 2], [3, 4]]"),
        (
            &[],
            "import warnings\nwarnings.warn('old API', UserWarning)",
        ),
    ];
    repo.commit(&[("train.ipynb", tagged_notebook(cells))], "train");
    let checks = serde_json::json!({"expectedOutputs": [
        {"cellTag": "metrics", "type": "float", "minValue": "0.9"},
        {"cell": 2, "type": "list", "shape": "2,2"}]});
    let mut trained = env.spec("notebooks", "train.ipynb", "main");
    trained["notebook"]["parameters"] = serde_json::json!({"epochs": "3"});
    trained["validationConfig"] = checks.clone();
    env.create("trained", trained).await;
    let mut short = env.spec("notebooks", "train.ipynb", "main");
    short["validationConfig"] = checks;
    env.create("short", short).await;
    let mut warned = env.spec("notebooks", "train.ipynb", "main");
    warned["validationConfig"] = serde_json::json!({"failOnWarnings": true});
    env.create("warned", warned).await;

    let s = env
        .finished("trained", Duration::from_secs(300))
        .await
        .status
        .expect("status");
    assert_eq!(s.phase, Some(Phase::Succeeded), "{:?}", s.message);
    assert_eq!(
        s.parameters,
        BTreeMap::from([("epochs".to_string(), "3".to_string())])
    );
    // Cell indices are the notebook's in git: papermill's injected cell is not counted.
    assert_eq!(s.results.len(), 4, "{:?}", s.results);
    let metrics = &s.results[1].checks;
    assert_eq!(metrics.len(), 1, "{:?}", s.results);
    assert!(metrics[0].passed);
    assert_eq!(metrics[0].value.as_deref(), Some("0.95 (float)"));
    let message = s.message.unwrap_or_default();
    assert!(message.contains("2 output checks passed"), "{message}");

    let s = env
        .finished("short", Duration::from_secs(300))
        .await
        .status
        .expect("status");
    assert_eq!(s.phase, Some(Phase::Failed));
    let message = s.message.clone().unwrap_or_default();
    assert!(
        message.contains(
            "1 of 2 output checks failed: expectedOutputs[0] (the cell tagged \"metrics\"): 0.85 (float) is below minValue 0.9"
        ),
        "{message}"
    );
    assert_eq!(
        s.conditions
            .iter()
            .find(|c| c.type_ == conditions::READY)
            .map(|c| c.reason.as_str()),
        Some("OutputCheckFailed")
    );

    let s = env
        .finished("warned", Duration::from_secs(300))
        .await
        .status
        .expect("status");
    assert_eq!(s.phase, Some(Phase::Failed));
    let message = s.message.unwrap_or_default();
    assert!(
        message.contains(
            "failOnWarnings: cell 4 (cellIndex 3) raised a warning: UserWarning: old API"
        ),
        "{message}"
    );
}

async fn passing_and_failing_notebooks_report_every_cell_and_run_once(node: &RealNode) {
    let env = Env::start(node, "nvj-cells", &[], None).await;
    let repo = GitRepo::create(&env.git, "notebooks");
    repo.commit(
        &[
            (
                "nb/pass.ipynb",
                notebook(&["x = 20", "print('x is', x)", "x * 2 + 2"]),
            ),
            (
                "nb/fail.ipynb",
                notebook(&[
                    "a = 1",
                    "b = 2",
                    "raise ValueError('training data is empty')",
                    "print('never')",
                ]),
            ),
        ],
        "notebooks",
    );
    env.create("pass", env.spec("notebooks", "nb/pass.ipynb", "main"))
        .await;
    env.create("fail", env.spec("notebooks", "nb/fail.ipynb", "main"))
        .await;

    let pass = env.finished("pass", Duration::from_secs(300)).await;
    let s = pass.status.clone().expect("status");
    assert_eq!(s.phase, Some(Phase::Succeeded), "{:?}", s.message);
    assert_eq!(s.results.len(), 3);
    assert!(s.results.iter().all(|c| c.status == CellStatus::Success));
    assert_eq!(s.results[2].output.as_deref(), Some("42"));
    assert!(conditions::is_true(&s.conditions, conditions::READY));
    assert!(
        s.start_time.is_some() && s.completion_time.is_some() && s.validation_pod_name.is_some()
    );

    let fail = env.finished("fail", Duration::from_secs(300)).await;
    let s = fail.status.clone().expect("status");
    assert_eq!(s.phase, Some(Phase::Failed));
    let message = s.message.clone().unwrap_or_default();
    assert!(
        message.contains("cell 3 (cellIndex 2) raised ValueError: training data is empty"),
        "{message}"
    );
    assert_eq!(s.results[2].status, CellStatus::Failure);
    assert!(
        s.results[2]
            .error_message
            .as_deref()
            .unwrap_or_default()
            .contains("ValueError")
    );
    assert_eq!(s.results[3].status, CellStatus::Skipped);
    assert_eq!(s.retry_count, Some(0));
    assert!(conditions::is_true(&s.conditions, conditions::STALLED));
    // Run once: exactly one pod for the failing job.
    let uid = fail.metadata.uid.clone().unwrap_or_default();
    let pods = env
        .pods
        .list(&ListParams::default().labels(&format!("mlops.dev/nvj-uid={uid}")))
        .await
        .expect("pods");
    assert_eq!(
        pods.items.len(),
        1,
        "a deterministic failure is not retried"
    );
    // The chart asks for JSON logs: each phase a run enters is a line, a failure a warning.
    let log = env.controller.process.output();
    let lines: Vec<serde_json::Value> = env
        .controller
        .process
        .json_log()
        .into_iter()
        .filter(|l| {
            l["object"] == format!("{}/fail", env.ns.name).as_str() && l["phase"].is_string()
        })
        .collect();
    let phases: Vec<&str> = lines.iter().filter_map(|l| l["phase"].as_str()).collect();
    assert_eq!(
        phases,
        ["Initializing", "ValidationRunning", "Failed"],
        "{log}"
    );
    assert_eq!(lines[2]["level"], "WARN");
    assert_eq!(
        lines[2]["message"],
        "cell 3 (cellIndex 2) raised ValueError: training data is empty"
    );

    // Metrics: validations by result, and nothing left in progress.
    let metrics = env.controller.metrics();
    assert!(
        metrics.contains("nbg_validations_total{result=\"ValidationSucceeded\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("nbg_validations_total{result=\"CellFailed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("nbg_validations_in_progress 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("nbg_validation_duration_seconds_count 2"),
        "{metrics}"
    );
}

async fn golden_comparison_within_and_beyond_tolerance(node: &RealNode) {
    let env = Env::start(node, "nvj-golden", &[], None).await;
    let repo = GitRepo::create(&env.git, "ml");
    let golden = nvj::executed_notebook(&[
        "import datetime; print('trained at', datetime.datetime.now().isoformat())",
        "print('accuracy: 0.9512')",
    ]);
    repo.commit(
        &[
            ("golden/train.ipynb", golden),
            (
                "close.ipynb",
                notebook(&[
                    "import datetime; print('trained at', datetime.datetime.now().isoformat())",
                    "print('accuracy: 0.9517')",
                ]),
            ),
            (
                "far.ipynb",
                notebook(&[
                    "import datetime; print('trained at', datetime.datetime.now().isoformat())",
                    "print('accuracy: 0.9712')",
                ]),
            ),
        ],
        "golden",
    );
    for (name, path) in [("close", "close.ipynb"), ("far", "far.ipynb")] {
        let mut spec = env.spec("ml", path, "main");
        spec["goldenNotebook"] = serde_json::json!({"git": {"url": env.url("ml"), "ref": "main"}, "path": "golden/train.ipynb"});
        spec["comparisonConfig"] = serde_json::json!({"floatingPointTolerance": "0.001"});
        env.create(name, spec).await;
    }
    let close = env
        .finished("close", Duration::from_secs(300))
        .await
        .status
        .expect("status");
    assert_eq!(close.phase, Some(Phase::Succeeded), "{:?}", close.message);
    assert_eq!(
        close
            .comparison_result
            .as_ref()
            .map(|c| (c.matched_cells, c.total_cells)),
        Some((2, 2))
    );
    let far = env
        .finished("far", Duration::from_secs(300))
        .await
        .status
        .expect("status");
    assert_eq!(far.phase, Some(Phase::Failed));
    let cmp = far.comparison_result.expect("comparison");
    assert_eq!(cmp.mismatched_cells, 1);
    assert!(
        cmp.diffs[0]
            .diff
            .as_deref()
            .unwrap_or_default()
            .contains("0.9712 differs from the golden 0.9512"),
        "{:?}",
        cmp.diffs
    );
    assert!(
        far.message
            .unwrap_or_default()
            .contains("golden comparison failed")
    );
}

async fn a_timeout_fails_well_before_the_notebook_would_end(node: &RealNode) {
    let env = Env::start(node, "nvj-timeout", &[], None).await;
    let repo = GitRepo::create(&env.git, "slow");
    repo.commit(
        &[("slow.ipynb", notebook(&["import time", "time.sleep(300)"]))],
        "slow",
    );
    let mut spec = env.spec("slow", "slow.ipynb", "main");
    // Room for the pod, the clone and the kernel to start beside the other tests.
    spec["timeout"] = serde_json::json!("20s");
    let started = Instant::now();
    env.create("slow", spec).await;
    let s = env
        .finished("slow", Duration::from_secs(120))
        .await
        .status
        .expect("status");
    assert_eq!(s.phase, Some(Phase::Failed));
    assert_eq!(
        s.condition(conditions::STALLED).map(|c| c.reason.as_str()),
        Some("Timeout")
    );
    let message = s.message.unwrap_or_default();
    assert!(message.contains("timeout 20s"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(180),
        "took {:?}; the notebook sleeps 300 s",
        started.elapsed()
    );
}

async fn a_private_repository_with_a_credentials_secret_and_no_secret_in_the_pod(node: &RealNode) {
    let token = "tok-4f9c2b7e1d";
    let env = Env::start(node, "nvj-private", &[], Some(("ml-bot", token))).await;
    let repo = GitRepo::create(&env.git, "private");
    let sha = repo.commit(
        &[("train.ipynb", notebook(&["print('secret model trained')"]))],
        "private",
    );
    let secrets: Api<Secret> = Api::namespaced(env.cluster.client().await, &env.ns.name);
    let secret = credentials_secret("git-credentials", "ml-bot", token);
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    // Without credentials the fetch is refused: a deterministic failure, not retried.
    env.create("anonymous", env.spec("private", "train.ipynb", &sha))
        .await;
    let anonymous = env
        .finished("anonymous", Duration::from_secs(300))
        .await
        .status
        .expect("status");
    assert_eq!(
        (anonymous.phase, anonymous.retry_count),
        (Some(Phase::Failed), Some(0)),
        "{:?}",
        anonymous.message
    );
    // With the Secret, at a full commit SHA.
    let mut spec = env.spec("private", "train.ipynb", &sha);
    spec["notebook"]["git"]["credentialsSecret"] = serde_json::json!("git-credentials");
    env.create("private", spec).await;
    let done = env.finished("private", Duration::from_secs(300)).await;
    let s = done.status.clone().expect("status");
    assert_eq!(s.phase, Some(Phase::Succeeded), "{:?}", s.message);
    let pod = env
        .pods
        .get(s.validation_pod_name.as_deref().unwrap_or_default())
        .await
        .expect("pod");
    let text = serde_json::to_string(&pod).expect("json");
    assert!(!text.contains(token), "the token appears in the pod object");
    assert!(
        text.contains("git-credentials"),
        "the Secret is referenced by name"
    );
}

async fn a_spec_change_after_failure_reruns_and_a_deleted_pod_is_retried(node: &RealNode) {
    let env = Env::start(node, "nvj-rerun", &[], None).await;
    let repo = GitRepo::create(&env.git, "rerun");
    let broken = repo.commit(
        &[("train.ipynb", notebook(&["raise RuntimeError('bug')"]))],
        "broken",
    );
    // Sleeps long enough that the pod is deleted while it runs, also on a loaded machine (with
    // 6 s, a cold CI run once saw the run finish before the deletion reached it).
    let fixed = repo.commit(
        &[(
            "train.ipynb",
            notebook(&["import time; time.sleep(20)", "print('fixed')"]),
        )],
        "fixed",
    );
    env.create("rerun", env.spec("rerun", "train.ipynb", &broken))
        .await;
    let first = env.finished("rerun", Duration::from_secs(300)).await;
    assert_eq!(
        first.status.as_ref().and_then(|s| s.phase),
        Some(Phase::Failed)
    );
    let old_pod = first
        .status
        .as_ref()
        .and_then(|s| s.validation_pod_name.clone())
        .unwrap_or_default();

    // Point the job at the fixed commit: a new generation, a new run.
    let patch = serde_json::json!({"spec": {"notebook": {"git": {"ref": fixed}}}});
    env.nvjs
        .patch("rerun", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("spec change");
    // Delete the new run's pod while its notebook sleeps: an infrastructure failure, retried.
    let pods = env.pods.clone();
    let nvjs = env.nvjs.clone();
    let running = eventually(Duration::from_secs(60), "the new run's pod to run", || {
        let (pods, nvjs) = (pods.clone(), nvjs.clone());
        async move {
            let n = nvjs.get("rerun").await.ok()?;
            let name = n
                .status
                .as_ref()
                .and_then(|s| s.validation_pod_name.clone())?;
            let p = pods.get(&name).await.ok()?;
            (n.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .then_some(name)
        }
    })
    .await;
    assert_ne!(running, old_pod);
    assert!(
        env.pods
            .get_opt(&old_pod)
            .await
            .expect("get")
            .is_none_or(|p| p.metadata.deletion_timestamp.is_some()),
        "the old run's pod is removed"
    );
    env.pods
        .delete(&running, &DeleteParams::default())
        .await
        .expect("delete pod");
    let done = env.finished("rerun", Duration::from_secs(120)).await;
    let s = done.status.expect("status");
    assert_eq!(s.phase, Some(Phase::Succeeded), "{:?}", s.message);
    assert_eq!(s.observed_generation, Some(2));
    assert_eq!(s.retry_count, Some(1), "the deleted pod was retried once");
}

async fn exhausting_retries_fails_with_the_count_and_names_the_failed_container(node: &RealNode) {
    // A runner that cannot be installed: every attempt fails as infrastructure.
    let env = Env::start(
        node,
        "nvj-retries",
        &[
            "--max-retries",
            "2",
            "--runner-path",
            "/nonexistent/nvj-validator",
        ],
        None,
    )
    .await;
    let repo = GitRepo::create(&env.git, "r");
    repo.commit(&[("a.ipynb", notebook(&["1"]))], "a");
    env.create("doomed", env.spec("r", "a.ipynb", "main")).await;
    let s = env
        .finished("doomed", Duration::from_secs(120))
        .await
        .status
        .expect("status");
    assert_eq!(s.phase, Some(Phase::Failed));
    assert_eq!(s.retry_count, Some(2));
    let message = s.message.unwrap_or_default();
    assert!(message.starts_with("failed after 2 retries"), "{message}");
    // Which container, its exit code and reason, the cause (runc's, through containerd), and
    // what to check.
    let container = format!(
        "init container install-runner (image {}) exited with code 128 (StartError)",
        node.validator_image
    );
    for part in [
        container.as_str(),
        "/nonexistent/nvj-validator",
        "no such file or directory",
        "--runner-path",
    ] {
        assert!(message.contains(part), "{part:?} in {message:?}");
    }
}
