//! `edge-node`, built for the end-to-end tests.

fn main() -> std::process::ExitCode {
    edge_node::cli::main()
}
