use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::NamespaceResourceScope;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// KServe `serving.kserve.io/v1beta1` `InferenceService`: the fields trigger-controller reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InferenceService {
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The spec is opaque to us: we never write it whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<InferenceServiceStatus>,
}

impl kube::Resource for InferenceService {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        "InferenceService".into()
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        "serving.kserve.io".into()
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        "v1beta1".into()
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        "inferenceservices".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// A Knative-style condition as KServe reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KnativeCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceServiceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<KnativeCondition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Per component (`predictor`, `transformer`, ...) revision status, kept opaque.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_status: Option<ModelStatus>,
    /// `Standard` (formerly `RawDeployment`): KServe runs the predictor as a Deployment;
    /// `Serverless`: as Knative revisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_mode: Option<String>,
}

/// The predictor's model status: whether the current spec's model has loaded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelStatus {
    /// `UpToDate`, `InProgress`, `BlockedByFailedLoad` or `InvalidSpec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition_status: Option<String>,
    /// `{reason, message, ...}` of the last failure, kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_info: Option<Value>,
}

/// KServe's annotation choosing the deployment mode of one InferenceService.
pub const DEPLOYMENT_MODE_ANNOTATION: &str = "serving.kserve.io/deploymentMode";

/// Our restart marker on an InferenceService (`mlops.dev/restarted-at: "<run> <time>"`), which
/// KServe copies, with the InferenceService's other annotations, into the predictor's pod template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartMarker<'a> {
    pub run: &'a str,
    pub time: &'a str,
    /// The annotation's whole value.
    pub value: &'a str,
}

impl<'a> RestartMarker<'a> {
    pub fn parse(value: &'a str) -> Self {
        let (run, time) = value.split_once(' ').unwrap_or((value, ""));
        Self { run, time, value }
    }
}

/// The Deployment KServe runs the predictor of InferenceService `isvc` as, in Standard mode.
pub fn predictor_deployment(isvc: &str) -> String {
    format!("{isvc}-predictor")
}

impl InferenceService {
    /// Whether KServe runs this InferenceService's predictor as a plain Deployment (Standard,
    /// formerly RawDeployment), as its status (or, before KServe wrote one, its annotation) says.
    pub fn standard_mode(&self) -> bool {
        let mode = self
            .status
            .as_ref()
            .and_then(|s| s.deployment_mode.as_deref())
            .or_else(|| {
                self.metadata
                    .annotations
                    .as_ref()?
                    .get(DEPLOYMENT_MODE_ANNOTATION)
                    .map(String::as_str)
            });
        matches!(mode, Some("Standard" | "RawDeployment"))
    }

    /// The Deployment KServe runs the predictor as, in Standard mode.
    pub fn predictor_deployment_name(&self) -> String {
        format!(
            "{}-predictor",
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }

    /// The restart marker on the InferenceService, if any.
    pub fn restart_marker(&self) -> Option<RestartMarker<'_>> {
        self.metadata
            .annotations
            .as_ref()?
            .get(crate::annotations::RESTARTED_AT)
            .map(|v| RestartMarker::parse(v))
    }

    /// KServe's `Ready` condition is True.
    pub fn ready(&self) -> bool {
        self.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
    }

    /// True when KServe has observed the current generation, reports Ready, and every
    /// component's latest created revision is also its latest ready revision: the rollout of
    /// the last change is complete.
    pub fn rollout_complete(&self) -> bool {
        let Some(status) = &self.status else {
            return false;
        };
        let observed = match (status.observed_generation, self.metadata.generation) {
            (Some(o), Some(g)) => o >= g,
            _ => false,
        };
        let ready = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let revisions_settled = status.components.values().all(|c| {
            let created = c.get("latestCreatedRevision").and_then(Value::as_str);
            let ready = c.get("latestReadyRevision").and_then(Value::as_str);
            created.is_none() || created == ready
        });
        // In serverless mode the restart creates a new predictor revision: until it exists the
        // old, settled revision says nothing about the restart.
        let from = self
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::annotations::RESTARTED_FROM_REVISION));
        let new_revision = from.is_none_or(|from| self.predictor_revision() != Some(from.as_str()));
        observed && ready && revisions_settled && new_revision
    }

    /// Why the rollout cannot complete without someone acting, when KServe says so: the new
    /// model failed to load or the spec is invalid.
    pub fn rollout_blocked(&self) -> Option<String> {
        let model = self.status.as_ref()?.model_status.as_ref()?;
        let transition = model.transition_status.as_deref()?;
        if !matches!(transition, "BlockedByFailedLoad" | "InvalidSpec") {
            return None;
        }
        let failure = model.last_failure_info.as_ref();
        let field = |k: &str| failure.and_then(|f| f.get(k)).and_then(Value::as_str);
        Some(match (field("reason"), field("message")) {
            (Some(reason), Some(message)) => {
                format!("KServe reports {transition}: {reason}: {message}")
            }
            (Some(reason), None) => format!("KServe reports {transition}: {reason}"),
            (None, Some(message)) => format!("KServe reports {transition}: {message}"),
            (None, None) => format!("KServe reports {transition}"),
        })
    }

    /// The predictor's latest created revision (serverless mode; None in raw deployment mode).
    pub fn predictor_revision(&self) -> Option<&str> {
        self.status
            .as_ref()?
            .components
            .get("predictor")?
            .get("latestCreatedRevision")?
            .as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerates_unknown_fields_and_reads_rollout_state() {
        let isvc: InferenceService = serde_json::from_value(serde_json::json!({
            "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "m", "generation": 2},
            "spec": {"predictor": {"sklearn": {"storageUri": "pvc://x"}}, "futureField": true},
            "status": {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True", "severity": "Info"}],
                       "components": {"predictor": {"latestCreatedRevision": "m-2", "latestReadyRevision": "m-1"}},
                       "modelStatus": {"states": {}}}
        }))
        .expect("parses");
        assert!(!isvc.rollout_complete(), "revision m-2 not ready yet");
        let mut done = isvc.clone();
        if let Some(s) = done.status.as_mut() {
            s.components.insert(
                "predictor".into(),
                serde_json::json!({"latestCreatedRevision": "m-2", "latestReadyRevision": "m-2"}),
            );
        }
        assert!(done.rollout_complete());
        // Restarted from m-2: the settled m-2 is the old revision, not the restart's.
        done.metadata.annotations = Some(
            [(
                crate::annotations::RESTARTED_FROM_REVISION.to_string(),
                "m-2".to_string(),
            )]
            .into(),
        );
        assert!(
            !done.rollout_complete(),
            "the restart's revision does not exist yet"
        );
        if let Some(s) = done.status.as_mut() {
            s.components.insert(
                "predictor".into(),
                serde_json::json!({"latestCreatedRevision": "m-3", "latestReadyRevision": "m-3"}),
            );
        }
        assert!(done.rollout_complete());
    }

    #[test]
    fn a_model_that_failed_to_load_blocks_the_rollout() {
        let isvc: InferenceService = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "m", "generation": 2},
            "status": {"observedGeneration": 2, "modelStatus": {"transitionStatus": "BlockedByFailedLoad",
                "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "no model.joblib in /mnt/models"}}}
        }))
        .expect("parses");
        assert_eq!(
            isvc.rollout_blocked().as_deref(),
            Some(
                "KServe reports BlockedByFailedLoad: ModelLoadFailed: no model.joblib in /mnt/models"
            )
        );
        let loading: InferenceService = serde_json::from_value(serde_json::json!({
            "status": {"modelStatus": {"transitionStatus": "InProgress"}}
        }))
        .expect("parses");
        assert_eq!(loading.rollout_blocked(), None);
    }
}
