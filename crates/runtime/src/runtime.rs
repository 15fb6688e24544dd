use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::api_requests::ApiRequestMetrics;
use crate::cli::CommonArgs;
use crate::events::Events;
use crate::http::{self, Health};
use crate::leader::LeaderElector;
use crate::metrics::{ProcessMetrics, ReconcileMetrics, SharedRegistry, new_registry};
use crate::runner::{self, Reconciler, RunnerParts};
use crate::scope::Scope;
use crate::shutdown::Shutdown;
use crate::telemetry;
use crate::watch::Watches;

/// A connected controller process: client, metrics, health, scope and shutdown signal.
pub struct Runtime {
    pub name: &'static str,
    pub args: CommonArgs,
    pub client: Client,
    /// What `client` was built from.
    config: Config,
    pub registry: SharedRegistry,
    pub health: Health,
    pub shutdown: Shutdown,
    pub scope: Scope,
    pub events: Events,
    /// Starts every watch of this process so it recovers on its own.
    pub watches: Watches,
    metrics: ReconcileMetrics,
    process_metrics: ProcessMetrics,
    /// --leader-identity, else POD_NAME, else HOSTNAME; also the Events' reporting instance.
    identity: Option<String>,
}

/// The client configuration from `kubeconfig`, else the in-cluster one or `~/.kube/config`;
/// an error names the file or says that none was found.
pub async fn load_config(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<Config> {
    match kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("invalid kubeconfig {}", path.display()))
        }
        None => Config::infer().await.context("no Kubernetes configuration found (set --kubeconfig or KUBECONFIG, or run in a cluster)"),
    }
}

impl Runtime {
    /// A client of the same API server whose answers are returned as they come: `client`
    /// retries 429, 503 and 504 with back-off for up to a minute, which is right for the API
    /// server's own answers and wrong for a backend reached through its proxy, whose 503 is the
    /// answer (a model server still loading).
    pub fn client_without_retries(&self) -> anyhow::Result<Client> {
        let mut config = self.config.clone();
        config.default_retry = false;
        Client::try_from(config).context("cannot build a client without retries")
    }

    /// Sets up logging and connects to the API server. An unreachable server is an error that
    /// names its address, after at most `--connect-timeout`.
    pub async fn connect(
        name: &'static str,
        version: &str,
        args: CommonArgs,
    ) -> anyhow::Result<Self> {
        // The filter is checked now, but logging starts after the connection check, so an
        // unreachable server is reported in exactly one line.
        telemetry::validate(&args.log_filter)?;
        let mut config = load_config(args.kubeconfig.as_deref()).await?;
        config.connect_timeout = Some(args.connect_timeout);
        let url = config.cluster_url.to_string();
        let registry = new_registry();
        let api_requests = ApiRequestMetrics::register(&registry);
        let client = kube::client::ClientBuilder::try_from(config.clone())
            .with_context(|| format!("cannot build a client for {url}"))?
            .with_layer(&api_requests.layer())
            .build();
        match tokio::time::timeout(args.connect_timeout, client.apiserver_version()).await {
            Ok(Ok(info)) => {
                telemetry::init(&args.log_filter, args.log_format)?;
                tracing::info!(controller = name, server = %url, version = %info.git_version, "connected to the API server")
            }
            Ok(Err(e)) => anyhow::bail!("cannot reach the Kubernetes API server at {url}: {e}"),
            Err(_) => anyhow::bail!(
                "cannot reach the Kubernetes API server at {url}: no answer within {:?}",
                args.connect_timeout
            ),
        }
        let metrics = ReconcileMetrics::register(&registry);
        let process_metrics = ProcessMetrics::register(&registry, name, version);
        let identity = args
            .leader_identity
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok())
            .or_else(|| std::env::var("HOSTNAME").ok());
        let events = Events::new(client.clone(), name, identity.clone());
        let scope = Scope::new(args.namespaces.clone(), args.namespace_selector.clone());
        let watches = Watches::register(&registry, name);
        Ok(Self {
            name,
            args,
            client,
            config,
            registry,
            health: Health::default(),
            shutdown: Shutdown::new(),
            scope,
            events,
            watches,
            metrics,
            process_metrics,
            identity,
        })
    }

    /// This replica's identity in the Lease: --leader-identity, POD_NAME, the host name, or
    /// `<controller>-<pid>`.
    pub fn identity(&self) -> String {
        self.identity
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.name, std::process::id()))
    }

    /// The namespace of the Lease (and of a controller's own state): --lease-namespace, else
    /// POD_NAMESPACE, else `default`.
    pub fn lease_namespace(&self) -> String {
        self.args
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".to_string())
    }

    /// Runs `work` as the leader (when leader election is on) until shutdown, serving metrics
    /// and health meanwhile. A replica that loses the lease (it could not renew it in time, for
    /// example while the API server was down) stops `work` at once and stands by in the same
    /// process to take the lease back: no exit, so no restart delay from the kubelet, and the
    /// next term starts `work` afresh from a re-list.
    pub async fn run_until_shutdown<F>(self, work: impl Fn(&Self) -> F) -> anyhow::Result<()>
    where
        F: Future<Output = ()>,
    {
        let listener = http::bind(self.args.http_addr).await?;
        tokio::spawn(http::serve(
            listener,
            self.registry.clone(),
            self.health.clone(),
            self.shutdown.clone(),
        ));
        self.shutdown.listen_for_signals();
        // Standby replicas are ready too: readiness gates traffic, not leadership.
        self.health.set_ready(true);

        let elector = self.args.leader_election.then(|| {
            let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.lease_namespace());
            LeaderElector::new(api, self.name, &self.identity(), self.args.lease_duration)
        });
        let mut namespaces_watched = false;
        loop {
            if let Some(elector) = &elector {
                tokio::select! {
                    _ = elector.acquire() => {}
                    _ = self.shutdown.wait() => return Ok(()),
                }
            }
            self.process_metrics.set_leader(true);
            if !namespaces_watched {
                tokio::spawn(
                    self.scope
                        .clone()
                        .watch_namespaces(self.client.clone(), self.watches.clone()),
                );
                namespaces_watched = true;
            }
            let lost = async {
                match &elector {
                    Some(e) => e.hold().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = work(&self) => break,
                reason = lost => {
                    // Dropping `work` cancels its reconciles; nothing acts until the lease is ours again.
                    self.process_metrics.set_leader(false);
                    tracing::warn!(controller = self.name, %reason, "stopped acting; standing by to take the lease back");
                }
            }
        }
        if let Some(elector) = &elector {
            elector.release().await;
        }
        tracing::info!(controller = self.name, "stopped");
        Ok(())
    }

    /// Runs a reconciler under this runtime until shutdown.
    pub async fn run<R: Reconciler>(self, reconciler: R) -> anyhow::Result<()> {
        let reconciler = Arc::new(reconciler);
        self.run_until_shutdown(|rt| runner::run(reconciler.clone(), rt.runner_parts()))
            .await
    }

    /// What a reconciler's runner takes of this runtime.
    fn runner_parts(&self) -> RunnerParts {
        RunnerParts {
            client: self.client.clone(),
            concurrency: self.args.max_concurrent_reconciles,
            scope: self.scope.clone(),
            metrics: self.metrics.clone(),
            events: self.events.clone(),
            shutdown: self.shutdown.clone(),
            watches: self.watches.clone(),
        }
    }

    /// Runs two reconcilers (e.g. one per GitOps engine) under this runtime and one Lease until
    /// shutdown.
    pub async fn run_pair<A: Reconciler, B: Reconciler>(self, a: A, b: B) -> anyhow::Result<()> {
        let (a, b) = (Arc::new(a), Arc::new(b));
        self.run_until_shutdown(|rt| {
            let (a, b) = (
                runner::run(a.clone(), rt.runner_parts()),
                runner::run(b.clone(), rt.runner_parts()),
            );
            async move {
                futures::future::join(a, b).await;
            }
        })
        .await
    }

    /// Serves metrics and health and holds leadership, reconciling nothing, until shutdown.
    /// For controllers whose reconciler is not built yet; their `--help` says so.
    pub async fn run_idle(self) -> anyhow::Result<()> {
        tracing::warn!(
            controller = self.name,
            "this controller does not reconcile anything yet"
        );
        self.run_until_shutdown(|rt| {
            let shutdown = rt.shutdown.clone();
            async move { shutdown.wait().await }
        })
        .await
    }
}
