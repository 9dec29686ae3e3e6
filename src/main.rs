//! The `tradeloop` binary: the command line of the `tradeloop` library with its bundled
//! strategies. mimalloc is the global allocator.

#![forbid(unsafe_code)]

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tradeloop::cli::main::<tradeloop::strategy::Bundled>()
}
