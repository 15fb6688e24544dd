//! Kubernetes Events on our objects, via kube's recorder (events.k8s.io/v1, de-duplicated).

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
pub use kube::runtime::events::EventType;
use kube::runtime::events::{Event, Recorder, Reporter};

/// Publishes Events as one controller.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        Self {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: controller.to_string(),
                    instance,
                },
            ),
        }
    }

    /// A Normal event. Failures to publish are logged, never fatal: an Event is a notice, the
    /// status is the record.
    pub async fn normal(
        &self,
        regarding: &ObjectReference,
        reason: &str,
        action: &str,
        note: impl Into<String>,
    ) {
        self.publish(
            regarding,
            None,
            EventType::Normal,
            reason,
            action,
            note.into(),
        )
        .await;
    }

    /// A Warning event.
    pub async fn warning(
        &self,
        regarding: &ObjectReference,
        reason: &str,
        action: &str,
        note: impl Into<String>,
    ) {
        self.publish(
            regarding,
            None,
            EventType::Warning,
            reason,
            action,
            note.into(),
        )
        .await;
    }

    /// A Warning event that must not be lost: the caller records what it reports only once
    /// it is published, and tries again on an error (the recorder folds a repeat into one
    /// Event's count).
    pub async fn warning_or_error(
        &self,
        regarding: &ObjectReference,
        reason: &str,
        action: &str,
        note: impl Into<String>,
    ) -> Result<(), kube::Error> {
        self.try_publish(
            regarding,
            None,
            EventType::Warning,
            reason,
            action,
            note.into(),
        )
        .await
    }

    /// An Event about `regarding` that concerns a second object, `related` (e.g. the target a
    /// trigger acted on). Events are de-duplicated per regarding, related, reason and action,
    /// so each related object gets its own Event.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        related: Option<&ObjectReference>,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        if let Err(e) = self
            .try_publish(regarding, related, type_, reason, action, note)
            .await
        {
            tracing::warn!(error = %e, reason, object = ?regarding.name, "could not publish event");
        }
    }

    async fn try_publish(
        &self,
        regarding: &ObjectReference,
        related: Option<&ObjectReference>,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        // The API server caps an Event note at 1 KiB.
        let note: String = note.chars().take(1000).collect();
        // Each Event is also a log line: the log keeps what the cluster expires after an hour.
        let object = format!(
            "{}/{}",
            regarding.namespace.as_deref().unwrap_or_default(),
            regarding.name.as_deref().unwrap_or_default()
        );
        let kind = regarding.kind.as_deref().unwrap_or_default();
        let target = related.map(|r| {
            format!(
                "{} {}/{}",
                r.kind.as_deref().unwrap_or_default(),
                r.namespace.as_deref().unwrap_or_default(),
                r.name.as_deref().unwrap_or_default()
            )
        });
        match type_ {
            EventType::Normal => {
                tracing::info!(kind, object, reason, related = target, "{note}")
            }
            EventType::Warning => {
                tracing::warn!(kind, object, reason, related = target, "{note}")
            }
        }
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: related.cloned(),
        };
        self.recorder.publish(&event, regarding).await
    }
}
