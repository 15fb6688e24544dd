//! The GitOps engines whose objects carry the aggregate: what differs between an Argo CD
//! Application and a Flux Kustomization is only how an NVJ names the object that applied it,
//! where that object lists what it applied, and where such objects live. Everything else -
//! the index, the decision, the writes - is one code path for both ([`crate::reconcile`]).

pub mod argocd;
pub mod flux;

use std::sync::Arc;

use futures::stream::BoxStream;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use nbg_core::foreign::NamespacedName;
use serde::de::DeserializeOwned;

/// How an NVJ's metadata names the object that manages it (its Argo CD tracking, its Flux
/// labels), under the settings in force when it was made.
pub type Namer = Arc<dyn Fn(&ObjectMeta) -> Option<NamespacedName> + Send + Sync>;

/// The object that carries the aggregate: it lists the NVJs it applied.
pub trait Owner:
    kube::Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// The NVJs it lists as applied by it, by namespace and name.
    fn listed_nvjs(&self) -> Vec<NamespacedName>;

    /// Whether it lists the NVJ `namespace/name`.
    fn lists_nvj(&self, namespace: &str, name: &str) -> bool;
}

/// One GitOps engine the aggregator serves.
pub trait Engine: Clone + Send + Sync + 'static {
    type Owner: Owner;

    /// The stem of its metrics' names and of their label: `application` gives
    /// `nbg_application_writes_total` and `nbg_application_untracked_nvjs{application}`.
    const METRIC_STEM: &'static str;

    /// Where its objects live; empty: every namespace.
    fn owner_namespaces(&self) -> Vec<String>;

    /// How NVJs name their object now.
    fn namer(&self) -> Namer;

    /// A new [`Namer`] each time the settings behind it change, so every NVJ is read again.
    fn namer_changes(&self) -> BoxStream<'static, Namer>;

    /// What to say (and to whom: the log, a Warning Event on `owner`) when `owner` lists
    /// `object` but the object's metadata names `named`.
    fn mismatch_message(
        &self,
        owner: &NamespacedName,
        object: &str,
        named: Option<&NamespacedName>,
    ) -> String;
}
