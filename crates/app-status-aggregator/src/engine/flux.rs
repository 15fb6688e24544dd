//! Flux: the aggregate on the Kustomization whose labels an NVJ carries
//! (`kustomize.toolkit.fluxcd.io/name`, `/namespace`) and whose `status.inventory` lists it.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use nbg_core::foreign::NamespacedName;
use nbg_core::foreign::flux::{self, Kustomization};
use nbg_core::nvj::{GROUP, KIND};

use super::{Engine, Namer, Owner};

impl Owner for Kustomization {
    fn listed_nvjs(&self) -> Vec<NamespacedName> {
        self.0.inventory_of(GROUP, KIND)
    }

    fn lists_nvj(&self, namespace: &str, name: &str) -> bool {
        self.0.lists(namespace, name, GROUP, KIND)
    }
}

#[derive(Clone)]
pub struct Flux {
    /// Where Kustomizations live (`--flux-namespaces`); empty: every namespace.
    pub namespaces: Vec<String>,
}

impl Engine for Flux {
    type Owner = Kustomization;
    const METRIC_STEM: &'static str = "kustomization";

    fn owner_namespaces(&self) -> Vec<String> {
        self.namespaces.clone()
    }

    fn namer(&self) -> Namer {
        Arc::new(flux::labelled_kustomization)
    }

    /// kustomize-controller's labels have no settings: they never change meaning.
    fn namer_changes(&self) -> BoxStream<'static, Namer> {
        futures::stream::pending().boxed()
    }

    fn mismatch_message(
        &self,
        owner: &NamespacedName,
        object: &str,
        named: Option<&NamespacedName>,
    ) -> String {
        flux::mismatch_message(owner, object, named)
    }
}
