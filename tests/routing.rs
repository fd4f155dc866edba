//! Routing through strategy trees against real mock providers over loopback: the seed
//! scenario, canaries, weight 0, nesting, fallback on 429/500, trace ids and route headers.

mod common;

use std::collections::HashMap;

use common::*;
use serde_json::{json, Value};

const SEED: &str = r#"
[configs.main]
strategy = { mode = "loadbalance" }
targets = [
  { virtual_key = "anthropic-main", weight = 0.5, override_params = { model = "claude-3-opus-20240229", max_tokens = 200 } },
  { strategy = { mode = "fallback" }, weight = 0.5, targets = [
      { virtual_key = "openai-main" },
      { virtual_key = "azure-east" },
  ] },
]
"#;

fn count_by(
    results: &[(u16, reqwest::header::HeaderMap, String)],
    h: &str,
) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for (_, headers, _) in results {
        *m.entry(header(headers, h).to_owned()).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenario_split_overrides_and_fallback() {
    let m = mock();
    let llmux = Llmux::start_with(
        &format!("{}{SEED}", provider_keys(&m)),
        "default_config = \"main\"",
        &[],
    );
    let c = client();
    let url = llmux.url("/v1/chat/completions");

    // 50/50 between Anthropic and the OpenAI→Azure fallback pair (bounds: < 1e-6 by chance).
    let n = 2000;
    let results = fire(&c, &url, n, 32, &[]).await;
    assert!(results.iter().all(|r| r.0 == 200), "all succeed");
    let by_key = count_by(&results, "x-llmux-virtual-key");
    let anthropic = by_key.get("anthropic-main").copied().unwrap_or(0) as u64;
    let openai = by_key.get("openai-main").copied().unwrap_or(0) as u64;
    assert_share(anthropic, n as u64, 0.5, "anthropic share");
    assert_eq!(anthropic + openai, n as u64);
    assert_eq!(by_key.get("azure-east"), None, "azure only as fallback");
    let by_path = count_by(&results, "x-portkey-last-used-option-index");
    assert_eq!(
        by_path
            .keys()
            .map(String::as_str)
            .collect::<std::collections::BTreeSet<_>>(),
        ["config.targets[0]", "config.targets[1].targets[0]"]
            .into_iter()
            .collect()
    );
    // The mock saw exactly what the router claims it sent.
    assert_eq!(
        m.stats("anthropic-main").requests as usize,
        by_key["anthropic-main"]
    );
    assert_eq!(
        m.stats("openai-main").requests as usize,
        by_key["openai-main"]
    );

    // Anthropic received the overridden model and max_tokens, in its own wire format.
    let last = m
        .stats("anthropic-main")
        .last_body
        .expect("anthropic saw a body");
    assert_eq!(last["model"], "claude-3-opus-20240229");
    assert_eq!(last["max_tokens"], 200);
    assert_eq!(last["messages"][0]["role"], "user");
    let anth_headers = m.stats("anthropic-main").last_headers;
    assert_eq!(
        anth_headers.get("x-api-key").map(String::as_str),
        Some("anthropic-test-key-000000")
    );
    assert!(anth_headers.contains_key("anthropic-version"));
    // Azure gets its key in api-key, OpenAI as a bearer token.
    assert_eq!(
        m.stats("openai-main")
            .last_headers
            .get("authorization")
            .map(String::as_str),
        Some("Bearer sk-test-openai-000000")
    );
    // An Anthropic answer comes back as an OpenAI chat.completion.
    let anth = results
        .iter()
        .find(|r| header(&r.1, "x-llmux-virtual-key") == "anthropic-main")
        .unwrap();
    let v: Value = serde_json::from_str(&anth.2).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);

    // OpenAI starts answering 500: its share moves to Azure, nothing fails.
    m.set_behavior(
        "openai-main",
        Behavior {
            always_status: Some(500),
            ..Default::default()
        },
    );
    let results = fire(&c, &url, 400, 16, &[]).await;
    assert!(results.iter().all(|r| r.0 == 200), "500s fall back");
    let by_key = count_by(&results, "x-llmux-virtual-key");
    assert_eq!(by_key.get("openai-main"), None);
    assert!(by_key["azure-east"] > 100, "{by_key:?}");
    let fallback = results
        .iter()
        .find(|r| header(&r.1, "x-llmux-virtual-key") == "azure-east")
        .unwrap();
    assert_eq!(
        header(&fallback.1, "x-portkey-last-used-option-index"),
        "config.targets[1].targets[1]"
    );
    assert_eq!(
        m.stats("azure-east")
            .last_headers
            .get("api-key")
            .map(String::as_str),
        Some("azure-test-key-000000")
    );

    // OpenAI rate-limits with Retry-After: Azure takes over, and OpenAI is left alone while
    // cooling down instead of being hammered.
    m.set_behavior(
        "openai-main",
        Behavior {
            always_status: Some(429),
            retry_after_s: Some(30),
            ..Default::default()
        },
    );
    let before = m.stats("openai-main").requests;
    let results = fire(&c, &url, 400, 16, &[]).await;
    assert!(results.iter().all(|r| r.0 == 200), "429s fall back");
    let hits = m.stats("openai-main").requests - before;
    assert!(hits <= 20, "openai got {hits} requests while cooling down");
    let by_key = count_by(&results, "x-llmux-virtual-key");
    assert!(by_key["azure-east"] > 100, "{by_key:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_split_and_weight_zero() {
    let m = mock();
    let cfg = format!(
        r#"{}
[configs.canary]
strategy = {{ mode = "loadbalance" }}
targets = [
  {{ virtual_key = "openai-main", weight = 0.9 }},
  {{ virtual_key = "azure-east", weight = 0.1 }},
  {{ virtual_key = "anthropic-main", weight = 0 }},
]
"#,
        provider_keys(&m)
    );
    let llmux = Llmux::start(&cfg);
    let c = client();
    let n = 2000;
    let results = fire(
        &c,
        &llmux.url("/v1/chat/completions"),
        n,
        32,
        &[("x-portkey-config", "canary")],
    )
    .await;
    assert!(results.iter().all(|r| r.0 == 200));
    let by_key = count_by(&results, "x-llmux-virtual-key");
    assert_share(by_key["openai-main"] as u64, n as u64, 0.9, "stable share");
    assert_eq!(by_key.get("anthropic-main"), None);
    assert_eq!(
        m.stats("anthropic-main").requests,
        0,
        "weight 0 receives nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_depth_three_and_inline_config() {
    let m = mock();
    let llmux = Llmux::start(&provider_keys(&m));
    m.set_behavior(
        "openai-main",
        Behavior {
            always_status: Some(503),
            ..Default::default()
        },
    );
    // fallback → loadbalance → fallback → leaves: the failing OpenAI leaf falls back to Azure
    // three levels down; Portkey's inline snake_case JSON, as the SDK sends it.
    let inline = json!({
        "strategy": {"mode": "fallback"},
        "targets": [
            {"strategy": {"mode": "loadbalance"}, "targets": [
                {"strategy": {"mode": "fallback"}, "override_params": {"model": "gpt-4o"}, "targets": [
                    {"virtual_key": "openai-main"},
                    {"virtual_key": "azure-east", "override_params": {"temperature": 0.1}}
                ]}
            ]},
            {"virtual_key": "anthropic-main"}
        ]
    })
    .to_string();
    let c = client();
    let results = fire(
        &c,
        &llmux.url("/v1/chat/completions"),
        50,
        8,
        &[("x-portkey-config", &inline)],
    )
    .await;
    for (status, h, body) in &results {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(
            header(h, "x-portkey-last-used-option-index"),
            "config.targets[0].targets[0].targets[1]"
        );
        assert_eq!(header(h, "x-llmux-virtual-key"), "azure-east");
    }
    // Overrides merged down the tree: model from the grandparent, temperature from the leaf.
    let body = m.stats("azure-east").last_body.unwrap();
    assert_eq!(body["model"], "gpt-4o");
    assert_eq!(body["temperature"], 0.1);

    // x-portkey-virtual-key routes straight to one target.
    let r = c
        .post(llmux.url("/v1/chat/completions"))
        .header("x-portkey-virtual-key", "anthropic-main")
        .json(&json!({"model": "claude-3-haiku", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(r.headers(), "x-llmux-virtual-key"), "anthropic-main");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_ids_and_exhaustion_error() {
    let m = mock();
    let cfg = format!(
        r#"{}
[configs.pair]
strategy = {{ mode = "fallback" }}
targets = [ {{ virtual_key = "openai-main" }}, {{ virtual_key = "azure-east" }} ]
"#,
        provider_keys(&m)
    );
    let llmux = Llmux::start_with(&cfg, "default_config = \"pair\"", &[]);
    let c = client();
    let url = llmux.url("/v1/chat/completions");
    let r = c
        .post(&url)
        .header("x-portkey-trace-id", "trace-abc-123")
        .json(&chat_body("gpt-4o"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(r.headers(), "x-portkey-trace-id"), "trace-abc-123");
    let r = c
        .post(&url)
        .header("x-request-id", "req-77")
        .json(&chat_body("gpt-4o"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(r.headers(), "x-portkey-trace-id"), "req-77");
    let r = c
        .post(&url)
        .json(&chat_body("gpt-4o"))
        .send()
        .await
        .unwrap();
    let generated = header(r.headers(), "x-portkey-trace-id").to_owned();
    assert_eq!(generated.len(), 32, "generated trace id: {generated}");

    // Every target fails: the last upstream status, an OpenAI error listing each attempt.
    m.set_behavior(
        "openai-main",
        Behavior {
            always_status: Some(500),
            ..Default::default()
        },
    );
    m.set_behavior(
        "azure-east",
        Behavior {
            always_status: Some(503),
            ..Default::default()
        },
    );
    let r = c
        .post(&url)
        .header("x-portkey-trace-id", "all-fail")
        .json(&chat_body("gpt-4o"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(header(r.headers(), "x-portkey-trace-id"), "all-fail");
    let v: Value = r.json().await.unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("openai-main") && msg.contains("500"), "{msg}");
    assert!(msg.contains("azure-east") && msg.contains("503"), "{msg}");
    assert!(
        v["error"].get("type").is_some()
            && v["error"].get("code").is_some()
            && v["error"].get("param").is_some()
    );
    // No provider key leaks into the error.
    assert!(!msg.contains("sk-test-openai") && !msg.contains("azure-test-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_respects_on_status_codes_and_retry() {
    let m = mock();
    let cfg = format!(
        r#"{}
[configs.only429]
strategy = {{ mode = "fallback", on_status_codes = [429] }}
targets = [ {{ virtual_key = "openai-main" }}, {{ virtual_key = "azure-east" }} ]

[virtual_keys.flaky]
provider = "openai"
base_url = "{}/v1"
failure_threshold = 1000

[configs.retrying]
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "flaky", retry = {{ attempts = 3 }} }} ]
"#,
        provider_keys(&m),
        m.url("flaky")
    );
    let llmux = Llmux::start(&cfg);
    let c = client();
    let url = llmux.url("/v1/chat/completions");
    // A 500 is not in on_status_codes: no fallback, the client sees the 500.
    m.set_behavior(
        "openai-main",
        Behavior {
            always_status: Some(500),
            ..Default::default()
        },
    );
    let r = c
        .post(&url)
        .header("x-portkey-config", "only429")
        .json(&chat_body("gpt-4o"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(m.stats("azure-east").requests, 0);

    // Retries on one leaf: a flaky target (50 % 503) succeeds within 3 retries almost always.
    m.set_behavior(
        "flaky",
        Behavior {
            fail_rate: 0.5,
            fail_status: 503,
            ..Default::default()
        },
    );
    let results = fire(&c, &url, 60, 8, &[("x-portkey-config", "retrying")]).await;
    // Each request fails all 4 tries with p = 1/16: at most 16 of 60 except once in 1e6 runs.
    let failed = results.iter().filter(|r| r.0 != 200).count() as u64;
    let (_, most) = binomial_range(60, 1.0 / 16.0);
    assert!(failed <= most, "{failed}/60 failed despite retries");
    let retried = results
        .iter()
        .filter(|r| header(&r.1, "x-portkey-retry-attempt-count") != "0")
        .count();
    assert!(retried > 5, "some requests needed retries: {retried}");
}

const CONDITIONAL: &str = r#"
[configs.cond]
strategy = { mode = "fallback" }

[[configs.cond.targets]]
override_params = { user = "conditional" }
targets = [
  { name = "smart", virtual_key = "openai-main" },
  { name = "embed", virtual_key = "azure-east" },
  { name = "cheap", strategy = { mode = "loadbalance" }, targets = [
      { virtual_key = "anthropic-main", override_params = { model = "claude-3-haiku-20240307", max_tokens = 50 } } ] },
]
[configs.cond.targets.strategy]
mode = "conditional"
default = "cheap"
conditions = [
  { query = { "metadata.plan" = { "$eq" = "paid" } }, then = "smart" },
  { query = { "$or" = [ { "params.model" = "gpt-4o" }, { "params.temperature" = { "$gt" = 0.7 } } ] }, then = "smart" },
  { query = { "url.pathname" = "/v1/embeddings" }, then = "embed" },
]

[[configs.cond.targets]]
virtual_key = "azure-east"

[configs.strict]
strategy = { mode = "conditional", conditions = [ { query = { "metadata.tier" = { "$in" = ["gold"] } }, then = "x" } ] }
targets = [ { name = "x", virtual_key = "openai-main" } ]
"#;

/// Sends one request; returns status, the serving path and virtual key, and the body.
async fn send(
    c: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> (u16, String, String, Value) {
    let mut r = c.post(url);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.json(body).send().await.unwrap();
    let status = r.status().as_u16();
    let path = header(r.headers(), "x-portkey-last-used-option-index").to_owned();
    let vk = header(r.headers(), "x-llmux-virtual-key").to_owned();
    (status, path, vk, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_routing_by_metadata_params_and_path_stored_and_inline() {
    let m = mock();
    let llmux = Llmux::start(&format!("{}{CONDITIONAL}", provider_keys(&m)));
    let c = client();
    let chat = llmux.url("/v1/chat/completions");
    let cond = ("x-portkey-config", "cond");
    let paid = ("x-portkey-metadata", r#"{"plan":"paid","_user":"ann"}"#);
    let free = ("x-portkey-metadata", r#"{"plan":"free"}"#);

    // metadata → smart, with the node's override_params inherited.
    let (s, path, vk, _) = send(&c, &chat, &[cond, paid], &chat_body("gpt-4o-mini")).await;
    assert_eq!(
        (s, path.as_str(), vk.as_str()),
        (200, "config.targets[0].targets[0]", "openai-main")
    );
    let sent = m.stats("openai-main").last_body.unwrap();
    assert_eq!(sent["user"], "conditional");
    assert_eq!(sent["model"], "gpt-4o-mini");
    // params: a bare value, and `$gt` inside `$or`.
    let (_, path, ..) = send(&c, &chat, &[cond, free], &chat_body("gpt-4o")).await;
    assert_eq!(path, "config.targets[0].targets[0]");
    let mut hot = chat_body("gpt-4o-mini");
    hot["temperature"] = json!(0.9);
    let (_, path, ..) = send(&c, &chat, &[cond], &hot).await;
    assert_eq!(path, "config.targets[0].targets[0]");
    // Nothing matches: the default, a load-balancing node with its own params.
    hot["temperature"] = json!(0.7);
    let (s, path, vk, v) = send(&c, &chat, &[cond, free], &hot).await;
    assert_eq!(
        (s, path.as_str(), vk.as_str()),
        (
            200,
            "config.targets[0].targets[2].targets[0]",
            "anthropic-main"
        ),
        "{v}"
    );
    assert_eq!(
        m.stats("anthropic-main").last_body.unwrap()["model"],
        "claude-3-haiku-20240307"
    );
    // url.pathname.
    let (s, path, vk, v) = send(
        &c,
        &llmux.url("/v1/embeddings"),
        &[cond],
        &json!({"model": "text-embedding-3-small", "input": "hi"}),
    )
    .await;
    assert_eq!(
        (s, path.as_str(), vk.as_str()),
        (200, "config.targets[0].targets[1]", "azure-east"),
        "{v}"
    );

    // The chosen child failing climbs like any failure: the fallback above serves.
    m.set_behavior(
        "openai-main",
        Behavior {
            always_status: Some(500),
            ..Default::default()
        },
    );
    let (s, path, vk, _) = send(&c, &chat, &[cond, paid], &chat_body("gpt-4o-mini")).await;
    assert_eq!(
        (s, path.as_str(), vk.as_str()),
        (200, "config.targets[1]", "azure-east")
    );
    m.set_behavior("openai-main", Behavior::default());

    // No match and no default: 400 listing the conditions; no provider is called.
    let before = m.stats("openai-main").requests;
    let (s, _, _, v) = send(
        &c,
        &chat,
        &[
            ("x-portkey-config", "strict"),
            ("x-portkey-metadata", r#"{"tier":"silver"}"#),
        ],
        &chat_body("gpt-4o-mini"),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["code"], "no_condition_matched");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(r#"{"metadata.tier":{"$in":["gold"]}} then `x`"#),
        "{msg}"
    );
    let (s, ..) = send(
        &c,
        &chat,
        &[
            ("x-portkey-config", "strict"),
            ("x-portkey-metadata", r#"{"tier":"gold"}"#),
        ],
        &chat_body("gpt-4o-mini"),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(m.stats("openai-main").requests, before + 1);

    // Inline (Portkey JSON), nested under a loadbalance node, with a nested params path.
    let inline = json!({"strategy": {"mode": "loadbalance"}, "targets": [
        {"weight": 1, "strategy": {"mode": "conditional",
            "conditions": [{"query": {"params.response_format.type": {"$eq": "json_object"}}, "then": "json"}],
            "default": "text"},
         "targets": [{"name": "json", "virtual_key": "azure-east"}, {"name": "text", "virtual_key": "openai-main"}]},
        {"weight": 0, "virtual_key": "anthropic-main"}]})
    .to_string();
    let mut json_mode = chat_body("gpt-4o-mini");
    json_mode["response_format"] = json!({"type": "json_object"});
    let (s, path, vk, _) = send(&c, &chat, &[("x-portkey-config", &inline)], &json_mode).await;
    assert_eq!(
        (s, path.as_str(), vk.as_str()),
        (200, "config.targets[0].targets[0]", "azure-east")
    );
    let (s, path, ..) = send(&c, &chat, &[("x-portkey-config", &inline)], &chat_body("m")).await;
    assert_eq!((s, path.as_str()), (200, "config.targets[0].targets[1]"));

    // Inline errors are 400s naming the tree path.
    for (bad, path) in [
        (
            json!({"strategy": {"mode": "conditional", "conditions": [{"query": {"metadata.a": {"$regex": "("}}, "then": "x"}]},
                   "targets": [{"name": "x", "virtual_key": "openai-main"}]}),
            "x-portkey-config.strategy.conditions[0].query.metadata.a.$regex",
        ),
        (
            json!({"strategy": {"mode": "conditional", "default": "y"},
                   "targets": [{"name": "x", "virtual_key": "openai-main"}]}),
            "x-portkey-config.strategy.default",
        ),
        (
            json!({"strategy": {"mode": "conditional", "conditions": [{"query": {"$xor": []}, "then": "x"}]},
                   "targets": [{"name": "x", "virtual_key": "openai-main"}]}),
            "x-portkey-config.strategy.conditions[0].query.$xor",
        ),
    ] {
        let (s, _, _, v) = send(
            &c,
            &chat,
            &[("x-portkey-config", &bad.to_string())],
            &chat_body("m"),
        )
        .await;
        assert_eq!(s, 400, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(path),
            "{path}: {v}"
        );
    }
}

/// Every operator over the daemon: for each, a request that matches (→ `yes`) and one that
/// does not (→ the default, `no`), through an inline config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_conditional_operator_routes_through_the_daemon() {
    let m = mock();
    let llmux = Llmux::start(&provider_keys(&m));
    let c = client();
    let chat = llmux.url("/v1/chat/completions");
    let body = |extra: Value| {
        let mut b = chat_body("gpt-4o-mini");
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    // (query, metadata and body that match, metadata and body that do not)
    let cases = [
        (
            json!({"metadata.plan": "paid"}),
            r#"{"plan":"paid"}"#,
            json!({}),
            r#"{"plan":"free"}"#,
            json!({}),
        ),
        (
            json!({"params.model": {"$eq": "gpt-4o-mini"}}),
            "{}",
            json!({}),
            "{}",
            json!({"model": "gpt-4o"}),
        ),
        (
            json!({"metadata.plan": {"$ne": "free"}}),
            "{}",
            json!({}),
            r#"{"plan":"free"}"#,
            json!({}),
        ),
        (
            json!({"params.max_tokens": {"$gt": 100}}),
            "{}",
            json!({"max_tokens": 101}),
            "{}",
            json!({"max_tokens": 100}),
        ),
        (
            json!({"params.max_tokens": {"$gte": 100}}),
            "{}",
            json!({"max_tokens": 100}),
            "{}",
            json!({"max_tokens": 99}),
        ),
        (
            json!({"metadata.score": {"$lt": 0.5}}),
            r#"{"score":"0.25"}"#,
            json!({}),
            r#"{"score":"0.5"}"#,
            json!({}),
        ),
        (
            json!({"params.temperature": {"$lte": 0.5}}),
            "{}",
            json!({"temperature": 0.5}),
            "{}",
            json!({}),
        ),
        (
            json!({"metadata.region": {"$in": ["eu", "uk"]}}),
            r#"{"region":"uk"}"#,
            json!({}),
            r#"{"region":"us"}"#,
            json!({}),
        ),
        (
            json!({"metadata.region": {"$nin": ["us"]}}),
            r#"{"region":"eu"}"#,
            json!({}),
            r#"{"region":"us"}"#,
            json!({}),
        ),
        (
            json!({"params.messages.0.content": {"$regex": "^(?i)urgent"}}),
            "{}",
            json!({"messages": [{"role": "user", "content": "URGENT: help"}]}),
            "{}",
            json!({}),
        ),
        (
            json!({"$and": [{"metadata.plan": "paid"}, {"params.stream": {"$ne": true}}]}),
            r#"{"plan":"paid"}"#,
            json!({}),
            r#"{"plan":"paid"}"#,
            json!({"stream": true}),
        ),
        (
            json!({"$or": [{"metadata.plan": "paid"}, {"params.user": "vip"}]}),
            "{}",
            json!({"user": "vip"}),
            "{}",
            json!({"user": "x"}),
        ),
        // Keys after an `$or` still count (Portkey would ignore `metadata.region`).
        (
            json!({"$or": [{"metadata.plan": "paid"}], "metadata.region": "eu"}),
            r#"{"plan":"paid","region":"eu"}"#,
            json!({}),
            r#"{"plan":"paid","region":"us"}"#,
            json!({}),
        ),
        (
            json!({"url.pathname": {"$regex": "/chat/"}}),
            "{}",
            json!({}),
            "{}",
            json!({"__embeddings": true}),
        ),
    ];
    for (i, (query, meta_yes, body_yes, meta_no, body_no)) in cases.into_iter().enumerate() {
        let config = json!({"strategy": {"mode": "conditional", "default": "no",
                "conditions": [{"query": query, "then": "yes"}]},
            "targets": [{"name": "yes", "virtual_key": "openai-main"}, {"name": "no", "virtual_key": "azure-east"}]})
        .to_string();
        for (meta, extra, want) in [
            (meta_yes, body_yes, "openai-main"),
            (meta_no, body_no, "azure-east"),
        ] {
            let embeddings = extra.get("__embeddings").is_some();
            let (url, b) = if embeddings {
                (
                    llmux.url("/v1/embeddings"),
                    json!({"model": "text-embedding-3-small", "input": "x"}),
                )
            } else {
                (chat.clone(), body(extra.clone()))
            };
            let streamed = b["stream"] == true;
            let mut r = c
                .post(&url)
                .header("x-portkey-config", &config)
                .header("x-portkey-metadata", meta);
            r = r.json(&b);
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), 200, "case {i} ({query}) {meta} {extra}");
            assert_eq!(
                header(r.headers(), "x-llmux-virtual-key"),
                want,
                "case {i}: {query} with {meta} {extra}"
            );
            if streamed {
                r.bytes().await.unwrap();
            }
        }
    }
}
