//! The executor: the code that executes a notebook and judges it. The same code runs inside
//! validation pods (`nvj-validator pod-run`, reporting through the termination message - see
//! [`crate::protocol`]) and on a notebook author's machine (`nvj-validator run`, printing the
//! verdict).

pub mod compare;
pub mod execute;
pub mod git;
pub mod notebook;
pub mod output_checks;
pub mod results;
pub mod stop;

use std::path::{Path, PathBuf};
use std::time::Duration;

use nbg_core::nvj::{ComparisonOutcome, NotebookSource, ValidationConfig};

use crate::protocol::report::{Outcome, RunReport};
use crate::protocol::{PodRunSpec, bounded};
use compare::CompareConfig;
use notebook::Notebook;

/// How to execute one notebook file.
#[derive(Debug, Clone)]
pub struct Execute<'a> {
    pub notebook: &'a Path,
    pub golden: Option<&'a Path>,
    pub comparison: &'a CompareConfig,
    /// The output checks (`spec.validationConfig`).
    pub checks: &'a ValidationConfig,
    /// Papermill parameters (`spec.notebook.parameters`).
    pub parameters: &'a std::collections::BTreeMap<String, String>,
    pub timeout: Duration,
    /// The timeout as the user wrote it, for messages (`30m`).
    pub timeout_text: &'a str,
    pub python: &'a str,
    /// Working directory of the kernel (the repository checkout in pods).
    pub cwd: &'a Path,
    /// Where the executed notebook is written.
    pub output: &'a Path,
    /// A directory of this run's own (the kernel's IPython profile and cell records).
    pub scratch: &'a Path,
    /// SIGTERM/SIGINT: papermill and its kernel are stopped and the run reports so.
    pub stop: &'a stop::Stop,
}

fn read_notebook(path: &Path) -> Result<Notebook, RunReport> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        RunReport::new(
            Outcome::InvalidInput,
            format!("cannot read notebook {shown}: {e}"),
        )
    })?;
    Notebook::parse(&shown, &text).map_err(|e| RunReport::new(Outcome::InvalidInput, e.to_string()))
}

fn kernel_of(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    // Papermill needs a kernel name; notebooks without a kernelspec run in python3.
    v.pointer("/metadata/kernelspec/name")
        .is_none()
        .then(|| "python3".to_string())
}

/// Executes a notebook and judges it: cells, then the golden comparison.
pub fn execute(x: &Execute<'_>) -> RunReport {
    if let Err(report) = read_notebook(x.notebook) {
        return report;
    }
    let golden = match x.golden.map(read_notebook).transpose() {
        Ok(g) => g,
        Err(report) => return report,
    };
    let kernel = kernel_of(x.notebook);
    let records_path = x.scratch.join("cell-records.jsonl");
    let mut env = Vec::new();
    if output_checks::needs_records(x.checks) {
        // The kernel records each cell's result and warnings (cell_records.py), loaded as a
        // startup file of an IPython profile of this run's own.
        let ipython = x.scratch.join("ipython");
        let startup = ipython.join("profile_default").join("startup");
        let written = std::fs::create_dir_all(&startup).and_then(|()| {
            std::fs::write(
                startup.join("00-notebook-gitops-cell-records.py"),
                output_checks::CELL_RECORDS_STARTUP,
            )
        });
        if let Err(e) = written {
            return RunReport::new(
                Outcome::Infrastructure,
                format!(
                    "cannot write the output checks' IPython profile in {}: {e}",
                    ipython.display()
                ),
            );
        }
        let _ = std::fs::remove_file(&records_path);
        env.push(("IPYTHONDIR", ipython));
        env.push(("NBG_CELL_RECORDS", records_path.clone()));
    }
    let papermill = execute::Papermill {
        python: x.python,
        input: x.notebook,
        output: x.output,
        cwd: x.cwd,
        kernel: kernel.as_deref(),
        parameters: x.parameters,
        deadline: x.timeout,
        env,
    };
    let run = match execute::run_papermill(&papermill, x.stop) {
        Ok(run) => run,
        Err(e) => {
            return RunReport::new(
                Outcome::Infrastructure,
                format!("cannot start papermill with {}: {e}", x.python),
            );
        }
    };
    let executed = std::fs::read_to_string(x.output)
        .ok()
        .and_then(|t| Notebook::parse("executed notebook", &t).ok());
    let Some(executed) = executed else {
        if run.timed_out {
            // Papermill writes the notebook before its first cell: the time went to starting
            // Python, papermill and the kernel (a loaded node, a slow image).
            return RunReport::new(
                Outcome::Timeout,
                format!(
                    "the notebook ran longer than the timeout {} and was stopped before papermill \
                     wrote any output, while papermill and the kernel were starting: give \
                     spec.timeout room for them",
                    x.timeout_text
                ),
            );
        }
        let why = run.stderr_tail.clone();
        let outcome = if why.contains("No such kernel") {
            Outcome::InvalidInput
        } else {
            Outcome::Infrastructure
        };
        return RunReport::new(
            outcome,
            format!(
                "papermill produced no executed notebook: {}",
                bounded(&why, 800)
            ),
        );
    };
    let end = if run.stopped {
        results::RunEnd::Stopped
    } else if run.timed_out {
        results::RunEnd::TimedOut
    } else if run.stderr_tail.contains("DeadKernelError") {
        results::RunEnd::KernelDied
    } else {
        results::RunEnd::Finished
    };
    let (cells, failure) = results::cell_results(&executed, end);
    let code_cells = cells.len();
    if run.stopped {
        let running = cells
            .iter()
            .find(|c| c.status == nbg_core::nvj::CellStatus::Failure)
            .map(|c| {
                format!(
                    " while running cell {} (cellIndex {})",
                    c.cell_index + 1,
                    c.cell_index
                )
            })
            .unwrap_or_default();
        // The pod is being deleted or evicted: not a verdict on the notebook.
        return RunReport::new(
            Outcome::Infrastructure,
            format!("the run was stopped by a signal (the pod was deleted or evicted){running}"),
        )
        .with_cells(cells);
    }
    if run.timed_out {
        let mut message = format!(
            "the notebook ran longer than the timeout {} and was stopped",
            x.timeout_text
        );
        if let Some(f) = &failure {
            message.push_str(&format!(
                " while running cell {} (cellIndex {})",
                f.index + 1,
                f.index
            ));
        }
        return RunReport::new(Outcome::Timeout, message).with_cells(cells);
    }
    if let Some(f) = failure {
        return RunReport::new(Outcome::CellFailed, bounded(&f.summary(), 1000)).with_cells(cells);
    }
    if run.exit_code != Some(0) {
        return RunReport::new(
            Outcome::Infrastructure,
            format!(
                "papermill exited with {:?}: {}",
                run.exit_code,
                bounded(&run.stderr_tail, 800)
            ),
        )
        .with_cells(cells);
    }
    let mut report = RunReport::new(
        Outcome::Succeeded,
        format!("all {code_cells} code cells succeeded"),
    )
    .with_cells(cells);
    if output_checks::any(x.checks) {
        let records = std::fs::read_to_string(&records_path).ok();
        if records.is_none() && output_checks::needs_records(x.checks) {
            report.outcome = Outcome::InvalidInput;
            report.message = "the kernel did not load the output checks' IPython startup file \
                              (IPYTHONDIR): the notebook's kernel must be IPython's (ipykernel)"
                .into();
            return report;
        }
        let records = output_checks::CellRecords::parse(&records.unwrap_or_default());
        let checked = output_checks::check(&executed, &records, x.checks);
        for cell in &mut report.cells {
            if let Some(checks) = checked.by_cell.get(&Some(cell.cell_index)) {
                cell.checks = checks.clone();
            }
        }
        if !checked.failures.is_empty() {
            report.outcome = Outcome::OutputCheckFailed;
            report.message = bounded(
                &format!(
                    "{} of {} output checks failed: {}",
                    checked.failures.len(),
                    checked.count,
                    checked.failures.join("; ")
                ),
                1000,
            );
            return report;
        }
        report.message.push_str(&format!(
            "; {} output checks passed{}",
            checked.count,
            if checked.passed_values.is_empty() {
                String::new()
            } else {
                format!(" ({})", checked.passed_values.join(", "))
            }
        ));
        report.message = bounded(&report.message, 1000);
    }
    if let Some(golden) = golden {
        let cmp = compare::compare(&executed, &golden, x.comparison);
        if cmp.result == ComparisonOutcome::Failed {
            let first = cmp.diffs.first().map(|d| {
                let why = d
                    .diff
                    .as_deref()
                    .and_then(|s| s.lines().next())
                    .unwrap_or("differs");
                format!(
                    "; first: cell {} (cellIndex {}): {why}",
                    d.cell_index + 1,
                    d.cell_index
                )
            });
            report.outcome = Outcome::GoldenMismatch;
            report.message = bounded(
                &format!(
                    "golden comparison failed: {} of {} cells differ{}",
                    cmp.mismatched_cells,
                    cmp.total_cells,
                    first.unwrap_or_default()
                ),
                1000,
            );
        } else {
            report.message.push_str(&format!(
                "; golden comparison matched {}/{} cells",
                cmp.matched_cells, cmp.total_cells
            ));
        }
        report.comparison = Some(cmp);
    }
    report
}

/// `30m`, `1h30m`, `45s` - the way `spec.timeout` is written.
pub fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sec > 0 || out.is_empty() {
        out.push_str(&format!("{sec}s"));
    }
    out
}

/// Inside a validation pod: fetch the repositories, execute, judge. Never panics: every failure
/// becomes a report.
pub fn run_pod(spec: &PodRunSpec, python: &str, stop: &stop::Stop) -> RunReport {
    let started = std::time::Instant::now();
    let timeout = Duration::from_secs(u64::try_from(spec.timeout_seconds).unwrap_or(0));
    let comparison = match CompareConfig::from_spec(&spec.comparison) {
        Ok(c) => c.with_output_types(spec.validation.check_output_types != Some(false)),
        Err(e) => return RunReport::new(Outcome::InvalidInput, e.to_string()),
    };
    let work = PathBuf::from(&spec.work_dir);
    let checkout = |source: &NotebookSource,
                    dir: &str,
                    creds: &Option<String>|
     -> Result<PathBuf, RunReport> {
        let creds = match creds
            .as_deref()
            .map(|d| git::GitCredentials::from_dir(Path::new(d)))
            .transpose()
        {
            Ok(c) => c.flatten(),
            Err(e) => return Err(RunReport::new(Outcome::InvalidInput, e.message)),
        };
        let dest = work.join(dir);
        let _ = std::fs::remove_dir_all(&dest);
        match git::fetch(&source.git, &dest, creds.as_ref(), git::NETWORK_PROTOCOLS) {
            Ok(_) => {}
            Err(e) if e.transient => {
                return Err(RunReport::new(
                    Outcome::Infrastructure,
                    format!(
                        "cannot fetch {}: {}",
                        source.git.url,
                        bounded(&e.message, 600)
                    ),
                ));
            }
            Err(e) => {
                return Err(RunReport::new(
                    Outcome::InvalidInput,
                    format!(
                        "cannot fetch {} at {:?}: {}",
                        source.git.url,
                        source.git.r#ref,
                        bounded(&e.message, 600)
                    ),
                ));
            }
        }
        // The path must stay inside the checkout.
        if Path::new(&source.path).is_absolute() || source.path.split('/').any(|p| p == "..") {
            return Err(RunReport::new(
                Outcome::InvalidInput,
                format!(
                    "notebook path {:?} must be relative to the repository",
                    source.path
                ),
            ));
        }
        let path = dest.join(&source.path);
        if !path.is_file() {
            return Err(RunReport::new(
                Outcome::InvalidInput,
                format!(
                    "{} has no file {} at {:?}",
                    source.git.url, source.path, source.git.r#ref
                ),
            ));
        }
        Ok(path)
    };
    let notebook = match checkout(&spec.notebook, "notebook", &spec.notebook_credentials_dir) {
        Ok(p) => p,
        Err(r) => return r,
    };
    // The golden notebook comes from its own repository, ref and path.
    let golden = match &spec.golden {
        Some(g) => match checkout(g, "golden", &spec.golden_credentials_dir) {
            Ok(p) => Some(p),
            Err(r) => return r,
        },
        None => None,
    };
    let cwd = notebook
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| work.clone());
    let output = work.join("executed.ipynb");
    let remaining = timeout.saturating_sub(started.elapsed());
    let timeout_text = humantime(timeout);
    execute(&Execute {
        notebook: &notebook,
        golden: golden.as_deref(),
        comparison: &comparison,
        checks: &spec.validation,
        parameters: &spec.notebook.parameters,
        scratch: &work,
        timeout: remaining,
        timeout_text: &timeout_text,
        python,
        cwd: &cwd,
        output: &output,
        stop,
    })
}
