//! The validation pod. The runner binary is copied into a shared volume by an init container
//! running our own image, so any Linux notebook image works; the notebook container runs it
//! with the run described in `NBG_RUN_SPEC` (JSON, no credentials). Git credentials are Secret
//! volumes read by the runner, never values in the pod's command, args or env. Both containers
//! meet the "restricted" Pod Security Standard.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvFromSource, EnvVar, Pod, PodSecurityContext,
    PodSpec, SeccompProfile, SecretEnvSource, SecretVolumeSource, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use nbg_core::nvj::{NotebookValidationJob, NotebookVolume};

use crate::protocol::PodRunSpec;

pub const TOOLS_DIR: &str = "/nbg/tools";
pub const WORK_DIR: &str = "/nbg/work";
pub const CREDENTIALS_DIR: &str = "/nbg/git-credentials";
pub const RUNNER_CONTAINER: &str = "notebook";
/// The init container that copies the runner into the pod.
pub const INSTALL_RUNNER_CONTAINER: &str = "install-runner";
pub const LABEL_NVJ_UID: &str = "mlops.dev/nvj-uid";
pub const LABEL_GENERATION: &str = "mlops.dev/generation";
pub const LABEL_ATTEMPT: &str = "mlops.dev/attempt";
/// Extra seconds the kubelet's `activeDeadlineSeconds` allows beyond `spec.timeout`, so the
/// runner's own deadline (which reports partial results) normally fires first.
pub const DEADLINE_GRACE_SECONDS: i64 = 60;

/// How validation pods are built: the controller's settings.
#[derive(Debug, Clone)]
pub struct PodSettings {
    /// Image holding the runner binary (normally the controller's own image).
    pub runner_image: String,
    /// Path of the runner binary inside that image.
    pub runner_path: String,
    /// The Python with papermill inside notebook images.
    pub python: String,
}

/// Deterministic pod name for one attempt of one run: a crash between creating the pod and
/// recording it cannot lead to a second pod for the same attempt.
pub fn pod_name(nvj_name: &str, generation: i64, attempt: i32) -> String {
    let suffix = format!("-v{generation}-{attempt}");
    let mut base: String = nvj_name.chars().take(63 - suffix.len()).collect();
    while base.ends_with('-') || base.ends_with('.') {
        base.pop();
    }
    format!("{base}{suffix}")
}

fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

fn user_volume(v: &NotebookVolume) -> Volume {
    Volume {
        name: v.name.clone(),
        persistent_volume_claim: v.persistent_volume_claim.clone(),
        config_map: v.config_map.clone(),
        secret: v.secret.clone(),
        empty_dir: v.empty_dir.clone(),
        ..Volume::default()
    }
}

fn credentials_volume(name: &str, secret: &str) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            // Read by the notebook container, whatever UID its image runs as (files of a Secret
            // volume belong to root). ssh accepts a key readable by others when another user
            // owns it, and only the notebook container mounts this volume.
            default_mode: Some(0o444),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

/// Why a validation pod cannot be built (the NVJ as read lacks what every stored object has).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the NVJ has no name")]
    NoName,
    #[error("the NVJ has no uid")]
    NoUid,
    #[error("cannot reference the NVJ as owner")]
    NoOwnerReference,
    #[error("cannot encode the run spec: {0}")]
    RunSpec(serde_json::Error),
}

/// The pod for `attempt` of the NVJ's current generation.
pub fn build(
    nvj: &NotebookValidationJob,
    attempt: i32,
    timeout_seconds: i64,
    settings: &PodSettings,
) -> Result<Pod, BuildError> {
    let name = nvj.metadata.name.clone().ok_or(BuildError::NoName)?;
    let uid = nvj.metadata.uid.clone().ok_or(BuildError::NoUid)?;
    let generation = nvj.metadata.generation.unwrap_or(0);
    let owner = nvj
        .controller_owner_ref(&())
        .ok_or(BuildError::NoOwnerReference)?;
    let spec = &nvj.spec;
    let pc = &spec.pod_config;
    let identity = pc.security_context.as_ref();

    let mut volumes = vec![
        Volume {
            name: "nbg-tools".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
        Volume {
            name: "nbg-work".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    let mut mounts = vec![
        mount("nbg-tools", TOOLS_DIR, true),
        mount("nbg-work", WORK_DIR, false),
    ];
    let mut run = PodRunSpec {
        notebook: spec.notebook.clone(),
        golden: spec.golden_notebook.clone(),
        comparison: spec.comparison_config.clone().unwrap_or_default(),
        validation: spec.validation_config.clone().unwrap_or_default(),
        timeout_seconds,
        notebook_credentials_dir: None,
        golden_credentials_dir: None,
        work_dir: WORK_DIR.into(),
    };
    if let Some(secret) = spec
        .notebook
        .git
        .credentials_secret
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        volumes.push(credentials_volume("nbg-git-notebook", secret));
        let dir = format!("{CREDENTIALS_DIR}/notebook");
        mounts.push(mount("nbg-git-notebook", &dir, true));
        run.notebook_credentials_dir = Some(dir);
    }
    if let Some(secret) = spec
        .golden_notebook
        .as_ref()
        .and_then(|g| g.git.credentials_secret.as_deref())
        .filter(|s| !s.is_empty())
    {
        volumes.push(credentials_volume("nbg-git-golden", secret));
        let dir = format!("{CREDENTIALS_DIR}/golden");
        mounts.push(mount("nbg-git-golden", &dir, true));
        run.golden_credentials_dir = Some(dir);
    }
    let read_only_root = identity
        .and_then(|i| i.read_only_root_filesystem)
        .unwrap_or(false);
    if read_only_root {
        volumes.push(Volume {
            name: "nbg-tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
        mounts.push(mount("nbg-tmp", "/tmp", false));
    }
    volumes.extend(pc.volumes.iter().map(user_volume));
    mounts.extend(pc.volume_mounts.iter().cloned());

    let mut env = vec![
        EnvVar {
            name: "NBG_RUN_SPEC".into(),
            value: Some(serde_json::to_string(&run).map_err(BuildError::RunSpec)?),
            ..EnvVar::default()
        },
        EnvVar {
            name: "NBG_PYTHON".into(),
            value: Some(settings.python.clone()),
            ..EnvVar::default()
        },
        // A writable home: Jupyter keeps runtime files there, and the image's user may be any UID.
        EnvVar {
            name: "HOME".into(),
            value: Some(WORK_DIR.into()),
            ..EnvVar::default()
        },
    ];
    env.extend(pc.env.iter().cloned());
    let mut env_from: Vec<EnvFromSource> = pc.env_from.clone();
    env_from.extend(pc.credentials.iter().map(|secret| EnvFromSource {
        secret_ref: Some(SecretEnvSource {
            name: secret.clone(),
            optional: Some(false),
        }),
        ..EnvFromSource::default()
    }));

    let install = Container {
        name: INSTALL_RUNNER_CONTAINER.into(),
        image: Some(settings.runner_image.clone()),
        command: Some(vec![
            settings.runner_path.clone(),
            "install-runner".into(),
            format!("{TOOLS_DIR}/nvj-validator"),
        ]),
        volume_mounts: Some(vec![mount("nbg-tools", TOOLS_DIR, false)]),
        security_context: Some(restricted()),
        ..Container::default()
    };
    let notebook = Container {
        name: RUNNER_CONTAINER.into(),
        image: Some(pc.container_image.clone()),
        command: Some(vec![
            format!("{TOOLS_DIR}/nvj-validator"),
            "pod-run".into(),
            "--termination-message-path".into(),
            "/dev/termination-log".into(),
        ]),
        working_dir: Some(WORK_DIR.into()),
        env: Some(env),
        env_from: (!env_from.is_empty()).then_some(env_from),
        volume_mounts: Some(mounts),
        resources: pc.resources.clone(),
        termination_message_path: Some("/dev/termination-log".into()),
        termination_message_policy: Some("File".into()),
        image_pull_policy: pc.image_pull_policy.map(|p| p.as_str().to_string()),
        security_context: Some(SecurityContext {
            run_as_user: identity.and_then(|i| i.run_as_user),
            run_as_group: identity.and_then(|i| i.run_as_group),
            read_only_root_filesystem: read_only_root.then_some(true),
            ..restricted()
        }),
        ..Container::default()
    };
    let labels = BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_string(),
            "nvj-validator".to_string(),
        ),
        (LABEL_NVJ_UID.to_string(), uid),
        (LABEL_GENERATION.to_string(), generation.to_string()),
        (LABEL_ATTEMPT.to_string(), attempt.to_string()),
    ]);
    let explicit_sa = pc.service_account_name.clone().filter(|s| !s.is_empty());
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(&name, generation, attempt)),
            namespace: nvj.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            active_deadline_seconds: Some(timeout_seconds + DEADLINE_GRACE_SECONDS),
            // The runner needs no API access; a notebook that does names its ServiceAccount.
            automount_service_account_token: Some(explicit_sa.is_some()),
            service_account_name: explicit_sa,
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                fs_group: identity.and_then(|i| i.fs_group),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            init_containers: Some(vec![install]),
            containers: vec![notebook],
            volumes: Some(volumes),
            tolerations: (!pc.tolerations.is_empty()).then(|| pc.tolerations.clone()),
            node_selector: pc.node_selector.clone(),
            affinity: pc.affinity.clone(),
            ..PodSpec::default()
        }),
        ..Pod::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nvj(spec: serde_json::Value) -> NotebookValidationJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob",
            "metadata": {"name": "train", "namespace": "team", "uid": "u-1", "generation": 3},
            "spec": spec
        }))
        .expect("nvj")
    }

    fn settings() -> PodSettings {
        PodSettings {
            runner_image: "runner:1".into(),
            runner_path: "/usr/local/bin/nvj-validator".into(),
            python: "python3".into(),
        }
    }

    #[test]
    fn names_are_deterministic_and_valid() {
        assert_eq!(pod_name("train", 3, 0), "train-v3-0");
        let long = pod_name(&"a".repeat(80), 12, 2);
        assert!(long.len() <= 63 && long.ends_with("-v12-2"), "{long}");
        assert_eq!(pod_name("x-.-", 1, 0), "x-v1-0");
    }

    #[test]
    fn credentials_are_never_values_in_the_pod() {
        let n = nvj(serde_json::json!({
            "notebook": {"git": {"url": "https://x/r.git", "ref": "main", "credentialsSecret": "git-creds"}, "path": "a.ipynb"},
            "goldenNotebook": {"git": {"url": "https://x/g.git", "ref": "v1", "credentialsSecret": "golden-creds"}, "path": "g/b.ipynb"},
            "podConfig": {"containerImage": "jupyter:1", "credentials": ["aws"], "env": [{"name": "A", "value": "1"}]}
        }));
        let pod = build(&n, 0, 600, &settings()).expect("pod");
        let spec = pod.spec.clone().expect("spec");
        let c = &spec.containers[0];
        let env = c.env.clone().unwrap_or_default();
        let run: PodRunSpec = serde_json::from_str(
            env.iter()
                .find(|e| e.name == "NBG_RUN_SPEC")
                .and_then(|e| e.value.as_deref())
                .expect("run spec"),
        )
        .expect("json");
        assert_eq!(
            run.notebook_credentials_dir.as_deref(),
            Some("/nbg/git-credentials/notebook")
        );
        assert_eq!(
            run.golden.as_ref().map(|g| g.path.as_str()),
            Some("g/b.ipynb"),
            "the golden notebook keeps its own path"
        );
        let secrets: Vec<_> = spec
            .volumes
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| v.secret.and_then(|s| s.secret_name))
            .collect();
        assert_eq!(secrets, vec!["git-creds", "golden-creds"]);
        assert_eq!(
            c.env_from.clone().unwrap_or_default()[0]
                .secret_ref
                .as_ref()
                .map(|s| s.name.as_str()),
            Some("aws")
        );
        assert_eq!(spec.active_deadline_seconds, Some(660));
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert_eq!(
            pod.metadata.owner_references.clone().unwrap_or_default()[0].controller,
            Some(true)
        );
    }

    #[test]
    fn the_notebook_container_runs_as_the_spec_says_and_can_read_its_credentials() {
        let pod = build(
            &nvj(serde_json::json!({
                "notebook": {"git": {"url": "https://x/r.git", "ref": "main", "credentialsSecret": "git-creds"}, "path": "a.ipynb"},
                "podConfig": {"containerImage": "jupyter:1", "imagePullPolicy": "Never",
                              "securityContext": {"runAsUser": 1000, "runAsGroup": 100, "fsGroup": 100}}
            })),
            0,
            60,
            &settings(),
        )
        .expect("pod");
        let spec = pod.spec.expect("spec");
        let c = &spec.containers[0];
        assert_eq!(c.image_pull_policy.as_deref(), Some("Never"));
        let sc = c.security_context.clone().expect("security context");
        assert_eq!((sc.run_as_user, sc.run_as_group), (Some(1000), Some(100)));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(spec.security_context.and_then(|s| s.fs_group), Some(100));
        // The runner's own image keeps its own user.
        let install = &spec.init_containers.unwrap_or_default()[0];
        assert_eq!(
            install
                .security_context
                .as_ref()
                .and_then(|s| s.run_as_user),
            None
        );
        // Secret volumes belong to root: the notebook's UID, whatever it is, must read them.
        let mode = spec
            .volumes
            .unwrap_or_default()
            .into_iter()
            .find_map(|v| v.secret.and_then(|s| s.default_mode));
        assert_eq!(mode, Some(0o444));
    }

    #[test]
    fn containers_meet_the_restricted_standard() {
        let pod = build(
            &nvj(serde_json::json!({
                "notebook": {"git": {"url": "https://x/r.git", "ref": "main"}, "path": "a.ipynb"},
                "podConfig": {"containerImage": "jupyter:1"}
            })),
            1,
            60,
            &settings(),
        )
        .expect("pod");
        let spec = pod.spec.expect("spec");
        assert_eq!(
            spec.security_context.and_then(|s| s.run_as_non_root),
            Some(true)
        );
        for c in spec
            .init_containers
            .unwrap_or_default()
            .iter()
            .chain(spec.containers.iter())
        {
            let sc = c.security_context.clone().expect("security context");
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
            assert_eq!(
                sc.capabilities.and_then(|c| c.drop),
                Some(vec!["ALL".to_string()]),
                "{}",
                c.name
            );
            assert_eq!(
                sc.seccomp_profile.map(|s| s.type_),
                Some("RuntimeDefault".to_string()),
                "{}",
                c.name
            );
        }
    }
}
