//! Running papermill with a hard deadline. On timeout papermill and every process below it are
//! stopped: jupyter_client starts the kernel in a session of its own, so killing papermill's
//! process group alone would leave the kernel running; its descendants are found through /proc.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::stop::Stop;

/// How papermill ended.
#[derive(Debug, Clone)]
pub struct Execution {
    /// Exit code; `None` when killed.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// Stopped by SIGTERM/SIGINT.
    pub stopped: bool,
    /// The last lines papermill wrote to stderr.
    pub stderr_tail: String,
    pub took: Duration,
}

/// Every process below `root`, from /proc's parent links.
fn descendants(root: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // The command name may contain spaces; fields after its closing parenthesis are fixed.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if let Some(ppid) = ppid {
                parents.push((pid, ppid));
            }
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

fn kill_tree(root: i32, signal: Signal) {
    for pid in descendants(root) {
        let _ = killpg(Pid::from_raw(pid), signal);
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
    }
    let _ = killpg(Pid::from_raw(root), signal);
}

/// True while `pid` exists and is not a zombie.
pub fn is_running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|s| s != "Z"))
        })
        .unwrap_or(false)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One papermill run.
#[derive(Debug, Clone)]
pub struct Papermill<'a> {
    pub python: &'a str,
    pub input: &'a Path,
    pub output: &'a Path,
    /// The kernel's working directory.
    pub cwd: &'a Path,
    /// `--kernel`, for notebooks without a kernelspec.
    pub kernel: Option<&'a str>,
    /// Papermill's `-p NAME VALUE` each.
    pub parameters: &'a std::collections::BTreeMap<String, String>,
    pub deadline: Duration,
    /// Set for papermill and so for its kernel (IPython's profile of the output checks).
    pub env: Vec<(&'static str, PathBuf)>,
}

/// Runs `python -m papermill input output` in `cwd`, stopping it at the deadline.
pub fn run_papermill(p: &Papermill<'_>, stop: &Stop) -> std::io::Result<Execution> {
    let Papermill {
        python,
        input,
        output,
        cwd,
        kernel,
        deadline,
        ..
    } = *p;
    let started = Instant::now();
    let log_path = output.with_extension("papermill.log");
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = Command::new(python);
    cmd.args(["-m", "papermill"])
        .arg(input)
        .arg(output)
        .arg("--cwd")
        .arg(cwd)
        .args(["--no-progress-bar", "--request-save-on-cell-execute"])
        // papermill gives the kernel 60 s to start, then fails the run as if the node were
        // broken; on a loaded node a kernel can take longer, and the run's deadline bounds it
        // anyway. (`--start_timeout`: the spelling papermill 1.x and 2.x both accept.)
        .arg("--start_timeout")
        .arg(deadline.as_secs().max(1).to_string());
    if let Some(k) = kernel {
        cmd.args(["--kernel", k]);
    }
    for (name, value) in p.parameters {
        cmd.arg("-p").arg(name).arg(value);
    }
    cmd.envs(p.env.iter().map(|(k, v)| (*k, v.as_os_str())));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0);
    let mut child = cmd.spawn()?;
    let pgid = i32::try_from(child.id()).map(Pid::from_raw).ok();
    let mut timed_out = false;
    let mut stopped = false;
    let status = stop.graceful(|| -> std::io::Result<_> {
        Ok(loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            stopped = stop.requested();
            if stopped || started.elapsed() >= deadline {
                timed_out = !stopped;
                if let Some(pg) = pgid {
                    // Collected before papermill dies: afterwards the kernel is re-parented.
                    let tree = descendants(pg.as_raw());
                    kill_tree(pg.as_raw(), Signal::SIGTERM);
                    let grace = Instant::now();
                    while grace.elapsed() < Duration::from_secs(2) {
                        if child.try_wait()?.is_some() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    kill_tree(pg.as_raw(), Signal::SIGKILL);
                    for pid in &tree {
                        let _ = killpg(Pid::from_raw(*pid), Signal::SIGKILL);
                        let _ = nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGKILL);
                    }
                    // Return only once they are gone, so "stopped" means stopped.
                    let waited = Instant::now();
                    while tree.iter().any(|p| is_running(*p))
                        && waited.elapsed() < Duration::from_secs(5)
                    {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        })
    })?;
    let stderr = std::fs::read_to_string(&log_path).unwrap_or_default();
    Ok(Execution {
        exit_code: status.and_then(|s| s.code()),
        timed_out,
        stopped,
        stderr_tail: tail(&stderr, 8),
        took: started.elapsed(),
    })
}
