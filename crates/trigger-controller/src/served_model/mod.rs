//! Checking the served model once a restart has rolled out (`spec.modelValidation`): the request
//! to the new predictor and the verdict on its answer (pure; [`crate::reconcile`] sends it).
//!
//! The route is the API server's service proxy to the predictor's Service
//! (`/api/v1/namespaces/<ns>/services/<service>:<port>/proxy/...`): it reaches the predictor
//! from wherever trigger-controller runs, with the controller's own credentials, and needs one
//! right where targets live - `services/proxy` (create, get) - rather than a network path from
//! the controller's namespace to every serving namespace. Once the rollout is complete the
//! Service's endpoints are the new pods only.

pub mod compare;
pub mod protocol;

use nbg_core::model_validation::{ModelChecks, PredictionValidationResult};
use nbg_core::nvj::ServedModelCheck;
use serde_json::Value;

use protocol::Protocol;

/// The longest excerpt of an answer kept in a record.
const EXCERPT: usize = 300;

/// One request to the new predictor, through the API server's service proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRequest {
    pub namespace: String,
    /// `<service>:<port>`.
    pub service: String,
    /// The path on the model server: `/v1/models/fraud:predict`.
    pub path: String,
    /// POSTed when present; a GET otherwise (the ready check).
    pub body: Option<Value>,
    pub protocol: Protocol,
}

impl ModelRequest {
    /// The request's path on the API server.
    pub fn proxy_path(&self) -> String {
        format!(
            "/api/v1/namespaces/{}/services/{}/proxy{}",
            self.namespace, self.service, self.path
        )
    }

    /// `POST /v1/models/fraud:predict on Service ml/fraud-predictor:80`.
    pub fn describe(&self) -> String {
        format!(
            "{} {} on Service {}/{}",
            if self.body.is_some() { "POST" } else { "GET" },
            self.path,
            self.namespace,
            self.service
        )
    }
}

/// How the predictor answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Http {
        status: u16,
        body: String,
    },
    /// No HTTP answer at all (the API server unreachable, the request timed out).
    Unreachable(String),
}

/// What an answer means.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// It answered as expected.
    Healthy {
        check: ServedModelCheck,
        said: String,
    },
    /// It answered, wrongly: final.
    Wrong {
        check: ServedModelCheck,
        said: String,
    },
    /// No usable answer yet: asked again until the timeout.
    NoAnswer(String),
    /// The API server refused this controller the route (RBAC).
    Forbidden(String),
}

/// The request that checks InferenceService `namespace/name` (its `spec` and `status` as read).
pub fn request(
    checks: &ModelChecks,
    namespace: &str,
    name: &str,
    spec: Option<&Value>,
    status: Option<&Value>,
) -> Result<ModelRequest, String> {
    let protocol = protocol::declared(spec)?;
    let (path, body) = match &checks.prediction {
        Some(p) => (
            protocol::predict_path(protocol, name),
            Some(protocol::predict_body(protocol, &p.test_data)?),
        ),
        None => (protocol::ready_path(protocol, name), None),
    };
    Ok(ModelRequest {
        namespace: namespace.to_string(),
        service: predictor_service(name, status),
        path,
        body,
        protocol,
    })
}

/// The predictor's Service and port: from the address KServe publishes for the predictor
/// (`status.components.predictor.address.url`, `http://<service>.<ns>.svc...[:port]`), else
/// KServe's name for it in Standard mode, `<name>-predictor`, on port 80.
fn predictor_service(name: &str, status: Option<&Value>) -> String {
    let url = status
        .and_then(|s| s.pointer("/components/predictor/address/url"))
        .and_then(Value::as_str);
    let from_url = url.and_then(|u| {
        let rest = u.split_once("://").map_or(u, |(_, r)| r);
        let authority = rest.split('/').next()?;
        let (host, port) = authority.split_once(':').unwrap_or((authority, "80"));
        let service = host.split('.').next().filter(|s| !s.is_empty())?;
        port.parse::<u16>().ok()?;
        Some(format!("{service}:{port}"))
    });
    from_url.unwrap_or_else(|| format!("{name}-predictor:80"))
}

/// Bounded text of an answer or value.
fn excerpt(s: &str) -> String {
    let mut e: String = s.chars().take(EXCERPT).collect();
    if e.len() < s.len() {
        e.push_str("...");
    }
    e
}

/// Whether a 403 is the API server refusing the route (a `Status` object), not the model server.
fn refused_by_api_server(body: &str) -> Option<String> {
    let status: Value = serde_json::from_str(body).ok()?;
    (status.get("kind").and_then(Value::as_str) == Some("Status")).then(|| {
        status
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("forbidden")
            .to_string()
    })
}

/// The verdict on `answer` to `request`.
pub fn judge(checks: &ModelChecks, request: &ModelRequest, answer: &Answer) -> Verdict {
    let (status, body) = match answer {
        Answer::Unreachable(why) => return Verdict::NoAnswer(why.clone()),
        Answer::Http { status, body } => (*status, body.as_str()),
    };
    let http = || {
        format!(
            "HTTP {status} to {}: {}",
            request.describe(),
            excerpt(body.trim())
        )
    };
    match status {
        403 => {
            if let Some(message) = refused_by_api_server(body) {
                return Verdict::Forbidden(format!(
                    "the API server refused this controller the route to the predictor ({message}): it needs services/proxy (create, get) in namespace {} - the chart grants it with checkServedModels: true",
                    request.namespace
                ));
            }
        }
        200 => {}
        // Not up yet: no endpoints (503 from the proxy), a gateway between, a model not loaded.
        404 | 429 | 502..=504 => return Verdict::NoAnswer(http()),
        _ => {}
    }
    let wrong = |said: String, prediction| Verdict::Wrong {
        check: ServedModelCheck {
            available: true,
            healthy: false,
            prediction,
        },
        said,
    };
    if status != 200 {
        return wrong(format!("the new model answered {}", http()), None);
    }
    let answer: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(_) => {
            return wrong(
                format!("the new model answered without JSON: {}", http()),
                None,
            );
        }
    };
    let Some(p) = &checks.prediction else {
        if protocol::says_ready(request.protocol, &answer) {
            return Verdict::Healthy {
                check: ServedModelCheck {
                    available: true,
                    healthy: true,
                    prediction: None,
                },
                said: "the new model reports itself ready".into(),
            };
        }
        return Verdict::NoAnswer(format!("the model is not ready yet: {}", http()));
    };
    let expected = p.expected.to_string();
    let actual = match protocol::predictions(request.protocol, &answer) {
        Ok(a) => a,
        Err(why) => return wrong(format!("{why}: {}", http()), None),
    };
    let c = compare::compare(request.protocol, &p.expected, &actual, p.tolerance);
    let actual = excerpt(&actual.to_string());
    let result = PredictionValidationResult {
        success: c.matches,
        actual_output: Some(actual.clone()),
        expected_output: Some(excerpt(&expected)),
        difference: Some(c.difference.clone()),
        message: None,
    };
    if c.matches {
        let said = format!(
            "the new model answered as expected: predicted {actual}, expected {} (tolerance {})",
            excerpt(&expected),
            p.tolerance
        );
        return Verdict::Healthy {
            check: ServedModelCheck {
                available: true,
                healthy: true,
                prediction: Some(PredictionValidationResult {
                    message: Some(said.clone()),
                    ..result
                }),
            },
            said,
        };
    }
    let said = format!(
        "the new model answers wrongly: predicted {actual}, expected {}: {}",
        excerpt(&expected),
        c.difference
    );
    wrong(
        said.clone(),
        Some(PredictionValidationResult {
            message: Some(said),
            ..result
        }),
    )
}

#[cfg(test)]
mod tests;
