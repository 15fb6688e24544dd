//! What the aggregator keeps of each NVJ - a few facts, not the object - and the index of
//! NVJs by the object that manages them (the Application its tracking names, the Kustomization
//! its labels name). Pure data, unit-tested; the watch that feeds it is
//! in [`crate::reconcile`].

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use nbg_core::annotations::ARGOCD_TRACKING_ID;
use nbg_core::foreign::NamespacedName;
use nbg_core::foreign::tracking::INSTALLATION_ID_ANNOTATION;
use nbg_core::nvj::{NotebookValidationJob, Phase};

use crate::engine::Namer;

/// Where an NVJ's current run stands, for the aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Succeeded,
    /// The run failed, or succeeded and a model it restarted failed its check.
    Failed,
    /// Pending, running, or a spec change the validator has not picked up yet.
    Running,
}

/// The facts of one NVJ the aggregate needs.
#[derive(Debug, Clone, PartialEq)]
pub struct NvjFacts {
    pub namespace: String,
    pub name: String,
    /// The object its metadata names (not yet checked against that object's list).
    pub owner: Option<NamespacedName>,
    /// What names the owner: its labels and Argo CD's two tracking annotations, so a change of
    /// Argo CD's settings re-reads every NVJ without a new list.
    pub tracking_meta: ObjectMeta,
    pub state: RunState,
    /// The latest change the status shows: creation, start, completion, a condition's transition.
    pub changed: Option<Timestamp>,
    /// `<uid>/<generation>` of the run, when it ended for the current generation.
    pub run: Option<String>,
    /// When that run ended.
    pub completed: Option<Timestamp>,
}

impl NvjFacts {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn of(nvj: &NotebookValidationJob, namer: &Namer) -> Self {
        let status = nvj.status.as_ref();
        let state = match nvj.current_phase() {
            // The served model answered its check wrongly: the NVJ is Degraded, as failed.
            Some(Phase::Succeeded) if nvj.served_model_failed() => RunState::Failed,
            Some(Phase::Succeeded) => RunState::Succeeded,
            Some(Phase::Failed) => RunState::Failed,
            _ => RunState::Running,
        };
        let completed = status
            .and_then(|s| s.completion_time.as_ref())
            .map(|t| t.0)
            .filter(|_| state != RunState::Running);
        let changed = [
            nvj.metadata.creation_timestamp.as_ref().map(|t| t.0),
            status.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
            status.and_then(|s| s.completion_time.as_ref()).map(|t| t.0),
        ]
        .into_iter()
        .flatten()
        .chain(
            status
                .map(|s| {
                    s.conditions
                        .iter()
                        .map(|c| c.last_transition_time.0)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        )
        .max();
        let tracking_meta = ObjectMeta {
            labels: nvj.metadata.labels.clone(),
            annotations: nvj.metadata.annotations.as_ref().map(|a| {
                a.iter()
                    .filter(|(k, _)| *k == ARGOCD_TRACKING_ID || *k == INSTALLATION_ID_ANNOTATION)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }),
            ..Default::default()
        };
        Self {
            namespace: nvj.metadata.namespace.clone().unwrap_or_default(),
            name: nvj.metadata.name.clone().unwrap_or_default(),
            owner: namer(&tracking_meta),
            tracking_meta,
            state,
            changed,
            run: completed.and_then(|_| nvj.run_id()),
            completed,
        }
    }
}

/// NVJ facts by `namespace/name`, and the keys each owner's name is on.
#[derive(Debug, Default)]
pub struct Index {
    facts: HashMap<String, NvjFacts>,
    by_owner: HashMap<NamespacedName, BTreeSet<String>>,
}

impl Index {
    fn unlink(&mut self, key: &str, owner: &NamespacedName) {
        if let Some(keys) = self.by_owner.get_mut(owner) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_owner.remove(owner);
            }
        }
    }

    /// Records the facts of one NVJ; returns the owners whose aggregate may have changed (none
    /// when nothing the aggregate reads changed).
    pub fn upsert(&mut self, facts: NvjFacts) -> Vec<NamespacedName> {
        let key = facts.key();
        if self.facts.get(&key) == Some(&facts) {
            return Vec::new();
        }
        let mut affected = Vec::new();
        if let Some(old) = self.facts.remove(&key)
            && let Some(owner) = old.owner
        {
            self.unlink(&key, &owner);
            affected.push(owner);
        }
        if let Some(owner) = &facts.owner {
            self.by_owner
                .entry(owner.clone())
                .or_default()
                .insert(key.clone());
            if !affected.contains(owner) {
                affected.push(owner.clone());
            }
        }
        self.facts.insert(key, facts);
        affected
    }

    /// Forgets an NVJ; returns the owner it counted for.
    pub fn remove(&mut self, key: &str) -> Option<NamespacedName> {
        let old = self.facts.remove(key)?;
        let owner = old.owner?;
        self.unlink(key, &owner);
        Some(owner)
    }

    /// Replaces every NVJ of `namespace` (all with `None`) by a fresh list, after a (re-)list;
    /// returns every owner that had or has one of them.
    pub fn replace(
        &mut self,
        namespace: Option<&str>,
        fresh: Vec<NvjFacts>,
    ) -> BTreeSet<NamespacedName> {
        let stale: Vec<String> = self
            .facts
            .values()
            .filter(|f| namespace.is_none_or(|ns| f.namespace == ns))
            .map(NvjFacts::key)
            .collect();
        let mut affected = BTreeSet::new();
        for key in stale {
            affected.extend(self.remove(&key));
        }
        for f in fresh {
            affected.extend(self.upsert(f));
        }
        affected
    }

    /// Reads every NVJ's owner again with new settings; returns the owners that gained or lost
    /// one.
    pub fn rename(&mut self, namer: &Namer) -> BTreeSet<NamespacedName> {
        let moved: Vec<NvjFacts> = self
            .facts
            .values()
            .filter_map(|f| {
                let owner = namer(&f.tracking_meta);
                (owner != f.owner).then(|| NvjFacts { owner, ..f.clone() })
            })
            .collect();
        moved.into_iter().flat_map(|f| self.upsert(f)).collect()
    }

    /// The facts of one NVJ, by `namespace/name`.
    pub fn get(&self, key: &str) -> Option<&NvjFacts> {
        self.facts.get(key)
    }

    /// The NVJs whose metadata names `owner`.
    pub fn of_owner(&self, owner: &NamespacedName) -> Vec<&NvjFacts> {
        self.by_owner
            .get(owner)
            .map(|keys| keys.iter().filter_map(|k| self.facts.get(k)).collect())
            .unwrap_or_default()
    }

    /// How many owners at least one NVJ names.
    pub fn owners(&self) -> usize {
        self.by_owner.len()
    }

    pub fn len(&self) -> usize {
        self.facts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.facts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nbg_core::foreign::tracking::Tracking;

    fn argocd_namer(tracking: Tracking) -> Namer {
        crate::engine::argocd::namer_of(tracking.into())
    }

    fn facts(name: &str, app: Option<&str>, state: RunState) -> NvjFacts {
        NvjFacts {
            namespace: "ml".into(),
            name: name.into(),
            owner: app.map(|a| NamespacedName {
                namespace: "argocd".into(),
                name: a.into(),
            }),
            state,
            changed: None,
            run: None,
            completed: None,
            tracking_meta: ObjectMeta::default(),
        }
    }

    fn app(name: &str) -> NamespacedName {
        NamespacedName {
            namespace: "argocd".into(),
            name: name.into(),
        }
    }

    #[test]
    fn moves_between_applications_and_forgets_deleted_nvjs() {
        let mut index = Index::default();
        assert_eq!(
            index.upsert(facts("a", Some("train"), RunState::Running)),
            vec![app("train")]
        );
        assert!(
            index
                .upsert(facts("a", Some("train"), RunState::Running))
                .is_empty(),
            "unchanged"
        );
        assert_eq!(
            index.upsert(facts("a", Some("serve"), RunState::Running)),
            vec![app("train"), app("serve")]
        );
        assert!(index.of_owner(&app("train")).is_empty());
        assert_eq!(index.of_owner(&app("serve")).len(), 1);
        assert_eq!(index.remove("ml/a"), Some(app("serve")));
        assert!(index.is_empty());
        assert_eq!(index.owners(), 0, "no trace left");
    }

    #[test]
    fn a_relist_replaces_one_namespace() {
        let mut index = Index::default();
        index.upsert(facts("a", Some("train"), RunState::Running));
        let mut other = facts("b", Some("other"), RunState::Running);
        other.namespace = "team".into();
        index.upsert(other);
        let affected = index.replace(
            Some("ml"),
            vec![facts("c", Some("serve"), RunState::Failed)],
        );
        assert_eq!(
            affected.into_iter().collect::<Vec<_>>(),
            vec![app("serve"), app("train")]
        );
        assert_eq!(index.len(), 2, "team/b kept, ml/a gone, ml/c added");
        assert!(index.of_owner(&app("train")).is_empty());
    }

    #[test]
    fn a_run_whose_served_model_failed_its_check_counts_as_failed() {
        let nvj = |result_run: &str| -> NotebookValidationJob {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob",
                "metadata": {"name": "a", "namespace": "ml", "uid": "u", "generation": 2},
                "spec": {"notebook": {"git": {"url": "u", "ref": "r"}, "path": "p"}, "podConfig": {"containerImage": "i"}},
                "status": {"phase": "Succeeded", "observedGeneration": 2, "completionTime": "2026-11-30T11:00:00Z",
                           "modelValidationResult": {"run": result_run, "phase": "both", "platform": "kserve",
                                                     "platformDetected": false, "success": false,
                                                     "message": "ml/fraud: the new model answers wrongly"}}
            }))
            .expect("nvj")
        };
        let f = NvjFacts::of(&nvj("u/2"), &argocd_namer(Tracking::defaults("argocd")));
        assert_eq!(f.state, RunState::Failed);
        assert_eq!(
            f.run.as_deref(),
            Some("u/2"),
            "its run, for the notification"
        );
        // A result of an earlier run says nothing about this one.
        let f = NvjFacts::of(&nvj("u/1"), &argocd_namer(Tracking::defaults("argocd")));
        assert_eq!(f.state, RunState::Succeeded);
    }

    #[test]
    fn facts_follow_the_current_generation() {
        let nvj: NotebookValidationJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob",
            "metadata": {"name": "a", "namespace": "ml", "uid": "u", "generation": 3,
                         "creationTimestamp": "2026-11-30T10:00:00Z",
                         "annotations": {"argocd.argoproj.io/tracking-id": "train:mlops.mlops.dev/NotebookValidationJob:ml/a"}},
            "spec": {"notebook": {"git": {"url": "u", "ref": "r"}, "path": "p"}, "podConfig": {"containerImage": "i"}},
            "status": {"phase": "Failed", "observedGeneration": 2, "completionTime": "2026-11-30T11:00:00Z"}
        }))
        .expect("nvj");
        let f = NvjFacts::of(&nvj, &argocd_namer(Tracking::defaults("argocd")));
        assert_eq!(
            f.state,
            RunState::Running,
            "a run behind its generation counts as running"
        );
        assert_eq!((f.run, f.completed), (None, None));
        assert_eq!(
            f.changed.map(|t| t.to_string()).as_deref(),
            Some("2026-11-30T11:00:00Z")
        );
        assert_eq!(f.owner, Some(app("train")));
    }

    #[test]
    fn new_tracking_settings_move_nvjs_between_applications() {
        use nbg_core::foreign::tracking::{SettingsSource, TrackingOverrides};
        let key = "argocd.argoproj.io/instance";
        let nvj: NotebookValidationJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob",
            "metadata": {"name": "a", "namespace": "ml", "labels": {key: "train", "app.kubernetes.io/instance": "release"}},
            "spec": {"notebook": {"git": {"url": "u", "ref": "r"}, "path": "p"}, "podConfig": {"containerImage": "i"}}
        }))
        .expect("nvj");
        let mut index = Index::default();
        // Argo CD's defaults read the default key: the Helm release's label.
        index.upsert(NvjFacts::of(
            &nvj,
            &argocd_namer(Tracking::defaults("argocd")),
        ));
        assert_eq!(index.of_owner(&app("release")).len(), 1);
        let label = Tracking::from_argocd_cm(
            Some(
                &[
                    (
                        "application.resourceTrackingMethod".to_string(),
                        "label".to_string(),
                    ),
                    ("application.instanceLabelKey".to_string(), key.to_string()),
                ]
                .into(),
            ),
            &TrackingOverrides::default(),
            "argocd",
            SettingsSource::ArgocdCm,
        )
        .expect("settings");
        assert_eq!(
            index
                .rename(&argocd_namer(label.clone()))
                .into_iter()
                .collect::<Vec<_>>(),
            vec![app("release"), app("train")]
        );
        assert_eq!(index.of_owner(&app("train")).len(), 1);
        assert!(
            index.rename(&argocd_namer(label.clone())).is_empty(),
            "nothing moves twice"
        );
    }
}
