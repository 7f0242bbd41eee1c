//! The `sync-hub` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    sync_hub::cli::main()
}
