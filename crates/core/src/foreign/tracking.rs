//! How Argo CD records which Application manages a resource ("resource tracking"), read the way
//! Argo CD reads it: the annotation `argocd.argoproj.io/tracking-id`
//! (`<app>:<group>/<kind>:<namespace>/<name>`, where `<app>` is `<app-namespace>_<name>` for an
//! Application outside Argo CD's own namespace), or a label (`app.kubernetes.io/instance` by
//! default, its value the Application's name), or both.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::annotations::ARGOCD_TRACKING_ID;

/// Argo CD's `application.resourceTrackingMethod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackingMethod {
    /// `annotation`: Argo CD 3.x's default.
    Annotation,
    /// `label`: Argo CD 2.x's default.
    Label,
    /// `annotation+label`: the annotation decides; the label is informational.
    AnnotationAndLabel,
}

impl std::str::FromStr for TrackingMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "annotation" => Ok(Self::Annotation),
            "label" => Ok(Self::Label),
            "annotation+label" => Ok(Self::AnnotationAndLabel),
            other => Err(format!(
                "unknown tracking method {other:?}: use annotation, label or annotation+label"
            )),
        }
    }
}

/// An Application, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppRef {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for AppRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// How to read tracking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracking {
    pub method: TrackingMethod,
    /// The tracking label's key (Argo CD's `application.instanceLabelKey`).
    pub label_key: String,
    /// Argo CD's own namespace: where an Application named without a namespace lives.
    pub argocd_namespace: String,
}

impl Tracking {
    /// The Application that tracks this object, if any.
    pub fn application(&self, meta: &ObjectMeta) -> Option<AppRef> {
        let by_annotation = || {
            let id = meta.annotations.as_ref()?.get(ARGOCD_TRACKING_ID)?;
            let (app, _) = id.split_once(':')?;
            // Namespaces never contain `_` (DNS labels), so the first one separates them.
            let (namespace, name) = match app.split_once('_') {
                Some((ns, name)) => (ns.to_string(), name.to_string()),
                None => (self.argocd_namespace.clone(), app.to_string()),
            };
            (!name.is_empty() && !namespace.is_empty()).then_some(AppRef { namespace, name })
        };
        let by_label = || {
            let name = meta.labels.as_ref()?.get(&self.label_key)?;
            (!name.is_empty()).then(|| AppRef {
                namespace: self.argocd_namespace.clone(),
                name: name.clone(),
            })
        };
        match self.method {
            TrackingMethod::Annotation | TrackingMethod::AnnotationAndLabel => by_annotation(),
            TrackingMethod::Label => by_label(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(annotations: &[(&str, &str)], labels: &[(&str, &str)]) -> ObjectMeta {
        let map = |p: &[(&str, &str)]| {
            Some(
                p.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        ObjectMeta {
            annotations: map(annotations),
            labels: map(labels),
            ..Default::default()
        }
    }

    fn tracking(method: TrackingMethod) -> Tracking {
        Tracking {
            method,
            label_key: "app.kubernetes.io/instance".into(),
            argocd_namespace: "argocd".into(),
        }
    }

    fn app(ns: &str, name: &str) -> Option<AppRef> {
        Some(AppRef {
            namespace: ns.into(),
            name: name.into(),
        })
    }

    #[test]
    fn reads_the_annotation_as_argocd_does() {
        let t = tracking(TrackingMethod::Annotation);
        let id = |v: &str| meta(&[(ARGOCD_TRACKING_ID, v)], &[]);
        assert_eq!(
            t.application(&id("training:mlops.mlops.dev/NotebookValidationJob:ml/a")),
            app("argocd", "training")
        );
        assert_eq!(
            t.application(&id(
                "team-a_training:mlops.mlops.dev/NotebookValidationJob:ml/a"
            )),
            app("team-a", "training")
        );
        assert_eq!(t.application(&id("no-colon")), None);
        assert_eq!(t.application(&id(":x")), None);
        assert_eq!(t.application(&id("_x:y")), None);
        // The label does not count with annotation tracking.
        assert_eq!(
            t.application(&meta(&[], &[("app.kubernetes.io/instance", "training")])),
            None
        );
    }

    #[test]
    fn reads_the_label_with_label_tracking() {
        let t = tracking(TrackingMethod::Label);
        assert_eq!(
            t.application(&meta(&[], &[("app.kubernetes.io/instance", "training")])),
            app("argocd", "training")
        );
        let both = tracking(TrackingMethod::AnnotationAndLabel);
        assert_eq!(
            both.application(&meta(
                &[(ARGOCD_TRACKING_ID, "serving:/ConfigMap:ml/x")],
                &[("app.kubernetes.io/instance", "training")]
            )),
            app("argocd", "serving")
        );
        assert_eq!(
            "annotation+label".parse::<TrackingMethod>(),
            Ok(TrackingMethod::AnnotationAndLabel)
        );
        assert!("labels".parse::<TrackingMethod>().is_err());
    }
}
