//! Whether a run gets its Event, and what the Event says - decided without a cluster.
//!
//! Exactly once per run (`<uid>/<generation>` reaching `Succeeded` or `Failed`): the Event's name
//! is derived from the run, so a second create is refused by the API server; and once it exists,
//! the run is recorded on the NVJ (`mlops.dev/notified-run`, event-notifier's own annotation), so
//! neither a restart nor an expired Event (the API server keeps Events for an hour) brings it back.
//! Runs that ended before event-notifier was first installed get no Event, unless asked.

use k8s_openapi::jiff::Timestamp;
use nbg_core::conditions::READY;
use nbg_core::nvj::{CellStatus, ComparisonOutcome, NotebookValidationJob, Phase};

/// On the NVJ, written by event-notifier: the run whose Event exists.
pub const NOTIFIED_RUN: &str = "mlops.dev/notified-run";
/// The Event label naming the kind of notification.
pub use nbg_core::annotations::NOTIFICATION_TYPE_LABEL;

/// The API server keeps at most 1 KiB of an Event's note.
const MAX_NOTE_CHARS: usize = 1000;

/// One Event to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The Event's name: the same for the same run, whatever the replica or the attempt.
    pub event_name: String,
    pub run: String,
    pub succeeded: bool,
    /// The `mlops.dev/notification-type` label.
    pub notification_type: &'static str,
    /// `ValidationSucceeded` or `ValidationFailed`.
    pub reason: &'static str,
    pub note: String,
}

/// What to do for an NVJ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No run has ended, or its Event is recorded, or it ended before event-notifier was
    /// installed.
    Nothing,
    Notify(Notification),
}

/// When runs count: those that ended at or after `installed_at`, or all with `earlier_runs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Since {
    pub installed_at: Timestamp,
    pub earlier_runs: bool,
}

/// FNV-1a, 64 bits: a stable short digest for names (not for security).
fn digest(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `<nvj-name>.<digest of run and result>`, at most 253 characters.
pub fn event_name(nvj_name: &str, run: &str, succeeded: bool) -> String {
    let mut prefix: String = nvj_name.chars().take(200).collect();
    while prefix.ends_with(['.', '-']) {
        prefix.pop();
    }
    let result = if succeeded { "succeeded" } else { "failed" };
    format!("{prefix}.{:016x}", digest(&format!("{run}/{result}")))
}

pub fn decide(nvj: &NotebookValidationJob, since: Since) -> Decision {
    let (Some(run), Some(phase)) = (nvj.run_id(), nvj.current_phase()) else {
        return Decision::Nothing;
    };
    let succeeded = match phase {
        Phase::Succeeded => true,
        Phase::Failed => false,
        _ => return Decision::Nothing,
    };
    let recorded = nvj
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(NOTIFIED_RUN))
        .is_some_and(|r| *r == run);
    if recorded {
        return Decision::Nothing;
    }
    let ended = nvj
        .status
        .as_ref()
        .and_then(|s| s.completion_time.as_ref())
        .map(|t| t.0);
    // Completion times have whole seconds: a run that ended in the second of the install counts.
    if !since.earlier_runs && ended.is_none_or(|t| t.as_second() < since.installed_at.as_second()) {
        return Decision::Nothing;
    }
    let name = nvj.metadata.name.clone().unwrap_or_default();
    Decision::Notify(Notification {
        event_name: event_name(&name, &run, succeeded),
        note: note(nvj, &run, succeeded),
        run,
        succeeded,
        notification_type: if succeeded {
            "validation-success"
        } else {
            "validation-failure"
        },
        reason: if succeeded {
            "ValidationSucceeded"
        } else {
            "ValidationFailed"
        },
    })
}

fn first_line(text: &str, max: usize) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim();
    let mut out: String = line.chars().take(max).collect();
    if line.chars().count() > max {
        out.push_str("...");
    }
    out
}

/// What an operator needs: the NVJ and run, the notebook's git ref, what failed, the retries,
/// and a suggested next step.
pub fn note(nvj: &NotebookValidationJob, run: &str, succeeded: bool) -> String {
    let namespace = nvj.metadata.namespace.as_deref().unwrap_or_default();
    let name = nvj.metadata.name.as_deref().unwrap_or_default();
    let status = nvj.status.as_ref();
    let notebook = &nvj.spec.notebook;
    let source = format!(
        "{} at {}, {}",
        notebook.git.url, notebook.git.r#ref, notebook.path
    );
    let reason = status
        .and_then(|s| s.condition(READY))
        .map(|c| c.reason.as_str())
        .unwrap_or_default();
    let retries = status.and_then(|s| s.retry_count).unwrap_or(0);
    let mut parts = vec![format!(
        "Validation {} for {namespace}/{name} (run {run}); notebook {source}.",
        if succeeded { "succeeded" } else { "failed" }
    )];
    if succeeded {
        let cells = status.map_or(0, |s| s.results.len());
        let golden = status
            .and_then(|s| s.comparison_result.as_ref())
            .filter(|c| c.result == ComparisonOutcome::Matched)
            .map(|c| {
                format!(
                    ", golden matched ({}/{} cells)",
                    c.matched_cells, c.total_cells
                )
            })
            .unwrap_or_default();
        parts.push(format!("{cells} cells ran{golden}."));
        parts
            .push("Next: nothing to do; triggers (if any) are recorded in status.triggers.".into());
    } else {
        let failing_cell = status.and_then(|s| {
            s.results
                .iter()
                .find(|c| c.status == CellStatus::Failure)
                .map(|c| {
                    format!(
                        "Cell {} failed: {}.",
                        c.cell_index + 1,
                        first_line(
                            c.error_message.as_deref().unwrap_or("(no error message)"),
                            200
                        )
                    )
                })
        });
        let mismatch = status
            .and_then(|s| s.comparison_result.as_ref())
            .filter(|c| c.result == ComparisonOutcome::Failed)
            .map(|c| {
                let first = c
                    .diffs
                    .first()
                    .map(|d| {
                        format!(
                            "; first: cell {} ({:?}): {}",
                            d.cell_index + 1,
                            d.diff_type,
                            first_line(d.diff.as_deref().unwrap_or_default(), 160)
                        )
                    })
                    .unwrap_or_default();
                format!(
                    "Golden mismatch: {} of {} cells differ{first}.",
                    c.mismatched_cells, c.total_cells
                )
            });
        parts.extend(failing_cell);
        parts.extend(mismatch);
        if let Some(m) = status.and_then(|s| s.message.as_deref()) {
            parts.push(format!(
                "Status: {}.",
                first_line(m, 200).trim_end_matches('.')
            ));
        }
        let exhausted = reason == "RetriesExhausted";
        parts.push(format!(
            "Retries: {retries}{}.",
            if exhausted { ", exhausted" } else { "" }
        ));
        let next = match reason {
            "CellFailed" => format!(
                "fix the failing cell; reproduce with `nvj-validator run {}`",
                notebook.path
            ),
            "GoldenMismatch" => {
                "if the new outputs are right, update the golden notebook; otherwise look at the first differing cell".into()
            }
            "Timeout" => "raise spec.timeout or make the notebook faster".into(),
            "RetriesExhausted" => format!(
                "the validation pod could not run; see `kubectl describe nvj -n {namespace} {name}` and the pod's events"
            ),
            _ => format!("see `kubectl describe nvj -n {namespace} {name}`"),
        };
        parts.push(format!("Next: {next}."));
    }
    let note = parts.join(" ");
    note.chars().take(MAX_NOTE_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nvj(status: serde_json::Value, annotations: serde_json::Value) -> NotebookValidationJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob",
            "metadata": {"name": "train-fraud-model", "namespace": "ml", "uid": "u1", "generation": 2, "annotations": annotations},
            "spec": {"notebook": {"git": {"url": "https://git.example/ml.git", "ref": "v1.4"}, "path": "notebooks/train.ipynb"},
                     "podConfig": {"containerImage": "img"}},
            "status": status
        }))
        .expect("nvj")
    }

    fn since() -> Since {
        Since {
            installed_at: "2026-11-30T09:00:00Z".parse().expect("time"),
            earlier_runs: false,
        }
    }

    fn ended(phase: &str, reason: &str) -> serde_json::Value {
        serde_json::json!({"phase": phase, "observedGeneration": 2, "completionTime": "2026-11-30T10:00:00Z",
            "retryCount": 1, "message": "cell 4 raised KeyError",
            "conditions": [{"type": "Ready", "status": if phase == "Succeeded" {"True"} else {"False"}, "reason": reason,
                            "message": "", "lastTransitionTime": "2026-11-30T10:00:00Z"}]})
    }

    fn notification(d: Decision) -> Notification {
        match d {
            Decision::Notify(n) => n,
            Decision::Nothing => panic!("a notification expected"),
        }
    }

    #[test]
    fn a_failed_cell_says_which_with_retries_and_next_step() {
        let mut status = ended("Failed", "CellFailed");
        status["results"] = serde_json::json!([
            {"cellIndex": 2, "status": "Success"},
            {"cellIndex": 3, "status": "Failure", "errorMessage": "KeyError: 'amount'\nTraceback..."}]);
        let n = notification(decide(&nvj(status, serde_json::json!({})), since()));
        assert_eq!(
            (n.reason, n.notification_type, n.succeeded),
            ("ValidationFailed", "validation-failure", false)
        );
        assert_eq!(n.run, "u1/2");
        for part in [
            "ml/train-fraud-model",
            "run u1/2",
            "https://git.example/ml.git at v1.4, notebooks/train.ipynb",
            "Cell 4 failed: KeyError: 'amount'.",
            "Retries: 1.",
            "nvj-validator run notebooks/train.ipynb",
        ] {
            assert!(n.note.contains(part), "{part:?} not in {:?}", n.note);
        }
    }

    #[test]
    fn a_golden_mismatch_names_the_first_diff() {
        let mut status = ended("Failed", "GoldenMismatch");
        status["comparisonResult"] = serde_json::json!({"strategy": "normalized", "result": "failed", "totalCells": 10,
            "matchedCells": 8, "mismatchedCells": 2,
            "diffs": [{"cellIndex": 6, "cellType": "code", "diffType": "output_mismatch", "diff": "- 0.93\n+ 0.71", "severity": "major"}]});
        let n = notification(decide(&nvj(status, serde_json::json!({})), since()));
        assert!(
            n.note.contains(
                "Golden mismatch: 2 of 10 cells differ; first: cell 7 (OutputMismatch): - 0.93."
            ),
            "{}",
            n.note
        );
        assert!(n.note.contains("update the golden notebook"));
    }

    #[test]
    fn retries_exhausted_and_success() {
        let n = notification(decide(
            &nvj(ended("Failed", "RetriesExhausted"), serde_json::json!({})),
            since(),
        ));
        assert!(
            n.note.contains("Retries: 1, exhausted.")
                && n.note
                    .contains("kubectl describe nvj -n ml train-fraud-model"),
            "{}",
            n.note
        );
        let n = notification(decide(
            &nvj(ended("Succeeded", "Succeeded"), serde_json::json!({})),
            since(),
        ));
        assert_eq!(
            (n.reason, n.notification_type),
            ("ValidationSucceeded", "validation-success")
        );
        assert_ne!(
            n.event_name,
            event_name("train-fraud-model", "u1/2", false),
            "a flip is another Event"
        );
    }

    #[test]
    fn once_per_run_and_not_before_install() {
        let recorded = nvj(
            ended("Failed", "CellFailed"),
            serde_json::json!({NOTIFIED_RUN: "u1/2"}),
        );
        assert_eq!(decide(&recorded, since()), Decision::Nothing);
        let older_run_recorded = nvj(
            ended("Failed", "CellFailed"),
            serde_json::json!({NOTIFIED_RUN: "u1/1"}),
        );
        assert!(matches!(
            decide(&older_run_recorded, since()),
            Decision::Notify(_)
        ));
        let before_install = Since {
            installed_at: "2026-11-30T11:00:00Z".parse().expect("time"),
            earlier_runs: false,
        };
        assert_eq!(
            decide(
                &nvj(ended("Failed", "CellFailed"), serde_json::json!({})),
                before_install
            ),
            Decision::Nothing
        );
        let asked = Since {
            earlier_runs: true,
            ..before_install
        };
        assert!(matches!(
            decide(
                &nvj(ended("Failed", "CellFailed"), serde_json::json!({})),
                asked
            ),
            Decision::Notify(_)
        ));
        // Running, or behind the spec generation: nothing.
        let mut stale = ended("Failed", "CellFailed");
        stale["observedGeneration"] = serde_json::json!(1);
        assert_eq!(
            decide(&nvj(stale, serde_json::json!({})), since()),
            Decision::Nothing
        );
        let running = serde_json::json!({"phase": "Running", "observedGeneration": 2});
        assert_eq!(
            decide(&nvj(running, serde_json::json!({})), since()),
            Decision::Nothing
        );
    }

    #[test]
    fn names_are_stable_bounded_and_valid() {
        let a = event_name("train", "u1/2", false);
        assert_eq!(a, event_name("train", "u1/2", false));
        assert_ne!(a, event_name("train", "u1/3", false));
        let long = event_name(&format!("{}-x", "a".repeat(199)), "u/1", true);
        assert!(long.len() <= 253 && !long.contains("-."), "{long}");
        let note = note(
            &nvj(ended("Failed", "CellFailed"), serde_json::json!({})),
            "u1/2",
            false,
        );
        assert!(note.chars().count() <= MAX_NOTE_CHARS);
    }

    #[test]
    fn a_run_that_ended_in_the_second_of_the_install_counts() {
        // Completion times have whole seconds; the install time has nanoseconds.
        let same_second = Since {
            installed_at: "2026-11-30T10:00:00.7Z".parse().expect("time"),
            earlier_runs: false,
        };
        let n = nvj(ended("Failed", "CellFailed"), serde_json::json!({}));
        assert!(matches!(decide(&n, same_second), Decision::Notify(_)));
    }
}
