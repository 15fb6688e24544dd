//! Checks of a spec beyond what the CRD schema can express. Pure.

use std::collections::BTreeSet;
use std::time::Duration;

use nbg_core::nvj::{NotebookValidationJobSpec, ValidationConfig};

use crate::executor::compare::CompareConfig;

/// What is wrong with a spec; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("spec.timeout: {0}")]
    Timeout(String),
    #[error("spec.timeout: must be longer than zero")]
    ZeroTimeout,
    /// `spec.comparisonConfig`: the message names the field.
    #[error("{0}")]
    Comparison(String),
    #[error(
        "spec.podConfig.volumeMounts[{index}].name: no volume named {name:?} in spec.podConfig.volumes"
    )]
    UnknownVolume { index: usize, name: String },
    #[error("spec.podConfig.volumeMounts[{index}].mountPath: {path:?} is reserved for the runner")]
    ReservedMountPath { index: usize, path: String },
    #[error("spec.podConfig.env[{index}].name: {name:?} is reserved for the runner")]
    ReservedEnv { index: usize, name: String },
    #[error("{field}: {path:?} must be a path inside the repository")]
    PathOutsideRepository { field: &'static str, path: String },
    #[error("spec.notebook.parameters[{name:?}]: {why}")]
    Parameter { name: String, why: String },
    #[error(
        "spec.goldenNotebook.parameters: parameters apply to spec.notebook only; the golden notebook is compared as it is in git"
    )]
    GoldenParameters,
    #[error("{0}")]
    ModelValidation(nbg_core::model_validation::ModelValidationError),
    /// `spec.validationConfig` (the CRD's rules, for objects stored before them).
    #[error("spec.validationConfig.{0}")]
    Validation(String),
}

/// A spec that can run.
#[derive(Debug, Clone)]
pub struct CheckedSpec {
    pub timeout: Duration,
    /// Go-operator features this implementation does not run (field paths), reported with a
    /// condition and a Warning Event; the notebook still runs with `containerImage`.
    pub unsupported: Vec<&'static str>,
}

pub fn check(spec: &NotebookValidationJobSpec) -> Result<CheckedSpec, SpecError> {
    let timeout = nbg_core::duration::parse_go_duration(&spec.timeout)
        .map_err(|e| SpecError::Timeout(e.to_string()))?;
    if timeout.is_zero() {
        return Err(SpecError::ZeroTimeout);
    }
    if let Some(cmp) = &spec.comparison_config {
        CompareConfig::from_spec(cmp).map_err(|e| SpecError::Comparison(e.to_string()))?;
    }
    let pc = &spec.pod_config;
    let volumes: BTreeSet<&str> = pc.volumes.iter().map(|v| v.name.as_str()).collect();
    for (i, m) in pc.volume_mounts.iter().enumerate() {
        if !volumes.contains(m.name.as_str()) {
            return Err(SpecError::UnknownVolume {
                index: i,
                name: m.name.clone(),
            });
        }
        if m.mount_path.starts_with("/nbg") {
            return Err(SpecError::ReservedMountPath {
                index: i,
                path: m.mount_path.clone(),
            });
        }
    }
    for (i, e) in pc.env.iter().enumerate() {
        if e.name.starts_with("NBG_") {
            return Err(SpecError::ReservedEnv {
                index: i,
                name: e.name.clone(),
            });
        }
    }
    for (field, source) in [
        ("spec.notebook.path", Some(&spec.notebook)),
        ("spec.goldenNotebook.path", spec.golden_notebook.as_ref()),
    ] {
        if let Some(s) =
            source.filter(|s| s.path.starts_with('/') || s.path.split('/').any(|p| p == ".."))
        {
            return Err(SpecError::PathOutsideRepository {
                field,
                path: s.path.clone(),
            });
        }
    }
    let mut unsupported = Vec::new();
    if pc
        .build_config
        .as_ref()
        .is_some_and(|b| b.enabled != Some(false))
    {
        unsupported.push("spec.podConfig.buildConfig");
    }
    // trigger-controller checks the served models after their restart; a check that cannot run
    // stops the run before it starts, not after it succeeded.
    nbg_core::model_validation::checks("", spec.model_validation.as_ref())
        .map_err(SpecError::ModelValidation)?;
    for name in spec.notebook.parameters.keys() {
        parameter_name(name).map_err(|why| SpecError::Parameter {
            name: name.clone(),
            why,
        })?;
    }
    if spec
        .golden_notebook
        .as_ref()
        .is_some_and(|g| !g.parameters.is_empty())
    {
        return Err(SpecError::GoldenParameters);
    }
    if let Some(v) = &spec.validation_config {
        check_validation(v).map_err(SpecError::Validation)?;
    }
    Ok(CheckedSpec {
        timeout,
        unsupported,
    })
}

/// A papermill parameter's name: a Python identifier, as the parameters cell assigns it.
pub fn parameter_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic());
    if first_ok && chars.all(|c| c == '_' || c.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err("not a Python identifier (letters, digits and _, not starting with a digit)".into())
    }
}

/// The CRD's rules for `spec.validationConfig`: the message names the field.
pub fn check_validation(v: &ValidationConfig) -> Result<(), String> {
    if v.require_explicit_exit_codes == Some(true) {
        return Err(
            "requireExplicitExitCodes: cannot be honoured: notebook cells have no exit \
                    codes (a cell that raises, or calls sys.exit with a non-zero code, fails the \
                    run already); remove it"
                .into(),
        );
    }
    if v.verify_assertions == Some(false) {
        return Err(
            "verifyAssertions: false cannot be honoured: a failed assert raises \
                    AssertionError and fails its cell; remove it"
                .into(),
        );
    }
    if v.educational_mode == Some(true) {
        return Err(
            "educationalMode: has no effect in notebook-gitops (every failure names the \
                    cell and what failed); remove it"
                .into(),
        );
    }
    for (i, e) in v.expected_outputs.iter().enumerate() {
        let at = format!("expectedOutputs[{i}]");
        let addressed = [e.cell.is_some(), e.cell_tag.is_some(), e.name.is_some()];
        if addressed.iter().filter(|a| **a).count() != 1 {
            return Err(format!("{at}: needs exactly one of cell, cellTag or name"));
        }
        if e.r#type.is_none()
            && e.shape.is_none()
            && e.min_value.is_none()
            && e.max_value.is_none()
            && e.not_empty != Some(true)
        {
            return Err(format!(
                "{at}: needs at least one of type, shape, minValue, maxValue or notEmpty: true"
            ));
        }
        for (field, bound) in [("minValue", &e.min_value), ("maxValue", &e.max_value)] {
            if let Some(b) = bound
                .as_deref()
                .filter(|b| b.trim().parse::<f64>().is_err())
            {
                return Err(format!("{at}.{field}: {b:?} is not a number"));
            }
        }
        if let Some(shape) = &e.shape {
            let ok = shape.split(',').map(str::trim).all(|d| {
                d == "*" || d == "-1" || (!d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            });
            if !ok {
                return Err(format!(
                    "{at}.shape: {shape:?} is not rows,cols (numbers, * or -1, e.g. \"1000,20\")"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: serde_json::Value) -> NotebookValidationJobSpec {
        let mut v = serde_json::json!({
            "notebook": {"git": {"url": "https://x/r.git", "ref": "main"}, "path": "a.ipynb"},
            "podConfig": {"containerImage": "img"}
        });
        if let (Some(base), Some(more)) = (v.as_object_mut(), extra.as_object()) {
            for (k, val) in more {
                base.insert(k.clone(), val.clone());
            }
        }
        serde_json::from_value(v).expect("spec")
    }

    #[test]
    fn accepts_a_plain_spec() {
        let c = check(&spec(serde_json::json!({}))).expect("valid");
        assert_eq!(c.timeout, Duration::from_secs(1800));
        assert!(c.unsupported.is_empty());
    }

    #[test]
    fn names_the_bad_field() {
        let e = check(&spec(
            serde_json::json!({"comparisonConfig": {"customTimestampPatterns": ["("]}}),
        ))
        .expect_err("bad regex");
        assert!(
            e.to_string()
                .starts_with("spec.comparisonConfig.customTimestampPatterns[0]"),
            "{e:?}"
        );
        let e = check(&spec(serde_json::json!({"podConfig": {"containerImage": "i", "volumeMounts": [{"name": "v", "mountPath": "/d"}]}})))
            .expect_err("dangling mount");
        assert!(
            e.to_string()
                .starts_with("spec.podConfig.volumeMounts[0].name"),
            "{e:?}"
        );
        let e = check(&spec(serde_json::json!({"notebook": {"git": {"url": "https://x/r.git", "ref": "main"}, "path": "../x.ipynb"}}))).expect_err("escape");
        assert!(e.to_string().starts_with("spec.notebook.path"), "{e:?}");
        let e = check(&spec(serde_json::json!({"timeout": "0s"}))).expect_err("zero");
        assert!(e.to_string().starts_with("spec.timeout"), "{e:?}");
    }

    #[test]
    fn reports_unsupported_go_operator_features() {
        let c = check(&spec(serde_json::json!({
            "podConfig": {"containerImage": "i", "buildConfig": {"strategy": "s2i"}},
            "modelValidation": {"platform": "kserve", "targetModels": ["fraud"]},
            "validationConfig": {"level": "development"}
        })))
        .expect("valid");
        assert_eq!(c.unsupported, vec!["spec.podConfig.buildConfig"]);
        let off = check(&spec(serde_json::json!({"podConfig": {"containerImage": "i", "buildConfig": {"enabled": false}}}))).expect("valid");
        assert!(off.unsupported.is_empty());
    }

    #[test]
    fn a_served_model_check_that_cannot_run_stops_the_run_naming_the_field() {
        let e = check(&spec(serde_json::json!({
            "modelValidation": {"targetModels": ["fraud"],
                                "predictionValidation": {"testData": "[[1, 2]", "expectedOutput": "[0]"}}
        })))
        .expect_err("testData is not JSON");
        assert!(
            e.to_string()
                .starts_with("spec.modelValidation.predictionValidation.testData: not JSON"),
            "{e}"
        );
        let e = check(&spec(
            serde_json::json!({"modelValidation": {"platform": "triton", "targetModels": ["m"]}}),
        ))
        .expect_err("triton");
        assert!(
            e.to_string()
                .starts_with("spec.modelValidation.platform: triton"),
            "{e}"
        );
    }

    #[test]
    fn validation_config_fields_without_a_meaning_and_bad_checks_are_named() {
        for (config, starts) in [
            (
                serde_json::json!({"requireExplicitExitCodes": true}),
                "spec.validationConfig.requireExplicitExitCodes",
            ),
            (
                serde_json::json!({"verifyAssertions": false}),
                "spec.validationConfig.verifyAssertions",
            ),
            (
                serde_json::json!({"educationalMode": true}),
                "spec.validationConfig.educationalMode",
            ),
            (
                serde_json::json!({"expectedOutputs": [{"cell": 1, "name": "a", "notEmpty": true}]}),
                "spec.validationConfig.expectedOutputs[0]: needs exactly one",
            ),
            (
                serde_json::json!({"expectedOutputs": [{"name": "a"}]}),
                "spec.validationConfig.expectedOutputs[0]: needs at least one",
            ),
            (
                serde_json::json!({"expectedOutputs": [{"name": "a", "notEmpty": true}, {"cellTag": "t", "shape": "10x2"}]}),
                "spec.validationConfig.expectedOutputs[1].shape",
            ),
            (
                serde_json::json!({"expectedOutputs": [{"cellTag": "t", "minValue": "high"}]}),
                "spec.validationConfig.expectedOutputs[0].minValue",
            ),
        ] {
            let e =
                check(&spec(serde_json::json!({"validationConfig": config}))).expect_err("refused");
            assert!(e.to_string().starts_with(starts), "{e}");
        }
        let e = check(&spec(serde_json::json!({"notebook": {"git": {"url": "https://x/r.git", "ref": "main"}, "path": "a.ipynb", "parameters": {"learning-rate": "0.1"}}})))
            .expect_err("not an identifier");
        assert!(
            e.to_string().starts_with(
                "spec.notebook.parameters[\"learning-rate\"]: not a Python identifier"
            ),
            "{e}"
        );
        let e = check(&spec(serde_json::json!({"goldenNotebook": {"git": {"url": "https://x/r.git", "ref": "main"}, "path": "g.ipynb", "parameters": {"a": "1"}}})))
            .expect_err("golden parameters");
        assert!(
            e.to_string().starts_with("spec.goldenNotebook.parameters"),
            "{e}"
        );
        let fine = check(&spec(serde_json::json!({"validationConfig": {
            "verifyAssertions": true, "requireExplicitExitCodes": false, "failOnStderr": true,
            "expectedOutputs": [{"cell": 2, "type": "float", "minValue": "0.8"}, {"name": "rows", "shape": "*,20"}]
        }})));
        assert!(fine.is_ok(), "{fine:?}");
    }
}
