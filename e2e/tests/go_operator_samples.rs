//! The Go operator's samples (`e2e/fixtures/nvj/valid`) applied byte for byte and validated by
//! nvj-validator running as a process under its chart's RBAC. This is the one nvj-validator test
//! left on the kubelet double (docs/development.md, "Still on the kubelet double"): the samples
//! name `git.example.com` over HTTPS, SSH and git and public images, which this machine cannot
//! reach; the double gives its containers a node-level git mirror (`url.<mirror>.insteadOf`)
//! that a real node has no equivalent of. The validation runs themselves - every cell, goldens,
//! timeouts, retries, private repositories - are proved on the real node (`nvj_validator.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::Api;
use nbg_core::nvj::{NotebookValidationJob, Phase};
use nbg_e2e::harness::cluster::{notebook_python, repo_root, workspace_binary};
use nbg_e2e::harness::controller::{ChartedController, ControllerSpec};
use nbg_e2e::harness::git_server::{GitRepo, GitServer, notebook};
use nbg_e2e::harness::kubelet::{self, KubeletConfig};
use nbg_e2e::harness::nvj;
use nbg_e2e::{Cluster, TestNamespace};

struct Env {
    cluster: Cluster,
    ns: TestNamespace,
    nvjs: Api<NotebookValidationJob>,
    controller: ChartedController,
    _kubelet: tokio::task::JoinHandle<()>,
    git: GitServer,
}

impl Env {
    /// `mirrored` URLs are served by this test's git server (repository `notebooks`): a git
    /// mirror configured on the node (`url.<mirror>.insteadOf`), so manifests naming those URLs
    /// run unchanged.
    async fn start_with_mirror(prefix: &str, mirrored: &[&str]) -> Self {
        let cluster = Cluster::get();
        let labels = BTreeMap::from([(
            "pod-security.kubernetes.io/enforce".to_string(),
            "restricted".to_string(),
        )]);
        let ns = TestNamespace::with_labels(&cluster, prefix, labels).await;
        let args: Vec<String> = vec![
            "--runner-image".into(),
            "local/nvj-validator:e2e".into(),
            "--retry-backoff".into(),
            "1s".into(),
            "--notebook-python".into(),
            notebook_python().display().to_string(),
            "--runner-path".into(),
            workspace_binary("nvj-validator").display().to_string(),
        ];
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
        let git = GitServer::start(
            &repo_root().join(format!("target/e2e-git/{}", ns.name)),
            None,
        )
        .await;
        let mut config = format!("[url \"{}\"]\n", git.url("notebooks"));
        for url in mirrored {
            config.push_str(&format!("\tinsteadOf = {url}\n"));
        }
        let path = git.root.join("mirror.gitconfig");
        std::fs::write(&path, config).expect("write git mirror config");
        let config = KubeletConfig {
            node_env: vec![("GIT_CONFIG_GLOBAL".to_string(), path.display().to_string())],
            ..KubeletConfig::for_test(&[&ns.name])
        };
        let kubelet = kubelet::spawn(client.clone(), config);
        Self {
            nvjs: Api::namespaced(client, &ns.name),
            cluster,
            ns,
            controller,
            _kubelet: kubelet,
            git,
        }
    }

    /// Waits for the current generation to reach a terminal phase.
    async fn finished(&self, name: &str, within: Duration) -> NotebookValidationJob {
        nvj::finished(&self.nvjs, name, within, &self.controller.process.log).await
    }
}

/// The Go-operator-style samples in e2e/fixtures/nvj/valid, applied byte for byte unchanged;
/// their git.example.com repositories are served by this test's git server through a node-level
/// git mirror.
#[tokio::test]
async fn go_operator_style_samples_apply_and_validate_unchanged() {
    let mirrored = [
        "https://git.example.com/team/notebooks.git",
        "http://git.example.com/team/notebooks.git",
        "git://git.example.com/team/notebooks.git",
        "git@git.example.com:team/notebooks.git",
        "ssh://git@git.example.com/team/notebooks.git",
    ];
    let env = Env::start_with_mirror("nvj-samples", &mirrored).await;
    let repo = GitRepo::create(&env.git, "notebooks");
    let training = |acc: &str, secs: &str| -> Vec<String> {
        vec![
            format!("print('Training time: {secs}s')"),
            format!("print('accuracy: {acc}')"),
            "import datetime; print(datetime.datetime.now().isoformat(sep=' '))".to_string(),
        ]
    };
    let golden_cells = training("0.9512", "12.34");
    let golden =
        nvj::executed_notebook(&golden_cells.iter().map(String::as_str).collect::<Vec<_>>());
    let run_cells = training("0.9518", "9.87");
    let deterministic = ["x = sum(range(10))", "print('sum', x)", "x / 4"];
    repo.commit(
        &[
            ("notebooks/tier1-basic/hello-world.ipynb", notebook(&["print('hello world')"])),
            ("notebooks/tier2/model-training.ipynb", notebook(&run_cells.iter().map(String::as_str).collect::<Vec<_>>())),
            ("deterministic.ipynb", notebook(&deterministic)),
            ("deterministic-golden.ipynb", nvj::executed_notebook(&deterministic)),
            (
                "notebooks/train-to-pvc.ipynb",
                notebook(&[
                    "import os, json",
                    "assert os.environ['DB_PASSWORD'] == 'db-pass' and os.environ['FEATURE_FLAGS'] == 'fast'",
                    "assert os.environ['AWS_ACCESS_KEY_ID'] == 'AKIA-TEST' and os.environ['EPOCHS'] == '3'",
                    "open(os.path.join(os.environ['MODEL_DIR'], 'model.txt'), 'w').write('weights')",
                ]),
            ),
            (
                "notebooks/serving/kserve-check.ipynb",
                notebook(&["print('serving check')", "0.93", "[[1, 2], [3, 4]]"]),
            ),
        ],
        "samples",
    );
    repo.tag("v1.4.0");
    repo.commit(
        &[("notebooks/tier2/model-training-golden.ipynb", golden)],
        "golden",
    );

    // What the samples reference in their namespace.
    let objects = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: notebook-runner, namespace: {ns}}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: git-credentials, namespace: {ns}}}\nstringData: {{username: bot, password: unused}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: db, namespace: {ns}}}\nstringData: {{password: db-pass}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: s3-credentials, namespace: {ns}}}\nstringData: {{S3_KEY: s3}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: aws-credentials, namespace: {ns}}}\nstringData: {{AWS_ACCESS_KEY_ID: AKIA-TEST}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: database-credentials, namespace: {ns}}}\nstringData: {{DB_USER: ml}}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: flags, namespace: {ns}}}\ndata: {{flags: fast}}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: training-config, namespace: {ns}}}\ndata: {{EPOCHS: '3'}}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: notebook-settings, namespace: {ns}}}\ndata: {{settings.json: '{{}}'}}\n---\n\
         apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: trained-models-pvc, namespace: {ns}}}\nspec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}\n---\n\
         apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: shared-datasets-pvc, namespace: {ns}}}\nspec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}\n",
        ns = env.ns.name
    );
    let (ok, _, err) = env.cluster.kubectl(&["apply", "-f", "-"], Some(&objects));
    assert!(ok, "{err}");
    let dir = repo_root().join("e2e/fixtures/nvj/valid");
    let (ok, _, err) = env.cluster.kubectl(
        &["apply", "-n", &env.ns.name, "-f", &dir.to_string_lossy()],
        None,
    );
    assert!(ok, "samples rejected: {err}");

    for name in [
        "basic",
        "golden-comparison",
        "exact-comparison",
        "pod-config",
        "go-operator-extensions",
    ] {
        let n = env.finished(name, Duration::from_secs(120)).await;
        let s = n.status.clone().expect("status");
        assert_eq!(s.phase, Some(Phase::Succeeded), "{name}: {:?}", s.message);
        if name.ends_with("comparison") {
            let cmp = s.comparison_result.expect("comparison");
            assert_eq!(cmp.mismatched_cells, 0, "{name}: {:?}", cmp.diffs);
        }
        if name == "go-operator-extensions" {
            let c = s
                .conditions
                .iter()
                .find(|c| c.type_ == "UnsupportedFeatures")
                .expect("unsupported condition");
            assert!(
                c.message.contains("spec.podConfig.buildConfig")
                    && !c.message.contains("spec.modelValidation"),
                "{}",
                c.message
            );
        }
        if name == "pod-config" {
            let pod = s.validation_pod_name.expect("pod");
            let model = repo_root().join(format!(
                "target/e2e-kubelet/{}/{pod}/volumes/model-output/model.txt",
                env.ns.name
            ));
            assert_eq!(
                std::fs::read_to_string(&model).ok().as_deref(),
                Some("weights"),
                "{}",
                model.display()
            );
        }
    }
    let (ok, events, _) = env.cluster.kubectl(
        &[
            "get",
            "events",
            "-n",
            &env.ns.name,
            "--field-selector",
            "reason=UnsupportedFeature",
            "-o",
            "name",
        ],
        None,
    );
    assert!(
        ok && !events.trim().is_empty(),
        "a Warning Event reports the unsupported features"
    );
}
