//! The faults a chaos run injects, at seeded random moments: a controller SIGKILLed (as an OOM
//! kill) and started again after a moment, kube-apiserver restarted (a control-plane upgrade),
//! etcd paused. A controller that exits on its own is a crash: counted, reported, and started
//! again so the run goes on.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::harness::control_plane::PrivateControlPlane;
use crate::harness::controller::ChartedController;

use super::workload::Rng;

#[derive(Debug, Clone, Default)]
pub struct FaultCounts {
    /// SIGKILLs per controller.
    pub kills: BTreeMap<String, usize>,
    pub apiserver_restarts: usize,
    pub etcd_pauses: usize,
    /// Controllers that exited without being killed, with the end of their output.
    pub crashes: Vec<(String, String)>,
    /// Times the test's kubelet double had to be started again (the harness, not a product).
    pub kubelet_restarts: usize,
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kills: usize = self.kills.values().sum();
        let per: Vec<String> = self.kills.iter().map(|(c, n)| format!("{c} {n}")).collect();
        write!(
            f,
            "{kills} SIGKILLs ({}), {} API server restarts, {} etcd pauses, {} crashes",
            per.join(", "),
            self.apiserver_restarts,
            self.etcd_pauses,
            self.crashes.len()
        )
    }
}

pub struct Faults {
    rng: Rng,
    every: Duration,
    next: Instant,
    /// A controller killed, to be started again at this moment.
    down: Option<(usize, Instant)>,
    pub counts: FaultCounts,
}

impl Faults {
    pub fn new(seed: u64, every: Duration) -> Self {
        Self {
            rng: Rng::new(seed),
            every,
            next: Instant::now() + every,
            down: None,
            counts: FaultCounts::default(),
        }
    }

    /// A random length between `lo` and `hi` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.rng.below(hi.saturating_sub(lo).max(1)))
    }

    /// Injects what is due now.
    pub async fn tick(
        &mut self,
        plane: &PrivateControlPlane,
        controllers: &mut [ChartedController],
    ) {
        if let Some((i, at)) = self.down
            && Instant::now() >= at
        {
            controllers[i].restart();
            self.down = None;
        }
        self.check_crashes(controllers);
        if Instant::now() < self.next || self.down.is_some() {
            return;
        }
        let every = self.every.as_millis() as u64;
        let wait = self.millis(every / 2, every * 3 / 2);
        self.next = Instant::now() + wait;
        match self.rng.below(4) {
            0 | 1 => {
                let i = self.rng.below(controllers.len() as u64) as usize;
                controllers[i].kill();
                *self
                    .counts
                    .kills
                    .entry(controllers[i].name.clone())
                    .or_default() += 1;
                let back = self.millis(200, 3_000);
                self.down = Some((i, Instant::now() + back));
            }
            2 => {
                let down = self.millis(1_000, 6_000);
                // Blocking: the API server is down meanwhile anyway.
                let restarted =
                    tokio::task::block_in_place(|| plane.restart_apiserver(down).is_ok());
                if restarted {
                    self.counts.apiserver_restarts += 1;
                }
            }
            _ => {
                let paused = self.millis(1_000, 5_000);
                if tokio::task::block_in_place(|| plane.pause("etcd", paused).is_ok()) {
                    self.counts.etcd_pauses += 1;
                }
            }
        }
    }

    /// Any controller that exited without being killed crashed: recorded and started again.
    pub fn check_crashes(&mut self, controllers: &mut [ChartedController]) {
        for (i, c) in controllers.iter_mut().enumerate() {
            if self.down.is_some_and(|(d, _)| d == i) {
                continue;
            }
            if !c.process.is_running() {
                let out = c.process.output();
                let tail: String = out
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join(" | ");
                self.counts.crashes.push((c.name.clone(), tail));
                c.restart();
            }
        }
    }
}
