//! The reconciler: for a Succeeded run, act on each trigger target once and record it.
//!
//! Observe ([`crate::observe`]) -> decide ([`crate::decide`], pure) -> apply (here): the patch
//! or eviction each target needs, then this controller's whole status in one server-side apply
//! with its own field manager, then an Event per final outcome. A crash between the patch and
//! the record is harmless: the next reconcile finds the run's marker on the target
//! (`AlreadyApplied`) and only records.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, EvictParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource};
use nbg_core::nvj::{NotebookValidationJob, TriggerOutcome, TriggerRecord};
use nbg_runtime::ReconcileError;
use nbg_runtime::events::{EventType, Events};
use nbg_runtime::runner::WatchContext;

use crate::NAME;
use crate::authorize::Policy;
use crate::decide::{self, Act, Decision, Follow, Observed, Refusal, StatusWrite, Step, Work};
use crate::served_model::{Answer, ModelRequest};

/// The longest a question to a predictor may take (a model answering slower than this is
/// asked again until `spec.modelValidation.timeout`).
const ASK_TIMEOUT: Duration = Duration::from_secs(10);
use crate::metrics::{ActionLabels, TriggerMetrics};
use crate::targets::Targets;
use crate::waiting::WaitIndex;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// A patch planned from one version of the target met a newer one (409).
    #[error("{kind} {namespace}/{name} changed while it was patched; it is read again")]
    Conflict {
        kind: String,
        namespace: String,
        name: String,
    },
}

impl ReconcileError for Error {
    fn reason(&self) -> &'static str {
        match self {
            Self::Kube(_) => "Kube",
            Self::Conflict { .. } => "Conflict",
        }
    }
    fn is_transient(&self) -> bool {
        true
    }
}

/// The API server, as the controller reaches it.
pub struct Clients {
    pub api: Client,
    /// For predictors behind the API server's proxy: without retries.
    pub models: Client,
}

pub struct TriggerReconciler {
    pub(crate) client: Client,
    /// Asks predictors through the API server's proxy: a model server's 503 is its answer,
    /// which `client` would retry for a minute.
    models: Client,
    events: Events,
    policy: Policy,
    /// Argo CD's tracking settings, kept current; each reconcile decides with one reading.
    tracking: nbg_runtime::argocd::TrackingSettings,
    metrics: TriggerMetrics,
    /// NVJs waiting on targets, woken by the targets' watches.
    pub(crate) waiting: Arc<WaitIndex>,
    /// A rollout still going after this long is recorded `InProgress`, saying where it stands.
    rollout_deadline: Duration,
    pub(crate) targets: Targets,
}

impl TriggerReconciler {
    pub fn new(
        clients: Clients,
        events: Events,
        policy: Policy,
        tracking: nbg_runtime::argocd::TrackingSettings,
        metrics: TriggerMetrics,
        targets: Targets,
        rollout_deadline: Duration,
    ) -> Self {
        Self {
            client: clients.api,
            models: clients.models,
            events,
            policy,
            tracking,
            metrics,
            waiting: Arc::default(),
            rollout_deadline,
            targets,
        }
    }

    /// The policy with the tracking settings in force now.
    pub(crate) fn policy(&self) -> Policy {
        Policy {
            tracking: self.tracking.current(),
            ..self.policy.clone()
        }
    }

    fn observe_latency(&self, nvj: &NotebookValidationJob, now: Timestamp) {
        if let Some(c) = decide::completion_time(nvj) {
            self.metrics.observe_since_completion(
                Duration::try_from(now.duration_since(c)).unwrap_or_default(),
            );
        }
    }

    /// Observes, decides and acts on one target; a patch refused because the cached copy was
    /// stale (409) is planned again from a fresh read.
    async fn act_on(
        &self,
        nvj: &NotebookValidationJob,
        run: &str,
        t: &nbg_core::annotations::TriggerTarget,
        now: Timestamp,
    ) -> Result<(Observed, Step), Error> {
        let policy = self.policy();
        let obs = self.observe(nvj, t, now, true).await?;
        let decision = decide::decide_target(nvj, run, &obs, &policy, now);
        match self.apply(nvj, run, &obs, decision, now).await {
            Err(Error::Conflict { .. }) => {}
            other => return other.map(|step| (obs, step)),
        }
        // Changed again between this read and the patch: the next reconcile reads again.
        let obs = self.observe(nvj, t, now, false).await?;
        let decision = decide::decide_target(nvj, run, &obs, &policy, now);
        let step = self.apply(nvj, run, &obs, decision, now).await?;
        Ok((obs, step))
    }

    /// Does what `decision` says on the target; the outcome that follows.
    async fn apply(
        &self,
        nvj: &NotebookValidationJob,
        run: &str,
        obs: &Observed,
        decision: Decision,
        now: Timestamp,
    ) -> Result<Step, Error> {
        let t = &obs.target;
        match decision.act {
            Act::Nothing => Ok(decision.step),
            Act::Patch(patch) => {
                let api = self.targets.api_for(t, &obs.key.namespace).await?;
                let params = PatchParams {
                    field_manager: Some(NAME.into()),
                    ..PatchParams::default()
                };
                match api.patch(&t.name, &params, &Patch::Merge(&patch)).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        return Err(Error::Conflict {
                            kind: t.kind.clone(),
                            namespace: obs.key.namespace.clone(),
                            name: t.name.clone(),
                        });
                    }
                    Err(e) => return Err(e.into()),
                }
                self.observe_latency(nvj, now);
                tracing::info!(nvj = %ObjectRef::from_obj(nvj), run, action = %t.action, kind = %t.kind, target = %format!("{}/{}", obs.key.namespace, t.name), "applied");
                Ok(decision.step)
            }
            Act::Evict(pod) => {
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &obs.key.namespace);
                let refusal = match api.evict(&pod, &EvictParams::default()).await {
                    Ok(_) => {
                        let key = decide::RecordKey::of_target(t, &decide::act::nvj_namespace(nvj));
                        if !decide::has_record(nvj, run, &key) {
                            self.observe_latency(nvj, now);
                        }
                        return Ok(decision.step);
                    }
                    Err(kube::Error::Api(s)) if s.code == 429 => Refusal::Budget,
                    Err(kube::Error::Api(s)) if s.code == 404 => Refusal::Gone,
                    Err(kube::Error::Api(s)) if s.code == 403 => Refusal::Forbidden,
                    Err(e) => return Err(e.into()),
                };
                Ok(decide::refused_eviction(obs, run, now, &pod, refusal))
            }
            Act::AskModel(ask) => {
                let answer = self.ask_model(&ask.request).await;
                tracing::info!(nvj = %ObjectRef::from_obj(nvj), run, request = %ask.request.describe(), answer = ?answer, "asked the new model");
                Ok(decide::served::answered(obs, run, now, &ask, &answer))
            }
        }
    }

    /// Sends `request` to the predictor through the API server's service proxy; no answer
    /// within [`ASK_TIMEOUT`] counts as none.
    async fn ask_model(&self, request: &ModelRequest) -> Answer {
        let path = request.proxy_path();
        let built = match &request.body {
            Some(body) => http::Request::post(&path)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(kube::client::Body::from(body.to_string().into_bytes())),
            None => http::Request::get(&path).body(kube::client::Body::from(Vec::new())),
        };
        let request = match built {
            Ok(r) => r,
            Err(e) => return Answer::Unreachable(format!("the request to {path}: {e}")),
        };
        let exchange = async {
            let response = self.models.send(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect_bytes().await?;
            Ok::<_, kube::Error>(Answer::Http {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        match tokio::time::timeout(ASK_TIMEOUT, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => Answer::Unreachable(format!("the API server: {e}")),
            Err(_) => Answer::Unreachable(format!("no answer within {} s", ASK_TIMEOUT.as_secs())),
        }
    }

    /// How the NVJ keeps waiting on the target (and on what rolls for it).
    fn follow(&self, nvj: &NotebookValidationJob, obs: &Observed, follow: Follow) {
        match follow {
            Follow::Keep => {}
            Follow::Watch { every_change } => self.waiting.set_every_change(&obs.key, every_change),
            Follow::Stop => {
                let nvj_ref = ObjectRef::from_obj(nvj);
                for key in std::iter::once(&obs.key).chain(&obs.rolls_with) {
                    self.waiting.done(key, &nvj_ref);
                }
            }
        }
    }

    /// Everything this controller owns in the status, in one apply: with server-side apply,
    /// what a manager omits from its next apply is removed.
    async fn write_status(
        &self,
        nvj: &NotebookValidationJob,
        write: &StatusWrite,
    ) -> Result<(), Error> {
        let mut status =
            serde_json::json!({"triggers": write.records, "conditions": [write.condition]});
        if let Some(result) = &write.model_result {
            status["modelValidationResult"] = serde_json::json!(result);
        }
        nbg_runtime::status::apply_status(&self.client, nvj, NAME, &status, false).await?;
        Ok(())
    }

    /// A count and an Event for each final outcome; the target is the Event's related object.
    async fn announce(&self, nvj: &NotebookValidationJob, run: &str, changed: &[TriggerRecord]) {
        let reference = nvj.object_ref(&());
        for r in changed {
            let (type_, reason) = match r.outcome {
                TriggerOutcome::Succeeded => (EventType::Normal, "TriggerSucceeded"),
                TriggerOutcome::Denied => (EventType::Warning, "TriggerDenied"),
                // The restart rolled out, but the new model did not answer as expected.
                TriggerOutcome::Failed if r.served_model.is_some() => {
                    (EventType::Warning, "ServedModelCheckFailed")
                }
                TriggerOutcome::Failed => (EventType::Warning, "TriggerFailed"),
                TriggerOutcome::InProgress => continue,
            };
            self.metrics.count(&ActionLabels::of(r));
            let note = format!(
                "{} {} {}/{} for run {run}: {}",
                r.action,
                r.kind,
                r.namespace,
                r.name,
                r.message.clone().unwrap_or_default()
            );
            let related = ObjectReference {
                api_version: Some(r.api_version.clone()),
                kind: Some(r.kind.clone()),
                namespace: Some(r.namespace.clone()),
                name: Some(r.name.clone()),
                ..ObjectReference::default()
            };
            self.events
                .publish(&reference, Some(&related), type_, reason, "Trigger", note)
                .await;
        }
    }
}

impl nbg_runtime::Reconciler for TriggerReconciler {
    type Object = NotebookValidationJob;
    type Error = Error;

    fn name(&self) -> &'static str {
        NAME
    }

    fn forget(&self, nvj: &NotebookValidationJob) {
        self.waiting.forget(&ObjectRef::from_obj(nvj));
    }

    fn configure(
        &self,
        controller: Controller<NotebookValidationJob>,
        watch: &WatchContext<'_>,
    ) -> Controller<NotebookValidationJob> {
        self.targets.configure(controller, watch, &self.waiting)
    }

    async fn reconcile(&self, nvj: Arc<NotebookValidationJob>) -> Result<Action, Error> {
        // The one look at the clock: every decision below is made at this instant.
        let now = Timestamp::now();
        let (run, targets) = match decide::work(&nvj) {
            Work::Nothing => return Ok(Action::await_change()),
            Work::Invalid { run, error } => {
                // Never acted on: a condition and a Warning Event say why, naming entry and field.
                // The Event first: once the condition is recorded this path is not taken again,
                // so an Event lost to an API server outage would never be said.
                if let Some(invalid) = decide::invalid(&nvj, &run, &error, now) {
                    self.events
                        .warning_or_error(
                            &nvj.object_ref(&()),
                            "TriggerDenied",
                            "ParseTriggers",
                            invalid.warning,
                        )
                        .await?;
                    let write = StatusWrite {
                        records: invalid.records,
                        condition: invalid.condition,
                        model_result: None,
                    };
                    self.write_status(&nvj, &write).await?;
                }
                return Ok(Action::await_change());
            }
            Work::Act { run, targets } => (run, targets),
        };
        let mut steps = Vec::new();
        for t in decide::open_targets(&nvj, &run, &targets) {
            steps.push(self.act_on(&nvj, &run, t, now).await?);
        }
        let plan = decide::plan(&nvj, &run, &targets, &steps, self.rollout_deadline, now);
        for ((obs, _), follow) in steps.iter().zip(&plan.follow) {
            self.follow(&nvj, obs, *follow);
        }
        if let Some(write) = &plan.status {
            self.write_status(&nvj, write).await?;
            self.announce(&nvj, &run, &plan.changed).await;
        }
        Ok(plan
            .requeue
            .map_or_else(Action::await_change, Action::requeue))
    }
}
