//! Prometheus metrics shared by all controllers: reconcile count, errors by reason, duration.
//! Controllers register their own metrics in the same [`Registry`].

use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The registry every metric of one process lives in.
pub type SharedRegistry = Arc<RwLock<Registry>>;

pub fn new_registry() -> SharedRegistry {
    Arc::new(RwLock::new(Registry::with_prefix("nbg")))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: String,
    /// The error enum's variant name.
    pub error: String,
}

/// What a controller did for ended runs, counted by its label set `L` (result, kind, ...), and
/// how long after each run's completion it was done: the two metrics every controller that acts
/// on results has.
#[derive(Clone)]
pub struct OutcomeMetrics<L: Clone + std::hash::Hash + Eq> {
    outcomes: Family<L, Counter>,
    since_completion: Histogram,
}

impl<L> OutcomeMetrics<L>
where
    L: Clone + std::hash::Hash + Eq + std::fmt::Debug + EncodeLabelSet + Send + Sync + 'static,
{
    /// Registers `<outcomes.0>_total` and `<since_completion.0>` (10 ms to about 45 min) with
    /// their help texts.
    pub fn register(
        registry: &SharedRegistry,
        outcomes: (&str, &str),
        since_completion: (&str, &str),
    ) -> Self {
        let this = Self {
            outcomes: Family::default(),
            since_completion: Histogram::new(exponential_buckets(0.01, 2.0, 18)),
        };
        if let Ok(mut r) = registry.write() {
            r.register(outcomes.0, outcomes.1, this.outcomes.clone());
            r.register(
                since_completion.0,
                since_completion.1,
                this.since_completion.clone(),
            );
        }
        this
    }

    /// Counts one outcome.
    pub fn count(&self, labels: &L) {
        self.outcomes.get_or_create(labels).inc();
    }

    /// Observes the time from a run's completion to now.
    pub fn observe_since_completion(&self, took: Duration) {
        self.since_completion.observe(took.as_secs_f64());
    }
}

/// Reconcile metrics, labelled by controller.
#[derive(Clone)]
pub struct ReconcileMetrics {
    reconciles: Family<ControllerLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<ControllerLabels, Histogram>,
}

impl ReconcileMetrics {
    pub fn register(registry: &SharedRegistry) -> Self {
        let this = Self {
            reconciles: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
        };
        if let Ok(mut r) = registry.write() {
            r.register("reconciles", "Reconciliations run", this.reconciles.clone());
            r.register(
                "reconcile_errors",
                "Reconciliations that failed, by error",
                this.errors.clone(),
            );
            r.register(
                "reconcile_duration_seconds",
                "Time spent in one reconciliation",
                this.duration.clone(),
            );
        }
        this
    }

    pub fn observe(&self, controller: &str, took: Duration, error: Option<&str>) {
        let labels = ControllerLabels {
            controller: controller.to_string(),
        };
        self.reconciles.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if let Some(error) = error {
            self.errors
                .get_or_create(&ErrorLabels {
                    controller: controller.to_string(),
                    error: error.to_string(),
                })
                .inc();
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub controller: String,
    pub version: String,
}

/// Per-process metrics present from the start: build information and leadership.
#[derive(Clone)]
pub struct ProcessMetrics {
    leader: Family<ControllerLabels, Gauge>,
    controller: String,
}

impl ProcessMetrics {
    pub fn register(registry: &SharedRegistry, controller: &str, version: &str) -> Self {
        let info: Family<BuildLabels, Gauge> = Family::default();
        info.get_or_create(&BuildLabels {
            controller: controller.to_string(),
            version: version.to_string(),
        })
        .set(1);
        let leader: Family<ControllerLabels, Gauge> = Family::default();
        leader
            .get_or_create(&ControllerLabels {
                controller: controller.to_string(),
            })
            .set(0);
        if let Ok(mut r) = registry.write() {
            r.register("build_info", "Build information; always 1", info);
            r.register(
                "leader",
                "1 while this replica holds the lease (or runs without leader election)",
                leader.clone(),
            );
        }
        Self {
            leader,
            controller: controller.to_string(),
        }
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader
            .get_or_create(&ControllerLabels {
                controller: self.controller.clone(),
            })
            .set(i64::from(leader));
    }
}

/// The registry in Prometheus text format.
pub fn encode(registry: &SharedRegistry) -> String {
    let mut out = String::new();
    if let Ok(r) = registry.read() {
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_metrics_are_exported() {
        let registry = new_registry();
        let m = ReconcileMetrics::register(&registry);
        m.observe("trigger", Duration::from_millis(3), None);
        m.observe("trigger", Duration::from_millis(3), Some("Kube"));
        let text = encode(&registry);
        assert!(
            text.contains("nbg_reconciles_total{controller=\"trigger\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("nbg_reconcile_errors_total{controller=\"trigger\",error=\"Kube\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("nbg_reconcile_duration_seconds_count{controller=\"trigger\"} 2"),
            "{text}"
        );
    }
}
