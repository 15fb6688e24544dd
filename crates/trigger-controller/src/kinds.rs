//! The target kinds this controller acts on, in one table. The `--allowed-kinds` default,
//! authorization, planning, eviction, the watches and the chart's default RBAC all come from it:
//! adding a kind is one entry here plus its restart and rollout functions.

use crate::actions::{Plan, RunStamp, reconcile, restart, sync};
use crate::eviction::{self, Pods};
use crate::live::{self, LiveTarget, ReadFn};
use crate::rollout::{self, ProgressFn, StateFn};

/// How a restart is written on a target of the kind.
pub type RestartFn = fn(&LiveTarget, &RunStamp) -> Plan;

/// Another object that rolls out when a target restarts.
#[derive(Clone, Copy)]
pub struct RollsThrough {
    pub group: &'static str,
    pub kind: &'static str,
    /// Its name, from the target's.
    pub name: fn(&str) -> String,
}

/// One supported target kind.
pub struct TargetKind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The resource name, for RBAC and the watch.
    pub plural: &'static str,
    /// How its objects are read (the typed reading, parse errors named).
    pub read: ReadFn,
    /// How it restarts; `None`: `restart` is not supported for it.
    pub restart: Option<RestartFn>,
    /// How it syncs; `None`: `sync` is not supported for it. Refresh is supported for every kind.
    pub sync: Option<RestartFn>,
    /// How a reconcile is requested (Flux objects); `None`: `reconcile` is not supported for it.
    pub reconcile: Option<RestartFn>,
    /// How to tell that a restart has rolled out, and where it stands meanwhile.
    pub rollout: StateFn,
    pub progress: ProgressFn,
    /// How its pods are found for `strategy: evict`; `None`: not supported.
    pub pods: Option<Pods>,
    /// The object that actually rolls when it restarts, if another (KServe's predictor
    /// Deployment in Standard mode).
    pub rolls_through: Option<RollsThrough>,
    /// Whether every change of a watched target wakes the NVJs waiting on it, not only a
    /// settled rollout (KServe's Ready after the predictor rolled completes a restart).
    pub wake_on_every_change: bool,
}

impl TargetKind {
    /// `group/Kind`, as `--allowed-kinds` lists it.
    pub fn key(&self) -> String {
        format!("{}/{}", self.group, self.kind)
    }

    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }
}

const WORKLOAD_PODS: Pods = Pods {
    selector: eviction::spec_selector,
    desired: eviction::spec_replicas,
};

pub static KINDS: [TargetKind; 10] = [
    TargetKind {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        read: live::read_json,
        restart: Some(restart::pod_template),
        sync: None,
        reconcile: None,
        rollout: rollout::deployment_state,
        progress: rollout::deployment_progress,
        pods: Some(WORKLOAD_PODS),
        rolls_through: None,
        wake_on_every_change: false,
    },
    TargetKind {
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        plural: "statefulsets",
        read: live::read_json,
        restart: Some(restart::pod_template),
        sync: None,
        reconcile: None,
        rollout: rollout::statefulset_state,
        progress: rollout::statefulset_progress,
        pods: Some(WORKLOAD_PODS),
        rolls_through: None,
        wake_on_every_change: false,
    },
    TargetKind {
        group: "apps",
        version: "v1",
        kind: "DaemonSet",
        plural: "daemonsets",
        read: live::read_json,
        restart: Some(restart::pod_template),
        sync: None,
        reconcile: None,
        rollout: rollout::daemonset_state,
        progress: rollout::daemonset_progress,
        pods: Some(Pods {
            selector: eviction::spec_selector,
            desired: eviction::scheduled_daemons,
        }),
        rolls_through: None,
        wake_on_every_change: false,
    },
    TargetKind {
        group: "argoproj.io",
        version: "v1alpha1",
        kind: "Rollout",
        plural: "rollouts",
        read: live::read_rollout,
        restart: Some(restart::argo_rollout),
        sync: None,
        reconcile: None,
        rollout: rollout::argo_rollout_state,
        progress: rollout::argo_rollout_progress,
        pods: Some(WORKLOAD_PODS),
        rolls_through: None,
        wake_on_every_change: false,
    },
    TargetKind {
        group: "argoproj.io",
        version: "v1alpha1",
        kind: "Application",
        plural: "applications",
        read: live::read_application,
        restart: None,
        sync: Some(sync::application),
        reconcile: None,
        rollout: rollout::complete_at_once,
        progress: rollout::no_progress,
        pods: None,
        rolls_through: None,
        // An operation may have finished: any change.
        wake_on_every_change: true,
    },
    TargetKind {
        group: "serving.kserve.io",
        version: "v1beta1",
        kind: "InferenceService",
        plural: "inferenceservices",
        read: live::read_inference_service,
        restart: Some(restart::inference_service),
        sync: None,
        reconcile: None,
        rollout: rollout::inference_service_state,
        progress: rollout::inference_service_progress,
        pods: Some(Pods {
            selector: eviction::inference_service_pods,
            desired: eviction::one,
        }),
        rolls_through: Some(RollsThrough {
            group: "apps",
            kind: "Deployment",
            name: nbg_core::foreign::predictor_deployment,
        }),
        wake_on_every_change: true,
    },
    flux_kind(
        nbg_core::foreign::flux::KUSTOMIZE_GROUP,
        "v1",
        "Kustomization",
        "kustomizations",
    ),
    flux_kind(
        "helm.toolkit.fluxcd.io",
        "v2",
        "HelmRelease",
        "helmreleases",
    ),
    flux_kind(
        "source.toolkit.fluxcd.io",
        "v1",
        "GitRepository",
        "gitrepositories",
    ),
    flux_kind(
        "source.toolkit.fluxcd.io",
        "v1",
        "OCIRepository",
        "ocirepositories",
    ),
];

/// A Flux object: reconciled on request, complete when Flux has handled the request and reports
/// the object Ready; any status change may be that.
const fn flux_kind(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
) -> TargetKind {
    TargetKind {
        group,
        version,
        kind,
        plural,
        read: live::read_flux,
        restart: None,
        sync: None,
        reconcile: Some(reconcile::flux),
        rollout: rollout::flux_reconcile_state,
        progress: rollout::flux_reconcile_progress,
        pods: None,
        rolls_through: None,
        wake_on_every_change: true,
    }
}

/// The supported kind of this group and kind.
pub fn find(group: &str, kind: &str) -> Option<&'static TargetKind> {
    KINDS.iter().find(|k| k.group == group && k.kind == kind)
}

/// Every supported kind as `group/Kind`: the `--allowed-kinds` default.
pub fn all_keys() -> Vec<String> {
    KINDS.iter().map(TargetKind::key).collect()
}

/// How a target of an unsupported kind is read (refresh only).
pub const READ_OTHER: ReadFn = live::read_json;

#[cfg(test)]
mod tests {
    use super::*;

    /// The chart grants RBAC and defaults `allowedKinds` from its copy of this table.
    #[test]
    fn the_charts_kinds_are_the_table() {
        let file = include_str!("../../../charts/trigger-controller/target-kinds.json");
        let file: serde_json::Value = serde_json::from_str(file).expect("target-kinds.json");
        let listed: Vec<[String; 4]> = file["kinds"]
            .as_array()
            .expect("kinds")
            .iter()
            .map(|k| {
                ["group", "version", "kind", "resource"]
                    .map(|f| k[f].as_str().unwrap_or_default().to_string())
            })
            .collect();
        let table: Vec<[String; 4]> = KINDS
            .iter()
            .map(|k| [k.group, k.version, k.kind, k.plural].map(str::to_string))
            .collect();
        assert_eq!(listed, table, "charts/trigger-controller/target-kinds.json");
    }

    #[test]
    fn every_kind_is_found_by_its_group_and_kind() {
        for k in &KINDS {
            assert!(std::ptr::eq(find(k.group, k.kind).expect("found"), k));
        }
        assert!(find("", "ConfigMap").is_none());
        assert_eq!(all_keys().len(), KINDS.len());
    }
}
