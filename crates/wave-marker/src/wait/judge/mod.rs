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
mod tests;
