//! What a validation pod's status says about its containers, as a real kubelet reports it: a
//! container that cannot start (image pulls, configuration errors, a user the pod's security
//! context refuses) and why a pod ended before its notebook ran. Pure functions of the pod.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};

use super::pod;

/// A container of the pod the kubelet cannot start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CannotStart {
    pub container: String,
    /// The kubelet's waiting reason (`ErrImagePull`, `CreateContainerConfigError`, ...).
    pub reason: String,
    pub message: String,
    /// Only a change of the NVJ's spec (or of the controller's settings) can fix it: a new pod
    /// of the same spec would wait for the same reason.
    pub permanent: bool,
    /// What to change, for the operator reading the status.
    pub hint: &'static str,
}

impl CannotStart {
    pub fn describe(&self) -> String {
        let message = if self.message.is_empty() {
            String::new()
        } else {
            format!(": {}", last_lines(&self.message))
        };
        format!(
            "container {} cannot start: {}{message}{}",
            self.container, self.reason, self.hint
        )
    }
}

/// Waiting reasons of a container that cannot start; everything else (`ContainerCreating`,
/// `PodInitializing`) is a container on its way.
const CANNOT_START: [&str; 7] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// The first container, init containers first, that is waiting for a reason it will not get
/// past by itself. Containers that are running or finished (a completed init container) are
/// passed over: the notebook container waits behind them.
pub fn cannot_start(p: &Pod) -> Option<CannotStart> {
    let status = p.status.as_ref()?;
    let statuses = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    statuses.filter_map(waiting_on).next()
}

fn waiting_on(cs: &ContainerStatus) -> Option<CannotStart> {
    let waiting = cs.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting.reason.clone().unwrap_or_default();
    if !CANNOT_START.contains(&reason.as_str()) {
        return None;
    }
    let message = waiting.message.clone().unwrap_or_default();
    // The kubelet's runAsNonRoot check: "container has runAsNonRoot and image will run as
    // root" or "... image has non-numeric user (name), cannot verify user is non-root".
    let refused_user = reason == "CreateContainerConfigError" && message.contains("runAsNonRoot");
    let runner = cs.name == pod::INSTALL_RUNNER_CONTAINER;
    let hint = if runner {
        " - the runner image could not be used: check nvj-validator's --runner-image"
    } else if refused_user {
        " - the image runs as root or names its user by name: set spec.podConfig.securityContext.runAsUser to a non-zero UID the image can run as"
    } else {
        match reason.as_str() {
            "ErrImageNeverPull" => {
                " - the image is not on the node and spec.podConfig.imagePullPolicy is Never: load it onto the node or change the policy"
            }
            "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" => {
                " - check spec.podConfig.containerImage, and the registry credentials (imagePullSecrets of the pod's ServiceAccount)"
            }
            _ if message.contains("not found") => {
                " - create what it names, or correct spec.podConfig (credentials, envFrom, volumes) or spec.notebook.git.credentialsSecret"
            }
            _ => "",
        }
    };
    Some(CannotStart {
        container: cs.name.clone(),
        permanent: refused_user
            || matches!(reason.as_str(), "ErrImageNeverPull" | "InvalidImageName"),
        reason,
        message,
        hint,
    })
}

/// Why the scheduler cannot place the pod (its `PodScheduled` condition, reason
/// `Unschedulable`): no node fits its requests, a volume's claim cannot bind, a node selector
/// matches nothing. It may pass (a claim binds, a node is added), so the run keeps waiting.
pub fn unschedulable(p: &Pod) -> Option<String> {
    let conditions = p.status.as_ref()?.conditions.as_ref()?;
    let scheduled = conditions.iter().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    })?;
    let message = scheduled.message.as_deref().unwrap_or("no node fits it");
    Some(format!(
        "the validation pod cannot be scheduled: {} - check spec.podConfig.resources against the nodes' capacity, that the PersistentVolumeClaims of spec.podConfig.volumes can bind, and the pod's node selection",
        last_lines(message)
    ))
}

/// Why a pod ended before its notebook container ran, as the kubelet reports it: the first
/// container (init containers first) that failed or could not start, with its exit code or
/// waiting reason and the last lines of its termination message.
pub fn never_ran(status: &PodStatus) -> Option<String> {
    let inits = status.init_container_statuses.iter().flatten();
    let mains = status.container_statuses.iter().flatten();
    let containers = inits
        .map(|c| ("init container", c))
        .chain(mains.map(|c| ("container", c)));
    for (what, cs) in containers {
        let Some(state) = cs.state.as_ref() else {
            continue;
        };
        let image = if cs.image.is_empty() {
            String::new()
        } else {
            format!(" (image {})", cs.image)
        };
        let cause = if let Some(t) = state.terminated.as_ref().filter(|t| t.exit_code != 0) {
            let reason = t.reason.as_deref().unwrap_or("Error");
            let tail = last_lines(t.message.as_deref().unwrap_or_default());
            let tail = if tail.is_empty() {
                String::new()
            } else {
                format!(": {tail}")
            };
            format!("exited with code {} ({reason}){tail}", t.exit_code)
        } else if let Some(w) = state.waiting.as_ref() {
            let reason = w.reason.as_deref().unwrap_or_default();
            if matches!(reason, "" | "PodInitializing" | "ContainerCreating") {
                continue;
            }
            match w.message.as_deref().filter(|m| !m.is_empty()) {
                Some(m) => format!("could not start: {reason}: {}", last_lines(m)),
                None => format!("could not start: {reason}"),
            }
        } else {
            continue;
        };
        let hint = if cs.name == pod::INSTALL_RUNNER_CONTAINER {
            " - the runner could not be installed: check nvj-validator's --runner-image and --runner-path"
        } else {
            ""
        };
        return Some(format!(
            "the validation pod ended before the notebook ran: {what} {}{image} {cause}{hint}",
            cs.name
        ));
    }
    None
}

/// The last lines of a termination message (at most 5 lines, 500 characters).
pub fn last_lines(message: &str) -> String {
    let lines: Vec<&str> = message.trim().lines().collect();
    let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
    match tail.char_indices().rev().nth(499) {
        Some((i, _)) => format!("...{}", &tail[i..]),
        None => tail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "train-v1-0"}, "status": status}))
            .expect("pod")
    }

    /// As a real kubelet reports it: the init container finished, the notebook container waits.
    fn behind_finished_init(reason: &str, message: &str) -> Pod {
        pod(json!({"phase": "Pending",
            "initContainerStatuses": [{"name": "install-runner", "image": "runner", "imageID": "", "ready": true, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
            "containerStatuses": [{"name": "notebook", "image": "nb:1", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": reason, "message": message}}}]}))
    }

    #[test]
    fn a_notebook_container_waiting_behind_a_finished_init_container_is_seen() {
        let c = cannot_start(&behind_finished_init(
            "ErrImageNeverPull",
            "Container image \"nb:1\" is not present with pull policy of Never",
        ))
        .expect("the waiting notebook container");
        assert_eq!(c.container, "notebook");
        assert!(c.permanent);
        assert!(
            c.describe().starts_with("container notebook cannot start: ErrImageNeverPull: Container image \"nb:1\" is not present"),
            "{}",
            c.describe()
        );
        assert!(c.describe().contains("imagePullPolicy"), "{}", c.describe());

        let pulling = cannot_start(&behind_finished_init(
            "ImagePullBackOff",
            "Back-off pulling image \"nb:1\"",
        ))
        .expect("pull back-off");
        assert!(!pulling.permanent, "a registry may come back");
        assert!(pulling.describe().contains("containerImage"));
    }

    #[test]
    fn an_image_the_security_context_refuses_names_run_as_user() {
        for message in [
            "container has runAsNonRoot and image will run as root (pod: \"team/train-v1-0\", container: notebook)",
            "container has runAsNonRoot and image has non-numeric user (jovyan), cannot verify user is non-root (pod: \"team/train-v1-0\", container: notebook)",
        ] {
            let c = cannot_start(&behind_finished_init("CreateContainerConfigError", message))
                .expect("refused");
            assert!(c.permanent, "{message}");
            assert!(
                c.describe()
                    .contains("spec.podConfig.securityContext.runAsUser"),
                "{}",
                c.describe()
            );
        }
        let secret = cannot_start(&behind_finished_init(
            "CreateContainerConfigError",
            "secret \"aws\" not found",
        ))
        .expect("missing secret");
        assert!(!secret.permanent, "the Secret may be created");
        assert!(
            secret.describe().contains("create what it names"),
            "{}",
            secret.describe()
        );
    }

    #[test]
    fn containers_on_their_way_are_not_stuck() {
        assert_eq!(
            cannot_start(&behind_finished_init("ContainerCreating", "")),
            None
        );
        assert_eq!(
            cannot_start(&behind_finished_init("PodInitializing", "")),
            None
        );
        let running = pod(
            json!({"phase": "Running", "containerStatuses": [{"name": "notebook", "image": "nb", "imageID": "",
            "ready": true, "restartCount": 0, "state": {"running": {}}}]}),
        );
        assert_eq!(cannot_start(&running), None);
        assert_eq!(cannot_start(&pod(json!({"phase": "Pending"}))), None);
    }

    #[test]
    fn a_runner_image_that_cannot_be_pulled_names_the_controller_setting() {
        let p = pod(json!({"phase": "Pending",
            "initContainerStatuses": [{"name": "install-runner", "image": "runner", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}}}]}));
        let c = cannot_start(&p).expect("runner");
        assert!(c.describe().contains("--runner-image"), "{}", c.describe());
    }

    #[test]
    fn a_pod_that_ended_before_the_notebook_ran_names_the_container_and_cause() {
        let status: k8s_openapi::api::core::v1::PodStatus = serde_json::from_value(json!({
            "phase": "Failed",
            "initContainerStatuses": [{"name": "install-runner", "image": "local/nvj-validator:demo", "ready": false, "restartCount": 0, "imageID": "",
                "state": {"terminated": {"exitCode": 128, "reason": "StartError",
                    "message": "exec: \"/no/such/nvj-validator\": No such file or directory (os error 2)"}}}],
            "containerStatuses": [{"name": "notebook", "image": "nb", "ready": false, "restartCount": 0, "imageID": "",
                "state": {"waiting": {"reason": "PodInitializing"}}}]
        }))
        .expect("pod status");
        let why = never_ran(&status).expect("a cause");
        assert!(why.contains("init container install-runner (image local/nvj-validator:demo) exited with code 128 (StartError)"), "{why}");
        assert!(why.contains("/no/such/nvj-validator"), "{why}");
        assert!(why.contains("--runner-path"), "{why}");

        let pull: k8s_openapi::api::core::v1::PodStatus = serde_json::from_value(json!({
            "phase": "Failed",
            "containerStatuses": [{"name": "notebook", "image": "nb:1", "ready": false, "restartCount": 0, "imageID": "",
                "state": {"waiting": {"reason": "CreateContainerConfigError", "message": "secret \"git\" not found"}}}]
        }))
        .expect("pod status");
        assert_eq!(
            never_ran(&pull).as_deref(),
            Some(
                "the validation pod ended before the notebook ran: container notebook (image nb:1) could not start: CreateContainerConfigError: secret \"git\" not found"
            )
        );
        let long = (0..100)
            .map(|i| format!("line {i}"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            last_lines(&long),
            "line 95 | line 96 | line 97 | line 98 | line 99"
        );
        assert!(last_lines(&"x".repeat(2000)).len() <= 503);
        let nothing: k8s_openapi::api::core::v1::PodStatus = Default::default();
        assert_eq!(never_ran(&nothing), None);
    }
}
