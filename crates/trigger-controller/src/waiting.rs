//! Which NVJs wait on which targets (a rollout to complete, an operation to finish), so that a
//! change of a watched target wakes exactly those NVJs - watch-driven waiting, no polling.
//!
//! The index lives in memory: after a restart every NVJ is reconciled once anyway, and those
//! still waiting enter it again.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use nbg_core::nvj::NotebookValidationJob;

/// A target: group, kind, namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetKey {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl TargetKey {
    /// The target of a trigger entry, its namespace defaulting to the NVJ's.
    pub fn of(t: &nbg_core::annotations::TriggerTarget, nvj_namespace: &str) -> Self {
        Self {
            group: t.group().to_string(),
            kind: t.kind.clone(),
            namespace: t.namespace_or(nvj_namespace).to_string(),
            name: t.name.clone(),
        }
    }
}

type Nvj = ObjectRef<NotebookValidationJob>;

#[derive(Default)]
pub struct WaitIndex {
    /// Target -> the NVJs waiting on it, with when each started waiting.
    by_target: Mutex<HashMap<TargetKey, HashMap<Nvj, Timestamp>>>,
    /// Targets whose every change wakes their NVJs, not only a settled rollout: one recorded
    /// stuck, whose record must follow it when it moves again.
    every_change: Mutex<HashSet<TargetKey>>,
    /// (target, NVJ, run) for which a read after the run completed found no target: created
    /// later, it starts with the run's output. Kept in memory only: after a controller restart
    /// the target's creationTimestamp decides.
    seen_missing: Mutex<HashSet<(TargetKey, Nvj, String)>>,
}

impl WaitIndex {
    /// `nvj` waits on `target` from `now` on (or keeps its earlier start); returns the start.
    pub fn wait(&self, target: TargetKey, nvj: Nvj, now: Timestamp) -> Timestamp {
        let Ok(mut m) = self.by_target.lock() else {
            return now;
        };
        *m.entry(target).or_default().entry(nvj).or_insert(now)
    }

    /// A read for `nvj`'s succeeded `run` found no `target`.
    pub fn saw_missing(&self, target: &TargetKey, nvj: &Nvj, run: &str) {
        if let Ok(mut seen) = self.seen_missing.lock() {
            seen.insert((target.clone(), nvj.clone(), run.to_string()));
        }
    }

    /// Whether a read for `nvj`'s `run` found no `target`.
    pub fn seen_missing(&self, target: &TargetKey, nvj: &Nvj, run: &str) -> bool {
        self.seen_missing
            .lock()
            .is_ok_and(|seen| seen.contains(&(target.clone(), nvj.clone(), run.to_string())))
    }

    /// `nvj` no longer waits on `target`.
    pub fn done(&self, target: &TargetKey, nvj: &Nvj) {
        if let Ok(mut seen) = self.seen_missing.lock() {
            seen.retain(|(t, n, _)| !(t == target && n == nvj));
        }
        if let Ok(mut m) = self.by_target.lock()
            && let Some(waiting) = m.get_mut(target)
        {
            waiting.remove(nvj);
            if waiting.is_empty() {
                m.remove(target);
                if let Ok(mut every) = self.every_change.lock() {
                    every.remove(target);
                }
            }
        }
    }

    /// Whether every change of `target` wakes its NVJs.
    pub fn set_every_change(&self, target: &TargetKey, on: bool) {
        if let Ok(mut every) = self.every_change.lock() {
            if on {
                every.insert(target.clone());
            } else {
                every.remove(target);
            }
        }
    }

    pub fn every_change(&self, target: &TargetKey) -> bool {
        self.every_change
            .lock()
            .is_ok_and(|every| every.contains(target))
    }

    /// Since when `nvj` waits on `target`, if it does.
    pub fn since(&self, target: &TargetKey, nvj: &Nvj) -> Option<Timestamp> {
        self.by_target.lock().ok()?.get(target)?.get(nvj).copied()
    }

    /// A deleted `nvj` waits on nothing any more; targets left without waiters are forgotten.
    pub fn forget(&self, nvj: &Nvj) {
        let targets: Vec<TargetKey> = self
            .by_target
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(_, w)| w.contains_key(nvj))
                    .map(|(t, _)| t.clone())
                    .collect()
            })
            .unwrap_or_default();
        for target in targets {
            self.done(&target, nvj);
        }
    }

    /// How many targets have NVJs waiting on them.
    pub fn len(&self) -> usize {
        self.by_target.lock().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The NVJs waiting on `target`.
    pub fn waiting_on(&self, target: &TargetKey) -> Vec<Nvj> {
        self.by_target
            .lock()
            .ok()
            .and_then(|m| m.get(target).map(|w| w.keys().cloned().collect()))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).expect("time")
    }

    fn key(name: &str) -> TargetKey {
        TargetKey {
            group: "apps".into(),
            kind: "Deployment".into(),
            namespace: "ml".into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_target_wakes_exactly_the_nvjs_waiting_on_it() {
        let index = WaitIndex::default();
        let a = ObjectRef::new("train-a").within("ml");
        let b = ObjectRef::new("train-b").within("ml");
        let first = index.wait(key("m"), a.clone(), t(0));
        index.wait(key("m"), b.clone(), t(1));
        index.wait(key("other"), b.clone(), t(1));
        assert_eq!(
            index.wait(key("m"), a.clone(), t(5)),
            first,
            "the start is kept"
        );
        let mut waiting = index.waiting_on(&key("m"));
        waiting.sort_by_key(|r| r.name.clone());
        assert_eq!(waiting, vec![a.clone(), b.clone()]);
        index.done(&key("m"), &a);
        assert_eq!(index.waiting_on(&key("m")), vec![b.clone()]);
        assert!(index.since(&key("m"), &a).is_none());
        index.set_every_change(&key("m"), true);
        assert!(index.every_change(&key("m")));
        index.done(&key("m"), &b);
        assert!(index.waiting_on(&key("m")).is_empty());
        assert!(
            !index.every_change(&key("m")),
            "forgotten with its last waiter"
        );
        assert_eq!(index.waiting_on(&key("other")), vec![b]);
    }

    #[test]
    fn a_deleted_nvj_leaves_no_trace() {
        let index = WaitIndex::default();
        let a = ObjectRef::new("train-a").within("ml");
        let b = ObjectRef::new("train-b").within("ml");
        index.wait(key("m"), a.clone(), t(0));
        index.wait(key("m-predictor"), a.clone(), t(0));
        index.wait(key("m"), b.clone(), t(1));
        index.set_every_change(&key("m-predictor"), true);
        index.forget(&a);
        assert_eq!(index.waiting_on(&key("m")), vec![b.clone()]);
        assert!(index.waiting_on(&key("m-predictor")).is_empty());
        assert!(!index.every_change(&key("m-predictor")));
        index.forget(&b);
        assert!(index.is_empty(), "nothing left");
    }

    #[test]
    fn a_target_seen_missing_is_remembered_per_run_until_the_nvj_is_done_with_it() {
        let index = WaitIndex::default();
        let a = ObjectRef::new("train-a").within("ml");
        index.wait(key("m"), a.clone(), t(0));
        index.saw_missing(&key("m"), &a, "u/1");
        assert!(index.seen_missing(&key("m"), &a, "u/1"));
        assert!(!index.seen_missing(&key("m"), &a, "u/2"), "another run");
        assert!(!index.seen_missing(&key("other"), &a, "u/1"));
        index.done(&key("m"), &a);
        assert!(!index.seen_missing(&key("m"), &a, "u/1"));
    }
}
