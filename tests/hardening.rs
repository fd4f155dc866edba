//! Issue-13 defects of the target state machine and routing, each driven deterministically
//! against a real llmux process and real mock providers (defects 6–9, 13, 14 and the
//! deadline). Every test here fails on the code before the fix (7019b05); the pure state
//! machines behind them are tested exhaustively in `actors::target::{breaker,budget}` and
//! `routing::walk`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn openai_target(m: &MockServer, name: &str, extra: &str) -> String {
    format!(
        "[virtual_keys.{name}]\nprovider = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"sk-test-{name}-000000\"\n{extra}\n",
        m.url(name)
    )
}

async fn target_state(llmux: &Llmux, c: &reqwest::Client, name: &str) -> Value {
    get_json(c, &llmux.admin_url(&format!("/admin/targets/{name}"))).await
}

async fn chat(
    c: &reqwest::Client,
    llmux: &Llmux,
    config: &str,
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = c
        .post(llmux.url("/v1/chat/completions"))
        .header("x-portkey-config", config)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let v = r.json().await.unwrap_or(Value::Null);
    (status, headers, v)
}

/// Sends a chat request in the background (to be in flight while the test acts).
fn spawn_chat(
    c: &reqwest::Client,
    llmux: &Llmux,
    config: &str,
    body: Value,
) -> tokio::task::JoinHandle<(u16, reqwest::header::HeaderMap, String)> {
    let (c, url, config) = (
        c.clone(),
        llmux.url("/v1/chat/completions"),
        config.to_owned(),
    );
    tokio::spawn(async move {
        let r = c
            .post(url)
            .header("x-portkey-config", config)
            .json(&body)
            .send()
            .await
            .unwrap();
        let h = r.headers().clone();
        (r.status().as_u16(), h, r.text().await.unwrap())
    })
}

#[test]
fn binomial_range_matches_the_exact_distribution() {
    // Reference values computed with exact log-gamma.
    assert_eq!(binomial_range(2000, 0.5), (891, 1109));
    assert_eq!(binomial_range(2000, 0.9), (1731, 1862));
    assert_eq!(binomial_range(60, 1.0 / 16.0).1, 16);
    assert_eq!(binomial_range(60, 0.5), (12, 48));
}

/// Defect 6: a request granted before the circuit opened that answers 200 afterwards must not
/// close it (only the half-open probe may).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d06_a_late_success_does_not_close_an_open_circuit() {
    let m = mock();
    let cfg = format!(
        "{}\n[configs.one]\nstrategy = {{ mode = \"single\" }}\ntargets = [ {{ virtual_key = \"flappy\" }} ]\n",
        openai_target(&m, "flappy", "failure_threshold = 2\ncooldown_ms = 60000")
    );
    let llmux = Llmux::start(&cfg);
    let c = client();
    // A slow success is in flight...
    m.set_behavior(
        "flappy",
        Behavior {
            latency_ms: 1500,
            ..Default::default()
        },
    );
    let slow = spawn_chat(&c, &llmux, "one", chat_body("gpt-4o-mini"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...while the provider starts failing and the circuit opens.
    m.set_behavior(
        "flappy",
        Behavior {
            always_status: Some(500),
            ..Default::default()
        },
    );
    for _ in 0..2 {
        let (s, _, _) = chat(&c, &llmux, "one", chat_body("gpt-4o-mini")).await;
        assert_eq!(s, 500);
    }
    assert_eq!(
        target_state(&llmux, &c, "flappy").await["state"],
        "unhealthy"
    );
    assert_eq!(
        slow.await.unwrap().0,
        200,
        "the slow request was granted before"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = target_state(&llmux, &c, "flappy").await;
    assert_eq!(
        t["state"], "unhealthy",
        "a late 200 closed the circuit: {t}"
    );
    let requests = m.stats("flappy").requests;
    let (s, _, v) = chat(&c, &llmux, "one", chat_body("gpt-4o-mini")).await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(
        m.stats("flappy").requests,
        requests,
        "no request reaches an open circuit"
    );
}

/// Defect 7: a leaf's own retry after a 429 waits out the target's cooldown, then retries.
/// The leaf does not use the Retry-After header for its own backoff (≤ 200 ms), but the target
/// cools down for the provider's 1 s hint: before the fix the retry's permit was refused, so no
/// retry ever ran and the client got the 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d07_leaf_retries_after_a_429_wait_out_the_cooldown() {
    let m = mock();
    let cfg = format!(
        "{}\n[configs.retrying]\nstrategy = {{ mode = \"single\" }}\ntargets = [ {{ virtual_key = \"limited\", retry = {{ attempts = 2, use_retry_after_header = false }} }} ]\n",
        openai_target(&m, "limited", "")
    );
    let llmux = Llmux::start(&cfg);
    let c = client();
    m.set_behavior(
        "limited",
        Behavior {
            always_status: Some(429),
            retry_after_s: Some(1),
            ..Default::default()
        },
    );
    let t0 = Instant::now();
    let request = spawn_chat(&c, &llmux, "retrying", chat_body("gpt-4o-mini"));
    // The provider recovers while the target cools down.
    tokio::time::sleep(Duration::from_millis(400)).await;
    m.set_behavior("limited", Behavior::default());
    let (s, h, v) = request.await.unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(header(&h, "x-portkey-retry-attempt-count"), "1");
    assert!(
        t0.elapsed() >= Duration::from_millis(950),
        "waited out the 1 s hint"
    );
    assert_eq!(m.stats("limited").requests, 2);
}

/// Defect 8: a dead provider is 503 (unavailable), not 429 (which SDKs retry as a rate limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d08_circuit_open_is_503_and_only_budget_is_429() {
    let m = mock();
    let cfg = format!(
        "{}{}\n[configs.dead]\nstrategy = {{ mode = \"single\" }}\ntargets = [ {{ virtual_key = \"dead\" }} ]\n\
         [configs.budget]\nstrategy = {{ mode = \"single\" }}\ntargets = [ {{ virtual_key = \"budgeted\" }} ]\n\
         [configs.both]\nstrategy = {{ mode = \"fallback\" }}\ntargets = [ {{ virtual_key = \"budgeted\" }}, {{ virtual_key = \"dead\" }} ]\n",
        openai_target(&m, "dead", "failure_threshold = 1\ncooldown_ms = 60000"),
        openai_target(&m, "budgeted", "rpm = 1"),
    );
    let llmux = Llmux::start(&cfg);
    let c = client();
    m.set_behavior(
        "dead",
        Behavior {
            always_status: Some(500),
            ..Default::default()
        },
    );
    let (s, _, _) = chat(&c, &llmux, "dead", chat_body("m")).await;
    assert_eq!(s, 500);
    let (s, h, v) = chat(&c, &llmux, "dead", chat_body("m")).await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"]["code"], "service_unavailable");
    assert_eq!(v["error"]["type"], "server_error");
    assert!(h.get("retry-after").is_none());
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("dead (config.targets[0])") && msg.contains("circuit open"),
        "{msg}"
    );

    // Only budget in the way: 429 with Retry-After.
    assert_eq!(chat(&c, &llmux, "budget", chat_body("m")).await.0, 200);
    let (s, h, v) = chat(&c, &llmux, "budget", chat_body("m")).await;
    assert_eq!(s, 429, "{v}");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    let ra: u64 = header(&h, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&ra), "{ra}");
    // Budget spent and the other target dead: not a pure rate limit, so 503.
    let (s, _, v) = chat(&c, &llmux, "both", chat_body("m")).await;
    assert_eq!(s, 503, "{v}");
}

/// Defect 9: a refused large request blocks only requests that do not fit; a refusal spends
/// nothing (no rpm cell leaks when tpm refuses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d09_token_budget_refusals_block_only_what_does_not_fit() {
    let m = mock();
    let cfg = format!(
        "{}\n[configs.t]\nstrategy = {{ mode = \"single\" }}\ntargets = [ {{ virtual_key = \"tpm\" }} ]\n",
        openai_target(&m, "tpm", "tpm = 1000\nrpm = 3\ntpm_burst = 1000\nrpm_burst = 3")
    );
    let llmux = Llmux::start(&cfg);
    let c = client();
    m.set_behavior(
        "tpm",
        Behavior {
            latency_ms: 1200,
            ..Default::default()
        },
    );
    let with_max = |n: u64| json!({"model": "m", "max_tokens": n, "messages": [{"role": "user", "content": "hi"}]});
    // 900 tokens held by a request in flight (its usage corrects the estimate only at the end).
    let big = spawn_chat(&c, &llmux, "t", with_max(900));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Five requests that do not fit: each refused, none spends an rpm cell.
    for _ in 0..5 {
        let (s, h, v) = chat(&c, &llmux, "t", with_max(500)).await;
        assert_eq!(s, 429, "{v}");
        assert!(header(&h, "retry-after").parse::<u64>().unwrap() >= 1);
    }
    // A small one still fits, token- and request-wise (rpm = 3: one used, one left... two).
    let (s, _, v) = chat(&c, &llmux, "t", with_max(10)).await;
    assert_eq!(
        s, 200,
        "a small request was blocked behind a large refusal: {v}"
    );
    let (s, _, v) = chat(&c, &llmux, "t", with_max(5)).await;
    assert_eq!(s, 200, "an rpm cell leaked: {v}");
    assert_eq!(big.await.unwrap().0, 200);
    assert_eq!(m.stats("tpm").requests, 3);
}

/// Defect 9 (estimate): the leaf's `override_params.max_tokens` is what the budget is charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d09_estimate_uses_the_leafs_override_params() {
    let m = mock();
    let cfg = format!(
        "{}\n[configs.t]\nstrategy = {{ mode = \"single\" }}\ntargets = [ {{ virtual_key = \"tpm\", override_params = {{ max_tokens = 5000 }} }} ]\n",
        openai_target(&m, "tpm", "tpm = 4000\ntpm_burst = 4000")
    );
    let llmux = Llmux::start(&cfg);
    let c = client();
    m.set_behavior(
        "tpm",
        Behavior {
            latency_ms: 800,
            ..Default::default()
        },
    );
    // The first goes (a request above the whole budget passes when the bucket is full); the
    // second, sent while the first holds the budget, cannot fit 5000 more tokens.
    let first = spawn_chat(&c, &llmux, "t", chat_body("m"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (s, _, v) = chat(&c, &llmux, "t", chat_body("m")).await;
    assert_eq!(s, 429, "{v}");
    assert_eq!(first.await.unwrap().0, 200);
}

/// Defect 13: a leaf whose provider cannot serve the endpoint is skipped at selection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d13_leaves_that_cannot_serve_the_endpoint_are_skipped() {
    let m = mock();
    let cfg = format!(
        "{}[virtual_keys.claude]\nprovider = \"anthropic\"\nbase_url = \"{}\"\napi_key = \"sk-ant-test-000000\"\n\n\
         [configs.mixed]\nstrategy = {{ mode = \"loadbalance\" }}\ntargets = [ {{ virtual_key = \"gpt\" }}, {{ virtual_key = \"claude\" }} ]\n\
         [configs.claude_only]\nstrategy = {{ mode = \"single\" }}\ntargets = [ {{ virtual_key = \"claude\" }} ]\n",
        openai_target(&m, "gpt", ""),
        m.url("claude"),
    );
    let llmux = Llmux::start(&cfg);
    let c = client();
    for _ in 0..40 {
        let r = c
            .post(llmux.url("/v1/embeddings"))
            .header("x-portkey-config", "mixed")
            .json(&json!({"model": "text-embedding-3-small", "input": "hello"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(r.headers(), "x-llmux-virtual-key"), "gpt");
    }
    assert_eq!(m.stats("claude").requests, 0);
    // Chat still balances over both.
    let results = fire(
        &c,
        &llmux.url("/v1/chat/completions"),
        60,
        8,
        &[("x-portkey-config", "mixed")],
    )
    .await;
    assert!(results.iter().all(|r| r.0 == 200));
    assert!(m.stats("claude").requests > 0);
    // Nothing can serve: 400 naming why.
    let r = c
        .post(llmux.url("/v1/embeddings"))
        .header("x-portkey-config", "claude_only")
        .json(&json!({"model": "e", "input": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unsupported_by_targets");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("claude (config.targets[0]): provider anthropic does not serve /embeddings"),
        "{msg}"
    );
}

/// Defect 13 (translation): a request the Anthropic translation refuses (here `n > 1`) skips
/// that leaf instead of failing the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d13_a_translation_refusal_skips_the_leaf() {
    let m = mock();
    let cfg = format!(
        "{}[virtual_keys.claude]\nprovider = \"anthropic\"\nbase_url = \"{}\"\napi_key = \"sk-ant-test-000000\"\n\n\
         [configs.f]\nstrategy = {{ mode = \"fallback\" }}\ntargets = [ {{ virtual_key = \"claude\" }}, {{ virtual_key = \"gpt\" }} ]\n",
        openai_target(&m, "gpt", ""),
        m.url("claude"),
    );
    let llmux = Llmux::start(&cfg);
    let c = client();
    let body = json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "hi"}]});
    let (s, h, v) = chat(&c, &llmux, "f", body).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(header(&h, "x-llmux-virtual-key"), "gpt");
    assert_eq!(
        header(&h, "x-llmux-attempts"),
        "1",
        "a refusal is not an attempt"
    );
    assert_eq!(m.stats("claude").requests, 0);
}

/// Defect 14: an upstream error response carries the route headers too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d14_route_headers_on_upstream_errors() {
    let m = mock();
    let cfg = format!(
        "{}\n[configs.one]\nstrategy = {{ mode = \"single\" }}\ntargets = [ {{ virtual_key = \"limited\" }} ]\n",
        openai_target(&m, "limited", "")
    );
    let llmux = Llmux::start(&cfg);
    let c = client();
    for (status, retry_after) in [(429, Some(2)), (500, None), (400, None)] {
        m.set_behavior(
            "limited",
            Behavior {
                always_status: Some(status),
                retry_after_s: retry_after,
                ..Default::default()
            },
        );
        // A fresh target state each time: 429 cools it down, so use a new trace.
        let (s, h, v) = chat(&c, &llmux, "one", chat_body("m")).await;
        assert_eq!(s, status, "{v}");
        assert_eq!(header(&h, "x-llmux-virtual-key"), "limited", "{status}");
        assert_eq!(header(&h, "x-portkey-provider"), "openai", "{status}");
        assert_eq!(header(&h, "x-llmux-attempts"), "1", "{status}");
        assert_eq!(
            header(&h, "x-portkey-last-used-option-index"),
            "config.targets[0]"
        );
        assert!(!header(&h, "x-portkey-trace-id").is_empty());
        if status == 429 {
            assert_eq!(header(&h, "retry-after"), "2");
            tokio::time::sleep(Duration::from_millis(2100)).await;
        }
    }
}

/// `request_deadline_ms` bounds a request across retries and fallbacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_deadline_bounds_retries_and_fallbacks() {
    let m = mock();
    let cfg = format!(
        "{}{}\n[configs.f]\nstrategy = {{ mode = \"fallback\" }}\ntargets = [\n  {{ virtual_key = \"flaky\", retry = {{ attempts = 5 }} }},\n  {{ virtual_key = \"slow\" }},\n]\n",
        openai_target(&m, "flaky", "failure_threshold = 100"),
        openai_target(&m, "slow", ""),
    );
    let llmux = Llmux::start_with(&cfg, "request_deadline_ms = 1500", &[]);
    let c = client();
    m.set_behavior(
        "flaky",
        Behavior {
            always_status: Some(503),
            latency_ms: 150,
            ..Default::default()
        },
    );
    m.set_behavior(
        "slow",
        Behavior {
            latency_ms: 10_000,
            ..Default::default()
        },
    );
    let t0 = Instant::now();
    let (s, _, v) = chat(&c, &llmux, "f", chat_body("m")).await;
    let took = t0.elapsed();
    assert!(
        took < Duration::from_millis(1900),
        "the deadline was not kept: {took:?}"
    );
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    assert!(s == 408 || s == 503, "{s} {v}");
}

/// A request that starts after another's failure was answered is decided with that failure
/// known: the outcome travels through the target's mailbox, and while it is pending permits
/// queue behind it instead of taking the lock-free path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_is_known_to_the_next_request() {
    let m = mock();
    let mut cfg = String::new();
    for i in 0..10 {
        cfg += &openai_target(
            &m,
            &format!("t{i}"),
            "failure_threshold = 1\ncooldown_ms = 60000",
        );
        m.set_behavior(
            &format!("t{i}"),
            Behavior {
                always_status: Some(500),
                ..Default::default()
            },
        );
    }
    let llmux = Llmux::start(&cfg);
    let c = client();
    for i in 0..10 {
        let send = || {
            c.post(llmux.url("/v1/chat/completions"))
                .header("x-portkey-virtual-key", format!("t{i}"))
                .json(&chat_body("m"))
                .send()
        };
        assert_eq!(send().await.unwrap().status(), 500);
        assert_eq!(
            send().await.unwrap().status(),
            503,
            "t{i}: the open circuit was missed"
        );
        assert_eq!(m.stats(&format!("t{i}")).requests, 1);
    }
}
