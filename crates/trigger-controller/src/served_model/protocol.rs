//! KServe's inference protocols as the check speaks them: which one an InferenceService declares,
//! the request for it, and the predictions in its answer (pure).
//!
//! V1 (`/v1/models/<name>:predict`, `{"instances": ...}` -> `{"predictions": ...}`) and the Open
//! Inference Protocol V2 (`/v2/models/<name>/infer`, `{"inputs": [tensor]}` -> `{"outputs":
//! [tensor]}`), over REST; KServe serves a model under its InferenceService's name.

use serde_json::{Value, json};

/// The REST protocol an InferenceService's predictor speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    V1,
    V2,
}

/// The protocol the InferenceService declares (`spec.predictor.model.protocolVersion`, or a
/// framework's, e.g. `spec.predictor.sklearn.protocolVersion`); V1 when none does, as KServe.
pub fn declared(spec: Option<&Value>) -> Result<Protocol, String> {
    let predictor = spec.and_then(|s| s.get("predictor"));
    let declared = predictor
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|p| p.iter())
        .find_map(|(field, v)| {
            v.get("protocolVersion")
                .and_then(Value::as_str)
                .map(|p| (field.clone(), p.to_string()))
        });
    match declared {
        None => Ok(Protocol::V1),
        Some((_, p)) if p == "v1" => Ok(Protocol::V1),
        Some((_, p)) if p == "v2" => Ok(Protocol::V2),
        Some((field, p)) => Err(format!(
            "spec.predictor.{field}.protocolVersion is {p}: the check speaks KServe's REST protocols v1 and v2"
        )),
    }
}

/// The path of a prediction for `model`.
pub fn predict_path(protocol: Protocol, model: &str) -> String {
    match protocol {
        Protocol::V1 => format!("/v1/models/{model}:predict"),
        Protocol::V2 => format!("/v2/models/{model}/infer"),
    }
}

/// The path that says whether `model` is ready.
pub fn ready_path(protocol: Protocol, model: &str) -> String {
    match protocol {
        Protocol::V1 => format!("/v1/models/{model}"),
        Protocol::V2 => format!("/v2/models/{model}/ready"),
    }
}

/// The request body for `test_data`: a whole body as it is, else the instances wrapped as the
/// protocol wants them (V2: one tensor named `input-0`, its shape and type from the data).
pub fn predict_body(protocol: Protocol, test_data: &Value) -> Result<Value, String> {
    if test_data.get("instances").is_some() || test_data.get("inputs").is_some() {
        return Ok(test_data.clone());
    }
    match protocol {
        Protocol::V1 => Ok(json!({ "instances": test_data })),
        Protocol::V2 => {
            let mut shape = Vec::new();
            let mut level = test_data;
            while let Some(items) = level.as_array() {
                shape.push(items.len());
                match items.first() {
                    Some(first) => level = first,
                    None => break,
                }
            }
            let mut data = Vec::new();
            flatten(test_data, &mut data);
            let datatype = if data.iter().all(|v| v.is_i64() || v.is_u64()) {
                "INT64"
            } else if data.iter().all(Value::is_number) {
                "FP64"
            } else if data.iter().all(Value::is_boolean) {
                "BOOL"
            } else if data.iter().all(Value::is_string) {
                "BYTES"
            } else {
                return Err(
                    "testData mixes numbers, strings and booleans: a V2 tensor holds one type; give a whole request body with \"inputs\"".into(),
                );
            };
            Ok(
                json!({"inputs": [{"name": "input-0", "shape": shape, "datatype": datatype, "data": data}]}),
            )
        }
    }
}

/// Nested arrays as one flat list (a V2 tensor's `data` is row-major and flat).
pub fn flatten(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other.clone()),
    }
}

/// The predictions in an answer: V1's `predictions`, V2's first output's `data`.
pub fn predictions(protocol: Protocol, answer: &Value) -> Result<Value, String> {
    match protocol {
        Protocol::V1 => answer
            .get("predictions")
            .cloned()
            .ok_or_else(|| "the answer has no \"predictions\" (KServe's V1 protocol)".into()),
        Protocol::V2 => answer
            .get("outputs")
            .and_then(Value::as_array)
            .and_then(|o| o.first())
            .and_then(|o| o.get("data"))
            .cloned()
            .ok_or_else(|| "the answer has no \"outputs\" with \"data\" (the V2 protocol)".into()),
    }
}

/// Whether a ready answer says the model is ready (V1: `{"ready": true}`; V2: a 200, whose
/// body, when it has one, also says `"ready": true`).
pub fn says_ready(protocol: Protocol, answer: &Value) -> bool {
    match answer.get("ready").and_then(Value::as_bool) {
        Some(ready) => ready,
        None => protocol == Protocol::V2,
    }
}
