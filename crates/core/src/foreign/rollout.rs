use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Argo Rollouts `argoproj.io/v1alpha1` `Rollout`: the fields trigger-controller reads to tell
/// whether a restart (`spec.restartAt`) has rolled out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: RolloutSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RolloutStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// Argo Rollouts writes it as a string; older versions as a number.
    #[serde(default, deserialize_with = "string_or_int")]
    pub observed_generation: Option<i64>,
    /// `Healthy`, `Progressing`, `Paused` or `Degraded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<RolloutCondition>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn string_or_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!("observedGeneration {n} is not an integer"))
        }),
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!("observedGeneration {s:?} is not an integer"))
        }),
        Some(other) => Err(serde::de::Error::custom(format!(
            "observedGeneration {other} is neither a number nor a string"
        ))),
    }
}

impl Rollout {
    /// Whether the status describes the current generation.
    pub fn observed(&self) -> bool {
        let generation = self.metadata.generation;
        generation.is_some()
            && self.status.as_ref().and_then(|s| s.observed_generation) >= generation
    }

    pub fn phase(&self) -> Option<&str> {
        self.status.as_ref()?.phase.as_deref()
    }

    /// Argo Rollouts reports the progress deadline passed as a Deployment does.
    pub fn deadline_exceeded(&self) -> Option<&RolloutCondition> {
        self.status.as_ref()?.conditions.iter().find(|c| {
            c.type_ == "Progressing"
                && c.status == "False"
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        })
    }

    /// Whether the restart requested in `spec.restartAt` is done and the Rollout Healthy.
    pub fn restart_complete(&self) -> bool {
        let status = self.status.as_ref();
        self.spec.restart_at.is_some()
            && status.and_then(|s| s.restarted_at.as_ref()) == self.spec.restart_at.as_ref()
            && self.phase() == Some("Healthy")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observed_generation_as_string_or_number_and_a_clear_error_otherwise() {
        let read = |g: Value| {
            serde_json::from_value::<Rollout>(serde_json::json!({
                "metadata": {"generation": 5}, "status": {"observedGeneration": g, "phase": "Healthy"}
            }))
        };
        assert!(read(serde_json::json!("5")).expect("string").observed());
        assert!(read(serde_json::json!(5)).expect("number").observed());
        assert!(!read(serde_json::json!("4")).expect("older").observed());
        let err = read(serde_json::json!("five")).expect_err("garbage");
        assert!(
            err.to_string().contains("\"five\" is not an integer"),
            "{err}"
        );
    }
}
