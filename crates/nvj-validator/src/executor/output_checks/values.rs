//! The values the output checks judge - from the kernel's cell records or scrapbook's glue
//! outputs - and their bounds (type, shape, min/max, notEmpty).

use std::collections::BTreeMap;

use nbg_core::nvj::ExpectedOutput;
use serde::Deserialize;
use serde_json::Value as Json;

use super::cell_name;
use crate::executor::notebook::{Notebook, Output};
use crate::protocol::bounded;

/// Scrapbook's `glue` outputs: `application/scrapbook.scrap.<encoder>+json`.
const GLUE_PREFIX: &str = "application/scrapbook.scrap.";

/// What the kernel recorded of one cell's run (`cell_records.py`).
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct Record {
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
    pub(super) category: Option<String>,
    #[serde(default)]
    pub(super) message: Option<String>,
}

/// The kernel's records of a run, by execution count.
#[derive(Debug, Clone, Default)]
pub struct CellRecords {
    pub(super) values: BTreeMap<i64, Record>,
    pub(super) warnings: BTreeMap<i64, Vec<Record>>,
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
pub(super) struct Value {
    /// The names its type answers to (class and base classes, plain and with module).
    types: Vec<String>,
    shown: String,
    number: Option<f64>,
    shape: Option<Vec<u64>>,
    len: Option<u64>,
    none: bool,
}

impl Value {
    pub(super) fn from_record(r: &Record) -> Self {
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
    pub(super) fn describe(&self) -> String {
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

/// The last value glued under `name` (scrapbook: a later glue replaces an earlier one), with
/// the index of its cell; `Err` for an encoder the checks cannot read.
pub(super) fn glued(executed: &Notebook, name: &str) -> Option<Result<(i32, Value), String>> {
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

/// The first bound `value` breaks, as what the value is: `below minValue 0.8`.
pub(super) fn broken_bound(e: &ExpectedOutput, v: &Value) -> Option<String> {
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
