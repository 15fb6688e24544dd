//! Which NVJs a `wait` is about, and where each stands - pure functions of the objects, so every
//! rule is unit-tested without a cluster. A waiter trusts wave-marker's marks only for the NVJ's
//! current generation: a mark of an earlier generation, in the moment between a spec change and
//! its removal, never releases a waiter.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use nbg_core::annotations::{
    BLOCK_WAVE, SYNC_WAVE, WAVE_COMPLETE, WAVE_FAILED, WAVE_GENERATION, parse_wave,
};
use nbg_core::foreign::Application;
use nbg_core::foreign::flux::{self, FluxObject, KustomizationRef};
use nbg_core::foreign::tracking::{AppRef, Attribution, Tracking};
use nbg_core::nvj::{NotebookValidationJob, Phase};

use crate::marks::{self, InvalidWave};

/// What to wait for; every criterion given must hold (label and name selection happen on the
/// server).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// NVJs whose `mlops.dev/block-wave` is this wave.
    pub block_wave: Option<i32>,
    /// NVJs in this sync wave.
    pub wave: Option<i32>,
    /// NVJs an Argo CD Application manages.
    pub application: Option<ManagedBy>,
    /// NVJs a Flux Kustomization manages.
    pub kustomization: Option<KustomizedBy>,
}

/// A Flux Kustomization, as the wait sees it: the NVJs it manages are those its
/// `status.inventory` lists and whose labels name it (`nbg_core::foreign::flux`).
#[derive(Debug, Clone, PartialEq)]
pub struct KustomizedBy {
    pub kustomization: KustomizationRef,
    /// The Kustomization as last read (None: not read yet, or missing: it manages nothing).
    pub live: Option<FluxObject>,
}

impl KustomizedBy {
    /// `namespace/name`, or `name` in Flux's own namespace, flux-system.
    pub fn new(kustomization: &str) -> Self {
        let (namespace, name) = kustomization
            .split_once('/')
            .unwrap_or(("flux-system", kustomization));
        Self {
            kustomization: KustomizationRef {
                namespace: namespace.to_string(),
                name: name.to_string(),
            },
            live: None,
        }
    }

    fn manages(&self, meta: &ObjectMeta) -> bool {
        self.live.as_ref().is_some_and(|k| {
            k.attribution(nbg_core::nvj::GROUP, nbg_core::nvj::KIND, meta)
                == flux::Attribution::Managed
        })
    }
}

/// An Application, as the wait sees it: the NVJs it manages are those its `status.resources`
/// lists and whose tracking (Argo CD's settings) names it.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedBy {
    pub app: AppRef,
    pub tracking: Arc<Tracking>,
    /// The Application as last read (None: not read yet, or missing: it manages nothing).
    pub live: Option<Application>,
}

impl ManagedBy {
    /// `name` (in Argo CD's namespace) or `namespace/name`.
    pub fn new(application: &str, tracking: Arc<Tracking>) -> Self {
        let app = match application.split_once('/') {
            Some((ns, name)) => AppRef {
                namespace: ns.to_string(),
                name: name.to_string(),
            },
            None => AppRef {
                namespace: tracking.argocd_namespace.clone(),
                name: application.to_string(),
            },
        };
        Self {
            app,
            tracking,
            live: None,
        }
    }
}

/// Where one matching NVJ stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Marked complete for its current generation.
    Complete,
    /// Marked failed for its current generation; the NVJ's status message.
    Failed(String),
    /// A wave annotation is malformed: it will never be marked.
    Invalid(String),
    /// Not marked for its current generation yet; where it stands.
    Pending(String),
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn managed_by(meta: &ObjectMeta, by: &ManagedBy) -> bool {
    by.live.as_ref().is_some_and(|app| {
        by.tracking
            .attribution(app, nbg_core::nvj::GROUP, nbg_core::nvj::KIND, meta)
            == Attribution::Managed
    })
}

/// Whether the NVJ is one the query waits for. An NVJ whose wave annotation is malformed
/// matches a criterion on that annotation: it is reported as invalid, never left out silently.
pub fn matches(query: &Query, nvj: &NotebookValidationJob) -> bool {
    if let Some(app) = &query.application
        && !managed_by(&nvj.metadata, app)
    {
        return false;
    }
    if let Some(k) = &query.kustomization
        && !k.manages(&nvj.metadata)
    {
        return false;
    }
    let wave_is = |key: &str, wanted: Option<i32>, default: Option<i32>| match wanted {
        None => true,
        Some(w) => match annotation(&nvj.metadata, key) {
            None => default == Some(w),
            Some(v) => parse_wave(v).map_or(true, |v| v == w),
        },
    };
    wave_is(SYNC_WAVE, query.wave, Some(0)) && wave_is(BLOCK_WAVE, query.block_wave, None)
}

/// Where the NVJ stands, from wave-marker's marks for its current generation.
pub fn state(nvj: &NotebookValidationJob) -> State {
    if let Err(InvalidWave { annotation, error }) = marks::waves(nvj) {
        return State::Invalid(format!(
            "annotation {annotation}: {error}; it will not be marked until it is fixed"
        ));
    }
    let generation = nvj.metadata.generation;
    let marked_generation = annotation(&nvj.metadata, WAVE_GENERATION).map(str::trim);
    let current_mark =
        generation.is_some_and(|g| marked_generation == Some(g.to_string().as_str()));
    if current_mark && annotation(&nvj.metadata, WAVE_COMPLETE).is_some() {
        return State::Complete;
    }
    let status = nvj.status.as_ref();
    if current_mark && annotation(&nvj.metadata, WAVE_FAILED).is_some() {
        let message = status
            .and_then(|s| s.message.clone())
            .unwrap_or_else(|| "validation failed".to_string());
        return State::Failed(message);
    }
    let generation = generation.unwrap_or_default();
    let mut where_ = match nvj.current_phase() {
        None => format!(
            "generation {generation} not picked up by nvj-validator yet (status describes {})",
            nvj.observed_generation()
                .map_or("none".to_string(), |g| format!("generation {g}"))
        ),
        Some(p @ (Phase::Succeeded | Phase::Failed)) => {
            format!("phase {p}, not marked by wave-marker yet (is it running for this namespace?)")
        }
        Some(p) => format!("phase {p}"),
    };
    if let Some(m) = marked_generation.filter(|_| !current_mark) {
        where_.push_str(&format!(
            "; its mark is of generation {m}, not the current {generation}"
        ));
    }
    State::Pending(where_)
}

/// A matching NVJ and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `namespace/name`.
    pub name: String,
    pub state: State,
}

/// The decision after each change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Enough matches, all complete.
    Complete,
    /// At least one match failed or is invalid: stop now.
    Failed,
    /// Keep waiting.
    Waiting,
}

/// The matching NVJs and where each stands, kept up to date one change at a time, so a wait on
/// thousands of NVJs costs the same per change as a wait on one.
#[derive(Debug, Default)]
pub struct Tally {
    states: BTreeMap<String, State>,
    complete: usize,
    failed: usize,
}

impl Tally {
    fn count(&mut self, state: &State, by: isize) {
        let slot = match state {
            State::Complete => &mut self.complete,
            State::Failed(_) | State::Invalid(_) => &mut self.failed,
            State::Pending(_) => return,
        };
        *slot = slot.saturating_add_signed(by);
    }

    /// Records where `key` (`namespace/name`) stands now: `None` when it no longer matches
    /// (or is gone). Returns true when it has just become complete.
    pub fn set(&mut self, key: &str, state: Option<State>) -> bool {
        let old = match state {
            Some(s) => {
                self.count(&s, 1);
                self.states.insert(key.to_string(), s)
            }
            None => self.states.remove(key),
        };
        if let Some(old) = &old {
            self.count(old, -1);
        }
        old != Some(State::Complete) && self.states.get(key) == Some(&State::Complete)
    }

    /// Records the NVJ as the query sees it.
    pub fn update(
        &mut self,
        query: &Query,
        key: &str,
        nvj: Option<&NotebookValidationJob>,
    ) -> bool {
        self.set(key, nvj.filter(|n| matches(query, n)).map(state))
    }

    pub fn complete(&self) -> usize {
        self.complete
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// The verdict given that at least `require` must match.
    pub fn verdict(&self, require: usize) -> Verdict {
        if self.failed > 0 {
            Verdict::Failed
        } else if self.states.len() >= require && self.complete == self.states.len() {
            Verdict::Complete
        } else {
            Verdict::Waiting
        }
    }

    /// Every match, sorted by name.
    pub fn entries(&self) -> Vec<Entry> {
        self.states
            .iter()
            .map(|(name, state)| Entry {
                name: name.clone(),
                state: state.clone(),
            })
            .collect()
    }
}

fn key_of(nvj: &NotebookValidationJob) -> String {
    format!(
        "{}/{}",
        nvj.metadata.namespace.as_deref().unwrap_or_default(),
        nvj.metadata.name.as_deref().unwrap_or_default()
    )
}

/// All matches, sorted by name, and the verdict given at least `require` of them.
pub fn judge<'a>(
    query: &Query,
    nvjs: impl IntoIterator<Item = &'a NotebookValidationJob>,
    require: usize,
) -> (Vec<Entry>, Verdict) {
    let mut tally = Tally::default();
    for n in nvjs {
        tally.update(query, &key_of(n), Some(n));
    }
    (tally.entries(), tally.verdict(require))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nvj(
        name: &str,
        generation: i64,
        annotations: serde_json::Value,
        status: serde_json::Value,
    ) -> NotebookValidationJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "mlops.mlops.dev/v1alpha1",
            "kind": "NotebookValidationJob",
            "metadata": {"name": name, "namespace": "ml", "generation": generation,
                         "annotations": annotations, "labels": {"team": "a"}},
            "spec": {"notebook": {"git": {"url": "https://example.com/r.git", "ref": "main"}, "path": "a.ipynb"},
                     "podConfig": {"containerImage": "img"}},
            "status": status
        }))
        .expect("nvj")
    }

    fn complete(name: &str, block: &str) -> NotebookValidationJob {
        nvj(
            name,
            2,
            serde_json::json!({BLOCK_WAVE: block, WAVE_COMPLETE: "0", WAVE_GENERATION: "2"}),
            serde_json::json!({"phase": "Succeeded", "observedGeneration": 2}),
        )
    }

    fn running(name: &str, block: &str) -> NotebookValidationJob {
        nvj(
            name,
            2,
            serde_json::json!({BLOCK_WAVE: block}),
            serde_json::json!({"phase": "Running", "observedGeneration": 2}),
        )
    }

    fn by_block(b: i32) -> Query {
        Query {
            block_wave: Some(b),
            ..Default::default()
        }
    }

    #[test]
    fn complete_when_every_match_is_marked_for_its_generation() {
        let nvjs = [
            complete("a", "5"),
            complete("b", "5"),
            running("other", "6"),
        ];
        let (entries, verdict) = judge(&by_block(5), &nvjs, 1);
        assert_eq!(verdict, Verdict::Complete);
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn waits_for_the_running_one_and_says_its_phase() {
        let nvjs = [complete("a", "5"), running("b", "5")];
        let (entries, verdict) = judge(&by_block(5), &nvjs, 1);
        assert_eq!(verdict, Verdict::Waiting);
        assert_eq!(entries[1].state, State::Pending("phase Running".into()));
    }

    #[test]
    fn a_failure_stops_the_wait_at_once_with_its_message() {
        let failed = nvj(
            "f",
            2,
            serde_json::json!({BLOCK_WAVE: "5", WAVE_FAILED: "0", WAVE_GENERATION: "2"}),
            serde_json::json!({"phase": "Failed", "observedGeneration": 2, "message": "cell 3 failed"}),
        );
        let nvjs = [running("a", "5"), failed];
        let (entries, verdict) = judge(&by_block(5), &nvjs, 1);
        assert_eq!(verdict, Verdict::Failed);
        assert_eq!(entries[1].state, State::Failed("cell 3 failed".into()));
    }

    #[test]
    fn a_stale_mark_never_releases_a_waiter() {
        // The spec changed to generation 3; the mark and the status still describe generation 2.
        let stale = nvj(
            "a",
            3,
            serde_json::json!({WAVE_COMPLETE: "0", WAVE_GENERATION: "2"}),
            serde_json::json!({"phase": "Succeeded", "observedGeneration": 2}),
        );
        let (entries, verdict) = judge(&Query::default(), [&stale], 1);
        assert_eq!(verdict, Verdict::Waiting);
        let State::Pending(why) = &entries[0].state else {
            panic!("pending expected")
        };
        assert!(
            why.contains("generation 3 not picked up") && why.contains("mark is of generation 2"),
            "{why}"
        );
        // Even a stale failure mark does not fail the wait.
        let stale_failed = nvj(
            "a",
            3,
            serde_json::json!({WAVE_FAILED: "0", WAVE_GENERATION: "2"}),
            serde_json::json!({"phase": "Failed", "observedGeneration": 2}),
        );
        assert_eq!(
            judge(&Query::default(), [&stale_failed], 1).1,
            Verdict::Waiting
        );
    }

    #[test]
    fn succeeded_but_unmarked_is_pending_and_names_wave_marker() {
        let unmarked = nvj(
            "a",
            2,
            serde_json::json!({}),
            serde_json::json!({"phase": "Succeeded", "observedGeneration": 2}),
        );
        let (entries, verdict) = judge(&Query::default(), [&unmarked], 1);
        assert_eq!(verdict, Verdict::Waiting);
        assert!(matches!(&entries[0].state, State::Pending(w) if w.contains("wave-marker")));
    }

    #[test]
    fn the_tally_follows_changes_one_at_a_time() {
        let q = by_block(5);
        let mut tally = Tally::default();
        assert!(!tally.update(&q, "ml/a", Some(&running("a", "5"))));
        assert!(
            !tally.update(&q, "ml/other", Some(&running("other", "6"))),
            "not a match"
        );
        assert_eq!((tally.len(), tally.verdict(1)), (1, Verdict::Waiting));
        assert!(
            tally.update(&q, "ml/a", Some(&complete("a", "5"))),
            "just completed"
        );
        assert!(
            !tally.update(&q, "ml/a", Some(&complete("a", "5"))),
            "not again"
        );
        assert_eq!(tally.verdict(1), Verdict::Complete);
        assert_eq!(tally.verdict(2), Verdict::Waiting);
        // A new generation takes the completion back; a deletion removes the match.
        tally.update(&q, "ml/a", Some(&running("a", "5")));
        assert_eq!((tally.complete(), tally.verdict(1)), (0, Verdict::Waiting));
        tally.update(&q, "ml/a", None);
        assert!(tally.is_empty());
        tally.set("ml/x", Some(State::Invalid("unreadable".into())));
        assert_eq!(tally.verdict(0), Verdict::Failed);
        tally.set("ml/x", None);
        assert_eq!(tally.verdict(0), Verdict::Complete);
    }

    #[test]
    fn require_stops_a_vacuous_pass() {
        let (entries, verdict) = judge(&by_block(5), std::iter::empty(), 1);
        assert_eq!((entries.len(), verdict), (0, Verdict::Waiting));
        let nvjs = [complete("a", "5")];
        assert_eq!(judge(&by_block(5), &nvjs, 2).1, Verdict::Waiting);
        assert_eq!(judge(&by_block(5), &nvjs, 1).1, Verdict::Complete);
    }

    #[test]
    fn malformed_waves_are_errors_never_complete() {
        let bad = nvj(
            "bad",
            2,
            serde_json::json!({BLOCK_WAVE: "five", WAVE_COMPLETE: "0", WAVE_GENERATION: "2"}),
            serde_json::json!({"phase": "Succeeded", "observedGeneration": 2}),
        );
        let (entries, verdict) = judge(&by_block(5), [&bad], 1);
        assert_eq!(verdict, Verdict::Failed);
        assert!(
            matches!(&entries[0].state, State::Invalid(m) if m.contains(BLOCK_WAVE) && m.contains("five"))
        );
        let bad_wave = nvj(
            "bad",
            2,
            serde_json::json!({SYNC_WAVE: "1.5"}),
            serde_json::json!({}),
        );
        let q = Query {
            wave: Some(1),
            ..Default::default()
        };
        assert_eq!(judge(&q, [&bad_wave], 1).1, Verdict::Failed);
        // A malformed sync-wave does not drag an NVJ of another block wave into the wait.
        let other = nvj(
            "other",
            2,
            serde_json::json!({SYNC_WAVE: "x", BLOCK_WAVE: "6"}),
            serde_json::json!({}),
        );
        assert!(!matches(&by_block(5), &other));
    }

    #[test]
    fn wave_and_application_select_by_what_the_application_lists_and_tracking() {
        use nbg_core::annotations::ARGOCD_TRACKING_ID;
        let in_app = nvj(
            "a",
            2,
            serde_json::json!({SYNC_WAVE: "2",
            ARGOCD_TRACKING_ID: "apps_training:mlops.mlops.dev/NotebookValidationJob:ml/a"}),
            serde_json::json!({}),
        );
        let labelled: NotebookValidationJob = {
            let mut n = nvj("b", 2, serde_json::json!({}), serde_json::json!({}));
            n.metadata.labels = Some(
                [(
                    nbg_core::foreign::tracking::DEFAULT_LABEL_KEY.to_string(),
                    "training".to_string(),
                )]
                .into(),
            );
            n
        };
        let listing = |ns: &str, names: &[&str]| -> Application {
            let resources: Vec<_> = names.iter().map(|n| serde_json::json!({"group": "mlops.mlops.dev", "kind": "NotebookValidationJob", "namespace": "ml", "name": n})).collect();
            serde_json::from_value(serde_json::json!({"metadata": {"name": "training", "namespace": ns}, "status": {"resources": resources}})).expect("app")
        };
        // argocd-cm sets no method: the annotation counts, else the label.
        let tracking = Arc::new(Tracking::defaults("argocd"));
        let q = |app: &str, live: Option<Application>| Query {
            application: Some(ManagedBy {
                live,
                ..ManagedBy::new(app, tracking.clone())
            }),
            ..Default::default()
        };
        assert!(matches(
            &q("apps/training", Some(listing("apps", &["a"]))),
            &in_app
        ));
        assert!(
            !matches(&q("apps/training", None), &in_app),
            "an Application not read yet manages nothing"
        );
        assert!(
            !matches(&q("apps/training", Some(listing("apps", &[]))), &in_app),
            "tracking alone is not enough: the Application must list it"
        );
        assert!(
            !matches(&q("training", Some(listing("argocd", &["a"]))), &in_app),
            "an Application in Argo CD's namespace is another one"
        );
        assert!(matches(
            &q("training", Some(listing("argocd", &["b"]))),
            &labelled
        ));
        let wave = |w| Query {
            wave: Some(w),
            ..Default::default()
        };
        assert!(matches(&wave(2), &in_app));
        assert!(!matches(&wave(0), &in_app));
        assert!(
            matches(&wave(0), &labelled),
            "no sync-wave is Argo CD's wave 0"
        );
    }

    #[test]
    fn a_kustomization_selects_what_its_inventory_lists_and_the_labels_name() {
        let labelled = |kustomization: &str| {
            let mut n = nvj("a", 2, serde_json::json!({}), serde_json::json!({}));
            n.metadata.labels = Some(
                [
                    (
                        flux::KUSTOMIZE_NAME_LABEL.to_string(),
                        kustomization.to_string(),
                    ),
                    (
                        flux::KUSTOMIZE_NAMESPACE_LABEL.to_string(),
                        "flux-system".to_string(),
                    ),
                ]
                .into(),
            );
            n
        };
        let listing = |ids: &[&str]| -> FluxObject {
            let entries: Vec<_> = ids
                .iter()
                .map(|id| serde_json::json!({"id": id, "v": "v1alpha1"}))
                .collect();
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "training", "namespace": "flux-system"},
                "status": {"inventory": {"entries": entries}}}))
            .expect("a Kustomization")
        };
        let q = |live: Option<FluxObject>| Query {
            kustomization: Some(KustomizedBy {
                live,
                ..KustomizedBy::new("training")
            }),
            ..Default::default()
        };
        let id = "ml_a_mlops.mlops.dev_NotebookValidationJob";
        assert!(matches(&q(Some(listing(&[id]))), &labelled("training")));
        assert!(
            !matches(&q(None), &labelled("training")),
            "a Kustomization not read yet manages nothing"
        );
        assert!(
            !matches(&q(Some(listing(&[]))), &labelled("training")),
            "labels alone are not enough: the inventory must list it"
        );
        assert!(!matches(&q(Some(listing(&[id]))), &labelled("other")));
        assert_eq!(
            KustomizedBy::new("team-a/serving").kustomization,
            KustomizationRef {
                namespace: "team-a".into(),
                name: "serving".into()
            }
        );
    }
}
