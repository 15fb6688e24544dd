//! `wave-marker wait`: waits with a watch (not a poll) until the NVJs a hook depends on are
//! marked complete for their current generation, and fails fast when one fails.

pub mod judge;
mod owner;
mod printer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use nbg_core::nvj::NotebookValidationJob;

use judge::{Entry, Query, State, Tally, Verdict};
use owner::{Owner, OwnerEvent, kustomization_resource, owned_by, set_owner};
use printer::Printer;

/// Exit codes, as documented in `--help`.
pub mod exit {
    pub const COMPLETE: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const TIMEOUT: u8 = 2;
    pub const ERROR: u8 = 3;
}

/// Output format.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

#[derive(clap::Args, Debug, Clone)]
pub struct WaitArgs {
    /// Wait for every NVJ whose mlops.dev/block-wave is N.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub block_wave: Option<i32>,
    /// Wait for every NVJ in sync wave N (argocd.argoproj.io/sync-wave; none means 0).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub wave: Option<i32>,
    /// Wait for the NVJ of this name.
    #[arg(long)]
    pub name: Option<String>,
    /// Only NVJs with these labels (a label selector, e.g. `team=fraud,stage!=dev`).
    #[arg(long, short = 'l')]
    pub selector: Option<String>,
    /// Only NVJs an Argo CD Application manages: those its status.resources lists whose
    /// tracking, read with Argo CD's settings in argocd-cm, names it. NAME, or NAMESPACE/NAME
    /// for an Application outside Argo CD's namespace. Needs get/list/watch on that
    /// Application (and get on argocd-cm, or the --tracking-* flags).
    #[arg(long, value_name = "NAME")]
    pub application: Option<String>,
    #[command(flatten)]
    pub argocd: nbg_runtime::argocd::ArgoCdArgs,
    /// Only NVJs a Flux Kustomization manages: those its status.inventory lists and whose
    /// kustomize.toolkit.fluxcd.io/name and /namespace labels name it. NAMESPACE/NAME, or NAME
    /// in flux-system. Needs get/list/watch on that Kustomization.
    #[arg(long, value_name = "NAMESPACE/NAME", conflicts_with = "application")]
    pub kustomization: Option<String>,
    /// Namespace of the NVJs; default: the kubeconfig's namespace, or the pod's own.
    #[arg(
        long,
        short = 'n',
        env = "NBG_WAIT_NAMESPACE",
        conflicts_with = "all_namespaces"
    )]
    pub namespace: Option<String>,
    /// NVJs in every namespace.
    #[arg(long, short = 'A')]
    pub all_namespaces: bool,
    /// Give up after this long (Go duration).
    #[arg(long, default_value = "30m", value_parser = nbg_runtime::cli::parse_duration)]
    pub timeout: Duration,
    /// At least this many NVJs must match, so a typo in a selector does not pass vacuously.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub require: usize,
    /// `text`: a line per NVJ as it completes; `json`: one JSON object per line, the last one
    /// the result.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: Output,
    /// Kubeconfig file; without it the in-cluster config or ~/.kube/config is used.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

/// How a wait ended.
#[derive(Debug)]
pub enum Ended {
    Complete(Vec<Entry>),
    Failed(Vec<Entry>),
    Timeout { entries: Vec<Entry>, missing: usize },
    Error(String),
}

impl Ended {
    pub fn exit_code(&self) -> u8 {
        match self {
            Ended::Complete(_) => exit::COMPLETE,
            Ended::Failed(_) => exit::FAILED,
            Ended::Timeout { .. } => exit::TIMEOUT,
            Ended::Error(_) => exit::ERROR,
        }
    }
}

/// Runs a wait to its end and prints it; returns the exit code.
pub async fn run(args: WaitArgs) -> u8 {
    let out = Printer {
        format: args.output,
    };
    let ended = wait(&args, args.kubeconfig.as_deref(), &out).await;
    out.result(&ended, &args);
    ended.exit_code()
}

fn describe(args: &WaitArgs) -> String {
    let mut parts = Vec::new();
    if let Some(b) = args.block_wave {
        parts.push(format!("blocking wave {b}"));
    }
    if let Some(w) = args.wave {
        parts.push(format!("in sync wave {w}"));
    }
    if let Some(n) = &args.name {
        parts.push(format!("named {n}"));
    }
    if let Some(s) = &args.selector {
        parts.push(format!("with labels {s}"));
    }
    if let Some(a) = &args.application {
        parts.push(format!("of Application {a}"));
    }
    if let Some(k) = &args.kustomization {
        parts.push(format!("of Kustomization {k}"));
    }
    if parts.is_empty() {
        "NVJs".to_string()
    } else {
        format!("NVJs {}", parts.join(", "))
    }
}

/// The client, and the API server's address for messages.
async fn client(kubeconfig: Option<&std::path::Path>) -> Result<(Client, String), String> {
    let mut config = nbg_runtime::load_config(kubeconfig)
        .await
        .map_err(|e| format!("{e:#}"))?;
    config.connect_timeout = Some(Duration::from_secs(10));
    let server = config.cluster_url.to_string();
    let client =
        Client::try_from(config).map_err(|e| format!("cannot build a Kubernetes client: {e}"))?;
    Ok((client, server))
}

/// Names what the API server refused or why it could not be reached.
fn watch_error(e: &watcher::Error, where_: &str, server: &str) -> (bool, String) {
    let (verb, err) = match e {
        watcher::Error::InitialListFailed(err) => ("list", Some(err)),
        watcher::Error::WatchStartFailed(err) | watcher::Error::WatchFailed(err) => {
            ("watch", Some(err))
        }
        watcher::Error::WatchError(status) => {
            let refused = matches!(status.code, 401 | 403);
            return (
                refused,
                format!(
                    "cannot watch notebookvalidationjobs.mlops.mlops.dev {where_}: {}",
                    status.message
                ),
            );
        }
        watcher::Error::NoResourceVersion => ("watch", None),
    };
    let refused = matches!(err, Some(kube::Error::Api(s)) if matches!(s.code, 401 | 403 | 404));
    let detail = err.map_or_else(|| e.to_string(), |err| err.to_string());
    let what = if refused && matches!(err, Some(kube::Error::Api(s)) if s.code == 404) {
        "the NotebookValidationJob CRD (mlops.mlops.dev/v1alpha1) is not installed: ".to_string()
    } else {
        String::new()
    };
    (
        refused,
        format!(
            "{what}cannot {verb} notebookvalidationjobs.mlops.mlops.dev {where_} (API server {server}): {detail}"
        ),
    )
}

async fn wait(args: &WaitArgs, kubeconfig: Option<&std::path::Path>, out: &Printer) -> Ended {
    if args.require == 0 && args.block_wave.is_none() && args.wave.is_none() && args.name.is_none()
    {
        // Allowed, but worth knowing: nothing needs to exist.
        out.note("--require 0: passes when no NVJ matches");
    }
    let (client, server) = match client(kubeconfig).await {
        Ok(c) => c,
        Err(e) => return Ended::Error(e),
    };
    let resource = ApiResource::erase::<NotebookValidationJob>(&());
    let mut managed_by = None;
    let mut kustomized_by = None;
    // The GitOps object the NVJs are selected by, watched: what it manages changes as it syncs.
    let mut owner: futures::stream::BoxStream<'static, OwnerEvent> =
        futures::stream::pending().boxed();
    let mut owner_name = String::new();
    if let Some(app) = &args.application {
        let tracking = nbg_runtime::argocd::read_once(&client, &args.argocd).await;
        out.note(&format!("Argo CD's tracking: {}", tracking.describe()));
        let by = judge::ManagedBy::new(app, std::sync::Arc::new(tracking));
        let api: Api<nbg_core::foreign::Application> =
            Api::namespaced(client.clone(), &by.app.namespace);
        owner = owned_by(api, &by.app.name, |a| Owner::Application(Box::new(a)));
        owner_name = format!("Application {}", by.app);
        managed_by = Some(by);
    }
    if let Some(k) = &args.kustomization {
        let by = judge::KustomizedBy::new(k);
        let api: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            &by.kustomization.namespace,
            &kustomization_resource(),
        );
        owner = owned_by(
            api,
            &by.kustomization.name,
            |k| match serde_json::to_value(&k).and_then(serde_json::from_value) {
                Ok(k) => Owner::Kustomization(Box::new(k)),
                Err(e) => Owner::Unreadable(e.to_string()),
            },
        );
        owner_name = format!("Kustomization {}", by.kustomization);
        kustomized_by = Some(by);
    }
    let (api, where_) = if args.all_namespaces {
        (
            Api::<DynamicObject>::all_with(client, &resource),
            "in all namespaces".to_string(),
        )
    } else {
        let ns = args
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        (
            Api::namespaced_with(client, &ns, &resource),
            format!("in namespace {ns:?}"),
        )
    };
    let mut config = watcher::Config::default();
    if let Some(s) = &args.selector {
        config = config.labels(s);
    }
    if let Some(n) = &args.name {
        config = config.fields(&format!("metadata.name={n}"));
    }
    let mut query = Query {
        block_wave: args.block_wave,
        wave: args.wave,
        application: managed_by,
        kustomization: kustomized_by,
    };
    let deadline = Instant::now() + args.timeout;
    out.note(&format!(
        "waiting for {} {where_} (at least {}, timeout {:?})",
        describe(args),
        args.require,
        args.timeout
    ));
    let mut stream = watcher(api, config).default_backoff().boxed();
    // While (re-)listing, the objects are collected and judged once the list is complete.
    let mut listing: Vec<DynamicObject> = Vec::new();
    let mut tally = Tally::default();
    let mut synced = false;
    // The NVJs as last seen, judged again when the Application changes what it lists.
    let mut seen: BTreeMap<String, DynamicObject> = BTreeMap::new();
    loop {
        let next = tokio::select! {
            event = owner.next() => {
                match event {
                    Some(Ok(Some(Owner::Unreadable(e)))) => {
                        return Ended::Error(format!("{owner_name} does not read as one: {e}"));
                    }
                    Some(Ok(live)) => set_owner(&mut query, live),
                    Some(Err(e)) => {
                        let refused = matches!(&e, watcher::Error::InitialListFailed(kube::Error::Api(s)) | watcher::Error::WatchStartFailed(kube::Error::Api(s)) if matches!(s.code, 401 | 403 | 404));
                        let message = format!("cannot watch {owner_name} (API server {server}): {e}");
                        if refused {
                            return Ended::Error(message);
                        }
                        out.note(&format!("{message}; retrying"));
                        continue;
                    }
                    None => return Ended::Error(format!("the watch of {owner_name} ended unexpectedly")),
                }
                if synced {
                    for (k, o) in &seen {
                        if let Ok(nvj) = o.clone().try_parse::<NotebookValidationJob>()
                            && tally.update(&query, k, Some(&nvj))
                        {
                            out.complete(k, tally.complete(), tally.len().max(args.require));
                        }
                    }
                    if let Some(ended) = ended(&tally, args.require) {
                        return ended;
                    }
                }
                continue;
            }
            next = tokio::time::timeout_at(deadline.into(), stream.next()) => next,
        };
        let event = match next {
            Err(_) => {
                let missing = args.require.saturating_sub(tally.len());
                return Ended::Timeout {
                    entries: tally.entries(),
                    missing,
                };
            }
            Ok(None) => return Ended::Error("the watch ended unexpectedly".into()),
            Ok(Some(Err(e))) => {
                let (refused, message) = watch_error(&e, &where_, &server);
                if refused || !synced {
                    return Ended::Error(message);
                }
                out.note(&format!("{message}; retrying"));
                continue;
            }
            Ok(Some(Ok(event))) => event,
        };
        let mut changed: Vec<(String, Option<DynamicObject>)> = Vec::new();
        match event {
            watcher::Event::Init => listing.clear(),
            watcher::Event::InitApply(o) => listing.push(o),
            watcher::Event::InitDone => {
                tally = Tally::default();
                changed = listing.drain(..).map(|o| (key(&o), Some(o))).collect();
                synced = true;
            }
            watcher::Event::Apply(o) => changed.push((key(&o), Some(o))),
            watcher::Event::Delete(o) => changed.push((key(&o), None)),
        }
        if !synced {
            continue;
        }
        for (k, object) in changed {
            match &object {
                Some(o) if query.application.is_some() || query.kustomization.is_some() => {
                    seen.insert(k.clone(), o.clone());
                }
                _ => {
                    seen.remove(&k);
                }
            }
            let completed = match object.map(|o| o.try_parse::<NotebookValidationJob>()) {
                None => tally.update(&query, &k, None),
                Some(Ok(nvj)) => tally.update(&query, &k, Some(&nvj)),
                // An NVJ that cannot be read cannot be judged: an error where it may be one
                // the wait is about (no wave or Application criterion could rule it out).
                Some(Err(e)) if query == Query::default() => tally.set(
                    &k,
                    Some(State::Invalid(format!("cannot read this NVJ: {e}"))),
                ),
                Some(Err(_)) => tally.set(&k, None),
            };
            if completed {
                out.complete(&k, tally.complete(), tally.len().max(args.require));
            }
        }
        if let Some(ended) = ended(&tally, args.require) {
            return ended;
        }
    }
}

/// How the wait ends now, if it does: enough matches all complete, or one failed.
fn ended(tally: &Tally, require: usize) -> Option<Ended> {
    match tally.verdict(require) {
        Verdict::Complete => Some(Ended::Complete(tally.entries())),
        Verdict::Failed => Some(Ended::Failed(tally.entries())),
        Verdict::Waiting => None,
    }
}

fn key(o: &DynamicObject) -> String {
    format!(
        "{}/{}",
        o.metadata.namespace.as_deref().unwrap_or_default(),
        o.metadata.name.as_deref().unwrap_or_default()
    )
}
