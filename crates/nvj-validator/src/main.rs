use clap::Parser;

fn main() -> std::process::ExitCode {
    nvj_validator::main(nvj_validator::Cli::parse())
}
