//! The user's binary: tradeloop's command line with the user's strategies registered.

fn main() -> std::process::ExitCode {
    tradeloop::cli::main::<tl_user::Mine>()
}
