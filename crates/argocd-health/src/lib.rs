//! The project's Argo CD health checks (`manifests/argocd/resource_customizations/`), the
//! sandbox that runs them exactly as Argo CD's default Lua VM would, and the install snippets
//! generated from them.

pub mod checks;
pub mod notifications;
pub mod random_objects;
pub mod sandbox;
pub mod snippets;
pub mod test_cases;

pub use checks::{HealthCheck, all_checks, check_for};
pub use sandbox::{Health, HealthError, Sandbox};
