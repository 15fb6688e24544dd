use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = event_notifier::Cli::parse();
    nbg_runtime::block_on_main(event_notifier::run(cli))
}
