//! A control plane of one test's own (`hack/local-cluster.sh` with its own state directory and
//! ports), for tests that stop and restart the API server without disturbing the shared one.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::harness::cluster::{Cluster, repo_root};
use crate::harness::process::free_port;

pub struct PrivateControlPlane {
    pub cluster: Cluster,
    dir: PathBuf,
    env: Vec<(String, String)>,
    apiserver_port: u16,
    /// The components this test started again, with their command lines: to reap them when
    /// they are killed, and to start them again when they exit.
    restarted:
        std::sync::Mutex<std::collections::HashMap<String, (std::process::Child, Vec<String>)>>,
}

impl PrivateControlPlane {
    /// Starts etcd, kube-apiserver (with `apiserver_args` added) and kube-controller-manager
    /// under `target/<name>` (`target/<name>-<cell>` in an Argo CD configuration of the matrix,
    /// `NBG_ARGOCD_CELL`), and installs the project's and the test-only CRDs.
    pub fn start(name: &str, apiserver_args: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_env(name, apiserver_args, &[])
    }

    /// [`PrivateControlPlane::start`] with more environment for `hack/local-cluster.sh`
    /// (`NBG_NODE=real` for a real node).
    pub fn start_with_env(
        name: &str,
        apiserver_args: &[&str],
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = repo_root()
            .join("target")
            .join(crate::harness::cluster::per_argocd_cell(name));
        let apiserver_port = free_port();
        let mut env = vec![
            ("NBG_CLUSTER_DIR".to_string(), dir.display().to_string()),
            ("NBG_ETCD_PORT".to_string(), free_port().to_string()),
            ("NBG_ETCD_PEER_PORT".to_string(), free_port().to_string()),
            ("NBG_APISERVER_PORT".to_string(), apiserver_port.to_string()),
            (
                "NBG_APISERVER_EXTRA_ARGS".to_string(),
                apiserver_args.join(" "),
            ),
        ];
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string())),
        );
        let script = repo_root().join("hack/local-cluster.sh");
        // A plane left by an interrupted run of the same test.
        let _ = Command::new(&script)
            .arg("down")
            .envs(env.iter().cloned())
            .status();
        let status = Command::new(&script)
            .arg("up")
            .envs(env.iter().cloned())
            .status()
            .context("running hack/local-cluster.sh up")?;
        if !status.success() {
            bail!("hack/local-cluster.sh up failed for the control plane in {dir:?}");
        }
        let cluster = Cluster::at(&dir)?;
        Ok(Self {
            cluster,
            dir,
            env,
            apiserver_port,
            restarted: std::sync::Mutex::default(),
        })
    }

    /// The plane's state directory (kubeconfig, pki, logs, the node's state).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    fn pid_file(&self, component: &str) -> PathBuf {
        self.dir.join(format!("pids/{component}.pid"))
    }

    /// Whether `/readyz` answers ok.
    pub fn apiserver_ready(&self) -> bool {
        let token = std::fs::read_to_string(self.dir.join("pki/tokens.csv"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.split(',').nth(1) == Some("admin"))
                    .and_then(|l| l.split(',').next().map(str::to_string))
            })
            .unwrap_or_default();
        Command::new("curl")
            .args(["-sf", "--max-time", "2", "--cacert"])
            .arg(self.dir.join("pki/ca.crt"))
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .arg(format!("https://127.0.0.1:{}/readyz", self.apiserver_port))
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"ok"))
    }

    /// SIGKILLs kube-apiserver, waits `down`, starts it again with the same command line (etcd
    /// keeps its data), and returns the moment `/readyz` answered ok again. Then restarts
    /// kube-controller-manager, as a control-plane upgrade does: otherwise its own informers
    /// (client-go's reflector backoff) take minutes to resume, and the Deployments' status with them.
    pub fn restart_apiserver(&self, down: Duration) -> anyhow::Result<Instant> {
        self.restart("kube-apiserver", down)?;
        let deadline = Instant::now() + Duration::from_secs(90);
        while !self.apiserver_ready() {
            if Instant::now() > deadline {
                bail!("kube-apiserver not ready within 90 s of its restart");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let ready = Instant::now();
        self.restart("kube-controller-manager", Duration::ZERO)?;
        Ok(ready)
    }

    /// Stops `component` (SIGSTOP) for `paused`, then lets it go on (SIGCONT): etcd stalling,
    /// as under disk pressure.
    pub fn pause(&self, component: &str, paused: Duration) -> anyhow::Result<()> {
        let pid = std::fs::read_to_string(self.pid_file(component))?
            .trim()
            .to_string();
        let signal = |sig: &str| {
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .with_context(|| format!("kill {sig} {component}"))
        };
        signal("-STOP")?;
        std::thread::sleep(paused);
        signal("-CONT")?;
        Ok(())
    }

    /// SIGKILLs `component`, waits `down`, and starts it again with the same command line.
    fn restart(&self, component: &str, down: Duration) -> anyhow::Result<()> {
        let pid: i32 = std::fs::read_to_string(self.pid_file(component))?
            .trim()
            .parse()
            .with_context(|| format!("{component} pid"))?;
        let argv: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))?
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if argv.is_empty() {
            bail!("{component} {pid} has no command line");
        }
        // It runs in a session of its own (setsid): its process group is its pid.
        Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status()?;
        if let Some((mut child, _)) = self
            .restarted
            .lock()
            .ok()
            .and_then(|mut c| c.remove(component))
        {
            let _ = child.wait();
        }
        let gone = Instant::now() + Duration::from_secs(10);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < gone {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(down);
        self.spawn(component, argv)
    }

    /// Starts again each component this plane restarted that has exited since, as the kubelet
    /// starts a static pod again: kube-controller-manager exits when the API server is not
    /// healthy within 10 s of its start ("failed to wait for apiserver being healthy" on a loaded
    /// machine), and then no Deployment's status moved again. Returns those started.
    pub fn revive_exited(&self) -> Vec<String> {
        let exited: Vec<(String, Vec<String>)> = self
            .restarted
            .lock()
            .map(|mut c| {
                let gone: Vec<String> = c
                    .iter_mut()
                    .filter_map(|(name, (child, _))| {
                        matches!(child.try_wait(), Ok(Some(_))).then(|| name.clone())
                    })
                    .collect();
                gone.into_iter()
                    .filter_map(|name| c.remove(&name).map(|(_, argv)| (name, argv)))
                    .collect()
            })
            .unwrap_or_default();
        exited
            .into_iter()
            .filter_map(|(name, argv)| self.spawn(&name, argv).ok().map(|()| name))
            .collect()
    }

    /// Starts `component` with `argv`, its output appended to its log.
    fn spawn(&self, component: &str, argv: Vec<String>) -> anyhow::Result<()> {
        let Some((program, args)) = argv.split_first() else {
            bail!("{component} has no command line");
        };
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join(format!("logs/{component}.log")))?;
        let child = Command::new("setsid")
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {component} again"))?;
        std::fs::write(self.pid_file(component), child.id().to_string())?;
        if let Ok(mut c) = self.restarted.lock() {
            c.insert(component.to_string(), (child, argv));
        }
        Ok(())
    }
}

impl Drop for PrivateControlPlane {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("hack/local-cluster.sh"))
            .arg("down")
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .status();
    }
}
