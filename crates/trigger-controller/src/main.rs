use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = trigger_controller::Cli::parse();
    nbg_runtime::block_on_main(trigger_controller::run(cli))
}
