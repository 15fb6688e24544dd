//! Who may act on what (the confused-deputy problem). Writing an NVJ must never grant more than
//! writing the target would, so a trigger may act:
//! - on a target in the NVJ's own namespace;
//! - on a target elsewhere only with the target's consent: its `mlops.dev/allow-triggers-from`
//!   annotation lists the NVJ's namespace (or `*`) - written by whoever can write the target;
//! - on an Argo CD Application elsewhere only if that Application manages the NVJ: the NVJ's
//!   tracking annotation names the Application *and* the Application's own status lists the NVJ
//!   among its resources (the annotation alone could be forged by the NVJ's author).
//!
//! The controller can switch cross-namespace targets off entirely, and limits the kinds that
//! may be targeted. Pure: unit-tested without a cluster.

use std::collections::BTreeSet;

use nbg_core::annotations::{self, TriggerTarget};
use nbg_core::foreign::Application;
use nbg_core::nvj::NotebookValidationJob;

/// The controller's policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `group/Kind` (core group: `/Kind`) that may be targeted.
    pub allowed_kinds: BTreeSet<String>,
    pub allow_cross_namespace: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            allowed_kinds: crate::kinds::all_keys().into_iter().collect(),
            allow_cross_namespace: true,
        }
    }
}

/// Why a trigger may not act; names what is missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("kind {0} is not in this controller's allowed target kinds")]
    KindNotAllowed(String),
    #[error("cross-namespace triggers are disabled by the controller (target namespace {0})")]
    CrossNamespaceDisabled(String),
    #[error(
        "{kind} {namespace}/{name} does not consent to triggers from namespace {from}: add the annotation mlops.dev/allow-triggers-from: \"{from}\" to it"
    )]
    NoConsent {
        kind: String,
        namespace: String,
        name: String,
        from: String,
    },
}

fn kind_key(t: &TriggerTarget) -> String {
    format!("{}/{}", t.group(), t.kind)
}

/// Whether a namespace list (`a, b`, or `*`) includes `ns`.
pub fn consents(list: &str, ns: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|entry| entry == "*" || entry == ns)
}

/// True when `app` manages `nvj`: the NVJ's tracking id names the app, and the app's status
/// lists the NVJ among its resources.
pub fn application_manages(app: &Application, nvj: &NotebookValidationJob) -> bool {
    let app_name = app.metadata.name.clone().unwrap_or_default();
    let app_ns = app.metadata.namespace.clone().unwrap_or_default();
    let nvj_ns = nvj.metadata.namespace.clone().unwrap_or_default();
    let nvj_name = nvj.metadata.name.clone().unwrap_or_default();
    let ann = nvj.metadata.annotations.clone().unwrap_or_default();
    // `<app>:<group>/<kind>:<namespace>/<name>`; with apps in any namespace `<ns>_<app>:...`.
    let tracked = ann.get(annotations::ARGOCD_TRACKING_ID).is_some_and(|id| {
        let owner = id.split(':').next().unwrap_or_default();
        owner == app_name || owner == format!("{app_ns}_{app_name}")
    }) || nvj
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(annotations::ARGOCD_INSTANCE_LABEL))
        .is_some_and(|v| *v == app_name);
    tracked
        && app.lists(
            nbg_core::nvj::GROUP,
            nbg_core::nvj::KIND,
            &nvj_ns,
            &nvj_name,
        )
}

/// Decides whether `nvj` may act on `target`. `target_annotations` are the live target's;
/// `managing_app` is set when the target is an Application that manages the NVJ.
pub fn authorize(
    policy: &Policy,
    nvj: &NotebookValidationJob,
    target: &TriggerTarget,
    target_annotations: Option<&std::collections::BTreeMap<String, String>>,
    managing_app: bool,
) -> Result<(), Denied> {
    let key = kind_key(target);
    if !policy.allowed_kinds.contains(&key) {
        return Err(Denied::KindNotAllowed(key));
    }
    let from = nvj.metadata.namespace.clone().unwrap_or_default();
    let to = target.namespace_or(&from).to_string();
    if to == from {
        return Ok(());
    }
    if !policy.allow_cross_namespace {
        return Err(Denied::CrossNamespaceDisabled(to));
    }
    let consent = target_annotations
        .and_then(|a| a.get(annotations::ALLOW_TRIGGERS_FROM))
        .is_some_and(|list| consents(list, &from));
    let is_application = target.group() == "argoproj.io" && target.kind == "Application";
    if consent || (is_application && managing_app) {
        return Ok(());
    }
    Err(Denied::NoConsent {
        kind: target.kind.clone(),
        namespace: to,
        name: target.name.clone(),
        from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn nvj(ns: &str, annotations: serde_json::Value) -> NotebookValidationJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob",
            "metadata": {"name": "train", "namespace": ns, "annotations": annotations},
            "spec": {"notebook": {"git": {"url": "https://x/r.git", "ref": "main"}, "path": "a.ipynb"}, "podConfig": {"containerImage": "i"}}
        }))
        .expect("nvj")
    }

    fn target(yaml: &str) -> TriggerTarget {
        annotations::parse_on_success_trigger(yaml)
            .expect("valid")
            .remove(0)
    }

    #[test]
    fn same_namespace_is_allowed_and_kinds_are_limited() {
        let n = nvj("team", serde_json::json!({}));
        assert_eq!(
            authorize(
                &Policy::default(),
                &n,
                &target("- {apiVersion: apps/v1, kind: Deployment, name: m, action: restart}"),
                None,
                false
            ),
            Ok(())
        );
        let secret = target("- {apiVersion: v1, kind: Secret, name: s, action: refresh}");
        assert_eq!(
            authorize(&Policy::default(), &n, &secret, None, false),
            Err(Denied::KindNotAllowed("/Secret".into()))
        );
    }

    #[test]
    fn another_namespace_needs_the_targets_consent() {
        let n = nvj("team", serde_json::json!({}));
        let t = target(
            "- {apiVersion: apps/v1, kind: Deployment, name: m, namespace: prod, action: restart}",
        );
        let denied = authorize(&Policy::default(), &n, &t, None, false).expect_err("no consent");
        assert!(
            denied
                .to_string()
                .contains("mlops.dev/allow-triggers-from: \"team\""),
            "{denied}"
        );
        let other = BTreeMap::from([(
            annotations::ALLOW_TRIGGERS_FROM.to_string(),
            "ml, data".to_string(),
        )]);
        assert!(authorize(&Policy::default(), &n, &t, Some(&other), false).is_err());
        let ok = BTreeMap::from([(
            annotations::ALLOW_TRIGGERS_FROM.to_string(),
            "ml, team".to_string(),
        )]);
        assert_eq!(
            authorize(&Policy::default(), &n, &t, Some(&ok), false),
            Ok(())
        );
        let any = BTreeMap::from([(
            annotations::ALLOW_TRIGGERS_FROM.to_string(),
            "*".to_string(),
        )]);
        assert_eq!(
            authorize(&Policy::default(), &n, &t, Some(&any), false),
            Ok(())
        );
        let off = Policy {
            allow_cross_namespace: false,
            ..Policy::default()
        };
        assert_eq!(
            authorize(&off, &n, &t, Some(&any), false),
            Err(Denied::CrossNamespaceDisabled("prod".into()))
        );
    }

    #[test]
    fn an_application_elsewhere_only_when_it_manages_the_nvj() {
        let app_with = |resources: serde_json::Value| -> Application {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "serving", "namespace": "argocd"},
                "status": {"resources": resources}
            }))
            .expect("app")
        };
        let listed = app_with(
            serde_json::json!([{"group": "mlops.mlops.dev", "kind": "NotebookValidationJob", "namespace": "team", "name": "train"}]),
        );
        let tracked = nvj(
            "team",
            serde_json::json!({"argocd.argoproj.io/tracking-id": "serving:mlops.mlops.dev/NotebookValidationJob:team/train"}),
        );
        assert!(application_manages(&listed, &tracked));
        // A forged tracking id is not enough: the Application must list the NVJ.
        assert!(!application_manages(
            &app_with(serde_json::json!([])),
            &tracked
        ));
        // Listed but tracked by another app: no.
        let other = nvj(
            "team",
            serde_json::json!({"argocd.argoproj.io/tracking-id": "billing:mlops.mlops.dev/NotebookValidationJob:team/train"}),
        );
        assert!(!application_manages(&listed, &other));
        let t = target(
            "- {apiVersion: argoproj.io/v1alpha1, kind: Application, name: serving, namespace: argocd, action: sync}",
        );
        assert_eq!(
            authorize(&Policy::default(), &tracked, &t, None, true),
            Ok(())
        );
        assert!(authorize(&Policy::default(), &tracked, &t, None, false).is_err());
    }
}
