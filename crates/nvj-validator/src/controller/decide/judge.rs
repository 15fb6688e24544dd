//! A finished validation pod's verdict: its runner's report, or why there is none.

use k8s_openapi::api::core::v1::Pod;
use nbg_core::nvj::{CellStatus, NotebookValidationJobStatus, Phase};

use super::{Ctx, Plan};
use crate::controller::pod::RUNNER_CONTAINER;
use crate::controller::pod_status::never_ran;
use crate::protocol::report::{self, Outcome};

/// Reads a finished pod's report and decides the run's outcome.
pub(super) fn judge(
    cx: &Ctx<'_>,
    mut status: NotebookValidationJobStatus,
    p: &Pod,
    plan: &mut Plan,
) {
    let pod_status = p.status.clone().unwrap_or_default();
    let pod_reason = pod_status.reason.clone().unwrap_or_default();
    let terminated = pod_status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == RUNNER_CONTAINER)
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.clone());
    if pod_reason == "DeadlineExceeded" {
        let message = format!(
            "the notebook ran longer than the timeout {} and was stopped",
            cx.nvj.spec.timeout
        );
        return cx.fail(status, "Timeout", message, plan);
    }
    let Some(t) = terminated else {
        let why = match pod_reason.as_str() {
            "Evicted" => format!(
                "the validation pod was evicted: {}",
                pod_status.message.unwrap_or_default()
            ),
            "" => never_ran(&pod_status).unwrap_or_else(|| {
                "the validation pod ended before the notebook container ran".to_string()
            }),
            other => format!(
                "the validation pod ended: {other}: {}",
                pod_status.message.unwrap_or_default()
            ),
        };
        return cx.retry_or_fail(status, why, Some(p), plan);
    };
    if t.reason.as_deref() == Some("OOMKilled") {
        let mut message =
            "the notebook container exceeded its memory limit and was killed (OOMKilled)"
                .to_string();
        // The kernel is usually what the kernel's OOM killer picks; the runner then reports
        // the cells up to the one the kernel died in.
        if let Ok(r) = report::decode(t.message.as_deref().unwrap_or_default()) {
            if let Some(cell) = r.cells.iter().find(|c| c.status == CellStatus::Failure) {
                message.push_str(&format!(
                    " while running cell {} (cellIndex {})",
                    cell.cell_index + 1,
                    cell.cell_index
                ));
            }
            status.results = r.cells;
        }
        return cx.fail(status, "OOMKilled", message, plan);
    }
    match report::decode(t.message.as_deref().unwrap_or_default()) {
        Ok(r) => {
            status.results = r.cells.clone();
            status.comparison_result = r.comparison.clone();
            match r.outcome {
                Outcome::Succeeded if t.exit_code == 0 => {
                    status = cx.at(
                        status,
                        Phase::Succeeded,
                        r.outcome.reason(),
                        r.message.clone(),
                    );
                    plan.status = Some(status);
                }
                Outcome::Succeeded => {
                    let why = format!(
                        "the runner reported success but exited with {}",
                        t.exit_code
                    );
                    cx.retry_or_fail(status, why, Some(p), plan);
                }
                Outcome::Infrastructure => cx.retry_or_fail(status, r.message, Some(p), plan),
                other => cx.fail(status, other.reason(), r.message, plan),
            }
        }
        // Without a report there is no verdict: never a success.
        Err(e) => {
            let why = format!(
                "the notebook container exited with {} without a report ({e})",
                t.exit_code
            );
            cx.retry_or_fail(status, why, Some(p), plan);
        }
    }
}
