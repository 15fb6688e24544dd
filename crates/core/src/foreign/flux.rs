//! Flux's objects as we read them: a Kustomization, HelmRelease, GitRepository or OCIRepository
//! (`*.toolkit.fluxcd.io`) - whether it is suspended, where its last reconcile request stands
//! (`status.lastHandledReconcileAt`), its `Ready` condition and, for a Kustomization, what it
//! applied (`status.inventory`) - and which Kustomization manages an object.
//!
//! kustomize-controller labels what it applies with its name and namespace
//! (`kustomize.toolkit.fluxcd.io/name`, `/namespace`) and lists it in its own
//! `status.inventory` as `<namespace>_<name>_<group>_<kind>`. The labels are written by whoever
//! writes the object's manifest and can be forged; the inventory is kustomize-controller's
//! record, the authority ([`FluxObject::attribution`]), as an Argo CD Application's
//! `status.resources` is for tracking.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// The annotation `flux reconcile` writes to request a reconcile now; Flux copies the value it
/// handled into `status.lastHandledReconcileAt`.
pub const RECONCILE_REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";
/// The label kustomize-controller puts on what it applies: the Kustomization's name.
pub const KUSTOMIZE_NAME_LABEL: &str = "kustomize.toolkit.fluxcd.io/name";
/// ... and its namespace.
pub const KUSTOMIZE_NAMESPACE_LABEL: &str = "kustomize.toolkit.fluxcd.io/namespace";
/// The API group Flux objects' groups end with.
pub const FLUX_GROUP_SUFFIX: &str = ".toolkit.fluxcd.io";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FluxObject {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: FluxSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<FluxStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FluxSpec {
    /// A suspended object is not reconciled, requested or not.
    #[serde(default)]
    pub suspend: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FluxStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<FluxCondition>,
    /// The value of the last `reconcile.fluxcd.io/requestedAt` the controller handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// What a Kustomization applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<Inventory>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FluxCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    #[serde(default)]
    pub entries: Vec<InventoryEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryEntry {
    /// `<namespace>_<name>_<group>_<kind>`.
    pub id: String,
    /// The version it was applied as.
    #[serde(default)]
    pub v: String,
}

/// A Kustomization (`kustomize.toolkit.fluxcd.io/v1`) as a controller's main object: the same
/// fields as every Flux object we read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Kustomization(pub FluxObject);

impl kube::Resource for Kustomization {
    type DynamicType = ();
    type Scope = kube::core::NamespaceResourceScope;

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        "Kustomization".into()
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        KUSTOMIZE_GROUP.into()
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        "kustomizations".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.0.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.0.metadata
    }
}

/// kustomize-controller's API group.
pub const KUSTOMIZE_GROUP: &str = "kustomize.toolkit.fluxcd.io";

/// An inventory entry's id for an object (Flux's `ObjMetadata` string).
pub fn inventory_id(namespace: &str, name: &str, group: &str, kind: &str) -> String {
    format!("{namespace}_{name}_{group}_{kind}")
}

/// A Kustomization, by namespace and name.
pub type KustomizationRef = super::NamespacedName;

/// Which Kustomization an object's labels name, if both labels are there.
pub fn labelled_kustomization(meta: &ObjectMeta) -> Option<KustomizationRef> {
    let labels = meta.labels.as_ref()?;
    Some(KustomizationRef {
        namespace: labels.get(KUSTOMIZE_NAMESPACE_LABEL)?.clone(),
        name: labels.get(KUSTOMIZE_NAME_LABEL)?.clone(),
    })
}

/// What to say when Kustomization `kustomization` lists `object` (e.g. "NotebookValidationJob
/// ml/train") in its inventory but the object's labels name `labelled` instead.
pub fn mismatch_message(
    kustomization: &KustomizationRef,
    object: &str,
    labelled: Option<&KustomizationRef>,
) -> String {
    let named = labelled.map_or("no Kustomization".to_string(), |k| {
        format!("Kustomization {k}")
    });
    format!(
        "Kustomization {kustomization} lists {object} in status.inventory, but its labels \
         {KUSTOMIZE_NAME_LABEL} and {KUSTOMIZE_NAMESPACE_LABEL} name {named}: kustomize-controller \
         writes both when it applies it, so another tool rewrote them"
    )
}

/// How a Kustomization and an object agree that it manages the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribution {
    /// Listed in its `status.inventory`, and the object's labels name it.
    Managed,
    /// Listed, but the labels name another Kustomization (or none): what they name.
    ListedNotLabelled { labelled: Option<KustomizationRef> },
    /// Not in its inventory.
    NotListed,
}

impl FluxObject {
    /// The `Ready` condition, if it describes the current generation (Flux sets the
    /// condition's `observedGeneration`, else the status's).
    pub fn ready(&self) -> Option<&FluxCondition> {
        let status = self.status.as_ref()?;
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
        let observed = ready.observed_generation.or(status.observed_generation);
        (observed == self.metadata.generation).then_some(ready)
    }

    pub fn last_handled_reconcile_at(&self) -> Option<&str> {
        self.status.as_ref()?.last_handled_reconcile_at.as_deref()
    }

    /// The objects of `group`/`kind` its inventory lists. Ids are `<namespace>_<name>_<group>_<kind>`;
    /// namespaces, names and groups hold no `_`, so the split is exact.
    pub fn inventory_of(&self, group: &str, kind: &str) -> Vec<super::NamespacedName> {
        let entries = self
            .status
            .as_ref()
            .and_then(|s| s.inventory.as_ref())
            .map(|i| i.entries.as_slice())
            .unwrap_or_default();
        entries
            .iter()
            .filter_map(|e| {
                let mut parts = e.id.splitn(4, '_');
                let (namespace, name) = (parts.next()?, parts.next()?);
                (parts.next()? == group && parts.next()? == kind).then(|| super::NamespacedName {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                })
            })
            .collect()
    }

    /// Whether its inventory lists the object.
    pub fn lists(&self, namespace: &str, name: &str, group: &str, kind: &str) -> bool {
        let id = inventory_id(namespace, name, group, kind);
        self.status
            .as_ref()
            .and_then(|s| s.inventory.as_ref())
            .is_some_and(|i| i.entries.iter().any(|e| e.id == id))
    }

    /// Whether this Kustomization manages the object of `group`/`kind` whose metadata is `meta`.
    pub fn attribution(&self, group: &str, kind: &str, meta: &ObjectMeta) -> Attribution {
        let namespace = meta.namespace.as_deref().unwrap_or_default();
        let name = meta.name.as_deref().unwrap_or_default();
        if !self.lists(namespace, name, group, kind) {
            return Attribution::NotListed;
        }
        let me = KustomizationRef {
            namespace: self.metadata.namespace.clone().unwrap_or_default(),
            name: self.metadata.name.clone().unwrap_or_default(),
        };
        match labelled_kustomization(meta) {
            Some(labelled) if labelled == me => Attribution::Managed,
            labelled => Attribution::ListedNotLabelled { labelled },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kustomization(entries: &[&str]) -> FluxObject {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "train", "namespace": "flux-system", "generation": 3},
            "spec": {"suspend": false},
            "status": {
                "observedGeneration": 3,
                "lastHandledReconcileAt": "2026-12-06T10:00:00Z",
                "conditions": [{"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded",
                                "message": "Applied revision: main@sha1:abc", "observedGeneration": 3}],
                "inventory": {"entries": entries.iter().map(|id| serde_json::json!({"id": id, "v": "v1alpha1"})).collect::<Vec<_>>()}
            }
        }))
        .expect("a Kustomization")
    }

    fn nvj_meta(labels: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            name: Some("train".into()),
            namespace: Some("ml".into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
    }

    const NVJ_ID: &str = "ml_train_mlops.mlops.dev_NotebookValidationJob";
    const LABELS: [(&str, &str); 2] = [
        (KUSTOMIZE_NAME_LABEL, "train"),
        (KUSTOMIZE_NAMESPACE_LABEL, "flux-system"),
    ];

    fn attribution(k: &FluxObject, meta: &ObjectMeta) -> Attribution {
        k.attribution("mlops.mlops.dev", "NotebookValidationJob", meta)
    }

    #[test]
    fn a_kustomization_manages_what_its_inventory_lists_and_the_labels_name() {
        assert_eq!(
            inventory_id("ml", "train", "mlops.mlops.dev", "NotebookValidationJob"),
            NVJ_ID
        );
        let k = kustomization(&[NVJ_ID]);
        assert_eq!(attribution(&k, &nvj_meta(&LABELS)), Attribution::Managed);
        // Labels alone are not enough: anyone writing the NVJ can write them.
        assert_eq!(
            attribution(&kustomization(&[]), &nvj_meta(&LABELS)),
            Attribution::NotListed
        );
        let other = [
            (KUSTOMIZE_NAME_LABEL, "other"),
            (KUSTOMIZE_NAMESPACE_LABEL, "flux-system"),
        ];
        assert_eq!(
            attribution(&k, &nvj_meta(&other)),
            Attribution::ListedNotLabelled {
                labelled: Some(KustomizationRef {
                    namespace: "flux-system".into(),
                    name: "other".into()
                })
            }
        );
        assert_eq!(
            attribution(&k, &nvj_meta(&[])),
            Attribution::ListedNotLabelled { labelled: None }
        );
    }

    #[test]
    fn the_inventory_names_its_objects_of_one_kind() {
        let k = kustomization(&[
            NVJ_ID,
            "ml_serve_apps_Deployment",
            "ml_other_mlops.mlops.dev_NotebookValidationJob",
            "_ml__Namespace",
            "broken",
        ]);
        let named = |ns: &str, n: &str| KustomizationRef {
            namespace: ns.into(),
            name: n.into(),
        };
        assert_eq!(
            k.inventory_of("mlops.mlops.dev", "NotebookValidationJob"),
            vec![named("ml", "train"), named("ml", "other")]
        );
        assert_eq!(k.inventory_of("", "Namespace"), vec![named("", "ml")]);
        assert!(
            kustomization(&[])
                .inventory_of("apps", "Deployment")
                .is_empty()
        );
    }

    #[test]
    fn ready_counts_only_for_the_current_generation() {
        let mut k = kustomization(&[]);
        assert_eq!(k.ready().map(|c| c.status.as_str()), Some("True"));
        assert_eq!(k.last_handled_reconcile_at(), Some("2026-12-06T10:00:00Z"));
        k.metadata.generation = Some(4);
        assert!(k.ready().is_none());
    }
}
