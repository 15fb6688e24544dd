//! Argo CD: the aggregate on the Application whose resource tracking an NVJ carries and whose
//! `status.resources` lists it; the tracking settings are Argo CD's own, followed as they change.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use nbg_core::foreign::tracking::Tracking;
use nbg_core::foreign::{Application, NamespacedName};
use nbg_core::nvj::{GROUP, KIND};
use nbg_runtime::argocd::TrackingSettings;

use super::{Engine, Namer, Owner};

impl Owner for Application {
    fn listed_nvjs(&self) -> Vec<NamespacedName> {
        let listed = self
            .status
            .as_ref()
            .map(|s| s.resources.as_slice())
            .unwrap_or_default();
        listed
            .iter()
            .filter(|r| r.group == GROUP && r.kind == KIND)
            .map(|r| NamespacedName {
                namespace: r.namespace.clone(),
                name: r.name.clone(),
            })
            .collect()
    }

    fn lists_nvj(&self, namespace: &str, name: &str) -> bool {
        self.lists(GROUP, KIND, namespace, name)
    }
}

/// The Application an NVJ's tracking names under `tracking`.
pub fn namer_of(tracking: Arc<Tracking>) -> Namer {
    Arc::new(move |meta| tracking.application(meta))
}

#[derive(Clone)]
pub struct ArgoCd {
    pub tracking: TrackingSettings,
    /// Where Applications live (`--application-namespaces`); empty: every namespace.
    pub application_namespaces: Vec<String>,
}

impl Engine for ArgoCd {
    type Owner = Application;
    const METRIC_STEM: &'static str = "application";

    fn owner_namespaces(&self) -> Vec<String> {
        self.application_namespaces.clone()
    }

    fn namer(&self) -> Namer {
        namer_of(self.tracking.current())
    }

    fn namer_changes(&self) -> BoxStream<'static, Namer> {
        self.tracking.changes().map(namer_of).boxed()
    }

    fn mismatch_message(
        &self,
        owner: &NamespacedName,
        object: &str,
        named: Option<&NamespacedName>,
    ) -> String {
        self.tracking
            .current()
            .mismatch_message(owner, object, named)
    }
}
