//! nvj-validator: runs NotebookValidationJobs.
//!
//! - [`executor`]: executes a notebook with papermill and judges it (cells, golden comparison);
//!   used inside validation pods (`pod-run`, the "runner" the pod's init container installs)
//!   and locally by notebook authors (`run`).
//! - [`protocol`]: what the controller passes to a validation pod and what the pod reports.
//! - [`controller`]: the NVJ controller (observe, `decide`, apply).
//! - `nvj-validator` without a subcommand is the controller.

pub mod controller;
pub mod executor;
pub mod protocol;

use std::path::PathBuf;
use std::process::ExitCode;

use nbg_core::nvj::{ComparisonConfig, ComparisonStrategy, ValidationConfig};
use nbg_runtime::{CommonArgs, Runtime};

use protocol::report::{self, Outcome, RunReport};

/// The controller's name: field manager, metric label and Event reporter.
pub const NAME: &str = "nvj-validator";

#[derive(clap::Parser, Debug)]
#[command(
    name = "nvj-validator",
    version,
    about = "Runs NotebookValidationJobs: executes the notebook from git, compares it with a golden notebook and reports every cell in the NVJ status.",
    long_about = "Runs NotebookValidationJobs: executes the notebook from git, compares it with a golden notebook and reports every cell in the NVJ status.\n\nWithout a subcommand it runs the controller: for each new spec generation of an NVJ it creates a validation pod, reads the runner's report from the pod's termination message, and writes phase, conditions, per-cell results and the golden comparison into the status. Infrastructure failures are retried with backoff; failing cells, golden mismatches and timeouts are final.\n\n`nvj-validator run` validates a notebook on this machine, as a validation pod would."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub controller: ControllerArgs,
}

/// Controller settings.
#[derive(clap::Args, Debug, Clone)]
pub struct ControllerArgs {
    /// Image of the init container that brings the runner into the notebook image (normally
    /// this controller's own image).
    #[arg(long, env = "NBG_RUNNER_IMAGE", default_value = concat!("ghcr.io/notebook-gitops/nvj-validator:", env!("CARGO_PKG_VERSION")))]
    pub runner_image: String,
    /// Path of the nvj-validator binary inside the runner image.
    #[arg(
        long,
        env = "NBG_RUNNER_PATH",
        default_value = "/usr/local/bin/nvj-validator"
    )]
    pub runner_path: String,
    /// Python with papermill inside notebook images.
    #[arg(long, env = "NBG_NOTEBOOK_PYTHON", default_value = "python3")]
    pub notebook_python: String,
    /// Retries after infrastructure failures (pod evicted or deleted, image not pulled, node lost).
    #[arg(long, env = "NBG_MAX_RETRIES", default_value_t = 3)]
    pub max_retries: i32,
    /// Delay before the first retry; doubles with each retry (Go duration).
    #[arg(long, env = "NBG_RETRY_BACKOFF", default_value = "10s", value_parser = nbg_runtime::cli::parse_duration)]
    pub retry_backoff: std::time::Duration,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Execute a notebook on this machine with papermill and print the verdict, as a validation
    /// pod would report it. Exit code: 0 succeeded, 1 a cell failed, 2 golden mismatch,
    /// 3 timeout, 4 invalid input, 5 infrastructure failure, 6 an output check failed.
    Run(Box<RunArgs>),
    /// Inside a validation pod: fetch, execute and judge the notebook described by NBG_RUN_SPEC,
    /// and report through the termination message. Not for direct use.
    PodRun(PodRunArgs),
    /// Copy this executable to DEST (the init container of a validation pod uses it to bring
    /// the runner into any notebook image).
    InstallRunner {
        /// Where to copy the executable.
        dest: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The notebook to execute.
    pub notebook: PathBuf,
    /// A golden notebook whose outputs the executed notebook must match.
    #[arg(long)]
    pub golden: Option<PathBuf>,
    /// Comparison strategy.
    #[arg(long, value_parser = ["normalized", "exact"], default_value = "normalized")]
    pub strategy: String,
    /// Absolute tolerance for numbers in outputs.
    #[arg(long, default_value = "0.0001")]
    pub tolerance: String,
    /// Extra regular expressions treated as timestamps (repeatable).
    #[arg(long = "timestamp-pattern")]
    pub timestamp_patterns: Vec<String>,
    /// Output types left out of the comparison (repeatable): stream, execute_result, display_data, error.
    #[arg(long = "ignore-output-type")]
    pub ignore_output_types: Vec<String>,
    /// Compare execution counts too.
    #[arg(long)]
    pub compare_execution_count: bool,
    /// Do not replace timestamps before comparing.
    #[arg(long)]
    pub keep_timestamps: bool,
    /// Stop the notebook after this long (Go duration).
    #[arg(long, default_value = "30m")]
    pub timeout: String,
    /// Where to write the executed notebook; a temporary file by default.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// A papermill parameter, NAME=VALUE (repeatable), as spec.notebook.parameters.
    #[arg(long = "parameter", value_name = "NAME=VALUE")]
    pub parameters: Vec<String>,
    /// Output checks, as in a cluster: a YAML or JSON file with the fields of
    /// spec.validationConfig, or an NVJ manifest (its spec.validationConfig is used).
    #[arg(long)]
    pub checks: Option<PathBuf>,
    /// Python with papermill and a Jupyter kernel.
    #[arg(long, env = "NBG_PYTHON", default_value = "python3")]
    pub python: String,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct PodRunArgs {
    /// Where the kubelet reads the termination message.
    #[arg(long, default_value = "/dev/termination-log")]
    pub termination_message_path: PathBuf,
    /// Python with papermill and a Jupyter kernel.
    #[arg(long, env = "NBG_PYTHON", default_value = "python3")]
    pub python: String,
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Entry point of the binary.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        None => nbg_runtime::block_on_main(run_controller(cli.common, cli.controller)),
        Some(Command::Run(args)) => run_local(&args),
        Some(Command::PodRun(args)) => run_in_pod(&args),
        Some(Command::InstallRunner { dest }) => install_runner(&dest),
    }
}

async fn run_controller(common: CommonArgs, args: ControllerArgs) -> anyhow::Result<()> {
    if args.max_retries < 0 {
        anyhow::bail!("--max-retries must not be negative");
    }
    let runtime = Runtime::connect(NAME, env!("CARGO_PKG_VERSION"), common).await?;
    let settings = controller::decide::Settings {
        max_retries: args.max_retries,
        retry_backoff: args.retry_backoff,
        ..Default::default()
    };
    let pod_settings = controller::pod::PodSettings {
        runner_image: args.runner_image,
        runner_path: args.runner_path,
        python: args.notebook_python,
    };
    let metrics = controller::reconcile::ValidationMetrics::register(&runtime.registry);
    let reconciler = controller::reconcile::NvjReconciler::new(
        runtime.client.clone(),
        runtime.events.clone(),
        settings,
        pod_settings,
        metrics,
    );
    runtime.run(reconciler).await
}

/// `--checks`: spec.validationConfig's fields, or an NVJ manifest's, checked as nvj-validator
/// checks a spec.
fn read_checks(path: &std::path::Path) -> Result<ValidationConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: serde_json::Value =
        serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let fields = match doc.get("spec") {
        Some(spec) => spec.get("validationConfig").cloned().ok_or_else(|| {
            format!(
                "{}: the manifest has no spec.validationConfig",
                path.display()
            )
        })?,
        None => doc,
    };
    let config: ValidationConfig = serde_json::from_value(fields)
        .map_err(|e| format!("{}: not a validationConfig: {e}", path.display()))?;
    controller::spec_check::check_validation(&config)
        .map_err(|e| format!("{}: validationConfig.{e}", path.display()))?;
    Ok(config)
}

fn run_local(args: &RunArgs) -> ExitCode {
    let timeout = match nbg_core::duration::parse_go_duration(&args.timeout) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: --timeout: {e}");
            return exit(Outcome::InvalidInput.exit_code());
        }
    };
    let spec = ComparisonConfig {
        strategy: Some(if args.strategy == "exact" {
            ComparisonStrategy::Exact
        } else {
            ComparisonStrategy::Normalized
        }),
        floating_point_tolerance: Some(args.tolerance.clone()),
        ignore_timestamps: Some(!args.keep_timestamps),
        ignore_execution_count: Some(!args.compare_execution_count),
        custom_timestamp_patterns: args.timestamp_patterns.clone(),
        ignore_output_types: args.ignore_output_types.clone(),
    };
    let comparison = match executor::compare::CompareConfig::from_spec(&spec) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit(Outcome::InvalidInput.exit_code());
        }
    };
    let checks = match args.checks.as_deref().map(read_checks).transpose() {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => {
            eprintln!("error: --checks: {e}");
            return exit(Outcome::InvalidInput.exit_code());
        }
    };
    let mut parameters = std::collections::BTreeMap::new();
    for p in &args.parameters {
        let Some((name, value)) = p.split_once('=') else {
            eprintln!("error: --parameter {p:?}: write it NAME=VALUE");
            return exit(Outcome::InvalidInput.exit_code());
        };
        if let Err(e) = controller::spec_check::parameter_name(name) {
            eprintln!("error: --parameter {p:?}: {e}");
            return exit(Outcome::InvalidInput.exit_code());
        }
        parameters.insert(name.to_string(), value.to_string());
    }
    let temp = std::env::temp_dir().join(format!("nvj-validator-run-{}", std::process::id()));
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| temp.join("executed.ipynb"));
    if let Some(dir) = output.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let cwd = args
        .notebook
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    // Ctrl-C stops papermill and its kernel too (they run in a process group of their own).
    let stop = match executor::stop::Stop::on_signals() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("error: cannot handle SIGINT/SIGTERM: {e}");
            return exit(Outcome::Infrastructure.exit_code());
        }
    };
    let report = executor::execute(&executor::Execute {
        notebook: &args.notebook,
        golden: args.golden.as_deref(),
        comparison: &comparison,
        checks: &checks,
        parameters: &parameters,
        timeout,
        timeout_text: &args.timeout,
        python: &args.python,
        cwd: &cwd,
        output: &output,
        scratch: &temp,
        stop: &stop,
    });
    // The executed notebook (without --output) and the output checks' IPython profile.
    let _ = std::fs::remove_dir_all(&temp);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", render_text(&report));
    }
    exit(report.outcome.exit_code())
}

/// The verdict for a terminal.
pub fn render_text(r: &RunReport) -> String {
    use nbg_core::nvj::CellStatus;
    let mut out = String::new();
    for c in &r.cells {
        let mark = match c.status {
            CellStatus::Success => "ok  ",
            CellStatus::Failure => "FAIL",
            CellStatus::Skipped => "skip",
        };
        out.push_str(&format!(
            "  cell {:>3}  {mark}  {}\n",
            c.cell_index + 1,
            c.execution_time.as_deref().unwrap_or("")
        ));
        if let Some(e) = &c.error_message {
            for line in e.lines().take(3) {
                out.push_str(&format!("            {line}\n"));
            }
        }
    }
    if let Some(cmp) = &r.comparison {
        out.push_str(&format!(
            "  golden: {:?}, {}/{} cells matched\n",
            cmp.result, cmp.matched_cells, cmp.total_cells
        ));
        for d in &cmp.diffs {
            out.push_str(&format!(
                "    cell {} ({:?}): {}\n",
                d.cell_index + 1,
                d.diff_type,
                d.diff
                    .as_deref()
                    .and_then(|s| s.lines().next())
                    .unwrap_or("")
            ));
        }
    }
    out.push_str(&format!("{}: {}\n", r.outcome.reason(), r.message));
    out
}

fn run_in_pod(args: &PodRunArgs) -> ExitCode {
    let report = match std::env::var("NBG_RUN_SPEC")
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str::<protocol::PodRunSpec>(&s).map_err(|e| e.to_string()))
    {
        Ok(spec) => match executor::stop::Stop::on_signals() {
            Ok(stop) => executor::run_pod(&spec, &args.python, &stop),
            Err(e) => RunReport::new(
                Outcome::Infrastructure,
                format!("cannot handle SIGTERM: {e}"),
            ),
        },
        Err(e) => RunReport::new(
            Outcome::InvalidInput,
            format!("NBG_RUN_SPEC is missing or invalid: {e}"),
        ),
    };
    let message = report::encode(&report);
    if let Err(e) = std::fs::write(&args.termination_message_path, &message) {
        eprintln!(
            "error: cannot write the termination message to {}: {e}",
            args.termination_message_path.display()
        );
    }
    // Also on stderr, for `kubectl logs`; the controller never parses logs.
    eprint!("{}", render_text(&report));
    exit(report.outcome.exit_code())
}

fn install_runner(dest: &std::path::Path) -> ExitCode {
    let result = std::env::current_exe().and_then(|me| {
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::copy(me, dest).map(|_| ())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "error: cannot install the runner at {}: {e}",
                dest.display()
            );
            ExitCode::FAILURE
        }
    }
}
