//! The `edge-node` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    edge_node::cli::main()
}
