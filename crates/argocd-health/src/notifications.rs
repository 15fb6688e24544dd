//! Argo CD notifications for notebook validations: the triggers and templates in
//! `manifests/argocd/notifications/source/` (one file per key, the key's value as Argo CD reads
//! it), and the three install snippets generated from them - a patch of
//! `argocd-notifications-cm`, the argocd-operator's `NotificationsConfiguration`, and values for
//! the Argo CD Helm chart. The triggers read what app-status-aggregator writes on the
//! Application, so each fires once per run.

/// `(key, value)` of every trigger and template, as in `argocd-notifications-cm`.
pub const ENTRIES: [(&str, &str); 4] = [
    (
        "trigger.on-notebook-validation-failed",
        include_str!(
            "../../../manifests/argocd/notifications/source/trigger.on-notebook-validation-failed.yaml"
        ),
    ),
    (
        "trigger.on-notebook-validation-succeeded",
        include_str!(
            "../../../manifests/argocd/notifications/source/trigger.on-notebook-validation-succeeded.yaml"
        ),
    ),
    (
        "template.notebook-validation-failed",
        include_str!(
            "../../../manifests/argocd/notifications/source/template.notebook-validation-failed.yaml"
        ),
    ),
    (
        "template.notebook-validation-succeeded",
        include_str!(
            "../../../manifests/argocd/notifications/source/template.notebook-validation-succeeded.yaml"
        ),
    ),
];

const HEADER: &str = "# Generated from manifests/argocd/notifications/source by `hack/just generate`; do not edit.\n";

fn entries(indent: usize, keys: impl Fn(&str) -> bool) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for (key, value) in ENTRIES.iter().filter(|(k, _)| keys(k)) {
        out.push_str(&format!("{pad}{key}: |\n"));
        out.push_str(&crate::snippets::block(value, indent + 2));
    }
    out
}

/// `kubectl -n argocd patch configmap argocd-notifications-cm --type merge --patch-file ...`
pub fn notifications_cm_patch() -> String {
    format!(
        "{HEADER}# Apply: kubectl -n argocd patch configmap argocd-notifications-cm --type merge --patch-file argocd-notifications-cm-patch.yaml\n# Adds keys only. Subscribe an Application (docs/event-notifier.md), e.g.\n#   notifications.argoproj.io/subscribe.on-notebook-validation-failed.slack: ml-alerts\ndata:\n{}",
        entries(2, |_| true)
    )
}

/// The argocd-operator's `NotificationsConfiguration` (OpenShift GitOps): a merge patch.
pub fn notifications_configuration_patch() -> String {
    format!(
        "{HEADER}# Apply: kubectl -n openshift-gitops patch notificationsconfiguration default-notifications-configuration --type merge --patch-file notifications-configuration-patch.yaml\nspec:\n  triggers:\n{}  templates:\n{}",
        entries(4, |k| k.starts_with("trigger.")),
        entries(4, |k| k.starts_with("template."))
    )
}

/// Values for the Argo CD Helm chart (`notifications.triggers`, `notifications.templates`).
pub fn argo_cd_helm_values() -> String {
    format!(
        "{HEADER}# Use: helm upgrade --install argocd argo/argo-cd -n argocd -f argo-cd-helm-values.yaml -f notifications-helm-values.yaml\nnotifications:\n  triggers:\n{}  templates:\n{}",
        entries(4, |k| k.starts_with("trigger.")),
        entries(4, |k| k.starts_with("template."))
    )
}

/// Every generated file, by name under `manifests/argocd/notifications/`.
pub fn all() -> Vec<(&'static str, String)> {
    vec![
        (
            "argocd-notifications-cm-patch.yaml",
            notifications_cm_patch(),
        ),
        (
            "notifications-configuration-patch.yaml",
            notifications_configuration_patch(),
        ),
        ("notifications-helm-values.yaml", argo_cd_helm_values()),
    ]
}
