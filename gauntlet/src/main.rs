//! The `gauntlet` binary: the built-in suites ([`gauntlet::registry`]) and the process
//! around [`gauntlet::main_with`].

use std::process::ExitCode;

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GAUNTLET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let registry = gauntlet::registry();
    let code = gauntlet::main_with(&registry, std::env::args_os(), &mut std::io::stdout());
    ExitCode::from(code)
}
