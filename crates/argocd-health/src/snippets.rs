//! Install snippets generated from the health-check files, never hand-copied:
//! - `argocd-cm-patch.yaml`: a merge patch of `argocd-cm` data keys (it never replaces the
//!   ConfigMap, so other settings are kept);
//! - `argocd-cr-patch.yaml`: a merge patch of an `ArgoCD` custom resource (OpenShift GitOps /
//!   argocd-operator) with `spec.resourceHealthChecks` and `spec.extraConfig`;
//! - `argo-cd-helm-values.yaml`: values for the Argo CD Helm chart (`configs.cm`).
//!
//! Each also carries `resource.customizations.ignoreResourceUpdates` for the fields our
//! controllers write, so those writes do not cause refresh storms - with Argo CD's own default
//! entries kept where it already sets the key.

use crate::checks::{HealthCheck, all_checks};

/// Fields our controllers write that Argo CD need not reconcile an Application for, under one
/// `resource.customizations.ignoreResourceUpdates.<key>` each.
pub struct IgnoredUpdates {
    /// Argo CD's `group_kind` key.
    pub key: &'static str,
    pub json_pointers: &'static [&'static str],
    /// The entries Argo CD's own default `argocd-cm` sets under the same key. A merge patch
    /// replaces a key's value whole, so they are written again beside ours (a test compares them
    /// with the stock `argocd-cm` of the pinned Argo CD).
    pub argocd_defaults: &'static [&'static str],
}

pub const IGNORED_UPDATES: [IgnoredUpdates; 2] = [
    IgnoredUpdates {
        key: "mlops.mlops.dev_NotebookValidationJob",
        json_pointers: &[
            "/status",
            "/metadata/annotations/mlops.dev~1wave-complete",
            "/metadata/annotations/mlops.dev~1wave-failed",
            "/metadata/annotations/mlops.dev~1completion-time",
            "/metadata/annotations/mlops.dev~1wave-generation",
        ],
        argocd_defaults: &[],
    },
    IgnoredUpdates {
        key: "argoproj.io_Application",
        json_pointers: &[
            "/metadata/annotations/mlops.dev~1notebook-status",
            "/metadata/annotations/mlops.dev~1notebook-summary",
            "/metadata/annotations/mlops.dev~1last-failed-run",
            "/metadata/annotations/mlops.dev~1last-succeeded-run",
        ],
        // Argo CD 3.2's defaults: its notifications' bookkeeping, refresh and hydrate requests,
        // and `.operation` (the sync trigger-controller requests).
        argocd_defaults: &[
            r#".metadata.annotations."notified.notifications.argoproj.io""#,
            r#".metadata.annotations."argocd.argoproj.io/refresh""#,
            r#".metadata.annotations."argocd.argoproj.io/hydrate""#,
            ".operation",
        ],
    },
];

const HEADER: &str = "# Generated from manifests/argocd/resource_customizations by `hack/just generate`; do not edit.\n";

/// `text` as a YAML literal block at `indent` spaces (after a `key: |` line).
pub(crate) fn block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("{pad}{l}\n")
            }
        })
        .collect()
}

fn ignore_updates_yaml(ignored: &IgnoredUpdates) -> String {
    let mut s = String::new();
    if !ignored.argocd_defaults.is_empty() {
        s.push_str("jqPathExpressions:\n");
        for jq in ignored.argocd_defaults {
            s.push_str(&format!("- '{jq}'\n"));
        }
    }
    s.push_str("jsonPointers:\n");
    for p in ignored.json_pointers {
        s.push_str(&format!("- {p}\n"));
    }
    s
}

/// `data:` entries shared by the ConfigMap patch and the Helm values, at `indent`.
fn cm_entries(indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for check in all_checks() {
        out.push_str(&format!(
            "{pad}resource.customizations.health.{}: |\n",
            check.key()
        ));
        out.push_str(&block(check.script, indent + 2));
    }
    for ignored in &IGNORED_UPDATES {
        out.push_str(&format!(
            "{pad}resource.customizations.ignoreResourceUpdates.{}: |\n",
            ignored.key
        ));
        out.push_str(&block(&ignore_updates_yaml(ignored), indent + 2));
    }
    out
}

/// `kubectl -n argocd patch configmap argocd-cm --type merge --patch-file argocd-cm-patch.yaml`
pub fn argocd_cm_patch() -> String {
    format!(
        "{HEADER}# Apply: kubectl -n argocd patch configmap argocd-cm --type merge --patch-file argocd-cm-patch.yaml\ndata:\n{}",
        cm_entries(2)
    )
}

/// `kubectl -n openshift-gitops patch argocd openshift-gitops --type merge --patch-file argocd-cr-patch.yaml`
pub fn argocd_cr_patch() -> String {
    let mut out = format!(
        "{HEADER}# Apply: kubectl -n openshift-gitops patch argocd openshift-gitops --type merge --patch-file argocd-cr-patch.yaml\n\
         # A merge patch replaces the whole resourceHealthChecks list: if your ArgoCD resource already\n\
         # has entries there, copy these into your list instead. extraConfig keys are merged.\n\
         spec:\n  resourceHealthChecks:\n"
    );
    for check in all_checks() {
        out.push_str(&health_check_entry(check));
    }
    out.push_str("  extraConfig:\n");
    for ignored in &IGNORED_UPDATES {
        out.push_str(&format!(
            "    resource.customizations.ignoreResourceUpdates.{}: |\n",
            ignored.key
        ));
        out.push_str(&block(&ignore_updates_yaml(ignored), 6));
    }
    out
}

fn health_check_entry(check: &HealthCheck) -> String {
    let mut out = String::new();
    if check.group.is_empty() {
        out.push_str(&format!("  - kind: {}\n", check.kind));
    } else {
        out.push_str(&format!(
            "  - group: {}\n    kind: {}\n",
            check.group, check.kind
        ));
    }
    out.push_str("    check: |\n");
    out.push_str(&block(check.script, 6));
    out
}

/// Values for the Argo CD Helm chart: `helm upgrade argocd argo/argo-cd -f argo-cd-helm-values.yaml`.
pub fn argo_cd_helm_values() -> String {
    format!(
        "{HEADER}# Use: helm upgrade --install argocd argo/argo-cd -n argocd -f argo-cd-helm-values.yaml\nconfigs:\n  cm:\n{}",
        cm_entries(4)
    )
}

/// Every generated file, by name under `manifests/argocd/`.
pub fn all() -> Vec<(&'static str, String)> {
    vec![
        ("argocd-cm-patch.yaml", argocd_cm_patch()),
        ("argocd-cr-patch.yaml", argocd_cr_patch()),
        ("argo-cd-helm-values.yaml", argo_cd_helm_values()),
    ]
}
