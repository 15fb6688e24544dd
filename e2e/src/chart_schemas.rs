//! The `values.schema.json` of every chart under `charts/`, generated here so the values all
//! controller charts share (image, replicas, scope, probes' port, pod placement...) are
//! described once. Helm checks values against them at `helm install`/`upgrade`/`template`/
//! `lint`: a misspelt key, a negative replica count or a bad namespace name fails with a message
//! naming the value. `tests/chart_schemas.rs` fails when a committed schema is stale;
//! `hack/just generate` rewrites them.

use serde_json::{Map, Value, json};

/// The controller charts, each named after its binary.
pub const CONTROLLERS: [&str; 5] = [
    "nvj-validator",
    "trigger-controller",
    "wave-marker",
    "app-status-aggregator",
    "event-notifier",
];

/// Every chart with a schema, and its schema. `target_kinds` is the trigger-controller chart's
/// `target-kinds.json`, whose kinds are the values `allowedKinds` accepts.
pub fn schemas(target_kinds: &Value) -> Vec<(String, Value)> {
    let mut all: Vec<(String, Value)> = CONTROLLERS
        .iter()
        .map(|c| (c.to_string(), controller(c, target_kinds)))
        .collect();
    all.push(("notebook-gitops".into(), umbrella()));
    all.push((
        "notebook-gitops-crds".into(),
        no_values("notebook-gitops-crds"),
    ));
    all.push((
        "notebook-gitops-lib".into(),
        no_values("notebook-gitops-lib"),
    ));
    all
}

/// The file's text: pretty JSON and a final newline.
pub fn render(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

const DNS_LABEL: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
const DNS_SUBDOMAIN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A Go duration as the controllers parse it (`30s`, `10m`, `1h30m`, `250ms`).
const GO_DURATION: &str = "^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

fn object(description: &str, properties: Value) -> Value {
    json!({
        "type": "object",
        "description": description,
        "additionalProperties": false,
        "properties": properties,
    })
}

fn boolean(description: &str) -> Value {
    json!({"type": "boolean", "description": description})
}

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn duration(description: &str) -> Value {
    json!({"type": "string", "description": description, "pattern": GO_DURATION})
}

fn namespace(description: &str) -> Value {
    json!({"type": "string", "description": description, "pattern": DNS_LABEL, "maxLength": 63})
}

fn namespaces(description: &str) -> Value {
    json!({
        "type": "array",
        "description": description,
        "uniqueItems": true,
        "items": {"type": "string", "pattern": DNS_LABEL, "maxLength": 63},
    })
}

fn string_map(description: &str) -> Value {
    json!({"type": "object", "description": description, "additionalProperties": {"type": "string"}})
}

fn any_object(description: &str) -> Value {
    json!({"type": "object", "description": description})
}

fn objects(description: &str) -> Value {
    json!({"type": "array", "description": description, "items": {"type": "object"}})
}

fn max_concurrent_reconciles() -> Value {
    json!({
        "type": "integer",
        "description": "Reconciles at once.",
        "minimum": 1,
        "maximum": 65535,
    })
}

/// What Helm passes a chart besides its own values: `global`, `enabled` from the umbrella's
/// condition, and its library chart's (empty) values under the library's name.
fn passed_by_helm() -> Map<String, Value> {
    let mut p = Map::new();
    p.insert(
        "global".into(),
        json!({
            "type": "object",
            "description": "Values shared by every chart of the umbrella.",
            "properties": {
                "imageRegistry": {"type": "string"},
                "imagePullSecrets": {"type": "array", "items": {"type": "object", "required": ["name"]}},
                "argocd": {
                    "type": "object",
                    "description": "Argo CD, for every controller that reads its objects.",
                    "additionalProperties": false,
                    "properties": {
                        "enabled": boolean("The Argo CD integration (false: no Argo CD on the cluster)."),
                        "namespace": namespace("Argo CD's namespace: argocd-cm is read there."),
                        "applicationNamespaces": {
                            "type": "array",
                            "uniqueItems": true,
                            "description": "Namespaces where Argo CD keeps Applications; [\"*\"]: every namespace.",
                            "items": {"type": "string", "pattern": "^(\\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$", "maxLength": 63},
                        },
                        "trackingMethod": {"enum": ["", "annotation", "label", "annotation+label"], "description": "Empty: argocd-cm's application.resourceTrackingMethod."},
                        "trackingLabel": {"type": "string", "description": "Empty: argocd-cm's application.instanceLabelKey."},
                        "installationID": {"type": ["string", "null"], "description": "null: argocd-cm's installationID."},
                    },
                },
                "flux": {
                    "type": "object",
                    "description": "Flux, for every controller that reads its objects.",
                    "additionalProperties": false,
                    "properties": {
                        "enabled": boolean("The Flux integration (reconcile triggers on Flux's objects, the aggregate on Kustomizations)."),
                        "namespaces": {
                            "type": "array",
                            "uniqueItems": true,
                            "minItems": 1,
                            "description": "Namespaces where Flux keeps its objects; [\"*\"]: every namespace.",
                            "items": {"type": "string", "pattern": "^(\\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$", "maxLength": 63},
                        },
                    },
                },
            },
        }),
    );
    p.insert(
        "enabled".into(),
        boolean("Installs this chart as part of the umbrella chart."),
    );
    p.insert(
        "notebook-gitops-lib".into(),
        json!({"type": "object", "description": "The library chart's values (it has none)."}),
    );
    p
}

/// The values every controller chart has (the library chart renders them).
fn common(chart: &str) -> Map<String, Value> {
    let mut p = passed_by_helm();
    let props = json!({
        "image": object("The controller's image.", json!({
            "repository": {"type": "string", "minLength": 1},
            "tag": {"type": "string", "description": "Defaults to the chart's appVersion."},
            "digest": {"type": "string", "pattern": "^(sha256:[a-f0-9]{64})?$"},
            "registry": {"type": "string"},
            "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
        })),
        "imagePullSecrets": {"type": "array", "items": {"type": "object", "required": ["name"]}},
        "replicas": {"type": "integer", "minimum": 0, "description": "Replicas; beyond the first they stand by (leader election)."},
        "leaderElection": boolean("Only the holder of the Lease acts; required when replicas > 1."),
        "leaseDuration": duration("How long the Lease holds without renewal."),
        "watchNamespaces": namespaces("Namespaces to act in (a Role in each); empty: all, with a ClusterRole."),
        "namespaceSelector": string(&format!("Only act in namespaces whose labels match, e.g. mlops.dev/{chart}=enabled.")),
        "logFormat": {"enum": ["json", "text"]},
        "logFilter": {"type": "string", "minLength": 1},
        "metrics": object("The /metrics, /healthz and /readyz server.", json!({
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "service": object("A Service for the metrics port.", json!({"enabled": {"type": "boolean"}})),
            "serviceMonitor": object("A Prometheus Operator ServiceMonitor.", json!({
                "enabled": {"type": "boolean"},
                "interval": duration("Scrape interval."),
                "labels": string_map("Extra labels, e.g. the one your Prometheus selects by."),
            })),
        })),
        "podDisruptionBudget": object("A PodDisruptionBudget.", json!({
            "enabled": {"type": "boolean"},
            "maxUnavailable": {"anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^[0-9]+%$"},
            ]},
        })),
        "serviceAccount": object("The controller's ServiceAccount.", json!({
            "create": {"type": "boolean"},
            "name": {"type": "string", "pattern": format!("^$|{DNS_SUBDOMAIN}"), "maxLength": 253},
            "annotations": string_map("Annotations on the ServiceAccount."),
        })),
        "fullnameOverride": {"type": "string", "maxLength": 63},
        "podAnnotations": string_map("Annotations on the pods."),
        "podLabels": string_map("Extra labels on the pods."),
        "priorityClassName": {"type": "string"},
        "nodeSelector": string_map("Node labels the pods must run on."),
        "tolerations": objects("Pod tolerations."),
        "affinity": any_object("Pod affinity."),
        "topologySpreadConstraints": objects("Pod topology spread constraints."),
        "podSecurityContext": any_object("The pods' securityContext."),
        "securityContext": any_object("The container's securityContext."),
        "resources": any_object("The container's resource requests and limits."),
        "extraArgs": {"type": "array", "items": {"type": "string"}, "description": "More command-line flags."},
        "extraEnv": {"type": "array", "items": {"type": "object", "required": ["name"]}, "description": "More environment entries."},
    });
    if let Value::Object(props) = props {
        p.extend(props);
    }
    p
}

/// The values only one controller chart has.
fn own(chart: &str, target_kinds: &Value) -> Value {
    match chart {
        "nvj-validator" => json!({
            "maxRetries": {"type": "integer", "minimum": 0},
            "retryBackoff": duration("Wait before a retry."),
            "notebookPython": {"type": "string", "minLength": 1},
            "runnerImage": string("Image of the init container that copies the runner; defaults to image."),
            "runnerPath": {"type": "string", "pattern": "^/"},
        }),
        "trigger-controller" => {
            let kinds: Vec<String> = target_kinds["kinds"]
                .as_array()
                .map(|kinds| {
                    kinds
                        .iter()
                        .map(|k| {
                            format!(
                                "{}/{}",
                                k["group"].as_str().unwrap_or_default(),
                                k["kind"].as_str().unwrap_or_default()
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "targetNamespaces": namespaces("Namespaces only targeted from watchNamespaces."),
                "disableCrossNamespace": boolean("Only act on targets in the NVJ's own namespace."),
                "allowedKinds": {
                    "type": "array",
                    "uniqueItems": true,
                    "description": "Kinds that may be targeted; empty: all.",
                    "items": {"enum": kinds},
                },
                "allowEviction": boolean("Allow `strategy: evict` restarts (pods list and eviction rights)."),
                "checkServedModels": boolean("Check a restarted model's new predictor (spec.modelValidation) through the API server's service proxy (services/proxy rights)."),
                "maxConcurrentReconciles": max_concurrent_reconciles(),
                "rolloutDeadline": duration("A restart rolling out longer is recorded InProgress."),
            })
        }
        "wave-marker" => json!({
            "maxConcurrentReconciles": max_concurrent_reconciles(),
            "waiters": {
                "type": "array",
                "description": "ServiceAccounts that may run `wave-marker wait` (read NVJs only).",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["name", "namespace"],
                    "properties": {
                        "name": {"type": "string", "pattern": DNS_SUBDOMAIN, "maxLength": 253},
                        "namespace": namespace("The ServiceAccount's namespace."),
                        "readNamespaces": namespaces("Where it may read NVJs; defaults to its namespace."),
                    },
                },
            },
        }),
        "app-status-aggregator" => json!({
            "coalesce": duration("Changes within this window are written together."),
            "maxConcurrentReconciles": max_concurrent_reconciles(),
        }),
        "event-notifier" => json!({
            "notifyEarlierRuns": boolean("Also emit Events for runs that ended before the first install."),
            "fluxEventsAddr": {"type": "string", "pattern": "^(http://[^/\\s]+(/.*)?)?$", "description": "Flux's notification-controller events address (http://...); empty: not posted."},
            "maxConcurrentReconciles": max_concurrent_reconciles(),
            "prometheusRule": object("A PrometheusRule with alerts.", json!({
                "enabled": {"type": "boolean"},
                "labels": string_map("Extra labels on the PrometheusRule."),
                "controllers": {"type": "array", "uniqueItems": true, "items": {"enum": CONTROLLERS}},
                "reconcileErrorRatio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            })),
        }),
        _ => json!({}),
    }
}

fn controller(chart: &str, target_kinds: &Value) -> Value {
    let mut properties = common(chart);
    if let Value::Object(own) = own(chart, target_kinds) {
        properties.extend(own);
    }
    json!({
        "$schema": "https://json-schema.org/draft-07/schema#",
        "title": format!("{chart} chart values"),
        "type": "object",
        "additionalProperties": false,
        "properties": properties,
    })
}

/// The umbrella checks its own keys (a misspelt controller name fails); each subchart's schema
/// checks that subchart's values.
fn umbrella() -> Value {
    let mut properties = Map::new();
    properties.insert("global".into(), passed_by_helm()["global"].clone());
    for chart in CONTROLLERS {
        properties.insert(
            chart.into(),
            json!({
                "type": "object",
                "description": format!("The {chart} subchart's values (charts/{chart}/values.yaml)."),
                "properties": {"enabled": {"type": "boolean"}},
            }),
        );
    }
    properties.insert(
        "notebook-gitops-crds".into(),
        json!({"type": "object", "description": "The CRD subchart (no values of its own)."}),
    );
    json!({
        "$schema": "https://json-schema.org/draft-07/schema#",
        "title": "notebook-gitops chart values",
        "type": "object",
        "additionalProperties": false,
        "properties": properties,
    })
}

fn no_values(chart: &str) -> Value {
    json!({
        "$schema": "https://json-schema.org/draft-07/schema#",
        "title": format!("{chart} chart values (it has none of its own)"),
        "type": "object",
        "additionalProperties": false,
        "properties": passed_by_helm(),
    })
}
