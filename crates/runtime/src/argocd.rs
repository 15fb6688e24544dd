//! Argo CD's settings as every controller reads them: the flags naming Argo CD's namespace and
//! overriding its tracking settings ([`ArgoCdArgs`]), and [`TrackingSettings`], the tracking in
//! force - read from `argocd-cm` in Argo CD's namespace and kept current by a watch of that one
//! ConfigMap, so a change there takes effect without a restart. The rules themselves live in
//! `nbg_core::foreign::tracking`.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::Api;
use kube::runtime::watcher;
use nbg_core::foreign::tracking::{
    ARGOCD_CM, SettingsSource, Tracking, TrackingMethod, TrackingOverrides,
};
use tokio::sync::watch;

use crate::watch::Watches;

/// The flags of every controller that reads Argo CD's objects.
#[derive(clap::Args, Debug, Clone)]
pub struct ArgoCdArgs {
    /// Argo CD's namespace: argocd-cm is read there, and an Application named without a
    /// namespace (tracking `<app>`) lives there.
    #[arg(long, env = "NBG_ARGOCD_NAMESPACE", default_value = "argocd")]
    pub argocd_namespace: String,
    /// Overrides argocd-cm's application.resourceTrackingMethod (annotation, label or
    /// annotation+label), for clusters where this controller may not read argocd-cm. Unset:
    /// argocd-cm's, read and watched.
    #[arg(long, env = "NBG_TRACKING_METHOD")]
    pub tracking_method: Option<TrackingMethod>,
    /// Overrides argocd-cm's application.instanceLabelKey (the tracking label's key).
    #[arg(long, env = "NBG_TRACKING_LABEL")]
    pub tracking_label: Option<String>,
    /// Overrides argocd-cm's installationID.
    #[arg(long, env = "NBG_INSTALLATION_ID")]
    pub installation_id: Option<String>,
    /// Namespaces where Argo CD keeps Applications (its apps in any namespace),
    /// comma-separated; `*` for all. Default: --argocd-namespace.
    #[arg(long, env = "NBG_APPLICATION_NAMESPACES", value_delimiter = ',')]
    pub application_namespaces: Vec<String>,
}

impl ArgoCdArgs {
    /// The namespaces to read Applications in; empty means all.
    pub fn application_namespaces(&self) -> Vec<String> {
        match crate::cli::listed_namespaces(&self.application_namespaces) {
            None => Vec::new(),
            Some(listed) if listed.is_empty() => vec![self.argocd_namespace.clone()],
            Some(listed) => listed,
        }
    }

    pub fn overrides(&self) -> TrackingOverrides {
        let set = |v: &Option<String>| {
            v.as_ref()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        TrackingOverrides {
            method: self.tracking_method,
            label_key: set(&self.tracking_label),
            // An empty installation id is a value (none), not an absent override.
            installation_id: self.installation_id.as_ref().map(|s| s.trim().to_string()),
        }
    }
}

/// The tracking in force, kept current.
#[derive(Clone)]
pub struct TrackingSettings {
    rx: watch::Receiver<Arc<Tracking>>,
}

impl TrackingSettings {
    /// Settings that never change (tests, one-shot commands).
    pub fn fixed(tracking: Tracking) -> Self {
        let (_tx, rx) = watch::channel(Arc::new(tracking));
        Self { rx }
    }

    pub fn current(&self) -> Arc<Tracking> {
        self.rx.borrow().clone()
    }

    /// Yields each time the settings change.
    pub fn changes(&self) -> impl futures::Stream<Item = Arc<Tracking>> + Send + 'static {
        let mut rx = self.rx.clone();
        rx.mark_unchanged();
        futures::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            let now = rx.borrow_and_update().clone();
            Some((now, rx))
        })
    }

    /// Reads argocd-cm once (its absence and a refusal are settings too: Argo CD's defaults
    /// with the overrides, said in the log), then watches it for changes in the background.
    pub async fn start(client: &Client, args: &ArgoCdArgs, watches: &Watches) -> Self {
        let first = read_once(client, args).await;
        let (tx, rx) = watch::channel(Arc::new(first));
        if !args.overrides().complete() {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), &args.argocd_namespace);
            let config = watcher::Config::default().fields(&format!("metadata.name={ARGOCD_CM}"));
            let stream = watches.resilient(
                "configmaps/argocd-cm",
                Some(&args.argocd_namespace),
                watcher(api, config),
            );
            let args = args.clone();
            tokio::spawn(async move {
                futures::pin_mut!(stream);
                let mut listed: Option<ConfigMap> = None;
                while let Some(event) = stream.next().await {
                    let cm = match event {
                        Ok(watcher::Event::Init) => {
                            listed = None;
                            continue;
                        }
                        Ok(watcher::Event::InitApply(cm)) => {
                            listed = Some(cm);
                            continue;
                        }
                        Ok(watcher::Event::InitDone) => listed.take(),
                        Ok(watcher::Event::Apply(cm)) => Some(cm),
                        Ok(watcher::Event::Delete(_)) => None,
                        Err(_) => continue,
                    };
                    let next = settings_of(cm.as_ref(), &args);
                    if **tx.borrow() != next {
                        tracing::info!(tracking = %next.describe(), "Argo CD's tracking settings changed");
                        tx.send_replace(Arc::new(next));
                    }
                }
            });
        }
        Self { rx }
    }
}

/// The settings from argocd-cm as read (None: it does not exist), with the flags over it. A
/// misspelt method is reported and Argo CD's default rule used, as Argo CD itself does.
fn settings_of(cm: Option<&ConfigMap>, args: &ArgoCdArgs) -> Tracking {
    let source = if cm.is_some() {
        SettingsSource::ArgocdCm
    } else {
        SettingsSource::ArgocdCmMissing
    };
    let data = cm.and_then(|c| c.data.as_ref());
    let (overrides, ns) = (args.overrides(), &args.argocd_namespace);
    Tracking::from_argocd_cm(data, &overrides, ns, source.clone()).unwrap_or_else(|e| {
        tracing::error!(error = %e, "Argo CD's tracking method is not one Argo CD knows; reading tracking by Argo CD's default rule until it is fixed");
        // Only a misspelt method fails (an overridden one is never read): read without it.
        let mut known = data.cloned().unwrap_or_default();
        known.remove(nbg_core::foreign::tracking::TRACKING_METHOD_KEY);
        Tracking::from_argocd_cm(Some(&known), &overrides, ns, source)
            .unwrap_or_else(|_| Tracking::defaults(ns))
    })
}

/// The settings in force now, from one read of argocd-cm.
pub async fn read_once(client: &Client, args: &ArgoCdArgs) -> Tracking {
    let overrides = args.overrides();
    let ns = &args.argocd_namespace;
    if overrides.complete() {
        let t = Tracking::from_argocd_cm(None, &overrides, ns, SettingsSource::Overrides)
            .unwrap_or_else(|_| Tracking::defaults(ns));
        tracing::info!(tracking = %t.describe(), "Argo CD's tracking settings");
        return t;
    }
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let tracking = match api.get_opt(ARGOCD_CM).await {
        Ok(cm) => {
            let t = settings_of(cm.as_ref(), args);
            if cm.is_none() {
                tracing::warn!(namespace = %ns, "no ConfigMap {ARGOCD_CM} in Argo CD's namespace: reading tracking by Argo CD's defaults; if Argo CD runs in another namespace, set --argocd-namespace (chart value global.argocd.namespace)");
            }
            t
        }
        Err(e) => {
            let why = match &e {
                kube::Error::Api(s) if s.code == 403 => format!(
                    "forbidden: grant get, list and watch on ConfigMap {ARGOCD_CM} in namespace {ns}, or set --tracking-method, --tracking-label and --installation-id"
                ),
                other => other.to_string(),
            };
            tracing::error!(namespace = %ns, error = %why, "cannot read Argo CD's settings: reading tracking by Argo CD's defaults, which may disagree with Argo CD's own");
            Tracking::from_argocd_cm(None, &overrides, ns, SettingsSource::Unreadable(why))
                .unwrap_or_else(|_| Tracking::defaults(ns))
        }
    };
    tracing::info!(tracking = %tracking.describe(), "Argo CD's tracking settings");
    tracking
}
