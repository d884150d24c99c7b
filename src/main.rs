//! `qwen3vl`: Qwen3-VL inference on CPUs. The subcommands are in the library's `cli` module.

fn main() {
    if let Err(e) = qwen3vl::cli::main() {
        // One clear line: the error and its causes.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
