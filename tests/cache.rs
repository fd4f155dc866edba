//! The response cache against real llmux processes, the mock provider and redis-server: MISS
//! then HIT without a provider call or budget, force refresh, namespaces, expiry, streamed
//! hits replayed (parsed by the openai SDK), failures never stored, sharing between replicas,
//! the memory bound, semantic matching, and the admin API.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn config(m: &MockServer, extra: &str) -> String {
    format!(
        r#"{keys}
[virtual_keys.embedder]
provider = "openai"
base_url = "{e}/v1"
api_key = "sk-test-embedder-0000"

[virtual_keys.limited]
provider = "openai"
base_url = "{l}/v1"
api_key = "sk-test-limited-00000"
rpm = 1
rpm_burst = 1

[cache]
embeddings_virtual_key = "embedder"

[configs.cached]
cache = {{ mode = "simple", max_age = 600 }}
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "openai-main" }} ]

[configs.anthropic]
cache = "simple"
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "anthropic-main", override_params = {{ model = "claude-3-haiku-20240307", max_tokens = 100 }} }} ]

[configs.short]
cache = {{ mode = "simple", max_age = 1 }}
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "openai-main" }} ]

[configs.limited]
cache = "simple"
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "limited" }} ]

# Only the second leaf caches: a cached answer is per leaf.
[configs.partly]
strategy = {{ mode = "fallback" }}
targets = [ {{ virtual_key = "azure-east" }}, {{ virtual_key = "openai-main", cache = "simple" }} ]

[configs.semantic]
cache = {{ mode = "semantic" }}
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "openai-main" }} ]
{extra}
"#,
        keys = provider_keys(m),
        e = m.url("embedder"),
        l = m.url("limited"),
    )
}

struct Answer {
    status: u16,
    cache: String,
    body: Value,
}

async fn ask(c: &reqwest::Client, llmux: &Llmux, headers: &[(&str, &str)], body: &Value) -> Answer {
    let mut r = c.post(llmux.url("/v1/chat/completions"));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.json(body).send().await.unwrap();
    let status = r.status().as_u16();
    let cache = header(r.headers(), "x-portkey-cache-status").to_owned();
    let text = r.text().await.unwrap();
    Answer {
        status,
        cache,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

/// Asks `text` with `headers` and checks the cache status it was answered with.
async fn expect_cache(
    c: &reqwest::Client,
    llmux: &Llmux,
    headers: &[(&str, &str)],
    text: &str,
    status: &str,
) {
    let a = ask(c, llmux, headers, &chat(text)).await;
    assert_eq!(a.status, 200, "{text}: {}", a.body);
    assert_eq!(a.cache, status, "{text} with {headers:?}");
}

fn chat(text: &str) -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})
}

fn content(v: &Value) -> &str {
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
}

async fn log_entry(c: &reqwest::Client, llmux: &Llmux, trace: &str) -> Value {
    let v = get_json(
        c,
        &llmux.admin_url(&format!("/admin/requests?trace_id={trace}")),
    )
    .await;
    v["requests"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miss_then_hit_without_provider_or_budget_refresh_namespace_and_expiry() {
    let m = mock();
    let cfg = format!(
        "{}\n[pricing.\"gpt-4o-mini\"]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n",
        config(&m, "")
    );
    let llmux = Llmux::start(&cfg);
    let c = client();
    let cached = ("x-portkey-config", "cached");

    // MISS, then HIT with the same answer and no provider call. Key order, `stream: false`
    // and `user` do not change the key.
    let a = ask(
        &c,
        &llmux,
        &[cached, ("x-portkey-trace-id", "c-miss")],
        &chat("Say hi"),
    )
    .await;
    assert_eq!((a.status, a.cache.as_str()), (200, "MISS"));
    let calls = m.stats("openai-main").requests;
    let reordered = json!({"messages": [{"content": "Say hi", "role": "user"}], "stream": false,
        "user": "someone", "model": "gpt-4o-mini"});
    let b = ask(
        &c,
        &llmux,
        &[cached, ("x-portkey-trace-id", "c-hit")],
        &reordered,
    )
    .await;
    assert_eq!((b.status, b.cache.as_str()), (200, "HIT"));
    assert_eq!(b.body, a.body, "the stored answer, byte for byte");
    assert_eq!(
        m.stats("openai-main").requests,
        calls,
        "a hit calls no provider"
    );
    // Logged as a hit: cost 0, the saved cost, and no attempt.
    let e = log_entry(&c, &llmux, "c-hit").await;
    assert_eq!(e["cache"], "hit", "{e}");
    assert_eq!(e["cost_usd"], 0.0, "{e}");
    assert!(e["saved_usd"].as_f64().unwrap() > 0.0, "{e}");
    assert_eq!(e["attempts"].as_array().unwrap().len(), 0, "{e}");
    assert_eq!(log_entry(&c, &llmux, "c-miss").await["cache"], "miss");

    // A different parameter or prompt is a different key.
    let mut warm = chat("Say hi");
    warm["temperature"] = json!(0.2);
    assert_eq!(ask(&c, &llmux, &[cached], &warm).await.cache, "MISS");
    // A tree without cache says DISABLED.
    let d = ask(
        &c,
        &llmux,
        &[("x-portkey-virtual-key", "openai-main")],
        &chat("Say hi"),
    )
    .await;
    assert_eq!(d.cache, "DISABLED");

    // Force refresh: no lookup, the provider answers, and its answer replaces the old one.
    let r = ask(
        &c,
        &llmux,
        &[cached, ("x-portkey-cache-force-refresh", "true")],
        &chat("Say hi"),
    )
    .await;
    assert_eq!(r.cache, "REFRESH");
    assert_eq!(m.stats("openai-main").requests, calls + 3);
    assert_ne!(r.body["id"], a.body["id"], "a new answer");
    let h = ask(&c, &llmux, &[cached], &chat("Say hi")).await;
    assert_eq!((h.cache.as_str(), &h.body["id"]), ("HIT", &r.body["id"]));

    // Namespaces partition.
    let ns = |n: &'static str| ("x-portkey-cache-namespace", n);
    expect_cache(&c, &llmux, &[cached, ns("team-a")], "Say hi", "MISS").await;
    expect_cache(&c, &llmux, &[cached, ns("team-a")], "Say hi", "HIT").await;
    expect_cache(&c, &llmux, &[cached, ns("team-b")], "Say hi", "MISS").await;
    let long = "n".repeat(300);
    let bad = ask(
        &c,
        &llmux,
        &[cached, ("x-portkey-cache-namespace", &long)],
        &chat("Say hi"),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.body);

    // DELETE one namespace, then all.
    let del = c
        .delete(llmux.admin_url("/admin/cache?namespace=team-a"))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 200);
    assert_eq!(del.json::<Value>().await.unwrap()["cleared"]["memory"], 1);
    expect_cache(&c, &llmux, &[cached, ns("team-a")], "Say hi", "MISS").await;
    expect_cache(&c, &llmux, &[cached, ns("team-b")], "Say hi", "HIT").await;
    c.delete(llmux.admin_url("/admin/cache"))
        .send()
        .await
        .unwrap();
    expect_cache(&c, &llmux, &[cached], "Say hi", "MISS").await;

    // max_age = 1: a hit at once, a miss once it has expired.
    let short = ("x-portkey-config", "short");
    expect_cache(&c, &llmux, &[short], "Expire me", "MISS").await;
    expect_cache(&c, &llmux, &[short], "Expire me", "HIT").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    expect_cache(&c, &llmux, &[short], "Expire me", "MISS").await;

    // A hit spends no budget: `limited` admits one request a minute, and hits keep coming.
    let limited = ("x-portkey-config", "limited");
    assert_eq!(
        ask(&c, &llmux, &[limited], &chat("Budget")).await.status,
        200
    );
    for _ in 0..5 {
        let h = ask(&c, &llmux, &[limited], &chat("Budget")).await;
        assert_eq!((h.status, h.cache.as_str()), (200, "HIT"));
    }
    assert_eq!(
        ask(&c, &llmux, &[limited], &chat("Other")).await.status,
        429
    );
    assert_eq!(m.stats("limited").requests, 1);

    // Hit rate and bytes on /admin/cache and /metrics.
    let stats = get_json(&c, &llmux.admin_url("/admin/cache")).await;
    assert!(stats["hits"].as_u64().unwrap() >= 10, "{stats}");
    assert!(stats["bytes"].as_u64().unwrap() > 0, "{stats}");
    let metrics = get_text(&c, &llmux.admin_url("/metrics")).await;
    assert!(
        metrics.contains("llmux_cache_lookups_total{result=\"hit\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("llmux_cache_bytes"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_never_stored_and_each_leaf_caches_its_own() {
    let m = mock();
    let llmux = Llmux::start(&config(&m, ""));
    let c = client();
    let cached = ("x-portkey-config", "cached");
    // (A 429 is a failure like these, but it cools the target down for the rest of the test.)
    for status in [500, 502, 400] {
        m.set_behavior(
            "openai-main",
            Behavior {
                always_status: Some(status),
                ..Default::default()
            },
        );
        let a = ask(&c, &llmux, &[cached], &chat("Fail first")).await;
        assert_eq!(a.status, status);
        m.set_behavior("openai-main", Behavior::default());
        // Not stored: the next request is a miss.
        let b = ask(&c, &llmux, &[cached], &chat("Fail first")).await;
        assert_eq!(
            (b.status, b.cache.as_str()),
            (200, "MISS"),
            "after a {status}"
        );
        c.delete(llmux.admin_url("/admin/cache"))
            .send()
            .await
            .unwrap();
    }
    // A stream broken midway is not stored.
    m.set_behavior(
        "openai-main",
        Behavior {
            stream_fail_after: Some(2),
            ..Default::default()
        },
    );
    let mut s = chat("Break the stream");
    s["stream"] = json!(true);
    let a = ask(&c, &llmux, &[cached], &s).await;
    assert_eq!((a.status, a.cache.as_str()), (200, "MISS"));
    m.set_behavior("openai-main", Behavior::default());
    expect_cache(&c, &llmux, &[cached], "Break the stream", "MISS").await;

    // Per leaf: azure (no cache) serves → DISABLED, nothing stored; with azure failing, the
    // caching leaf serves: MISS, then HIT (azure is still tried first, then the cache).
    let partly = ("x-portkey-config", "partly");
    expect_cache(&c, &llmux, &[partly], "Per leaf", "DISABLED").await;
    m.set_behavior(
        "azure-east",
        Behavior {
            always_status: Some(503),
            ..Default::default()
        },
    );
    expect_cache(&c, &llmux, &[partly], "Per leaf", "MISS").await;
    let calls = m.stats("openai-main").requests;
    let h = ask(&c, &llmux, &[partly], &chat("Per leaf")).await;
    assert_eq!((h.status, h.cache.as_str()), (200, "HIT"));
    assert_eq!(m.stats("openai-main").requests, calls);
}

#[test]
fn streamed_hits_replay_and_streamed_misses_are_stored_through_the_openai_sdk() {
    let m = mock();
    let llmux = Llmux::start(&config(&m, ""));
    run_client(&python(), "python/cache_sdk.py", &llmux, &[]);
    // Two misses reached Anthropic (one unstreamed, one streamed, translated and recorded);
    // the hits did not.
    assert_eq!(m.stats("anthropic-main").requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semantic_paraphrases_hit_unrelated_and_multi_turn_miss() {
    let m = mock();
    let llmux = Llmux::start(&config(&m, ""));
    let c = client();
    let sem = ("x-portkey-config", "semantic");
    let with_system = |text: &str| {
        json!({"model": "gpt-4o-mini", "messages": [
            {"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": text}]})
    };
    let a = ask(
        &c,
        &llmux,
        &[sem],
        &with_system("What is the capital of France?"),
    )
    .await;
    assert_eq!((a.status, a.cache.as_str()), (200, "SEMANTIC MISS"));
    let calls = m.stats("openai-main").requests;
    // The same words in another order and case, with filler: the mock embeds them alike.
    let b = ask(
        &c,
        &llmux,
        &[sem, ("x-portkey-trace-id", "sem-hit")],
        &with_system("capital of FRANCE, please"),
    )
    .await;
    assert_eq!((b.status, b.cache.as_str()), (200, "SEMANTIC HIT"));
    assert_eq!(b.body, a.body);
    assert_eq!(m.stats("openai-main").requests, calls, "no provider call");
    assert_eq!(
        log_entry(&c, &llmux, "sem-hit").await["cache"],
        "semantic_hit"
    );
    // The prompt was embedded through the embeddings key (once per lookup).
    assert_eq!(m.stats("embedder").requests, 2);
    assert_eq!(
        m.stats("embedder").last_body.unwrap()["input"],
        "capital of FRANCE, please"
    );
    // Related but below 0.95 (cosine ≈ 0.82 in the mock), and unrelated: misses.
    assert_eq!(
        ask(
            &c,
            &llmux,
            &[sem],
            &with_system("Tell me France's capital city")
        )
        .await
        .cache,
        "SEMANTIC MISS"
    );
    assert_eq!(
        ask(
            &c,
            &llmux,
            &[sem],
            &with_system("How tall is Mount Everest?")
        )
        .await
        .cache,
        "SEMANTIC MISS"
    );
    // Another system prompt is another scope: no semantic match across it.
    let other = json!({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "Answer at length."},
        {"role": "user", "content": "What is the capital of France?"}]});
    assert_eq!(ask(&c, &llmux, &[sem], &other).await.cache, "SEMANTIC MISS");
    // Multi-turn conversations are matched exactly only: no embedding, a plain MISS.
    let embeds = m.stats("embedder").requests;
    let turns = json!({"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Spain?"}]});
    assert_eq!(ask(&c, &llmux, &[sem], &turns).await.cache, "MISS");
    assert_eq!(
        ask(&c, &llmux, &[sem], &turns).await.cache,
        "HIT",
        "exact matching still applies"
    );
    assert_eq!(
        m.stats("embedder").requests,
        embeds,
        "multi-turn is not embedded"
    );
    // The embeddings key failing makes lookups misses, never errors.
    m.set_behavior(
        "embedder",
        Behavior {
            always_status: Some(500),
            ..Default::default()
        },
    );
    let e = ask(
        &c,
        &llmux,
        &[sem],
        &with_system("What is the capital of Italy?"),
    )
    .await;
    assert_eq!((e.status, e.cache.as_str()), (200, "SEMANTIC MISS"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_answers_through_redis_and_memory_stays_bounded() {
    let redis = Redis::start();
    let m = mock();
    let cluster = format!("[cluster]\nredis_url = \"{}\"\n", redis.url());
    let a = Llmux::start(&format!("{cluster}{}", config(&m, "")));
    let b = Llmux::start(&format!("{cluster}{}", config(&m, "")));
    let c = client();
    let cached = ("x-portkey-config", "cached");
    // Wait until both replicas count Redis as connected.
    for l in [&a, &b] {
        wait_cluster_connected(&c, l).await;
    }
    let first = ask(&c, &a, &[cached], &chat("Shared")).await;
    assert_eq!(first.cache, "MISS");
    // The write to Redis is in the background: wait until the answer is there, then b's
    // first request is a hit with a's answer, and calls no provider.
    let port = redis.url().rsplit(':').next().unwrap().to_owned();
    let mut stored = false;
    for _ in 0..100 {
        let keys = Command::new("redis-cli")
            .args(["-p", &port, "--scan", "--pattern", "llmux:cache:*"])
            .output()
            .expect("redis-cli runs");
        if !keys.stdout.is_empty() {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stored, "replica a never wrote its answer to Redis");
    let calls = m.stats("openai-main").requests;
    let hit = ask(&c, &b, &[cached], &chat("Shared")).await;
    assert_eq!(hit.cache, "HIT");
    assert_eq!(hit.body, first.body, "a's answer, through Redis");
    assert_eq!(m.stats("openai-main").requests, calls);
    // DELETE on one replica clears Redis for all (b's own memory copy stays until it expires
    // or is deleted there too).
    let del: Value = c
        .delete(a.admin_url("/admin/cache"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(del["cleared"]["redis"].as_u64().unwrap() >= 1, "{del}");
    c.delete(b.admin_url("/admin/cache")).send().await.unwrap();
    expect_cache(&c, &b, &[cached], "Shared", "MISS").await;
    drop((a, b));

    // Memory bound: 2 MiB of cache, 64 answers of ~64 KB each.
    let llmux = Llmux::start(&config(&m, "").replace(
        "[cache]\n",
        "[cache]\nmax_bytes = 2097152\nmax_entry_bytes = 262144\n",
    ));
    m.set_behavior(
        "openai-main",
        Behavior {
            response_padding: 64 * 1024,
            ..Default::default()
        },
    );
    for i in 0..64 {
        let a = ask(&c, &llmux, &[cached], &chat(&format!("Big {i}"))).await;
        assert_eq!((a.status, a.cache.as_str()), (200, "MISS"));
        assert!(content(&a.body).len() > 64 * 1024);
    }
    let stats = get_json(&c, &llmux.admin_url("/admin/cache")).await;
    assert!(
        stats["bytes"].as_u64().unwrap() <= 2 * 1024 * 1024,
        "{stats}"
    );
    assert!(stats["entries"].as_u64().unwrap() < 64, "{stats}");
    assert_eq!(stats["stored"], 64, "{stats}");
    // Above max_entry_bytes: served, never stored.
    m.set_behavior(
        "openai-main",
        Behavior {
            response_padding: 300 * 1024,
            ..Default::default()
        },
    );
    expect_cache(&c, &llmux, &[cached], "Huge", "MISS").await;
    expect_cache(&c, &llmux, &[cached], "Huge", "MISS").await;
    let stats = get_json(&c, &llmux.admin_url("/admin/cache")).await;
    assert_eq!(stats["too_large"], 2, "{stats}");
}

/// A leaf that is cooling down after a 429 is skipped by the walk, but its cached answers
/// still serve: that is when a cache helps most.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_answers_serve_while_the_target_cools_down() {
    let m = mock();
    let llmux = Llmux::start(&config(&m, ""));
    let c = client();
    let cached = ("x-portkey-config", "cached");
    expect_cache(&c, &llmux, &[cached], "Keep me", "MISS").await;
    m.set_behavior(
        "openai-main",
        Behavior {
            always_status: Some(429),
            retry_after_s: Some(60),
            ..Default::default()
        },
    );
    assert_eq!(
        ask(&c, &llmux, &[cached], &chat("Trip it")).await.status,
        429
    );
    let calls = m.stats("openai-main").requests;
    let h = ask(&c, &llmux, &[cached], &chat("Keep me")).await;
    assert_eq!((h.status, h.cache.as_str()), (200, "HIT"), "{}", h.body);
    // Anything not cached gets llmux's own 429 without reaching the provider.
    let r = ask(&c, &llmux, &[cached], &chat("Not cached")).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(m.stats("openai-main").requests, calls);
}
