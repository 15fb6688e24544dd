//! The committed `values.schema.json` of every chart is the one `nbg_e2e::chart_schemas`
//! generates; `hack/just generate` (UPDATE_GENERATED=1) rewrites them.

use nbg_e2e::chart_schemas::{render, schemas};
use nbg_e2e::harness::cluster::repo_root;

#[test]
fn committed_chart_schemas_are_generated() {
    let charts = repo_root().join("charts");
    let kinds_file = charts.join("trigger-controller/target-kinds.json");
    let kinds: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&kinds_file).expect("target-kinds.json"))
            .expect("target-kinds.json is JSON");
    let update = std::env::var_os("UPDATE_GENERATED").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (chart, schema) in schemas(&kinds) {
        let path = charts.join(&chart).join("values.schema.json");
        let want = render(&schema);
        if update {
            std::fs::write(&path, &want).expect("write values.schema.json");
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(want.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale chart schemas (run `hack/just generate`): {stale:?}"
    );
}

#[test]
fn every_chart_has_a_schema() {
    let kinds = serde_json::json!({"kinds": []});
    let generated: Vec<String> = schemas(&kinds).into_iter().map(|(c, _)| c).collect();
    for entry in std::fs::read_dir(repo_root().join("charts")).expect("charts/") {
        let path = entry.expect("a chart directory").path();
        if path.join("Chart.yaml").exists() {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            assert!(
                name.as_ref().is_some_and(|n| generated.contains(n)),
                "{} has no generated values.schema.json",
                path.display()
            );
        }
    }
}
