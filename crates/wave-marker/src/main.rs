use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = wave_marker::Cli::parse();
    nbg_runtime::block_on_main(wave_marker::run(cli))
}
