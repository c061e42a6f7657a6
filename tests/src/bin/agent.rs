//! The `gpufleet` CLI under another name, so the integration tests can locate it through
//! `CARGO_BIN_EXE_gpufleet-test-agent` and start real agent processes with it.

fn main() -> std::process::ExitCode {
    gpufleet::cli::main()
}
