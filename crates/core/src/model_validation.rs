//! `spec.modelValidation`: which served models are checked once a restart has rolled out, with
//! what, and the result in the Go operator's `status.modelValidationResult` shape (pure).
//!
//! trigger-controller runs the check (docs/trigger-controller.md, "Checking the served model");
//! nvj-validator refuses a spec whose check cannot run before the notebook does, with the same
//! reading, so a run never succeeds into a check that was never possible.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::nvj::{ModelPlatform, ModelValidation, ModelValidationPhase};

/// How long the new predictor has to answer, unless `modelValidation.timeout` says (the Go
/// operator's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// The largest difference between a number predicted and expected that still matches, unless
/// `predictionValidation.tolerance` says (the Go operator's default).
pub const DEFAULT_TOLERANCE: f64 = 0.01;

/// Why `spec.modelValidation` cannot be checked; the message names the field and what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelValidationError {
    #[error(
        "spec.modelValidation.platform: {0} is not supported: the check speaks KServe's V1 and V2 inference protocols to InferenceServices; use kserve (or openshift-ai, which serves with KServe)"
    )]
    Platform(String),
    #[error(
        "spec.modelValidation.customPlatform: custom platforms are not supported; remove it and name KServe InferenceServices in targetModels"
    )]
    CustomPlatform,
    #[error(
        "spec.modelValidation.phase: clean (the Go operator's check that the platform is installed, before the run) is what trigger-controller does before every restart - a kind the cluster does not serve fails its trigger; use existing or both to check the served models"
    )]
    CleanPhase,
    #[error(
        "spec.modelValidation.targetModels: empty; name the InferenceServices (name, or namespace/name) whose served model is checked after this NVJ restarts them"
    )]
    NoTargets,
    #[error(
        "spec.modelValidation.targetModels[{index}]: {value:?} is not an InferenceService name or namespace/name"
    )]
    TargetName { index: usize, value: String },
    #[error("spec.modelValidation.timeout: {0}")]
    Timeout(String),
    #[error("spec.modelValidation.predictionValidation.{field}: {why}")]
    Prediction { field: &'static str, why: String },
}

/// What to check on the served models, read from `spec.modelValidation`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelChecks {
    /// `(namespace, name)` of each InferenceService checked once its restart has rolled out.
    pub models: Vec<(String, String)>,
    pub phase: ModelValidationPhase,
    pub platform: ModelPlatform,
    /// What the model must answer; `None`: it must only report itself ready.
    pub prediction: Option<Prediction>,
    /// From the rollout's completion: how long the new predictor has to answer.
    pub timeout: Duration,
}

/// `predictionValidation`: the request and the answer expected.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// `testData`: the instances (a JSON array: V1's `instances`, V2's input tensor), or a whole
    /// request body (an object with `instances` or `inputs`) sent as it is.
    pub test_data: Value,
    /// `expectedOutput`: the predictions (V1's `predictions`, V2's first output's data).
    pub expected: Value,
    pub tolerance: f64,
}

impl ModelChecks {
    /// Whether the InferenceService `namespace/name` is one of the models checked.
    pub fn covers(&self, namespace: &str, name: &str) -> bool {
        self.models
            .iter()
            .any(|(ns, n)| ns == namespace && n == name)
    }
}

/// A DNS-1123 label, as InferenceService names and namespaces are.
fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Reads `spec.modelValidation` of an NVJ in `nvj_namespace` (the namespace of a target model
/// named without one): `None` when there is none or it is disabled.
pub fn checks(
    nvj_namespace: &str,
    spec: Option<&ModelValidation>,
) -> Result<Option<ModelChecks>, ModelValidationError> {
    let Some(spec) = spec.filter(|m| m.enabled != Some(false)) else {
        return Ok(None);
    };
    let platform = spec.platform.unwrap_or(ModelPlatform::Kserve);
    if !matches!(platform, ModelPlatform::Kserve | ModelPlatform::OpenshiftAi) {
        let name = serde_json::to_value(platform)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        return Err(ModelValidationError::Platform(name));
    }
    if spec.custom_platform.is_some() {
        return Err(ModelValidationError::CustomPlatform);
    }
    let phase = spec.phase.unwrap_or(ModelValidationPhase::Both);
    if phase == ModelValidationPhase::Clean {
        return Err(ModelValidationError::CleanPhase);
    }
    if spec.target_models.is_empty() {
        return Err(ModelValidationError::NoTargets);
    }
    let mut models = Vec::new();
    for (index, value) in spec.target_models.iter().enumerate() {
        let (ns, name) = match value.split_once('/') {
            Some((ns, name)) => (Some(ns), name),
            None => (None, value.as_str()),
        };
        if !ns.is_none_or(dns_label) || !dns_label(name) {
            return Err(ModelValidationError::TargetName {
                index,
                value: value.clone(),
            });
        }
        models.push((ns.unwrap_or(nvj_namespace).to_string(), name.to_string()));
    }
    let timeout = match &spec.timeout {
        None => DEFAULT_TIMEOUT,
        Some(t) => crate::duration::parse_go_duration(t)
            .map_err(|e| ModelValidationError::Timeout(e.to_string()))?,
    };
    if timeout.is_zero() {
        return Err(ModelValidationError::Timeout(
            "must be longer than zero".into(),
        ));
    }
    let prediction = match &spec.prediction_validation {
        Some(p) if p.enabled != Some(false) => Some(prediction(p)?),
        _ => None,
    };
    Ok(Some(ModelChecks {
        models,
        phase,
        platform,
        prediction,
        timeout,
    }))
}

fn prediction(p: &crate::nvj::PredictionValidation) -> Result<Prediction, ModelValidationError> {
    let bad = |field, why: String| ModelValidationError::Prediction { field, why };
    let json = |field, text: Option<&String>| -> Result<Value, ModelValidationError> {
        let text = text.ok_or_else(|| {
            bad(
                field,
                "missing; a prediction check needs testData and expectedOutput (JSON)".into(),
            )
        })?;
        serde_json::from_str(text).map_err(|e| bad(field, format!("not JSON: {e}")))
    };
    let test_data = json("testData", p.test_data.as_ref())?;
    let whole_body = test_data
        .as_object()
        .is_some_and(|o| o.contains_key("instances") || o.contains_key("inputs"));
    if !test_data.is_array() && !whole_body {
        return Err(bad(
            "testData",
            "must be a JSON array of instances (e.g. [[5.1, 3.5, 1.4, 0.2]]) or a request body with \"instances\" (V1) or \"inputs\" (V2)".into(),
        ));
    }
    let expected = json("expectedOutput", p.expected_output.as_ref())?;
    // A whole answer (as the Go operator's samples write it) stands for its predictions.
    let expected = match expected {
        Value::Object(mut answer) if answer.contains_key("predictions") => {
            answer.remove("predictions").unwrap_or_default()
        }
        Value::Object(answer) => answer
            .get("outputs")
            .and_then(|o| o.get(0))
            .and_then(|o| o.get("data"))
            .cloned()
            .unwrap_or(Value::Null),
        other => other,
    };
    if expected.is_object() || expected.is_null() {
        return Err(bad(
            "expectedOutput",
            "must be the predictions as a JSON array (e.g. [0, 2]) or a single value, or an answer with \"predictions\" (V1) or \"outputs\" (V2)".into(),
        ));
    }
    let tolerance = match &p.tolerance {
        None => DEFAULT_TOLERANCE,
        Some(t) => t
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite() && *t >= 0.0)
            .ok_or_else(|| bad("tolerance", format!("{t:?} is not a number of at least 0")))?,
    };
    Ok(Prediction {
        test_data,
        expected,
        tolerance,
    })
}

/// `status.modelValidationResult`, in the Go operator's shape, written by trigger-controller
/// once each checked model of the run has a final result.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelValidationResult {
    /// The run checked, `<uid>/<observedGeneration>` (an addition to the Go shape: a result of
    /// an earlier run says nothing about this one).
    pub run: String,
    pub phase: ModelValidationPhase,
    pub platform: ModelPlatform,
    /// Always false: the platform is the one the spec names.
    pub platform_detected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_environment_check: Option<ExistingEnvironmentCheck>,
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The served models as checked after their restart.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExistingEnvironmentCheck {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models_checked: Vec<ModelCheckResult>,
    /// The first prediction check that failed, else the last one that passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction_validation: Option<PredictionValidationResult>,
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One served model.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelCheckResult {
    /// `namespace/name` of the InferenceService.
    pub model_name: String,
    /// It answered.
    pub available: bool,
    /// It answered as expected (ready; the predictions within tolerance).
    pub healthy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What one model predicted against what was expected.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PredictionValidationResult {
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_output: Option<String>,
    /// The largest difference between a number predicted and expected, or what differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests;
