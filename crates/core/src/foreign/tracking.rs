//! How Argo CD records which Application manages a resource ("resource tracking"), read exactly
//! as Argo CD reads it (`util/argo/resource_tracking.go`, v2.14 and v3.2), from the settings
//! Argo CD itself reads in `argocd-cm`:
//! - `application.resourceTrackingMethod`: `annotation` - the annotation
//!   `argocd.argoproj.io/tracking-id` (`<app>:<group>/<kind>:<namespace>/<name>`), honoured only
//!   when the object's `argocd.argoproj.io/installation-id` equals argocd-cm's `installationID`
//!   (both may be empty); `label` - the label `application.instanceLabelKey`
//!   (`app.kubernetes.io/instance` by default); `annotation+label` - the annotation decides, the
//!   label is informational. Unset, Argo CD 3.x reads the annotation and 2.x the label; argocd-cm
//!   does not say which Argo CD reads it, so then the annotation counts and, without one, the
//!   label.
//! - The Application is named by its instance name, in the annotation and the label alike:
//!   `<app>` in Argo CD's own namespace, `<app-namespace>_<app>` elsewhere (apps in any
//!   namespace).
//!
//! Tracking only says which Application an object claims; the Application's own
//! `status.resources` is the authority ([`Tracking::attribution`]): an object's labels and
//! annotations are written by its author and can be forged.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::annotations::ARGOCD_TRACKING_ID;
use crate::foreign::Application;

/// The ConfigMap Argo CD reads its settings from, in its own namespace.
pub const ARGOCD_CM: &str = "argocd-cm";
/// argocd-cm's key for the tracking method.
pub const TRACKING_METHOD_KEY: &str = "application.resourceTrackingMethod";
/// argocd-cm's key for the tracking label's key.
pub const INSTANCE_LABEL_KEY: &str = "application.instanceLabelKey";
/// argocd-cm's key for the installation id.
pub const INSTALLATION_ID_KEY: &str = "installationID";
/// Beside the tracking annotation: the installation that wrote it.
pub const INSTALLATION_ID_ANNOTATION: &str = "argocd.argoproj.io/installation-id";
/// The tracking label's key when argocd-cm names none.
pub const DEFAULT_LABEL_KEY: &str = "app.kubernetes.io/instance";

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

impl std::fmt::Display for TrackingMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Annotation => "annotation",
            Self::Label => "label",
            Self::AnnotationAndLabel => "annotation+label",
        })
    }
}

/// An Application, by namespace and name.
pub type AppRef = super::NamespacedName;

/// Settings given on the command line (or chart values) for clusters where the controllers
/// may not read argocd-cm; each one set wins over argocd-cm's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackingOverrides {
    pub method: Option<TrackingMethod>,
    pub label_key: Option<String>,
    pub installation_id: Option<String>,
}

impl TrackingOverrides {
    /// Whether every setting is given, so argocd-cm need not be read.
    pub fn complete(&self) -> bool {
        self.method.is_some() && self.label_key.is_some() && self.installation_id.is_some()
    }
}

/// Where the settings in force came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingsSource {
    /// argocd-cm, read (overrides applied over it).
    ArgocdCm,
    /// argocd-cm does not exist (yet): Argo CD's defaults, overrides applied.
    ArgocdCmMissing,
    /// argocd-cm could not be read: why; Argo CD's defaults, overrides applied.
    Unreadable(String),
    /// Every setting given as an override; argocd-cm is not read.
    Overrides,
}

/// How to read tracking: Argo CD's settings in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracking {
    /// None: argocd-cm does not set it (see the module's doc).
    pub method: Option<TrackingMethod>,
    /// The tracking label's key (Argo CD's `application.instanceLabelKey`).
    pub label_key: String,
    /// argocd-cm's `installationID` (empty: none).
    pub installation_id: String,
    /// Argo CD's own namespace: where an Application named without a namespace lives.
    pub argocd_namespace: String,
    pub source: SettingsSource,
}

/// How an Application and one of the objects it lists agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribution {
    /// Listed in the Application's `status.resources`, and tracking names the Application.
    Managed,
    /// Listed, but tracking names another Application or none: Argo CD's settings and ours
    /// disagree. What tracking reads, for the message.
    ListedNotTracked { tracked: Option<AppRef> },
    /// Not listed by the Application.
    NotListed,
}

impl Tracking {
    /// Argo CD's defaults (annotation, else label; the default label key; no installation id).
    pub fn defaults(argocd_namespace: &str) -> Self {
        Self {
            method: None,
            label_key: DEFAULT_LABEL_KEY.to_string(),
            installation_id: String::new(),
            argocd_namespace: argocd_namespace.to_string(),
            source: SettingsSource::ArgocdCmMissing,
        }
    }

    /// The settings in force from argocd-cm's `data` (None: not read, see `source`) with
    /// `overrides` over it. A method argocd-cm spells wrong is an error naming it; Argo CD
    /// itself would fall back to its default, so the caller reports it and uses `defaults`.
    pub fn from_argocd_cm(
        data: Option<&BTreeMap<String, String>>,
        overrides: &TrackingOverrides,
        argocd_namespace: &str,
        source: SettingsSource,
    ) -> Result<Self, String> {
        let get = |key: &str| {
            data.and_then(|d| d.get(key))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let method = match overrides.method {
            Some(m) => Some(m),
            None => get(TRACKING_METHOD_KEY)
                .map(|m| {
                    m.parse::<TrackingMethod>().map_err(|e| {
                        format!("{ARGOCD_CM} in namespace {argocd_namespace}, {TRACKING_METHOD_KEY}: {e}")
                    })
                })
                .transpose()?,
        };
        Ok(Self {
            method,
            label_key: overrides
                .label_key
                .clone()
                .or_else(|| get(INSTANCE_LABEL_KEY))
                .unwrap_or_else(|| DEFAULT_LABEL_KEY.to_string()),
            installation_id: overrides
                .installation_id
                .clone()
                .or_else(|| get(INSTALLATION_ID_KEY))
                .unwrap_or_default(),
            argocd_namespace: argocd_namespace.to_string(),
            source,
        })
    }

    /// The Application an instance name (`<app>` or `<namespace>_<app>`) names. Namespaces
    /// never contain `_` (DNS labels), so the first one separates them.
    fn instance(&self, value: &str) -> Option<AppRef> {
        let (namespace, name) = match value.split_once('_') {
            Some((ns, name)) => (ns, name),
            None => (self.argocd_namespace.as_str(), value),
        };
        (!name.is_empty() && !namespace.is_empty()).then(|| AppRef {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }

    /// An Application's instance name, as Argo CD writes it into the annotation and the label.
    pub fn instance_name(&self, app: &AppRef) -> String {
        if app.namespace == self.argocd_namespace || app.namespace.is_empty() {
            app.name.clone()
        } else {
            format!("{}_{}", app.namespace, app.name)
        }
    }

    fn by_annotation(&self, meta: &ObjectMeta) -> Option<AppRef> {
        let annotations = meta.annotations.as_ref();
        let installation = annotations
            .and_then(|a| a.get(INSTALLATION_ID_ANNOTATION))
            .map_or("", String::as_str);
        // Another installation's annotation (or one where this installation has none) is not
        // this Argo CD's.
        if installation != self.installation_id {
            return None;
        }
        let id = annotations?.get(ARGOCD_TRACKING_ID)?;
        let (app, _) = id.split_once(':')?;
        self.instance(app)
    }

    fn by_label(&self, meta: &ObjectMeta) -> Option<AppRef> {
        self.instance(meta.labels.as_ref()?.get(&self.label_key)?)
    }

    /// The Application that tracks this object, if any.
    pub fn application(&self, meta: &ObjectMeta) -> Option<AppRef> {
        match self.method {
            Some(TrackingMethod::Annotation | TrackingMethod::AnnotationAndLabel) => {
                self.by_annotation(meta)
            }
            Some(TrackingMethod::Label) => self.by_label(meta),
            None => self.by_annotation(meta).or_else(|| self.by_label(meta)),
        }
    }

    /// How `app` and the object (`group`, `kind`, its metadata) agree: the Application's
    /// `status.resources` decides whether it manages the object; tracking must name it too.
    pub fn attribution(
        &self,
        app: &Application,
        group: &str,
        kind: &str,
        meta: &ObjectMeta,
    ) -> Attribution {
        let namespace = meta.namespace.as_deref().unwrap_or_default();
        let name = meta.name.as_deref().unwrap_or_default();
        if !app.lists(group, kind, namespace, name) {
            return Attribution::NotListed;
        }
        match self.application(meta) {
            Some(tracked) if tracked == AppRef::of(app) => Attribution::Managed,
            tracked => Attribution::ListedNotTracked { tracked },
        }
    }

    /// The settings in one phrase, for messages: `label tracking (key argocd.argoproj.io/instance)
    /// from argocd-cm in argocd`.
    pub fn describe(&self) -> String {
        let method = match self.method {
            Some(TrackingMethod::Label) => format!("label tracking (key {})", self.label_key),
            Some(m) => format!("{m} tracking"),
            None => format!(
                "tracking by annotation, else label (key {}; argocd-cm sets no {TRACKING_METHOD_KEY})",
                self.label_key
            ),
        };
        let installation = if self.installation_id.is_empty() {
            String::new()
        } else {
            format!(", installation id {:?}", self.installation_id)
        };
        let from = match &self.source {
            SettingsSource::ArgocdCm => format!("from {ARGOCD_CM} in {}", self.argocd_namespace),
            SettingsSource::ArgocdCmMissing => format!(
                "Argo CD's defaults: no {ARGOCD_CM} in {}",
                self.argocd_namespace
            ),
            SettingsSource::Unreadable(why) => {
                format!("Argo CD's defaults: {ARGOCD_CM} unreadable ({why})")
            }
            SettingsSource::Overrides => "from the controller's --tracking-* flags".to_string(),
        };
        format!("{method}{installation}, {from}")
    }

    /// What an operator should check when an Application lists an object its tracking does
    /// not attribute to it.
    pub fn mismatch_message(&self, app: &AppRef, object: &str, tracked: Option<&AppRef>) -> String {
        let reads = match tracked {
            Some(other) => format!("names Application {other}"),
            None => "names no Application".to_string(),
        };
        format!(
            "Application {app} lists {object} in status.resources, but its tracking {reads} under {}: \
             Argo CD and notebook-gitops disagree on resource tracking. Check {TRACKING_METHOD_KEY}, \
             {INSTANCE_LABEL_KEY} and {INSTALLATION_ID_KEY} in {ARGOCD_CM} (namespace {}), the \
             controllers' argocd.namespace value, and any --tracking-* flags",
            self.describe(),
            self.argocd_namespace
        )
    }
}

#[cfg(test)]
mod tests;
