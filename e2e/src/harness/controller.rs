//! A controller binary of this workspace run as a local process under exactly the RBAC its Helm
//! chart grants (a ServiceAccount token) and with the environment its chart sets, as it would
//! run in a cluster.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;

use crate::Cluster;
use crate::harness::cluster::{repo_root, workspace_binary};
use crate::harness::process::{LocalProcess, free_port, render_chart, service_account_kubeconfig};

/// How to run one controller.
pub struct ControllerSpec<'a> {
    /// The binary and its chart under `charts/`.
    pub name: &'a str,
    /// The namespace of the ServiceAccount (the chart's release namespace).
    pub release_namespace: &'a str,
    /// `--namespaces`, and the chart's `watchNamespaces`.
    pub namespaces: &'a [&'a str],
    /// More `--set` values for the chart.
    pub values: &'a [String],
    /// More command-line arguments.
    pub args: &'a [String],
}

pub struct ChartedController {
    pub name: String,
    /// The chart's ServiceAccount (in the release namespace) the process acts as.
    pub service_account: String,
    pub kubeconfig: PathBuf,
    pub metrics_port: u16,
    /// The chart's environment for the container.
    env: Vec<(String, String)>,
    args: Vec<String>,
    pub process: LocalProcess,
}

impl ChartedController {
    pub async fn start(cluster: &Cluster, spec: ControllerSpec<'_>) -> Self {
        let release = format!("{}-{}", short(spec.name), spec.release_namespace);
        let mut values = vec![
            format!("watchNamespaces={{{}}}", spec.namespaces.join(",")),
            "leaderElection=false".to_string(),
        ];
        values.extend(spec.values.iter().cloned());
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let chart = render_chart(
            cluster,
            &repo_root().join("charts").join(spec.name),
            &release,
            spec.release_namespace,
            &values,
        );
        let kubeconfig = service_account_kubeconfig(
            cluster,
            spec.release_namespace,
            &chart.service_account,
            &chart.rbac,
        )
        .await;
        let mut args = vec!["--namespaces".to_string(), spec.namespaces.join(",")];
        args.extend(spec.args.iter().cloned());
        let metrics_port = free_port();
        let process = spawn(spec.name, &kubeconfig, metrics_port, &chart.env, &args);
        Self {
            name: spec.name.to_string(),
            service_account: format!(
                "system:serviceaccount:{}:{}",
                spec.release_namespace, chart.service_account
            ),
            kubeconfig,
            metrics_port,
            env: chart.env,
            args,
            process,
        }
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the process again with the same arguments (after [`Self::kill`]).
    pub fn restart(&mut self) {
        self.process.kill();
        self.process = spawn(
            &self.name,
            &self.kubeconfig,
            self.metrics_port,
            &self.env,
            &self.args,
        );
    }

    /// The Prometheus text of `/metrics` (empty while the process is not serving).
    pub fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics").unwrap_or_default()
    }

    /// The value of one sample of `/metrics`, e.g. `nbg_api_requests_total{verb="patch"}`.
    pub fn metric(&self, sample: &str) -> Option<f64> {
        metric_value(&self.metrics(), sample)
    }
}

fn short(name: &str) -> String {
    name.split('-').map(|w| &w[..1.min(w.len())]).collect()
}

fn spawn(
    name: &str,
    kubeconfig: &std::path::Path,
    port: u16,
    env: &[(String, String)],
    args: &[String],
) -> LocalProcess {
    let mut cmd = Command::new(workspace_binary(name));
    // The chart's environment, then what a local process needs differently (arguments win
    // over the environment).
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "info,kube=warn")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .args(args);
    LocalProcess::spawn(name, cmd)
}

/// A plain HTTP/1.0 GET on localhost.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

/// One sample's value in Prometheus text; summed when the sample is a prefix of several.
pub fn metric_value(text: &str, sample: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            let matches = name == sample
                || (sample.ends_with('}')
                    && name.starts_with(sample.trim_end_matches('}'))
                    && name.ends_with('}'));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_and_summed_by_label_prefix() {
        let text = "# HELP x\nnbg_api_requests_total{verb=\"patch\"} 3\nnbg_api_requests_total{verb=\"read\"} 4\nnbg_up 1\n";
        assert_eq!(
            metric_value(text, "nbg_api_requests_total{verb=\"patch\"}"),
            Some(3.0)
        );
        assert_eq!(metric_value(text, "nbg_up"), Some(1.0));
        assert_eq!(metric_value(text, "nbg_api_requests_total{}"), Some(7.0));
        assert_eq!(metric_value(text, "nbg_other"), None);
    }
}
