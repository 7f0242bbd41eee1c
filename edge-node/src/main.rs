//! The `edge-node` binary; everything lives in the library.

/// The booking path allocates many small, short-lived buffers on several
/// threads (request parsing, SQLite, event encoding); mimalloc's per-thread
/// free lists serve that pattern with less CPU than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    edge_node::cli::main()
}
