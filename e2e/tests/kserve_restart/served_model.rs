//! The served model's check after a restart (`spec.modelValidation`), with KServe's own sklearn
//! server and a server that answers only when told to:
//! - the trained model answers as expected: the restart is recorded Succeeded with what it
//!   predicted, and `status.modelValidationResult` says so for the run;
//! - a model trained with its features in the other order loads fine and answers wrongly: the
//!   restart is recorded Failed with expected and actual, never Succeeded, and a Warning Event
//!   `ServedModelCheckFailed` says so;
//! - a predictor that does not answer: Failed once `timeout` has passed, with its last answer;
//! - SIGKILL of trigger-controller between the rollout and the answer: the successor asks until
//!   the same deadline and records once.

use k8s_openapi::api::events::v1::Event;
use nbg_core::model_validation::ModelValidationResult;

use super::*;

/// What the trained model (features in order) predicts for the test data.
const TEST_DATA: &str = "[[2, 2], [0, 2]]";
const EXPECTED: &str = "[1, 0]";

/// The same data with the two features swapped: loads fine, answers wrongly.
const TRAIN_SHUFFLED: &str = "import joblib\n\
from sklearn.linear_model import LogisticRegression\n\
X = [[0, 0], [1, 1], [0, 1], [1, 0], [2, 2], [0, 2]]\n\
model = LogisticRegression().fit([row[::-1] for row in X], [0, 1, 0, 1, 1, 0])\n\
joblib.dump(model, '/mnt/models/fraud/model.joblib')\n\
print('saved the model with its features swapped')\n";

/// A model server in the sklearn image that reports itself ready but answers predictions only
/// once `answer.json` is on its volume (503 before, as a model still loading).
const SILENT_SERVER: &str = r#"import http.server
class Handler(http.server.BaseHTTPRequestHandler):
    def reply(self, code, body):
        self.send_response(code)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self.reply(200, b'{"name": "fraud", "ready": true}')
    def do_POST(self):
        self.rfile.read(int(self.headers.get('Content-Length', 0)))
        try:
            self.reply(200, open('/mnt/models/answer.json', 'rb').read())
        except FileNotFoundError:
            self.reply(503, b'{"error": "the model is still loading"}')
http.server.ThreadingHTTPServer(('', 8080), Handler).serve_forever()
"#;

fn checking(timeout: &str) -> serde_json::Value {
    json!({"targetModels": ["fraud"], "timeout": timeout,
           "predictionValidation": {"testData": TEST_DATA, "expectedOutput": EXPECTED}})
}

impl Serving {
    /// The NVJ's final record (not InProgress), failing if it is ever Succeeded meanwhile when
    /// `never_succeeds`.
    async fn final_record(
        &self,
        nvj: &str,
        within: Duration,
        never_succeeds: bool,
    ) -> TriggerRecord {
        let log = self.controller.process.log.display().to_string();
        let until = Instant::now() + within;
        loop {
            let r = self.record(nvj).await;
            if let Some(r) = r.filter(|r| r.outcome != TriggerOutcome::InProgress) {
                assert!(
                    !(never_succeeds && r.outcome == TriggerOutcome::Succeeded),
                    "{nvj}: recorded Succeeded: {r:?} (log {log})"
                );
                return r;
            }
            assert!(
                Instant::now() < until,
                "{nvj}: no final record within {within:?} (log {log})"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn model_result(&self, nvj: &str) -> Option<ModelValidationResult> {
        self.nvjs
            .get(nvj)
            .await
            .ok()?
            .status?
            .model_validation_result
    }

    /// The Events trigger-controller published on the NVJ with this reason.
    async fn events(&self, nvj: &str, reason: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        events
            .list(&ListParams::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(nvj)
                    && e.reason.as_deref() == Some(reason)
            })
            .collect()
    }
}

/// The good model passes; one trained with its features swapped is caught.
pub async fn a_wrong_model_is_caught_before_its_restart_counts(node: &RealNode) {
    let s = Serving::start(node, "kserve-check", &[]).await;
    let nvj = s.nvj_checking("good", Some(checking("2m"))).await;
    let run = run_of(&nvj);
    mark_succeeded(&s.nvjs, &nvj).await.expect("succeed");
    let good = s
        .final_record("good", Duration::from_secs(120), false)
        .await;
    let message = good.message.clone().unwrap_or_default();
    assert_eq!(good.outcome, TriggerOutcome::Succeeded, "{message}");
    assert_eq!(
        message,
        "restart applied; rollout complete; the new model answered as expected: predicted [1,0], expected [1,0] (tolerance 0.01)"
    );
    let served = good.served_model.clone().expect("servedModel");
    assert!(served.available && served.healthy, "{served:?}");
    assert!(good.rollout_complete_time.is_some(), "rolloutCompleteTime");
    println!("good model: {message}");
    let result = eventually(Duration::from_secs(10), "modelValidationResult", || {
        s.model_result("good")
    })
    .await;
    assert!(result.success, "{result:?}");
    assert_eq!(result.run, run);
    let existing = result
        .existing_environment_check
        .expect("existingEnvironmentCheck");
    assert_eq!(existing.models_checked.len(), 1);
    assert_eq!(existing.models_checked[0].model_name, "kserve-check/fraud");
    let p = existing
        .prediction_validation
        .expect("predictionValidation");
    assert_eq!(
        (p.actual_output.as_deref(), p.expected_output.as_deref()),
        (Some("[1,0]"), Some("[1,0]"))
    );

    // The next training swaps the features: the model loads and answers, wrongly.
    train(
        &s.cluster,
        &s.client,
        &s.ns,
        &s.volume,
        "train-shuffled",
        TRAIN_SHUFFLED,
    )
    .await;
    let nvj = s.nvj_checking("shuffled", Some(checking("2m"))).await;
    let run = run_of(&nvj);
    mark_succeeded(&s.nvjs, &nvj).await.expect("succeed");
    let wrong = s
        .final_record("shuffled", Duration::from_secs(120), true)
        .await;
    let message = wrong.message.clone().unwrap_or_default();
    println!("shuffled features: {message}");
    assert_eq!(wrong.outcome, TriggerOutcome::Failed, "{message}");
    assert!(
        message.starts_with("restart applied; rollout complete; the new model answers wrongly: predicted [1,1], expected [1,0]: prediction [1] is 1, expected 0"),
        "{message}"
    );
    let result = eventually(Duration::from_secs(10), "modelValidationResult", || async {
        s.model_result("shuffled").await.filter(|r| r.run == run)
    })
    .await;
    assert!(!result.success, "{result:?}");
    let p = result
        .existing_environment_check
        .and_then(|e| e.prediction_validation)
        .expect("predictionValidation");
    assert_eq!(p.actual_output.as_deref(), Some("[1,1]"));
    assert!(!p.success);
    let warned = eventually(
        Duration::from_secs(10),
        "a ServedModelCheckFailed Event",
        || async {
            let e = s.events("shuffled", "ServedModelCheckFailed").await;
            (!e.is_empty()).then_some(e)
        },
    )
    .await;
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert_eq!(warned[0].type_.as_deref(), Some("Warning"));
}

/// An InferenceService declaring the V2 protocol is asked in it: one input tensor, the first
/// output's data compared.
pub async fn a_v2_model_is_asked_in_the_v2_protocol(node: &RealNode) {
    let predictor = json!({"model": {"modelFormat": {"name": "sklearn"}, "protocolVersion": "v2",
        "storageUri": "pvc://models/fraud",
        "resources": {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}}});
    let s = Serving::start_with(node, "kserve-v2", &[], predictor, TRAIN).await;
    let nvj = s.nvj_checking("v2", Some(checking("2m"))).await;
    mark_succeeded(&s.nvjs, &nvj).await.expect("succeed");
    let r = s.final_record("v2", Duration::from_secs(120), false).await;
    let message = r.message.clone().unwrap_or_default();
    println!("V2: {message}");
    assert_eq!(r.outcome, TriggerOutcome::Succeeded, "{message}");
    assert_eq!(
        message,
        "restart applied; rollout complete; the new model answered as expected: predicted [1,0], expected [1,0] (tolerance 0.01)"
    );
}

/// A predictor that does not answer is Failed at the timeout; a SIGKILL between the rollout and
/// the answer leaves one check and one record.
pub async fn an_unanswering_model_times_out_and_a_successor_checks_once(node: &RealNode) {
    let image = kserve::sklearn_runtime_image().expect("the runtime image");
    let predictor = json!({
        "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": "models"}}],
        "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "fsGroup": 1000},
        "containers": [{"name": "kserve-container", "image": image, "imagePullPolicy": "IfNotPresent",
                        "command": ["python", "-c", SILENT_SERVER],
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                        "volumeMounts": [{"name": "models", "mountPath": "/mnt/models"}],
                        "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}}]
    });
    let mut s = Serving::start_with(node, "kserve-silent", &[], predictor, TRAIN).await;
    let answer = s.volume.join("answer.json");

    let nvj = s.nvj_checking("silent", Some(checking("8s"))).await;
    mark_succeeded(&s.nvjs, &nvj).await.expect("succeed");
    let silent = s
        .final_record("silent", Duration::from_secs(90), true)
        .await;
    let message = silent.message.clone().unwrap_or_default();
    println!("no answer: {message}");
    assert_eq!(silent.outcome, TriggerOutcome::Failed, "{message}");
    assert!(
        message.starts_with("restart applied; rollout complete; the new model did not answer within 8 s (spec.modelValidation.timeout): HTTP 503 to POST /v1/models/fraud:predict on Service kserve-silent/fraud-predictor"),
        "{message}"
    );
    let waited = silent
        .rollout_complete_time
        .as_ref()
        .map(|t| silent.time.0.duration_since(t.0).as_secs_f64())
        .expect("rolloutCompleteTime");
    assert!(
        (8.0..14.0).contains(&waited),
        "Failed {waited:.1} s after the rollout"
    );
    assert!(silent.served_model.as_ref().is_some_and(|m| !m.available));

    // Killed while it waits for the answer: its successor keeps the deadline and records once.
    let before = s.predictor().await.metadata.generation;
    let nvj = s.nvj_checking("late", Some(checking("2m"))).await;
    let run = run_of(&nvj);
    mark_succeeded(&s.nvjs, &nvj).await.expect("succeed");
    let waiting = eventually(
        Duration::from_secs(90),
        "late: waiting for the new model",
        || async {
            s.record("late").await.filter(|r| {
                r.outcome == TriggerOutcome::InProgress
                    && r.message
                        .as_deref()
                        .is_some_and(|m| m.ends_with("waiting for the new model to answer"))
            })
        },
    )
    .await;
    s.controller.restart();
    tokio::time::sleep(Duration::from_secs(3)).await;
    std::fs::write(&answer, br#"{"predictions": [1, 0]}"#).expect("the answer");
    let late = s.final_record("late", Duration::from_secs(60), false).await;
    println!("answered after a SIGKILL: {:?}", late.message);
    assert_eq!(late.outcome, TriggerOutcome::Succeeded, "{late:?}");
    assert_eq!(late.run, run);
    assert_eq!(
        late.rollout_complete_time, waiting.rollout_complete_time,
        "the successor kept when the rollout completed"
    );
    assert_eq!(
        s.predictor().await.metadata.generation,
        before.map(|g| g + 1),
        "restarted once"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        s.events("late", "TriggerSucceeded").await.len(),
        1,
        "recorded once"
    );
}

/// Whether a pod is Ready.
fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The benchmark: `restarts` runs in a row, each restarting the sklearn predictor with a
/// prediction check; per restart, from the new predictor pod turning Ready to the record
/// Succeeded (both seen by this process, polling every 50 ms). Returns the durations, sorted.
pub async fn check_latency(node: &RealNode, restarts: usize) -> Vec<Duration> {
    let s = Serving::start(node, "kserve-bench", &[]).await;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.ns);
    let mut took = Vec::new();
    for i in 0..restarts {
        let before: Vec<String> = pods
            .list(&ListParams::default().labels("component=predictor"))
            .await
            .expect("pods")
            .items
            .iter()
            .map(|p| p.name_any())
            .collect();
        let name = format!("bench-{i}");
        let nvj = s.nvj_checking(&name, Some(checking("2m"))).await;
        mark_succeeded(&s.nvjs, &nvj).await.expect("succeed");
        let until = Instant::now() + Duration::from_secs(120);
        let mut ready_at = None;
        let recorded = loop {
            assert!(Instant::now() < until, "{name}: no record within 120 s");
            if ready_at.is_none() {
                let list = pods
                    .list(&ListParams::default().labels("component=predictor"))
                    .await
                    .expect("pods");
                if list
                    .items
                    .iter()
                    .any(|p| !before.contains(&p.name_any()) && pod_ready(p))
                {
                    ready_at = Some(Instant::now());
                }
            }
            if let Some(r) = s
                .record(&name)
                .await
                .filter(|r| r.outcome != TriggerOutcome::InProgress)
            {
                break (r, Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (record, at) = recorded;
        assert_eq!(record.outcome, TriggerOutcome::Succeeded, "{record:?}");
        let ready_at = ready_at.expect("the new predictor pod was seen Ready before the record");
        took.push(at.duration_since(ready_at));
    }
    took.sort();
    took
}
