use serde::{Deserialize, Serialize};

/// At most this many failed jobs are named in the summary, to keep the annotation small.
pub const MAX_FAILED_JOBS: usize = 50;
/// Names longer than this are cut in the failed-jobs list.
const MAX_NAME_CHARS: usize = 253;

/// The aggregate NVJ status that app-status-aggregator writes on an Argo CD Application under
/// `mlops.dev/notebook-status`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotebookStatusSummary {
    pub total: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub running: i64,
    /// RFC 3339 time of the last change.
    pub last_update: String,
    /// Failed jobs (`<name>`, or `<namespace>/<name>` when the Application's NVJs are in more
    /// than one namespace), at most [`MAX_FAILED_JOBS`]; `failed` has the count.
    #[serde(default)]
    pub failed_jobs: Vec<String>,
    /// How many failed jobs the list leaves out (present only when it leaves some out).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_jobs_omitted: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Failed jobs named in the one-line summary at most.
const MAX_SUMMARY_NAMES: usize = 10;

/// Why a `mlops.dev/notebook-status` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotebookStatusError {
    #[error(
        "notebook-status is not valid JSON of the form {{\"total\",\"succeeded\",\"failed\",\"running\",\"lastUpdate\",\"failedJobs\"}}: {0}"
    )]
    Json(String),
    #[error("notebook-status is inconsistent: {0}")]
    Inconsistent(String),
}

impl NotebookStatusSummary {
    /// Parses and checks an annotation value.
    pub fn parse(value: &str) -> Result<Self, NotebookStatusError> {
        let s: Self =
            serde_json::from_str(value).map_err(|e| NotebookStatusError::Json(e.to_string()))?;
        if [s.total, s.succeeded, s.failed, s.running]
            .iter()
            .any(|n| *n < 0)
        {
            return Err(NotebookStatusError::Inconsistent(
                "counts must not be negative".into(),
            ));
        }
        let parts = s
            .succeeded
            .checked_add(s.failed)
            .and_then(|x| x.checked_add(s.running));
        if parts.is_none_or(|p| p > s.total) {
            return Err(NotebookStatusError::Inconsistent(format!(
                "succeeded {} + failed {} + running {} exceeds total {}",
                s.succeeded, s.failed, s.running, s.total
            )));
        }
        Ok(s)
    }

    /// The annotation value: compact JSON with the failed-jobs list bounded, so the value stays
    /// well under 16 KiB whatever the number of jobs.
    pub fn to_annotation(&self) -> String {
        let mut bounded = self.clone();
        let listed = bounded.failed_jobs.len().min(MAX_FAILED_JOBS);
        bounded.failed_jobs_omitted = (self.failed - listed as i64).max(0);
        bounded.failed_jobs.truncate(MAX_FAILED_JOBS);
        for name in &mut bounded.failed_jobs {
            if name.chars().count() > MAX_NAME_CHARS {
                *name = name.chars().take(MAX_NAME_CHARS).collect();
            }
        }
        // Serialising plain integers and strings cannot fail.
        serde_json::to_string(&bounded).unwrap_or_default()
    }

    /// The one-line `mlops.dev/notebook-summary` text, e.g. `30/32 notebooks succeeded;
    /// failed: a, b`; at most ten failed jobs are named (each cut to 63 characters).
    pub fn one_line(&self) -> String {
        let mut line = format!("{}/{} notebooks succeeded", self.succeeded, self.total);
        if self.running > 0 {
            line.push_str(&format!("; {} running", self.running));
        }
        if self.failed > 0 {
            let named: Vec<String> = self
                .failed_jobs
                .iter()
                .take(MAX_SUMMARY_NAMES)
                .map(|n| n.chars().take(63).collect())
                .collect();
            line.push_str(&format!("; failed: {}", named.join(", ")));
            let more = self.failed - named.len() as i64;
            if more > 0 {
                line.push_str(&format!(" and {more} more"));
            }
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_and_stays_small() {
        let s = NotebookStatusSummary {
            total: 10_000,
            succeeded: 1,
            failed: 9_999,
            running: 0,
            last_update: "2026-01-01T00:00:00Z".into(),
            failed_jobs: (0..9_999)
                .map(|i| format!("namespace-{i}/{}", "n".repeat(300)))
                .collect(),
            failed_jobs_omitted: 0,
        };
        let text = s.to_annotation();
        assert!(text.len() < 16 * 1024, "annotation is {} bytes", text.len());
        let back = NotebookStatusSummary::parse(&text).expect("parses");
        assert_eq!(back.failed_jobs.len(), MAX_FAILED_JOBS);
        assert_eq!(back.failed, 9_999);
        assert_eq!(back.failed_jobs_omitted, 9_999 - MAX_FAILED_JOBS as i64);
        let line = s.one_line();
        assert!(line.contains("and 9989 more"), "{line}");
        assert!(line.len() < 1024, "{}", line.len());
    }

    #[test]
    fn one_line_reads_as_the_seed_shows() {
        let s = NotebookStatusSummary {
            total: 32,
            succeeded: 30,
            failed: 2,
            failed_jobs: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        assert_eq!(s.one_line(), "30/32 notebooks succeeded; failed: a, b");
        assert!(!s.to_annotation().contains("failedJobsOmitted"));
    }

    #[test]
    fn rejects_inconsistent_counts() {
        let e = NotebookStatusSummary::parse(
            r#"{"total":1,"succeeded":2,"failed":0,"running":0,"lastUpdate":""}"#,
        );
        assert!(matches!(e, Err(NotebookStatusError::Inconsistent(_))));
        assert!(matches!(
            NotebookStatusSummary::parse("{"),
            Err(NotebookStatusError::Json(_))
        ));
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") { let _ = NotebookStatusSummary::parse(&s); }
    }
}
