//! Minimal types for objects other projects own that our controllers read and patch. Each keeps
//! only the fields we use and tolerates (ignores) every other field, so a newer KServe or
//! Argo CD never breaks deserialisation. We patch these objects, never replace them, so the
//! fields we do not model are never lost.

mod application;
pub mod flux;
mod inference_service;
mod rollout;
pub mod tracking;

pub use application::{
    Application, ApplicationStatus, HealthStatus, InfoItem, Operation, OperationInitiator,
    OperationState, OperationStatus, ResourceStatus, SyncOperation, SyncStatus,
};
pub use inference_service::{
    DEPLOYMENT_MODE_ANNOTATION, InferenceService, InferenceServiceStatus, KnativeCondition,
    RestartMarker, predictor_deployment,
};
pub use rollout::{Rollout, RolloutCondition, RolloutSpec, RolloutStatus};

/// A namespaced object by namespace and name: the GitOps object that manages NVJs (an Argo CD
/// Application, a Flux Kustomization) as tracking, labels and our indexes name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespacedName {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl NamespacedName {
    /// An object's namespace and name (empty when absent).
    pub fn of<K: kube::Resource>(object: &K) -> Self {
        Self::of_meta(object.meta())
    }

    pub fn of_meta(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Self {
        Self {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}
