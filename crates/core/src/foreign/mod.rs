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
