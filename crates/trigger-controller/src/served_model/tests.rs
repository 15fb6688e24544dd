use std::time::Duration;

use nbg_core::model_validation::{ModelChecks, Prediction};
use nbg_core::nvj::{ModelPlatform, ModelValidationPhase};
use serde_json::{Value, json};

use super::compare::compare;
use super::protocol::{self, Protocol};
use super::*;

fn checks(prediction: Option<(Value, Value)>) -> ModelChecks {
    ModelChecks {
        models: vec![("ml".into(), "fraud".into())],
        phase: ModelValidationPhase::Both,
        platform: ModelPlatform::Kserve,
        prediction: prediction.map(|(test_data, expected)| Prediction {
            test_data,
            expected,
            tolerance: 0.01,
        }),
        timeout: Duration::from_secs(300),
    }
}

fn ok(body: Value) -> Answer {
    Answer::Http {
        status: 200,
        body: body.to_string(),
    }
}

#[test]
fn the_protocol_is_the_one_the_inference_service_declares() {
    assert_eq!(protocol::declared(None), Ok(Protocol::V1));
    let spec = |p: Value| json!({"predictor": p});
    assert_eq!(
        protocol::declared(Some(&spec(
            json!({"model": {"modelFormat": {"name": "sklearn"}}})
        ))),
        Ok(Protocol::V1)
    );
    assert_eq!(
        protocol::declared(Some(&spec(json!({"model": {"protocolVersion": "v2"}})))),
        Ok(Protocol::V2)
    );
    assert_eq!(
        protocol::declared(Some(&spec(json!({"sklearn": {"protocolVersion": "v2"}})))),
        Ok(Protocol::V2)
    );
    let e = protocol::declared(Some(&spec(
        json!({"model": {"protocolVersion": "grpc-v2"}}),
    )))
    .expect_err("gRPC");
    assert!(
        e.starts_with("spec.predictor.model.protocolVersion is grpc-v2"),
        "{e}"
    );
}

#[test]
fn a_v1_request_wraps_the_instances_and_goes_through_the_service_proxy() {
    let c = checks(Some((json!([[2, 2], [0, 2]]), json!([1, 0]))));
    let r = request(&c, "ml", "fraud", None, None).expect("a request");
    assert_eq!(
        r.proxy_path(),
        "/api/v1/namespaces/ml/services/fraud-predictor:80/proxy/v1/models/fraud:predict"
    );
    assert_eq!(r.body, Some(json!({"instances": [[2, 2], [0, 2]]})));
    // The address KServe publishes wins over the conventional name.
    let status = json!({"components": {"predictor": {"address": {"url": "http://fraud-predictor-x.ml.svc.cluster.local:8080"}}}});
    let r = request(&c, "ml", "fraud", None, Some(&status)).expect("a request");
    assert_eq!(r.service, "fraud-predictor-x:8080");
}

#[test]
fn a_v2_request_is_one_tensor_with_its_shape_and_type() {
    let c = checks(Some((json!([[2.5, 2], [0, 2]]), json!([1, 0]))));
    let spec = json!({"predictor": {"model": {"protocolVersion": "v2"}}});
    let r = request(&c, "ml", "fraud", Some(&spec), None).expect("a request");
    assert_eq!(r.path, "/v2/models/fraud/infer");
    assert_eq!(
        r.body,
        Some(
            json!({"inputs": [{"name": "input-0", "shape": [2, 2], "datatype": "FP64", "data": [2.5, 2, 0, 2]}]})
        )
    );
    let ints = protocol::predict_body(Protocol::V2, &json!([[1, 2]])).expect("a body");
    assert_eq!(ints["inputs"][0]["datatype"], "INT64");
    assert!(protocol::predict_body(Protocol::V2, &json!([[1, "a"]])).is_err());
    // A whole body goes as it is.
    let body = json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]});
    assert_eq!(
        protocol::predict_body(Protocol::V2, &body),
        Ok(body.clone())
    );
}

#[test]
fn without_a_prediction_check_the_model_must_say_it_is_ready() {
    let c = checks(None);
    let r = request(&c, "ml", "fraud", None, None).expect("a request");
    assert_eq!(r.path, "/v1/models/fraud");
    assert_eq!(r.body, None);
    assert!(matches!(
        judge(&c, &r, &ok(json!({"name": "fraud", "ready": true}))),
        Verdict::Healthy { .. }
    ));
    assert!(matches!(
        judge(&c, &r, &ok(json!({"name": "fraud", "ready": false}))),
        Verdict::NoAnswer(_)
    ));
}

#[test]
fn predictions_within_the_tolerance_match_and_say_so() {
    let c = checks(Some((json!([[2, 2], [0, 2]]), json!([0.5, 0.25]))));
    let r = request(&c, "ml", "fraud", None, None).expect("a request");
    let Verdict::Healthy { check, said } =
        judge(&c, &r, &ok(json!({"predictions": [0.505, 0.25]})))
    else {
        panic!("within tolerance")
    };
    assert!(check.available && check.healthy);
    let p = check.prediction.expect("the prediction result");
    assert!(p.success);
    assert_eq!(p.actual_output.as_deref(), Some("[0.505,0.25]"));
    assert_eq!(p.expected_output.as_deref(), Some("[0.5,0.25]"));
    assert!(said.contains("answered as expected"), "{said}");
}

#[test]
fn a_model_that_answers_wrongly_fails_with_expected_and_actual() {
    let c = checks(Some((json!([[2, 2], [0, 2]]), json!([1, 0]))));
    let r = request(&c, "ml", "fraud", None, None).expect("a request");
    let Verdict::Wrong { check, said } = judge(&c, &r, &ok(json!({"predictions": [0, 1]}))) else {
        panic!("a wrong answer")
    };
    assert!(check.available && !check.healthy);
    let p = check.prediction.expect("the prediction result");
    assert!(!p.success);
    assert_eq!(
        p.difference.as_deref(),
        Some("prediction [0] is 0, expected 1 (difference 1, tolerance 0.01)")
    );
    assert!(
        said.starts_with("the new model answers wrongly: predicted [0,1], expected [1,0]"),
        "{said}"
    );
}

#[test]
fn what_the_answer_is_decides_between_waiting_failing_and_refused() {
    let c = checks(Some((json!([[1]]), json!([1]))));
    let r = request(&c, "ml", "fraud", None, None).expect("a request");
    let http = |status, body: &str| Answer::Http {
        status,
        body: body.into(),
    };
    // No endpoints yet, a model not loaded yet, nothing at all: asked again.
    for a in [
        http(
            503,
            r#"{"kind": "Status", "message": "no endpoints available for service \"fraud-predictor\""}"#,
        ),
        http(404, r#"{"error": "Model with name fraud does not exist."}"#),
        Answer::Unreachable("no answer within 10 s".into()),
    ] {
        assert!(matches!(judge(&c, &r, &a), Verdict::NoAnswer(_)), "{a:?}");
    }
    // The API server refusing the route names the right to grant.
    let Verdict::Forbidden(why) = judge(
        &c,
        &r,
        &http(
            403,
            r#"{"kind": "Status", "reason": "Forbidden", "message": "services \"fraud-predictor:80\" is forbidden"}"#,
        ),
    ) else {
        panic!("refused")
    };
    assert!(
        why.contains("services/proxy (create, get) in namespace ml"),
        "{why}"
    );
    // The model refusing the data, or failing on it: final.
    for a in [
        http(400, r#"{"error": "expected 2 features"}"#),
        http(
            500,
            r#"{"error": "X has 1 features, but LogisticRegression is expecting 2"}"#,
        ),
        http(403, "no"),
        ok(json!({"outputs": []})),
        http(200, "not json"),
    ] {
        assert!(matches!(judge(&c, &r, &a), Verdict::Wrong { .. }), "{a:?}");
    }
}

#[test]
fn comparisons_walk_nested_predictions() {
    let m = |e: Value, a: Value| compare(Protocol::V1, &e, &a, 0.01);
    assert!(m(json!([[0.1, 0.9]]), json!([[0.105, 0.895]])).matches);
    assert_eq!(
        m(json!([[0.1, 0.9]]), json!([[0.9, 0.1]])).difference,
        "prediction [0][0] is 0.9, expected 0.1 (difference 0.8, tolerance 0.01)"
    );
    assert_eq!(
        m(json!([1, 0]), json!([1])).difference,
        "the answer has 1 values, expected 2"
    );
    assert_eq!(
        m(json!(["cat"]), json!(["dog"])).difference,
        "prediction [0] is \"dog\", expected \"cat\""
    );
    assert!(
        m(json!(1), json!([1])).matches,
        "a single value matches a single prediction"
    );
    assert_eq!(m(json!([1, 2]), json!([1, 2])).difference, "none");
    // V2 outputs are flat.
    assert!(compare(Protocol::V2, &json!([[1, 0]]), &json!([1, 0]), 0.0).matches);
    // NaN never matches.
    assert!(!m(json!([1.0]), json!([null])).matches);
}
