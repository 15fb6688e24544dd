//! Golden comparison: the executed notebook's cells against the golden notebook's, by position.
//!
//! - `normalized` (the default): colour codes and trailing whitespace removed; timestamps (ISO
//!   dates and times, clock times, and `customTimestampPatterns`) replaced by a placeholder
//!   when `ignoreTimestamps`; numbers compared with a real absolute tolerance,
//!   |actual - expected| <= `floatingPointTolerance`, not by rounding.
//! - `exact`: output text compared byte for byte.
//!
//! Both honour `ignoreExecutionCount` and `ignoreOutputTypes`; stream, result, display and
//! error outputs are all compared (results and displays by their `text/plain`).

use std::collections::BTreeSet;

use nbg_core::nvj::{
    CellDiff, CellType, ComparisonConfig, ComparisonOutcome, ComparisonResult, ComparisonStrategy,
    DiffSeverity, DiffType,
};
use regex::Regex;

use super::bounded;
use super::notebook::{Cell, Notebook, Output, strip_ansi};

/// At most this many diffs are reported; the counts cover all cells.
pub const MAX_DIFFS: usize = 20;
const MAX_SHOWN_CHARS: usize = 300;
const TIMESTAMP: &str = "<TIMESTAMP>";

/// Why a comparison config is invalid; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompareConfigError {
    #[error(
        "spec.comparisonConfig.customTimestampPatterns[{index}]: invalid regular expression: {message}"
    )]
    Pattern { index: usize, message: String },
    #[error("spec.comparisonConfig.floatingPointTolerance: {0:?} is not a non-negative number")]
    Tolerance(String),
}

/// A validated comparison configuration.
#[derive(Debug, Clone)]
pub struct CompareConfig {
    pub strategy: ComparisonStrategy,
    pub tolerance: f64,
    pub ignore_timestamps: bool,
    pub ignore_execution_count: bool,
    pub timestamp_patterns: Vec<Regex>,
    pub ignore_output_types: BTreeSet<String>,
    /// `spec.validationConfig.checkOutputTypes` (default true): false compares a cell's output
    /// text without the outputs' types.
    pub check_output_types: bool,
}

fn builtin_timestamps() -> Vec<Regex> {
    [
        r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?",
        r"\d{4}-\d{2}-\d{2}",
        r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b",
    ]
    .iter()
    .filter_map(|p| Regex::new(p).ok())
    .collect()
}

impl CompareConfig {
    pub fn from_spec(spec: &ComparisonConfig) -> Result<Self, CompareConfigError> {
        let tolerance: f64 = spec
            .tolerance()
            .parse()
            .map_err(|_| CompareConfigError::Tolerance(spec.tolerance().to_string()))?;
        if !tolerance.is_finite() || tolerance < 0.0 {
            return Err(CompareConfigError::Tolerance(spec.tolerance().to_string()));
        }
        let mut timestamp_patterns = Vec::new();
        for (index, p) in spec.custom_timestamp_patterns.iter().enumerate() {
            // Size-limited so a pathological pattern cannot exhaust memory.
            let re = regex::RegexBuilder::new(p)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| CompareConfigError::Pattern {
                    index,
                    message: e
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or("")
                        .trim()
                        .to_string(),
                })?;
            timestamp_patterns.push(re);
        }
        if spec.ignore_timestamps() {
            timestamp_patterns.extend(builtin_timestamps());
        }
        Ok(Self {
            strategy: spec.strategy(),
            tolerance,
            ignore_timestamps: spec.ignore_timestamps(),
            ignore_execution_count: spec.ignore_execution_count(),
            timestamp_patterns,
            ignore_output_types: spec.ignore_output_types.iter().cloned().collect(),
            check_output_types: true,
        })
    }

    /// With `spec.validationConfig.checkOutputTypes`.
    pub fn with_output_types(mut self, check: bool) -> Self {
        self.check_output_types = check;
        self
    }

    fn normalize(&self, text: &str) -> String {
        let mut s = strip_ansi(text);
        if self.ignore_timestamps {
            for re in &self.timestamp_patterns {
                s = re.replace_all(&s, TIMESTAMP).into_owned();
            }
        }
        s.lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
            .trim_end()
            .to_string()
    }
}

fn number_re() -> Regex {
    Regex::new(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?").expect("a valid literal pattern")
}

/// Splits text into non-number segments and numbers (with their text).
fn segments<'a>(re: &Regex, s: &'a str) -> (Vec<&'a str>, Vec<(&'a str, f64)>) {
    let mut words = Vec::new();
    let mut numbers = Vec::new();
    let mut last = 0;
    for m in re.find_iter(s) {
        words.push(&s[last..m.start()]);
        numbers.push((m.as_str(), m.as_str().parse().unwrap_or(f64::NAN)));
        last = m.end();
    }
    words.push(&s[last..]);
    (words, numbers)
}

/// Compares two texts; `None` when equal within the config, else why not.
fn differ(cfg: &CompareConfig, re: &Regex, expected: &str, actual: &str) -> Option<String> {
    if cfg.strategy == ComparisonStrategy::Exact {
        return (expected != actual).then(|| "output differs".to_string());
    }
    let (e, a) = (cfg.normalize(expected), cfg.normalize(actual));
    if e == a {
        return None;
    }
    let (ew, en) = segments(re, &e);
    let (aw, an) = segments(re, &a);
    if ew != aw || en.len() != an.len() {
        return Some("output text differs".into());
    }
    let mut worst: Option<(f64, &str, &str)> = None;
    for ((xt, x), (yt, y)) in en.iter().zip(&an) {
        let delta = (x - y).abs();
        let same = delta <= cfg.tolerance || (x.is_nan() && y.is_nan());
        if !same && worst.is_none_or(|(d, _, _)| delta > d) {
            worst = Some((delta, xt, yt));
        }
    }
    worst.map(|(d, x, y)| {
        format!(
            "{y} differs from the golden {x} by {d:.3e}, more than the tolerance {}",
            cfg.tolerance
        )
    })
}

fn cell_type(c: &Cell) -> CellType {
    match c.cell_type.as_str() {
        "markdown" => CellType::Markdown,
        "raw" => CellType::Raw,
        _ => CellType::Code,
    }
}

/// The outputs with each run of stream outputs of one stream (stdout, stderr) joined into one, as
/// nbconvert's `coalesce_streams` does: how a cell's printing is split into stream messages
/// depends on when the kernel flushed (one `print` can arrive as two under load), not on what the
/// cell printed.
fn coalesce_streams<'a>(outputs: impl Iterator<Item = &'a Output>) -> Vec<Output> {
    let mut joined: Vec<Output> = Vec::new();
    for output in outputs {
        if let (
            Some(Output::Stream { name, text }),
            Output::Stream {
                name: next_name,
                text: next_text,
            },
        ) = (joined.last_mut(), output)
            && name == next_name
        {
            text.push_str(next_text);
            continue;
        }
        joined.push(output.clone());
    }
    joined
}

fn shown(outputs: &[&Output]) -> String {
    bounded(
        &strip_ansi(&outputs.iter().map(|o| o.text()).collect::<String>()),
        MAX_SHOWN_CHARS,
    )
}

/// A short line diff: the differing lines of expected (-) and actual (+).
fn line_diff(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let mut out = String::new();
    for i in 0..e.len().max(a.len()) {
        let (x, y) = (e.get(i), a.get(i));
        if x != y {
            if let Some(x) = x {
                out.push_str(&format!("-{x}\n"));
            }
            if let Some(y) = y {
                out.push_str(&format!("+{y}\n"));
            }
        }
    }
    bounded(&out, MAX_SHOWN_CHARS * 2)
}

/// Compares by position. Every code cell's outputs are compared; other cells must only have the
/// same type.
pub fn compare(executed: &Notebook, golden: &Notebook, cfg: &CompareConfig) -> ComparisonResult {
    let re = number_re();
    let actual: Vec<&Cell> = executed.own_cells().collect();
    let expected: Vec<&Cell> = golden.own_cells().collect();
    let total = actual.len().max(expected.len());
    let mut diffs: Vec<CellDiff> = Vec::new();
    let mut mismatched = 0usize;
    for i in 0..total {
        let index = i32::try_from(i).unwrap_or(i32::MAX);
        let diff = match (expected.get(i), actual.get(i)) {
            (Some(g), None) => Some(CellDiff {
                cell_index: index,
                cell_type: cell_type(g),
                diff_type: DiffType::MissingCell,
                expected: Some(bounded(&g.source, MAX_SHOWN_CHARS)),
                actual: None,
                diff: None,
                severity: DiffSeverity::Critical,
            }),
            (None, Some(a)) => Some(CellDiff {
                cell_index: index,
                cell_type: cell_type(a),
                diff_type: DiffType::ExtraCell,
                expected: None,
                actual: Some(bounded(&a.source, MAX_SHOWN_CHARS)),
                diff: None,
                severity: DiffSeverity::Major,
            }),
            (Some(g), Some(a)) => compare_cell(cfg, &re, index, g, a),
            (None, None) => None,
        };
        if let Some(d) = diff {
            mismatched += 1;
            if diffs.len() < MAX_DIFFS {
                diffs.push(d);
            }
        }
    }
    let to_i32 = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    ComparisonResult {
        strategy: cfg.strategy,
        result: if mismatched == 0 {
            ComparisonOutcome::Matched
        } else {
            ComparisonOutcome::Failed
        },
        total_cells: to_i32(total),
        matched_cells: to_i32(total - mismatched),
        mismatched_cells: to_i32(mismatched),
        diffs,
    }
}

fn compare_cell(
    cfg: &CompareConfig,
    re: &Regex,
    index: i32,
    g: &Cell,
    a: &Cell,
) -> Option<CellDiff> {
    let mk =
        |diff_type, expected: String, actual: String, diff: Option<String>, severity| CellDiff {
            cell_index: index,
            cell_type: cell_type(g),
            diff_type,
            expected: Some(expected),
            actual: Some(actual),
            diff,
            severity,
        };
    if g.cell_type != a.cell_type {
        return Some(mk(
            DiffType::OutputMismatch,
            g.cell_type.clone(),
            a.cell_type.clone(),
            Some("cell type differs".into()),
            DiffSeverity::Major,
        ));
    }
    if g.cell_type != "code" {
        return None;
    }
    let keep = |o: &&Output| !cfg.ignore_output_types.contains(o.type_name());
    let (go, ao) = (
        coalesce_streams(g.outputs.iter().filter(keep)),
        coalesce_streams(a.outputs.iter().filter(keep)),
    );
    let (go, ao): (Vec<&Output>, Vec<&Output>) = (go.iter().collect(), ao.iter().collect());
    let (gs, as_) = (shown(&go), shown(&ao));
    // An error the golden notebook does not have is an execution error, whatever the text.
    let actual_error = ao.iter().any(|o| matches!(o, Output::Error { .. }));
    let golden_error = go.iter().any(|o| matches!(o, Output::Error { .. }));
    if actual_error && !golden_error {
        return Some(mk(
            DiffType::ExecutionError,
            gs.clone(),
            as_.clone(),
            Some(line_diff(&gs, &as_)),
            DiffSeverity::Critical,
        ));
    }
    let types = |v: &[&Output]| v.iter().map(|o| o.type_name()).collect::<Vec<_>>();
    if cfg.check_output_types && types(&go) != types(&ao) {
        let why = format!("output types {:?} differ from {:?}", types(&ao), types(&go));
        return Some(mk(
            DiffType::OutputMismatch,
            gs,
            as_,
            Some(why),
            DiffSeverity::Major,
        ));
    }
    // Output by output; without checkOutputTypes, the cell's output text as one.
    let texts: Vec<(String, String)> = if cfg.check_output_types {
        go.iter()
            .zip(&ao)
            .map(|(x, y)| (x.text(), y.text()))
            .collect()
    } else {
        let text = |v: &[&Output]| v.iter().map(|o| o.text()).collect::<String>();
        vec![(text(&go), text(&ao))]
    };
    for (x, y) in &texts {
        if let Some(why) = differ(cfg, re, x, y) {
            let diff = format!("{why}\n{}", line_diff(x, y));
            return Some(mk(
                DiffType::OutputMismatch,
                gs,
                as_,
                Some(bounded(&diff, MAX_SHOWN_CHARS * 2)),
                DiffSeverity::Major,
            ));
        }
    }
    if !cfg.ignore_execution_count && g.execution_count != a.execution_count {
        let why = format!(
            "execution count {:?} differs from {:?}",
            a.execution_count, g.execution_count
        );
        return Some(mk(
            DiffType::OutputMismatch,
            gs,
            as_,
            Some(why),
            DiffSeverity::Minor,
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nb(cells: serde_json::Value) -> Notebook {
        serde_json::from_value(json!({"nbformat": 4, "cells": cells})).expect("notebook")
    }
    fn code(outputs: serde_json::Value, count: i64) -> serde_json::Value {
        json!({"cell_type": "code", "source": "x", "outputs": outputs, "execution_count": count, "metadata": {}})
    }
    fn stream(text: &str) -> serde_json::Value {
        json!({"output_type": "stream", "name": "stdout", "text": text})
    }
    fn result(text: &str) -> serde_json::Value {
        json!({"output_type": "execute_result", "data": {"text/plain": text}, "execution_count": 1})
    }
    fn cfg(tol: &str) -> CompareConfig {
        CompareConfig::from_spec(&ComparisonConfig {
            floating_point_tolerance: Some(tol.into()),
            ..Default::default()
        })
        .expect("config")
    }

    #[test]
    fn numbers_within_tolerance_match_and_beyond_fail() {
        let golden = nb(json!([code(json!([stream("accuracy: 0.9512\n")]), 1)]));
        let close = nb(json!([code(json!([stream("accuracy: 0.9519\n")]), 1)]));
        let far = nb(json!([code(json!([stream("accuracy: 0.9712\n")]), 1)]));
        assert_eq!(
            compare(&close, &golden, &cfg("0.001")).result,
            ComparisonOutcome::Matched
        );
        let r = compare(&far, &golden, &cfg("0.001"));
        assert_eq!(r.result, ComparisonOutcome::Failed);
        assert_eq!(r.mismatched_cells, 1);
        let diff = r.diffs[0].diff.clone().unwrap_or_default();
        assert!(
            diff.contains("0.9712 differs from the golden 0.9512 by 2.000e-2"),
            "{diff}"
        );
    }

    #[test]
    fn tolerance_is_absolute_difference_not_rounding() {
        // 0.12 and 0.1249 round alike at 2 decimals but differ by 0.0049 > 0.001.
        let golden = nb(json!([code(json!([result("0.12")]), 1)]));
        let actual = nb(json!([code(json!([result("0.1249")]), 1)]));
        assert_eq!(
            compare(&actual, &golden, &cfg("0.001")).result,
            ComparisonOutcome::Failed
        );
        // 0.1249 and 0.1251 round differently but differ by 0.0002 <= 0.001.
        let golden = nb(json!([code(json!([result("0.1249")]), 1)]));
        let actual = nb(json!([code(json!([result("0.1251")]), 1)]));
        assert_eq!(
            compare(&actual, &golden, &cfg("0.001")).result,
            ComparisonOutcome::Matched
        );
    }

    #[test]
    fn timestamps_and_custom_patterns_are_normalised() {
        let spec = ComparisonConfig {
            custom_timestamp_patterns: vec![r"took \d+ms".into()],
            ..Default::default()
        };
        let c = CompareConfig::from_spec(&spec).expect("config");
        let golden = nb(json!([code(
            json!([stream(
                "run at 2026-01-01T10:00:00Z took 120ms at 10:00:01\n"
            )]),
            1
        )]));
        let actual = nb(json!([code(
            json!([stream(
                "run at 2026-11-21T22:58:07.123+00:00 took 98ms at 22:58:08\n"
            )]),
            1
        )]));
        assert_eq!(
            compare(&actual, &golden, &c).result,
            ComparisonOutcome::Matched
        );
        let strict = CompareConfig::from_spec(&ComparisonConfig {
            ignore_timestamps: Some(false),
            ..Default::default()
        })
        .expect("config");
        assert_eq!(
            compare(&actual, &golden, &strict).result,
            ComparisonOutcome::Failed
        );
    }

    #[test]
    fn execution_count_and_output_types_are_honoured() {
        let golden = nb(json!([code(
            json!([stream("a\n"), {"output_type": "display_data", "data": {"image/png": "AAA"}}]),
            1
        )]));
        let actual = nb(json!([code(
            json!([stream("a\n"), {"output_type": "display_data", "data": {"image/png": "BBB", "text/plain": "<Figure>"}}]),
            7
        )]));
        let base = CompareConfig::from_spec(&ComparisonConfig::default()).expect("config");
        assert_eq!(
            compare(&actual, &golden, &base).result,
            ComparisonOutcome::Failed,
            "display text differs"
        );
        let ignoring = CompareConfig::from_spec(&ComparisonConfig {
            ignore_output_types: vec!["display_data".into()],
            ..Default::default()
        })
        .expect("config");
        assert_eq!(
            compare(&actual, &golden, &ignoring).result,
            ComparisonOutcome::Matched
        );
        let counting = CompareConfig::from_spec(&ComparisonConfig {
            ignore_output_types: vec!["display_data".into()],
            ignore_execution_count: Some(false),
            ..Default::default()
        })
        .expect("config");
        let r = compare(&actual, &golden, &counting);
        assert_eq!(
            (r.result, r.diffs[0].severity),
            (ComparisonOutcome::Failed, DiffSeverity::Minor)
        );
    }

    #[test]
    fn without_check_output_types_a_print_matches_a_displayed_value() {
        let golden = nb(json!([code(json!([result("0.95")]), 1)]));
        let actual = nb(json!([code(json!([stream("0.95\n")]), 1)]));
        assert_eq!(
            compare(&actual, &golden, &cfg("0.001")).result,
            ComparisonOutcome::Failed
        );
        let text_only = cfg("0.001").with_output_types(false);
        assert_eq!(
            compare(&actual, &golden, &text_only).result,
            ComparisonOutcome::Matched
        );
        let far = nb(json!([code(json!([stream("0.90\n")]), 1)]));
        assert_eq!(
            compare(&far, &golden, &text_only).result,
            ComparisonOutcome::Failed
        );
    }

    #[test]
    fn a_print_split_into_two_stream_messages_matches_one() {
        let golden = nb(json!([code(
            json!([stream("accuracy: 0.9512"), stream("\n")]),
            1
        )]));
        let actual = nb(json!([code(json!([stream("accuracy: 0.9512\n")]), 1)]));
        let r = compare(&actual, &golden, &cfg("0.001"));
        assert_eq!(r.result, ComparisonOutcome::Matched, "{:?}", r.diffs);
        // Streams of stdout and stderr stay apart, and so do streams an output separates.
        let err = json!({"output_type": "stream", "name": "stderr", "text": "\n"});
        let split = nb(json!([code(json!([stream("accuracy: 0.9512"), err]), 1)]));
        assert_eq!(
            compare(&split, &golden, &cfg("0.001")).result,
            ComparisonOutcome::Failed
        );
        let apart = nb(json!([code(
            json!([stream("accuracy: 0.9512"), result("1"), stream("\n")]),
            1
        )]));
        assert_eq!(
            compare(&apart, &golden, &cfg("0.001")).result,
            ComparisonOutcome::Failed
        );
    }

    #[test]
    fn errors_missing_and_extra_cells_are_reported() {
        let golden = nb(json!([
            code(json!([stream("ok\n")]), 1),
            code(json!([]), 2)
        ]));
        let actual = nb(json!([code(
            json!([{"output_type": "error", "ename": "KeyError", "evalue": "'x'", "traceback": []}]),
            1
        )]));
        let r = compare(&actual, &golden, &cfg("0"));
        assert_eq!(r.total_cells, 2);
        assert_eq!(r.diffs[0].diff_type, DiffType::ExecutionError);
        assert_eq!(r.diffs[1].diff_type, DiffType::MissingCell);
        let r = compare(&golden, &actual, &cfg("0"));
        assert_eq!(r.diffs[1].diff_type, DiffType::ExtraCell);
    }

    #[test]
    fn exact_strategy_compares_bytes() {
        let exact = CompareConfig::from_spec(&ComparisonConfig {
            strategy: Some(ComparisonStrategy::Exact),
            ..Default::default()
        })
        .expect("config");
        let golden = nb(json!([code(json!([stream("1.0\n")]), 1)]));
        let actual = nb(json!([code(json!([stream("1.00\n")]), 1)]));
        assert_eq!(
            compare(&actual, &golden, &exact).result,
            ComparisonOutcome::Failed
        );
        assert_eq!(
            compare(&actual, &golden, &cfg("0")).result,
            ComparisonOutcome::Matched
        );
    }

    #[test]
    fn bad_regex_names_the_field() {
        let spec = ComparisonConfig {
            custom_timestamp_patterns: vec!["ok".into(), "(unclosed".into()],
            ..Default::default()
        };
        match CompareConfig::from_spec(&spec) {
            Err(e @ CompareConfigError::Pattern { index: 1, .. }) => {
                assert!(
                    e.to_string()
                        .starts_with("spec.comparisonConfig.customTimestampPatterns[1]"),
                    "{e}"
                )
            }
            other => panic!("expected a pattern error, got {other:?}"),
        }
    }

    #[test]
    fn diffs_are_bounded() {
        let many = |t: &str| {
            nb(serde_json::Value::Array(
                (0..100).map(|_| code(json!([stream(t)]), 1)).collect(),
            ))
        };
        let r = compare(&many("a"), &many("b"), &cfg("0"));
        assert_eq!((r.mismatched_cells, r.diffs.len()), (100, MAX_DIFFS));
    }
}
