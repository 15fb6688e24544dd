//! The output checks of `spec.validationConfig` (docs/nvj-validator.md, "Output checks"): values
//! the notebook produced (`expectedOutputs`, addressed by cell index, cell tag or glued name) and
//! what its cells wrote (`failOnStderr`, `failOnWarnings`, `detectSilentFailures`). Pure: a
//! function of the executed notebook and the kernel's cell records (`cell_records.py`); the
//! values and their bounds are in [`values`].

use std::collections::BTreeMap;

use super::notebook::{Cell, Notebook, Output, strip_ansi};
use crate::protocol::bounded;
use nbg_core::nvj::{ExpectedOutput, OutputCheck, ValidationConfig};

#[cfg(test)]
mod tests;
mod values;

pub use values::CellRecords;
use values::{Value, broken_bound, glued};

/// The IPython startup file that writes the cell records.
pub const CELL_RECORDS_STARTUP: &str = include_str!("cell_records.py");

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
    // Each check of what a cell wrote: its name, whether it is on, and what it finds.
    type Finds = fn(&Cell, &str, &CellRecords) -> Option<String>;
    let wrote_to_stderr: Finds = |_, stderr, _| {
        stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .map(|first| format!("wrote to stderr: {}", bounded(first.trim(), 200)))
    };
    let raised_a_warning: Finds = |cell, _, records| {
        cell.execution_count
            .and_then(|n| records.warnings.get(&n))
            .and_then(|w| w.first())
            .map(|w| {
                format!(
                    "raised a warning: {}: {}",
                    w.category.as_deref().unwrap_or("Warning"),
                    bounded(w.message.as_deref().unwrap_or_default(), 200)
                )
            })
    };
    let printed_a_traceback: Finds = |_, stderr, _| silent_failure(stderr);
    let streams = [
        ("failOnStderr", cfg.fails_on_stderr(), wrote_to_stderr),
        ("failOnWarnings", cfg.fails_on_warnings(), raised_a_warning),
        (
            "detectSilentFailures",
            cfg.detects_silent_failures(),
            printed_a_traceback,
        ),
    ];
    for (index, cell) in executed.own_cells().enumerate() {
        if cell.cell_type != "code" {
            continue;
        }
        let at = i32::try_from(index).unwrap_or(i32::MAX);
        let stderr = stderr_of(cell);
        for (check, on, finds) in streams {
            if !on {
                continue;
            }
            let failure = finds(cell, &stderr, records);
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
