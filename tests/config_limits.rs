//! Hardening of configs and cost (issue 13): inline configs cannot amplify memory, their cache
//! is bounded and cleared on reload, overflowing weights are refused, and cost uses the right
//! price row (never a longer model's neighbour) with cached input tokens billed apart.

mod common;

use common::*;
use serde_json::{json, Value};

/// The daemon's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

fn one_key(m: &MockServer) -> String {
    format!(
        "[virtual_keys.m]\nprovider = \"openai\"\nbase_url = \"{}/v1\"\n\n[virtual_keys.other]\nprovider = \"openai\"\nbase_url = \"{}/v1\"\n",
        m.url("m"),
        m.url("other")
    )
}

/// An inline config with `leaves` leaves under a root whose override_params are ~28 KB of
/// small entries (the shape that used to be copied into every leaf); `nonce` makes each
/// request's header distinct so none is served from the cache.
fn big_inline(leaves: usize, nonce: usize) -> String {
    let mut params = serde_json::Map::new();
    params.insert("model".into(), json!("gpt-4o-mini"));
    let mut meta = serde_json::Map::new();
    for i in 0..1000 {
        meta.insert(format!("k{nonce}_{i:04}"), json!("v"));
    }
    params.insert("metadata".into(), Value::Object(meta));
    let targets: Vec<Value> = (0..leaves).map(|_| json!({"virtual_key": "m"})).collect();
    json!({"strategy": {"mode": "loadbalance"}, "override_params": params, "targets": targets})
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_inline_configs_do_not_amplify_memory() {
    let m = mock();
    let llmux = Llmux::start_with(&one_key(&m), "max_header_bytes = 262144", &[]);
    let c = client();
    let url = llmux.url("/v1/chat/completions");
    // Warm up allocator and connection pools before the baseline.
    let r = c
        .post(&url)
        .header("x-portkey-virtual-key", "m")
        .json(&chat_body("gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let before = rss_kib(llmux.pid());
    let n = 16;
    for i in 0..n {
        let cfg = big_inline(256, i);
        assert!(cfg.len() < 64 * 1024, "fits the default header limit");
        let r = c
            .post(&url)
            .header("x-portkey-config", cfg)
            .json(&chat_body("gpt-4o-mini"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let after = rss_kib(llmux.pid());
    let grown_mib = after.saturating_sub(before) / 1024;
    eprintln!("RSS {before} -> {after} KiB over {n} inline configs");
    // Copied into each of 256 leaves, each config held ~25 MB and the cache kept all of them
    // (~400 MB); shared, each is well under 1 MB and the cache is bounded by bytes.
    assert!(
        grown_mib < 48,
        "RSS grew by {grown_mib} MiB over {n} inline configs ({before} -> {after} KiB)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_config_limits_answer_400() {
    let m = mock();
    let llmux = Llmux::start_with(&one_key(&m), "max_header_bytes = 262144", &[]);
    let c = client();
    let url = llmux.url("/v1/chat/completions");
    let send = |cfg: String| {
        c.post(&url)
            .header("x-portkey-config", cfg)
            .json(&chat_body("gpt-4o-mini"))
            .send()
    };

    // Too many leaves: 400 invalid_config naming the limit and where it was crossed.
    let targets: Vec<Value> = (0..300).map(|_| json!({"virtual_key": "m"})).collect();
    let r = send(json!({"strategy": {"mode": "fallback"}, "targets": targets}).to_string())
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_config", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("max_inline_config_leaves"), "{msg}");
    assert!(msg.contains("256"), "{msg}");
    assert!(msg.contains("x-portkey-config.targets[256]"), "{msg}");

    // Params small in the header but huge once merged into many nodes: the compiled-size bound.
    let mut big = serde_json::Map::new();
    for i in 0..2000 {
        big.insert(format!("k{i:04}"), json!(0));
    }
    let targets: Vec<Value> = (0..200)
        .map(|i| json!({"virtual_key": "m", "override_params": {"n": i}}))
        .collect();
    let r = send(
        json!({"strategy": {"mode": "fallback"}, "override_params": {"metadata": big}, "targets": targets})
            .to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_config", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("max_inline_config_bytes"), "{msg}");
    assert!(msg.contains("x-portkey-config.targets["), "{msg}");

    // Weights whose sum overflows to infinity.
    let r = send(
        json!({"strategy": {"mode": "loadbalance"}, "targets": [
            {"virtual_key": "m", "weight": 1e308}, {"virtual_key": "m", "weight": 1e308}]})
        .to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_config", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("x-portkey-config.targets[0].weight"), "{msg}");

    // Within the limits the same shapes serve.
    let targets: Vec<Value> = (0..256).map(|_| json!({"virtual_key": "m"})).collect();
    let r = send(json!({"strategy": {"mode": "fallback"}, "targets": targets}).to_string())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_cache_does_not_outlive_a_reload() {
    let m = mock();
    let llmux = Llmux::start(&one_key(&m));
    let c = client();
    let url = llmux.url("/v1/chat/completions");
    let cfg =
        json!({"strategy": {"mode": "single"}, "targets": [{"virtual_key": "other"}]}).to_string();
    for _ in 0..2 {
        let r = c
            .post(&url)
            .header("x-portkey-config", &cfg)
            .json(&chat_body("gpt-4o-mini"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // The reload removes the virtual key the cached tree routes to.
    llmux.rewrite_config(&format!(
        "[virtual_keys.m]\nprovider = \"openai\"\nbase_url = \"{}/v1\"\n",
        m.url("m")
    ));
    let r = c
        .post(llmux.admin_url("/admin/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = c
        .post(&url)
        .header("x-portkey-config", &cfg)
        .json(&chat_body("gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown virtual key `other`"),
        "{v}"
    );
}

#[test]
fn overflowing_weights_are_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        "[server]\nlisten = \"127.0.0.1:1\"\n\n[virtual_keys.a]\nprovider = \"openai\"\n\n\
         [configs.main]\nstrategy = { mode = \"loadbalance\" }\n\
         targets = [ { virtual_key = \"a\", weight = 1e308 }, { virtual_key = \"a\", weight = 1e308 } ]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_llmux"))
        .arg("check-config")
        .arg(&p)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted weights of 1e308");
    assert!(err.contains("configs.main.targets[0].weight"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_uses_the_models_own_price() {
    let m = mock();
    let cfg = format!(
        "{}\n[pricing.\"gpt-4o\"]\ninput_per_mtok = 2.5\noutput_per_mtok = 10.0\n\n\
         [pricing.\"gpt-4o-mini\"]\ninput_per_mtok = 0.15\noutput_per_mtok = 0.6\n",
        one_key(&m)
    );
    let llmux = Llmux::start(&cfg);
    let c = client();
    let url = llmux.url("/v1/chat/completions");
    for (trace, model) in [
        ("mini", "gpt-4o-mini"),
        ("dated", "gpt-4o-2024-08-06"),
        ("unknown", "gpt-4o-audio-preview"),
    ] {
        let r = c
            .post(&url)
            .header("x-portkey-virtual-key", "m")
            .header("x-portkey-trace-id", trace)
            .json(&chat_body(model))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let entry = |trace: &'static str| {
        let c = c.clone();
        let u = llmux.admin_url(&format!("/admin/requests?trace_id={trace}"));
        async move { get_json(&c, &u).await["requests"][0].clone() }
    };
    // The entry's cost at these USD-per-million input/output rates.
    let assert_cost = |e: &serde_json::Value, input: f64, output: f64| {
        let tokens = |k: &str| e[k].as_u64().unwrap() as f64;
        let want = (tokens("prompt_tokens") * input + tokens("completion_tokens") * output) / 1e6;
        assert!(
            (e["cost_usd"].as_f64().unwrap() - want).abs() < 1e-12,
            "{e}"
        );
    };
    assert_cost(&entry("mini").await, 0.15, 0.6);
    assert_cost(&entry("dated").await, 2.5, 10.0);
    let e = entry("unknown").await;
    assert!(e["cost_usd"].is_null(), "{e}");
    assert_eq!(e["cached_tokens"], 0, "{e}");
}

/// `llmux prices` prints the built-in catalog under the config's rows, saying which is which.
#[test]
fn prices_prints_the_catalog_under_the_configs_rows() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(
        &p,
        "[server]\nlisten = \"127.0.0.1:1\"\n\n[pricing.\"gpt-4o\"]\ninput_per_mtok = 2.0\noutput_per_mtok = 8.0\n\n\
         [pricing.\"my-finetune\"]\ninput_per_mtok = 1.0\noutput_per_mtok = 1.0\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_llmux"))
        .arg("prices")
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |model: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(model))
            .unwrap_or_else(|| panic!("no row for {model}:\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(line("gpt-4o"), ["gpt-4o", "2", "-", "8", "config.toml"]);
    assert_eq!(line("my-finetune")[4], "config.toml");
    assert_eq!(
        line("gpt-4o-mini"),
        ["gpt-4o-mini", "0.15", "0.075", "0.6", "catalog"]
    );
    assert_eq!(line("claude-3-haiku")[4], "catalog");
    assert!(text.contains("Catalog of 20"), "{text}");
}
