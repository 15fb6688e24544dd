use serde_json::json;

use super::*;

fn spec(v: Value) -> ModelValidation {
    serde_json::from_value(v).expect("a modelValidation")
}

fn read(v: Value) -> Result<Option<ModelChecks>, ModelValidationError> {
    checks("ml", Some(&spec(v)))
}

#[test]
fn none_or_disabled_checks_nothing() {
    assert_eq!(checks("ml", None), Ok(None));
    assert_eq!(
        read(json!({"enabled": false, "platform": "vllm"})),
        Ok(None)
    );
}

#[test]
fn a_prediction_check_reads_with_the_go_operators_defaults() {
    let c = read(json!({
        "targetModels": ["fraud", "serving/churn"],
        "predictionValidation": {"testData": "[[1.0, 2.0]]", "expectedOutput": "[1]"}
    }))
    .expect("valid")
    .expect("enabled");
    assert_eq!(
        c.models,
        [
            ("ml".to_string(), "fraud".to_string()),
            ("serving".to_string(), "churn".to_string())
        ]
    );
    assert_eq!(c.phase, ModelValidationPhase::Both);
    assert_eq!(c.platform, ModelPlatform::Kserve);
    assert_eq!(c.timeout, DEFAULT_TIMEOUT);
    assert!(c.covers("serving", "churn"));
    assert!(!c.covers("ml", "churn"));
    let p = c.prediction.expect("a prediction check");
    assert_eq!(p.test_data, json!([[1.0, 2.0]]));
    assert_eq!(p.expected, json!([1]));
    assert!((p.tolerance - DEFAULT_TOLERANCE).abs() < f64::EPSILON);
}

#[test]
fn without_prediction_validation_the_model_must_only_be_ready() {
    let c = read(
        json!({"targetModels": ["fraud"], "timeout": "90s", "phase": "existing",
                        "predictionValidation": {"enabled": false, "testData": "not json"}}),
    )
    .expect("valid")
    .expect("enabled");
    assert_eq!(c.prediction, None);
    assert_eq!(c.timeout, Duration::from_secs(90));
}

#[test]
fn a_whole_request_body_is_accepted_as_test_data() {
    let c = read(json!({"targetModels": ["m"], "predictionValidation": {
        "testData": r#"{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}"#,
        "expectedOutput": "0.5", "tolerance": "1e-3"}}))
    .expect("valid")
    .expect("enabled");
    let p = c.prediction.expect("a prediction check");
    assert!(p.test_data.get("inputs").is_some());
    assert!((p.tolerance - 0.001).abs() < f64::EPSILON);
}

#[test]
fn a_whole_answer_as_expected_output_stands_for_its_predictions() {
    for (answer, predictions) in [
        (r#"{"predictions": [1, 0]}"#, json!([1, 0])),
        (
            r#"{"outputs": [{"name": "output-0", "data": [0.5]}]}"#,
            json!([0.5]),
        ),
    ] {
        let c = read(json!({"targetModels": ["m"],
                            "predictionValidation": {"testData": "[[1]]", "expectedOutput": answer}}))
        .expect("valid")
        .expect("enabled");
        assert_eq!(c.prediction.expect("a check").expected, predictions);
    }
}

#[test]
fn every_unusable_field_is_named_with_what_to_change() {
    let cases = [
        (
            json!({"platform": "vllm", "targetModels": ["m"]}),
            "spec.modelValidation.platform: vllm is not supported",
        ),
        (
            json!({"targetModels": ["m"], "customPlatform": {"apiGroup": "x"}}),
            "spec.modelValidation.customPlatform",
        ),
        (
            json!({"phase": "clean", "targetModels": ["m"]}),
            "spec.modelValidation.phase: clean",
        ),
        (json!({}), "spec.modelValidation.targetModels: empty"),
        (
            json!({"targetModels": ["Fraud_Model"]}),
            "spec.modelValidation.targetModels[0]: \"Fraud_Model\"",
        ),
        (
            json!({"targetModels": ["a/b/c"]}),
            "spec.modelValidation.targetModels[0]",
        ),
        (
            json!({"targetModels": ["m"], "timeout": "0s"}),
            "spec.modelValidation.timeout: must be longer than zero",
        ),
        (
            json!({"targetModels": ["m"], "predictionValidation": {"expectedOutput": "[1]"}}),
            "spec.modelValidation.predictionValidation.testData: missing",
        ),
        (
            json!({"targetModels": ["m"], "predictionValidation": {"testData": "[[1,", "expectedOutput": "[1]"}}),
            "spec.modelValidation.predictionValidation.testData: not JSON",
        ),
        (
            json!({"targetModels": ["m"], "predictionValidation": {"testData": "{\"x\": 1}", "expectedOutput": "[1]"}}),
            "spec.modelValidation.predictionValidation.testData: must be a JSON array",
        ),
        (
            json!({"targetModels": ["m"], "predictionValidation": {"testData": "[[1]]"}}),
            "spec.modelValidation.predictionValidation.expectedOutput: missing",
        ),
        (
            json!({"targetModels": ["m"], "predictionValidation": {"testData": "[[1]]", "expectedOutput": "{\"a\": 1}"}}),
            "spec.modelValidation.predictionValidation.expectedOutput: must be the predictions",
        ),
        (
            json!({"targetModels": ["m"], "predictionValidation": {"testData": "[[1]]", "expectedOutput": "[1]", "tolerance": "-1"}}),
            "spec.modelValidation.predictionValidation.tolerance: \"-1\"",
        ),
    ];
    for (v, want) in cases {
        let e = read(v.clone()).expect_err(&v.to_string()).to_string();
        assert!(e.starts_with(want), "{v}: {e}");
    }
}
