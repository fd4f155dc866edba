//! A Gemini target end to end: the real `openai` Python SDK through llmux to the mock's Gemini
//! wire format (streamed text and tool calls, the tool round trip with Gemini 3 thought
//! signatures, embeddings), the key kept out of URLs, and a 429 whose `RetryInfo.retryDelay`
//! sets the target's cooldown while the tree falls back to OpenAI.

mod common;

use common::*;
use serde_json::Value;

const KEY: &str = "gemini-test-key-0000000000";

#[test]
fn openai_python_sdk_through_gemini() {
    let m = mock();
    let cfg = format!(
        r#"
[virtual_keys.gemini-main]
provider = "gemini"
base_url = "{}"
api_key = "{KEY}"

[configs.main]
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "gemini-main", override_params = {{ model = "gemini-3-pro-preview" }} }} ]
"#,
        m.url("gemini-main")
    );
    let llmux = Llmux::start_with(&cfg, "default_config = \"main\"", &[]);
    run_client(&python(), "python/gemini_sdk.py", &llmux, &[]);
    let s = m.stats("gemini-main");
    assert_eq!(s.by_endpoint.get("gemini_stream"), Some(&2), "{s:?}");
    assert_eq!(s.by_endpoint.get("gemini_generate"), Some(&2), "{s:?}");
    assert_eq!(s.by_endpoint.get("gemini_embed"), Some(&1), "{s:?}");
    assert_eq!(s.statuses.get(&200), Some(&5), "{s:?}");
    assert_eq!(
        s.last_headers.get("x-goog-api-key").map(String::as_str),
        Some(KEY)
    );
    assert!(!s.last_path.contains("key"), "{}", s.last_path);
    assert!(!llmux.logs().contains(KEY), "the key was logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_retry_delay_cools_the_target_while_openai_answers() {
    let m = mock();
    m.set_behavior(
        "gemini-main",
        Behavior {
            always_status: Some(429),
            retry_after_s: Some(7),
            ..Default::default()
        },
    );
    // Without the body's hint the target would wait 60 s (its rate-limit cooldown).
    let cfg = format!(
        r#"
[virtual_keys.gemini-main]
provider = "gemini"
base_url = "{}"
api_key = "{KEY}"
rate_limit_cooldown_ms = 60000
max_retry_after_ms = 20000

[virtual_keys.openai-main]
provider = "openai"
base_url = "{}/v1"

[configs.main]
strategy = {{ mode = "fallback" }}
targets = [
  {{ virtual_key = "gemini-main", override_params = {{ model = "gemini-2.5-flash" }} }},
  {{ virtual_key = "openai-main" }},
]
"#,
        m.url("gemini-main"),
        m.url("openai-main")
    );
    let llmux = Llmux::start_with(&cfg, "default_config = \"main\"", &[]);
    let c = client();
    for _ in 0..2 {
        let r = c
            .post(llmux.url("/v1/chat/completions"))
            .json(&chat_body("gpt-4o"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(r.headers(), "x-llmux-virtual-key"), "openai-main");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["object"], "chat.completion", "{v}");
    }
    // The second request skipped Gemini: it was cooling down.
    assert_eq!(m.stats("gemini-main").requests, 1);
    assert_eq!(m.stats("openai-main").requests, 2);
    let t = get_json(&c, &llmux.admin_url("/admin/targets/gemini-main")).await;
    let wait = t["retry_in_ms"].as_u64().unwrap_or(0);
    assert!((5_000..=7_000).contains(&wait), "cooldown {wait} ms: {t}");
    assert_eq!(t["by_status"]["429"], 1, "{t}");
}

fn single(m: &MockServer, extra: &str) -> String {
    format!(
        r#"
[virtual_keys.gemini-main]
provider = "gemini"
base_url = "{}"
api_key = "{KEY}"
{extra}

[configs.main]
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "gemini-main" }} ]
"#,
        m.url("gemini-main")
    )
}

async fn stream_text(llmux: &Llmux) -> String {
    let r = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(
            &serde_json::json!({"model": "gemini-2.5-flash", "stream": true,
            "messages": [{"role": "user", "content": "count"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_stream_ends_with_an_openai_error_frame() {
    let m = mock();
    let llmux = Llmux::start_with(&single(&m, ""), "default_config = \"main\"", &[]);
    // Google's bare-JSON error after some content.
    m.set_behavior(
        "gemini-main",
        Behavior {
            stream_chunks: 4,
            stream_fail_after: Some(2),
            stream_fail_mode: StreamFailMode::ErrorEvent,
            ..Default::default()
        },
    );
    let text = stream_text(&llmux).await;
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    let v: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(v["error"]["type"], "server_error", "{text}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("internal error"),
        "{text}"
    );
    assert!(!text.contains("[DONE]"), "{text}");
    // A body that ends without the last finishReason is a broken stream too.
    m.set_behavior(
        "gemini-main",
        Behavior {
            stream_chunks: 4,
            stream_fail_after: Some(2),
            stream_fail_mode: StreamFailMode::NoTerminator,
            ..Default::default()
        },
    );
    let text = stream_text(&llmux).await;
    assert!(text.contains("ended before its finishReason"), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_api_health_checks_and_bad_models() {
    let m = mock();
    let llmux = Llmux::start_with(
        &single(&m, "health_check_interval_ms = 100"),
        "default_config = \"main\"",
        &[],
    );
    let c = client();
    // The Responses API, translated to chat and then to generateContent.
    let r = c
        .post(llmux.url("/v1/responses"))
        .json(&serde_json::json!({"model": "gemini-2.5-flash", "input": "Say hi", "store": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "response", "{v}");
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(
        v["output"][0]["content"][0]["text"], "Hello from mock gemini-main",
        "{v}"
    );
    // A model that would change the URL is the client's 400, and never sent.
    let before = m
        .stats("gemini-main")
        .by_endpoint
        .get("gemini_generate")
        .copied();
    for model in ["../files/x", "a/b", "gemini:generateContent?key=x"] {
        let r = c
            .post(llmux.url("/v1/chat/completions"))
            .json(&serde_json::json!({"model": model, "messages": [{"role": "user", "content": "x"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{model}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["param"], "model", "{v}");
    }
    assert_eq!(
        m.stats("gemini-main")
            .by_endpoint
            .get("gemini_generate")
            .copied(),
        before
    );
    // /v1/completions is refused without going upstream.
    let r = c
        .post(llmux.url("/v1/completions"))
        .json(&serde_json::json!({"model": "gemini-2.5-flash", "prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    // The health check lists models with the key in its header.
    let t0 = std::time::Instant::now();
    while !m
        .stats("gemini-main")
        .by_endpoint
        .contains_key("gemini_models")
    {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(5),
            "no health check"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let s = m.stats("gemini-main");
    assert_eq!(s.statuses.get(&403), None, "{s:?}");
    assert!(!llmux.logs().contains(KEY), "the key was logged");
}
