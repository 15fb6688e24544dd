//! Per-cell results of an executed notebook, from papermill's records in the notebook itself.

use nbg_core::nvj::{CellResult, CellStatus};

use super::bounded;
use super::notebook::{Notebook, Output, strip_ansi};

/// Limits that keep results small enough for the status (and the termination message).
pub const MAX_OUTPUT_CHARS: usize = 200;
pub const MAX_TRACEBACK_LINES: usize = 12;
pub const MAX_ERROR_CHARS: usize = 1500;

/// The first failing cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellFailure {
    /// Zero-based position in the notebook.
    pub index: i32,
    pub ename: String,
    pub evalue: String,
    /// The last lines of the traceback, without colour codes.
    pub traceback: String,
}

impl CellFailure {
    /// `cell 3 (cellIndex 2) raised ValueError: ...` - the human cell number and the API index.
    pub fn summary(&self) -> String {
        format!(
            "cell {} (cellIndex {}) raised {}: {}",
            self.index + 1,
            self.index,
            self.ename,
            self.evalue
        )
    }
}

fn go_duration(seconds: f64) -> String {
    format!("{:.3}s", seconds.max(0.0))
}

/// How papermill's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// papermill ended by itself (every cell ran, or one raised).
    Finished,
    /// papermill stopped with nbclient's `DeadKernelError`: the kernel process died (killed,
    /// out of memory, a crash in native code) while a cell ran.
    KernelDied,
    /// The runner stopped papermill at the timeout.
    TimedOut,
    /// The runner stopped papermill on SIGTERM/SIGINT.
    Stopped,
}

/// Results of every code cell, in notebook order; cells after a failure are `Skipped`.
pub fn cell_results(executed: &Notebook, end: RunEnd) -> (Vec<CellResult>, Option<CellFailure>) {
    let mut results = Vec::new();
    let mut failure: Option<CellFailure> = None;
    // papermill records the cell the kernel died in as `completed`: it is the last one started.
    let died_in = (end == RunEnd::KernelDied)
        .then(|| {
            executed
                .own_cells()
                .enumerate()
                .filter(|(_, c)| {
                    c.cell_type == "code"
                        && c.metadata
                            .papermill
                            .as_ref()
                            .is_some_and(|pm| pm.start_time.is_some())
                })
                .map(|(i, _)| i)
                .last()
        })
        .flatten();
    for (index, cell) in executed.own_cells().enumerate() {
        if cell.cell_type != "code" {
            continue;
        }
        let position = index;
        let index = i32::try_from(index).unwrap_or(i32::MAX);
        let pm = cell.metadata.papermill.clone().unwrap_or_default();
        if failure.is_none() && died_in == Some(position) {
            let f = CellFailure {
                index,
                ename: "DeadKernel".into(),
                evalue: "the kernel died while running this cell (killed, out of memory, or a crash in native code)".into(),
                traceback: String::new(),
            };
            results.push(CellResult {
                cell_index: index,
                status: CellStatus::Failure,
                execution_time: pm.duration.map(go_duration),
                output: None,
                error_message: Some(format!("{}: {}", f.ename, f.evalue)),
                checks: Vec::new(),
            });
            failure = Some(f);
            continue;
        }
        let error = cell.outputs.iter().find_map(|o| match o {
            Output::Error {
                ename,
                evalue,
                traceback,
            } => Some((ename.clone(), evalue.clone(), traceback.clone())),
            _ => None,
        });
        let failed =
            pm.status.as_deref() == Some("failed") || pm.exception == Some(true) || error.is_some();
        // A `completed` cell papermill never started was passed over (the kernel died first).
        let started = pm.start_time.is_some() || cell.execution_count.is_some();
        let executed_cell = (matches!(pm.status.as_deref(), Some("completed") | Some("failed"))
            && started)
            || (pm.status.is_none() && cell.execution_count.is_some());
        let text: String = cell
            .outputs
            .iter()
            .filter(|o| !matches!(o, Output::Error { .. }))
            .map(Output::text)
            .collect();
        let mut result = CellResult {
            cell_index: index,
            status: CellStatus::Success,
            execution_time: pm.duration.map(go_duration),
            output: Some(bounded(&strip_ansi(&text), MAX_OUTPUT_CHARS)).filter(|s| !s.is_empty()),
            error_message: None,
            checks: Vec::new(),
        };
        if failure.is_none() && pm.status.as_deref() == Some("running") {
            // The cell that was executing when the run was stopped.
            let (ename, why) = if end == RunEnd::Stopped {
                ("Stopped", "the run was stopped by a signal")
            } else {
                ("Timeout", "the notebook exceeded its timeout")
            };
            result.status = CellStatus::Failure;
            result.output = None;
            result.error_message = Some(format!("stopped while running: {why}"));
            failure = Some(CellFailure {
                index,
                ename: ename.into(),
                evalue: format!("the cell was running when {why}"),
                traceback: String::new(),
            });
        } else if failure.is_some() || (!executed_cell && !failed) {
            result.status = CellStatus::Skipped;
            result.output = None;
        } else if failed {
            let (ename, evalue, traceback) = error.unwrap_or_else(|| {
                (
                    "CellExecutionError".into(),
                    "the cell failed".into(),
                    vec![],
                )
            });
            let lines: Vec<String> = traceback
                .iter()
                .flat_map(|t| {
                    strip_ansi(t)
                        .lines()
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .collect();
            let tail = lines[lines.len().saturating_sub(MAX_TRACEBACK_LINES)..].join("\n");
            let f = CellFailure {
                index,
                ename,
                evalue,
                traceback: tail,
            };
            result.status = CellStatus::Failure;
            result.error_message = Some(bounded(
                &format!("{}: {}\n{}", f.ename, f.evalue, f.traceback),
                MAX_ERROR_CHARS,
            ));
            failure = Some(f);
        }
        results.push(result);
    }
    (results, failure)
}
