//! The controller runner every controller uses: watch-driven reconciliation with
//! - tolerance of malformed objects: the watch is of raw objects and each is parsed on its own,
//!   so one object that does not match our types is reported (log line, metric, Warning Event)
//!   and skipped instead of stopping the whole watch;
//! - a store of typed, slimmed objects (no managedFields, no kubectl last-applied copy), so
//!   memory stays proportional to what the controllers read;
//! - namespace scoping (one watch per listed namespace, or one cluster-wide watch);
//! - bounded concurrency, and per-object exponential backoff for transient errors (via
//!   `backon`), while invalid input waits for the object to change;
//! - reconcile count, error and duration metrics labelled by the error's variant name;
//! - watches that recover on their own ([`crate::watch`]): no watch's error pauses another, and
//!   when the API server answers again, what failed while it was away is retried at once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::events::Events;
use crate::metrics::ReconcileMetrics;
use crate::scope::Scope;
use crate::shutdown::Shutdown;
use crate::watch::Watches;

/// What a reconcile error says about itself.
pub trait ReconcileError: std::error::Error + Send + Sync + 'static {
    /// The variant name: the metric label and the Event reason.
    fn reason(&self) -> &'static str;
    /// True when retrying can help (API unreachable, conflict); false when the object itself
    /// is wrong and nothing changes until it does.
    fn is_transient(&self) -> bool;
}

/// The error of a controller whose reconciles can only fail on a Kubernetes API request: always
/// transient (retried with backoff). Controllers that can also find their input wrong have an
/// enum of their own.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
}

impl ReconcileError for ApiError {
    fn reason(&self) -> &'static str {
        match self {
            ApiError::Kube(_) => "Kube",
        }
    }
    fn is_transient(&self) -> bool {
        true
    }
}

/// One controller's logic. The runner calls `reconcile` for every change of a watched object
/// of type `Object` (and of whatever `configure` adds).
pub trait Reconciler: Send + Sync + 'static {
    type Object: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + 'static;
    type Error: ReconcileError;

    /// The controller's name: metric label, field manager and Event reporter.
    fn name(&self) -> &'static str;

    fn reconcile(
        &self,
        object: Arc<Self::Object>,
    ) -> impl Future<Output = Result<Action, Self::Error>> + Send;

    /// Called when a watched object is deleted: drop whatever the reconciler keeps about it in
    /// memory (indexes, gauges), so deleted objects leave no trace.
    fn forget(&self, _object: &Self::Object) {}

    /// Where the main objects live when that is not the controller's scope - Argo CD's
    /// namespaces for Applications - as a list (empty: all namespaces). The scope then applies
    /// to what `configure` watches, not to the main objects. `None`: the scope.
    fn object_namespaces(&self) -> Option<Vec<String>> {
        None
    }

    /// Adds watches that map to the main objects (owned pods, ...), started through
    /// `watch` so they recover on their own.
    fn configure(
        &self,
        controller: Controller<Self::Object>,
        _watch: &WatchContext<'_>,
    ) -> Controller<Self::Object> {
        controller
    }
}

/// Where one controller instance watches, and how its watches are started.
pub struct WatchContext<'a> {
    pub client: &'a Client,
    /// The namespace this controller instance watches; `None`: all.
    pub namespace: Option<&'a str>,
    pub watches: &'a Watches,
    /// The controller's scope (for watches that follow it when the main objects do not).
    pub scope: &'a Scope,
}

impl WatchContext<'_> {
    /// An API for `K` in this instance's namespace, or in all.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        match self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    /// An API for a dynamic resource in this instance's namespace, or in all.
    pub fn api_with(&self, resource: &ApiResource) -> Api<DynamicObject> {
        match self.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, resource),
            None => Api::all_with(self.client.clone(), resource),
        }
    }

    /// `stream` (a watcher on this instance's namespace) made to recover on its own.
    pub fn resilient<T: crate::watch::Progress + Send + 'static>(
        &self,
        resource: &str,
        stream: impl futures::Stream<Item = Result<T, watcher::Error>> + Send + 'static,
    ) -> impl futures::Stream<Item = Result<T, watcher::Error>> + Send + 'static {
        self.watches.resilient(resource, self.namespace, stream)
    }
}

/// The controller's own backoff on its merged trigger streams. Their errors are handled by
/// each watch ([`crate::watch`]) and never reach it; should one ever do, it costs a brief pause,
/// never the growing, two-minute-sticky pause of the default that stalls every watch at once.
struct BriefPause;

impl Iterator for BriefPause {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(Duration::from_millis(100))
    }
}

impl kube::runtime::utils::Backoff for BriefPause {
    fn reset(&mut self) {}
}

/// Per-object backoff state.
#[derive(Default)]
pub struct Backoffs {
    by_object: Mutex<HashMap<String, backon::ExponentialBackoff>>,
}

impl Backoffs {
    fn builder() -> ExponentialBuilder {
        ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(300))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
    }

    /// The next delay for `key`; grows exponentially while failures repeat.
    pub fn next(&self, key: &str) -> Duration {
        let Ok(mut map) = self.by_object.lock() else {
            return Duration::from_secs(5);
        };
        map.entry(key.to_string())
            .or_insert_with(|| Self::builder().build())
            .next()
            .unwrap_or(Duration::from_secs(300))
    }

    /// Forgets `key` after a success, or once the object is deleted.
    pub fn reset(&self, key: &str) {
        if let Ok(mut map) = self.by_object.lock() {
            map.remove(key);
        }
    }

    /// Forgets every object waiting out a backoff in `namespace` (all with `None`); returns their keys.
    pub fn take_all(&self, namespace: Option<&str>) -> Vec<String> {
        let Ok(mut map) = self.by_object.lock() else {
            return Vec::new();
        };
        let keys: Vec<String> = map
            .keys()
            .filter(|k| namespace.is_none_or(|ns| k.split_once('/').is_some_and(|(n, _)| n == ns)))
            .cloned()
            .collect();
        for k in &keys {
            map.remove(k);
        }
        keys
    }

    /// How many objects are waiting out a backoff.
    pub fn len(&self) -> usize {
        self.by_object.lock().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the runner needs besides the reconciler.
pub struct RunnerParts {
    pub client: Client,
    /// Reconciles running at the same time, per watched namespace.
    pub concurrency: u16,
    pub scope: Scope,
    pub metrics: ReconcileMetrics,
    pub events: Events,
    pub shutdown: Shutdown,
    pub watches: Watches,
}

struct Shared<R: Reconciler> {
    reconciler: Arc<R>,
    parts: RunnerParts,
    backoffs: Backoffs,
}

fn key_of<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}

/// Distinguishes reconciler errors from the runner's own handling.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Failed<E: ReconcileError>(E);

async fn reconcile_one<R: Reconciler>(
    obj: Arc<R::Object>,
    shared: Arc<Shared<R>>,
) -> Result<Action, Failed<R::Error>> {
    let name = shared.reconciler.name();
    let key = key_of(obj.as_ref());
    let scoped = shared.reconciler.object_namespaces().is_none();
    if scoped
        && !shared
            .parts
            .scope
            .allows(&obj.namespace().unwrap_or_default())
    {
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    let result = shared.reconciler.reconcile(obj).await;
    let took = started.elapsed();
    match result {
        Ok(action) => {
            shared.parts.metrics.observe(name, took, None);
            shared.backoffs.reset(&key);
            Ok(action)
        }
        Err(e) => {
            shared.parts.metrics.observe(name, took, Some(e.reason()));
            Err(Failed(e))
        }
    }
}

fn error_policy<R: Reconciler>(
    obj: Arc<R::Object>,
    err: &Failed<R::Error>,
    shared: Arc<Shared<R>>,
) -> Action {
    let key = key_of(obj.as_ref());
    if err.0.is_transient() {
        let delay = shared.backoffs.next(&key);
        tracing::warn!(controller = shared.reconciler.name(), object = %key, error = %err.0, reason = err.0.reason(), retry_in = ?delay, "reconcile failed; retrying");
        Action::requeue(delay)
    } else {
        tracing::warn!(controller = shared.reconciler.name(), object = %key, error = %err.0, reason = err.0.reason(), "reconcile failed; waiting for the object to change");
        Action::await_change()
    }
}

/// Removes the fields no controller reads from a watched object before it is parsed or cached
/// (also for the extra watches a reconciler adds in `configure`).
pub fn slim(obj: &mut DynamicObject) {
    obj.metadata.managed_fields = None;
    if let Some(a) = obj.metadata.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// Parses a raw object; a malformed one is reported (once per resourceVersion) and skipped.
fn parse<K: Resource<DynamicType = ()> + DeserializeOwned>(
    obj: DynamicObject,
    resource: &ApiResource,
    shared: &Arc<Shared<impl Reconciler>>,
) -> Option<K> {
    let reference = obj.object_ref(resource);
    let key = format!(
        "{}/{}",
        obj.metadata.namespace.as_deref().unwrap_or(""),
        obj.metadata.name.as_deref().unwrap_or("")
    );
    match obj.try_parse::<K>() {
        Ok(k) => Some(k),
        Err(e) => {
            let name = shared.reconciler.name();
            tracing::warn!(controller = name, object = %key, error = %e, "skipping malformed object");
            shared
                .parts
                .metrics
                .observe(name, Duration::ZERO, Some("MalformedObject"));
            let events = shared.parts.events.clone();
            tokio::spawn(async move {
                events
                    .warning(
                        &reference,
                        "MalformedObject",
                        "Reconcile",
                        format!("{name} cannot read this object: {e}"),
                    )
                    .await;
            });
            None
        }
    }
}

/// Raw watch events to typed ones, dropping objects that do not parse. A deleted object's
/// backoff is forgotten, and the reconciler told to forget it.
fn typed_event<R: Reconciler>(
    event: watcher::Event<DynamicObject>,
    resource: &ApiResource,
    shared: &Arc<Shared<R>>,
) -> Option<watcher::Event<R::Object>> {
    Some(match event {
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
        watcher::Event::InitApply(o) => watcher::Event::InitApply(parse(o, resource, shared)?),
        watcher::Event::Apply(o) => watcher::Event::Apply(parse(o, resource, shared)?),
        watcher::Event::Delete(o) => {
            shared.backoffs.reset(&key_of(&o));
            let deleted = parse(o, resource, shared)?;
            shared.reconciler.forget(&deleted);
            watcher::Event::Delete(deleted)
        }
    })
}

/// Runs the reconciler until shutdown.
pub async fn run<R: Reconciler>(reconciler: Arc<R>, parts: RunnerParts) {
    let resource = ApiResource::erase::<R::Object>(&());
    let client = parts.client.clone();
    let scope = parts.scope.clone();
    let shutdown = parts.shutdown.clone();
    let concurrency = parts.concurrency;
    let watches = parts.watches.clone();
    let shared = Arc::new(Shared {
        reconciler: reconciler.clone(),
        parts,
        backoffs: Backoffs::default(),
    });
    scope.wait_synced().await;

    let mut runs = Vec::new();
    let listed = reconciler
        .object_namespaces()
        .unwrap_or_else(|| scope.listed_namespaces().to_vec());
    let namespaces: Vec<Option<String>> = if listed.is_empty() {
        vec![None]
    } else {
        listed.into_iter().map(Some).collect()
    };
    for namespace in namespaces {
        let context = WatchContext {
            client: &client,
            namespace: namespace.as_deref(),
            watches: &watches,
            scope: &scope,
        };
        let api = context.api_with(&resource);
        let (reader, writer) = reflector::store::<R::Object>();
        let (res, sh) = (resource.clone(), shared.clone());
        let raw = watcher(api, watcher::Config::default().any_semantic());
        let typed = context
            .resilient(&resource.plural, raw)
            .modify(slim)
            .try_filter_map(move |event| {
                futures::future::ready(Ok(typed_event::<R>(event, &res, &sh)))
            });
        let stream = reflector::reflector(writer, typed).applied_objects();
        // When the API server answers again, what failed while it was away is retried now
        // rather than when its (by then long) backoff runs out.
        let retry_failed = {
            let (sh, ns) = (shared.clone(), namespace.clone());
            watches.recoveries().flat_map(move |()| {
                let keys = sh.backoffs.take_all(ns.as_deref());
                futures::stream::iter(keys.into_iter().filter_map(|k| {
                    let (ns, name) = k.split_once('/')?;
                    Some(ObjectRef::<R::Object>::new(name).within(ns))
                }))
            })
        };
        let controller = Controller::for_stream(stream, reader)
            .with_config(controller::Config::default().concurrency(concurrency))
            .trigger_backoff(BriefPause)
            .reconcile_on(retry_failed);
        let controller = reconciler.configure(controller, &context);
        let scope_changes = {
            let scope = scope.clone();
            futures::stream::unfold(scope, |scope| async move {
                scope.changed().await;
                Some(((), scope))
            })
        };
        let shutdown = shutdown.clone();
        let run = controller
            .reconcile_all_on(scope_changes)
            .graceful_shutdown_on(async move { shutdown.wait().await })
            .run(reconcile_one::<R>, error_policy::<R>, shared.clone())
            .for_each(|result| async move {
                if let Err(e) = result {
                    // Reconcile failures are logged by the error policy, watch errors by the
                    // watch itself; what is left is the queue's own bookkeeping.
                    tracing::debug!(error = %e, "controller event");
                }
            });
        runs.push(run);
    }
    // A graceful shutdown waits for the reconciles in flight - and, in kube's runner, for the
    // watch cache's first list, which never comes while the list is refused (RBAC) or the API
    // server is away. So the wait is bounded: a SIGTERM always ends the process in time.
    let stopping = async {
        shutdown.wait().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        _ = futures::future::join_all(runs) => {}
        () = stopping => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "reconciles still running (or the first list still pending) after the shutdown grace period; stopping them");
        }
    }
}

/// How long a shutdown waits for reconciles in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_objects_are_slimmed() {
        let mut obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "X",
            "metadata": {"name": "a", "managedFields": [{"manager": "m", "operation": "Apply"}],
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "keep": "me"}},
            "spec": {"a": 1}
        }))
        .expect("object");
        slim(&mut obj);
        assert!(obj.metadata.managed_fields.is_none());
        let annotations = obj.metadata.annotations.unwrap_or_default();
        assert_eq!(annotations.len(), 1);
        assert_eq!(annotations.get("keep").map(String::as_str), Some("me"));
        assert_eq!(obj.data["spec"]["a"], 1);
    }

    #[test]
    fn backoff_grows_per_object_and_resets() {
        let b = Backoffs::default();
        let first = b.next("ns/a");
        let mut last = first;
        for _ in 0..6 {
            last = b.next("ns/a");
        }
        assert!(last > first, "{last:?} should exceed {first:?}");
        assert!(b.next("ns/b") < last, "another object has its own backoff");
        b.reset("ns/a");
        assert!(b.next("ns/a") <= Duration::from_secs(2));
        for _ in 0..40 {
            assert!(b.next("ns/c") <= Duration::from_secs(600));
        }
    }
}
