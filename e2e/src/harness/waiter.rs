//! `wave-marker wait` as a hook or pipeline step runs it: a process of the workspace's binary,
//! with a kubeconfig, judged by its exit code and output.

use std::process::Command;
use std::time::Duration;

use crate::harness::cluster::workspace_binary;
use crate::harness::process::LocalProcess;

pub struct Waiter(LocalProcess);

impl Waiter {
    pub fn start(kubeconfig: &std::path::Path, args: &[&str]) -> Self {
        let mut cmd = Command::new(workspace_binary("wave-marker"));
        cmd.arg("wait")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args);
        Waiter(LocalProcess::spawn("wave-marker-wait", cmd))
    }

    /// The exit code and the output, once it exits.
    pub fn finish(mut self, within: Duration) -> (i32, String) {
        let status = self.0.wait_exit(within);
        let output = self.0.output();
        let status =
            status.unwrap_or_else(|| panic!("wait did not exit within {within:?}:\n{output}"));
        (status.code().unwrap_or(-1), output)
    }

    pub fn is_running(&mut self) -> bool {
        self.0.is_running()
    }

    /// What it printed so far.
    pub fn output(&self) -> String {
        self.0.output()
    }
}
