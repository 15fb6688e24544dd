//! The run report: what the runner found, passed to the controller through the container's
//! termination message - never through logs. The kubelet keeps at most 4096 bytes of it, so the
//! report is JSON when it fits, gzip+base64 when that fits, and otherwise degrades step by step
//! (outputs, then passing cells, then diffs) to a summary that always fits.

use std::io::{Read, Write};

use base64::Engine;
use nbg_core::nvj::{CellResult, CellStatus, ComparisonResult};
use serde::{Deserialize, Serialize};

/// The kubelet's limit for a termination message.
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;
const GZIP_PREFIX: &str = "nbg-gz:";

/// How a run ended. The exit code of the runner mirrors it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Every cell ran and the golden comparison (if any) matched.
    Succeeded,
    /// A cell raised: deterministic, not retried.
    CellFailed,
    /// The outputs differ from the golden notebook: deterministic, not retried.
    GoldenMismatch,
    /// The notebook ran longer than `spec.timeout`.
    Timeout,
    /// Every cell ran, but a check of `spec.validationConfig` failed: deterministic, not retried.
    OutputCheckFailed,
    /// The spec or the repository content is wrong (bad ref, missing notebook, bad regex,
    /// authentication refused): deterministic, not retried.
    InvalidInput,
    /// Something outside the notebook failed (git host unreachable, kernel could not start):
    /// retried.
    Infrastructure,
}

impl Outcome {
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Succeeded => 0,
            Outcome::CellFailed => 1,
            Outcome::GoldenMismatch => 2,
            Outcome::Timeout => 3,
            Outcome::InvalidInput => 4,
            Outcome::Infrastructure => 5,
            Outcome::OutputCheckFailed => 6,
        }
    }

    /// The condition/Event reason for this outcome.
    pub fn reason(self) -> &'static str {
        match self {
            Outcome::Succeeded => "ValidationSucceeded",
            Outcome::CellFailed => "CellFailed",
            Outcome::GoldenMismatch => "GoldenMismatch",
            Outcome::Timeout => "Timeout",
            Outcome::InvalidInput => "InvalidInput",
            Outcome::Infrastructure => "InfrastructureFailure",
            Outcome::OutputCheckFailed => "OutputCheckFailed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub outcome: Outcome,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cells: Vec<CellResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<ComparisonResult>,
    /// Counts that survive degradation.
    #[serde(default)]
    pub code_cells: i32,
    #[serde(default)]
    pub succeeded_cells: i32,
    /// Set when details were dropped to fit the termination message.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl RunReport {
    pub fn new(outcome: Outcome, message: impl Into<String>) -> Self {
        Self {
            outcome,
            message: message.into(),
            cells: vec![],
            comparison: None,
            code_cells: 0,
            succeeded_cells: 0,
            truncated: false,
        }
    }

    pub fn with_cells(mut self, cells: Vec<CellResult>) -> Self {
        self.code_cells = i32::try_from(cells.len()).unwrap_or(i32::MAX);
        self.succeeded_cells = i32::try_from(
            cells
                .iter()
                .filter(|c| c.status == CellStatus::Success)
                .count(),
        )
        .unwrap_or(i32::MAX);
        self.cells = cells;
        self
    }
}

fn gzip(text: &str) -> String {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let _ = enc.write_all(text.as_bytes());
    let bytes = enc.finish().unwrap_or_default();
    format!(
        "{GZIP_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn fits(report: &RunReport) -> Option<String> {
    let json = serde_json::to_string(report).ok()?;
    if json.len() <= TERMINATION_MESSAGE_LIMIT {
        return Some(json);
    }
    let packed = gzip(&json);
    (packed.len() <= TERMINATION_MESSAGE_LIMIT).then_some(packed)
}

/// The termination message for a report: always at most 4096 bytes.
pub fn encode(report: &RunReport) -> String {
    if let Some(s) = fits(report) {
        return s;
    }
    let mut r = report.clone();
    r.truncated = true;
    // 1. Cell outputs and tracebacks shortened.
    for c in &mut r.cells {
        c.output = None;
        if let Some(e) = &c.error_message {
            c.error_message = Some(super::bounded(e, 300));
        }
    }
    if let Some(cmp) = &mut r.comparison {
        for d in &mut cmp.diffs {
            d.expected = d.expected.as_deref().map(|s| super::bounded(s, 80));
            d.actual = d.actual.as_deref().map(|s| super::bounded(s, 80));
            d.diff = d.diff.as_deref().map(|s| super::bounded(s, 160));
        }
    }
    if let Some(s) = fits(&r) {
        return s;
    }
    // 2. Only the cells that did not succeed.
    r.cells.retain(|c| c.status != CellStatus::Success);
    if let Some(s) = fits(&r) {
        return s;
    }
    // 3. Fewer diffs, then none.
    if let Some(cmp) = &mut r.comparison {
        cmp.diffs.truncate(3);
    }
    if let Some(s) = fits(&r) {
        return s;
    }
    if let Some(cmp) = &mut r.comparison {
        cmp.diffs.clear();
    }
    r.cells.truncate(5);
    if let Some(s) = fits(&r) {
        return s;
    }
    // 4. The summary alone.
    r.cells.clear();
    r.message = super::bounded(&r.message, 1000);
    fits(&r).unwrap_or_else(|| {
        format!(
            "{{\"outcome\":\"{:?}\",\"message\":\"\",\"truncated\":true}}",
            r.outcome
        )
    })
}

/// Why a termination message is not a report.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the termination message is empty")]
    Empty,
    #[error("the compressed termination message is corrupt: {0}")]
    Corrupt(String),
    #[error("the termination message is not a run report: {0}")]
    NotAReport(String),
}

pub fn decode(message: &str) -> Result<RunReport, DecodeError> {
    let message = message.trim();
    if message.is_empty() {
        return Err(DecodeError::Empty);
    }
    let json = match message.strip_prefix(GZIP_PREFIX) {
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
            let mut out = String::new();
            // Bounded: a 4 KiB message cannot legitimately inflate past 1 MiB.
            flate2::read::GzDecoder::new(&bytes[..])
                .take(1 << 20)
                .read_to_string(&mut out)
                .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
            out
        }
        None => message.to_string(),
    };
    serde_json::from_str(&json).map_err(|e| DecodeError::NotAReport(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nbg_core::nvj::{
        CellDiff, CellType, ComparisonOutcome, ComparisonStrategy, DiffSeverity, DiffType,
    };
    use proptest::prelude::*;

    fn big_report(cells: usize, text: usize) -> RunReport {
        let cells = (0..cells)
            .map(|i| CellResult {
                cell_index: i32::try_from(i).unwrap_or(0),
                status: if i == cells - 1 {
                    CellStatus::Failure
                } else {
                    CellStatus::Success
                },
                execution_time: Some("0.100s".into()),
                output: Some("x".repeat(text)),
                error_message: (i == cells - 1).then(|| "ValueError: boom\n".repeat(50)),
                checks: Vec::new(),
            })
            .collect();
        let mut r = RunReport::new(
            Outcome::CellFailed,
            "cell 40 (cellIndex 39) raised ValueError: boom",
        )
        .with_cells(cells);
        r.comparison = Some(ComparisonResult {
            strategy: ComparisonStrategy::Normalized,
            result: ComparisonOutcome::Failed,
            total_cells: 40,
            matched_cells: 20,
            mismatched_cells: 20,
            diffs: (0..20)
                .map(|i| CellDiff {
                    cell_index: i,
                    cell_type: CellType::Code,
                    diff_type: DiffType::OutputMismatch,
                    expected: Some("e".repeat(300)),
                    actual: Some("a".repeat(300)),
                    diff: Some("d".repeat(600)),
                    severity: DiffSeverity::Major,
                })
                .collect(),
        });
        r
    }

    #[test]
    fn small_reports_are_plain_json() {
        let r = RunReport::new(Outcome::Succeeded, "ok").with_cells(vec![]);
        let m = encode(&r);
        assert!(m.starts_with('{'));
        assert_eq!(decode(&m).expect("decodes"), r);
    }

    #[test]
    fn large_reports_compress_then_degrade_but_always_fit() {
        for (cells, text) in [(10, 50), (40, 200), (1000, 200), (5000, 2000)] {
            let r = big_report(cells, text);
            let m = encode(&r);
            assert!(
                m.len() <= TERMINATION_MESSAGE_LIMIT,
                "{cells}x{text}: {} bytes",
                m.len()
            );
            let back = decode(&m).expect("decodes");
            assert_eq!(back.outcome, Outcome::CellFailed);
            assert_eq!(
                back.code_cells,
                i32::try_from(cells).unwrap_or(0),
                "counts survive"
            );
            assert!(back.message.contains("cellIndex 39"));
        }
        assert!(encode(&big_report(40, 200)).starts_with(GZIP_PREFIX));
    }

    #[test]
    fn garbage_is_an_error_not_a_success() {
        assert!(matches!(decode(""), Err(DecodeError::Empty)));
        assert!(matches!(
            decode("Succeeded"),
            Err(DecodeError::NotAReport(_))
        ));
        assert!(matches!(decode("nbg-gz:!!!"), Err(DecodeError::Corrupt(_))));
    }

    proptest! {
        #[test]
        fn decode_never_panics(s in "\\PC{0,200}") { let _ = decode(&s); }
    }
}
