use super::*;
use serde_json::{Value as Json, json};

fn notebook(cells: Json) -> Notebook {
    Notebook::parse("t", &json!({"nbformat": 4, "cells": cells}).to_string()).expect("nb")
}

fn code(count: i64, tags: &[&str], outputs: Json) -> Json {
    json!({"cell_type": "code", "source": "", "execution_count": count,
           "metadata": {"tags": tags}, "outputs": outputs})
}

fn glue(name: &str, encoder: &str, data: Json) -> Json {
    json!({"output_type": "display_data", "metadata": {"scrapbook": {"name": name}},
           "data": {format!("application/scrapbook.scrap.{encoder}+json"):
                    {"name": name, "data": data, "encoder": encoder, "version": 1}}})
}

fn stderr(text: &str) -> Json {
    json!({"output_type": "stream", "name": "stderr", "text": text})
}

fn config(v: Json) -> ValidationConfig {
    serde_json::from_value(v).expect("config")
}

/// A notebook of a markdown cell, a cell whose result is a 1000x20 DataFrame (tagged
/// `features`), a cell whose result is numpy's 0.95 and which glues `accuracy` and `labels`.
fn trained() -> (Notebook, CellRecords) {
    let nb = notebook(json!([
        {"cell_type": "markdown", "source": "# Train", "metadata": {}},
        code(1, &["features"], json!([])),
        code(2, &[], json!([
            glue("accuracy", "json", json!(0.95)),
            glue("labels", "json", json!([[0, 1], [1, 0], [1, 1]])),
            glue("frame", "pandas", json!("AAAA")),
        ])),
    ]));
    let records = CellRecords::parse(
        &[
            json!({"kind": "value", "execution_count": 1,
                   "type": ["DataFrame", "pandas.core.frame.DataFrame", "NDFrame"],
                   "repr": "   a  b\n0  1  2", "shape": [1000, 20], "len": 1000}),
            json!({"kind": "value", "execution_count": 2,
                   "type": ["float64", "numpy.float64", "floating", "float", "builtins.float"],
                   "repr": "np.float64(0.95)", "number": 0.95, "shape": []}),
            json!({"kind": "warning", "execution_count": 2, "category": "FutureWarning",
                   "message": "the default will change"}),
        ]
        .iter()
        .map(|r| r.to_string())
        .chain(["{not json".to_string()])
        .collect::<Vec<_>>()
        .join("\n"),
    );
    (nb, records)
}

#[test]
fn values_by_index_tag_and_name_pass_within_their_bounds() {
    let (nb, records) = trained();
    let cfg = config(json!({"expectedOutputs": [
        {"cell": 2, "type": "number", "minValue": "0.9", "maxValue": "1"},
        {"cellTag": "features", "type": "DataFrame", "shape": "*,20", "notEmpty": true},
        {"cellTag": "features", "type": "pandas.DataFrame", "shape": "-1,20"},
        {"name": "accuracy", "type": "float", "minValue": "0.8"},
        {"name": "labels", "shape": "3,2"},
    ]}));
    let checked = check(&nb, &records, &cfg);
    assert!(checked.failures.is_empty(), "{:?}", checked.failures);
    assert_eq!(checked.count, 5);
    assert_eq!(
        checked.by_cell[&Some(1)][0].value.as_deref(),
        Some("shape 1000,20 (DataFrame)")
    );
    assert_eq!(checked.by_cell[&Some(2)].len(), 3);
    assert_eq!(
        checked.passed_values[3], "accuracy 0.95 (float)",
        "{:?}",
        checked.passed_values
    );
}

#[test]
fn a_broken_bound_names_the_check_the_value_and_the_bound() {
    let (nb, records) = trained();
    let cfg = config(json!({"expectedOutputs": [
        {"name": "accuracy", "minValue": "0.97"},
        {"cell": 2, "maxValue": "0.5"},
        {"cellTag": "features", "shape": "1000,21"},
        {"cellTag": "features", "type": "ndarray"},
        {"cellTag": "features", "type": "numpy.DataFrame"},
        {"cellTag": "features", "minValue": "1"},
    ]}));
    let checked = check(&nb, &records, &cfg);
    assert_eq!(
        checked.failures,
        vec![
            "expectedOutputs[0] (the value glued as \"accuracy\"): 0.95 (float) is below minValue 0.97",
            "expectedOutputs[1] (cellIndex 2): np.float64(0.95) (float64) is above maxValue 0.5",
            "expectedOutputs[2] (the cell tagged \"features\"): shape 1000,20 (DataFrame) is not of shape 1000,21",
            "expectedOutputs[3] (the cell tagged \"features\"): shape 1000,20 (DataFrame) is not of type ndarray",
            "expectedOutputs[4] (the cell tagged \"features\"): shape 1000,20 (DataFrame) is not of type numpy.DataFrame",
            "expectedOutputs[5] (the cell tagged \"features\"): shape 1000,20 (DataFrame) is not a number, as minValue needs",
        ]
    );
    let failed = &checked.by_cell[&Some(2)][0];
    assert!(!failed.passed);
    assert_eq!(failed.message.as_deref(), Some("below minValue 0.97"));
}

#[test]
fn a_missing_value_says_why() {
    let (nb, records) = trained();
    let twice = notebook(json!([
        code(1, &["t"], json!([])),
        code(2, &["t"], json!([]))
    ]));
    let cfg = config(json!({"expectedOutputs": [
        {"cellTag": "metrics", "notEmpty": true},
        {"name": "loss", "notEmpty": true},
        {"name": "frame", "notEmpty": true},
        {"cell": 7, "notEmpty": true},
        {"cell": 0, "notEmpty": true},
    ]}));
    let failures = check(&nb, &records, &cfg).failures;
    assert!(
        failures[0].ends_with("no cell is tagged \"metrics\""),
        "{failures:?}"
    );
    assert!(
        failures[1].contains("glued no value named \"loss\""),
        "{failures:?}"
    );
    assert!(
        failures[2].contains("glue it with encoder=\"json\""),
        "{failures:?}"
    );
    assert!(
        failures[3].ends_with("the notebook has 3 cells, no cellIndex 7"),
        "{failures:?}"
    );
    assert!(
        failures[4].ends_with("cell 1 (cellIndex 0) is not a code cell"),
        "{failures:?}"
    );
    let cfg = config(json!({"expectedOutputs": [{"cellTag": "t", "notEmpty": true}]}));
    let failures = check(&twice, &CellRecords::default(), &cfg).failures;
    assert!(
        failures[0].ends_with("2 cells are tagged \"t\" (cellIndex 0, 1): tag exactly one"),
        "{failures:?}"
    );
}

#[test]
fn empty_values_fail_not_empty() {
    let nb = notebook(json!([
        code(1, &[], json!([])),
        code(2, &[], json!([glue("rows", "json", json!([]))]))
    ]));
    let records = CellRecords::parse(
        &json!({"kind": "value", "execution_count": 1, "none": true}).to_string(),
    );
    let cfg = config(json!({"expectedOutputs": [
        {"cell": 0, "notEmpty": true}, {"name": "rows", "notEmpty": true}]}));
    let failures = check(&nb, &records, &cfg).failures;
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(
        failures
            .iter()
            .all(|f| f.ends_with("is empty, and notEmpty is set")),
        "{failures:?}"
    );
}

#[test]
fn stderr_warnings_and_silent_failures_fail_their_cell() {
    let (_, records) = trained();
    let nb = notebook(json!([
        code(
            1,
            &[],
            json!([stderr(
                "Traceback (most recent call last):\n  File \"x\", line 1\nKeyError: 'x'\n"
            )])
        ),
        code(
            2,
            &[],
            json!([stderr("/x.py:3: FutureWarning: the default will change\n")])
        ),
        code(3, &[], json!([])),
    ]));
    let strict = check(&nb, &records, &config(json!({"strictMode": true})));
    assert_eq!(
        strict.failures,
        vec![
            "failOnStderr: cell 1 (cellIndex 0) wrote to stderr: Traceback (most recent call last):",
            "detectSilentFailures: cell 1 (cellIndex 0) printed a traceback without raising: KeyError: 'x'",
            "failOnStderr: cell 2 (cellIndex 1) wrote to stderr: /x.py:3: FutureWarning: the default will change",
            "failOnWarnings: cell 2 (cellIndex 1) raised a warning: FutureWarning: the default will change",
        ]
    );
    assert_eq!(strict.count, 9);
    // strictMode with one of them turned off; the levels.
    let some = check(
        &nb,
        &records,
        &config(json!({"strictMode": true, "failOnStderr": false})),
    );
    assert_eq!(some.failures.len(), 2, "{:?}", some.failures);
    assert_eq!(
        check(&nb, &records, &config(json!({"level": "learning"}))).count,
        0
    );
    assert_eq!(
        check(&nb, &records, &config(json!({"level": "development"})))
            .failures
            .len(),
        1
    );
    assert_eq!(
        check(&nb, &records, &config(json!({"level": "staging"})))
            .failures
            .len(),
        2
    );
    assert_eq!(
        check(&nb, &records, &config(json!({"level": "production"})))
            .failures
            .len(),
        4
    );
    assert!(!any(&config(json!({"level": "learning"}))));
}

#[test]
fn records_are_needed_only_for_cells_and_warnings() {
    assert!(!needs_records(&config(
        json!({"expectedOutputs": [{"name": "a", "notEmpty": true}], "failOnStderr": true})
    )));
    assert!(needs_records(&config(
        json!({"expectedOutputs": [{"cellTag": "a", "notEmpty": true}]})
    )));
    assert!(needs_records(&config(json!({"level": "staging"}))));
}
