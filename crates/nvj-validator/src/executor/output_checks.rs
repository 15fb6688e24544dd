//! The output checks of `spec.validationConfig` (docs/nvj-validator.md, "Output checks"): values
//! the notebook produced (`expectedOutputs`, addressed by cell index, cell tag or glued name) and
//! what its cells wrote (`failOnStderr`, `failOnWarnings`, `detectSilentFailures`). Pure: a
//! function of the executed notebook and the kernel's cell records (`cell_records.py`).

use std::collections::BTreeMap;

use nbg_core::nvj::{ExpectedOutput, OutputCheck, ValidationConfig};
use serde::Deserialize;
use serde_json::Value as Json;

use super::notebook::{Cell, Notebook, Output, strip_ansi};
use crate::protocol::bounded;

/// The IPython startup file that writes the cell records.
pub const CELL_RECORDS_STARTUP: &str = include_str!("cell_records.py");

/// Scrapbook's `glue` outputs: `application/scrapbook.scrap.<encoder>+json`.
const GLUE_PREFIX: &str = "application/scrapbook.scrap.";

/// What the kernel recorded of one cell's run (`cell_records.py`).
#[derive(Debug, Clone, Default, Deserialize)]
struct Record {
    kind: String,
    execution_count: i64,
    #[serde(default)]
    none: bool,
    #[serde(default, rename = "type")]
    types: Vec<String>,
    #[serde(default)]
    repr: Option<String>,
    #[serde(default)]
    number: Option<f64>,
    #[serde(default)]
    shape: Option<Vec<u64>>,
    #[serde(default)]
    len: Option<u64>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// The kernel's records of a run, by execution count.
#[derive(Debug, Clone, Default)]
pub struct CellRecords {
    values: BTreeMap<i64, Record>,
    warnings: BTreeMap<i64, Vec<Record>>,
}

impl CellRecords {
    /// Parses the JSON lines `cell_records.py` wrote; a line that is not a record is skipped
    /// (the kernel may die mid-write).
    pub fn parse(text: &str) -> Self {
        let mut records = Self::default();
        for record in text
            .lines()
            .filter_map(|l| serde_json::from_str::<Record>(l).ok())
        {
            match record.kind.as_str() {
                "value" => {
                    records.values.insert(record.execution_count, record);
                }
                "warning" => records
                    .warnings
                    .entry(record.execution_count)
                    .or_default()
                    .push(record),
                _ => {}
            }
        }
        records
    }
}

/// A value as the checks see it.
#[derive(Debug, Clone, Default, PartialEq)]
struct Value {
    /// The names its type answers to (class and base classes, plain and with module).
    types: Vec<String>,
    shown: String,
    number: Option<f64>,
    shape: Option<Vec<u64>>,
    len: Option<u64>,
    none: bool,
}

impl Value {
    fn from_record(r: &Record) -> Self {
        Value {
            types: r.types.clone(),
            shown: r.repr.clone().unwrap_or_else(|| "None".into()),
            number: r.number,
            shape: r.shape.clone(),
            len: r.len,
            none: r.none,
        }
    }

    /// A glued JSON value: its JSON kind, as Python's `json` would load it.
    fn from_json(v: &Json) -> Self {
        let shown = bounded(&v.to_string(), 200);
        let named = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
        match v {
            Json::Null => Value {
                types: named(&["NoneType"]),
                shown,
                none: true,
                ..Value::default()
            },
            Json::Bool(_) => Value {
                types: named(&["bool", "int"]),
                shown,
                ..Value::default()
            },
            Json::Number(n) => Value {
                types: named(if n.is_f64() { &["float"] } else { &["int"] }),
                shown,
                number: n.as_f64(),
                ..Value::default()
            },
            Json::String(s) => Value {
                types: named(&["str"]),
                shown,
                len: Some(s.chars().count() as u64),
                ..Value::default()
            },
            Json::Array(items) => {
                let rows: Vec<usize> = items
                    .iter()
                    .filter_map(|i| i.as_array().map(Vec::len))
                    .collect();
                let same = rows.len() == items.len() && rows.windows(2).all(|w| w[0] == w[1]);
                let shape = match rows.first() {
                    Some(cols) if same => vec![items.len() as u64, *cols as u64],
                    _ => vec![items.len() as u64],
                };
                Value {
                    types: named(&["list"]),
                    shown,
                    shape: Some(shape),
                    len: Some(items.len() as u64),
                    ..Value::default()
                }
            }
            Json::Object(map) => Value {
                types: named(&["dict"]),
                shown,
                len: Some(map.len() as u64),
                ..Value::default()
            },
        }
    }

    fn type_name(&self) -> &str {
        self.types.first().map(String::as_str).unwrap_or("None")
    }

    /// `0.9512 (float)`, `shape 1000,20 (DataFrame)`.
    fn describe(&self) -> String {
        match &self.shape {
            Some(s) if !s.is_empty() && self.number.is_none() => {
                format!("shape {} ({})", shape_text(s), self.type_name())
            }
            _ => format!("{} ({})", bounded(&self.shown, 120), self.type_name()),
        }
    }
}

fn shape_text(shape: &[u64]) -> String {
    shape
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The value of an expected output and the index of its cell, or why there is none (with the
/// cell, where there is one).
enum Located {
    Found(i32, Value),
    Missing(Option<i32>, String),
}

/// The outcome of every check of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checked {
    /// Each check, under the index of the cell it is about (`None`: no such cell).
    pub by_cell: BTreeMap<Option<i32>, Vec<OutputCheck>>,
    /// The failed checks' messages, in spec order.
    pub failures: Vec<String>,
    /// How many checks ran.
    pub count: usize,
    /// `accuracy 0.95 (float)` for each passed value check, for the run's message.
    pub passed_values: Vec<String>,
}

impl Checked {
    fn push(&mut self, cell: Option<i32>, check: OutputCheck, failure: Option<String>) {
        self.count += 1;
        if let Some(f) = failure {
            self.failures.push(f);
        }
        self.by_cell.entry(cell).or_default().push(check);
    }
}

/// Whether `cfg` asks for anything that needs the kernel's cell records.
pub fn needs_records(cfg: &ValidationConfig) -> bool {
    cfg.fails_on_warnings()
        || cfg
            .expected_outputs
            .iter()
            .any(|e| e.cell.is_some() || e.cell_tag.is_some())
}

/// Whether `cfg` asks for any check at all.
pub fn any(cfg: &ValidationConfig) -> bool {
    !cfg.expected_outputs.is_empty()
        || cfg.fails_on_stderr()
        || cfg.fails_on_warnings()
        || cfg.detects_silent_failures()
}

/// `cell 3 (cellIndex 2)`.
fn cell_name(index: i32) -> String {
    format!("cell {} (cellIndex {index})", index + 1)
}

/// A cell's stderr, its stream outputs joined.
fn stderr_of(cell: &Cell) -> String {
    strip_ansi(
        &cell
            .outputs
            .iter()
            .filter_map(|o| match o {
                Output::Stream { name, text } if name == "stderr" => Some(text.as_str()),
                _ => None,
            })
            .collect::<String>(),
    )
}

/// The last value glued under `name` (scrapbook: a later glue replaces an earlier one), with
/// the index of its cell; `Err` for an encoder the checks cannot read.
fn glued(executed: &Notebook, name: &str) -> Option<Result<(i32, Value), String>> {
    let mut found = None;
    for (index, cell) in executed.own_cells().enumerate() {
        for output in &cell.outputs {
            let Output::DisplayData { data } = output else {
                continue;
            };
            for (mime, payload) in data {
                let Some(encoder) = mime
                    .strip_prefix(GLUE_PREFIX)
                    .and_then(|m| m.strip_suffix("+json"))
                else {
                    continue;
                };
                if payload.get("name").and_then(Json::as_str) != Some(name) {
                    continue;
                }
                let index = i32::try_from(index).unwrap_or(i32::MAX);
                let data = payload.get("data").unwrap_or(&Json::Null);
                found = Some(match encoder {
                    "json" => Ok((index, Value::from_json(data))),
                    "text" => Ok((
                        index,
                        Value::from_json(&Json::String(
                            data.as_str().unwrap_or_default().to_string(),
                        )),
                    )),
                    other => Err(format!(
                        "{} glued {name:?} with scrapbook's {other:?} encoder, which the checks \
                         cannot read: glue it with encoder=\"json\"",
                        cell_name(index)
                    )),
                });
            }
        }
    }
    found
}

fn locate(executed: &Notebook, records: &CellRecords, e: &ExpectedOutput) -> Located {
    let cells: Vec<&Cell> = executed.own_cells().collect();
    let value_of = |index: usize| -> Located {
        let at = i32::try_from(index).unwrap_or(i32::MAX);
        let cell = cells[index];
        if cell.cell_type != "code" {
            return Located::Missing(Some(at), format!("{} is not a code cell", cell_name(at)));
        }
        match cell.execution_count.and_then(|n| records.values.get(&n)) {
            Some(r) => Located::Found(at, Value::from_record(r)),
            None => Located::Missing(
                Some(at),
                format!("{} did not run, so it has no result", cell_name(at)),
            ),
        }
    };
    if let Some(cell) = e.cell {
        let index = usize::try_from(cell).unwrap_or(usize::MAX);
        if index >= cells.len() {
            return Located::Missing(
                None,
                format!(
                    "the notebook has {} cells, no cellIndex {cell}",
                    cells.len()
                ),
            );
        }
        return value_of(index);
    }
    if let Some(tag) = &e.cell_tag {
        let tagged: Vec<usize> = cells
            .iter()
            .enumerate()
            .filter(|(_, c)| c.metadata.tags.iter().any(|t| t == tag))
            .map(|(i, _)| i)
            .collect();
        return match tagged.as_slice() {
            [one] => value_of(*one),
            [] => Located::Missing(None, format!("no cell is tagged {tag:?}")),
            many => Located::Missing(
                None,
                format!(
                    "{} cells are tagged {tag:?} (cellIndex {}): tag exactly one",
                    many.len(),
                    many.iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        };
    }
    let name = e.name.as_deref().unwrap_or_default();
    match glued(executed, name) {
        Some(Ok((cell, value))) => Located::Found(cell, value),
        Some(Err(why)) => Located::Missing(None, why),
        None => Located::Missing(
            None,
            format!("the notebook glued no value named {name:?} (scrapbook.glue({name:?}, value))"),
        ),
    }
}

/// The first bound `value` breaks, as what the value is: `below minValue 0.8`.
fn broken_bound(e: &ExpectedOutput, v: &Value) -> Option<String> {
    if let Some(t) = &e.r#type {
        let answers = v.types.iter().any(|n| n == t || same_public_name(n, t))
            || (t == "number" && v.number.is_some());
        if !answers {
            return Some(format!("not of type {t}"));
        }
    }
    if let Some(expected) = &e.shape {
        let want: Vec<&str> = expected.split(',').map(str::trim).collect();
        let have = v.shape.clone().or(v.len.map(|n| vec![n]));
        let fits = have.as_ref().is_some_and(|h| {
            h.len() == want.len()
                && h.iter()
                    .zip(&want)
                    .all(|(n, w)| *w == "*" || *w == "-1" || w.parse() == Ok(*n))
        });
        if !fits {
            return Some(format!("not of shape {}", want.join(",")));
        }
    }
    for (bound, field, below) in [
        (&e.min_value, "minValue", true),
        (&e.max_value, "maxValue", false),
    ] {
        let Some(bound) = bound else { continue };
        let Ok(limit) = bound.trim().parse::<f64>() else {
            return Some(format!("{field} {bound:?} is not a number"));
        };
        let Some(n) = v.number else {
            return Some(format!("not a number, as {field} needs"));
        };
        if below && n < limit {
            return Some(format!("below minValue {bound}"));
        }
        if !below && n > limit {
            return Some(format!("above maxValue {bound}"));
        }
    }
    if e.not_empty == Some(true) {
        let empty = v.none || v.len == Some(0) || v.shape.as_ref().is_some_and(|s| s.contains(&0));
        if empty {
            return Some("empty, and notEmpty is set".into());
        }
    }
    None
}

/// Whether `expected`, a dotted name, names the class `qualified` (`module.Class`) by its package:
/// `pandas.DataFrame` for `pandas.core.frame.DataFrame`, the name users import it by.
fn same_public_name(qualified: &str, expected: &str) -> bool {
    match (qualified.split_once('.'), expected.split_once('.')) {
        (Some((package, _)), Some((want_package, _))) => {
            package == want_package && qualified.rsplit('.').next() == expected.rsplit('.').next()
        }
        _ => false,
    }
}

/// How an expected output is addressed, for messages: `expectedOutputs[0] (cell tagged "metrics")`.
fn addressed(i: usize, e: &ExpectedOutput) -> String {
    let at = match (&e.cell, &e.cell_tag, &e.name) {
        (Some(c), _, _) => format!("cellIndex {c}"),
        (_, Some(t), _) => format!("the cell tagged {t:?}"),
        (_, _, Some(n)) => format!("the value glued as {n:?}"),
        _ => "nothing".into(),
    };
    format!("expectedOutputs[{i}] ({at})")
}

/// Runs every check `cfg` asks for on an executed notebook whose cells all succeeded.
pub fn check(executed: &Notebook, records: &CellRecords, cfg: &ValidationConfig) -> Checked {
    let mut out = Checked::default();
    for (i, e) in cfg.expected_outputs.iter().enumerate() {
        let check = format!("expectedOutputs[{i}]");
        let (cell, value) = match locate(executed, records, e) {
            Located::Found(c, v) => (c, v),
            Located::Missing(cell, why) => {
                out.push(
                    cell,
                    OutputCheck {
                        check,
                        passed: false,
                        value: None,
                        message: Some(why.clone()),
                    },
                    Some(format!("{}: {why}", addressed(i, e))),
                );
                continue;
            }
        };
        let failure = broken_bound(e, &value);
        let shown = value.describe();
        if failure.is_none() {
            let label = e
                .name
                .clone()
                .or(e.cell_tag.clone())
                .unwrap_or_else(|| format!("cellIndex {cell}"));
            out.passed_values.push(format!("{label} {shown}"));
        }
        out.push(
            Some(cell),
            OutputCheck {
                check,
                passed: failure.is_none(),
                value: Some(shown.clone()),
                message: failure.clone(),
            },
            failure.map(|f| format!("{}: {shown} is {f}", addressed(i, e))),
        );
    }
    let streams = [
        ("failOnStderr", cfg.fails_on_stderr()),
        ("failOnWarnings", cfg.fails_on_warnings()),
        ("detectSilentFailures", cfg.detects_silent_failures()),
    ];
    for (index, cell) in executed.own_cells().enumerate() {
        if cell.cell_type != "code" {
            continue;
        }
        let at = i32::try_from(index).unwrap_or(i32::MAX);
        let stderr = stderr_of(cell);
        for (check, on) in streams {
            if !on {
                continue;
            }
            let failure = match check {
                "failOnStderr" => stderr
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .map(|first| format!("wrote to stderr: {}", bounded(first.trim(), 200))),
                "failOnWarnings" => cell
                    .execution_count
                    .and_then(|n| records.warnings.get(&n))
                    .and_then(|w| w.first())
                    .map(|w| {
                        format!(
                            "raised a warning: {}: {}",
                            w.category.as_deref().unwrap_or("Warning"),
                            bounded(w.message.as_deref().unwrap_or_default(), 200)
                        )
                    }),
                _ => silent_failure(&stderr),
            };
            // Cells that pass the stream checks are not listed: one entry per check and cell
            // would crowd the status of a long notebook.
            if let Some(f) = failure {
                out.push(
                    Some(at),
                    OutputCheck {
                        check: check.into(),
                        passed: false,
                        value: None,
                        message: Some(f.clone()),
                    },
                    Some(format!("{check}: {} {f}", cell_name(at))),
                );
            } else {
                out.count += 1;
            }
        }
    }
    out
}

/// A Python traceback printed to stderr by a cell that did not raise (an exception caught and
/// logged): its last line, the exception.
fn silent_failure(stderr: &str) -> Option<String> {
    let at = stderr.find("Traceback (most recent call last):")?;
    let exception = stderr[at..]
        .lines()
        .skip(1)
        .find(|l| !l.starts_with(' ') && !l.trim().is_empty())
        .unwrap_or("an exception");
    Some(format!(
        "printed a traceback without raising: {}",
        bounded(exception.trim(), 200)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
