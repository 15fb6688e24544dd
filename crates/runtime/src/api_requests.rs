//! Counts every request a controller makes to the API server, by verb, so the cost of each
//! action can be read from `/metrics` (`nbg_api_requests_total{verb}`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tower::util::MapRequestLayer;

use crate::metrics::SharedRegistry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `read` (get or list), `watch`, `create`, `patch`, `update`, `delete`.
    pub verb: String,
}

/// The verb of a request as the API server's audit log would name it (get and list together).
pub fn verb(method: &::http::Method, query: Option<&str>) -> &'static str {
    match *method {
        ::http::Method::GET => {
            let watch =
                query.is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
            if watch { "watch" } else { "read" }
        }
        ::http::Method::POST => "create",
        ::http::Method::PATCH => "patch",
        ::http::Method::PUT => "update",
        ::http::Method::DELETE => "delete",
        _ => "other",
    }
}

#[derive(Clone, Default)]
pub struct ApiRequestMetrics {
    requests: Family<RequestLabels, Counter>,
}

impl ApiRequestMetrics {
    pub fn register(registry: &SharedRegistry) -> Self {
        let this = Self::default();
        if let Ok(mut r) = registry.write() {
            r.register(
                "api_requests",
                "Requests sent to the Kubernetes API server, by verb",
                this.requests.clone(),
            );
        }
        this
    }

    /// A tower layer for kube's client stack that counts each request.
    pub fn layer<B>(
        &self,
    ) -> MapRequestLayer<impl Fn(::http::Request<B>) -> ::http::Request<B> + Clone + use<B>> {
        let requests = self.requests.clone();
        MapRequestLayer::new(move |request: ::http::Request<B>| {
            let verb = verb(request.method(), request.uri().query());
            requests
                .get_or_create(&RequestLabels { verb: verb.into() })
                .inc();
            request
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_follow_the_api_server() {
        assert_eq!(verb(&::http::Method::GET, None), "read");
        assert_eq!(
            verb(&::http::Method::GET, Some("labelSelector=a&watch=true")),
            "watch"
        );
        assert_eq!(verb(&::http::Method::GET, Some("watchy=true")), "read");
        assert_eq!(
            verb(&::http::Method::PATCH, Some("fieldManager=x")),
            "patch"
        );
        assert_eq!(verb(&::http::Method::POST, None), "create");
    }
}
