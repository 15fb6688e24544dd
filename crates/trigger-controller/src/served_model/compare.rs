//! Predictions against the expected output, numbers within a tolerance (pure).

use serde_json::Value;

use super::protocol::{Protocol, flatten};

/// How the predictions compare.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub matches: bool,
    /// The largest difference between numbers and where, or the first thing that differs.
    pub difference: String,
}

/// Compares `actual` with `expected`: element by element, numbers within `tolerance`, anything
/// else equal. A V2 output is flat, so the expected value is flattened for it; a single
/// expected value matches a single prediction.
pub fn compare(protocol: Protocol, expected: &Value, actual: &Value, tolerance: f64) -> Comparison {
    let flat = |v: &Value| {
        let mut out = Vec::new();
        flatten(v, &mut out);
        Value::Array(out)
    };
    let (expected, actual) = match (protocol, expected, actual) {
        (Protocol::V2, e, a) => (flat(e), flat(a)),
        (Protocol::V1, e, Value::Array(a)) if !e.is_array() && a.len() == 1 => {
            (e.clone(), a[0].clone())
        }
        (Protocol::V1, e, a) => (e.clone(), a.clone()),
    };
    let mut walk = Walk {
        tolerance,
        largest: None,
        first_mismatch: None,
    };
    walk.visit(&expected, &actual, &mut String::new());
    let matches = walk.first_mismatch.is_none();
    let difference = match (walk.first_mismatch, walk.largest) {
        (Some(m), _) => m,
        (None, Some((d, at))) if d > 0.0 => format!("largest difference {d} at {at}"),
        (None, _) => "none".to_string(),
    };
    Comparison {
        matches,
        difference,
    }
}

struct Walk {
    tolerance: f64,
    /// The largest numeric difference seen, and where.
    largest: Option<(f64, String)>,
    first_mismatch: Option<String>,
}

impl Walk {
    fn visit(&mut self, expected: &Value, actual: &Value, at: &mut String) {
        let here = || {
            if at.is_empty() {
                "the prediction".to_string()
            } else {
                format!("prediction {at}")
            }
        };
        match (expected, actual) {
            (Value::Number(e), Value::Number(a)) => {
                let (e, a) = (
                    e.as_f64().unwrap_or(f64::NAN),
                    a.as_f64().unwrap_or(f64::NAN),
                );
                let d = (a - e).abs();
                if self.largest.as_ref().is_none_or(|(l, _)| d > *l) {
                    self.largest = Some((d, here()));
                }
                // NaN (a number that is not one) never matches.
                let within = d <= self.tolerance;
                if !within && self.first_mismatch.is_none() {
                    self.first_mismatch = Some(format!(
                        "{} is {a}, expected {e} (difference {d}, tolerance {})",
                        here(),
                        self.tolerance
                    ));
                }
            }
            (Value::Array(e), Value::Array(a)) if e.len() != a.len() => {
                self.mismatch(format!(
                    "{} has {} values, expected {}",
                    if at.is_empty() {
                        "the answer".to_string()
                    } else {
                        here()
                    },
                    a.len(),
                    e.len()
                ));
            }
            (Value::Array(e), Value::Array(a)) => {
                for (i, (e, a)) in e.iter().zip(a).enumerate() {
                    let len = at.len();
                    at.push_str(&format!("[{i}]"));
                    self.visit(e, a, at);
                    at.truncate(len);
                }
            }
            (e, a) if e == a => {}
            (e, a) => self.mismatch(format!("{} is {a}, expected {e}", here())),
        }
    }

    fn mismatch(&mut self, what: String) {
        if self.first_mismatch.is_none() {
            self.first_mismatch = Some(what);
        }
    }
}
