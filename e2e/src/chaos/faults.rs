//! The faults a chaos run injects, at seeded random moments: a controller replica SIGKILLed (as
//! an OOM kill) and started again after a moment - any replica, or the one holding the Lease of a
//! controller that runs two - kube-apiserver restarted (a control-plane upgrade), etcd paused. A
//! controller that exits on its own is a crash: counted, reported, and started again so the run
//! goes on.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};

use crate::harness::control_plane::PrivateControlPlane;
use crate::harness::controller::ChartedController;

use super::workload::Rng;

/// One process of a controller.
pub struct Replica {
    pub controller: ChartedController,
    /// Its `--leader-identity`: the controller's name, with `-<n>` when it runs several.
    pub identity: String,
    /// How many replicas of its controller run.
    pub of: usize,
}

#[derive(Debug, Clone, Default)]
pub struct FaultCounts {
    /// SIGKILLs per replica.
    pub kills: BTreeMap<String, usize>,
    /// Of those, kills of the replica that held its controller's Lease, chosen because it did.
    pub leader_kills: usize,
    pub apiserver_restarts: usize,
    pub etcd_pauses: usize,
    /// Controllers that exited without being killed, with the end of their output.
    pub crashes: Vec<(String, String)>,
    /// Control-plane components started again after they exited (as a kubelet would).
    pub control_plane_revivals: Vec<String>,
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kills: usize = self.kills.values().sum();
        let per: Vec<String> = self.kills.iter().map(|(c, n)| format!("{c} {n}")).collect();
        write!(
            f,
            "{kills} SIGKILLs ({}; {} of them of the leader of two replicas), {} API server restarts, {} etcd pauses, {} crashes, {} control-plane components started again after exiting{}",
            per.join(", "),
            self.leader_kills,
            self.apiserver_restarts,
            self.etcd_pauses,
            self.crashes.len(),
            self.control_plane_revivals.len(),
            if self.control_plane_revivals.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.control_plane_revivals.join(", "))
            }
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
        client: &Client,
        lease_namespace: &str,
        replicas: &mut [Replica],
    ) {
        if let Some((i, at)) = self.down
            && Instant::now() >= at
        {
            replicas[i].controller.restart();
            self.down = None;
        }
        self.check_crashes(replicas);
        self.revive_control_plane(plane);
        if Instant::now() < self.next || self.down.is_some() {
            return;
        }
        let every = self.every.as_millis() as u64;
        let wait = self.millis(every / 2, every * 3 / 2);
        self.next = Instant::now() + wait;
        match self.rng.below(5) {
            0 | 1 => {
                let i = self.rng.below(replicas.len() as u64) as usize;
                self.kill(replicas, i);
            }
            2 => {
                // The leader of a controller that runs two replicas: the other must take over.
                let several: Vec<&str> = replicas
                    .iter()
                    .filter(|r| r.of > 1)
                    .map(|r| r.controller.name.as_str())
                    .collect();
                if several.is_empty() {
                    return;
                }
                let name = several[self.rng.below(several.len() as u64) as usize].to_string();
                let leases: Api<Lease> = Api::namespaced(client.clone(), lease_namespace);
                // Unreadable during an outage: the next fault is something else.
                let holder =
                    match tokio::time::timeout(Duration::from_secs(2), leases.get_opt(&name)).await
                    {
                        Ok(Ok(Some(lease))) => lease.spec.and_then(|s| s.holder_identity),
                        _ => None,
                    };
                if let Some(i) = holder.and_then(|h| replicas.iter().position(|r| r.identity == h))
                {
                    self.kill(replicas, i);
                    self.counts.leader_kills += 1;
                }
            }
            3 => {
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

    /// SIGKILLs replica `i`; it is started again 0.2-3 s later.
    fn kill(&mut self, replicas: &mut [Replica], i: usize) {
        replicas[i].controller.kill();
        *self
            .counts
            .kills
            .entry(replicas[i].identity.clone())
            .or_default() += 1;
        let back = self.millis(200, 3_000);
        self.down = Some((i, Instant::now() + back));
    }

    /// A control-plane component that exited after a restart (kube-controller-manager gives up
    /// when the API server is not healthy within 10 s) is started again, as the kubelet starts a
    /// static pod again; counted.
    pub fn revive_control_plane(&mut self, plane: &PrivateControlPlane) {
        self.counts
            .control_plane_revivals
            .extend(plane.revive_exited());
    }

    /// Any replica that exited without being killed crashed: recorded and started again.
    pub fn check_crashes(&mut self, replicas: &mut [Replica]) {
        for (i, r) in replicas.iter_mut().enumerate() {
            if self.down.is_some_and(|(d, _)| d == i) {
                continue;
            }
            let c = &mut r.controller;
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
                self.counts.crashes.push((r.identity.clone(), tail));
                c.restart();
            }
        }
    }
}
