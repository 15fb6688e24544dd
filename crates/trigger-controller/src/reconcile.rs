//! The reconciler: for a Succeeded run, act on each trigger target once and record it.
//!
//! For each entry of `mlops.dev/on-success-trigger`: if `status.triggers` already has a final
//! record for this run, nothing happens; otherwise the target is fetched, authorized, and the
//! planned patch (which carries the run's identity) applied; the record is written with this
//! controller's field manager. A crash between the patch and the record is harmless: the next
//! reconcile finds the marker on the target (`Plan::AlreadyApplied`) and only records.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, ApiResource, DynamicObject, EvictParams, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use nbg_core::annotations::{self, RestartStrategy, TriggerAction, TriggerTarget};
use nbg_core::foreign::{Application, InferenceService, predictor_deployment};
use nbg_core::nvj::{NotebookValidationJob, Phase, TriggerOutcome, TriggerRecord};
use nbg_runtime::ReconcileError;
use nbg_runtime::events::{EventType, Events};
use nbg_runtime::metrics::OutcomeMetrics;
use nbg_runtime::runner::WatchContext;
use prometheus_client::encoding::EncodeLabelSet;
use serde_json::json;

use crate::NAME;
use crate::actions::{self, Plan, RolloutState};
use crate::authorize::{self, Policy};
use crate::eviction::{self, EvictionStep};
use crate::waiting::{TargetKey, WaitIndex};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
}

impl ReconcileError for Error {
    fn reason(&self) -> &'static str {
        "Kube"
    }
    fn is_transient(&self) -> bool {
        true
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    kind: String,
    action: String,
    /// `Succeeded`, `Failed`, `Denied`.
    result: String,
}

/// Actions by kind, action and result (`nbg_trigger_actions_total`); latency from the run's
/// completion to the action applied (`nbg_trigger_latency_seconds`).
pub type TriggerMetrics = OutcomeMetrics<ActionLabels>;

/// Registers trigger-controller's metrics.
pub fn register_metrics(registry: &nbg_runtime::metrics::SharedRegistry) -> TriggerMetrics {
    OutcomeMetrics::register(
        registry,
        (
            "trigger_actions",
            "Trigger outcomes, by target kind, action and result",
        ),
        (
            "trigger_latency_seconds",
            "From the NVJ's completion to the trigger's action being applied",
        ),
    )
}

pub struct TriggerReconciler {
    client: Client,
    events: Events,
    policy: Policy,
    metrics: TriggerMetrics,
    /// Discovery answers by group/version/kind: one lookup per kind, not one per trigger.
    resources: Mutex<HashMap<GroupVersionKind, ApiResource>>,
    /// NVJs waiting on targets, woken by the targets' watches.
    waiting: Arc<WaitIndex>,
    /// A rollout still going after this long is recorded `InProgress`, saying where it stands.
    rollout_deadline: Duration,
    /// The target kinds to watch (served and allowed).
    watched_kinds: Vec<ApiResource>,
    /// One per watched kind and namespace: the watched targets, cached: the first look at a target costs no request; a patch
    /// planned from the cache carries its resourceVersion, so a stale copy is refused (409)
    /// and the target is read afresh.
    target_caches: Mutex<Vec<TargetCache>>,
}

struct TargetCache {
    resource: ApiResource,
    /// The namespace watched; None: all.
    namespace: Option<String>,
    store: Store<DynamicObject>,
}

impl TargetCache {
    fn covers(&self, target: &TargetKey) -> bool {
        self.resource.group == target.group
            && self.resource.kind == target.kind
            && self
                .namespace
                .as_ref()
                .is_none_or(|n| *n == target.namespace)
    }
}

/// Target kinds watched while NVJs wait on them: (group, version, kind).
const WATCHABLE_KINDS: [(&str, &str, &str); 6] = [
    ("apps", "v1", "Deployment"),
    ("apps", "v1", "StatefulSet"),
    ("apps", "v1", "DaemonSet"),
    ("serving.kserve.io", "v1beta1", "InferenceService"),
    ("argoproj.io", "v1alpha1", "Rollout"),
    ("argoproj.io", "v1alpha1", "Application"),
];

/// The watchable kinds that the policy allows and the cluster serves.
pub async fn watchable_kinds(client: &Client, policy: &Policy) -> Vec<ApiResource> {
    let mut found = Vec::new();
    for (group, version, kind) in WATCHABLE_KINDS {
        if !policy.allowed_kinds.contains(&format!("{group}/{kind}")) {
            continue;
        }
        match kube::discovery::pinned_kind(client, &GroupVersionKind::gvk(group, version, kind))
            .await
        {
            Ok((resource, _)) => found.push(resource),
            Err(e) => {
                tracing::info!(%group, %kind, error = %e, "not served: targets of this kind are looked at every few seconds while waiting")
            }
        }
    }
    found
}

/// What acting on one target came to.
enum Step {
    /// Record this outcome; when it is not final, look again as `Wake` says.
    Record(Box<TriggerRecord>, Wake),
    /// The restart is applied (now or earlier) and rolling out. Nothing is recorded until it
    /// completes, the target reports it stuck, or it outlasts the rollout deadline
    /// (`--rollout-deadline`): a restart costs one status write. This record replaces one that
    /// said it was stuck. With where the rollout stands, as the target reports it.
    Rolling(Box<TriggerRecord>, Option<String>),
}

impl Step {
    fn recorded(record: TriggerRecord, wake: Wake) -> Self {
        Self::Record(Box::new(record), wake)
    }
}

/// When to look at a target again.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Wake {
    /// The outcome is final.
    Never,
    /// When the target changes (its watch), or every [`UNWATCHED_POLL`] when it is not watched.
    OnTargetChange,
    /// After this long (eviction: the target's pods are not watched).
    After(Duration),
}

/// How long a wait before the action (an Argo CD operation running) or a stuck rollout may last
/// before the record says so: most are over sooner.
const GRACE: Duration = Duration::from_secs(5);
/// How often a target that is not watched (another namespace) is looked at while waiting.
const UNWATCHED_POLL: Duration = Duration::from_secs(5);
/// A watched target is looked at this often anyway, in case a watch event was missed.
const WATCHED_RESYNC: Duration = Duration::from_secs(60);
/// How often an eviction in progress looks at the pods.
const EVICTION_POLL: Duration = Duration::from_secs(2);

impl TriggerReconciler {
    pub fn new(
        client: Client,
        events: Events,
        policy: Policy,
        metrics: TriggerMetrics,
        watched: Vec<ApiResource>,
        rollout_deadline: Duration,
    ) -> Self {
        Self {
            client,
            events,
            policy,
            metrics,
            // The watched kinds were discovered at start: not asked again.
            resources: Mutex::new(
                watched
                    .iter()
                    .map(|r| {
                        let gvk = GroupVersionKind::gvk(&r.group, &r.version, &r.kind);
                        (gvk, r.clone())
                    })
                    .collect(),
            ),
            waiting: Arc::default(),
            rollout_deadline,
            watched_kinds: watched,
            target_caches: Mutex::default(),
        }
    }

    /// The cached copy of `target`, when it is watched and the cache has it.
    fn cached(&self, target: &TargetKey) -> Option<DynamicObject> {
        let caches = self.target_caches.lock().ok()?;
        caches.iter().filter(|c| c.covers(target)).find_map(|c| {
            let key =
                ObjectRef::new_with(&target.name, c.resource.clone()).within(&target.namespace);
            c.store.get(&key).map(|o| (*o).clone())
        })
    }

    /// Whether a change of `target` reaches this controller through a watch.
    fn watches(&self, target: &TargetKey) -> bool {
        self.target_caches
            .lock()
            .is_ok_and(|caches| caches.iter().any(|c| c.covers(target)))
    }

    async fn api_for(
        &self,
        t: &TriggerTarget,
        namespace: &str,
    ) -> Result<Api<DynamicObject>, kube::Error> {
        let (group, version) = t
            .api_version
            .rsplit_once('/')
            .unwrap_or(("", t.api_version.as_str()));
        let gvk = GroupVersionKind::gvk(group, version, &t.kind);
        let cached = self
            .resources
            .lock()
            .ok()
            .and_then(|m| m.get(&gvk).cloned());
        let resource = match cached {
            Some(r) => r,
            None => {
                let (r, _) = kube::discovery::pinned_kind(&self.client, &gvk).await?;
                if let Ok(mut m) = self.resources.lock() {
                    m.insert(gvk, r.clone());
                }
                r
            }
        };
        Ok(Api::namespaced_with(
            self.client.clone(),
            namespace,
            &resource,
        ))
    }

    fn observe_latency(&self, nvj: &NotebookValidationJob, now: &Time) {
        if let Some(c) = completion_time(nvj) {
            self.metrics.observe_since_completion(
                std::time::Duration::try_from(now.0.duration_since(c)).unwrap_or_default(),
            );
        }
    }

    /// Acts on one target for `run`: planned from the cached target when there is one, and
    /// from a fresh read when the cached copy turns out stale.
    async fn act(
        &self,
        nvj: &NotebookValidationJob,
        t: &TriggerTarget,
        run: &str,
        now: &Time,
    ) -> Result<Step, Error> {
        match self.act_from(nvj, t, run, now, true).await {
            Err(Error::Kube(kube::Error::Api(s))) if s.code == 409 => {
                self.act_from(nvj, t, run, now, false).await
            }
            other => other,
        }
    }

    async fn act_from(
        &self,
        nvj: &NotebookValidationJob,
        t: &TriggerTarget,
        run: &str,
        now: &Time,
        use_cache: bool,
    ) -> Result<Step, Error> {
        let nvj_ns = nvj.namespace().unwrap_or_default();
        let ns = t.namespace_or(&nvj_ns).to_string();
        let record = |outcome, message: String| TriggerRecord {
            api_version: t.api_version.clone(),
            kind: t.kind.clone(),
            namespace: ns.clone(),
            name: t.name.clone(),
            action: t.action.as_str().to_string(),
            run: run.to_string(),
            outcome,
            message: Some(message),
            time: now.clone(),
        };
        let done = |outcome, message| Ok(Step::recorded(record(outcome, message), Wake::Never));
        let waiting = |message| {
            Ok(Step::recorded(
                record(TriggerOutcome::InProgress, message),
                Wake::OnTargetChange,
            ))
        };
        let rolling = |progress: Option<String>| {
            Ok(Step::Rolling(
                Box::new(record(
                    TriggerOutcome::InProgress,
                    "restart applied; rolling out".into(),
                )),
                progress,
            ))
        };
        let api = match self.api_for(t, &ns).await {
            Ok(api) => api,
            Err(kube::Error::Api(s)) if s.code == 404 => {
                return done(
                    TriggerOutcome::Failed,
                    format!("{} {} is not served by this cluster", t.api_version, t.kind),
                );
            }
            Err(e) => return Err(e.into()),
        };
        let cached = if use_cache {
            self.cached(&TargetKey {
                group: t.group().to_string(),
                kind: t.kind.clone(),
                namespace: ns.clone(),
                name: t.name.clone(),
            })
        } else {
            None
        };
        let live = match cached {
            Some(cached) => Ok(Some(cached)),
            None => api.get_opt(&t.name).await,
        };
        let live = match live {
            Ok(live) => live,
            // The controller's RBAC does not reach there: nothing can be done, say so.
            Err(kube::Error::Api(s)) if s.code == 403 => {
                let why = format!(
                    "this controller may not read {} in namespace {ns} (RBAC)",
                    t.kind
                );
                return done(TriggerOutcome::Denied, why);
            }
            Err(e) => return Err(e.into()),
        };
        let Some(live) = live else {
            return done(
                TriggerOutcome::Failed,
                format!("{} {ns}/{} not found", t.kind, t.name),
            );
        };
        let value = serde_json::to_value(&live).unwrap_or_default();
        let managing_app = if t.group() == "argoproj.io" && t.kind == "Application" {
            let app: Application = match serde_json::from_value(value.clone()) {
                Ok(app) => app,
                // Never a default in its place: an Application we cannot read manages nothing
                // we could prove.
                Err(e) => {
                    return done(
                        TriggerOutcome::Failed,
                        format!("cannot read Application {ns}/{}: {e}", t.name),
                    );
                }
            };
            authorize::application_manages(&app, live.data.get("status"), nvj)
        } else {
            false
        };
        if let Err(denied) = authorize::authorize(
            &self.policy,
            nvj,
            t,
            live.metadata.annotations.as_ref(),
            managing_app,
        ) {
            return done(TriggerOutcome::Denied, denied.to_string());
        }
        if t.strategy == RestartStrategy::Evict {
            return self.evict(nvj, t, &ns, &value, record, now).await;
        }
        // Whole seconds, as `kubectl rollout restart` writes them (RFC 3339).
        let stamp = Timestamp::from_second(now.0.as_second()).unwrap_or(now.0);
        match actions::plan(t, &value, run, &stamp.to_string(), completion_time(nvj)) {
            Plan::AlreadyApplied => {}
            Plan::Wait(why) => return waiting(why.to_string()),
            Plan::Unsupported(why) => return done(TriggerOutcome::Failed, why),
            Plan::Patch(mut patch) => {
                // Applies only to the version planned from (409 otherwise): a stale cached copy
                // can never restart twice.
                patch["metadata"]["resourceVersion"] = json!(live.metadata.resource_version);
                api.patch(
                    &t.name,
                    &PatchParams {
                        field_manager: Some(NAME.into()),
                        ..PatchParams::default()
                    },
                    &Patch::Merge(&patch),
                )
                .await?;
                self.observe_latency(nvj, now);
                tracing::info!(nvj = %ObjectRef::from_obj(nvj), run, action = %t.action, kind = %t.kind, target = %format!("{ns}/{}", t.name), "applied");
                // A sync or refresh is done once requested; a restart once rolled out.
                if t.action != TriggerAction::Restart {
                    return done(TriggerOutcome::Succeeded, succeeded(t.action));
                }
                return rolling(None);
            }
        }
        let predictor = match predictor_target(t, &ns).filter(|_| standard_mode(&value)) {
            Some(key) => match self.predictor(&key).await? {
                Ok(deployment) => deployment,
                Err(why) => return waiting(format!("{} applied; {why}", t.action)),
            },
            None => None,
        };
        match actions::rollout_state(t.group(), &t.kind, &value, predictor.as_ref()) {
            RolloutState::Complete => done(TriggerOutcome::Succeeded, succeeded(t.action)),
            RolloutState::Rolling => rolling(actions::rollout_progress(
                t.group(),
                &t.kind,
                &value,
                predictor.as_ref(),
            )),
            RolloutState::Stuck(why) => waiting(format!("{} applied; {why}", t.action)),
        }
    }

    /// The predictor Deployment of an InferenceService in KServe's Standard mode: from the
    /// watch cache, else read. `Err` says why it cannot be read.
    async fn predictor(
        &self,
        key: &TargetKey,
    ) -> Result<Result<Option<serde_json::Value>, String>, Error> {
        if let Some(cached) = self.cached(key) {
            return Ok(Ok(serde_json::to_value(cached).ok()));
        }
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &key.namespace);
        match api.get_opt(&key.name).await {
            Ok(found) => Ok(Ok(found.and_then(|d| serde_json::to_value(d).ok()))),
            Err(kube::Error::Api(s)) if s.code == 403 => Ok(Err(format!(
                "this controller may not read KServe's predictor Deployment {}/{} (RBAC), so it cannot tell when the restart has rolled out",
                key.namespace, key.name
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// `restart` with `strategy: evict`: one eviction per call, through the Eviction API.
    async fn evict(
        &self,
        nvj: &NotebookValidationJob,
        t: &TriggerTarget,
        ns: &str,
        live: &serde_json::Value,
        record: impl Fn(TriggerOutcome, String) -> TriggerRecord,
        now: &Time,
    ) -> Result<Step, Error> {
        let failed = |why: String| {
            Ok(Step::recorded(
                record(TriggerOutcome::Failed, why),
                Wake::Never,
            ))
        };
        let Some(completed) = completion_time(nvj) else {
            return failed("the run has no completion time to evict pods against".into());
        };
        let selector = match eviction::pod_selector(t.group(), &t.kind, live) {
            Ok(s) => s,
            Err(why) => return failed(why.to_string()),
        };
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let pods = match pods_api
            .list(&ListParams::default().labels(&selector))
            .await
        {
            Ok(list) => list.items,
            Err(kube::Error::Api(s)) if s.code == 403 => {
                let why = format!("this controller may not list pods in namespace {ns} (RBAC)");
                return Ok(Step::recorded(
                    record(TriggerOutcome::Denied, why),
                    Wake::Never,
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let wait = |why: String| {
            Ok(Step::recorded(
                record(TriggerOutcome::InProgress, why),
                Wake::After(EVICTION_POLL),
            ))
        };
        match eviction::plan(t.group(), &t.kind, live, &pods, completed) {
            EvictionStep::Done(how) => Ok(Step::recorded(
                record(
                    TriggerOutcome::Succeeded,
                    format!("restarted by eviction: {how}"),
                ),
                Wake::Never,
            )),
            EvictionStep::Wait(why) => wait(why.to_string()),
            EvictionStep::Evict(pod) => match pods_api.evict(&pod, &EvictParams::default()).await {
                Ok(_) => {
                    if nvj_has_no_record(nvj, t, ns) {
                        self.observe_latency(nvj, now);
                    }
                    wait(format!("evicted pod {pod}; waiting for its replacement"))
                }
                // 429: a PodDisruptionBudget does not allow it now.
                Err(kube::Error::Api(s)) if s.code == 429 => wait(format!(
                    "a PodDisruptionBudget does not allow evicting pod {pod} now"
                )),
                Err(kube::Error::Api(s)) if s.code == 404 => wait(format!("pod {pod} is gone")),
                Err(kube::Error::Api(s)) if s.code == 403 => Ok(Step::recorded(
                    record(
                        TriggerOutcome::Denied,
                        format!("this controller may not evict pods in namespace {ns} (RBAC)"),
                    ),
                    Wake::Never,
                )),
                Err(e) => Err(e.into()),
            },
        }
    }
}

/// The Deployment that rolls when `t`, an InferenceService, restarts in KServe's Standard mode.
fn predictor_target(t: &TriggerTarget, ns: &str) -> Option<TargetKey> {
    (t.group() == "serving.kserve.io" && t.kind == "InferenceService").then(|| TargetKey {
        group: "apps".into(),
        kind: "Deployment".into(),
        namespace: ns.to_string(),
        name: predictor_deployment(&t.name),
    })
}

/// Whether `live` is an InferenceService that KServe runs in Standard mode.
fn standard_mode(live: &serde_json::Value) -> bool {
    serde_json::from_value::<InferenceService>(live.clone()).is_ok_and(|i| i.standard_mode())
}

/// `10 minutes`, `90 s`.
fn in_words(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        60 => "1 minute".into(),
        s if s >= 60 && s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} s"),
    }
}

/// What a Succeeded record says.
fn succeeded(action: TriggerAction) -> String {
    match action {
        TriggerAction::Restart => "restart applied; rollout complete",
        TriggerAction::Sync => "sync operation requested",
        TriggerAction::Refresh => "refresh requested",
    }
    .into()
}

/// When the run completed: `status.completionTime`, else when it became Ready.
fn completion_time(nvj: &NotebookValidationJob) -> Option<Timestamp> {
    let status = nvj.status.as_ref()?;
    status
        .completion_time
        .as_ref()
        .or_else(|| status.condition("Ready").map(|c| &c.last_transition_time))
        .map(|t| t.0)
}

fn nvj_has_no_record(nvj: &NotebookValidationJob, t: &TriggerTarget, ns: &str) -> bool {
    let run = nvj.run_id();
    !nvj.status.as_ref().is_some_and(|s| {
        s.triggers.iter().any(|r| {
            Some(&r.run) == run.as_ref()
                && r.kind == t.kind
                && r.namespace == ns
                && r.name == t.name
        })
    })
}

/// The condition trigger-controller owns on the NVJ.
pub const CONDITION_TRIGGERS_VALID: &str = "TriggersValid";

fn triggers_valid(
    nvj: &NotebookValidationJob,
    valid: bool,
    reason: &str,
    message: &str,
) -> Condition {
    let now = Time(Timestamp::now());
    let new = nbg_core::conditions::condition(
        CONDITION_TRIGGERS_VALID,
        valid,
        reason,
        message,
        nvj.metadata.generation,
        &now,
    );
    // The transition time moves only when the status does: the shared rule.
    let mut current: Vec<Condition> = nvj
        .status
        .as_ref()
        .and_then(|s| s.condition(CONDITION_TRIGGERS_VALID))
        .cloned()
        .into_iter()
        .collect();
    nbg_core::conditions::upsert(&mut current, new.clone());
    current.pop().unwrap_or(new)
}

fn condition_changed(nvj: &NotebookValidationJob, c: &Condition) -> bool {
    let old = nvj
        .status
        .as_ref()
        .and_then(|s| s.condition(CONDITION_TRIGGERS_VALID));
    old.is_none_or(|o| {
        o.status != c.status
            || o.message != c.message
            || o.observed_generation != c.observed_generation
    })
}

impl TriggerReconciler {
    /// Everything this controller owns in the status, in one apply: with server-side apply,
    /// what a manager omits from its next apply is removed.
    async fn apply_status(
        &self,
        nvj: &NotebookValidationJob,
        triggers: Vec<TriggerRecord>,
        condition: Condition,
    ) -> Result<(), Error> {
        let status = serde_json::json!({"triggers": triggers, "conditions": [condition]});
        nbg_runtime::status::apply_status(&self.client, nvj, NAME, &status, false).await?;
        Ok(())
    }
}

fn final_outcome(o: TriggerOutcome) -> bool {
    !matches!(o, TriggerOutcome::InProgress)
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

    /// Watches the targets NVJs may wait on, in this controller's namespace(s); a change wakes
    /// the NVJs waiting on that target.
    fn configure(
        &self,
        mut controller: Controller<NotebookValidationJob>,
        watch: &WatchContext<'_>,
    ) -> Controller<NotebookValidationJob> {
        for resource in &self.watched_kinds {
            let namespace = watch.namespace;
            let api = watch.api_with(resource);
            let writer = reflector::store::Writer::new(resource.clone());
            if let Ok(mut caches) = self.target_caches.lock() {
                // A new leadership term configures again: its cache replaces the last one's.
                caches.retain(|c| {
                    !(c.resource.group == resource.group
                        && c.resource.kind == resource.kind
                        && c.namespace.as_deref() == namespace)
                });
                caches.push(TargetCache {
                    resource: resource.clone(),
                    namespace: namespace.map(str::to_string),
                    store: writer.as_reader(),
                });
            }
            // Only what planning reads is kept: no managedFields, no last-applied copy.
            let raw = watcher(api, watcher::Config::default());
            let label = format!("{}.{}", resource.plural, resource.group);
            let stream = reflector(
                writer,
                watch
                    .resilient(&label, raw)
                    .modify(nbg_runtime::runner::slim),
            )
            .touched_objects();
            let index = self.waiting.clone();
            let (group, kind) = (resource.group.clone(), resource.kind.clone());
            controller = controller.watches_stream_with(
                stream,
                move |target: DynamicObject| {
                    let key = TargetKey {
                        group: group.clone(),
                        kind: kind.clone(),
                        namespace: target.namespace().unwrap_or_default(),
                        name: target.name_any(),
                    };
                    let waiting = index.waiting_on(&key);
                    // A rollout's intermediate states change nothing for the NVJs: wake them
                    // when it is complete or stuck, or on any change once it was recorded stuck
                    // (Applications: on any change, an operation may have finished).
                    // InferenceServices: on any change too - in Standard mode KServe's Ready
                    // after the predictor rolled is what completes the restart.
                    let wake = !waiting.is_empty()
                        && (index.every_change(&key)
                            || kind == "InferenceService"
                            || serde_json::to_value(&target).is_ok_and(|v| {
                                actions::rollout_state(&group, &kind, &v, None)
                                    != RolloutState::Rolling
                            }));
                    if wake { waiting } else { Vec::new() }
                },
                resource.clone(),
            );
        }
        controller
    }

    async fn reconcile(&self, nvj: Arc<NotebookValidationJob>) -> Result<Action, Error> {
        if nvj.current_phase() != Some(Phase::Succeeded) {
            return Ok(Action::await_change());
        }
        let Some(run) = nvj.run_id() else {
            return Ok(Action::await_change());
        };
        let Some(value) = nvj
            .annotations()
            .get(annotations::ON_SUCCESS_TRIGGER)
            .cloned()
        else {
            return Ok(Action::await_change());
        };
        let reference = nvj.object_ref(&());
        let existing: Vec<TriggerRecord> = nvj
            .status
            .as_ref()
            .map(|s| s.triggers.clone())
            .unwrap_or_default();
        let targets = match annotations::parse_on_success_trigger(&value) {
            Ok(t) => t,
            Err(e) => {
                // Never acted on: a condition and a Warning Event say why, naming entry and field.
                let condition = triggers_valid(&nvj, false, "InvalidTrigger", &e.to_string());
                if condition_changed(&nvj, &condition) {
                    self.apply_status(&nvj, existing, condition).await?;
                    self.events
                        .warning(
                            &reference,
                            "TriggerDenied",
                            "ParseTriggers",
                            format!("run {run}: {e}"),
                        )
                        .await;
                }
                return Ok(Action::await_change());
            }
        };
        let now = Time(Timestamp::now());
        let nvj_ns = nvj.namespace().unwrap_or_default();
        let mut records: BTreeMap<(String, String, String, String), TriggerRecord> = existing
            .into_iter()
            .map(|r| {
                (
                    (
                        r.kind.clone(),
                        r.namespace.clone(),
                        r.name.clone(),
                        r.action.clone(),
                    ),
                    r,
                )
            })
            .collect();
        let nvj_ref = ObjectRef::from_obj(nvj.as_ref());
        let mut again: Option<Duration> = None;
        let mut changed = Vec::new();
        // Some target is rolling out or about to be recorded: the condition waits for that write.
        let mut pending = false;
        for t in &targets {
            let key = (
                t.kind.clone(),
                t.namespace_or(&nvj_ns).to_string(),
                t.name.clone(),
                t.action.as_str().to_string(),
            );
            if records
                .get(&key)
                .is_some_and(|r| r.run == run && final_outcome(r.outcome))
            {
                continue;
            }
            let target = TargetKey {
                group: t.group().to_string(),
                kind: t.kind.clone(),
                namespace: key.1.clone(),
                name: t.name.clone(),
            };
            let mut soon = |after: Duration| again = Some(again.map_or(after, |a| a.min(after)));
            let resync = if self.watches(&target) {
                WATCHED_RESYNC
            } else {
                UNWATCHED_POLL
            };
            // Waiting before acting: the change the action causes cannot pass unnoticed. An
            // InferenceService's restart rolls its predictor Deployment in KServe's Standard mode:
            // that Deployment's changes wake the NVJ too.
            let since = self.waiting.wait(target.clone(), nvj_ref.clone());
            let predictor = predictor_target(t, &key.1);
            if let Some(p) = &predictor {
                self.waiting.wait(p.clone(), nvj_ref.clone());
            }
            let stop_waiting = |index: &WaitIndex| {
                index.done(&target, &nvj_ref);
                if let Some(p) = &predictor {
                    index.done(p, &nvj_ref);
                }
            };
            // `stuck`: an InProgress record that the target's next change may make stale.
            let (record, wake, stuck) = match self.act(&nvj, t, &run, &now).await? {
                Step::Rolling(mut record, progress) => {
                    let said_stuck = records
                        .get(&key)
                        .is_some_and(|r| r.run == run && r.outcome == TriggerOutcome::InProgress);
                    if since.elapsed() >= self.rollout_deadline {
                        let progress = progress.map(|p| format!(": {p}")).unwrap_or_default();
                        record.message = Some(format!(
                            "restart applied; the rollout has not completed in {}{progress}",
                            in_words(self.rollout_deadline)
                        ));
                    } else if !said_stuck {
                        pending = true;
                        // Looked at again when the deadline passes, if nothing wakes it sooner.
                        soon(resync.min(self.rollout_deadline.saturating_sub(since.elapsed())));
                        continue;
                    }
                    (*record, Wake::OnTargetChange, false)
                }
                Step::Record(record, wake) => {
                    let stuck = record.outcome == TriggerOutcome::InProgress;
                    (*record, wake, stuck)
                }
            };
            match wake {
                Wake::Never => stop_waiting(&self.waiting),
                // An eviction looks at the pods, not the target: its changes need not wake it.
                Wake::After(after) => {
                    stop_waiting(&self.waiting);
                    soon(after);
                }
                Wake::OnTargetChange => {
                    let recorded = records
                        .get(&key)
                        .is_some_and(|r| r.run == run && r.outcome == record.outcome);
                    // Most waits are over within moments: record only one that lasts.
                    if !recorded && since.elapsed() < GRACE {
                        pending = true;
                        soon(GRACE.saturating_sub(since.elapsed()));
                        continue;
                    }
                    self.waiting.set_every_change(&target, stuck);
                    soon(resync);
                }
            }
            let before = records
                .get(&key)
                .map(|r| (r.run.clone(), r.outcome, r.message.clone()));
            if before != Some((record.run.clone(), record.outcome, record.message.clone())) {
                changed.push(record.clone());
            }
            records.insert(key, record);
        }
        let condition = triggers_valid(
            &nvj,
            true,
            "Valid",
            &format!("{} trigger targets", targets.len()),
        );
        // While a target is pending, a new or reworded condition is written with its record, so
        // a trigger costs one status write; a condition turning True or False is written now.
        let flipped = nvj
            .status
            .as_ref()
            .and_then(|s| s.condition(CONDITION_TRIGGERS_VALID))
            .is_some_and(|old| old.status != condition.status);
        if !changed.is_empty() || (condition_changed(&nvj, &condition) && (!pending || flipped)) {
            self.apply_status(&nvj, records.into_values().collect(), condition)
                .await?;
            for r in changed {
                if r.outcome != TriggerOutcome::InProgress {
                    let labels = ActionLabels {
                        kind: r.kind.clone(),
                        action: r.action.clone(),
                        result: r.outcome.as_str().to_string(),
                    };
                    self.metrics.count(&labels);
                }
                let target = format!("{} {} {}/{}", r.action, r.kind, r.namespace, r.name);
                let note = format!(
                    "{target} for run {run}: {}",
                    r.message.clone().unwrap_or_default()
                );
                let (type_, reason) = match r.outcome {
                    TriggerOutcome::Succeeded => (EventType::Normal, "TriggerSucceeded"),
                    TriggerOutcome::Denied => (EventType::Warning, "TriggerDenied"),
                    TriggerOutcome::Failed => (EventType::Warning, "TriggerFailed"),
                    TriggerOutcome::InProgress => continue,
                };
                // The target as the Event's related object: one Event per target.
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
        Ok(again.map_or_else(Action::await_change, Action::requeue))
    }
}
