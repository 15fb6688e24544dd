//! The short form of `hack/just chaos`: the five controllers together for two minutes under
//! SIGKILLs, API server restarts and etcd pauses, with real notebook runs and hostile objects;
//! every invariant must hold. `NBG_CHAOS_SEED` replays a run; `NBG_CHAOS_MINUTES` lengthens it.

use std::time::Duration;

use nbg_e2e::chaos::{self, ChaosConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_five_controllers_lose_nothing_and_repeat_nothing_under_faults() {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let seed = env("NBG_CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64)
    });
    let config = ChaosConfig {
        duration: Duration::from_secs(env("NBG_CHAOS_MINUTES").map_or(120, |m| m * 60)),
        seed,
        namespaces: 3,
        create_every: Duration::from_secs(3),
        // Beside the other lanes of the test command, on 2 cores.
        max_running: 8,
        fault_every: Duration::from_secs(8),
    };
    let report = chaos::run(&config).await.expect("the chaos run");
    report.print();
    assert_eq!(
        report.violations(),
        0,
        "seed {seed} (the report above); the first violations:\n{}",
        report.violations_summary(5)
    );
    assert!(
        report.faults.apiserver_restarts + report.faults.etcd_pauses > 0
            && report.faults.kills.values().sum::<usize>() > 0,
        "faults were injected: {}",
        report.faults
    );
}
