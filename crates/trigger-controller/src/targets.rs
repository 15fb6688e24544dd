//! The targets this controller reads: discovery of their kinds (once per kind), the watches of
//! the kinds it may act on, and the caches those watches fill - the first look at a watched
//! target costs no request, and a patch planned from the cache carries its resourceVersion, so a
//! stale copy is refused (409) and the target is read afresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use nbg_core::annotations::TriggerTarget;
use nbg_core::nvj::NotebookValidationJob;
use nbg_runtime::runner::WatchContext;

use crate::authorize::Policy;
use crate::kinds::{self, TargetKind};
use crate::live::LiveTarget;
use crate::rollout::RolloutState;
use crate::waiting::{TargetKey, WaitIndex};

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

pub struct Targets {
    client: Client,
    /// Discovery answers by group/version/kind: one lookup per kind, not one per trigger.
    resources: Mutex<HashMap<GroupVersionKind, ApiResource>>,
    /// The kinds watched (in the table, allowed and served).
    watched_kinds: Vec<ApiResource>,
    /// One per watched kind and namespace.
    caches: Mutex<Vec<TargetCache>>,
    /// Where Argo CD keeps Applications (None: every namespace): they are watched there, not
    /// in the NVJs' namespaces, so a sync waiting behind a running operation starts when it
    /// ends.
    application_namespaces: Vec<Option<String>>,
    /// Where Flux keeps its objects (None: every namespace), likewise.
    flux_namespaces: Vec<Option<String>>,
}

/// Where the GitOps engines keep their objects; empty: every namespace.
pub struct WatchNamespaces {
    pub applications: Vec<String>,
    pub flux: Vec<String>,
}

fn is_application(resource: &ApiResource) -> bool {
    resource.group == "argoproj.io" && resource.kind == "Application"
}

fn is_flux(resource: &ApiResource) -> bool {
    resource
        .group
        .ends_with(nbg_core::foreign::flux::FLUX_GROUP_SUFFIX)
}

/// `None` for every namespace.
fn each(namespaces: Vec<String>) -> Vec<Option<String>> {
    if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    }
}

/// The table's kinds that the policy allows and the cluster serves: these are watched.
pub async fn watchable_kinds(client: &Client, policy: &Policy) -> Vec<ApiResource> {
    let mut found = Vec::new();
    for kind in kinds::KINDS.iter() {
        if !policy.allowed_kinds.contains(&kind.key()) {
            continue;
        }
        let gvk = GroupVersionKind::gvk(kind.group, kind.version, kind.kind);
        match kube::discovery::pinned_kind(client, &gvk).await {
            Ok((resource, _)) => found.push(resource),
            Err(e) => {
                tracing::info!(group = %kind.group, kind = %kind.kind, error = %e, "not served: targets of this kind are looked at every few seconds while waiting")
            }
        }
    }
    found
}

impl Targets {
    /// `namespaces`: where Applications and Flux's objects are watched.
    pub fn new(client: Client, watched: Vec<ApiResource>, namespaces: WatchNamespaces) -> Self {
        // The watched kinds were discovered at start: not asked again.
        let resources = watched
            .iter()
            .map(|r| {
                (
                    GroupVersionKind::gvk(&r.group, &r.version, &r.kind),
                    r.clone(),
                )
            })
            .collect();
        Self {
            client,
            resources: Mutex::new(resources),
            watched_kinds: watched,
            caches: Mutex::default(),
            application_namespaces: each(namespaces.applications),
            flux_namespaces: each(namespaces.flux),
        }
    }

    /// The cached copy of `target`, when it is watched and the cache has it.
    pub fn cached(&self, target: &TargetKey) -> Option<DynamicObject> {
        let caches = self.caches.lock().ok()?;
        caches.iter().filter(|c| c.covers(target)).find_map(|c| {
            let key =
                ObjectRef::new_with(&target.name, c.resource.clone()).within(&target.namespace);
            c.store.get(&key).map(|o| (*o).clone())
        })
    }

    /// Whether a change of `target` reaches this controller through a watch.
    pub fn watches(&self, target: &TargetKey) -> bool {
        self.caches
            .lock()
            .is_ok_and(|caches| caches.iter().any(|c| c.covers(target)))
    }

    /// The API of `t`'s kind in `namespace` (discovered once per kind; 404: not served).
    pub async fn api_for(
        &self,
        t: &TriggerTarget,
        namespace: &str,
    ) -> Result<Api<DynamicObject>, kube::Error> {
        let (group, version) = t
            .api_version
            .rsplit_once('/')
            .unwrap_or(("", t.api_version.as_str()));
        let gvk = GroupVersionKind::gvk(group, version, &t.kind);
        let known = self
            .resources
            .lock()
            .ok()
            .and_then(|m| m.get(&gvk).cloned());
        let resource = match known {
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

    /// Watches the target kinds in the controller's namespace(s); a change wakes the NVJs
    /// waiting on that target.
    pub fn configure(
        &self,
        mut controller: Controller<NotebookValidationJob>,
        watch: &WatchContext<'_>,
        waiting: &Arc<WaitIndex>,
    ) -> Controller<NotebookValidationJob> {
        let instance_namespace = watch.namespace.map(str::to_string);
        let watched = self.watched_kinds.iter().flat_map(|resource| {
            let namespaces: Vec<Option<&str>> = if is_application(resource) {
                self.application_namespaces
                    .iter()
                    .map(Option::as_deref)
                    .collect()
            } else if is_flux(resource) {
                self.flux_namespaces.iter().map(Option::as_deref).collect()
            } else {
                vec![watch.namespace]
            };
            namespaces.into_iter().map(move |ns| (resource, ns))
        });
        for (resource, namespace) in watched {
            let Some(kind) = kinds::find(&resource.group, &resource.kind) else {
                continue;
            };
            let writer = reflector::store::Writer::new(resource.clone());
            if let Ok(mut caches) = self.caches.lock() {
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
            let api = match namespace {
                Some(ns) => Api::namespaced_with(watch.client.clone(), ns, resource),
                None => Api::all_with(watch.client.clone(), resource),
            };
            let raw = watcher(api, watcher::Config::default());
            let label = format!("{}.{}", resource.plural, resource.group);
            let stream = reflector(
                writer,
                watch
                    .watches
                    .resilient(&label, namespace, raw)
                    .modify(nbg_runtime::runner::slim),
            )
            .touched_objects();
            let index = waiting.clone();
            let instance_namespace = instance_namespace.clone();
            controller = controller.watches_stream_with(
                stream,
                move |target: DynamicObject| {
                    let key = TargetKey {
                        group: kind.group.to_string(),
                        kind: kind.kind.to_string(),
                        namespace: target.namespace().unwrap_or_default(),
                        name: target.name_any(),
                    };
                    let mut waiting = index.waiting_on(&key);
                    // Applications and Flux's objects are watched by every controller instance:
                    // each wakes its own NVJs.
                    waiting.retain(|nvj| {
                        instance_namespace.is_none() || nvj.namespace == instance_namespace
                    });
                    if !waiting.is_empty() && (index.every_change(&key) || settled(kind, target)) {
                        waiting
                    } else {
                        Vec::new()
                    }
                },
                resource.clone(),
            );
        }
        controller
    }
}

/// A rollout's intermediate states change nothing for the NVJs: wake them when it is complete or
/// stuck, or on any change for the kinds that say so.
fn settled(kind: &TargetKind, target: DynamicObject) -> bool {
    if kind.wake_on_every_change {
        return true;
    }
    // One that does not read is woken too: its record must say so.
    serde_json::to_value(&target)
        .ok()
        .and_then(|v| LiveTarget::read(kind.kind, v, kind.read).ok())
        .is_none_or(|live| (kind.rollout)(&live, None) != RolloutState::Rolling)
}
