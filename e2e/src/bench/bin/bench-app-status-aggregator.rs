//! Benchmark of app-status-aggregator (not a timed test): on the local control plane, 10,000
//! NVJs across 100 Argo CD Applications (by default), each NVJ tracked by its Application and
//! listed in its `status.resources`. Once every Application carries its aggregate, it measures
//! - API requests while nothing changes (10 s);
//! - a burst: 1,000 statuses (10 per Application) marked Succeeded at once, as nvj-validator
//!   writes them, either Application by Application (`--order by-app`, the default: an
//!   Application's notebooks tend to finish together) or interleaved across all Applications
//!   (`--order interleaved`, the worst case for coalescing);
//! - from each status write to its Application's annotation counting it (the k-th write of an
//!   Application is reflected once its `succeeded` count reaches k), seen through a watch;
//! - writes per Application for the burst, and the controller's memory.
//!
//! The controller runs in release mode under its chart's RBAC and environment.
//! `hack/just bench-app-status-aggregator` builds everything in release mode and runs it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use kube::api::{Api, DynamicObject, PostParams};
use kube::runtime::watcher;
use nbg_core::annotations::{
    ARGOCD_TRACKING_ID, NOTEBOOK_STATUS, NOTEBOOK_SUMMARY, NotebookStatusSummary,
};
use nbg_core::nvj::{NotebookValidationJob, Phase};
use nbg_e2e::bench::{Load, api_requests, create_all, report, rss_kib};
use nbg_e2e::harness::controller::{ChartedController, ControllerSpec};
use nbg_e2e::harness::nvj::{mark_finished, mark_succeeded, minimal};
use nbg_e2e::{Cluster, TestNamespace};

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    ByApp,
    Interleaved,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum RunResult {
    Succeeded,
    Failed,
}

#[derive(Parser, Debug)]
#[command(
    name = "bench-app-status-aggregator",
    about = "Measures app-status-aggregator: status-write-to-annotation latency, writes per Application per burst, idle requests, memory"
)]
struct Cli {
    #[command(flatten)]
    load: Load,
    /// Applications.
    #[arg(long, default_value_t = 100)]
    apps: usize,
    /// NVJs per Application.
    #[arg(long, default_value_t = 100)]
    per_app: usize,
    /// NVJs per Application whose status changes in the burst.
    #[arg(long, default_value_t = 10)]
    burst_per_app: usize,
    #[arg(long, value_enum, default_value = "by-app")]
    order: Order,
    /// How the burst's runs end (`failed` also shows the annotations' size with long failed lists).
    #[arg(long, value_enum, default_value = "succeeded")]
    result: RunResult,
}

/// Per Application, each `succeeded` count it showed and when it first showed it.
type Reached = Arc<Mutex<HashMap<String, Vec<(i64, Instant)>>>>;

fn nvj_name(app: usize, i: usize) -> String {
    format!("app{app:03}-nvj{i:03}")
}

/// The Application's count of runs that ended as `result`, once it carries the aggregate.
fn ended(app: &DynamicObject, result: RunResult) -> Option<i64> {
    let value = app.metadata.annotations.as_ref()?.get(NOTEBOOK_STATUS)?;
    NotebookStatusSummary::parse(value)
        .ok()
        .map(|s| match result {
            RunResult::Succeeded => s.succeeded,
            RunResult::Failed => s.failed,
        })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cluster = Cluster::get();
    let client = cluster.client().await;
    let argocd = TestNamespace::new(&cluster, "bench-asa-argocd").await;
    let ml = TestNamespace::new(&cluster, "bench-asa-ml").await;
    let apps = nbg_e2e::harness::argocd::applications(&client, &argocd.name);
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), &ml.name);
    let total = cli.apps * cli.per_app;
    let result = cli.result;

    create_all(cli.apps, &format!("{} Applications", cli.apps), |a| {
        let apps = apps.clone();
        let ml = ml.name.clone();
        let per_app = cli.per_app;
        async move {
            let names: Vec<String> = (0..per_app).map(|i| nvj_name(a, i)).collect();
            let listed: Vec<(&str, &str)> =
                names.iter().map(|n| (ml.as_str(), n.as_str())).collect();
            let app: DynamicObject = serde_json::from_value(nbg_e2e::harness::argocd::application(
                &format!("app{a:03}"),
                &listed,
            ))
            .map_err(|e| kube::Error::Service(e.into()))?;
            apps.create(&PostParams::default(), &app).await
        }
    })
    .await?;
    let created = create_all(total, &format!("{total} NVJs"), |n| {
        let nvjs = nvjs.clone();
        let (a, i) = (n / cli.per_app, n % cli.per_app);
        let id = format!(
            "app{a:03}:mlops.mlops.dev/NotebookValidationJob:{}/{}",
            ml.name,
            nvj_name(a, i)
        );
        async move {
            let annotations = BTreeMap::from([(ARGOCD_TRACKING_ID.to_string(), id)]);
            nvjs.create(
                &PostParams::default(),
                &minimal(&nvj_name(a, i), &annotations),
            )
            .await
        }
    })
    .await?;
    let by_name: HashMap<String, NotebookValidationJob> = created
        .into_iter()
        .map(|n| (n.metadata.name.clone().unwrap_or_default(), n))
        .collect();

    let started = Instant::now();
    let controller = ChartedController::start(
        &cluster,
        ControllerSpec {
            name: "app-status-aggregator",
            release_namespace: &argocd.name,
            namespaces: &[&ml.name],
            values: &[format!("global.argocd.namespace={}", argocd.name)],
            args: &cli.load.args("warn"),
        },
    )
    .await;

    // Latest `succeeded` seen per Application, with when each count was first reached.
    let reached: Reached = Arc::default();
    let watch = {
        let reached = reached.clone();
        tokio::spawn(
            watcher(apps.clone(), watcher::Config::default()).for_each(move |e| {
                if let Ok(watcher::Event::Apply(app) | watcher::Event::InitApply(app)) = e
                    && let Some(n) = ended(&app, result)
                    && let Ok(mut r) = reached.lock()
                {
                    let seen = r
                        .entry(app.metadata.name.clone().unwrap_or_default())
                        .or_default();
                    if seen.last().is_none_or(|(last, _)| n > *last) {
                        seen.push((n, Instant::now()));
                    }
                }
                futures::future::ready(())
            }),
        )
    };
    // Ready once every Application carries its aggregate.
    loop {
        let written = apps
            .list(&Default::default())
            .await?
            .items
            .iter()
            .filter(|a| ended(a, cli.result).is_some())
            .count();
        if written >= cli.apps {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "only {written} of {} Applications written (log {})",
            cli.apps,
            controller.process.log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first_pass = started.elapsed();
    let idle_rss = rss_kib(controller.process.id());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_before = api_requests(&controller);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_after = api_requests(&controller);
    let idle: BTreeMap<&String, f64> = idle_after
        .iter()
        .filter(|(verb, _)| verb.as_str() != "watch")
        .map(|(verb, n)| (verb, n - idle_before.get(verb).copied().unwrap_or(0.0)))
        .filter(|(_, n)| *n > 0.0)
        .collect();

    // The burst.
    let mut order: Vec<(usize, usize)> = (0..cli.apps)
        .flat_map(|a| (0..cli.burst_per_app).map(move |i| (a, i)))
        .collect();
    if cli.order == Order::Interleaved {
        order.sort_by_key(|(a, i)| (*i, *a));
    }
    let before = api_requests(&controller);
    let burst = Instant::now();
    let mut writes = futures::stream::iter(order.iter().map(|(a, i)| {
        let nvjs = nvjs.clone();
        let nvj = by_name.get(&nvj_name(*a, *i)).cloned();
        let a = *a;
        async move {
            if let Some(nvj) = nvj {
                match result {
                    RunResult::Succeeded => mark_succeeded(&nvjs, &nvj).await?,
                    RunResult::Failed => {
                        mark_finished(&nvjs, &nvj, Phase::Failed, "cell 1 failed").await?
                    }
                };
            }
            Ok::<_, kube::Error>((a, Instant::now()))
        }
    }))
    .buffer_unordered(cli.load.writers);
    let mut written: HashMap<String, Vec<Instant>> = HashMap::new();
    let mut peak = idle_rss;
    while let Some(r) = writes.next().await {
        let (a, at) = r?;
        written.entry(format!("app{a:03}")).or_default().push(at);
        peak = peak.max(rss_kib(controller.process.id()));
    }
    let burst_written = burst.elapsed();
    // Until every Application counts its burst.
    let want = cli.burst_per_app as i64;
    let waiting = Instant::now();
    loop {
        let done = reached.lock().map_or(0, |r| {
            r.values()
                .filter(|v| v.last().is_some_and(|(n, _)| *n >= want))
                .count()
        });
        peak = peak.max(rss_kib(controller.process.id()));
        if done >= cli.apps || waiting.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = api_requests(&controller);
    let rest_rss = rss_kib(controller.process.id());
    watch.abort();
    // The largest the two annotations became, and that they are still valid JSON.
    let largest = apps
        .list(&Default::default())
        .await?
        .items
        .iter()
        .filter_map(|a| {
            let ann = a.metadata.annotations.as_ref()?;
            let status = ann.get(NOTEBOOK_STATUS)?;
            NotebookStatusSummary::parse(status).ok()?;
            Some(status.len() + ann.get(NOTEBOOK_SUMMARY).map_or(0, String::len))
        })
        .max()
        .unwrap_or(0);

    let mut latencies = Vec::new();
    let mut missing = 0;
    if let Ok(r) = reached.lock() {
        for (app, times) in &mut written {
            times.sort();
            let seen = r.get(app).cloned().unwrap_or_default();
            for (k, at) in times.iter().enumerate() {
                match seen.iter().find(|(n, _)| *n > k as i64) {
                    Some((_, when)) => latencies.push(when.saturating_duration_since(*at)),
                    None => missing += 1,
                }
            }
        }
    }
    let patches =
        after.get("patch").copied().unwrap_or(0.0) - before.get("patch").copied().unwrap_or(0.0);
    println!(
        "app-status-aggregator, {total} NVJs across {} Applications; burst: {} statuses {:?} ({} per Application, {:?} order, {} writes in flight):",
        cli.apps,
        order.len(),
        cli.result,
        cli.burst_per_app,
        cli.order,
        cli.load.writers
    );
    println!(
        "  first pass: every Application written {:.1} s after the controller started",
        first_pass.as_secs_f64()
    );
    println!("  idle for 10 s: requests beyond watches {idle:?}");
    println!(
        "  burst statuses written in {:.1} s; not reflected: {missing}",
        burst_written.as_secs_f64()
    );
    report(
        "  status write -> Application annotation counts it",
        latencies,
    );
    println!(
        "  Application writes for the burst: {patches:.0} ({:.2} per Application)",
        patches / cli.apps as f64
    );
    println!("  largest notebook-status + notebook-summary: {largest} bytes (valid JSON)");
    println!(
        "  controller RSS: {:.1} MiB idle with {total} NVJs, peak {:.1} MiB, {:.1} MiB after",
        idle_rss as f64 / 1024.0,
        peak as f64 / 1024.0,
        rest_rss as f64 / 1024.0
    );
    Ok(())
}
