//! Benchmark of trigger-controller (not a timed test): on the local control plane, N NVJs
//! (1,000 by default) each name a Deployment to restart; all N runs are marked Succeeded at
//! once, as nvj-validator would write them, and it reports
//! - the latency from each status write to its Deployment being patched, seen through a watch;
//! - duplicates: Deployments restarted more than once (each restart is one generation);
//! - API requests per completion, by verb, from the controller's own request counter;
//! - the controller's resident memory.
//!
//! The controller runs in release mode under its chart's RBAC and with the environment its
//! chart sets (64 concurrent reconciles). The Deployments have no replicas, so their rollouts
//! complete as soon as the deployment controller observes them and the numbers are the
//! controller's, not a kubelet's.
//!
//! `hack/just bench-trigger-controller` builds everything in release mode and runs it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, PostParams};
use nbg_core::nvj::NotebookValidationJob;
use nbg_e2e::bench::{
    Load, api_requests, create_all, report, rss_kib, wait_reconciled, watch_first_seen,
};
use nbg_e2e::harness::controller::{ChartedController, ControllerSpec, metric_value};
use nbg_e2e::harness::nvj::{mark_succeeded, minimal, with_trigger_succeeded};
use nbg_e2e::{Cluster, TestNamespace};

#[derive(Parser, Debug)]
#[command(
    name = "bench-trigger-controller",
    about = "Measures trigger-controller: status-write-to-patch latency, duplicates, API requests per completion, memory"
)]
struct Cli {
    #[command(flatten)]
    load: Load,
    /// NVJs that succeed at once, each with a restart trigger on its own Deployment.
    #[arg(long, default_value_t = 1000)]
    jobs: usize,
    /// Also print, per 250 ms, the status writes done and the patches seen, and let the
    /// controller log each action (`"applied"`, in its log) to line them up with.
    #[arg(long)]
    timeline: bool,
}

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "model-server"}]}}}
    }))
    .expect("deployment")
}

/// Status writes done and patches seen, per 250 ms from the first write.
fn print_timeline(
    start: Instant,
    written: &HashMap<String, Instant>,
    patched: &Mutex<HashMap<String, Instant>>,
) {
    let bucket = |at: &Instant| at.saturating_duration_since(start).as_millis() / 250;
    let mut buckets: BTreeMap<u128, (usize, usize)> = BTreeMap::new();
    for at in written.values() {
        buckets.entry(bucket(at)).or_default().0 += 1;
    }
    if let Ok(p) = patched.lock() {
        for at in p.values().filter(|at| **at >= start) {
            buckets.entry(bucket(at)).or_default().1 += 1;
        }
    }
    println!("  t (ms)  status writes  patches seen");
    for (b, (w, p)) in buckets {
        println!("  {:>6}  {w:>13}  {p:>12}", b * 250);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cluster = Cluster::get();
    let client = cluster.client().await;
    let ns = TestNamespace::new(&cluster, "bench-trig").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), &ns.name);
    let n = cli.jobs;

    // N Deployments and N NVJs, each naming its Deployment.
    let pending = create_all(n, &format!("{n} Deployments and {n} NVJs"), |i| {
        let (deployments, nvjs) = (deployments.clone(), nvjs.clone());
        async move {
            deployments
                .create(&PostParams::default(), &deployment(&format!("model-{i}")))
                .await?;
            let trigger = format!(
                "- {{apiVersion: apps/v1, kind: Deployment, name: model-{i}, action: restart}}\n"
            );
            let annotations =
                BTreeMap::from([("mlops.dev/on-success-trigger".to_string(), trigger)]);
            nvjs.create(
                &PostParams::default(),
                &minimal(&format!("train-{i}"), &annotations),
            )
            .await
        }
    })
    .await?;

    let controller = ChartedController::start(
        &cluster,
        ControllerSpec {
            name: "trigger-controller",
            release_namespace: &ns.name,
            namespaces: &[&ns.name],
            values: &["global.argocd.enabled=false".to_string()],
            args: &cli.load.args(if cli.timeline { "info" } else { "warn" }),
        },
    )
    .await;
    // Ready once it has looked at every NVJ (none has succeeded yet: nothing to do).
    wait_reconciled(&controller, n).await?;
    let idle_rss = rss_kib(controller.process.id());
    let before = api_requests(&controller);

    // The watch records when each Deployment is first seen restarted.
    let (patched, watch) = watch_first_seen(deployments.clone(), |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .is_some_and(|a| a.contains_key("mlops.dev/restarted-by-run"))
    });
    tokio::time::sleep(Duration::from_secs(2)).await;

    // All N runs succeed at once.
    let marking = Instant::now();
    if cli.timeline {
        println!(
            "timeline: t=0 is {} (controller log {})",
            k8s_openapi::jiff::Timestamp::now(),
            controller.process.log.display()
        );
    }
    let mut writes = futures::stream::iter(pending.iter().map(|nvj| {
        let nvjs = nvjs.clone();
        async move {
            mark_succeeded(&nvjs, nvj).await?;
            let target = nvj
                .metadata
                .name
                .clone()
                .unwrap_or_default()
                .replace("train-", "model-");
            Ok::<_, kube::Error>((target, Instant::now()))
        }
    }))
    .buffer_unordered(cli.load.writers);
    let mut written: HashMap<String, Instant> = HashMap::with_capacity(n);
    let mut peak = idle_rss;
    while let Some(r) = writes.next().await {
        let (target, at) = r?;
        written.insert(target, at);
        peak = peak.max(rss_kib(controller.process.id()));
    }
    let marked = marking.elapsed();

    // Until every trigger is recorded Succeeded.
    let waiting = Instant::now();
    let recorded = loop {
        peak = peak.max(rss_kib(controller.process.id()));
        let done = with_trigger_succeeded(&nvjs.list(&ListParams::default()).await?.items);
        if done >= n || waiting.elapsed() > Duration::from_secs(600) {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let all_recorded = marking.elapsed();
    // Anything late (a duplicate) would show within a few more seconds.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = api_requests(&controller);
    let text = controller.metrics();
    let reconcile = |s: &str| {
        metric_value(
            &text,
            &format!("nbg_reconcile_duration_seconds_{s}{{controller=\"trigger-controller\"}}"),
        )
        .unwrap_or(0.0)
    };
    let (reconciles, reconcile_seconds) = (reconcile("count"), reconcile("sum"));
    let rest_rss = rss_kib(controller.process.id());
    watch.abort();

    if cli.timeline {
        print_timeline(marking, &written, &patched);
    }
    let mut latencies = Vec::with_capacity(n);
    let mut missing = 0;
    if let Ok(p) = patched.lock() {
        for (target, at) in &written {
            match p.get(target) {
                Some(seen) => latencies.push(seen.saturating_duration_since(*at)),
                None => missing += 1,
            }
        }
    }
    let generations: Vec<i64> = deployments
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|d| d.metadata.generation.unwrap_or(0))
        .collect();
    let duplicates = generations.iter().filter(|g| **g > 2).count();
    let never = generations.iter().filter(|g| **g < 2).count();

    println!(
        "trigger-controller, {n} NVJs succeeding at once (status writes {} in flight):",
        cli.load.writers
    );
    println!(
        "  {n} statuses written in {:.1} s; all {recorded} triggers recorded Succeeded {:.1} s after the first write",
        marked.as_secs_f64(),
        all_recorded.as_secs_f64()
    );
    report(
        "  status write -> Deployment patched (seen by a watch)",
        latencies,
    );
    println!(
        "  restarted more than once (duplicates): {duplicates}; never restarted: {never}; patch not seen: {missing}"
    );
    let per = |verb: &str| {
        (after.get(verb).copied().unwrap_or(0.0) - before.get(verb).copied().unwrap_or(0.0))
            / n as f64
    };
    let writes_per = per("create") + per("patch") + per("update") + per("delete");
    println!(
        "  API requests per completion: {:.2} writes (create {:.2}, patch {:.2}, update {:.2}), {:.2} reads",
        writes_per,
        per("create"),
        per("patch"),
        per("update"),
        per("read")
    );
    println!(
        "  reconciles: {reconciles:.0} in all, {:.1} ms on average",
        reconcile_seconds / reconciles.max(1.0) * 1e3
    );
    println!(
        "  controller RSS: {:.1} MiB idle with {n} NVJs, peak {:.1} MiB, {:.1} MiB after",
        idle_rss as f64 / 1024.0,
        peak as f64 / 1024.0,
        rest_rss as f64 / 1024.0
    );
    Ok(())
}
