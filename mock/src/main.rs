//! `llmux-mock`: the bundled mock LLM provider (OpenAI, Azure OpenAI and Anthropic wire
//! formats), for the quick start, tests and benchmarks. Runs until killed.

use std::process::ExitCode;

use clap::Parser;
use llmux_mock::{serve, Behavior};

#[derive(Parser)]
#[command(
    name = "llmux-mock",
    version,
    about = "Mock OpenAI/Azure/Anthropic provider for llmux"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: String,
    /// Delay before each response's headers.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Probability (0..1) that a request fails with --fail-status.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    fail_rate: f64,
    #[arg(long, default_value_t = 500)]
    fail_status: u16,
    /// Bytes of padding added to each answer (e.g. 900 for ~1 KB bodies).
    #[arg(long, default_value_t = 0)]
    padding: usize,
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let f: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&f) {
        Ok(f)
    } else {
        Err("must be within 0..1".into())
    }
}

fn main() -> ExitCode {
    let a = Args::parse();
    let behavior = Behavior {
        latency_ms: a.latency_ms,
        fail_rate: a.fail_rate,
        fail_status: a.fail_status,
        response_padding: a.padding,
        ..Behavior::default()
    };
    match actix_web::rt::System::new().block_on(serve(&a.listen, behavior, a.workers.max(1))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("llmux-mock: {e}");
            ExitCode::FAILURE
        }
    }
}
