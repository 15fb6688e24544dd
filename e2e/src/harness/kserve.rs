//! The real KServe manager (`github.com/kserve/kserve`, built by `hack/build-binaries.sh kserve`)
//! against a control plane, in Standard mode (formerly RawDeployment: the predictor is a plain
//! Deployment; no Istio, Knative or Gateway API needed): its CRDs, its `inferenceservice-config`
//! ConfigMap with Standard as the default mode and no ingress, the sklearn
//! ClusterServingRuntime, and the manager as a local process. Its CRDs are installed on every
//! control plane the e2e harness uses ([`install_crds`]); the manager reconciles every
//! InferenceService it sees, so it runs only where nothing else plays KServe: on a control plane
//! of a test's own ([`crate::harness::control_plane`]), or in the demo.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::process::{build_binaries, built_tool};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::Cluster;
use crate::harness::cluster::repo_root;
use crate::harness::process::{LocalProcess, free_port};

pub struct KServe {
    pub process: LocalProcess,
    /// Removes the pod mutator's registration when the manager stops (pods of InferenceServices
    /// could not be created without it).
    cluster: Cluster,
}

/// KServe's pod mutator (its `MutatingWebhookConfiguration` in config/webhook): it mounts a
/// `pvc://` storage URI's claim into the predictor pod (or adds the storage initializer for
/// other URIs). Without it, the model server starts with no model.
const POD_MUTATOR: &str = "inferenceservice.serving.kserve.io";

/// The InferenceServices of one namespace.
pub fn inference_services(
    client: &kube::Client,
    namespace: &str,
) -> kube::Api<kube::api::DynamicObject> {
    crate::harness::cluster::dynamic_api(
        client,
        namespace,
        "serving.kserve.io",
        "v1beta1",
        "InferenceService",
    )
}

/// Whether KServe reports the InferenceService Ready.
pub fn is_ready(isvc: &kube::api::DynamicObject) -> bool {
    isvc.data
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// KServe's ConfigMap, set for Standard mode without any ingress.
fn standard_mode_config(cluster: &Cluster, file: &Path) -> anyhow::Result<String> {
    let json = cluster.kubectl_ok(
        &[
            "create",
            "--dry-run=client",
            "-o",
            "json",
            "-f",
            &file.display().to_string(),
        ],
        None,
    )?;
    let mut cm: Value = serde_json::from_str(&json)?;
    let data = cm
        .get_mut("data")
        .and_then(Value::as_object_mut)
        .context("inferenceservice-config has no data")?;
    data.remove("_example");
    let mut edit = |key: &str, set: &[(&str, Value)]| -> anyhow::Result<()> {
        let text = data
            .get(key)
            .and_then(Value::as_str)
            .with_context(|| format!("inferenceservice-config has no {key}"))?;
        let mut v: Value = serde_json::from_str(text)?;
        for (k, value) in set {
            v[*k] = value.clone();
        }
        data.insert(key.into(), Value::String(v.to_string()));
        Ok(())
    };
    edit("deploy", &[("defaultDeploymentMode", "Standard".into())])?;
    edit(
        "ingress",
        &[
            ("disableIstioVirtualHost", true.into()),
            ("disableIngressCreation", true.into()),
        ],
    )?;
    Ok(cm.to_string())
}

/// KServe's CRDs (those of `config/crd/full` in its module, not the llmisvc ones, which Standard
/// mode does not use), applied server-side: the InferenceService CRD is about 1 MB, too big for
/// client-side apply. The e2e harness installs them on every control plane it uses.
pub fn install_crds(cluster: &Cluster) -> anyhow::Result<()> {
    let source = build_binaries(&["--source", "kserve"])?;
    let mut crds: Vec<PathBuf> = std::fs::read_dir(source.join("config/crd/full"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("serving.kserve.io_"))
        })
        .collect();
    crds.sort();
    let mut args = vec!["apply", "--server-side", "--force-conflicts"];
    let paths: Vec<String> = crds.iter().map(|c| c.display().to_string()).collect();
    for p in &paths {
        args.extend(["-f", p.as_str()]);
    }
    cluster.kubectl_ok(&args, None)?;
    Ok(())
}

/// The sklearn runtime's image: `kserve/sklearnserver:v<the KServe version>`.
pub fn sklearn_runtime_image() -> anyhow::Result<String> {
    let source = build_binaries(&["--source", "kserve"])?;
    let version = std::fs::read_to_string(source.join("python/VERSION"))
        .context("the KServe module's python/VERSION")?;
    Ok(format!("kserve/sklearnserver:v{}", version.trim()))
}

impl KServe {
    /// Installs KServe's configuration and sklearn runtime on `cluster` (its CRDs are there
    /// already: [`install_crds`]) and starts the manager; returns once it runs. The binary is
    /// built first when it is not cached.
    pub fn start(cluster: &Cluster) -> anyhow::Result<Self> {
        let binary = built_tool("kserve")?;
        let config = build_binaries(&["--source", "kserve"])?.join("config");
        cluster.wait_established(&[
            "inferenceservices.serving.kserve.io",
            "clusterservingruntimes.serving.kserve.io",
        ])?;
        let _ = cluster.kubectl(&["create", "namespace", "kserve"], None);
        let cm = standard_mode_config(cluster, &config.join("configmap/inferenceservice.yaml"))?;
        cluster.kubectl_ok(
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            Some(&cm),
        )?;
        // The image by the name KServe's release manifests give it (its kustomization replaces
        // the placeholder): what hack/node-images.sh builds for a real node.
        let runtime = std::fs::read_to_string(config.join("runtimes/kserve-sklearnserver.yaml"))?
            .replace("kserve-sklearnserver:replace", &sklearn_runtime_image()?);
        cluster.kubectl_ok(
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            Some(&runtime),
        )?;

        // The webhook server always starts and wants a certificate; nothing registers the
        // webhooks, so a throwaway self-signed one does.
        let dir = repo_root().join(format!(
            "target/e2e-kserve/{}-{}",
            std::process::id(),
            free_port()
        ));
        let certs = dir.join("k8s-webhook-server/serving-certs");
        std::fs::create_dir_all(&certs)?;
        let status = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=kserve-webhook",
                // The API server calls the pod mutator at 127.0.0.1.
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(certs.join("tls.key"))
            .arg("-out")
            .arg(certs.join("tls.crt"))
            .stderr(std::process::Stdio::null())
            .status()?;
        if !status.success() {
            bail!("openssl could not make the webhook certificate");
        }
        let webhook_port = free_port();
        let mut cmd = Command::new(&binary);
        cmd.args([
            "--metrics-addr=0",
            "--health-probe-addr=0",
            &format!("--webhook-port={webhook_port}"),
            "--leader-elect=false",
        ])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("POD_NAMESPACE", "kserve")
        // controller-runtime reads the webhook certificate from $TMPDIR/k8s-webhook-server.
        .env("TMPDIR", &dir);
        let mut process = LocalProcess::spawn("kserve", cmd);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !process.output().contains("Starting workers") {
            if !process.is_running() {
                bail!("the KServe manager exited: {}", process.output());
            }
            if Instant::now() > deadline {
                bail!(
                    "the KServe manager did not start its workers within 30 s: {}",
                    process.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        register_pod_mutator(cluster, webhook_port, &certs.join("tls.crt"))?;
        Ok(Self {
            process,
            cluster: cluster.clone(),
        })
    }
}

/// Registers the manager's pod mutator as KServe's install does, at the manager's webhook port
/// on this machine instead of its Service.
fn register_pod_mutator(cluster: &Cluster, port: u16, cert: &Path) -> anyhow::Result<()> {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(std::fs::read(cert)?);
    let config = serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": POD_MUTATOR},
        "webhooks": [{
            "name": "inferenceservice.kserve-webhook-server.pod-mutator",
            "clientConfig": {"url": format!("https://127.0.0.1:{port}/mutate-pods"), "caBundle": ca},
            "failurePolicy": "Fail", "sideEffects": "None", "reinvocationPolicy": "IfNeeded",
            "admissionReviewVersions": ["v1beta1"],
            "namespaceSelector": {"matchExpressions": [{"key": "control-plane", "operator": "DoesNotExist"}]},
            "objectSelector": {"matchExpressions": [{"key": "serving.kserve.io/inferenceservice", "operator": "Exists"}]},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]
        }]
    });
    cluster.kubectl_ok(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&config.to_string()),
    )?;
    Ok(())
}

impl Drop for KServe {
    fn drop(&mut self) {
        let _ = self.cluster.kubectl(
            &[
                "delete",
                "mutatingwebhookconfiguration",
                POD_MUTATOR,
                "--ignore-not-found",
                "--wait=false",
            ],
            None,
        );
    }
}
