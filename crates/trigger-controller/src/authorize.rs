//! Who may act on what (the confused-deputy problem). Writing an NVJ must never grant more than
//! writing the target would, so a trigger may act:
//! - on a target in the NVJ's own namespace;
//! - on a target elsewhere only with the target's consent: its `mlops.dev/allow-triggers-from`
//!   annotation lists the NVJ's namespace (or `*`) - written by whoever can write the target;
//! - on an Argo CD Application elsewhere only if that Application manages the NVJ: the
//!   Application's own status lists the NVJ among its resources *and* the NVJ's tracking, read
//!   with Argo CD's settings (`nbg_core::foreign::tracking`), names the Application (its labels
//!   and annotations alone could be forged by the NVJ's author);
//! - on a Flux Kustomization elsewhere only if that Kustomization manages the NVJ: its
//!   `status.inventory` lists the NVJ *and* the NVJ's `kustomize.toolkit.fluxcd.io/name` and
//!   `/namespace` labels name it (`nbg_core::foreign::flux`).
//!
//! The controller can switch cross-namespace targets off entirely, and limits the kinds that
//! may be targeted. Pure: unit-tested without a cluster.

use std::collections::BTreeSet;
use std::sync::Arc;

use nbg_core::annotations::{self, TriggerTarget};
use nbg_core::foreign::Application;
use nbg_core::foreign::flux::{self, FluxObject};
use nbg_core::foreign::tracking::{AppRef, Attribution, Tracking};
use nbg_core::nvj::NotebookValidationJob;

/// The controller's policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `group/Kind` (core group: `/Kind`) that may be targeted.
    pub allowed_kinds: BTreeSet<String>,
    pub allow_cross_namespace: bool,
    /// Argo CD's tracking settings in force.
    pub tracking: Arc<Tracking>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            allowed_kinds: crate::kinds::all_keys().into_iter().collect(),
            allow_cross_namespace: true,
            tracking: Arc::new(Tracking::defaults("argocd")),
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
    /// The Application lists the NVJ, but tracking does not name it: the settings disagree
    /// with Argo CD's (the message says which to check), not a missing consent.
    #[error("{0}; until they agree, this trigger is refused")]
    NotTracked(String),
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

/// How `app` and `nvj` agree: the Application lists it, and tracking names the Application.
pub fn application_attribution(
    tracking: &Tracking,
    app: &Application,
    nvj: &NotebookValidationJob,
) -> Attribution {
    tracking.attribution(
        app,
        nbg_core::nvj::GROUP,
        nbg_core::nvj::KIND,
        &nvj.metadata,
    )
}

/// How a GitOps object and the NVJ agree that it manages the NVJ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manager {
    /// An Argo CD Application: its `status.resources` and the NVJ's tracking.
    Application(Attribution),
    /// A Flux Kustomization: its `status.inventory` and the NVJ's labels.
    Kustomization(flux::Attribution),
}

/// How Kustomization `k` and `nvj` agree: its inventory lists it, and its labels name `k`.
pub fn kustomization_attribution(k: &FluxObject, nvj: &NotebookValidationJob) -> flux::Attribution {
    k.attribution(nbg_core::nvj::GROUP, nbg_core::nvj::KIND, &nvj.metadata)
}

/// Decides whether `nvj` may act on `target`. `target_annotations` are the live target's;
/// `manager` is how an Application or Kustomization target and the NVJ agree
/// ([`application_attribution`], [`kustomization_attribution`]).
pub fn authorize(
    policy: &Policy,
    nvj: &NotebookValidationJob,
    target: &TriggerTarget,
    target_annotations: Option<&std::collections::BTreeMap<String, String>>,
    manager: Option<&Manager>,
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
    if consent {
        return Ok(());
    }
    let object = format!(
        "NotebookValidationJob {from}/{}",
        nvj.metadata.name.as_deref().unwrap_or_default()
    );
    let is_application = target.group() == "argoproj.io" && target.kind == "Application";
    let is_kustomization = target.group() == nbg_core::foreign::flux::KUSTOMIZE_GROUP
        && target.kind == "Kustomization";
    match manager {
        Some(Manager::Application(Attribution::Managed)) if is_application => return Ok(()),
        Some(Manager::Application(Attribution::ListedNotTracked { tracked })) if is_application => {
            let app = AppRef {
                namespace: to.clone(),
                name: target.name.clone(),
            };
            return Err(Denied::NotTracked(policy.tracking.mismatch_message(
                &app,
                &object,
                tracked.as_ref(),
            )));
        }
        Some(Manager::Kustomization(flux::Attribution::Managed)) if is_kustomization => {
            return Ok(());
        }
        Some(Manager::Kustomization(flux::Attribution::ListedNotLabelled { labelled }))
            if is_kustomization =>
        {
            let kustomization = flux::KustomizationRef {
                namespace: to.clone(),
                name: target.name.clone(),
            };
            return Err(Denied::NotTracked(flux::mismatch_message(
                &kustomization,
                &object,
                labelled.as_ref(),
            )));
        }
        _ => {}
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
                None
            ),
            Ok(())
        );
        let secret = target("- {apiVersion: v1, kind: Secret, name: s, action: refresh}");
        assert_eq!(
            authorize(&Policy::default(), &n, &secret, None, None),
            Err(Denied::KindNotAllowed("/Secret".into()))
        );
    }

    #[test]
    fn another_namespace_needs_the_targets_consent() {
        let n = nvj("team", serde_json::json!({}));
        let t = target(
            "- {apiVersion: apps/v1, kind: Deployment, name: m, namespace: prod, action: restart}",
        );
        let denied = authorize(&Policy::default(), &n, &t, None, None).expect_err("no consent");
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
        assert!(authorize(&Policy::default(), &n, &t, Some(&other), None).is_err());
        let ok = BTreeMap::from([(
            annotations::ALLOW_TRIGGERS_FROM.to_string(),
            "ml, team".to_string(),
        )]);
        assert_eq!(
            authorize(&Policy::default(), &n, &t, Some(&ok), None),
            Ok(())
        );
        let any = BTreeMap::from([(
            annotations::ALLOW_TRIGGERS_FROM.to_string(),
            "*".to_string(),
        )]);
        assert_eq!(
            authorize(&Policy::default(), &n, &t, Some(&any), None),
            Ok(())
        );
        let off = Policy {
            allow_cross_namespace: false,
            ..Policy::default()
        };
        assert_eq!(
            authorize(&off, &n, &t, Some(&any), None),
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
        let policy = Policy::default();
        let attribution = |app: &Application, n: &NotebookValidationJob| {
            application_attribution(&policy.tracking, app, n)
        };
        assert_eq!(attribution(&listed, &tracked), Attribution::Managed);
        // A forged tracking id is not enough: the Application must list the NVJ.
        assert_eq!(
            attribution(&app_with(serde_json::json!([])), &tracked),
            Attribution::NotListed
        );
        let t = target(
            "- {apiVersion: argoproj.io/v1alpha1, kind: Application, name: serving, namespace: argocd, action: sync}",
        );
        assert_eq!(
            authorize(
                &policy,
                &tracked,
                &t,
                None,
                Some(&Manager::Application(Attribution::Managed))
            ),
            Ok(())
        );
        assert!(matches!(
            authorize(
                &policy,
                &tracked,
                &t,
                None,
                Some(&Manager::Application(Attribution::NotListed))
            ),
            Err(Denied::NoConsent { .. })
        ));
        // Listed but tracked by another app: refused, and the message names tracking.
        let other = nvj(
            "team",
            serde_json::json!({"argocd.argoproj.io/tracking-id": "billing:mlops.mlops.dev/NotebookValidationJob:team/train"}),
        );
        let mismatch = attribution(&listed, &other);
        let denied = authorize(
            &policy,
            &other,
            &t,
            None,
            Some(&Manager::Application(mismatch)),
        )
        .expect_err("not tracked");
        let text = denied.to_string();
        assert!(
            text.starts_with("Application argocd/serving lists NotebookValidationJob team/train in status.resources, but its tracking names Application argocd/billing"),
            "{text}"
        );
        assert!(
            text.contains("application.resourceTrackingMethod"),
            "{text}"
        );
        assert!(!text.contains("consent"), "{text}");
    }

    #[test]
    fn a_kustomization_elsewhere_only_when_it_manages_the_nvj() {
        let kustomization = |entries: serde_json::Value| -> FluxObject {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "train", "namespace": "flux-system"},
                "status": {"inventory": {"entries": entries}}
            }))
            .expect("a Kustomization")
        };
        let listing = kustomization(
            serde_json::json!([{"id": "team_train_mlops.mlops.dev_NotebookValidationJob", "v": "v1alpha1"}]),
        );
        let mut applied = nvj("team", serde_json::json!({}));
        applied.metadata.labels = Some(
            [
                (flux::KUSTOMIZE_NAME_LABEL, "train"),
                (flux::KUSTOMIZE_NAMESPACE_LABEL, "flux-system"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        let t = target(
            "- {apiVersion: kustomize.toolkit.fluxcd.io/v1, kind: Kustomization, name: train, namespace: flux-system, action: reconcile}",
        );
        let policy = Policy::default();
        let decide = |k: &FluxObject, n: &NotebookValidationJob| {
            let manager = Manager::Kustomization(kustomization_attribution(k, n));
            authorize(&policy, n, &t, None, Some(&manager))
        };
        assert_eq!(decide(&listing, &applied), Ok(()));
        // Labels the NVJ's author wrote are not enough: the inventory must list it.
        assert!(matches!(
            decide(&kustomization(serde_json::json!([])), &applied),
            Err(Denied::NoConsent { .. })
        ));
        let unlabelled = nvj("team", serde_json::json!({}));
        let denied = decide(&listing, &unlabelled).expect_err("labels name none");
        assert_eq!(
            denied.to_string(),
            "Kustomization flux-system/train lists NotebookValidationJob team/train in status.inventory, but its labels kustomize.toolkit.fluxcd.io/name and kustomize.toolkit.fluxcd.io/namespace name no Kustomization: kustomize-controller writes both when it applies it, so another tool rewrote them; until they agree, this trigger is refused"
        );
        // A Kustomization's attribution says nothing about another kind.
        let app = target(
            "- {apiVersion: argoproj.io/v1alpha1, kind: Application, name: train, namespace: flux-system, action: sync}",
        );
        let manager = Manager::Kustomization(flux::Attribution::Managed);
        assert!(authorize(&policy, &applied, &app, None, Some(&manager)).is_err());
    }
}
