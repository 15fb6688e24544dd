//! What kstatus - the library Flux's health checks (`wait: true`, `healthChecks`), `kstatus` and
//! cli-utils compute status with - makes of an NVJ in every phase, before its first status and
//! after a spec change: the library itself, at the version kustomize-controller uses
//! (`nbg-kstatus`, built by `hack/build-binaries.sh` from kustomize-controller's module), given
//! the objects exactly as nvj-validator's status makes them. No cluster.

use std::io::Write;
use std::process::{Command, Stdio};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use nbg_core::conditions;
use nbg_core::nvj::{Phase, status_before_first_run};
use nbg_e2e::harness::process::built_tool;
use serde_json::{Value, json};

/// `(status, message)` kstatus computes for each object.
fn kstatus(objects: &[Value]) -> Vec<(String, String)> {
    let tool = built_tool("nbg-kstatus").expect("nbg-kstatus (hack/build-binaries.sh)");
    let mut child = Command::new(tool)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nbg-kstatus");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(Value::Array(objects.to_vec()).to_string().as_bytes())
        .expect("write the objects");
    let out = child.wait_with_output().expect("nbg-kstatus");
    assert!(
        out.status.success(),
        "nbg-kstatus: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("a JSON line");
            assert!(v.get("error").is_none(), "kstatus failed: {v}");
            let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            (text("status"), text("message"))
        })
        .collect()
}

fn nvj(generation: i64, status: Option<Value>) -> Value {
    let mut object = json!({
        "apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob",
        "metadata": {"name": "train", "namespace": "ml", "uid": "u-1", "generation": generation},
        "spec": {"notebook": {"git": {"url": "https://git.example/ml.git", "ref": "main"},
                              "path": "train.ipynb"},
                 "podConfig": {"containerImage": "runner:1"}, "timeout": "30m"}
    });
    if let Some(status) = status {
        object["status"] = status;
    }
    object
}

/// The status nvj-validator writes for `phase` of generation `observed`.
fn written(phase: Phase, observed: i64, message: &str) -> Value {
    let now = Time(Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH));
    let conditions =
        conditions::for_phase(&[], phase, phase.as_str(), message, Some(observed), &now);
    json!({"phase": phase, "observedGeneration": observed, "message": message,
           "conditions": conditions})
}

#[test]
fn kstatus_holds_an_nvj_until_the_current_run_succeeds_and_fails_it_with_the_runs_message() {
    let in_progress = [
        Phase::Initializing,
        Phase::Pending,
        Phase::Building,
        Phase::BuildComplete,
        Phase::ValidationRunning,
        Phase::Running,
    ];
    let mut cases: Vec<(String, Value, &str, &str)> = vec![
        (
            "no status at all (what the API server served before the CRD default)".into(),
            nvj(1, None),
            "Current",
            "Resource is current",
        ),
        (
            "the CRD's default status, before nvj-validator's first write".into(),
            nvj(1, Some(status_before_first_run())),
            "InProgress",
            "NotebookValidationJob generation is 1, but latest observed generation is 0",
        ),
        (
            "Succeeded".into(),
            nvj(
                1,
                Some(written(Phase::Succeeded, 1, "All 3 cells succeeded")),
            ),
            "Current",
            "Resource is Ready",
        ),
        (
            "Failed".into(),
            nvj(
                1,
                Some(written(
                    Phase::Failed,
                    1,
                    "cell 3 (cellIndex 2) raised KeyError: x",
                )),
            ),
            "Failed",
            "cell 3 (cellIndex 2) raised KeyError: x",
        ),
        (
            "a Succeeded run of the previous generation".into(),
            nvj(
                2,
                Some(written(Phase::Succeeded, 1, "All 3 cells succeeded")),
            ),
            "InProgress",
            "NotebookValidationJob generation is 2, but latest observed generation is 1",
        ),
        (
            "a Failed run of the previous generation".into(),
            nvj(2, Some(written(Phase::Failed, 1, "cell 1 raised"))),
            "InProgress",
            "NotebookValidationJob generation is 2, but latest observed generation is 1",
        ),
    ];
    for phase in in_progress {
        cases.push((
            phase.as_str().to_string(),
            nvj(3, Some(written(phase, 3, "Running train.ipynb"))),
            "InProgress",
            "Running train.ipynb",
        ));
    }
    let objects: Vec<Value> = cases.iter().map(|(_, o, _, _)| o.clone()).collect();
    let computed = kstatus(&objects);
    assert_eq!(computed.len(), cases.len());
    for ((what, _, status, message), (got_status, got_message)) in cases.iter().zip(&computed) {
        assert_eq!(
            (got_status.as_str(), got_message.as_str()),
            (*status, *message),
            "{what}"
        );
    }
}
