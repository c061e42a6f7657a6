fn main() -> std::process::ExitCode {
    gpufleet::cli::main()
}
