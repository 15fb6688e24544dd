//! Act 4 of the demo (with the real KServe): a commit computes the training features in another
//! order. The notebook still passes - the same accuracy, its golden notebook matches - and the
//! model server loads the new model; but asked the example's `spec.modelValidation` transactions,
//! it answers wrongly: trigger-controller records the restart Failed with expected and actual,
//! and the NVJ turns Degraded in Argo CD.

use super::*;

/// The retrained notebook training on the features in another order than a request sends them.
pub(super) fn reordered_notebook() -> anyhow::Result<String> {
    edit_cell(
        &retrained_notebook()?,
        2,
        "return [math.log1p(r[\"amount\"]), 1.0 if r[\"hour\"] < 6 else 0.0, 1.0 if r[\"foreign\"] else 0.0]",
        "return [1.0 if r[\"foreign\"] else 0.0, 1.0 if r[\"hour\"] < 6 else 0.0, math.log1p(r[\"amount\"])]",
    )
}

/// What act 4 came to.
#[derive(Debug, Clone, Default)]
pub struct Act4 {
    pub run: String,
    pub phase: String,
    pub restart: String,
    /// `status.modelValidationResult`: success and message.
    pub model_result: String,
    pub health: String,
}

impl Act4 {
    pub fn as_promised(&self) -> bool {
        self.phase == "Succeeded"
            && self.restart.starts_with(
                "Failed: restart applied; rollout complete; the new model answers wrongly: predicted [0,1,1], expected [0,0,1]",
            )
            && self.model_result.starts_with("false: ")
            && self
                .health
                .starts_with("Degraded: Validation succeeded, but the served model failed its check")
    }
}

pub(super) async fn act4(
    stage: &mut Stage<'_>,
    repo: &GitRepo,
    after_run: &str,
) -> anyhow::Result<Act4> {
    let t = stage.t;
    t.heading(
        "Act 4: a commit trains on the features in another order; the notebook passes, the model server loads the model - and answers wrongly: the restart is reported Failed",
    );
    let commit = repo.commit(
        &[("notebooks/train.ipynb", reordered_notebook()?)],
        "Order the features as the data warehouse does",
    );
    t.say(
        "git",
        format!(
            "commit {} of fraud-detection: notebooks/train.ipynb builds the features as [foreign, night, log1p(amount)]; requests still send [log1p(amount), night, foreign]",
            &commit[..8]
        ),
    );
    stage.observer.new_run(Some(after_run.to_string()));
    stage.argocd.stop_retrying(t).await?;
    stage
        .argocd
        .pin_notebook(&stage.nvjs.clone(), &commit, t)
        .await?;
    let nvj = stage
        .until("act 4", |s, nvj, _| {
            let run = nvj.run_id()?;
            if run == after_run || !ended(nvj) {
                return None;
            }
            if nvj.current_phase() == Some(nbg_core::nvj::Phase::Failed) {
                return Some(nvj.clone());
            }
            let restart = final_record(nvj, &run, "restart")?;
            // The result lands with the record; Argo CD's health follows it.
            nvj.status.as_ref()?.model_validation_result.as_ref()?;
            (restart.outcome != TriggerOutcome::InProgress && s.rolling.is_none())
                .then(|| nvj.clone())
        })
        .await?;
    let status = nvj.status.clone().unwrap_or_default();
    let run = nvj.run_id().unwrap_or_default();
    let mut act = Act4 {
        run: run.clone(),
        phase: status.phase.map(|p| format!("{p:?}")).unwrap_or_default(),
        restart: final_record(&nvj, &run, "restart")
            .map(|r| said(&r))
            .unwrap_or_default(),
        model_result: status
            .model_validation_result
            .as_ref()
            .map(|r| format!("{}: {}", r.success, r.message.clone().unwrap_or_default()))
            .unwrap_or_default(),
        health: String::new(),
    };
    if act.phase != "Succeeded" {
        bail!(
            "act 4: the validation did not succeed: {:?} (logs: {})",
            status.message,
            stage.logs
        );
    }
    // Argo CD assesses health on its own schedule: give it the time to see the result.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        stage.look().await?;
        let nvj = stage.nvjs.get(NVJ).await?;
        act.health = stage.argocd.nvj_health(&nvj).await?;
        if act.health.starts_with("Degraded") || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    t.say("NVJ health", &act.health);
    Ok(act)
}
