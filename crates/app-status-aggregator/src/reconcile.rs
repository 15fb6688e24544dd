//! The controller's I/O. The main objects are Argo CD Applications (in Argo CD's namespaces);
//! a watch of NVJs (in the controller's scope) keeps the facts index and wakes the Applications
//! whose NVJs changed. A reconcile waits until the NVJ watch has listed everything (so a restart
//! never writes a partial aggregate), decides ([`crate::aggregate::decide`]) and writes with
//! server-side apply as `app-status-aggregator`: its annotations, nothing else.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use nbg_core::foreign::Application;
use nbg_core::foreign::tracking::{AppRef, Tracking};
use nbg_core::nvj::NotebookValidationJob;
use nbg_runtime::argocd::TrackingSettings;
use nbg_runtime::events::Events;
use nbg_runtime::metrics::OutcomeMetrics;
use nbg_runtime::runner::{WatchContext, slim};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

use crate::NAME;
use crate::aggregate;
use crate::coalesce::{self, Timing};
use crate::facts::{Index, NvjFacts};

/// Its reconciles fail only on API requests.
pub type Error = nbg_runtime::runner::ApiError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApplicationLabels {
    /// `namespace/name`.
    application: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `updated` or `removed`.
    change: String,
}

/// Writes by change (`nbg_application_writes_total{change}`), the lag from the latest NVJ
/// change to its Application written (`nbg_application_write_lag_seconds`), and the
/// Applications tracked (`nbg_applications_tracked`), and per Application the NVJs it lists that
/// tracking does not attribute to it (`nbg_application_untracked_nvjs{application}`).
#[derive(Clone)]
pub struct AggregatorMetrics {
    writes: OutcomeMetrics<WriteLabels>,
    tracked: Gauge,
    untracked: Family<ApplicationLabels, Gauge>,
}

impl AggregatorMetrics {
    pub fn register(registry: &nbg_runtime::metrics::SharedRegistry) -> Self {
        let tracked = Gauge::default();
        let untracked = Family::<ApplicationLabels, Gauge>::default();
        if let Ok(mut r) = registry.write() {
            r.register(
                "applications_tracked",
                "Applications that at least one NVJ's tracking names",
                tracked.clone(),
            );
            r.register(
                "application_untracked_nvjs",
                "NVJs an Application lists in status.resources whose tracking does not name it (Argo CD's tracking settings and ours disagree)",
                untracked.clone(),
            );
        }
        Self {
            writes: OutcomeMetrics::register(
                registry,
                (
                    "application_writes",
                    "Application annotation writes, by change",
                ),
                (
                    "application_write_lag_seconds",
                    "From the latest NVJ change an aggregate reflects to its Application written",
                ),
            ),
            tracked,
            untracked,
        }
    }
}

/// One NVJ index per watch of Applications (per Argo CD namespace, or one for all), with the
/// number of NVJ watches that have listed everything.
struct Instance {
    index: Arc<Mutex<Index>>,
    synced: watch::Receiver<usize>,
    watches: usize,
}

pub struct AggregatorReconciler {
    client: Client,
    events: Events,
    tracking: TrackingSettings,
    application_namespaces: Vec<String>,
    coalesce: Duration,
    metrics: AggregatorMetrics,
    instances: Mutex<HashMap<Option<String>, Arc<Instance>>>,
    /// Applications whose aggregate differs from what they carry, since when.
    pending: Mutex<HashMap<AppRef, Instant>>,
    /// Per Application, the listed NVJs tracking does not attribute to it, as last reported:
    /// a Warning Event when this set changes, not on every reconcile.
    untracked: Mutex<HashMap<AppRef, BTreeSet<String>>>,
}

impl AggregatorReconciler {
    pub fn new(
        client: Client,
        events: Events,
        tracking: TrackingSettings,
        application_namespaces: Vec<String>,
        coalesce: Duration,
        metrics: AggregatorMetrics,
    ) -> Self {
        Self {
            client,
            events,
            tracking,
            application_namespaces,
            coalesce,
            metrics,
            instances: Mutex::default(),
            pending: Mutex::default(),
            untracked: Mutex::default(),
        }
    }

    /// Says so when `app` lists NVJs (this controller knows) whose tracking does not name it:
    /// a log line, the metric, and a Warning Event on the Application whenever the set changes.
    async fn report_untracked(
        &self,
        app: &Application,
        app_ref: &AppRef,
        untracked: BTreeSet<String>,
        message: Option<String>,
    ) {
        let labels = ApplicationLabels {
            application: app_ref.to_string(),
        };
        let changed = self.untracked.lock().is_ok_and(|mut seen| {
            let before = seen.get(app_ref).cloned().unwrap_or_default();
            if untracked.is_empty() {
                seen.remove(app_ref);
            } else {
                seen.insert(app_ref.clone(), untracked.clone());
            }
            before != untracked
        });
        if untracked.is_empty() {
            if changed {
                self.metrics.untracked.remove(&labels);
            }
            return;
        }
        self.metrics
            .untracked
            .get_or_create(&labels)
            .set(untracked.len() as i64);
        let Some(message) = message.filter(|_| changed) else {
            return;
        };
        tracing::warn!(application = %app_ref, nvjs = ?untracked, "{message}");
        let regarding = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("argoproj.io/v1alpha1".into()),
            kind: Some("Application".into()),
            name: app.metadata.name.clone(),
            namespace: app.metadata.namespace.clone(),
            uid: app.metadata.uid.clone(),
            ..Default::default()
        };
        // Related to the first NVJ named: a new disagreement is an Event of its own, not a
        // repetition of the last one (Events are de-duplicated by regarding, related, reason).
        let related = untracked.iter().next().and_then(|key| {
            let (namespace, name) = key.split_once('/')?;
            Some(k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some(format!(
                    "{}/{}",
                    nbg_core::nvj::GROUP,
                    nbg_core::nvj::VERSION
                )),
                kind: Some(nbg_core::nvj::KIND.into()),
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                ..Default::default()
            })
        });
        self.events
            .publish(
                &regarding,
                related.as_ref(),
                nbg_runtime::events::EventType::Warning,
                "TrackingMismatch",
                "Aggregate",
                message,
            )
            .await;
    }

    fn instance(&self, app_namespace: &str) -> Option<Arc<Instance>> {
        let instances = self.instances.lock().ok()?;
        instances
            .get(&Some(app_namespace.to_string()))
            .or_else(|| instances.get(&None))
            .cloned()
    }
}

/// What one NVJ watch event does to the index: the Applications to reconcile.
fn apply_event(
    event: watcher::Event<DynamicObject>,
    index: &Mutex<Index>,
    listing: &mut Vec<NvjFacts>,
    namespace: Option<&str>,
    tracking: &Tracking,
    in_scope: &dyn Fn(&str) -> bool,
    synced: &watch::Sender<usize>,
) -> BTreeSet<AppRef> {
    let facts = |o: DynamicObject| -> Option<NvjFacts> {
        let nvj = o.try_parse::<NotebookValidationJob>().ok()?;
        Some(NvjFacts::of(&nvj, tracking))
    };
    let key = |o: &DynamicObject| {
        format!(
            "{}/{}",
            o.metadata.namespace.as_deref().unwrap_or_default(),
            o.metadata.name.as_deref().unwrap_or_default()
        )
    };
    let Ok(mut index) = index.lock() else {
        return BTreeSet::new();
    };
    match event {
        watcher::Event::Init => {
            listing.clear();
            BTreeSet::new()
        }
        watcher::Event::InitApply(o) => {
            if in_scope(o.metadata.namespace.as_deref().unwrap_or_default()) {
                listing.extend(facts(o));
            }
            BTreeSet::new()
        }
        watcher::Event::InitDone => {
            let affected = index.replace(namespace, std::mem::take(listing));
            synced.send_modify(|n| *n += 1);
            affected
        }
        watcher::Event::Apply(o) => {
            let k = key(&o);
            // Out of scope, or unreadable: it does not count.
            match facts(o).filter(|f| in_scope(&f.namespace)) {
                Some(f) => index.upsert(f).into_iter().collect(),
                None => index.remove(&k).into_iter().collect(),
            }
        }
        watcher::Event::Delete(o) => index.remove(&key(&o)).into_iter().collect(),
    }
}

/// The Applications to reconcile: those of `affected` this instance reads (in `app_namespace`,
/// or any when it reads all).
fn app_refs(
    affected: BTreeSet<AppRef>,
    app_namespace: Option<&str>,
) -> Vec<ObjectRef<Application>> {
    affected
        .into_iter()
        .filter(|a| app_namespace.is_none_or(|ns| a.namespace == ns))
        .map(|a| ObjectRef::new(&a.name).within(&a.namespace))
        .collect()
}

/// The NVJs `app` lists in `status.resources` that this controller knows (in its scope) but
/// whose tracking names another Application or none, with what tracking names.
fn untracked_nvjs(
    app: &Application,
    app_ref: &AppRef,
    index: &Index,
    tracking: &Tracking,
) -> std::collections::BTreeMap<String, Option<AppRef>> {
    let listed = app
        .status
        .as_ref()
        .map(|s| s.resources.as_slice())
        .unwrap_or_default();
    listed
        .iter()
        .filter(|r| r.group == nbg_core::nvj::GROUP && r.kind == nbg_core::nvj::KIND)
        .filter_map(|r| {
            let key = format!("{}/{}", r.namespace, r.name);
            let facts = index.get(&key)?;
            (facts.app.as_ref() != Some(app_ref))
                .then(|| (key, tracking.application(&facts.tracking_meta)))
        })
        .collect()
}

impl nbg_runtime::Reconciler for AggregatorReconciler {
    type Object = Application;
    type Error = Error;

    fn name(&self) -> &'static str {
        NAME
    }

    fn object_namespaces(&self) -> Option<Vec<String>> {
        Some(self.application_namespaces.clone())
    }

    fn forget(&self, app: &Application) {
        let app_ref = AppRef::of(app);
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(&app_ref);
        }
        if let Ok(mut untracked) = self.untracked.lock()
            && untracked.remove(&app_ref).is_some()
        {
            self.metrics.untracked.remove(&ApplicationLabels {
                application: app_ref.to_string(),
            });
        }
    }

    /// Watches NVJs in the controller's scope; each change wakes the Applications it counts
    /// (or counted) for, in this instance's Argo CD namespace.
    fn configure(
        &self,
        mut controller: Controller<Application>,
        watch_context: &WatchContext<'_>,
    ) -> Controller<Application> {
        let nvj_namespaces: Vec<Option<String>> = match watch_context.scope.listed_namespaces() {
            [] => vec![None],
            listed => listed.iter().cloned().map(Some).collect(),
        };
        let (synced_tx, synced_rx) = watch::channel(0usize);
        let synced_tx = Arc::new(synced_tx);
        let instance = Arc::new(Instance {
            index: Arc::default(),
            synced: synced_rx,
            watches: nvj_namespaces.len(),
        });
        if let Ok(mut instances) = self.instances.lock() {
            // A new leadership term configures again: its index replaces the last one's.
            instances.insert(watch_context.namespace.map(String::from), instance.clone());
        }
        let resource = ApiResource::erase::<NotebookValidationJob>(&());
        let app_namespace = watch_context.namespace.map(String::from);
        for namespace in nvj_namespaces {
            let api = match &namespace {
                Some(ns) => kube::Api::<DynamicObject>::namespaced_with(
                    watch_context.client.clone(),
                    ns,
                    &resource,
                ),
                None => kube::Api::all_with(watch_context.client.clone(), &resource),
            };
            let raw = watcher(api, watcher::Config::default().any_semantic());
            let stream = watch_context
                .watches
                .resilient(&resource.plural, namespace.as_deref(), raw)
                .modify(slim);
            let (index, settings, scope) = (
                instance.index.clone(),
                self.tracking.clone(),
                watch_context.scope.clone(),
            );
            let (synced, app_namespace) = (synced_tx.clone(), app_namespace.clone());
            let mut listing = Vec::new();
            let tracked = self.metrics.tracked.clone();
            let refs = stream
                .map(move |event| {
                    // Watch errors are handled (and logged) by the resilient watch itself.
                    let affected = match event {
                        Ok(event) => apply_event(
                            event,
                            &index,
                            &mut listing,
                            namespace.as_deref(),
                            &settings.current(),
                            &|ns| scope.allows(ns),
                            &synced,
                        ),
                        Err(_) => BTreeSet::new(),
                    };
                    if let Ok(i) = index.lock() {
                        tracked.set(i.applications() as i64);
                    }
                    futures::stream::iter(app_refs(affected, app_namespace.as_deref()))
                })
                .flatten();
            controller = controller.reconcile_on(refs);
        }
        // Argo CD's tracking settings changed: every NVJ is read again, and the Applications
        // that gained or lost one are written.
        let (index, app_namespace) = (instance.index.clone(), app_namespace.clone());
        let retracked = self
            .tracking
            .changes()
            .map(move |tracking| {
                let affected = index
                    .lock()
                    .map(|mut i| i.retrack(&tracking))
                    .unwrap_or_default();
                futures::stream::iter(app_refs(affected, app_namespace.as_deref()))
            })
            .flatten();
        controller.reconcile_on(retracked)
    }

    async fn reconcile(&self, app: Arc<Application>) -> Result<Action, Error> {
        let app_ref = AppRef {
            namespace: app.namespace().unwrap_or_default(),
            name: app.name_any(),
        };
        let Some(instance) = self.instance(&app_ref.namespace) else {
            return Ok(Action::requeue(Duration::from_secs(1)));
        };
        // Never decide from a partial list of NVJs (a restart would write wrong aggregates).
        let mut synced = instance.synced.clone();
        let _ = synced.wait_for(|n| *n >= instance.watches).await;
        let tracking = self.tracking.current();
        let (write, untracked) = {
            let Ok(index) = instance.index.lock() else {
                return Ok(Action::requeue(Duration::from_secs(1)));
            };
            let untracked = untracked_nvjs(&app, &app_ref, &index, &tracking);
            let tracked = index.of_app(&app_ref);
            let write = aggregate::decide(&app, &tracked).map(|w| {
                let latest = aggregate::counted(&app, &tracked)
                    .iter()
                    .filter_map(|f| f.changed)
                    .max();
                (w, latest)
            });
            (write, untracked)
        };
        let message = untracked.iter().next().map(|(key, tracked)| {
            let more = match untracked.len() {
                1 => String::new(),
                n => format!(" (and {} more NVJs)", n - 1),
            };
            format!(
                "{}{more}",
                tracking.mismatch_message(
                    &app_ref,
                    &format!("NotebookValidationJob {key}"),
                    tracked.as_ref()
                )
            )
        });
        self.report_untracked(&app, &app_ref, untracked.keys().cloned().collect(), message)
            .await;
        let Some((annotations, latest)) = write else {
            if let Ok(mut pending) = self.pending.lock() {
                pending.remove(&app_ref);
            }
            return Ok(Action::await_change());
        };
        // Changes within the window are written together (see `coalesce`).
        if let Ok(mut pending) = self.pending.lock() {
            let now = Instant::now();
            match coalesce::timing(pending.get(&app_ref).copied(), now, self.coalesce) {
                Timing::Now => {
                    pending.remove(&app_ref);
                }
                Timing::After(wait) => {
                    pending.entry(app_ref.clone()).or_insert(now);
                    return Ok(Action::requeue(wait));
                }
            }
        }
        nbg_runtime::status::apply_annotations(&self.client, app.as_ref(), NAME, &annotations)
            .await?;
        let change = if annotations.is_empty() {
            "removed"
        } else {
            "updated"
        };
        self.metrics.writes.count(&WriteLabels {
            change: change.to_string(),
        });
        if let Some(t) = latest {
            self.metrics.writes.observe_since_completion(
                Duration::try_from(Timestamp::now().duration_since(t)).unwrap_or_default(),
            );
        }
        tracing::debug!(application = %app_ref, change, "written");
        Ok(Action::await_change())
    }
}
