//! Benchmark of wave-marker (not a timed test): on the local control plane, N NVJs (1,000 by
//! default), all blocking one wave, succeed at once as nvj-validator would write them, and it
//! reports
//! - the latency from each status write to its mark, seen through a watch;
//! - API writes per NVJ, from the controller's own request counter;
//! - the controller's resident memory;
//! - how long `wave-marker wait --block-wave` on all N takes to exit after the last mark (the
//!   exit is polled every 50 ms, so the figure may be up to 50 ms high).
//!
//! The controller runs in release mode under its chart's RBAC and with the environment its
//! chart sets; the waiter runs as the chart's waiter ServiceAccount.
//!
//! `hack/just bench-wave-marker` builds everything in release mode and runs it.

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use kube::api::{Api, PostParams};
use nbg_core::annotations::{BLOCK_WAVE, SYNC_WAVE, WAVE_COMPLETE};
use nbg_core::nvj::NotebookValidationJob;
use nbg_e2e::bench::{
    Load, api_requests, create_all, report, rss_kib, wait_reconciled, watch_first_seen,
};
use nbg_e2e::harness::cluster::workspace_binary;
use nbg_e2e::harness::controller::{ChartedController, ControllerSpec};
use nbg_e2e::harness::nvj::{mark_succeeded, minimal};
use nbg_e2e::harness::process::{LocalProcess, service_account_kubeconfig};
use nbg_e2e::{Cluster, TestNamespace};

#[derive(Parser, Debug)]
#[command(
    name = "bench-wave-marker",
    about = "Measures wave-marker: status-write-to-mark latency, writes per NVJ, memory, and how soon `wait` exits after the last mark"
)]
struct Cli {
    #[command(flatten)]
    load: Load,
    /// NVJs that finish at once, all blocking wave 7.
    #[arg(long, default_value_t = 1000)]
    jobs: usize,
}

const WAITER: &str = "bench-waiter";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let n = cli.jobs;
    let cluster = Cluster::get();
    let client = cluster.client().await;
    let ns = TestNamespace::new(&cluster, "bench-wave").await;
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), &ns.name);

    let pending = create_all(n, &format!("{n} NVJs"), |i| {
        let nvjs = nvjs.clone();
        async move {
            let annotations = BTreeMap::from([
                (SYNC_WAVE.to_string(), (i % 5).to_string()),
                (BLOCK_WAVE.to_string(), "7".to_string()),
            ]);
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
            name: "wave-marker",
            release_namespace: &ns.name,
            namespaces: &[&ns.name],
            values: &[
                format!("waiters[0].name={WAITER}"),
                format!("waiters[0].namespace={}", ns.name),
            ],
            args: &cli.load.args("warn"),
        },
    )
    .await;
    wait_reconciled(&controller, n).await?;
    let idle_rss = rss_kib(controller.process.id());
    let before = api_requests(&controller);

    // The watch records when each NVJ is first seen marked.
    let (marked_at, watch) = watch_first_seen(nvjs.clone(), |j: &NotebookValidationJob| {
        j.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(WAVE_COMPLETE))
    });
    // The waiter, started before the runs finish, as a hook would be.
    let kubeconfig = service_account_kubeconfig(&cluster, &ns.name, WAITER, "").await;
    let mut cmd = Command::new(workspace_binary("wave-marker"));
    cmd.arg("wait")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--block-wave", "7", "-n", &ns.name, "--timeout", "10m"])
        .args(["--require", &n.to_string()]);
    let mut waiter = LocalProcess::spawn("wave-marker-wait", cmd);
    let waiter_pid = waiter.id();
    let waiter_exit = tokio::task::spawn_blocking(move || {
        let status = waiter.wait_exit(Duration::from_secs(600));
        (status, Instant::now(), waiter.output())
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiter_rss = rss_kib(waiter_pid);

    // All N runs succeed at once.
    let marking = Instant::now();
    let mut writes = futures::stream::iter(pending.iter().map(|nvj| {
        let nvjs = nvjs.clone();
        async move {
            mark_succeeded(&nvjs, nvj).await?;
            Ok::<_, kube::Error>((
                nvj.metadata.name.clone().unwrap_or_default(),
                Instant::now(),
            ))
        }
    }))
    .buffer_unordered(cli.load.writers);
    let mut written: HashMap<String, Instant> = HashMap::with_capacity(n);
    let mut peak = idle_rss;
    while let Some(r) = writes.next().await {
        let (name, at) = r?;
        written.insert(name, at);
        peak = peak.max(rss_kib(controller.process.id()));
    }
    let statuses_written = marking.elapsed();
    let (status, exited, output) = waiter_exit.await?;
    let exit_code = status.and_then(|s| s.code());
    // Anything late (a second write) would show within a few more seconds.
    tokio::time::sleep(Duration::from_secs(5)).await;
    peak = peak.max(rss_kib(controller.process.id()));
    let after = api_requests(&controller);
    let text = controller.metrics();
    let reconcile = |s: &str| {
        nbg_e2e::harness::controller::metric_value(
            &text,
            &format!("nbg_reconcile_duration_seconds_{s}{{controller=\"wave-marker\"}}"),
        )
        .unwrap_or(0.0)
    };
    let (reconciles, reconcile_seconds) = (reconcile("count"), reconcile("sum"));
    let rest_rss = rss_kib(controller.process.id());
    watch.abort();

    let mut latencies = Vec::with_capacity(n);
    let mut last_mark = marking;
    let mut missing = 0;
    if let Ok(m) = marked_at.lock() {
        for (name, at) in &written {
            match m.get(name) {
                Some(seen) => {
                    latencies.push(seen.saturating_duration_since(*at));
                    last_mark = last_mark.max(*seen);
                }
                None => missing += 1,
            }
        }
    }
    let per = |verb: &str| {
        (after.get(verb).copied().unwrap_or(0.0) - before.get(verb).copied().unwrap_or(0.0))
            / n as f64
    };
    println!(
        "wave-marker, {n} NVJs finishing at once (status writes {} in flight):",
        cli.load.writers
    );
    println!(
        "  {n} statuses written in {:.1} s; last mark seen {:.1} s after the first write; marks not seen: {missing}",
        statuses_written.as_secs_f64(),
        last_mark.saturating_duration_since(marking).as_secs_f64()
    );
    report("  status write -> mark (seen by a watch)", latencies);
    println!(
        "  API writes per NVJ: {:.2} (patch {:.2}, create {:.2} - Events), {:.2} reads",
        per("patch") + per("create") + per("update"),
        per("patch"),
        per("create"),
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
    println!(
        "  wait --block-wave 7 --require {n}: exit {exit_code:?}, {:.0} ms after the last mark was seen; waiter RSS {:.1} MiB",
        exited.saturating_duration_since(last_mark).as_secs_f64() * 1e3,
        waiter_rss as f64 / 1024.0
    );
    if exit_code != Some(0) {
        println!("  waiter output:\n{output}");
    }
    Ok(())
}
