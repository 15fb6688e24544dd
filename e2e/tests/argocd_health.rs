//! The health checks judged by the real Argo CD: `argocd admin settings resource-overrides
//! health` (the pinned build, offline with `--argocd-cm-path`) with Argo CD's stock `argocd-cm` of
//! that version and our generated `argocd-cm-patch.yaml` merged in, as `kubectl patch --type
//! merge` merges it. Every `health_test.yaml` case; random objects, which must get from Argo CD
//! exactly what the sandbox gives them; and the patch keeps Argo CD's own default entries of every
//! key it sets.

use std::path::{Path, PathBuf};
use std::process::Command;

use nbg_argocd_health::random_objects::json_value;
use nbg_argocd_health::{HealthCheck, Sandbox, all_checks, test_cases};
use nbg_e2e::harness::cluster::repo_root;
use nbg_e2e::harness::process::{build_binaries, built_tool};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};

/// Random objects put to both, per check.
const RANDOM_OBJECTS: usize = 40;

fn read_yaml(path: &Path) -> Value {
    test_cases::read_yaml(path).unwrap_or_else(|e| panic!("{e}"))
}

/// Argo CD's stock `argocd-cm` (`manifests/base/config/` of the pinned module).
fn stock_argocd_cm() -> Value {
    let source = build_binaries(&["--source", "argocd"]).expect("Argo CD's module");
    read_yaml(&source.join("manifests/base/config/argocd-cm.yaml"))
}

/// Our patch's `data`.
fn patch_data() -> Map<String, Value> {
    let patch = read_yaml(&repo_root().join("manifests/argocd/argocd-cm-patch.yaml"));
    patch["data"].as_object().expect("data").clone()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nbg-argocd-health-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.join(name)
}

/// The stock ConfigMap with our patch merged in (JSON merge patch on `data`), written out.
fn patched_argocd_cm() -> PathBuf {
    let mut cm = stock_argocd_cm();
    let data = cm["data"].as_object_mut().expect("stock data");
    data.extend(patch_data());
    let path = scratch("argocd-cm.json");
    std::fs::write(&path, cm.to_string()).expect("write argocd-cm");
    path
}

/// What the real Argo CD says of `object`: `Ok((status, message))`, or its error output.
fn argo_cd_health(
    argocd_cm: &Path,
    object: &Value,
    file: &str,
) -> Result<(String, String), String> {
    let path = scratch(file);
    std::fs::write(&path, object.to_string()).expect("write object");
    let out = Command::new(built_tool("argocd").expect("argocd"))
        .args(["admin", "settings", "resource-overrides", "health"])
        .arg(&path)
        .arg("--argocd-cm-path")
        .arg(argocd_cm)
        .output()
        .expect("run argocd");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let status = stdout.lines().find_map(|l| l.strip_prefix("STATUS: "));
    let message = stdout
        .split_once("MESSAGE: ")
        .map(|(_, m)| m.trim_end_matches('\n'));
    match (out.status.success(), status) {
        (true, Some(status)) => Ok((status.to_string(), message.unwrap_or_default().to_string())),
        _ => Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr))),
    }
}

#[test]
fn every_health_test_case_passes_in_argo_cd_itself() {
    let argocd_cm = patched_argocd_cm();
    let mut cases = 0;
    for check in all_checks() {
        for case in test_cases::test_cases(check).unwrap_or_else(|e| panic!("{e}")) {
            let input = &case.input;
            let (status, message) = argo_cd_health(&argocd_cm, &case.object, "case.json")
                .unwrap_or_else(|e| panic!("{}/{input}: Argo CD says: {e}", check.dir));
            assert_eq!(
                (status.as_str(), message.as_str()),
                (case.status.as_str(), case.message.as_str()),
                "{}/{input}",
                check.dir
            );
            cases += 1;
        }
    }
    assert!(cases >= 30, "only {cases} cases");
}

/// A random object made a resource of `check`'s kind, so Argo CD picks the check.
fn as_resource(check: &HealthCheck, random: Value) -> Value {
    let mut object = match random {
        Value::Object(m) => m,
        other => Map::from_iter([("status".to_string(), other)]),
    };
    let api_version = if check.group.is_empty() {
        "v1".to_string()
    } else {
        format!("{}/v1", check.group)
    };
    object.insert("apiVersion".into(), json!(api_version));
    object.insert("kind".into(), json!(check.kind));
    // Argo CD reads the object as Kubernetes metadata first: keep that well-formed.
    let mut metadata = match object.remove("metadata") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    metadata.retain(|k, v| k == "generation" && v.is_i64());
    metadata.insert("name".into(), json!("random"));
    object.insert("metadata".into(), Value::Object(metadata));
    Value::Object(object)
}

#[test]
fn random_objects_get_the_same_health_from_argo_cd_and_the_sandbox() {
    let argocd_cm = patched_argocd_cm();
    let sandbox = Sandbox::new().expect("sandbox");
    let mut runner = TestRunner::new(Config::default());
    let strategy = json_value();
    let (mut compared, mut judged) = (0, 0);
    for check in all_checks() {
        for _ in 0..RANDOM_OBJECTS {
            let random = strategy.new_tree(&mut runner).expect("object").current();
            let object = as_resource(check, random);
            let ours = sandbox.evaluate(check.script, &object);
            let theirs = argo_cd_health(&argocd_cm, &object, "random.json");
            match (&ours, &theirs) {
                (Ok(h), Ok((status, message))) => {
                    assert_eq!(
                        (h.status.as_str(), h.message.as_str()),
                        (status.as_str(), message.as_str()),
                        "{}: sandbox and Argo CD differ on {object}",
                        check.dir
                    );
                    judged += 1;
                }
                (Err(_), Err(_)) => {}
                _ => panic!(
                    "{}: sandbox {ours:?}, Argo CD {theirs:?} on {object}",
                    check.dir
                ),
            }
            compared += 1;
        }
    }
    assert_eq!(compared, RANDOM_OBJECTS * all_checks().len());
    // The checks never fail on any object: every comparison is of two verdicts.
    assert_eq!(judged, compared, "objects both refused");
}

/// The entries of one `ignoreResourceUpdates` value (`jsonPointers`, `jqPathExpressions`).
fn ignore_entries(value: &Value) -> Vec<(String, String)> {
    let text = value.as_str().expect("a YAML block");
    let parsed: Value = serde_saphyr::from_str(text).expect("YAML");
    let mut entries = Vec::new();
    for field in ["jsonPointers", "jqPathExpressions", "managedFieldsManagers"] {
        for e in parsed[field].as_array().into_iter().flatten() {
            entries.push((
                field.to_string(),
                e.as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    entries
}

/// A merge patch replaces a key's value whole: where Argo CD's defaults set a key the patch sets
/// too, the patch must carry every default entry of it.
#[test]
fn the_argocd_cm_patch_keeps_argo_cds_default_entries() {
    let stock = stock_argocd_cm();
    let stock = stock["data"].as_object().expect("stock data");
    let mut shared = Vec::new();
    for (key, ours) in patch_data() {
        let Some(theirs) = stock.get(&key) else {
            continue;
        };
        assert!(
            key.starts_with("resource.customizations.ignoreResourceUpdates."),
            "{key}: the patch replaces a default Argo CD setting"
        );
        let ours = ignore_entries(&ours);
        for entry in ignore_entries(theirs) {
            assert!(
                ours.contains(&entry),
                "{key}: Argo CD's default {entry:?} is dropped"
            );
        }
        shared.push(key);
    }
    assert_eq!(
        shared,
        ["resource.customizations.ignoreResourceUpdates.argoproj.io_Application"],
        "the keys both set"
    );
}
