//! The OpenAI Responses API through llmux, against real processes: the `openai` Python and
//! Node SDKs, a target that only speaks chat (Anthropic, translated both ways), OpenAI accounts
//! with their own Responses API (the mock's, stateful), and affinity: a follow-up reaches the
//! account that made the response it names.

mod common;

use std::process::Command;

use common::*;
use serde_json::{json, Value};

fn config(m: &MockServer) -> String {
    format!(
        r#"{keys}
[virtual_keys.openai-b]
provider = "openai"
base_url = "{b}/v1"
api_key = "sk-test-openai-b-0000"

[virtual_keys.compat]
provider = "openai-compatible"
base_url = "{compat}/v1"

[configs.translated]
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "anthropic-main", override_params = {{ model = "claude-3-haiku-20240307", max_tokens = 200 }} }} ]

[configs.compat]
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "compat" }} ]

[configs.native]
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "openai-main" }} ]

# Two OpenAI accounts 50/50: follow-ups must stick to the account that made the response.
[configs.split]
strategy = {{ mode = "loadbalance" }}
targets = [ {{ virtual_key = "openai-main" }}, {{ virtual_key = "openai-b" }} ]
"#,
        keys = provider_keys(m),
        b = m.url("openai-b"),
        compat = m.url("compat"),
    )
}

#[test]
fn python_sdk_through_a_chat_only_target() {
    let m = mock();
    let llmux = Llmux::start_with(&config(&m), "default_config = \"translated\"", &[]);
    run_client(
        &python(),
        "python/responses_sdk.py",
        &llmux,
        &["translated"],
    );
    // The last call that reached Anthropic was the chain's follow-up, carrying the earlier
    // turn (the bad inputs after it were refused before any upstream call).
    let sent = m.stats("anthropic-main").last_body.unwrap();
    let msgs = sent["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3, "{sent}");
    assert_eq!(msgs[2]["content"], "What is my name?", "{sent}");
    // Logged as `responses` requests.
    let log = tokio::runtime::Runtime::new().unwrap().block_on(get_json(
        &client(),
        &llmux.admin_url("/admin/requests?limit=5"),
    ));
    assert_eq!(log["requests"][0]["endpoint"], "responses", "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_on_a_translated_target_replays_the_conversation() {
    let m = mock();
    let llmux = Llmux::start_with(
        &config(&m),
        "default_config = \"translated\"\nmax_messages = 100",
        &[],
    );
    let c = client();
    let url = llmux.url("/v1/responses");
    let post = |body: Value| {
        let c = c.clone();
        let url = url.clone();
        async move {
            let r = c.post(&url).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, one) =
        post(json!({"model": "m", "input": "My name is Ann.", "instructions": "Be brief."})).await;
    assert_eq!(s, 200, "{one}");
    let (s, two) = post(json!({"model": "m", "input": "What is my name?",
        "previous_response_id": one["id"]}))
    .await;
    assert_eq!(s, 200, "{two}");
    // Anthropic got the first turn (question and answer) before the new question; the first
    // turn's instructions are not inherited (as OpenAI does).
    let sent = m.stats("anthropic-main").last_body.unwrap();
    let msgs = sent["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3, "{sent}");
    assert_eq!(msgs[0]["content"], "My name is Ann.");
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(msgs[2]["content"], "What is my name?");
    assert!(sent.get("system").is_none(), "{sent}");
    let (s, three) =
        post(json!({"model": "m", "input": "And again?", "previous_response_id": two["id"]})).await;
    assert_eq!(s, 200, "{three}");
    assert_eq!(
        m.stats("anthropic-main").last_body.unwrap()["messages"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    // store: false keeps nothing to chain from.
    let (_, unstored) = post(json!({"model": "m", "input": "Forget me", "store": false})).await;
    let (s, e) =
        post(json!({"model": "m", "input": "x", "previous_response_id": unstored["id"]})).await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(e["error"]["param"], "previous_response_id");
    let r = c
        .get(llmux.url(&format!(
            "/v1/responses/{}",
            unstored["id"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Too many input items: 400 naming `input`; junk ids never reach a store or a URL.
    let many: Vec<Value> = (0..101)
        .map(|_| json!({"role": "user", "content": "x"}))
        .collect();
    let (s, e) = post(json!({"model": "m", "input": many})).await;
    assert_eq!(
        (s, e["error"]["param"].as_str()),
        (400, Some("input")),
        "{e}"
    );
    let (s, e) =
        post(json!({"model": "m", "input": "x", "previous_response_id": "../../etc"})).await;
    assert_eq!(
        (s, e["error"]["param"].as_str()),
        (400, Some("previous_response_id")),
        "{e}"
    );
    let r = c
        .get(llmux.url("/v1/responses/..%2Fx"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // A chat-compatible server gets chat too.
    let r = c
        .post(&url)
        .header("x-portkey-config", "compat")
        .json(&json!({"model": "m", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        m.stats("compat").by_endpoint.get("chat_completions"),
        Some(&1)
    );
}

#[test]
fn python_sdk_through_native_accounts() {
    let m = mock();
    let llmux = Llmux::start_with(&config(&m), "default_config = \"native\"", &[]);
    run_client(&python(), "python/responses_sdk.py", &llmux, &["native"]);
    let stats = m.stats("openai-main");
    assert!(
        stats.by_endpoint["responses"] >= 8,
        "{:?}",
        stats.by_endpoint
    );
    // Retrieved once; after the delete llmux has forgotten the id and answers 404 itself.
    assert_eq!(
        stats.by_endpoint.get("responses_get"),
        Some(&1),
        "{:?}",
        stats.by_endpoint
    );
    assert_eq!(stats.by_endpoint.get("responses_delete"), Some(&1));
    assert_eq!(
        stats.by_endpoint.get("chat_completions"),
        None,
        "never translated"
    );
}

/// 50/50 between two accounts: every follow-up, retrieval and deletion reaches the account
/// that made the response it names, whatever the weights; the other account never sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ups_stick_to_the_account_that_made_the_response() {
    let m = mock();
    let llmux = Llmux::start_with(&config(&m), "default_config = \"split\"", &[]);
    let c = client();
    let url = llmux.url("/v1/responses");
    let mut owners = std::collections::HashMap::new();
    for i in 0..20 {
        let r = c
            .post(&url)
            .json(&json!({"model": "gpt-4o-mini", "input": format!("start {i}")}))
            .send()
            .await
            .unwrap();
        let vk = header(r.headers(), "x-llmux-virtual-key").to_owned();
        let v: Value = r.json().await.unwrap();
        owners.insert(v["id"].as_str().unwrap().to_owned(), vk);
    }
    let used: std::collections::HashSet<&String> = owners.values().collect();
    assert_eq!(
        used.len(),
        2,
        "both accounts served first turns: {owners:?}"
    );
    // Five follow-ups per response (a chain), each on the owner: the mock would answer 400
    // previous_response_not_found anywhere else.
    for (first, vk) in &owners {
        let mut prev = first.clone();
        for turn in 0..5 {
            let r = c
                .post(&url)
                .json(
                    &json!({"model": "gpt-4o-mini", "input": format!("turn {turn}"),
                    "previous_response_id": prev}),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(header(r.headers(), "x-llmux-virtual-key"), vk);
            let v: Value = r.json().await.unwrap();
            prev = v["id"].as_str().unwrap().to_owned();
        }
        let got: Value = c
            .get(llmux.url(&format!("/v1/responses/{prev}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(got["id"], prev.as_str(), "{got}");
        let items: Value = c
            .get(llmux.url(&format!(
                "/v1/responses/{prev}/input_items?order=asc&limit=100"
            )))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(items["data"].as_array().unwrap().len() >= 6, "{items}");
    }
    // The owner unavailable: the follow-up fails clearly, never lands on the other account.
    let (first, vk) = owners.iter().next().unwrap();
    m.set_behavior(
        vk,
        Behavior {
            always_status: Some(503),
            ..Default::default()
        },
    );
    let other = if vk == "openai-main" {
        "openai-b"
    } else {
        "openai-main"
    };
    let before = m.stats(other).requests;
    let r = c
        .post(&url)
        .json(&json!({"model": "gpt-4o-mini", "input": "again", "previous_response_id": first}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        m.stats(other).requests,
        before,
        "the other account never sees it"
    );
    // Deletion reaches the owner, and the id is forgotten.
    m.set_behavior(vk, Behavior::default());
    let r = c
        .delete(llmux.url(&format!("/v1/responses/{first}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(llmux.url(&format!("/v1/responses/{first}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// What a target cannot serve is skipped, not failed: a built-in tool only OpenAI runs goes
/// past a chat-only target in a fallback. A stream falls back before its first content.
/// Trees written with chat names (`max_tokens`) reach native targets in Responses terms, and
/// Azure gets its deployment as `model`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallbacks_skip_what_a_target_cannot_serve_and_streams_fall_back_before_content() {
    let m = mock();
    let cfg = format!(
        r#"{}
[virtual_keys.azure-r]
provider = "azure-openai"
base_url = "{az}"
deployment = "gpt-4o-dep"
api_key = "azure-test-key-000001"

[virtual_keys.compat-native]
provider = "openai-compatible"
base_url = "{cn}/v1"
responses_api = "native"

[configs.compat-native]
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "compat-native" }} ]

[configs.builtin]
strategy = {{ mode = "fallback" }}
targets = [ {{ virtual_key = "anthropic-main" }}, {{ virtual_key = "openai-main", override_params = {{ max_tokens = 3 }} }} ]

[configs.azure]
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "azure-r" }} ]

[configs.streamfb]
strategy = {{ mode = "fallback" }}
targets = [ {{ virtual_key = "openai-main" }}, {{ virtual_key = "anthropic-main", override_params = {{ model = "claude-3-haiku-20240307" }} }} ]
"#,
        config(&m),
        az = m.url("azure-r"),
        cn = m.url("compat-native"),
    );
    let llmux = Llmux::start(&cfg);
    let c = client();
    let url = llmux.url("/v1/responses");
    let r = c
        .post(&url)
        .header("x-portkey-config", "builtin")
        .json(&json!({"model": "gpt-4o-mini", "input": "news today?",
            "tools": [{"type": "web_search_preview"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(r.headers(), "x-llmux-virtual-key"), "openai-main");
    assert_eq!(
        m.stats("anthropic-main").requests,
        0,
        "refused before sending"
    );
    let v: Value = r.json().await.unwrap();
    // max_tokens = 3 arrived as max_output_tokens: the mock cut the answer there.
    assert_eq!(v["status"], "incomplete", "{v}");
    assert_eq!(
        m.stats("openai-main").last_body.unwrap()["max_output_tokens"],
        3
    );

    let r = c
        .post(&url)
        .header("x-portkey-config", "azure")
        .json(&json!({"model": "gpt-4o", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s = m.stats("azure-r");
    assert_eq!(
        s.by_endpoint.get("azure_responses"),
        Some(&1),
        "{:?}",
        s.by_endpoint
    );
    assert_eq!(s.last_body.unwrap()["model"], "gpt-4o-dep");
    assert_eq!(
        s.last_headers.get("api-key").map(String::as_str),
        Some("azure-test-key-000001")
    );

    // An OpenAI-compatible server declared `responses_api = "native"` gets Responses as is.
    let r = c
        .post(&url)
        .header("x-portkey-config", "compat-native")
        .json(&json!({"model": "m", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s = m.stats("compat-native");
    assert_eq!(
        s.by_endpoint.get("responses"),
        Some(&1),
        "{:?}",
        s.by_endpoint
    );
    assert_eq!(s.by_endpoint.get("chat_completions"), None);

    // The native stream breaks before any content: the fallback's Anthropic target streams it
    // (translated). After content, a break ends the stream with an error event.
    m.set_behavior(
        "openai-main",
        Behavior {
            stream_fail_after: Some(0),
            ..Default::default()
        },
    );
    let body = c
        .post(&url)
        .header("x-portkey-config", "streamfb")
        .json(&json!({"model": "gpt-4o-mini", "input": "Count", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(body.status(), 200);
    assert_eq!(
        header(body.headers(), "x-llmux-virtual-key"),
        "anthropic-main"
    );
    let text = body.text().await.unwrap();
    assert!(text.contains("event: response.completed"), "{text}");
    assert!(text.contains("Hello from mock anthropic-main"), "{text}");
    m.set_behavior(
        "openai-main",
        Behavior {
            stream_fail_after: Some(2),
            ..Default::default()
        },
    );
    let text = c
        .post(&url)
        .header("x-portkey-config", "streamfb")
        .json(&json!({"model": "gpt-4o-mini", "input": "Count", "stream": true}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("response.output_text.delta"), "{text}");
    assert!(text.contains("event: error"), "never a silent cut: {text}");
    assert!(!text.contains("response.completed"), "{text}");
}

/// With `[cluster]`, a response made through one replica is followed up through another on
/// the same account (the affinity is shared through Redis), and a translated conversation
/// stored by one is replayed by the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_and_conversations_are_shared_between_replicas() {
    let redis = Redis::start();
    let m = mock();
    let cfg = format!("[cluster]\nredis_url = \"{}\"\n{}", redis.url(), config(&m));
    let a = Llmux::start_with(&cfg, "default_config = \"split\"", &[]);
    let b = Llmux::start_with(&cfg, "default_config = \"split\"", &[]);
    let c = client();
    for l in [&a, &b] {
        wait_cluster_connected(&c, l).await;
    }
    let post = |l: &Llmux, body: Value| {
        let (c, url) = (c.clone(), l.url("/v1/responses"));
        async move {
            let r = c.post(&url).json(&body).send().await.unwrap();
            let vk = header(r.headers(), "x-llmux-virtual-key").to_owned();
            (r.status().as_u16(), vk, r.json::<Value>().await.unwrap())
        }
    };
    let port = redis.url().rsplit(':').next().unwrap().to_owned();
    let in_redis = |id: String| {
        let port = port.clone();
        async move {
            for _ in 0..100 {
                let out = Command::new("redis-cli")
                    .args(["-p", &port, "exists", &format!("llmux:responses:{id}")])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&out.stdout).trim() == "1" {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            panic!("{id} never reached Redis");
        }
    };
    for i in 0..6 {
        let (s, owner, first) = post(&a, json!({"model": "m", "input": format!("hi {i}")})).await;
        assert_eq!(s, 200, "{first}");
        let id = first["id"].as_str().unwrap().to_owned();
        in_redis(id.clone()).await;
        let (s, vk, v) = post(
            &b,
            json!({"model": "m", "input": "again", "previous_response_id": id}),
        )
        .await;
        assert_eq!((s, vk.as_str()), (200, owner.as_str()), "{v}");
    }
    // A translated conversation stored by a is replayed by b.
    let one: Value = c
        .post(a.url("/v1/responses"))
        .header("x-portkey-config", "translated")
        .json(&json!({"model": "m", "input": "My name is Ann."}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let one = one["id"].clone();
    let id = one.as_str().unwrap().to_owned();
    in_redis(id.clone()).await;
    let r = c
        .post(b.url("/v1/responses"))
        .header("x-portkey-config", "translated")
        .json(&json!({"model": "m", "input": "What is my name?", "previous_response_id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sent = m.stats("anthropic-main").last_body.unwrap();
    assert_eq!(sent["messages"].as_array().unwrap().len(), 3, "{sent}");
}

/// Hostile input to the Responses endpoints: every request gets one OpenAI-shaped answer with
/// the right status, and nothing reaches a provider or a store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_responses_input_is_refused_cleanly() {
    let m = mock();
    let llmux = Llmux::start_with(&config(&m), "default_config = \"translated\"", &[]);
    let c = client();
    let url = llmux.url("/v1/responses");
    let long_id = "r".repeat(500);
    for (body, status, param) in [
        ("not json".to_owned(), 400, None),
        ("[1,2]".to_owned(), 400, None),
        (json!({"model": "m"}).to_string(), 400, Some("input")),
        (
            json!({"model": "m", "input": 7}).to_string(),
            400,
            Some("input"),
        ),
        (
            json!({"model": "m", "input": "x", "previous_response_id": long_id}).to_string(),
            400,
            Some("previous_response_id"),
        ),
        (
            json!({"model": "m", "input": "x", "previous_response_id": 5}).to_string(),
            400,
            Some("previous_response_id"),
        ),
        (
            json!({"model": "m", "input": [{"type": "message", "role": "wizard", "content": "x"}]})
                .to_string(),
            400,
            None,
        ),
        (
            json!({"model": "m", "input": "x", "max_output_tokens": -1}).to_string(),
            400,
            Some("max_output_tokens"),
        ),
    ] {
        let r = c
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{body}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"]["message"].is_string(), "{body}: {v}");
        if let Some(p) = param {
            assert_eq!(v["error"]["param"], p, "{body}: {v}");
        }
    }
    assert_eq!(
        m.stats("anthropic-main").requests,
        0,
        "nothing reached the provider"
    );
    for path in [
        "/v1/responses/%00",
        "/v1/responses/a%2Fb/input_items",
        &format!("/v1/responses/{}", "x".repeat(300)),
    ] {
        let r = c.get(llmux.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let r = c.delete(llmux.url(path)).send().await.unwrap();
        assert!(
            r.status() == 404 || r.status() == 405,
            "{path}: {}",
            r.status()
        );
    }
    // Wrong methods on the collection get the OpenAI-shaped 405.
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 405);
}
