//! What must hold after a chaos run, read from the API server's own state: each invariant with
//! how many objects it checked and every violation, named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Context;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use nbg_core::annotations::{NOTEBOOK_STATUS, WAVE_COMPLETE, WAVE_FAILED, WAVE_GENERATION};
use nbg_core::nvj::{NotebookValidationJob, Phase, TriggerOutcome, TriggerRecord};
use serde_json::Value;

use super::faults::FaultCounts;
use super::workload::{self, Deleted, Expect, Hostile, Planned};

const RESTARTED_BY_RUN: &str = "mlops.dev/restarted-by-run";

#[derive(Debug, Clone)]
pub struct Invariant {
    pub name: String,
    pub checked: usize,
    pub violations: Vec<String>,
    /// What the counts alone do not say.
    pub notes: Vec<String>,
}

impl Invariant {
    fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            checked: 0,
            violations: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Counts one check; a violation when `ok` is false.
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        self.checked += 1;
        if !ok {
            self.violations.push(what());
        }
    }
}

/// What the run did, to know what must hold.
pub struct Expected<'a> {
    pub planned: &'a [Planned],
    pub deleted: &'a [Deleted],
    pub hostile: &'a [Hostile],
    /// Hostile objects the API server refused, with its message.
    pub refused: &'a BTreeMap<String, String>,
    pub teams: &'a [String],
    /// The API server's audit log (writes to Deployments).
    pub audit_log: &'a Path,
    /// trigger-controller's user, as the audit log names it.
    pub trigger_user: &'a str,
}

/// Successful writes (create, update, patch) by `user` to each Deployment, from the audit log.
/// A line cut short by the API server's SIGKILL is skipped.
fn audited_writes(log: &Path, user: &str) -> anyhow::Result<BTreeMap<(String, String), usize>> {
    let text = std::fs::read_to_string(log).with_context(|| format!("reading {log:?}"))?;
    Ok(writes_in(&text, user))
}

fn writes_in(text: &str, user: &str) -> BTreeMap<(String, String), usize> {
    let mut writes = BTreeMap::new();
    for line in text.lines() {
        let Ok(e) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let write = matches!(e["verb"].as_str(), Some("create" | "update" | "patch"));
        let ok = e["responseStatus"]["code"]
            .as_u64()
            .is_some_and(|c| (200..300).contains(&c));
        if e["stage"] == "ResponseComplete"
            && write
            && ok
            && e["user"]["username"] == user
            && e["objectRef"]["resource"] == "deployments"
            && e["objectRef"]["subresource"].is_null()
            && let (Some(ns), Some(name)) = (
                e["objectRef"]["namespace"].as_str(),
                e["objectRef"]["name"].as_str(),
            )
        {
            *writes
                .entry((ns.to_string(), name.to_string()))
                .or_default() += 1;
        }
    }
    writes
}

fn phase(nvj: &NotebookValidationJob) -> Option<Phase> {
    let status = nvj.status.as_ref()?;
    (status.observed_generation == nvj.metadata.generation)
        .then_some(status.phase)
        .flatten()
}

fn annotation<'a>(nvj: &'a NotebookValidationJob, key: &str) -> Option<&'a str> {
    nvj.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The run a Deployment's pod template says restarted it (trigger-controller's marker).
fn restart_marker(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(RESTARTED_BY_RUN))
        .cloned()
}

/// The NVJ's trigger records for `run`.
pub(super) fn records_of_run<'a>(
    n: &'a NotebookValidationJob,
    run: &str,
) -> Vec<&'a TriggerRecord> {
    n.status
        .as_ref()
        .map(|s| s.triggers.iter().filter(|r| r.run == run).collect())
        .unwrap_or_default()
}

/// Checks every invariant once.
pub async fn check(
    client: &Client,
    expected: &Expected<'_>,
    counts: &FaultCounts,
) -> anyhow::Result<Vec<Invariant>> {
    let mut nvjs: BTreeMap<(String, String), NotebookValidationJob> = BTreeMap::new();
    let mut events: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    let mut deployments: BTreeMap<(String, String), Deployment> = BTreeMap::new();
    for ns in expected.teams {
        let api: Api<NotebookValidationJob> = Api::namespaced(client.clone(), ns);
        for n in api.list(&ListParams::default()).await? {
            nvjs.insert((ns.clone(), n.name_any()), n);
        }
        let api: Api<Event> = Api::namespaced(client.clone(), ns);
        for e in api.list(&ListParams::default()).await? {
            if let Some(uid) = e.involved_object.uid.clone() {
                events.entry(uid).or_default().push(e);
            }
        }
        let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
        for d in api.list(&ListParams::default()).await? {
            deployments.insert((ns.clone(), d.name_any()), d);
        }
    }
    let events_of = |nvj: &NotebookValidationJob, reason: &str| -> usize {
        nvj.uid().and_then(|u| events.get(&u)).map_or(0, |es| {
            es.iter()
                .filter(|e| e.reason.as_deref() == Some(reason))
                .count()
        })
    };

    // Every NVJ the run made and kept, with what its run must end in.
    let hostile_ns = expected.teams.first().cloned().unwrap_or_default();
    let mut runs: Vec<(&NotebookValidationJob, Phase, Option<&Planned>)> = Vec::new();
    let mut ends = Invariant::new("every run ends as its notebook says");
    let want_of = |p: &Planned| {
        if p.notebook == workload::FAILING {
            Phase::Failed
        } else {
            Phase::Succeeded
        }
    };
    let planned_of = |d: &Deleted| {
        expected
            .planned
            .iter()
            .find(|p| p.namespace == d.namespace && p.name == d.name)
    };
    for d in expected.deleted {
        let want = planned_of(d).map(want_of);
        ends.check(want == Some(d.phase), || {
            format!(
                "{}/{} (deleted): {:?}, not {want:?}",
                d.namespace, d.name, d.phase
            )
        });
    }
    for p in expected.planned {
        if expected
            .deleted
            .iter()
            .any(|d| d.namespace == p.namespace && d.name == p.name)
        {
            continue;
        }
        let want = want_of(p);
        match nvjs.get(&(p.namespace.clone(), p.name.clone())) {
            Some(n) => {
                ends.check(phase(n) == Some(want), || {
                    format!(
                        "{}/{}: {:?}, not {want:?}",
                        p.namespace,
                        p.name,
                        n.status.as_ref().map(|s| (&s.phase, &s.message))
                    )
                });
                runs.push((n, want, Some(p)));
            }
            None => ends.check(false, || format!("{}/{}: gone", p.namespace, p.name)),
        }
    }
    for h in expected.hostile {
        if expected.refused.contains_key(&h.name) {
            continue;
        }
        match nvjs.get(&(hostile_ns.clone(), h.name.clone())) {
            Some(n) => {
                ends.check(phase(n) == Some(Phase::Succeeded), || {
                    format!(
                        "hostile {}: {:?}",
                        h.name,
                        n.status.as_ref().map(|s| (&s.phase, &s.message))
                    )
                });
                runs.push((n, Phase::Succeeded, None));
            }
            None => ends.check(false, || format!("hostile {}: gone", h.name)),
        }
    }

    let audited = audited_writes(expected.audit_log, expected.trigger_user)?;
    let mut unaudited = 0;
    let mut triggers = Invariant::new("every succeeded run's trigger applied exactly once");
    for (n, want, p) in &runs {
        let Some(target) = p.and_then(|p| p.restart.clone()) else {
            continue;
        };
        let ns = n.namespace().unwrap_or_default();
        let run = n.run_id().unwrap_or_default();
        let Some(d) = deployments.get(&(ns.clone(), target.clone())) else {
            triggers.check(false, || format!("{ns}/{target}: gone"));
            continue;
        };
        let generation = d.metadata.generation.unwrap_or_default();
        let marker = restart_marker(d);
        let records = records_of_run(n, &run);
        let writes = audited
            .get(&(ns.clone(), target.clone()))
            .copied()
            .unwrap_or(0);
        if *want == Phase::Succeeded {
            // One pod-template change, one record - and one request: a write the API server
            // committed but was killed before logging is missing from the log, never doubled.
            if writes == 0 {
                unaudited += 1;
            }
            triggers.check(
                generation == 2
                    && marker.as_deref() == Some(run.as_str())
                    && records.len() == 1
                    && records[0].outcome == TriggerOutcome::Succeeded
                    && writes <= 1,
                || format!("{ns}/{}: target {target} generation {generation}, marker {marker:?}, {writes} writes by trigger-controller in the audit log, records {records:?}", n.name_any()),
            );
        } else {
            triggers.check(
                generation == 1 && marker.is_none() && records.is_empty() && writes == 0,
                || {
                    format!("{ns}/{}: failed run, but target {target} generation {generation}, marker {marker:?}, {writes} writes by trigger-controller in the audit log", n.name_any())
                },
            );
        }
    }
    // Deleted NVJs: their records as they were, their targets (kept) as they are now - a
    // trigger-controller that acted again after the NVJ was gone would show here.
    for d in expected.deleted {
        let Some(target) = planned_of(d).and_then(|p| p.restart.clone()) else {
            continue;
        };
        let key = (d.namespace.clone(), target.clone());
        let Some(dep) = deployments.get(&key) else {
            triggers.check(false, || format!("{}/{target}: gone", d.namespace));
            continue;
        };
        let generation = dep.metadata.generation.unwrap_or_default();
        let marker = restart_marker(dep);
        let writes = audited.get(&key).copied().unwrap_or(0);
        let ok = if d.phase == Phase::Succeeded {
            if writes == 0 {
                unaudited += 1;
            }
            generation == 2
                && marker.as_deref() == Some(d.run.as_str())
                && d.records == 1
                && d.succeeded_records == 1
                && writes <= 1
        } else {
            generation == 1 && marker.is_none() && d.records == 0 && writes == 0
        };
        triggers.check(ok, || {
            format!(
                "{}/{} (deleted, {:?}): target {target} generation {generation}, marker {marker:?}, {writes} writes by trigger-controller in the audit log, {} records ({} Succeeded)",
                d.namespace, d.name, d.phase, d.records, d.succeeded_records
            )
        });
    }
    for h in expected.hostile {
        if let Some(u) = &h.untouched {
            let key = (u.namespace.clone(), u.name().to_string());
            let victim = format!("{}/{}", key.0, key.1);
            let generation = deployments.get(&key).and_then(|d| d.metadata.generation);
            let writes = audited.get(&key).copied().unwrap_or(0);
            triggers.check(generation == Some(1) && writes == 0, || {
                format!(
                    "hostile {}: {victim} changed (generation {generation:?}, {writes} writes by trigger-controller in the audit log)",
                    h.name
                )
            });
        }
    }
    let logged: usize = audited.values().sum();
    triggers.notes.push(format!(
        "audit log: {logged} writes by trigger-controller to Deployments; {unaudited} applied restarts not in it (the API server was killed while answering)"
    ));

    let mut notified = Invariant::new("every ended run exactly one Event");
    for (n, want, p) in &runs {
        let (reason, other) = match want {
            Phase::Succeeded => ("ValidationSucceeded", "ValidationFailed"),
            _ => ("ValidationFailed", "ValidationSucceeded"),
        };
        let (this, that) = (events_of(n, reason), events_of(n, other));
        // A spec changed mid-run may have ended a first run too (the change raced its end).
        let changed = p.is_some_and(|p| p.changed_mid_run);
        notified.check(
            if changed {
                (1..=2).contains(&(this + that)) && this >= 1
            } else {
                this == 1 && that == 0
            },
            || {
                format!(
                    "{}/{}: {this} {reason}, {that} {other} Events",
                    n.namespace().unwrap_or_default(),
                    n.name_any()
                )
            },
        );
    }

    for d in expected.deleted {
        if planned_of(d).is_none_or(|p| p.changed_mid_run) {
            continue;
        }
        let count = |reason: &str| {
            events.get(&d.uid).map_or(0, |es| {
                es.iter()
                    .filter(|e| e.reason.as_deref() == Some(reason))
                    .count()
            })
        };
        let (succeeded, failed) = (count("ValidationSucceeded"), count("ValidationFailed"));
        let ok = match d.phase {
            Phase::Succeeded => succeeded == 1 && failed == 0,
            _ => succeeded == 0 && failed == 1,
        };
        notified.check(ok, || {
            format!(
                "{}/{} (deleted, {:?}): {succeeded} ValidationSucceeded, {failed} ValidationFailed Events",
                d.namespace, d.name, d.phase
            )
        });
    }

    let mut waves = Invariant::new("every NVJ's wave marks exactly right");
    for (n, want, p) in &runs {
        let wave = p.map_or(0, |p| p.wave).to_string();
        let malformed = annotation(n, "argocd.argoproj.io/sync-wave")
            .is_some_and(|w| w.parse::<i64>().is_err())
            || annotation(n, "mlops.dev/block-wave").is_some_and(|w| w.parse::<i64>().is_err());
        let generation = n.metadata.generation.unwrap_or_default().to_string();
        let (complete, failed, marked) = (
            annotation(n, WAVE_COMPLETE),
            annotation(n, WAVE_FAILED),
            annotation(n, WAVE_GENERATION),
        );
        let ok = if malformed {
            complete.is_none() && failed.is_none()
        } else if *want == Phase::Succeeded {
            complete == Some(wave.as_str())
                && failed.is_none()
                && marked == Some(generation.as_str())
        } else {
            failed == Some(wave.as_str())
                && complete.is_none()
                && marked == Some(generation.as_str())
        };
        waves.check(ok, || {
            format!("{}/{}: complete {complete:?}, failed {failed:?}, generation {marked:?} (wave {wave}, generation {generation})", n.namespace().unwrap_or_default(), n.name_any())
        });
    }

    let mut aggregates = Invariant::new("every Application's aggregate exactly right");
    let apps = crate::harness::argocd::applications(client, super::ARGOCD);
    for ns in expected.teams {
        let app = apps.get(&workload::application_for(ns)).await?;
        let mine: Vec<&NotebookValidationJob> = nvjs
            .iter()
            .filter(|((n, _), _)| n == ns)
            .map(|(_, v)| v)
            .collect();
        let count = |p: Phase| mine.iter().filter(|n| phase(n) == Some(p)).count();
        let (succeeded, failed) = (count(Phase::Succeeded), count(Phase::Failed));
        let want = (
            mine.len(),
            succeeded,
            failed,
            mine.len() - succeeded - failed,
        );
        let status: Option<Value> = app
            .annotations()
            .get(NOTEBOOK_STATUS)
            .and_then(|s| serde_json::from_str(s).ok());
        let got = status.as_ref().map(|s| {
            let n = |k: &str| s[k].as_u64().unwrap_or(u64::MAX) as usize;
            (n("total"), n("succeeded"), n("failed"), n("running"))
        });
        aggregates.check(
            if mine.is_empty() {
                got.is_none()
            } else {
                got == Some(want)
            },
            || format!("{ns}: (total, succeeded, failed, running) {got:?}, want {want:?}"),
        );
    }

    let mut reported = Invariant::new("every malformed object reported, naming what is wrong");
    for h in expected.hostile {
        match (&h.expect, expected.refused.get(&h.name)) {
            (Expect::Refused(names), Some(message)) => {
                reported.check(message.contains(names), || {
                    format!("{}: refused with {message:?}", h.name)
                });
            }
            (Expect::Refused(_), None) => reported.check(false, || format!("{}: accepted", h.name)),
            (
                Expect::Reported {
                    condition,
                    reason,
                    names,
                },
                None,
            ) => {
                let Some(n) = nvjs.get(&(hostile_ns.clone(), h.name.clone())) else {
                    continue;
                };
                let c = n.status.as_ref().and_then(|s| s.condition(condition));
                let said = c.is_some_and(|c| c.status == "False" && c.message.contains(names));
                reported.check(said && events_of(n, reason) >= 1, || {
                    format!(
                        "{}: condition {condition} {:?}, {} {reason} Events",
                        h.name,
                        c.map(|c| (&c.status, &c.message)),
                        events_of(n, reason)
                    )
                });
            }
            (Expect::Denied { names }, None) => {
                let Some(n) = nvjs.get(&(hostile_ns.clone(), h.name.clone())) else {
                    continue;
                };
                let run = n.run_id().unwrap_or_default();
                let records = records_of_run(n, &run);
                let said = records.len() == 1
                    && records[0].outcome == TriggerOutcome::Denied
                    && records[0]
                        .message
                        .as_deref()
                        .is_some_and(|m| m.contains(names));
                reported.check(said && events_of(n, "TriggerDenied") >= 1, || {
                    format!(
                        "{}: records {records:?}, {} TriggerDenied Events",
                        h.name,
                        events_of(n, "TriggerDenied")
                    )
                });
            }
            (Expect::Runs, _) | (Expect::Reported { .. } | Expect::Denied { .. }, Some(_)) => {
                reported.check(!expected.refused.contains_key(&h.name), || {
                    format!("{}: refused: {:?}", h.name, expected.refused.get(&h.name))
                });
            }
        }
    }

    let mut crashes = Invariant::new("no controller crashed");
    crashes.check(counts.crashes.is_empty(), || {
        let names: BTreeSet<String> = counts
            .crashes
            .iter()
            .map(|(c, tail)| format!("{c}: {tail}"))
            .collect();
        names.into_iter().collect::<Vec<_>>().join("; ")
    });

    Ok(vec![
        ends, triggers, notified, waves, aggregates, reported, crashes,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const TC: &str = "system:serviceaccount:nbg-system:tc-nbg-system-trigger-controller";

    /// An audit event as kube-apiserver writes it (fields the count does not read left out).
    fn event(stage: &str, verb: &str, user: &str, subresource: Option<&str>, code: u16) -> String {
        let mut object = serde_json::json!({"resource": "deployments", "namespace": "team-1", "name": "model-run-0", "apiGroup": "apps", "apiVersion": "v1"});
        if let Some(s) = subresource {
            object["subresource"] = s.into();
        }
        serde_json::json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "stage": stage,
            "requestURI": "/apis/apps/v1/namespaces/team-1/deployments/model-run-0?fieldManager=trigger-controller",
            "verb": verb, "user": {"username": user, "groups": ["system:serviceaccounts"]},
            "objectRef": object, "responseStatus": {"metadata": {}, "code": code}})
        .to_string()
    }

    #[test]
    fn only_completed_successful_writes_by_the_user_to_a_deployment_count() {
        let key = ("team-1".to_string(), "model-run-0".to_string());
        let one = event("ResponseComplete", "patch", TC, None, 200);
        assert_eq!(writes_in(&one, TC).get(&key), Some(&1));
        let twice = format!("{one}\n{one}\n");
        assert_eq!(
            writes_in(&twice, TC).get(&key),
            Some(&2),
            "a repeated write is counted twice"
        );
        for not_counted in [
            event("ResponseStarted", "patch", TC, None, 200),
            event("ResponseComplete", "get", TC, None, 200),
            event("ResponseComplete", "patch", "admin", None, 200),
            event("ResponseComplete", "patch", TC, Some("status"), 200),
            event("ResponseComplete", "patch", TC, None, 409),
            // Cut short when the API server was SIGKILLed while writing it.
            one[..one.len() / 2].to_string(),
        ] {
            assert!(writes_in(&not_counted, TC).is_empty(), "{not_counted}");
        }
    }
}
