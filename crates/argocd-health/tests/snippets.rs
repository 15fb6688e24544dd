//! The install snippets under `manifests/argocd/` are generated from the health-check files and
//! contain exactly their Lua. `hack/just generate` (UPDATE_GENERATED=1) rewrites them.

use std::path::PathBuf;

use nbg_argocd_health::{all_checks, snippets};
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../manifests/argocd")
}

#[test]
fn committed_snippets_are_current() {
    let update = std::env::var_os("UPDATE_GENERATED").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (file, text) in snippets::all() {
        let path = dir().join(file);
        if update {
            std::fs::write(&path, &text).expect("write snippet");
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated snippets (run `hack/just generate`): {stale:?}"
    );
}

fn parse(file: &str) -> Value {
    let text = std::fs::read_to_string(dir().join(file)).expect("snippet");
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{file} is not valid YAML: {e}"))
}

#[test]
fn snippets_contain_exactly_the_files_lua() {
    let cm = parse("argocd-cm-patch.yaml");
    let helm = parse("argo-cd-helm-values.yaml");
    let cr = parse("argocd-cr-patch.yaml");
    let data = cm["data"].as_object().expect("data");
    assert!(
        cm.as_object().is_some_and(|m| m.len() == 1),
        "the ConfigMap patch carries data keys only"
    );
    for check in all_checks() {
        let key = format!("resource.customizations.health.{}", check.key());
        assert_eq!(data[&key].as_str(), Some(check.script), "argocd-cm {key}");
        assert_eq!(
            helm["configs"]["cm"][&key].as_str(),
            Some(check.script),
            "helm values {key}"
        );
        let entry = cr["spec"]["resourceHealthChecks"]
            .as_array()
            .expect("list")
            .iter()
            .find(|e| e["kind"] == check.kind && e["group"].as_str().unwrap_or("") == check.group)
            .unwrap_or_else(|| panic!("ArgoCD CR entry for {}", check.kind));
        assert_eq!(
            entry["check"].as_str(),
            Some(check.script),
            "ArgoCD CR {}",
            check.kind
        );
    }
    assert!(
        data.contains_key("resource.customizations.health.PersistentVolumeClaim"),
        "core group has no prefix"
    );
    for ignored in &snippets::IGNORED_UPDATES {
        let full = format!(
            "resource.customizations.ignoreResourceUpdates.{}",
            ignored.key
        );
        let value: Value =
            serde_saphyr::from_str(data[&full].as_str().expect("ignore updates")).expect("yaml");
        let list = |field: &str| -> Vec<String> {
            value[field]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        };
        assert_eq!(list("jsonPointers"), ignored.json_pointers.to_vec());
        assert_eq!(
            list("jqPathExpressions"),
            ignored.argocd_defaults.to_vec(),
            "Argo CD's own entries kept"
        );
        assert_eq!(cr["spec"]["extraConfig"][&full], data[&full]);
    }
}

#[test]
fn committed_notification_snippets_are_current_and_valid() {
    let update = std::env::var_os("UPDATE_GENERATED").is_some_and(|v| v == "1");
    let dir = dir().join("notifications");
    let mut stale = Vec::new();
    for (file, text) in nbg_argocd_health::notifications::all() {
        let path = dir.join(file);
        if update {
            std::fs::write(&path, &text).expect("write snippet");
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(file);
        }
        let parsed: Value = serde_saphyr::from_str(&text)
            .unwrap_or_else(|e| panic!("{file} is not valid YAML: {e}"));
        assert!(parsed.is_object(), "{file}");
    }
    assert!(
        stale.is_empty(),
        "stale generated snippets (run `hack/just generate`): {stale:?}"
    );
    // Every trigger and template is valid YAML of the shape Argo CD reads, and each trigger
    // fires once per run of what app-status-aggregator writes.
    for (key, value) in nbg_argocd_health::notifications::ENTRIES {
        let parsed: Value = serde_saphyr::from_str(value).unwrap_or_else(|e| panic!("{key}: {e}"));
        if key.starts_with("trigger.") {
            let t = &parsed[0];
            assert!(
                t["when"]
                    .as_str()
                    .is_some_and(|w| w.contains("mlops.dev/last-")),
                "{key}"
            );
            assert_eq!(
                t["oncePer"].as_str().map(|o| o.contains("mlops.dev/last-")),
                Some(true),
                "{key}"
            );
            let template = format!("template.{}", t["send"][0].as_str().unwrap_or_default());
            assert!(
                nbg_argocd_health::notifications::ENTRIES
                    .iter()
                    .any(|(k, _)| *k == template),
                "{key} sends {template}"
            );
        } else {
            for service in ["message", "email", "slack", "teams", "webhook"] {
                assert!(!parsed[service].is_null(), "{key} has no {service}");
            }
        }
    }
}
