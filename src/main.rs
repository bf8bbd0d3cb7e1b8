//! The `mcpgate` binary: parses the command line, reports errors with context, and
//! maps configuration errors to exit code 78. Each command lives in its own module
//! under `cmd/`; the gateway itself is the `mcpgate` library.

mod cli;
mod cmd;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};
use cmd::Exit;
use mcpgate::config::{self, ConfigError, EXIT_CONFIG, LogFormat};

/// jemalloc rather than glibc's malloc: a request allocates and frees many small
/// objects across the worker threads, which glibc's arenas serve more slowly
/// (see docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => cmd::serve::serve(args).await,
            Command::Check(args) => cmd::check::check(args).await,
            Command::Token(args) => cmd::token::token(args),
            Command::Demo(args) => cmd::demo::demo(args).await,
            Command::HashKey(args) => cmd::hash_key::hash_key(args),
            Command::Policy(args) => cmd::policy::policy(args).await,
            Command::Explain(args) => cmd::explain::explain(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if let Some(Exit(code)) = error.downcast_ref::<Exit>() {
                return ExitCode::from(*code);
            }
            if let Some(config_error) = error.downcast_ref::<ConfigError>() {
                eprintln!("config error: {config_error}");
                ExitCode::from(EXIT_CONFIG as u8)
            } else {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Logs go to standard error, so that a command's answer on standard output stays
/// clean; `RUST_LOG` overrides the configured level.
fn init_logging(config: &config::LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match config.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// For the one-shot commands (`check`, `policy`, `explain`): the configured format,
/// but only warnings, so the start-up chatter of `serve` does not bury the answer.
fn init_quiet_logging(config: &config::LogConfig) {
    init_logging(&config::LogConfig {
        level: "warn".to_owned(),
        ..config.clone()
    });
}
