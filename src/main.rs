//! The `llmux` command line: run the daemon, or check a config file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// Many small, short-lived allocations per request across threads: mimalloc keeps them cheap
// and returns memory after bursts (glibc malloc held hundreds of MB after 10k streams).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "llmux",
    version,
    about = "Self-hosted LLM router with an OpenAI-compatible API"
)]
struct Cli {
    /// Config file to run with.
    #[arg(long, short, default_value = "config.toml", global = true)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config file and exit: 0 if valid, 1 with the error's tree path if not.
    CheckConfig {
        /// Config file (default: --config, i.e. ./config.toml).
        path: Option<PathBuf>,
    },
    /// Print the prices that apply: the built-in catalog under the config's `[pricing]` rows.
    Prices {
        /// Config file (default: --config, i.e. ./config.toml).
        path: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    llmux::app::memory::tune();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { path }) => {
            let path = path.unwrap_or(cli.config);
            match llmux::actors::reload::load(&path) {
                Ok(c) => {
                    println!(
                        "{}: ok ({} virtual keys, {} configs)",
                        path.display(),
                        c.targets.len(),
                        c.configs.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Prices { path }) => {
            let path = path.unwrap_or(cli.config);
            match llmux::actors::reload::load(&path) {
                Ok(c) => {
                    print!(
                        "{}",
                        llmux::observability::requestlog::price_table(&c.pricing)
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        None => match llmux::app::daemon::run(cli.config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "llmux failed");
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
