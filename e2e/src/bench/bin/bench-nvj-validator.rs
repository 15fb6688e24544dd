//! Benchmark of nvj-validator's own overhead (not a timed test): on the local control plane,
//! with this tool playing the kubelet so no notebook time is included, it measures
//! - from NVJ creation to the validation pod's creation,
//! - from the pod's termination (status written) to the NVJ's terminal status,
//!   each seen through watches, as a user would;
//! - the controller's resident memory with N NVJs (5,000 by default).
//!
//! `hack/just bench-nvj-validator` builds it and the controller in release mode and runs it.

use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use nbg_core::nvj::{NotebookValidationJob, Phase};
use nbg_e2e::TestNamespace;
use nbg_e2e::bench::{report, rss_kib};
use nbg_e2e::harness::cluster::{Cluster, workspace_binary};
use nbg_e2e::harness::process::LocalProcess;

#[derive(Parser, Debug)]
#[command(
    name = "bench-nvj-validator",
    about = "Measures nvj-validator's overhead per validation and its memory with many NVJs"
)]
struct Cli {
    /// Validations measured one at a time for latency.
    #[arg(long, default_value_t = 50)]
    latency_runs: usize,
    /// NVJs created for the memory measurement.
    #[arg(long, default_value_t = 5000)]
    jobs: usize,
}

fn nvj(name: &str) -> NotebookValidationJob {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "mlops.mlops.dev/v1alpha1", "kind": "NotebookValidationJob", "metadata": {"name": name},
        "spec": {"notebook": {"git": {"url": "https://git.example.com/r.git", "ref": "main"}, "path": "a.ipynb"},
                 "podConfig": {"containerImage": "img"}, "timeout": "30m"}
    }))
    .expect("nvj")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cluster = Cluster::get();
    let client = cluster.client().await;
    let ns = TestNamespace::new(&cluster, "bench").await;
    let mut cmd = Command::new(workspace_binary("nvj-validator"));
    cmd.arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args(["--namespaces", &ns.name, "--http-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "warn");
    let controller = LocalProcess::spawn("bench-nvj-validator", cmd);
    let nvjs: Api<NotebookValidationJob> = Api::namespaced(client.clone(), &ns.name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);

    // Watches record when each pod and each terminal NVJ is first seen.
    let (pod_tx, mut pod_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let pod_watch = tokio::spawn(watcher(pods.clone(), watcher::Config::default()).for_each(
        move |e| {
            if let Ok(watcher::Event::Apply(p)) = e {
                let owner = p
                    .metadata
                    .owner_references
                    .and_then(|o| o.into_iter().next())
                    .map(|o| o.name)
                    .unwrap_or_default();
                let _ = pod_tx.send((owner, Instant::now()));
            }
            futures::future::ready(())
        },
    ));
    let nvj_watch = tokio::spawn(watcher(nvjs.clone(), watcher::Config::default()).for_each(
        move |e| {
            if let Ok(watcher::Event::Apply(n)) = e
                && n.current_phase().is_some_and(Phase::is_terminal)
            {
                let _ = done_tx.send((n.metadata.name.unwrap_or_default(), Instant::now()));
            }
            futures::future::ready(())
        },
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let report_json = runner_report();
    let mut to_pod = Vec::new();
    let mut to_status = Vec::new();
    for i in 0..cli.latency_runs {
        let name = format!("lat-{i}");
        nvjs.create(&PostParams::default(), &nvj(&name)).await?;
        let created = Instant::now();
        let seen = loop {
            let (owner, at) = pod_rx
                .recv()
                .await
                .ok_or_else(|| anyhow::anyhow!("pod watch ended"))?;
            if owner == name {
                break at;
            }
        };
        to_pod.push(seen.saturating_duration_since(created));
        // Play the kubelet: bind the pod, then write its terminal status with a report.
        let pod_name = format!("{name}-v1-0");
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(pod_name.clone()),
                ..ObjectMeta::default()
            },
            target: ObjectReference {
                kind: Some("Node".into()),
                name: Some("bench-node".into()),
                ..ObjectReference::default()
            },
        };
        let _: serde_json::Value = pods
            .create_subresource("binding", &pod_name, &PostParams::default(), &binding)
            .await?;
        let status = serde_json::json!({"status": {"phase": "Succeeded", "containerStatuses": [{
            "name": "notebook", "image": "img", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": report_json}}}]}});
        pods.patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
        let terminated = Instant::now();
        let done = loop {
            let (n, at) = done_rx
                .recv()
                .await
                .ok_or_else(|| anyhow::anyhow!("nvj watch ended"))?;
            if n == name {
                break at;
            }
        };
        to_status.push(done.saturating_duration_since(terminated));
    }
    println!(
        "nvj-validator overhead per validation ({} runs, one at a time, seen through watches):",
        cli.latency_runs
    );
    report("  NVJ created -> validation pod created", to_pod);
    report("  pod terminated -> NVJ terminal status ", to_status);

    // Memory with many NVJs: each gets its status and its pod.
    let started = Instant::now();
    let names: Vec<String> = (0..cli.jobs).map(|i| format!("mem-{i}")).collect();
    let mut stream = futures::stream::iter(names.iter().map(|n| {
        let nvjs = nvjs.clone();
        let body = nvj(n);
        async move { nvjs.create(&PostParams::default(), &body).await.map(|_| ()) }
    }))
    .buffer_unordered(16);
    while let Some(r) = stream.next().await {
        r?;
    }
    let created = started.elapsed();
    let mut peak = 0u64;
    let handled = loop {
        peak = peak.max(rss_kib(controller.id()));
        let list = nvjs.list(&ListParams::default()).await?;
        let n = list
            .items
            .iter()
            .filter(|n| {
                n.name_starts_with("mem-") && n.status.as_ref().and_then(|s| s.phase).is_some()
            })
            .count();
        if n >= cli.jobs || started.elapsed() > Duration::from_secs(900) {
            break n;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let all = started.elapsed();
    let mut steady = Vec::new();
    for _ in 0..5 {
        steady.push(rss_kib(controller.id()));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let steady_max = steady.iter().copied().max().unwrap_or(0);
    let pods_created = pods
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=nvj-validator"))
        .await?
        .items
        .len();
    println!(
        "memory with {} NVJs ({} + {} latency NVJs, {} validation pods):",
        cli.jobs, cli.jobs, cli.latency_runs, pods_created
    );
    println!(
        "  created in {:.1} s; all {handled} initialised by the controller after {:.1} s",
        created.as_secs_f64(),
        all.as_secs_f64()
    );
    println!(
        "  controller RSS: peak {:.1} MiB while processing, {:.1} MiB at rest",
        peak as f64 / 1024.0,
        steady_max as f64 / 1024.0
    );
    pod_watch.abort();
    nvj_watch.abort();
    drop(controller);
    Ok(())
}

trait NameStarts {
    fn name_starts_with(&self, prefix: &str) -> bool;
}

impl NameStarts for NotebookValidationJob {
    fn name_starts_with(&self, prefix: &str) -> bool {
        self.metadata
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with(prefix))
    }
}

/// A valid runner report of a one-cell success, as a termination message.
fn runner_report() -> String {
    serde_json::json!({"outcome": "Succeeded", "message": "all 1 code cells succeeded",
                       "cells": [{"cellIndex": 0, "status": "Success"}], "code_cells": 1, "succeeded_cells": 1})
    .to_string()
}
