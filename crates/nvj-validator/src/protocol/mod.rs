//! What the controller and a validation pod say to each other: the run spec the controller
//! passes in (`NBG_RUN_SPEC`, [`PodRunSpec`]) and the report the pod leaves in its termination
//! message ([`report`]). Both sides depend on this module; neither on the other's internals.

pub mod report;

use nbg_core::nvj::{ComparisonConfig, NotebookSource, ValidationConfig};
use serde::{Deserialize, Serialize};

/// What a validation pod runs; the controller passes it as JSON in `NBG_RUN_SPEC`. It holds no
/// credentials: those are files of the mounted Secrets named by the `*_credentials_dir` paths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRunSpec {
    pub notebook: NotebookSource,
    #[serde(default)]
    pub golden: Option<NotebookSource>,
    #[serde(default)]
    pub comparison: ComparisonConfig,
    /// The output checks (`spec.validationConfig`).
    #[serde(default)]
    pub validation: ValidationConfig,
    pub timeout_seconds: i64,
    #[serde(default)]
    pub notebook_credentials_dir: Option<String>,
    #[serde(default)]
    pub golden_credentials_dir: Option<String>,
    /// Scratch directory for the clones and the executed notebook.
    pub work_dir: String,
}

/// `s` cut to at most `max` characters, marked when cut.
pub fn bounded(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(3)).collect();
        out.push_str("...");
        out
    }
}
