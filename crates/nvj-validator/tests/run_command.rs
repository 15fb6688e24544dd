//! `nvj-validator run` on real notebooks with real papermill and a real Jupyter kernel (the
//! project's pinned Python environment, created by hack/python-env.sh when missing).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{dir, notebook, python, run};
use serde_json::Value;

#[test]
fn a_passing_notebook_reports_every_cell() {
    let d = dir("pass");
    let nb = d.join("pass.ipynb");
    notebook(&nb, &["x = 2", "print('x is', x)", "x * 21"]);
    let (code, report) = run(&[nb.to_str().unwrap_or_default()]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["outcome"], "Succeeded");
    let cells = report["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 3);
    assert!(cells.iter().all(|c| c["status"] == "Success"));
    assert_eq!(cells[2]["output"], "42");
}

#[test]
fn the_third_cell_raising_is_reported_at_cell_3() {
    let d = dir("fail");
    let nb = d.join("fail.ipynb");
    notebook(
        &nb,
        &[
            "a = 1",
            "b = 2",
            "raise ValueError('training data is empty')",
            "print('never')",
        ],
    );
    let (code, report) = run(&[nb.to_str().unwrap_or_default()]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["outcome"], "CellFailed");
    let message = report["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("cell 3 (cellIndex 2) raised ValueError: training data is empty"),
        "{message}"
    );
    let cells = report["cells"].as_array().expect("cells");
    assert_eq!(cells[2]["status"], "Failure");
    assert!(
        cells[2]["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("Traceback"),
        "bounded traceback included"
    );
    assert_eq!(cells[3]["status"], "Skipped");
}

#[test]
fn a_kernel_that_dies_fails_the_cell_it_died_in_and_skips_the_rest() {
    let d = dir("dead-kernel");
    let nb = d.join("dead.ipynb");
    notebook(
        &nb,
        &[
            "a = 1",
            "import os, signal\nprint('loading')\nos.kill(os.getpid(), signal.SIGKILL)",
            "print('never')",
        ],
    );
    let (code, report) = run(&[nb.to_str().unwrap_or_default()]);
    assert_eq!(report["outcome"], "CellFailed", "{report}");
    assert_eq!(code, 1, "{report}");
    let message = report["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("cell 2 (cellIndex 1) raised DeadKernel: the kernel died"),
        "{message}"
    );
    let cells = report["cells"].as_array().expect("cells");
    let statuses: Vec<&str> = cells
        .iter()
        .map(|c| c["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(statuses, ["Success", "Failure", "Skipped"], "{report}");
}

#[test]
fn golden_comparison_within_and_beyond_tolerance() {
    let d = dir("golden");
    let golden_src = d.join("golden-src.ipynb");
    notebook(
        &golden_src,
        &[
            "import datetime; print('trained at', datetime.datetime.now().isoformat())",
            "print('accuracy: 0.9512')",
        ],
    );
    // The golden notebook is an executed copy.
    let golden = d.join("golden.ipynb");
    let (code, _) = run(&[
        golden_src.to_str().unwrap_or_default(),
        "--output",
        golden.to_str().unwrap_or_default(),
    ]);
    assert_eq!(code, 0);

    let close = d.join("close.ipynb");
    notebook(
        &close,
        &[
            "import datetime; print('trained at', datetime.datetime.now().isoformat())",
            "print('accuracy: 0.9517')",
        ],
    );
    let (code, report) = run(&[
        close.to_str().unwrap_or_default(),
        "--golden",
        golden.to_str().unwrap_or_default(),
        "--tolerance",
        "0.001",
    ]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["comparison"]["result"], "matched");

    let far = d.join("far.ipynb");
    notebook(
        &far,
        &[
            "import datetime; print('trained at', datetime.datetime.now().isoformat())",
            "print('accuracy: 0.9612')",
        ],
    );
    let (code, report) = run(&[
        far.to_str().unwrap_or_default(),
        "--golden",
        golden.to_str().unwrap_or_default(),
        "--tolerance",
        "0.001",
    ]);
    assert_eq!(code, 2, "{report}");
    assert_eq!(report["outcome"], "GoldenMismatch");
    let diff = &report["comparison"]["diffs"][0];
    assert_eq!(diff["cellIndex"], 1);
    assert!(
        diff["diff"]
            .as_str()
            .unwrap_or_default()
            .contains("0.9612 differs from the golden 0.9512"),
        "{diff}"
    );
}

#[test]
fn a_timeout_stops_the_notebook_and_its_kernel_early() {
    let d = dir("timeout");
    let nb = d.join("slow.ipynb");
    notebook(
        &nb,
        &[
            "import os; open('kernel.pid', 'w').write(str(os.getpid()))",
            "import time; time.sleep(120)",
        ],
    );
    let started = Instant::now();
    // Room for papermill and the kernel to start on a loaded machine (4 s was not, once).
    let (code, report) = run(&[nb.to_str().unwrap_or_default(), "--timeout", "12s"]);
    assert_eq!(code, 3, "{report}");
    assert_eq!(report["outcome"], "Timeout");
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        report["message"]
            .as_str()
            .unwrap_or_default()
            .contains("cell 2 (cellIndex 1)"),
        "{report}"
    );
    let pid = std::fs::read_to_string(d.join("kernel.pid")).expect("kernel wrote its pid");
    let pid: i32 = pid.trim().parse().expect("pid");
    assert!(
        !nvj_validator::executor::execute::is_running(pid),
        "the kernel {pid} is still running"
    );
}

#[test]
fn sigterm_stops_the_notebook_and_its_kernel_at_once() {
    let d = dir("sigterm");
    let nb = d.join("slow.ipynb");
    notebook(
        &nb,
        &[
            "import os; open('kernel.pid', 'w').write(str(os.getpid()))",
            "import time; time.sleep(120)",
        ],
    );
    let child = Command::new(env!("CARGO_BIN_EXE_nvj-validator"))
        .arg("run")
        .arg(&nb)
        .args(["--json", "--python", python()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run nvj-validator");
    let pid_file = d.join("kernel.pid");
    let waited = Instant::now();
    while !pid_file.exists() && waited.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let runner = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let signalled = Instant::now();
    nix::sys::signal::kill(runner, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let out = child.wait_with_output().expect("wait");
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?} after SIGTERM");
    let report: Value = serde_json::from_slice(&out.stdout).expect("a report");
    assert_eq!(report["outcome"], "Infrastructure", "{report}");
    let message = report["message"].as_str().unwrap_or_default();
    assert!(message.contains("stopped by a signal"), "{message}");
    assert!(message.contains("cell 2 (cellIndex 1)"), "{message}");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("kernel pid")
        .trim()
        .parse()
        .expect("pid");
    assert!(
        !nvj_validator::executor::execute::is_running(pid),
        "the kernel {pid} is still running"
    );
}

/// A timeout that ends the run before papermill wrote the notebook (papermill and the kernel still
/// starting) is named as the timeout, with what to change - not as papermill's missing output.
#[test]
fn a_timeout_before_papermill_wrote_anything_names_the_timeout() {
    let d = dir("early-timeout");
    let nb = d.join("any.ipynb");
    notebook(&nb, &["1 + 1"]);
    let (code, report) = run(&[nb.to_str().unwrap_or_default(), "--timeout", "1ms"]);
    assert_eq!(code, 3, "{report}");
    assert_eq!(report["outcome"], "Timeout");
    let message = report["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("ran longer than the timeout 1ms")
            && message.contains("before papermill wrote any output")
            && message.contains("spec.timeout"),
        "{report}"
    );
}

/// papermill's own 60-second limit on a kernel's start would fail a run on a loaded node long
/// before its timeout: the runner gives the kernel the run's whole deadline. Proved through a
/// `--python` that records its arguments and runs the real papermill (which refuses an option
/// it does not know).
#[test]
fn the_kernel_may_take_the_runs_whole_timeout_to_start() {
    let d = dir("start-timeout");
    let nb = d.join("pass.ipynb");
    notebook(&nb, &["1 + 1"]);
    let args_file = d.join("papermill-args");
    let wrapper = d.join("python");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nexec '{}' \"$@\"\n",
            args_file.display(),
            python()
        ),
    )
    .expect("write the wrapper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nvj-validator"))
        .arg("run")
        .arg(&nb)
        .args(["--timeout", "3m", "--json", "--python"])
        .arg(&wrapper)
        .output()
        .expect("run nvj-validator");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(
        report["outcome"],
        "Succeeded",
        "{report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = std::fs::read_to_string(&args_file).expect("the wrapper ran");
    let papermill = calls
        .lines()
        .find(|l| l.starts_with("-m papermill"))
        .unwrap_or_else(|| panic!("papermill not run through --python: {calls}"));
    assert!(papermill.contains(" --start_timeout 180"), "{papermill}");
}
