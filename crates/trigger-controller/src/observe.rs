//! The reconcile's reads: one open target as it stands - from the watch cache or the API - with
//! what rolls for it and, for an eviction, its pods. Every read that can be refused says so in
//! [`Found`]; other API errors are the reconcile's (retried with backoff).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::ObjectRef;
use nbg_core::annotations::{RestartStrategy, TriggerTarget};
use nbg_core::nvj::NotebookValidationJob;

use crate::decide::{self, Found, Observed, PodList, Predictor};
use crate::eviction;
use crate::kinds::{self, TargetKind};
use crate::live::{LiveTarget, Typed, Unreadable};
use crate::reconcile::{Error, TriggerReconciler};
use crate::waiting::TargetKey;

/// Whether a read was refused with this HTTP status.
fn refused(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// What rolls for `t` (KServe's predictor Deployment), as a target key.
fn rolls_through(kind: Option<&TargetKind>, t: &TargetKey) -> Option<TargetKey> {
    let other = kind?.rolls_through?;
    Some(TargetKey {
        group: other.group.into(),
        kind: other.kind.into(),
        namespace: t.namespace.clone(),
        name: (other.name)(&t.name),
    })
}

impl TriggerReconciler {
    /// Reads `t` for `nvj` at `now`; from the watch cache when `use_cache` and it has it. The
    /// NVJ waits on the target (and what rolls for it) from its first look.
    pub(crate) async fn observe(
        &self,
        nvj: &NotebookValidationJob,
        t: &TriggerTarget,
        now: Timestamp,
        use_cache: bool,
    ) -> Result<Observed, Error> {
        let key = TargetKey::of(t, &decide::act::nvj_namespace(nvj));
        let kind = kinds::find(t.group(), &t.kind);
        let nvj_ref = ObjectRef::from_obj(nvj);
        let waiting_since = self.waiting.wait(key.clone(), nvj_ref.clone(), now);
        let predictor_key = rolls_through(kind, &key);
        if let Some(p) = &predictor_key {
            self.waiting.wait(p.clone(), nvj_ref.clone(), now);
        }
        let found = self
            .find(nvj, t, &key, kind, predictor_key.clone(), use_cache)
            .await?;
        // Only succeeded runs are acted on: this read came after the run completed.
        let run = nvj.run_id().unwrap_or_default();
        if matches!(found, Found::Missing) {
            self.waiting.saw_missing(&key, &nvj_ref, &run);
        }
        Ok(Observed {
            target: t.clone(),
            seen_missing: self.waiting.seen_missing(&key, &nvj_ref, &run),
            found,
            waiting_since,
            watched: self.targets.watches(&key),
            key,
            rolls_with: predictor_key,
        })
    }

    async fn find(
        &self,
        nvj: &NotebookValidationJob,
        t: &TriggerTarget,
        key: &TargetKey,
        kind: Option<&TargetKind>,
        predictor_key: Option<TargetKey>,
        use_cache: bool,
    ) -> Result<Found, Error> {
        let api = match self.targets.api_for(t, &key.namespace).await {
            Ok(api) => api,
            Err(e) if refused(&e, 404) => return Ok(Found::NotServed),
            Err(e) => return Err(e.into()),
        };
        let object = match use_cache.then(|| self.targets.cached(key)).flatten() {
            Some(cached) => Some(cached),
            None => match api.get_opt(&t.name).await {
                Ok(found) => found,
                Err(e) if refused(&e, 403) => return Ok(Found::ReadDenied),
                Err(e) => return Err(e.into()),
            },
        };
        let Some(object) = object else {
            return Ok(Found::Missing);
        };
        let unreadable = |reason: String| Unreadable {
            kind: t.kind.clone(),
            namespace: key.namespace.clone(),
            name: t.name.clone(),
            reason,
        };
        let value = match serde_json::to_value(&object) {
            Ok(v) => v,
            Err(e) => return Ok(Found::Unreadable(unreadable(e.to_string()))),
        };
        let read = kind.map_or(kinds::READ_OTHER, |k| k.read);
        let live = match LiveTarget::read(&t.kind, value, read) {
            Ok(live) => live,
            Err(e) => return Ok(Found::Unreadable(e)),
        };
        let standard_mode = live.inference_service().is_some_and(|i| i.standard_mode());
        let predictor = match predictor_key.filter(|_| standard_mode) {
            Some(p) => self.predictor(&p).await?,
            None => Predictor::NotApplicable,
        };
        let pods = if t.strategy == RestartStrategy::Evict
            && decide::act::authorized(&self.policy(), nvj, t, &live).is_ok()
        {
            Some(self.pods(t, &key.namespace, &live).await?)
        } else {
            None
        };
        Ok(Found::Live {
            live: Box::new(live),
            predictor,
            pods,
        })
    }

    /// The predictor Deployment: from the watch cache, else read.
    async fn predictor(&self, key: &TargetKey) -> Result<Predictor, Error> {
        let read = |object: Option<serde_json::Value>| {
            Predictor::Read(object.map(|object| LiveTarget {
                object,
                typed: Typed::Json,
            }))
        };
        if let Some(cached) = self.targets.cached(key) {
            return Ok(read(serde_json::to_value(cached).ok()));
        }
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &key.namespace);
        match api.get_opt(&key.name).await {
            Ok(found) => Ok(read(found.and_then(|d| serde_json::to_value(d).ok()))),
            Err(e) if refused(&e, 403) => Ok(Predictor::Denied(key.name.clone())),
            Err(e) => Err(e.into()),
        }
    }

    async fn pods(
        &self,
        t: &TriggerTarget,
        namespace: &str,
        live: &LiveTarget,
    ) -> Result<PodList, Error> {
        let selector = match eviction::pod_selector(t.group(), &t.kind, live) {
            Ok(s) => s,
            Err(why) => return Ok(PodList::Unselectable(why)),
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        match api.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => Ok(PodList::Listed(list.items)),
            Err(e) if refused(&e, 403) => Ok(PodList::Denied),
            Err(e) => Err(e.into()),
        }
    }
}
