//! A target as read: its JSON, from which patches are planned, and - for the kinds whose status
//! this controller interprets - the typed object, parsed once. An object that does not parse is
//! an error naming it, never a default in its place.

use std::collections::BTreeMap;

use nbg_core::foreign::flux::FluxObject;
use nbg_core::foreign::{Application, InferenceService, Rollout};
use serde_json::Value;

/// The typed reading of a target, by what its kind is.
#[derive(Debug, Clone, PartialEq)]
pub enum Typed {
    Application(Box<Application>),
    InferenceService(Box<InferenceService>),
    Rollout(Box<Rollout>),
    /// A Flux object (`*.toolkit.fluxcd.io`): Kustomization, HelmRelease, GitRepository, ...
    Flux(Box<FluxObject>),
    /// Read as JSON: a built-in workload (the API server validated it) or a kind only refreshed.
    Json,
}

/// How a kind's objects are read into [`Typed`].
pub type ReadFn = fn(&Value) -> Result<Typed, serde_json::Error>;

pub fn read_json(_: &Value) -> Result<Typed, serde_json::Error> {
    Ok(Typed::Json)
}

pub fn read_application(v: &Value) -> Result<Typed, serde_json::Error> {
    Ok(Typed::Application(Box::new(
        serde::Deserialize::deserialize(v)?,
    )))
}

pub fn read_inference_service(v: &Value) -> Result<Typed, serde_json::Error> {
    Ok(Typed::InferenceService(Box::new(
        serde::Deserialize::deserialize(v)?,
    )))
}

pub fn read_rollout(v: &Value) -> Result<Typed, serde_json::Error> {
    Ok(Typed::Rollout(Box::new(serde::Deserialize::deserialize(
        v,
    )?)))
}

pub fn read_flux(v: &Value) -> Result<Typed, serde_json::Error> {
    Ok(Typed::Flux(Box::new(serde::Deserialize::deserialize(v)?)))
}

/// A target that does not read as its kind: named, with what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {kind} {namespace}/{name}: {reason}")]
pub struct Unreadable {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LiveTarget {
    pub object: Value,
    pub typed: Typed,
}

impl LiveTarget {
    /// Reads `object` with `read` (its kind's reader from the kinds table).
    pub fn read(kind: &str, object: Value, read: ReadFn) -> Result<Self, Unreadable> {
        match read(&object) {
            Ok(typed) => Ok(Self { object, typed }),
            Err(e) => {
                let text = |p: &str| {
                    object
                        .pointer(p)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                Err(Unreadable {
                    kind: kind.to_string(),
                    namespace: text("/metadata/namespace"),
                    name: text("/metadata/name"),
                    reason: e.to_string(),
                })
            }
        }
    }

    pub fn application(&self) -> Option<&Application> {
        match &self.typed {
            Typed::Application(a) => Some(a),
            _ => None,
        }
    }

    pub fn inference_service(&self) -> Option<&InferenceService> {
        match &self.typed {
            Typed::InferenceService(i) => Some(i),
            _ => None,
        }
    }

    pub fn rollout(&self) -> Option<&Rollout> {
        match &self.typed {
            Typed::Rollout(r) => Some(r),
            _ => None,
        }
    }

    pub fn flux(&self) -> Option<&FluxObject> {
        match &self.typed {
            Typed::Flux(f) => Some(f),
            _ => None,
        }
    }

    /// The string at a JSON pointer into the object.
    pub fn text(&self, pointer: &str) -> Option<&str> {
        self.object.pointer(pointer)?.as_str()
    }

    /// An integer at a JSON pointer into the object.
    pub fn int(&self, pointer: &str) -> Option<i64> {
        self.object.pointer(pointer)?.as_i64()
    }

    /// An annotation at `pointer` (an annotations map) under `key`.
    pub fn annotation(&self, pointer: &str, key: &str) -> Option<&str> {
        self.object.pointer(pointer)?.get(key)?.as_str()
    }

    pub fn annotations(&self) -> BTreeMap<String, String> {
        self.object
            .pointer("/metadata/annotations")
            .and_then(|a| serde_json::from_value(a.clone()).ok())
            .unwrap_or_default()
    }

    pub fn resource_version(&self) -> Option<&str> {
        self.text("/metadata/resourceVersion")
    }

    /// Whether the status describes the current generation (built-in workloads).
    pub fn observed(&self) -> bool {
        let generation = self.int("/metadata/generation");
        generation.is_some() && self.int("/status/observedGeneration") >= generation
    }
}

#[cfg(test)]
impl LiveTarget {
    /// `object` read as the kinds table reads `group/kind` (tests: it must read).
    pub(crate) fn of(group: &str, kind: &str, object: Value) -> Self {
        let read = crate::kinds::find(group, kind).map_or(crate::kinds::READ_OTHER, |k| k.read);
        Self::read(kind, object, read).expect("reads as its kind")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_that_does_not_read_as_its_kind_is_an_error_naming_it() {
        let bad = serde_json::json!({"metadata": {"name": "web", "namespace": "team"},
            "status": {"operationState": {"phase": 7}}});
        let err = LiveTarget::read("Application", bad, read_application).expect_err("bad phase");
        assert!(
            err.to_string()
                .starts_with("cannot read Application team/web: invalid type: integer `7`"),
            "{err}"
        );
    }
}
