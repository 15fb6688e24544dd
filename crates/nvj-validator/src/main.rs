use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = nvj_validator::Cli::parse();
    nbg_runtime::block_on_main(nvj_validator::run(cli))
}
