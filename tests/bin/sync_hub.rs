//! `sync-hub`, built for the end-to-end tests.

fn main() -> std::process::ExitCode {
    sync_hub::cli::main()
}
