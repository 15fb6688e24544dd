//! The run's notification the Flux way: an event in Flux's format (`event.toolkit.fluxcd.io`
//! `Event`) about the Kustomization that applied the NVJ, posted to notification-controller's
//! events address, which hands it to the `Alert`s whose event sources match that Kustomization.
//!
//! kustomize-controller's own event for a failed health check names the NVJ and its status
//! only ("failed early due to stalled resources: [NotebookValidationJob/ml/train status:
//! 'Failed']"): Flux's wait does not carry a resource's message. This event does - the same
//! note as the Kubernetes Event. notification-controller keeps metadata keys under the
//! involved object's group or `event.toolkit.fluxcd.io/`, and drops an event identical to one
//! it forwarded within its rate-limit window (HTTP 429), so a repeat after a crash between
//! posting and recording the run is not delivered twice.

use k8s_openapi::jiff::Timestamp;
use nbg_core::foreign::flux::labelled_kustomization;
use nbg_core::nvj::NotebookValidationJob;
use serde_json::{Value, json};

use crate::notify::Notification;

/// The event for `n` about the Kustomization whose labels the NVJ carries (kustomize-controller
/// writes them on what it applies); `None` for an NVJ Flux did not apply.
pub fn event(
    nvj: &NotebookValidationJob,
    n: &Notification,
    instance: &str,
    now: Timestamp,
) -> Option<Value> {
    let kustomization = labelled_kustomization(&nvj.metadata)?;
    let nvj_name = format!(
        "{}/{}",
        nvj.metadata.namespace.as_deref().unwrap_or_default(),
        nvj.metadata.name.as_deref().unwrap_or_default()
    );
    Some(json!({
        "involvedObject": {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "namespace": kustomization.namespace,
            "name": kustomization.name,
        },
        "severity": if n.succeeded { "info" } else { "error" },
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "message": n.note,
        "reason": n.reason,
        "metadata": {
            "event.toolkit.fluxcd.io/notebookvalidationjob": nvj_name,
            "event.toolkit.fluxcd.io/run": n.run,
        },
        "reportingController": crate::NAME,
        "reportingInstance": instance,
    }))
}

/// Why an event could not be posted.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error(
        "--flux-events-addr {0:?} is not an http:// URL (notification-controller's events address, e.g. http://notification-controller.flux-system.svc.cluster.local./)"
    )]
    Address(String),
    #[error("posting the Flux event to {address}: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("notification-controller at {address} answered {status}: {body}")]
    Refused {
        address: String,
        status: u16,
        body: String,
    },
}

/// Where notification-controller listens: host, port and path of an `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsAddress {
    pub url: String,
    host: String,
    port: u16,
    path: String,
}

impl EventsAddress {
    pub fn parse(url: &str) -> Result<Self, PostError> {
        let bad = || PostError::Address(url.to_string());
        let uri: http::Uri = url.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("http") {
            return Err(bad());
        }
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(bad)?;
        Ok(Self {
            url: url.to_string(),
            host: host.to_string(),
            port: uri.port_u16().unwrap_or(80),
            path: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        })
    }

    /// Posts `event`; a 429 (an identical event forwarded moments ago) counts as delivered.
    pub async fn post(&self, event: &Value) -> Result<(), PostError> {
        use http_body_util::{BodyExt, Full};
        let unreachable = |reason: String| PostError::Unreachable {
            address: self.url.clone(),
            reason,
        };
        let connect = tokio::net::TcpStream::connect((self.host.as_str(), self.port));
        let stream = tokio::time::timeout(std::time::Duration::from_secs(10), connect)
            .await
            .map_err(|_| unreachable("no connection within 10 s".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| unreachable(e.to_string()))?;
        let driver = tokio::spawn(connection);
        let request = http::Request::post(&self.path)
            .header(http::header::HOST, &self.host)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(hyper::body::Bytes::from(event.to_string())))
            .map_err(|e| unreachable(e.to_string()))?;
        let response = tokio::time::timeout(
            std::time::Duration::from_secs(15),
            sender.send_request(request),
        )
        .await
        .map_err(|_| unreachable("no answer within 15 s".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| {
                String::from_utf8_lossy(&b.to_bytes())
                    .chars()
                    .take(300)
                    .collect()
            })
            .unwrap_or_default();
        driver.abort();
        match status {
            200..=299 | 429 => Ok(()),
            _ => Err(PostError::Refused {
                address: self.url.clone(),
                status,
                body,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nvj(labels: serde_json::Value) -> NotebookValidationJob {
        serde_json::from_value(json!({
            "apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob",
            "metadata": {"name": "train", "namespace": "ml", "uid": "u1", "labels": labels},
            "spec": {"notebook": {"git": {"url": "https://x/r.git", "ref": "main"}, "path": "a.ipynb"},
                     "podConfig": {"containerImage": "i"}}
        }))
        .expect("an NVJ")
    }

    fn failed() -> Notification {
        Notification {
            event_name: "train.failed".into(),
            run: "u1/2".into(),
            succeeded: false,
            notification_type: "validation-failure",
            reason: "ValidationFailed",
            note: "NotebookValidationJob ml/train run u1/2 failed: cell 3 raised KeyError: x"
                .into(),
        }
    }

    #[test]
    fn a_run_of_an_nvj_flux_applied_is_an_event_about_its_kustomization() {
        let applied = nvj(json!({"kustomize.toolkit.fluxcd.io/name": "train",
                                 "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}));
        let now: Timestamp = "2026-12-06T12:00:00Z".parse().expect("time");
        let event = event(&applied, &failed(), "event-notifier-0", now).expect("an event");
        assert_eq!(
            event,
            json!({
                "involvedObject": {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                                   "namespace": "flux-system", "name": "train"},
                "severity": "error",
                "timestamp": "2026-12-06T12:00:00Z",
                "message": "NotebookValidationJob ml/train run u1/2 failed: cell 3 raised KeyError: x",
                "reason": "ValidationFailed",
                "metadata": {"event.toolkit.fluxcd.io/notebookvalidationjob": "ml/train",
                             "event.toolkit.fluxcd.io/run": "u1/2"},
                "reportingController": "event-notifier",
                "reportingInstance": "event-notifier-0",
            })
        );
        assert!(super::event(&nvj(json!({})), &failed(), "x", now).is_none());
    }

    #[test]
    fn the_events_address_must_be_plain_http() {
        let a =
            EventsAddress::parse("http://notification-controller.flux-system.svc.cluster.local./")
                .expect("valid");
        assert_eq!((a.port, a.path.as_str()), (80, "/"));
        assert_eq!(
            EventsAddress::parse("http://127.0.0.1:9090")
                .map(|a| (a.port, a.path))
                .ok(),
            Some((9090, "/".to_string()))
        );
        for bad in ["notification-controller", "https://nc/", "http:///x"] {
            let err = EventsAddress::parse(bad).expect_err(bad).to_string();
            assert!(err.contains("is not an http:// URL"), "{err}");
        }
    }
}
