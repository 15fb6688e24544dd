//! A control plane of a test's own with a real node (`hack/local-cluster.sh` with
//! `NBG_NODE=real`, see `hack/local-node.sh`): pods run in containers under containerd and runc,
//! from the images built here - the controllers' (`hack/images.sh`) and the node's pause and
//! notebook-runner images (`hack/node-images.sh`) - imported into the node, never pulled.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{Api, PostParams};

use crate::Cluster;
use crate::harness::cluster::repo_root;
use crate::harness::control_plane::PrivateControlPlane;
use crate::harness::process::as_from_a_shell;

pub struct RealNode {
    pub plane: PrivateControlPlane,
    /// The host end of the node's link: what pods reach the host at (the API server, a test's
    /// git server).
    pub host_ip: Ipv4Addr,
    /// nvj-validator's image (the runner validation pods copy in).
    pub validator_image: String,
    /// Debian with python3, git, papermill and a Jupyter kernel, as uid 1000.
    pub notebook_image: String,
    /// Images whose user is root, and a name (not a UID): what the kubelet's non-root check
    /// refuses.
    pub root_user_image: String,
    pub named_user_image: String,
}

/// The node's name (hack/local-node.sh's default).
pub const NODE_NAME: &str = "nbg-node";

/// The project's version: the images' tag.
const VERSION: &str = env!("CARGO_PKG_VERSION");

impl RealNode {
    /// Builds what is missing of the images, and starts the plane and its node under
    /// `target/<name>`, with the controllers' images and hack/node-images.sh's
    /// (`notebook-runner`, `kserve-sklearnserver`, `test-user-root`, ...) on the node.
    pub fn start(name: &str) -> anyhow::Result<Self> {
        Self::start_with_args(name, &[])
    }

    /// [`RealNode::start`] with `apiserver_args` added to kube-apiserver's.
    pub fn start_with_args(name: &str, apiserver_args: &[&str]) -> anyhow::Result<Self> {
        let root = repo_root();
        let images_dir = root.join("target/images");
        let mut images = Command::new(root.join("hack/images.sh"));
        as_from_a_shell(&mut images);
        let status = images
            .arg(&images_dir)
            .status()
            .context("running hack/images.sh")?;
        if !status.success() {
            bail!("hack/images.sh failed");
        }
        let out = Command::new(root.join("hack/node-images.sh"))
            .output()
            .context("running hack/node-images.sh")?;
        if !out.status.success() {
            bail!(
                "hack/node-images.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let listed = String::from_utf8_lossy(&out.stdout).into_owned();
        let image = |name: &str| -> anyhow::Result<String> {
            listed
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_string)
                .with_context(|| format!("hack/node-images.sh names no {name} image"))
        };
        let notebook_image = image("notebook-runner")?;
        let root_user_image = image("test-user-root")?;
        let named_user_image = image("test-user-named-user")?;
        let images = images_dir.display().to_string();
        let plane = PrivateControlPlane::start_with_env(
            name,
            apiserver_args,
            &[("NBG_NODE", "real"), ("NBG_NODE_IMAGE_DIR", &images)],
        )?;
        let id = std::fs::read_to_string(plane.dir().join("node/id"))
            .context("the node's number (node/id)")?;
        let k: u8 = id.trim().parse().context("node/id is a number")?;
        Ok(Self {
            plane,
            host_ip: Ipv4Addr::new(10, 201, k, 1),
            validator_image: project_image("nvj-validator"),
            notebook_image,
            root_user_image,
            named_user_image,
        })
    }

    /// nvj-validator's arguments for this node's images: the runner from nvj-validator's image,
    /// the notebook environment of the notebook-runner image.
    pub fn validator_args(&self) -> Vec<String> {
        [
            "--runner-image",
            &self.validator_image,
            "--runner-path",
            "/usr/local/bin/nvj-validator",
            "--notebook-python",
            "/opt/notebook/bin/python",
        ]
        .map(String::from)
        .into()
    }

    /// A Service `name` in `ns` for a server on the host: [`service_to_host`].
    pub async fn service_to_host(
        &self,
        client: &Client,
        ns: &str,
        name: &str,
        port: u16,
    ) -> anyhow::Result<String> {
        service_to_host(client, self.host_ip, ns, name, port).await
    }

    /// A PersistentVolumeClaim `claim` in `ns` bound to a `local` PersistentVolume on the node
    /// ([`local_persistent_volume`]): returns the volume's directory on this machine.
    pub async fn local_volume(
        &self,
        client: &Client,
        ns: &str,
        claim: &str,
    ) -> anyhow::Result<std::path::PathBuf> {
        let name = format!("{ns}-{claim}");
        let dir = self.plane.dir().join("volumes").join(&name);
        // Empty, as a new volume is: the plane's directory outlives a run, and with it what an
        // earlier run of the test wrote there.
        let _ = std::fs::remove_dir_all(&dir);
        let dir = local_persistent_volume(client, &name, "1Gi", &dir, ns, claim).await?;
        let pvc: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
            "metadata": {"name": claim},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": name,
                     "resources": {"requests": {"storage": "1Gi"}}}
        }))?;
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &pvc)
            .await
            .with_context(|| format!("creating PersistentVolumeClaim {ns}/{claim}"))?;
        Ok(dir)
    }
}

/// The host end of the node's link of the control plane `cluster` is (its `node/id` beside its
/// kubeconfig): where pods reach servers on this machine.
pub fn host_ip_of(cluster: &Cluster) -> anyhow::Result<Ipv4Addr> {
    let dir = cluster
        .kubeconfig
        .parent()
        .context("the kubeconfig's directory")?;
    let id = std::fs::read_to_string(dir.join("node/id")).with_context(|| {
        format!(
            "the control plane in {} has no real node (start it with NBG_NODE=real)",
            dir.display()
        )
    })?;
    let k: u8 = id.trim().parse().context("node/id is a number")?;
    Ok(Ipv4Addr::new(10, 201, k, 1))
}

/// One of the project's images (`hack/images.sh`, `hack/node-images.sh`) by the project's
/// version, as the node has it.
pub fn project_image(name: &str) -> String {
    format!("ghcr.io/notebook-gitops/{name}:{VERSION}")
}

/// The pod sandbox image, on every node (`imagePullPolicy: Never`): a container that runs
/// until it is stopped, for workloads whose pods only need to run and turn Ready.
pub fn pause_image() -> String {
    project_image("pause")
}

/// A Service `name` in `ns` (port 80) for a server on this machine at `host_ip:port`: what an
/// in-cluster server (a Gitea, a model store) is to pods. Returns its cluster DNS name, which
/// pods resolve through the node's CoreDNS and reach through kube-proxy, as on any cluster.
pub async fn service_to_host(
    client: &Client,
    host_ip: Ipv4Addr,
    ns: &str,
    name: &str,
    port: u16,
) -> anyhow::Result<String> {
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": port}]}
    }))?;
    Api::<Service>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &service)
        .await
        .with_context(|| format!("creating Service {ns}/{name}"))?;
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("{name}-host"), "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [host_ip.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}]
    }))?;
    Api::<EndpointSlice>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &slice)
        .await
        .with_context(|| format!("creating the EndpointSlice of Service {ns}/{name}"))?;
    Ok(format!("{name}.{ns}.svc.cluster.local"))
}

/// A `local` PersistentVolume `name` of `capacity` on the node at `dir` (created), bound ahead
/// to the claim
/// `claim_ns/claim`, which must ask for no more (what a cluster's local-volume provisioner makes). A `local` volume, unlike
/// `hostPath`, gets the pod's `fsGroup`: the kubelet gives the directory that group, so a
/// non-root notebook or model server can write it. Returns the directory.
pub async fn local_persistent_volume(
    client: &Client,
    name: &str,
    capacity: &str,
    dir: &std::path::Path,
    claim_ns: &str,
    claim: &str,
) -> anyhow::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    // The API server refuses a path with `..`.
    let dir = dir.canonicalize()?;
    let pv: PersistentVolume = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": capacity}, "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
            "claimRef": {"namespace": claim_ns, "name": claim},
            "local": {"path": dir.display().to_string()},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE_NAME]}]}]}}
        }
    }))?;
    Api::<PersistentVolume>::all(client.clone())
        .create(&PostParams::default(), &pv)
        .await
        .with_context(|| format!("creating PersistentVolume {name}"))?;
    Ok(dir)
}
