//! The reconciler's I/O: decide ([`crate::notify::decide`]), create the run's Event under its
//! derived name (already there: created before a crash, nothing to do), then record the run on
//! the NVJ with server-side apply as `event-notifier`.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};
use nbg_core::nvj::NotebookValidationJob;
use nbg_runtime::metrics::OutcomeMetrics;
use prometheus_client::encoding::EncodeLabelSet;

use crate::NAME;
use crate::flux_event::{self, EventsAddress};
use crate::notify::{self, Decision, NOTIFICATION_TYPE_LABEL, NOTIFIED_RUN, Notification, Since};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// notification-controller did not take the run's Flux event; the run is recorded only once
    /// it has, so it is posted again.
    #[error("{0}")]
    FluxEventNotDelivered(#[from] crate::flux_event::PostError),
}

impl nbg_runtime::runner::ReconcileError for Error {
    fn reason(&self) -> &'static str {
        match self {
            Self::Kube(_) => "Kube",
            Self::FluxEventNotDelivered(_) => "FluxEventNotDelivered",
        }
    }
    fn is_transient(&self) -> bool {
        true
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    /// `validation-success` or `validation-failure`.
    r#type: String,
}

/// Events by type (`nbg_notifications_total{type}`) and the time from a run's completion to its
/// Event (`nbg_notification_lag_seconds`).
pub type NotifierMetrics = OutcomeMetrics<NotificationLabels>;

pub fn register_metrics(registry: &nbg_runtime::metrics::SharedRegistry) -> NotifierMetrics {
    OutcomeMetrics::register(
        registry,
        (
            "notifications",
            "Events emitted for ended runs, by notification type",
        ),
        (
            "notification_lag_seconds",
            "From a run's completionTime to its Event",
        ),
    )
}

/// The ConfigMap that remembers when event-notifier was first installed, in its own namespace.
pub const STATE_CONFIGMAP: &str = "event-notifier-state";
const INSTALLED_AT: &str = "installedAt";

/// When event-notifier was first installed: read from its state ConfigMap, created now (with
/// the current time) when missing, or filled in when it has no time yet. Runs that ended before get no Event unless asked.
pub async fn installed_at(client: &Client, namespace: &str) -> anyhow::Result<Timestamp> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let read = |cm: &ConfigMap| -> anyhow::Result<Timestamp> {
        let value = cm
            .data
            .as_ref()
            .and_then(|d| d.get(INSTALLED_AT))
            .ok_or_else(|| {
                anyhow::anyhow!("ConfigMap {namespace}/{STATE_CONFIGMAP} has no {INSTALLED_AT}")
            })?;
        value.parse().map_err(|e| {
            anyhow::anyhow!("ConfigMap {namespace}/{STATE_CONFIGMAP}: {INSTALLED_AT} {value:?} is not an RFC 3339 time: {e}")
        })
    };
    let context = || {
        format!(
            "cannot read or create the ConfigMap {namespace}/{STATE_CONFIGMAP} (it remembers when event-notifier was first installed; --state-namespace or POD_NAMESPACE says where)"
        )
    };
    use anyhow::Context;
    if let Some(cm) = api.get_opt(STATE_CONFIGMAP).await.with_context(context)? {
        if cm
            .data
            .as_ref()
            .is_some_and(|d| d.contains_key(INSTALLED_AT))
        {
            return read(&cm);
        }
        // The chart creates it empty (so `helm uninstall` removes it); the first replica to
        // start fills in the time, guarded by the resourceVersion it read.
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": cm.metadata.resource_version},
            "data": {INSTALLED_AT: Timestamp::now().to_string()},
        });
        return match api
            .patch(
                STATE_CONFIGMAP,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(patched) => read(&patched),
            // Another replica filled it in first: its time holds.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                read(&api.get(STATE_CONFIGMAP).await.with_context(context)?)
            }
            Err(e) => Err(e).with_context(context),
        };
    }
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(STATE_CONFIGMAP.to_string()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            INSTALLED_AT.to_string(),
            Timestamp::now().to_string(),
        )])),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &cm).await {
        Ok(created) => read(&created),
        // Another replica created it first: its time holds.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            read(&api.get(STATE_CONFIGMAP).await.with_context(context)?)
        }
        Err(e) => Err(e).with_context(context),
    }
}

pub struct NotifierReconciler {
    client: Client,
    since: Since,
    /// `reportingInstance` of the Events: the pod's name.
    instance: String,
    metrics: NotifierMetrics,
    /// notification-controller's events address, when Flux's alerts get the runs too.
    flux_events: Option<EventsAddress>,
}

impl NotifierReconciler {
    pub fn new(
        client: Client,
        since: Since,
        instance: String,
        metrics: NotifierMetrics,
        flux_events: Option<EventsAddress>,
    ) -> Self {
        Self {
            client,
            since,
            instance,
            metrics,
            flux_events,
        }
    }

    /// Whether the API server (not the watch cache) shows `run` recorded on the NVJ.
    async fn recorded(&self, nvj: &NotebookValidationJob, run: &str) -> Result<bool, kube::Error> {
        let api: Api<NotebookValidationJob> =
            Api::namespaced(self.client.clone(), &nvj.namespace().unwrap_or_default());
        let fresh = api.get(&nvj.name_any()).await?;
        Ok(fresh
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(NOTIFIED_RUN))
            .is_some_and(|r| r == run))
    }

    /// Creates the run's Event; true when it was created now, false when it existed.
    async fn create_event(
        &self,
        nvj: &NotebookValidationJob,
        n: &Notification,
    ) -> Result<bool, kube::Error> {
        let namespace = nvj.namespace().unwrap_or_default();
        let regarding = ObjectReference {
            api_version: Some(NotebookValidationJob::api_version(&()).to_string()),
            kind: Some(NotebookValidationJob::kind(&()).to_string()),
            namespace: Some(namespace.clone()),
            name: Some(nvj.name_any()),
            uid: nvj.uid(),
            ..Default::default()
        };
        let event = Event {
            metadata: ObjectMeta {
                name: Some(n.event_name.clone()),
                namespace: Some(namespace.clone()),
                labels: Some(BTreeMap::from([(
                    NOTIFICATION_TYPE_LABEL.to_string(),
                    n.notification_type.to_string(),
                )])),
                ..Default::default()
            },
            event_time: Some(MicroTime(Timestamp::now())),
            action: Some("Notify".to_string()),
            reason: Some(n.reason.to_string()),
            note: Some(n.note.clone()),
            type_: Some(if n.succeeded { "Normal" } else { "Warning" }.to_string()),
            regarding: Some(regarding),
            reporting_controller: Some(NAME.to_string()),
            reporting_instance: Some(self.instance.chars().take(128).collect()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl nbg_runtime::Reconciler for NotifierReconciler {
    type Object = NotebookValidationJob;
    type Error = Error;

    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, nvj: Arc<NotebookValidationJob>) -> Result<Action, Error> {
        let Decision::Notify(n) = notify::decide(&nvj, self.since) else {
            return Ok(Action::await_change());
        };
        let created = self.create_event(&nvj, &n).await?;
        // The Event existed: created before a crash, or by a reconcile whose record the watch
        // cache has not shown yet. The API server says which - the run is recorded only after
        // the Flux event was posted, so a recorded run needs nothing more.
        if !created && self.recorded(&nvj, &n.run).await? {
            return Ok(Action::await_change());
        }
        // Before the run is recorded: a failed post is retried with the reconcile.
        if let Some(address) = &self.flux_events
            && let Some(event) = flux_event::event(&nvj, &n, &self.instance, Timestamp::now())
        {
            address.post(&event).await?;
        }
        let record = BTreeMap::from([(NOTIFIED_RUN.to_string(), n.run.clone())]);
        nbg_runtime::status::apply_annotations(&self.client, nvj.as_ref(), NAME, &record).await?;
        if created {
            self.metrics.count(&NotificationLabels {
                r#type: n.notification_type.to_string(),
            });
            if let Some(t) = nvj.status.as_ref().and_then(|s| s.completion_time.as_ref()) {
                self.metrics.observe_since_completion(
                    std::time::Duration::try_from(Timestamp::now().duration_since(t.0))
                        .unwrap_or_default(),
                );
            }
            let object = format!("{}/{}", nvj.namespace().unwrap_or_default(), nvj.name_any());
            if n.succeeded {
                tracing::info!(object, run = %n.run, reason = n.reason, "{}", n.note);
            } else {
                tracing::warn!(object, run = %n.run, reason = n.reason, "{}", n.note);
            }
        }
        Ok(Action::await_change())
    }
}
