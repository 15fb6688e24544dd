//! Restarts model servers, syncs or refreshes Argo CD Applications and reconciles Flux objects,
//! exactly once, when a NotebookValidationJob succeeds.
//!
//! A reconcile observes, decides and applies (docs/design.md):
//! - [`observe`]: reads each open target (watch cache or API), what rolls for it, its pods;
//! - [`decide`]: pure - what to do on each target ([`decide::act`]) and when outcomes are
//!   recorded ([`decide::records`]), unit-tested with the clock as an argument;
//! - [`reconcile`]: applies it - patches, evictions, the status in one server-side apply, Events.
//!
//! What it knows about targets:
//! - [`kinds`]: the one table of supported target kinds;
//! - [`live`]: a target as read, typed where its status is interpreted;
//! - [`actions`]: what each action writes, idempotent per run; [`eviction`]: `strategy: evict`;
//! - [`rollout`]: where a restart's rollout (or a Flux reconcile) stands;
//! - [`authorize`]: who may act on what (same namespace, target consent, managing Application
//!   or Kustomization);
//! - [`targets`]: discovery, watches and caches; [`waiting`]: which NVJs wait on which target;
//! - [`metrics`].

pub mod actions;
pub mod authorize;
pub mod decide;
pub mod eviction;
pub mod kinds;
pub mod live;
pub mod metrics;
pub mod observe;
pub mod reconcile;
pub mod rollout;
pub mod served_model;
pub mod targets;
pub mod waiting;

use nbg_runtime::argocd::{ArgoCdArgs, TrackingSettings};
use nbg_runtime::flux::FluxArgs;
use nbg_runtime::{CommonArgs, Runtime};

/// The controller's name: field manager, metric label and Event reporter.
pub const NAME: &str = "trigger-controller";

#[derive(clap::Parser, Debug)]
#[command(
    name = "trigger-controller",
    version,
    about = "Restarts model servers, syncs or refreshes Argo CD Applications and reconciles Flux objects, exactly once, when a NotebookValidationJob succeeds.",
    long_about = "Restarts model servers and syncs or refreshes Argo CD Applications, exactly once, when a NotebookValidationJob succeeds.\n\nFor every run that succeeded it acts once on each target of the NVJ's mlops.dev/on-success-trigger annotation: restart (Deployment, StatefulSet, DaemonSet rollout restart; KServe InferenceService; Argo Rollout; with strategy: evict, pods evicted one at a time honouring PodDisruptionBudgets), sync or refresh (Argo CD Application), reconcile (Flux Kustomization, HelmRelease, GitRepository, OCIRepository: reconcile.fluxcd.io/requestedAt, complete when Flux has handled it and reports Ready), and records the outcome in status.triggers with an Event per target. It watches the target kinds it may act on, to learn when a rollout completes. Targets in other namespaces need their consent (mlops.dev/allow-triggers-from), or, for an Application or a Kustomization, to manage the NVJ."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Only act on targets in the NVJ's own namespace.
    #[arg(long, env = "NBG_DISABLE_CROSS_NAMESPACE")]
    pub disable_cross_namespace: bool,
    /// Kinds that may be targeted, as group/Kind (core group: /Kind), comma-separated; by
    /// default every kind this controller supports.
    #[arg(
        long,
        env = "NBG_ALLOWED_KINDS",
        value_delimiter = ',',
        default_values_t = kinds::all_keys()
    )]
    pub allowed_kinds: Vec<String>,
    /// A restart still rolling out after this long is recorded InProgress, saying where the
    /// rollout stands (Go duration; Kubernetes' default progress deadline is 10m).
    #[arg(long, env = "NBG_ROLLOUT_DEADLINE", default_value = "10m", value_parser = nbg_runtime::cli::parse_duration)]
    pub rollout_deadline: std::time::Duration,
    #[command(flatten)]
    pub argocd: ArgoCdArgs,
    #[command(flatten)]
    pub flux: FluxArgs,
}

/// Connects, then runs until SIGTERM.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = Runtime::connect(NAME, env!("CARGO_PKG_VERSION"), cli.common).await?;
    let policy = authorize::Policy {
        allowed_kinds: cli
            .allowed_kinds
            .iter()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .collect(),
        allow_cross_namespace: !cli.disable_cross_namespace,
        ..Default::default()
    };
    let tracking = TrackingSettings::start(&runtime.client, &cli.argocd, &runtime.watches).await;
    let metrics = metrics::register(&runtime.registry);
    let watched = targets::watchable_kinds(&runtime.client, &policy).await;
    let app_namespaces = cli.argocd.application_namespaces();
    let clients = reconcile::Clients {
        api: runtime.client.clone(),
        models: runtime.client_without_retries()?,
    };
    let reconciler = reconcile::TriggerReconciler::new(
        clients,
        runtime.events.clone(),
        policy,
        tracking,
        metrics,
        targets::Targets::new(
            runtime.client.clone(),
            watched,
            targets::WatchNamespaces {
                applications: app_namespaces,
                flux: cli.flux.namespaces(),
            },
        ),
        cli.rollout_deadline,
    );
    runtime.run(reconciler).await
}
