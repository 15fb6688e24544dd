//! The health checks, embedded from `manifests/argocd/resource_customizations/` so the files
//! Argo CD users install and the code the tests and the demo run are the same bytes.

/// One health check in Argo CD's `resource_customizations/<group>/<kind>/` layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCheck {
    /// API group; empty for the core group.
    pub group: &'static str,
    pub kind: &'static str,
    /// The `health.lua` source.
    pub script: &'static str,
    /// Directory relative to `manifests/argocd/resource_customizations/`.
    pub dir: &'static str,
}

impl HealthCheck {
    /// Argo CD's `group_kind` key (`Kind` alone for the core group), as used in
    /// `resource.customizations.health.<key>`.
    pub fn key(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}_{}", self.group, self.kind)
        }
    }
}

const CHECKS: [HealthCheck; 3] = [
    HealthCheck {
        group: "mlops.mlops.dev",
        kind: "NotebookValidationJob",
        script: include_str!(
            "../../../manifests/argocd/resource_customizations/mlops.mlops.dev/NotebookValidationJob/health.lua"
        ),
        dir: "mlops.mlops.dev/NotebookValidationJob",
    },
    HealthCheck {
        group: "",
        kind: "PersistentVolumeClaim",
        script: include_str!(
            "../../../manifests/argocd/resource_customizations/PersistentVolumeClaim/health.lua"
        ),
        dir: "PersistentVolumeClaim",
    },
    HealthCheck {
        group: "argoproj.io",
        kind: "Application",
        script: include_str!(
            "../../../manifests/argocd/resource_customizations/argoproj.io/Application/health.lua"
        ),
        dir: "argoproj.io/Application",
    },
];

pub fn all_checks() -> &'static [HealthCheck] {
    &CHECKS
}

/// The check for a group and kind, if the project ships one.
pub fn check_for(group: &str, kind: &str) -> Option<&'static HealthCheck> {
    CHECKS.iter().find(|c| c.group == group && c.kind == kind)
}
