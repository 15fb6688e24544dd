//! What the benchmarks share: percentiles, a latency line, a process's resident memory, a
//! controller's API requests by verb, and waiting for a controller to have seen every object.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::harness::controller::{ChartedController, metric_value};

/// What every controller benchmark takes besides its own workload: how hard the status writes
/// come, and extra flags for the controller.
#[derive(clap::Args, Debug)]
pub struct Load {
    /// Status writes in flight at once. nvj-validator writes them from its reconciles, 16 at
    /// once per namespace by default; more is a stress test.
    #[arg(long, default_value_t = 16)]
    pub writers: usize,
    /// More arguments for the controller, e.g. `--controller-arg=--max-concurrent-reconciles=32`.
    #[arg(long = "controller-arg")]
    pub controller_args: Vec<String>,
}

impl Load {
    /// The controller's command line: `--log-filter log_filter`, then the extra arguments.
    pub fn args(&self, log_filter: &str) -> Vec<String> {
        let mut args = vec!["--log-filter".to_string(), log_filter.to_string()];
        args.extend(self.controller_args.iter().cloned());
        args
    }
}

/// When each object was first seen in a given state, by name.
pub type FirstSeen = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>>;

/// Watches `api` and records, by name, when each object is first seen with `seen` true; abort
/// the handle to stop.
pub fn watch_first_seen<K>(
    api: kube::Api<K>,
    seen: impl Fn(&K) -> bool + Send + 'static,
) -> (FirstSeen, tokio::task::JoinHandle<()>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    use futures::StreamExt;
    let first: FirstSeen = FirstSeen::default();
    let record = first.clone();
    let handle = tokio::spawn(
        kube::runtime::watcher(api, kube::runtime::watcher::Config::default()).for_each(move |e| {
            if let Ok(kube::runtime::watcher::Event::Apply(o)) = e
                && seen(&o)
                && let Ok(mut m) = record.lock()
            {
                m.entry(o.meta().name.clone().unwrap_or_default())
                    .or_insert_with(Instant::now);
            }
            futures::future::ready(())
        }),
    );
    (first, handle)
}

/// Creates `n` objects with `make(i)`, 16 requests at once (a burst the API server takes without
/// throttling), and says how long it took.
pub async fn create_all<T, F, Fut>(n: usize, what: &str, make: F) -> anyhow::Result<Vec<T>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    use futures::StreamExt;
    let started = Instant::now();
    let mut created = futures::stream::iter((0..n).map(make)).buffer_unordered(16);
    let mut out = Vec::with_capacity(n);
    while let Some(r) = created.next().await {
        out.push(r?);
    }
    println!(
        "setup: {what} created in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(out)
}

/// The controller's API requests so far, by verb (from its own request counter).
pub fn api_requests(controller: &ChartedController) -> BTreeMap<String, f64> {
    let text = controller.metrics();
    ["read", "watch", "create", "patch", "update", "delete"]
        .into_iter()
        .filter_map(|verb| {
            metric_value(&text, &format!("nbg_api_requests_total{{verb=\"{verb}\"}}"))
                .map(|v| (verb.to_string(), v))
        })
        .collect()
}

/// Waits until the controller has reconciled at least `n` objects (it has looked at each).
pub async fn wait_reconciled(controller: &ChartedController, n: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let sample = format!("nbg_reconciles_total{{controller=\"{}\"}}", controller.name);
    while controller.metric(&sample).unwrap_or(0.0) < n as f64 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "the controller did not start (log {})",
            controller.process.log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Resident memory of a process, in KiB (0 when it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The nearest-rank percentile `p` (0..=1) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Prints `label: n=.. p50=.. p90=.. p99=.. max=..` in milliseconds.
pub fn report(label: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{label}: n={} p50={:.1} ms p90={:.1} ms p99={:.1} ms max={:.1} ms",
        v.len(),
        percentile(&v, 0.5).as_secs_f64() * 1e3,
        percentile(&v, 0.9).as_secs_f64() * 1e3,
        percentile(&v, 0.99).as_secs_f64() * 1e3,
        v.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_millis(51));
        assert_eq!(percentile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
