fn main() -> std::process::ExitCode {
    wave_marker::main()
}
