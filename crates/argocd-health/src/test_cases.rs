//! The `health_test.yaml` cases of each check, read as Argo CD's own layout lays them out
//! (`<group>/<kind>/health_test.yaml`, inputs under `testdata/`): the sandbox tests and the tests
//! against the real Argo CD run the same cases.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::checks::HealthCheck;

/// `manifests/argocd/resource_customizations/` of this repository.
pub fn customizations_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../manifests/argocd/resource_customizations")
}

/// A YAML (or JSON) file as JSON; the error names the file.
pub fn read_yaml(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// One case: the object and the health it must get.
#[derive(Debug, Clone)]
pub struct TestCase {
    /// `inputPath`, relative to the check's directory.
    pub input: String,
    pub object: Value,
    pub status: String,
    pub message: String,
}

/// Every case of `check`'s `health_test.yaml`.
pub fn test_cases(check: &HealthCheck) -> Result<Vec<TestCase>, String> {
    let dir = customizations_dir().join(check.dir);
    let tests = read_yaml(&dir.join("health_test.yaml"))?;
    let list = tests["tests"]
        .as_array()
        .ok_or_else(|| format!("{}: no tests list", check.dir))?;
    list.iter()
        .map(|case| {
            let input = case["inputPath"]
                .as_str()
                .ok_or_else(|| format!("{}: a case without inputPath", check.dir))?;
            let text = |field: &str| {
                case["healthStatus"][field]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            };
            Ok(TestCase {
                input: input.to_string(),
                object: read_yaml(&dir.join(input))?,
                status: text("status"),
                message: text("message"),
            })
        })
        .collect()
}
