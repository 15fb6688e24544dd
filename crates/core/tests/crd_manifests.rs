//! The CRD YAML under `manifests/crds/` and in the CRD chart is generated from the Rust types.
//! This test fails when either is stale; `hack/just generate` (UPDATE_GENERATED=1) rewrites both.

use std::path::PathBuf;

const HEADER: &str = "# Generated from crates/core by `hack/just generate`; do not edit.\n";

fn render(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> String {
    let body = serde_saphyr::to_string(crd).expect("a CRD serialises to YAML");
    format!("{HEADER}{body}")
}

#[test]
fn committed_crds_match_the_rust_types() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let update = std::env::var_os("UPDATE_GENERATED").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for dir in [
        root.join("manifests/crds"),
        root.join("charts/notebook-gitops-crds/crds"),
    ] {
        for (file, crd) in nbg_core::crds() {
            let path = dir.join(file);
            let want = render(&crd);
            if update {
                std::fs::create_dir_all(&dir).expect("create manifests/crds");
                std::fs::write(&path, &want).expect("write CRD");
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(have) if have == want => {}
                _ => stale.push(path.display().to_string()),
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated CRDs (run `hack/just generate`): {stale:?}"
    );
}

#[test]
fn crd_schema_has_no_unsigned_integers() {
    for (_, crd) in nbg_core::crds() {
        let json = serde_json::to_value(&crd).expect("serialises");
        let mut stack = vec![&json];
        while let Some(v) = stack.pop() {
            match v {
                serde_json::Value::Object(map) => {
                    if let Some(serde_json::Value::String(format)) = map.get("format") {
                        assert!(
                            !format.starts_with("uint"),
                            "unsigned integer format {format} in the schema"
                        );
                    }
                    stack.extend(map.values());
                }
                serde_json::Value::Array(items) => stack.extend(items),
                _ => {}
            }
        }
    }
}
