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
}

fn main() -> ExitCode {
    // mimalloc advises transparent huge pages for its arenas, and with THP a 2 MiB region is
    // resident as soon as one byte of it is touched: that cost ~10 MB idle and ~10 kB per
    // open stream here, with no throughput gain measurable (BENCHMARKS.md). Best effort: an
    // old kernel without the prctl just keeps its THP policy.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
    // Freed memory goes back to the OS after `purge_delay` ms, but only when the thread that
    // freed it allocates again. At mimalloc's default (1 s) the short-lived per-request memory
    // of a burst was never purged: 5,000 streams left ~195 MB resident for good. At 100 ms it is
    // purged while the burst winds down (~38 MB after), and open streams cost ~20 % less, at no
    // measurable throughput cost (0 ms, purging on every free, cost ~9 %).
    // SAFETY: sets a process-wide option, before any other thread exists. 15 is
    // `mi_option_purge_delay` in mimalloc.h (v2 and v3), which the Rust bindings do not name.
    unsafe { libmimalloc_sys::mi_option_set(15, 100) };
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { path }) => {
            let path = path.unwrap_or(cli.config);
            match llmux::config::Config::load(&path) {
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
        None => {
            llmux::telemetry::init();
            match llmux::daemon::run(cli.config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "llmux failed");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
