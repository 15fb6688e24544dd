//! The output checks of spec.validationConfig (`nvj-validator run --checks`) with real papermill
//! and a real IPython kernel: the values the kernel records for cells addressed by index and by
//! tag, the values the notebook glues with scrapbook by name, the warnings it shows, and what
//! cells write to stderr.

mod common;

use common::{dir, python, run, tagged_notebook};

fn checks(d: &std::path::Path, yaml: &str) -> String {
    let path = d.join("checks.yaml");
    std::fs::write(&path, yaml).expect("write checks");
    path.display().to_string()
}

#[test]
fn values_by_index_and_tag_pass_and_fail_naming_the_bound() {
    let _ = python();
    let d = dir("checks-values");
    let nb = d.join("train.ipynb");
    tagged_notebook(
        &nb,
        &[
            (&[], "import fractions\nrows = [[1, 2], [3, 4], [5, 6]]"),
            (&["features"], "rows"),
            (&[], "accuracy = fractions.Fraction(19, 20)\naccuracy"),
            (&["metrics"], "print('done')"),
        ],
    );
    let nb = nb.display().to_string();
    let passing = checks(
        &d,
        "expectedOutputs:\n\
         - {cellTag: features, type: list, shape: '3,2', notEmpty: true}\n\
         - {cell: 2, type: number, minValue: '0.9', maxValue: '1'}\n\
         - {cell: 2, type: numbers.Rational}\n",
    );
    let (code, report) = run(&[&nb, "--checks", &passing]);
    assert_eq!(
        (code, report["outcome"].as_str()),
        (0, Some("Succeeded")),
        "{report}"
    );
    let message = report["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("3 output checks passed (features shape 3,2 (list), cellIndex 2 Fraction(19, 20) (Fraction)"),
        "{message}"
    );
    let checked = &report["cells"][1]["checks"][0];
    assert_eq!(checked["check"], "expectedOutputs[0]");
    assert_eq!(checked["passed"], true);
    assert_eq!(checked["value"], "shape 3,2 (list)");

    let failing = checks(
        &d,
        "expectedOutputs:\n\
         - {cell: 2, minValue: '0.97'}\n\
         - {cellTag: features, shape: '3,3'}\n\
         - {cellTag: metrics, notEmpty: true}\n\
         - {cellTag: missing, notEmpty: true}\n",
    );
    let (code, report) = run(&[&nb, "--checks", &failing]);
    assert_eq!(
        (code, report["outcome"].as_str()),
        (6, Some("OutputCheckFailed")),
        "{report}"
    );
    let message = report["message"].as_str().unwrap_or_default();
    for part in [
        "4 of 4 output checks failed",
        "expectedOutputs[0] (cellIndex 2): Fraction(19, 20) (Fraction) is below minValue 0.97",
        "expectedOutputs[1] (the cell tagged \"features\"): shape 3,2 (list) is not of shape 3,3",
        "expectedOutputs[2] (the cell tagged \"metrics\"): None (None) is empty, and notEmpty is set",
        "expectedOutputs[3] (the cell tagged \"missing\"): no cell is tagged \"missing\"",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
    assert_eq!(
        report["cells"][2]["checks"][0]["message"],
        "below minValue 0.97"
    );
}

#[test]
fn warnings_stderr_and_silent_failures_fail_the_cell_that_wrote_them() {
    let d = dir("checks-streams");
    let nb = d.join("streams.ipynb");
    tagged_notebook(
        &nb,
        &[
            (&[], "import warnings, traceback, sys"),
            (
                &[],
                "warnings.warn('the default will change', FutureWarning)",
            ),
            (
                &[],
                "try:\n    {}['x']\nexcept KeyError:\n    traceback.print_exc()",
            ),
            (&[], "print('fine')"),
        ],
    );
    let nb = nb.display().to_string();
    let (code, report) = run(&[&nb, "--checks", &checks(&d, "level: staging\n")]);
    assert_eq!(
        (code, report["outcome"].as_str()),
        (6, Some("OutputCheckFailed")),
        "{report}"
    );
    let message = report["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("failOnWarnings: cell 2 (cellIndex 1) raised a warning: FutureWarning: the default will change"),
        "{message}"
    );
    assert!(
        message.contains("detectSilentFailures: cell 3 (cellIndex 2) printed a traceback without raising: KeyError: 'x'"),
        "{message}"
    );
    assert!(
        !message.contains("failOnStderr"),
        "staging does not judge stderr: {message}"
    );
    let (code, report) = run(&[
        &nb,
        "--checks",
        &checks(
            &d,
            "strictMode: true\ndetectSilentFailures: false\nfailOnWarnings: false\n",
        ),
    ]);
    assert_eq!(code, 6, "{report}");
    let message = report["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "2 of 4 output checks failed: failOnStderr: cell 2 (cellIndex 1) wrote to stderr:"
        ),
        "{message}"
    );
    // Nothing asked: the notebook passes, and a learning level asks nothing.
    let (code, report) = run(&[&nb, "--checks", &checks(&d, "level: learning\n")]);
    assert_eq!(code, 0, "{report}");
}

/// Values addressed by name: what the notebook recorded with scrapbook's `glue` (its JSON and
/// text encoders), found wherever the cell that glued them moves.
#[test]
fn values_glued_by_name_pass_and_fail_naming_the_bound() {
    let _ = python();
    let d = dir("checks-glued");
    let nb = d.join("evaluate.ipynb");
    tagged_notebook(
        &nb,
        &[
            (&[], "import scrapbook as sb\naccuracy = 19 / 20"),
            (
                &[],
                "sb.glue('accuracy', accuracy)\nsb.glue('classes', ['legit', 'fraud'])\nsb.glue('model', 'LogisticRegression', encoder='text')",
            ),
        ],
    );
    let nb = nb.display().to_string();
    let passing = checks(
        &d,
        "expectedOutputs:\n\
         - {name: accuracy, type: float, minValue: '0.9', maxValue: '1'}\n\
         - {name: classes, type: list, shape: '2', notEmpty: true}\n\
         - {name: model, type: str, notEmpty: true}\n",
    );
    let (code, report) = run(&[&nb, "--checks", &passing]);
    assert_eq!(
        (code, report["outcome"].as_str()),
        (0, Some("Succeeded")),
        "{report}"
    );
    let message = report["message"].as_str().unwrap_or_default();
    assert!(message.contains("3 output checks passed"), "{message}");
    let glued = &report["cells"][1]["checks"];
    assert_eq!(glued[0]["check"], "expectedOutputs[0]", "{report}");
    assert_eq!(glued[0]["value"], "0.95 (float)");

    let failing = checks(
        &d,
        "expectedOutputs:\n\
         - {name: accuracy, minValue: '0.97'}\n\
         - {name: classes, shape: '3'}\n\
         - {name: precision, notEmpty: true}\n",
    );
    let (code, report) = run(&[&nb, "--checks", &failing]);
    assert_eq!(
        (code, report["outcome"].as_str()),
        (6, Some("OutputCheckFailed")),
        "{report}"
    );
    let message = report["message"].as_str().unwrap_or_default();
    for part in [
        "3 of 3 output checks failed",
        "expectedOutputs[0] (the value glued as \"accuracy\"): 0.95 (float) is below minValue 0.97",
        "expectedOutputs[1] (the value glued as \"classes\"):",
        "expectedOutputs[2] (the value glued as \"precision\"): the notebook glued no value named \"precision\"",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
}

#[test]
fn checks_without_a_meaning_are_refused_before_the_run() {
    let d = dir("checks-refused");
    let nb = d.join("nb.ipynb");
    tagged_notebook(&nb, &[(&[], "1")]);
    let manifest = checks(
        &d,
        "apiVersion: mlops.mlops.dev/v1alpha1\nkind: NotebookValidationJob\nspec:\n  validationConfig:\n    requireExplicitExitCodes: true\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nvj-validator"))
        .args([
            "run",
            &nb.display().to_string(),
            "--checks",
            &manifest,
            "--python",
            python(),
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("validationConfig.requireExplicitExitCodes: cannot be honoured"),
        "{stderr}"
    );
}

#[test]
fn parameters_reach_the_notebook_and_cell_indices_stay_those_in_git() {
    let d = dir("checks-parameters");
    let nb = d.join("params.ipynb");
    tagged_notebook(
        &nb,
        &[
            (&["parameters"], "epochs = 1\nname = 'x'"),
            (&[], "epochs * 10"),
        ],
    );
    let nb = nb.display().to_string();
    let check = checks(
        &d,
        "expectedOutputs:\n- {cell: 1, type: int, minValue: '25'}\n",
    );
    let (code, report) = run(&[
        &nb,
        "--parameter",
        "epochs=3",
        "--parameter",
        "name=march",
        "--checks",
        &check,
    ]);
    assert_eq!(code, 0, "{report}");
    let cells = report["cells"].as_array().expect("cells");
    // Papermill's injected-parameters cell is not one of the notebook's.
    assert_eq!(cells.len(), 2, "{report}");
    assert_eq!(cells[1]["cellIndex"], 1);
    assert_eq!(cells[1]["output"], "30");
    // Without the parameter the notebook's own value fails the bound.
    let (code, report) = run(&[&nb, "--checks", &check]);
    assert_eq!(code, 6, "{report}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nvj-validator"))
        .args(["run", &nb, "--parameter", "1x=2", "--python", python()])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a Python identifier"));
}
