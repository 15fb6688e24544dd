use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = app_status_aggregator::Cli::parse();
    nbg_runtime::block_on_main(app_status_aggregator::run(cli))
}
