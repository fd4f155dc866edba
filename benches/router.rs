//! Micro-benchmarks of the request path without the network: the selection walk over a
//! 64-leaf tree, request parsing, and one attempt's selection and permit — the fast path (walk,
//! permit and success settled lock-free) and the target actor's mailbox path (`Acquire` →
//! `Outcome`, taken when health may change) — so the cost of the actor design is a measured
//! number.
//!
//! `cargo bench --bench router`

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use llmux::actors::supervisor::{current, next, Route, Supervisor};
use llmux::actors::target::{Acquire, OutcomeKind};
use llmux::config::Config;
use llmux::providers::Endpoint;
use llmux::routing::estimate::Estimate;

/// 64 leaves: a loadbalance over 16 fallback groups of 4 virtual keys each.
fn config() -> Config {
    let mut text = String::from("[server]\nlisten = \"127.0.0.1:1\"\n");
    for i in 0..64 {
        text += &format!(
            "[virtual_keys.k{i}]\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n"
        );
    }
    text += "[configs.big]\nstrategy = { mode = \"loadbalance\" }\ntargets = [\n";
    for g in 0..16 {
        text += &format!(
            "  {{ strategy = {{ mode = \"fallback\" }}, weight = {}, targets = [",
            g + 1
        );
        for j in 0..4 {
            text += &format!(" {{ virtual_key = \"k{}\" }},", g * 4 + j);
        }
        text += " ] },\n";
    }
    text += "]\n";
    Config::parse(&text, Path::new("bench.toml"), &|_| None).expect("bench config")
}

fn benches(c: &mut Criterion) {
    let system = actix::System::new();
    let (_supervisor, cur, _) = system
        .block_on(async { Supervisor::start(config(), None) })
        .expect("bench config starts");
    let runtime = current(&cur);
    let tree = runtime.config.configs["big"].clone();

    c.bench_function("walk: first leaf of a 64-leaf tree", |b| {
        b.iter(|| {
            let mut route = Route::new(
                runtime.clone(),
                tree.clone(),
                Endpoint::Chat,
                Box::default(),
            );
            criterion::black_box(route.advance(None))
        })
    });

    c.bench_function("walk: first leaf, then fall back 3 times", |b| {
        b.iter(|| {
            let mut route = Route::new(
                runtime.clone(),
                tree.clone(),
                Endpoint::Chat,
                Box::default(),
            );
            let mut leaf = route.advance(None);
            for _ in 0..3 {
                leaf = route.advance(Some(llmux::actors::supervisor::Failure::Status(500)));
            }
            criterion::black_box(leaf)
        })
    });

    let body = br#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Say hi, and tell me about the weather in Paris today please."}],"temperature":0.2,"max_tokens":200}"#;
    c.bench_function("parse + validate a chat request body", |b| {
        b.iter(|| {
            criterion::black_box(llmux::http::api::parse_body(Endpoint::Chat, body, 2048).unwrap())
        })
    });

    c.bench_function(
        "one attempt's selection on the fast path (walk, lock-free permit and success)",
        |b| {
            b.iter(|| {
                system.block_on(async {
                    let mut route = Route::new(
                        runtime.clone(),
                        tree.clone(),
                        Endpoint::Chat,
                        Box::default(),
                    );
                    let estimate = Estimate {
                        prompt: 100,
                        completion: None,
                    };
                    let (_, permit) = next(&mut route, None, estimate).await.expect("a leaf");
                    permit.report(OutcomeKind::Success, Some(100), None);
                })
            })
        },
    );

    let target = runtime.targets[0].addr.clone();
    c.bench_function(
        "one attempt through the target's mailbox (Acquire + Outcome messages)",
        |b| {
            b.iter(|| {
                system.block_on(async {
                    let permit = target.send(Acquire { tokens: 100 }).await.unwrap().unwrap();
                    // A client error is always told to the actor (it is not a success).
                    permit.report(OutcomeKind::ClientError(400), None, None);
                })
            })
        },
    );
}

criterion_group!(router, benches);
criterion_main!(router);
