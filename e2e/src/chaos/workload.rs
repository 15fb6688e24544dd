//! What the chaos run asks of the controllers: NVJs in several namespaces and Applications,
//! running real notebooks (some pass, some fail), with triggers, sync waves and block-waves,
//! spec changes mid-run, and hostile objects beside them.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::harness::real_node::project_image;

/// A small seeded generator (xorshift): a run is replayed by its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// A number in `0..bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0.checked_rem(bound).unwrap_or(0)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Where the notebooks come from, and which of them pass.
pub const PASSING: &str = "pass.ipynb";
pub const FAILING: &str = "fail.ipynb";
/// A passing notebook that takes a few seconds: spec changes land while it runs.
pub const SLOW: &str = "slow.ipynb";

/// The Application that manages namespace `ns`'s NVJs (played: the run writes its status).
pub fn application_for(ns: &str) -> String {
    format!("app-{ns}")
}

/// One NVJ the workload creates: what it is and what it should come to.
#[derive(Debug, Clone)]
pub struct Planned {
    pub namespace: String,
    pub name: String,
    pub notebook: &'static str,
    /// Its restart target, a Deployment of its own (`model-<name>`), if it has a trigger.
    pub restart: Option<String>,
    pub wave: i64,
    pub block_wave: Option<i64>,
    /// Its spec is changed while its first run runs (a new generation, a new run).
    pub changed_mid_run: bool,
}

/// An NVJ the run deleted once it had ended, with what it had come to then: the checks at the
/// end still hold its target (kept) and its Events (kept by the API server) to it.
#[derive(Debug, Clone)]
pub struct Deleted {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Its last run (`<uid>/<generation>`), the one its target's marker must name.
    pub run: String,
    /// How that run ended.
    pub phase: nbg_core::nvj::Phase,
    /// Its trigger records for that run: how many, and how many `Succeeded`.
    pub records: usize,
    pub succeeded_records: usize,
}

impl Planned {
    /// A random NVJ number `i` in `ns`. NVJs whose spec changes mid-run have no trigger: which
    /// of their generations ran to the end is a race the checks need not decide.
    pub fn random(rng: &mut Rng, ns: &str, i: usize) -> Self {
        let notebook = match rng.below(10) {
            0..=2 => FAILING,
            3..=4 => SLOW,
            _ => PASSING,
        };
        let changed_mid_run = notebook == SLOW && rng.chance(60);
        let restart = (!changed_mid_run && rng.chance(60)).then(|| format!("model-run-{i}"));
        Self {
            namespace: ns.to_string(),
            name: format!("run-{i}"),
            notebook,
            restart,
            wave: rng.below(4) as i64,
            block_wave: rng.chance(30).then(|| 4 + rng.below(3) as i64),
            changed_mid_run,
        }
    }

    pub fn manifest(&self, notebooks_url: &str) -> Value {
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "argocd.argoproj.io/tracking-id".to_string(),
            format!(
                "{}:mlops.mlops.dev/NotebookValidationJob:{}/{}",
                application_for(&self.namespace),
                self.namespace,
                self.name
            ),
        );
        annotations.insert(
            "argocd.argoproj.io/sync-wave".to_string(),
            self.wave.to_string(),
        );
        if let Some(b) = self.block_wave {
            annotations.insert("mlops.dev/block-wave".to_string(), b.to_string());
        }
        if let Some(target) = &self.restart {
            annotations.insert(
                "mlops.dev/on-success-trigger".to_string(),
                format!(
                    "- {{apiVersion: apps/v1, kind: Deployment, name: {target}, action: restart}}\n"
                ),
            );
        }
        nvj(&self.name, annotations, notebooks_url, self.notebook)
    }
}

/// An NVJ manifest running `notebook` of the notebooks repository.
pub fn nvj(
    name: &str,
    annotations: BTreeMap<String, String>,
    notebooks_url: &str,
    notebook: &str,
) -> Value {
    json!({"apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"notebook": {"git": {"url": notebooks_url, "ref": "main"}, "path": notebook},
                 "podConfig": {"containerImage": project_image("notebook-runner"), "imagePullPolicy": "Never"},
                 "timeout": "3m"}})
}

/// A Deployment without replicas: a restart rolls out as soon as the deployment controller
/// observes it, so the checks are about the controllers, not pods.
pub fn target(name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "server", "image": "registry.example/model:1"}]}}}})
}

/// What a hostile object must come to.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// The API server refuses it; its message names this.
    Refused(&'static str),
    /// The NVJ's condition `type` is False with a message naming `names`, and a Warning Event
    /// with `reason` is on it; nothing acts on it.
    Reported {
        condition: &'static str,
        reason: &'static str,
        names: &'static str,
    },
    /// Its run succeeds, and its trigger is recorded `Denied` with a message naming `names`,
    /// with a `TriggerDenied` Warning Event; nothing acts on it.
    Denied { names: &'static str },
    /// It runs like any other (a long name).
    Runs,
}

/// A Deployment a hostile object names in a trigger: created before it, never to be restarted.
#[derive(Debug, Clone)]
pub struct Untouched {
    pub namespace: String,
    pub manifest: Value,
}

impl Untouched {
    fn new(namespace: &str, manifest: Value) -> Self {
        Self {
            namespace: namespace.to_string(),
            manifest,
        }
    }

    pub fn name(&self) -> &str {
        self.manifest["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
    }
}

/// A hostile object: a manifest and what must come of it.
pub struct Hostile {
    pub name: String,
    pub manifest: Value,
    pub expect: Expect,
    /// A Deployment it names in a trigger, which must never be restarted.
    pub untouched: Option<Untouched>,
}

/// Malformed annotations of every kind the controllers parse, 250 KiB of annotations, invalid
/// specs and names at the length limits, for namespace `ns`; `other` is another watched
/// namespace, whose Deployment gives a consent that does not parse as one.
pub fn hostile(notebooks_url: &str, ns: &str, other: &str) -> Vec<Hostile> {
    let victim = Untouched::new(ns, target("victim"));
    let tracking = |name: &str| {
        (
            "argocd.argoproj.io/tracking-id".to_string(),
            format!(
                "{}:mlops.mlops.dev/NotebookValidationJob:{ns}/{name}",
                application_for(ns)
            ),
        )
    };
    let with = |name: &str, pairs: &[(&str, String)]| {
        let mut a: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let (k, v) = tracking(name);
        a.insert(k, v);
        nvj(name, a, notebooks_url, PASSING)
    };
    let garbage: String = "{[: not yaml ".repeat(250 * 1024 / 13);
    // A name of 253 characters: the longest an object name may be.
    let long_name: String = format!("long-{}", "n".repeat(248));
    // A consent written with semicolons: it names no namespace, so it consents to nothing.
    let mut consenting = target("victim-elsewhere");
    consenting["metadata"]["annotations"] =
        json!({"mlops.dev/allow-triggers-from": format!("{ns};{other}")});
    let mut invalid_spec = nvj("bad-spec", BTreeMap::new(), notebooks_url, PASSING);
    invalid_spec["spec"]["timeout"] = json!("forever");
    vec![
        Hostile {
            name: "bad-trigger-yaml".into(),
            manifest: with(
                "bad-trigger-yaml",
                &[(
                    "mlops.dev/on-success-trigger",
                    "- {apiVersion: apps/v1, kind: Deployment, name: [victim".into(),
                )],
            ),
            expect: Expect::Reported {
                condition: "TriggersValid",
                reason: "TriggerDenied",
                names: "on-success-trigger",
            },
            untouched: Some(victim.clone()),
        },
        Hostile {
            name: "bad-trigger-action".into(),
            manifest: with(
                "bad-trigger-action",
                &[(
                    "mlops.dev/on-success-trigger",
                    "- {apiVersion: apps/v1, kind: Deployment, name: victim, action: explode}\n"
                        .into(),
                )],
            ),
            expect: Expect::Reported {
                condition: "TriggersValid",
                reason: "TriggerDenied",
                names: "explode",
            },
            untouched: Some(victim.clone()),
        },
        Hostile {
            name: "huge-trigger".into(),
            manifest: with("huge-trigger", &[("mlops.dev/on-success-trigger", garbage)]),
            expect: Expect::Reported {
                condition: "TriggersValid",
                reason: "TriggerDenied",
                names: "larger than the 65536 bytes allowed",
            },
            untouched: None,
        },
        Hostile {
            name: "bad-sync-wave".into(),
            manifest: with(
                "bad-sync-wave",
                &[("argocd.argoproj.io/sync-wave", "three".into())],
            ),
            expect: Expect::Reported {
                condition: "WavesValid",
                reason: "InvalidSyncWave",
                names: "three",
            },
            untouched: None,
        },
        Hostile {
            name: "bad-block-wave".into(),
            manifest: with("bad-block-wave", &[("mlops.dev/block-wave", "4.5".into())]),
            expect: Expect::Reported {
                condition: "WavesValid",
                reason: "InvalidBlockWave",
                names: "4.5",
            },
            untouched: None,
        },
        Hostile {
            name: "bad-consent".into(),
            manifest: with(
                "bad-consent",
                &[(
                    "mlops.dev/on-success-trigger",
                    format!(
                        "- {{apiVersion: apps/v1, kind: Deployment, name: victim-elsewhere, namespace: {other}, action: restart}}\n"
                    ),
                )],
            ),
            expect: Expect::Denied {
                names: "does not consent to triggers from namespace",
            },
            untouched: Some(Untouched::new(other, consenting)),
        },
        Hostile {
            name: long_name.clone(),
            manifest: with(&long_name, &[]),
            expect: Expect::Runs,
            untouched: None,
        },
        Hostile {
            name: "bad-spec".into(),
            manifest: invalid_spec,
            expect: Expect::Refused("timeout"),
            untouched: None,
        },
    ]
}
