//! `restart` with `strategy: evict`, planned from the target and its pods (pure).
//!
//! Only pods that started before the run completed are evicted, one at a time, and the next
//! only once every pod of the target is Ready again (and as many as the target wants). The
//! run's completion time is the whole of the state: a controller that crashes mid-way finds
//! the pods still to evict from the pods themselves, and a replacement pod - started after the
//! completion - is never evicted, so nothing is evicted twice and nothing is skipped.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use crate::kinds;
use crate::live::LiveTarget;

#[derive(Debug, Clone, PartialEq)]
pub enum EvictionStep {
    /// Evict this pod through the Eviction API (which honours PodDisruptionBudgets).
    Evict(String),
    /// Not now: a pod is terminating or not Ready yet.
    Wait(WaitFor),
    /// Every pod started after the run completed and is Ready.
    Done(String),
}

/// What an eviction waits for before the next pod goes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitFor {
    #[error("waiting for pod {0} to terminate")]
    Termination(String),
    #[error("waiting for pods to be Ready ({ready} of {pods} Ready, {wanted} wanted)")]
    Readiness {
        ready: i64,
        pods: usize,
        wanted: i64,
    },
}

/// Why a target's pods cannot be selected for eviction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("{kind} has no spec.selector")]
    NoSelector { kind: String },
    #[error("the target's selector is empty")]
    Empty,
    #[error("unknown selector operator {0:?}")]
    UnknownOperator(Option<String>),
    #[error("restart by eviction is not supported for {group}/{kind}")]
    Unsupported { group: String, kind: String },
}

/// How a kind's pods are found, and how many it wants (the kinds table's).
#[derive(Clone, Copy)]
pub struct Pods {
    /// The label selector of its pods, in the API's query syntax; `kind` names it in errors.
    pub selector: fn(&str, &LiveTarget) -> Result<String, SelectorError>,
    pub desired: fn(&LiveTarget) -> i64,
}

/// The label selector of the target's pods, in the API's query syntax.
pub fn pod_selector(group: &str, kind: &str, live: &LiveTarget) -> Result<String, SelectorError> {
    match kinds::find(group, kind).and_then(|k| k.pods) {
        Some(pods) => (pods.selector)(kind, live),
        None => Err(SelectorError::Unsupported {
            group: group.to_string(),
            kind: kind.to_string(),
        }),
    }
}

/// Workloads: `spec.selector`.
pub fn spec_selector(kind: &str, live: &LiveTarget) -> Result<String, SelectorError> {
    let selector =
        live.object
            .pointer("/spec/selector")
            .ok_or_else(|| SelectorError::NoSelector {
                kind: kind.to_string(),
            })?;
    label_selector(selector)
}

/// KServe labels an InferenceService's pods with its name.
pub fn inference_service_pods(_: &str, live: &LiveTarget) -> Result<String, SelectorError> {
    let name = live.text("/metadata/name").unwrap_or_default();
    Ok(format!("serving.kserve.io/inferenceservice={name}"))
}

/// Workloads: `spec.replicas` (1 when absent).
pub fn spec_replicas(live: &LiveTarget) -> i64 {
    live.int("/spec/replicas").unwrap_or(1)
}

/// DaemonSets: as many as are scheduled.
pub fn scheduled_daemons(live: &LiveTarget) -> i64 {
    live.int("/status/desiredNumberScheduled").unwrap_or(1)
}

pub fn one(_: &LiveTarget) -> i64 {
    1
}

/// `{matchLabels, matchExpressions}` as a selector string; an empty selector is refused (it
/// would select every pod of the namespace).
fn label_selector(selector: &Value) -> Result<String, SelectorError> {
    let mut parts = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    for e in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match e.get("operator").and_then(Value::as_str) {
            Some("In") => parts.push(format!("{key} in ({})", values.join(","))),
            Some("NotIn") => parts.push(format!("{key} notin ({})", values.join(","))),
            Some("Exists") => parts.push(key.to_string()),
            Some("DoesNotExist") => parts.push(format!("!{key}")),
            other => return Err(SelectorError::UnknownOperator(other.map(str::to_string))),
        }
    }
    if parts.is_empty() {
        return Err(SelectorError::Empty);
    }
    Ok(parts.join(","))
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn started(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .or(pod.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
}

/// The next step for the target `live` whose pods are `pods`, for a run completed at
/// `completed`.
pub fn plan(
    group: &str,
    kind: &str,
    live: &LiveTarget,
    pods: &[Pod],
    completed: Timestamp,
) -> EvictionStep {
    let name = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
    if let Some(p) = pods
        .iter()
        .find(|p| p.metadata.deletion_timestamp.is_some())
    {
        return EvictionStep::Wait(WaitFor::Termination(name(p)));
    }
    let want = kinds::find(group, kind)
        .and_then(|k| k.pods)
        .map_or(1, |p| (p.desired)(live));
    let ready_count = pods.iter().filter(|p| ready(p)).count() as i64;
    if ready_count < want || ready_count < pods.len() as i64 {
        return EvictionStep::Wait(WaitFor::Readiness {
            ready: ready_count,
            pods: pods.len(),
            wanted: want,
        });
    }
    let mut stale: Vec<&Pod> = pods
        .iter()
        .filter(|p| started(p).is_some_and(|s| s < completed))
        .collect();
    stale.sort_by_key(|p| (started(p), name(p)));
    match stale.first() {
        Some(p) => EvictionStep::Evict(name(p)),
        None => EvictionStep::Done(format!(
            "all {} pods started after the run completed and are Ready",
            pods.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(
        group: &str,
        kind: &str,
        live: &Value,
        pods: &[Pod],
        completed: Timestamp,
    ) -> EvictionStep {
        super::plan(
            group,
            kind,
            &LiveTarget::of(group, kind, live.clone()),
            pods,
            completed,
        )
    }

    fn pod_selector(group: &str, kind: &str, live: &Value) -> Result<String, SelectorError> {
        super::pod_selector(group, kind, &LiveTarget::of(group, kind, live.clone()))
    }

    fn pod(name: &str, started: &str, is_ready: bool, terminating: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": started,
                         "deletionTimestamp": if terminating { json!(started) } else { Value::Null }},
            "status": {"startTime": started,
                       "conditions": [{"type": "Ready", "status": if is_ready { "True" } else { "False" }}]}
        }))
        .expect("pod")
    }

    fn deployment(replicas: i64) -> Value {
        json!({"spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "m"}}}})
    }

    const DONE_AT: &str = "2027-01-15T08:00:00Z";

    fn at() -> Timestamp {
        DONE_AT.parse().expect("time")
    }

    #[test]
    fn evicts_the_oldest_pod_started_before_the_run_one_at_a_time() {
        let pods = [
            pod("b", "2027-01-15T07:00:00Z", true, false),
            pod("a", "2027-01-15T06:00:00Z", true, false),
        ];
        let step = plan("apps", "Deployment", &deployment(2), &pods, at());
        assert_eq!(step, EvictionStep::Evict("a".into()));
        // The replacement is not Ready yet: wait before the next.
        let pods = [
            pod("b", "2027-01-15T07:00:00Z", true, false),
            pod("c", "2027-01-15T08:00:05Z", false, false),
        ];
        assert!(matches!(
            plan("apps", "Deployment", &deployment(2), &pods, at()),
            EvictionStep::Wait(_)
        ));
        // A pod still terminating: wait.
        let pods = [
            pod("a", "2027-01-15T06:00:00Z", true, true),
            pod("b", "2027-01-15T07:00:00Z", true, false),
        ];
        assert!(matches!(
            plan("apps", "Deployment", &deployment(2), &pods, at()),
            EvictionStep::Wait(_)
        ));
        // Fewer pods than wanted (the replacement not created yet): wait.
        let pods = [pod("b", "2027-01-15T07:00:00Z", true, false)];
        assert!(matches!(
            plan("apps", "Deployment", &deployment(2), &pods, at()),
            EvictionStep::Wait(_)
        ));
    }

    #[test]
    fn pods_started_after_the_run_are_never_evicted() {
        let pods = [
            pod("c", "2027-01-15T08:00:05Z", true, false),
            pod("d", "2027-01-15T08:01:00Z", true, false),
        ];
        assert!(matches!(
            plan("apps", "Deployment", &deployment(2), &pods, at()),
            EvictionStep::Done(_)
        ));
    }

    #[test]
    fn selectors_follow_the_target() {
        let live = json!({"spec": {"selector": {"matchLabels": {"app": "m"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
                                 {"key": "canary", "operator": "DoesNotExist"}]}}});
        assert_eq!(
            pod_selector("apps", "Deployment", &live).as_deref(),
            Ok("app=m,tier in (a,b),!canary")
        );
        assert_eq!(
            pod_selector(
                "serving.kserve.io",
                "InferenceService",
                &json!({"metadata": {"name": "fraud"}})
            )
            .as_deref(),
            Ok("serving.kserve.io/inferenceservice=fraud")
        );
        assert!(
            pod_selector("apps", "Deployment", &json!({"spec": {"selector": {}}})).is_err(),
            "an empty selector would select every pod"
        );
        assert!(pod_selector("argoproj.io", "Application", &json!({})).is_err());
    }

    #[test]
    fn selectors_that_cannot_be_used_say_why() {
        let none = serde_json::json!({"spec": {}});
        assert_eq!(
            pod_selector("apps", "Deployment", &none),
            Err(SelectorError::NoSelector {
                kind: "Deployment".into()
            })
        );
        let empty = serde_json::json!({"spec": {"selector": {}}});
        assert_eq!(
            pod_selector("apps", "Deployment", &empty),
            Err(SelectorError::Empty)
        );
        let odd = serde_json::json!({"spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}});
        assert_eq!(
            pod_selector("apps", "StatefulSet", &odd).map_err(|e| e.to_string()),
            Err("unknown selector operator Some(\"Near\")".to_string())
        );
        assert_eq!(
            pod_selector("batch", "Job", &none).map_err(|e| e.to_string()),
            Err("restart by eviction is not supported for batch/Job".to_string())
        );
    }
}
