//! The controller's I/O, one code path for every engine ([`crate::engine`]). The main objects
//! are the owners - Argo CD Applications in Argo CD's namespaces, Flux Kustomizations in
//! Flux's; a watch of NVJs (in the controller's scope) keeps the facts index and wakes the
//! owners whose NVJs changed. A reconcile waits until the NVJ watch has listed everything (so a
//! restart never writes a partial aggregate), decides ([`crate::aggregate::decide`]) and writes
//! with server-side apply as `app-status-aggregator`: its annotations, nothing else.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use nbg_core::foreign::NamespacedName;
use nbg_core::nvj::NotebookValidationJob;
use nbg_runtime::events::Events;
use nbg_runtime::metrics::OutcomeMetrics;
use nbg_runtime::runner::{WatchContext, slim};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

use crate::NAME;
use crate::aggregate;
use crate::coalesce::{self, Timing};
use crate::engine::{Engine, Namer, Owner};
use crate::facts::{Index, NvjFacts};

/// Its reconciles fail only on API requests.
pub type Error = nbg_runtime::runner::ApiError;

/// One label: the owner (`application`, `kustomization`: the engine's stem) as `namespace/name`.
type OwnerLabels = [(String, String); 1];

/// `updated` or `removed`.
type WriteLabels = [(String, String); 1];

/// Per engine, with `<stem>` its [`Engine::METRIC_STEM`]: writes by change
/// (`nbg_<stem>_writes_total{change}`), the lag from the latest NVJ change to its owner written
/// (`nbg_<stem>_write_lag_seconds`), the owners at least one NVJ names (`nbg_<stem>s_tracked`),
/// and per owner the NVJs it lists whose metadata does not name it
/// (`nbg_<stem>_untracked_nvjs{<stem>}`).
#[derive(Clone)]
pub struct AggregatorMetrics {
    stem: &'static str,
    writes: OutcomeMetrics<WriteLabels>,
    tracked: Gauge,
    untracked: Family<OwnerLabels, Gauge>,
}

impl AggregatorMetrics {
    pub fn register<E: Engine>(registry: &nbg_runtime::metrics::SharedRegistry) -> Self {
        let stem = E::METRIC_STEM;
        let kind = E::Owner::kind(&());
        let tracked = Gauge::default();
        let untracked = Family::<OwnerLabels, Gauge>::default();
        if let Ok(mut r) = registry.write() {
            r.register(
                format!("{stem}s_tracked"),
                format!("{kind}s that at least one NVJ names"),
                tracked.clone(),
            );
            r.register(
                format!("{stem}_untracked_nvjs"),
                format!("NVJs a {kind} lists as applied by it whose metadata does not name it (its engine's settings and ours disagree, or another tool rewrote the NVJ)"),
                untracked.clone(),
            );
        }
        Self {
            stem,
            writes: OutcomeMetrics::register(
                registry,
                (
                    &format!("{stem}_writes"),
                    &format!("{kind} annotation writes, by change"),
                ),
                (
                    &format!("{stem}_write_lag_seconds"),
                    &format!(
                        "From the latest NVJ change an aggregate reflects to its {kind} written"
                    ),
                ),
            ),
            tracked,
            untracked,
        }
    }

    fn owner_labels(&self, owner: &NamespacedName) -> OwnerLabels {
        [(self.stem.to_string(), owner.to_string())]
    }
}

/// One NVJ index per watch of owners (per namespace, or one for all), with the number of NVJ
/// watches that have listed everything.
struct Instance {
    index: Arc<Mutex<Index>>,
    synced: watch::Receiver<usize>,
    watches: usize,
}

pub struct AggregatorReconciler<E: Engine> {
    client: Client,
    events: Events,
    engine: E,
    coalesce: Duration,
    metrics: AggregatorMetrics,
    instances: Mutex<HashMap<Option<String>, Arc<Instance>>>,
    /// Owners whose aggregate differs from what they carry, since when.
    pending: Mutex<HashMap<NamespacedName, Instant>>,
    /// Per owner, the listed NVJs whose metadata does not name it, as last reported: a Warning
    /// Event when this set changes, not on every reconcile.
    untracked: Mutex<HashMap<NamespacedName, BTreeSet<String>>>,
}

impl<E: Engine> AggregatorReconciler<E> {
    pub fn new(
        client: Client,
        events: Events,
        engine: E,
        coalesce: Duration,
        registry: &nbg_runtime::metrics::SharedRegistry,
    ) -> Self {
        Self {
            client,
            events,
            engine,
            coalesce,
            metrics: AggregatorMetrics::register::<E>(registry),
            instances: Mutex::default(),
            pending: Mutex::default(),
            untracked: Mutex::default(),
        }
    }

    /// Says so when `owner` lists NVJs (this controller knows) whose metadata does not name it:
    /// a log line, the metric, and a Warning Event on the owner whenever the set changes.
    async fn report_untracked(
        &self,
        owner: &E::Owner,
        owner_ref: &NamespacedName,
        untracked: BTreeSet<String>,
        message: Option<String>,
    ) {
        let labels = self.metrics.owner_labels(owner_ref);
        let changed = self.untracked.lock().is_ok_and(|mut seen| {
            let before = seen.get(owner_ref).cloned().unwrap_or_default();
            if untracked.is_empty() {
                seen.remove(owner_ref);
            } else {
                seen.insert(owner_ref.clone(), untracked.clone());
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
        tracing::warn!(owner = %owner_ref, kind = %E::Owner::kind(&()), nvjs = ?untracked, "{message}");
        let regarding = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(E::Owner::api_version(&()).into_owned()),
            kind: Some(E::Owner::kind(&()).into_owned()),
            name: owner.meta().name.clone(),
            namespace: owner.meta().namespace.clone(),
            uid: owner.meta().uid.clone(),
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

    fn instance(&self, owner_namespace: &str) -> Option<Arc<Instance>> {
        let instances = self.instances.lock().ok()?;
        instances
            .get(&Some(owner_namespace.to_string()))
            .or_else(|| instances.get(&None))
            .cloned()
    }
}

/// What one NVJ watch event does to the index: the owners to reconcile.
fn apply_event(
    event: watcher::Event<DynamicObject>,
    index: &Mutex<Index>,
    listing: &mut Vec<NvjFacts>,
    namespace: Option<&str>,
    namer: &Namer,
    in_scope: &dyn Fn(&str) -> bool,
    synced: &watch::Sender<usize>,
) -> BTreeSet<NamespacedName> {
    let facts = |o: DynamicObject| -> Option<NvjFacts> {
        let nvj = o.try_parse::<NotebookValidationJob>().ok()?;
        Some(NvjFacts::of(&nvj, namer))
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

/// The owners to reconcile: those of `affected` this instance reads (in `owner_namespace`, or
/// any when it reads all).
fn owner_refs<O: Owner>(
    affected: BTreeSet<NamespacedName>,
    owner_namespace: Option<&str>,
) -> Vec<ObjectRef<O>> {
    affected
        .into_iter()
        .filter(|a| owner_namespace.is_none_or(|ns| a.namespace == ns))
        .map(|a| ObjectRef::new(&a.name).within(&a.namespace))
        .collect()
}

/// The NVJs `owner` lists that this controller knows (in its scope) but whose metadata names
/// another owner or none, with what it names.
fn untracked_nvjs<O: Owner>(
    owner: &O,
    owner_ref: &NamespacedName,
    index: &Index,
) -> std::collections::BTreeMap<String, Option<NamespacedName>> {
    owner
        .listed_nvjs()
        .into_iter()
        .filter_map(|nvj| {
            let facts = index.get(&nvj.to_string())?;
            (facts.owner.as_ref() != Some(owner_ref))
                .then(|| (nvj.to_string(), facts.owner.clone()))
        })
        .collect()
}

impl<E: Engine> nbg_runtime::Reconciler for AggregatorReconciler<E> {
    type Object = E::Owner;
    type Error = Error;

    fn name(&self) -> &'static str {
        NAME
    }

    fn object_namespaces(&self) -> Option<Vec<String>> {
        Some(self.engine.owner_namespaces())
    }

    fn forget(&self, owner: &E::Owner) {
        let owner_ref = NamespacedName::of(owner);
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(&owner_ref);
        }
        if let Ok(mut untracked) = self.untracked.lock()
            && untracked.remove(&owner_ref).is_some()
        {
            self.metrics
                .untracked
                .remove(&self.metrics.owner_labels(&owner_ref));
        }
    }

    /// Watches NVJs in the controller's scope; each change wakes the owners it counts (or
    /// counted) for, in this instance's namespace.
    fn configure(
        &self,
        mut controller: Controller<E::Owner>,
        watch_context: &WatchContext<'_>,
    ) -> Controller<E::Owner> {
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
        let owner_namespace = watch_context.namespace.map(String::from);
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
            let (index, engine, scope) = (
                instance.index.clone(),
                self.engine.clone(),
                watch_context.scope.clone(),
            );
            let (synced, owner_namespace) = (synced_tx.clone(), owner_namespace.clone());
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
                            &engine.namer(),
                            &|ns| scope.allows(ns),
                            &synced,
                        ),
                        Err(_) => BTreeSet::new(),
                    };
                    if let Ok(i) = index.lock() {
                        tracked.set(i.owners() as i64);
                    }
                    futures::stream::iter(owner_refs(affected, owner_namespace.as_deref()))
                })
                .flatten();
            controller = controller.reconcile_on(refs);
        }
        // The settings behind the names changed (Argo CD's tracking): every NVJ is read again,
        // and the owners that gained or lost one are written.
        let (index, owner_namespace) = (instance.index.clone(), owner_namespace.clone());
        let renamed = self
            .engine
            .namer_changes()
            .map(move |namer| {
                let affected = index
                    .lock()
                    .map(|mut i| i.rename(&namer))
                    .unwrap_or_default();
                futures::stream::iter(owner_refs(affected, owner_namespace.as_deref()))
            })
            .flatten();
        controller.reconcile_on(renamed)
    }

    async fn reconcile(&self, owner: Arc<E::Owner>) -> Result<Action, Error> {
        let owner_ref = NamespacedName::of(owner.as_ref());
        let Some(instance) = self.instance(&owner_ref.namespace) else {
            return Ok(Action::requeue(Duration::from_secs(1)));
        };
        // Never decide from a partial list of NVJs (a restart would write wrong aggregates).
        let mut synced = instance.synced.clone();
        let _ = synced.wait_for(|n| *n >= instance.watches).await;
        let (write, untracked) = {
            let Ok(index) = instance.index.lock() else {
                return Ok(Action::requeue(Duration::from_secs(1)));
            };
            let untracked = untracked_nvjs(owner.as_ref(), &owner_ref, &index);
            let named = index.of_owner(&owner_ref);
            let write = aggregate::decide(owner.as_ref(), &named).map(|w| {
                let latest = aggregate::counted(owner.as_ref(), &named)
                    .iter()
                    .filter_map(|f| f.changed)
                    .max();
                (w, latest)
            });
            (write, untracked)
        };
        let message = untracked.iter().next().map(|(key, named)| {
            let more = match untracked.len() {
                1 => String::new(),
                n => format!(" (and {} more NVJs)", n - 1),
            };
            format!(
                "{}{more}",
                self.engine.mismatch_message(
                    &owner_ref,
                    &format!("NotebookValidationJob {key}"),
                    named.as_ref()
                )
            )
        });
        self.report_untracked(
            owner.as_ref(),
            &owner_ref,
            untracked.keys().cloned().collect(),
            message,
        )
        .await;
        let Some((annotations, latest)) = write else {
            if let Ok(mut pending) = self.pending.lock() {
                pending.remove(&owner_ref);
            }
            return Ok(Action::await_change());
        };
        // Changes within the window are written together (see `coalesce`).
        if let Ok(mut pending) = self.pending.lock() {
            let now = Instant::now();
            match coalesce::timing(pending.get(&owner_ref).copied(), now, self.coalesce) {
                Timing::Now => {
                    pending.remove(&owner_ref);
                }
                Timing::After(wait) => {
                    pending.entry(owner_ref.clone()).or_insert(now);
                    return Ok(Action::requeue(wait));
                }
            }
        }
        nbg_runtime::status::apply_annotations(&self.client, owner.as_ref(), NAME, &annotations)
            .await?;
        let change = if annotations.is_empty() {
            "removed"
        } else {
            "updated"
        };
        self.metrics
            .writes
            .count(&[("change".to_string(), change.to_string())]);
        if let Some(t) = latest {
            self.metrics.writes.observe_since_completion(
                Duration::try_from(Timestamp::now().duration_since(t)).unwrap_or_default(),
            );
        }
        tracing::debug!(owner = %owner_ref, kind = %E::Owner::kind(&()), change, "written");
        Ok(Action::await_change())
    }
}
