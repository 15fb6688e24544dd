//! What `wave-marker wait` prints: a line per NVJ as it completes and the result, as text or
//! as JSON lines.

use super::judge::{Entry, State};
use super::{Ended, Output, WaitArgs, describe};

pub(super) struct Printer {
    pub(super) format: Output,
}

impl Printer {
    /// A remark on stderr (text) or a JSON line (json).
    pub(super) fn note(&self, message: &str) {
        match self.format {
            Output::Text => eprintln!("{message}"),
            Output::Json => println!(
                "{}",
                serde_json::json!({"event": "note", "message": message})
            ),
        }
    }

    pub(super) fn complete(&self, name: &str, done: usize, of: usize) {
        match self.format {
            Output::Text => println!("complete  {name}  [{done}/{of}]"),
            Output::Json => println!("{}", serde_json::json!({"event": "complete", "name": name})),
        }
    }

    pub(super) fn result(&self, ended: &Ended, args: &WaitArgs) {
        let states =
            |entries: &[Entry], pick: fn(&State) -> Option<&String>| -> Vec<(String, String)> {
                entries
                    .iter()
                    .filter_map(|e| pick(&e.state).map(|m| (e.name.clone(), m.clone())))
                    .collect()
            };
        let failed = |entries: &[Entry]| {
            states(entries, |s| match s {
                State::Failed(m) | State::Invalid(m) => Some(m),
                _ => None,
            })
        };
        let pending = |entries: &[Entry]| {
            states(entries, |s| match s {
                State::Pending(m) => Some(m),
                _ => None,
            })
        };
        let (result, text, failed, pending, missing, complete) = match ended {
            Ended::Complete(entries) => (
                "complete",
                format!("all {} {} complete", entries.len(), describe(args)),
                vec![],
                vec![],
                0,
                entries.len(),
            ),
            Ended::Failed(entries) => {
                let f = failed(entries);
                let names: Vec<String> = f.iter().map(|(n, m)| format!("{n}: {m}")).collect();
                (
                    "failed",
                    format!("failed: {}", names.join("; ")),
                    f,
                    pending(entries),
                    0,
                    entries
                        .iter()
                        .filter(|e| e.state == State::Complete)
                        .count(),
                )
            }
            Ended::Timeout { entries, missing } => {
                let p = pending(entries);
                let mut text = format!("timed out after {:?}", args.timeout);
                if !p.is_empty() {
                    let names: Vec<String> = p.iter().map(|(n, m)| format!("{n} ({m})")).collect();
                    text.push_str(&format!("; still pending: {}", names.join(", ")));
                }
                if *missing > 0 {
                    text.push_str(&format!(
                        "; found {} of the {} required {}",
                        entries.len(),
                        args.require,
                        describe(args)
                    ));
                }
                (
                    "timeout",
                    text,
                    vec![],
                    p,
                    *missing,
                    entries
                        .iter()
                        .filter(|e| e.state == State::Complete)
                        .count(),
                )
            }
            Ended::Error(message) => ("error", message.clone(), vec![], vec![], 0, 0),
        };
        match self.format {
            Output::Text => match ended {
                Ended::Complete(_) => println!("{text}"),
                _ => eprintln!("{text}"),
            },
            Output::Json => {
                let list = |v: &[(String, String)], field: &str| -> Vec<serde_json::Value> {
                    v.iter()
                        .map(|(n, m)| serde_json::json!({"name": n, field: m}))
                        .collect()
                };
                println!(
                    "{}",
                    serde_json::json!({
                        "result": result,
                        "exitCode": ended.exit_code(),
                        "message": text,
                        "complete": complete,
                        "failed": list(&failed, "message"),
                        "pending": list(&pending, "state"),
                        "missing": missing,
                    })
                );
            }
        }
    }
}
