//! `just demo`: the train -> validate -> reload flow on the local control plane, as a new user
//! first meets it (the scenario is in `nbg_e2e::demo`; `hack/demo.sh` builds what it needs
//! and stops what it started).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use nbg_e2e::Cluster;
use nbg_e2e::demo::{self, DemoConfig, Timeline};

/// Removes what an earlier demo left, so each demo starts from the example as committed.
async fn fresh_namespace(cluster: &Cluster, name: &str) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(cluster.client().await);
    if namespaces.get_opt(name).await?.is_none() {
        return Ok(());
    }
    println!("removing namespace {name} left by an earlier demo ...");
    cluster.delete_namespace(name);
    // KServe's finalizer would hold the namespace: its manager stopped with that demo.
    let (_, isvcs, _) = cluster.kubectl(
        &[
            "get",
            "inferenceservices.serving.kserve.io",
            "-n",
            name,
            "-o",
            "name",
        ],
        None,
    );
    for isvc in isvcs.lines() {
        cluster.kubectl_ok(
            &[
                "patch",
                isvc,
                "-n",
                name,
                "--type",
                "merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ],
            None,
        )?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while namespaces.get_opt(name).await?.is_some() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "namespace {name} is still terminating after 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

async fn play() -> anyhow::Result<bool> {
    let cluster = Cluster::boot_or_reuse()?;
    // `--no-kserve`, `--no-argocd`: play KServe's or Argo CD's part instead of running it
    // (for a machine where hack/build-binaries.sh cannot build it); the timeline says so.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(other) = args
        .iter()
        .find(|a| !["--no-kserve", "--no-argocd"].contains(&a.as_str()))
    {
        anyhow::bail!("unknown argument {other:?} (the demo takes --no-kserve and --no-argocd)");
    }
    let config = DemoConfig {
        namespace: "fraud-detection".into(),
        argocd_namespace: "argocd".into(),
        real_kserve: !args.iter().any(|a| a == "--no-kserve"),
        real_argocd: !args.iter().any(|a| a == "--no-argocd"),
    };
    fresh_namespace(&cluster, &config.namespace).await?;
    let timeline = Timeline::new();
    let summary = demo::run(&cluster, &config, &timeline).await?;
    summary.print();
    if std::env::var_os("NBG_DEMO_STOPS_CLUSTER").is_some_and(|v| !v.is_empty()) {
        println!(
            "\nThe demo started the local control plane and stops it now. To look around afterwards,\nstart it first (hack/just cluster-up) and run the demo again."
        );
    } else {
        println!(
            "\nThe objects stay in namespaces {} and {} while the control plane runs:\n  hack/just kubectl get nvj,isvc -n {}",
            config.namespace, config.argocd_namespace, config.namespace
        );
    }
    Ok(summary.as_promised())
}

#[tokio::main]
async fn main() -> ExitCode {
    tokio::select! {
        result = play() => match result {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => {
                eprintln!("error: the demo did not play out as it should (see the summary)");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        _ = tokio::signal::ctrl_c() => {
            eprintln!("\ninterrupted: stopping the controllers and the kubelet double");
            ExitCode::from(130)
        }
    }
}
