//! Streaming through llmux against mock providers that stream with controlled timing and
//! failures: incremental delivery, fallback before the first token for every failure kind,
//! error events after it, cancellation on client disconnect, Anthropic translation, and the
//! embeddings/completions endpoints.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

fn config(m: &MockServer) -> String {
    let mut s = String::new();
    for name in ["bad", "good", "solo"] {
        s += &format!(
            "[virtual_keys.{name}]\nprovider = \"openai\"\nbase_url = \"{}/v1\"\nfailure_threshold = 1000\nrate_limit_cooldown_ms = 1\n\n",
            m.url(name)
        );
    }
    s += &format!(
        "[virtual_keys.claude]\nprovider = \"anthropic\"\nbase_url = \"{}\"\n\n[virtual_keys.azure]\nprovider = \"azure-openai\"\nbase_url = \"{}\"\ndeployment = \"gpt-4o\"\n\n",
        m.url("claude"),
        m.url("azure")
    );
    s += r#"
[configs.pair]
strategy = { mode = "fallback" }
targets = [ { virtual_key = "bad", request_timeout = 400 }, { virtual_key = "good" } ]

[configs.solo]
strategy = { mode = "single" }
targets = [ { virtual_key = "solo" } ]

[configs.embed]
strategy = { mode = "fallback" }
targets = [ { virtual_key = "claude" }, { virtual_key = "good" } ]
"#;
    s
}

fn stream_body() -> Value {
    json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "count to five"}]})
}

async fn chat(
    c: &reqwest::Client,
    llmux: &Llmux,
    headers: &[(&str, &str)],
    body: &Value,
) -> reqwest::Response {
    let mut req = c.post(llmux.url("/v1/chat/completions")).json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// Reads an SSE response to the end: (data payloads, arrival time of each).
async fn read_sse(resp: reqwest::Response) -> (Vec<String>, Vec<Duration>) {
    let t0 = Instant::now();
    let mut buf = String::new();
    let mut datas = Vec::new();
    let mut times = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else { break };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            for line in frame.lines() {
                if let Some(d) = line.strip_prefix("data: ") {
                    datas.push(d.to_owned());
                    times.push(t0.elapsed());
                }
            }
        }
    }
    (datas, times)
}

fn text_of(datas: &[String]) -> String {
    datas
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_arrive_incrementally() {
    let m = mock();
    let llmux = Llmux::start(&config(&m));
    m.set_behavior(
        "solo",
        Behavior {
            stream_chunks: 5,
            chunk_interval_ms: 150,
            ..Default::default()
        },
    );
    let c = client();
    let resp = chat(&c, &llmux, &[("x-portkey-config", "solo")], &stream_body()).await;
    assert_eq!(resp.status(), 200);
    assert!(header(resp.headers(), "content-type").starts_with("text/event-stream"));
    let (datas, times) = read_sse(resp).await;
    assert_eq!(datas.last().map(String::as_str), Some("[DONE]"));
    assert!(!text_of(&datas).is_empty());
    // Content frames arrive spread over the upstream's pacing, not in one burst at the end.
    let content_times: Vec<Duration> = datas
        .iter()
        .zip(&times)
        .filter(|(d, _)| {
            serde_json::from_str::<Value>(d).is_ok_and(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty())
            })
        })
        .map(|(_, t)| *t)
        .collect();
    assert!(content_times.len() >= 4, "{datas:?}");
    let spread = *content_times.last().unwrap() - content_times[0];
    assert!(
        spread >= Duration::from_millis(400),
        "frames arrived together: {content_times:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_before_first_token_for_each_failure_kind() {
    let m = mock();
    let llmux = Llmux::start(&config(&m));
    let c = client();
    let kinds: Vec<(&str, Behavior)> = vec![
        (
            "500",
            Behavior {
                always_status: Some(500),
                ..Default::default()
            },
        ),
        (
            "timeout before headers",
            Behavior {
                latency_ms: 3000,
                ..Default::default()
            },
        ),
        (
            "stall before first token",
            Behavior {
                stream_chunks: 3,
                chunk_interval_ms: 3000,
                ..Default::default()
            },
        ),
        (
            "error event before content",
            Behavior {
                stream_fail_after: Some(0),
                stream_fail_mode: StreamFailMode::ErrorEvent,
                ..Default::default()
            },
        ),
        (
            "dropped before content",
            Behavior {
                stream_fail_after: Some(0),
                stream_fail_mode: StreamFailMode::Drop,
                ..Default::default()
            },
        ),
        (
            "ends before content",
            Behavior {
                stream_fail_after: Some(0),
                stream_fail_mode: StreamFailMode::NoTerminator,
                ..Default::default()
            },
        ),
        (
            "connection reset",
            Behavior {
                always_status: Some(500),
                fail_rate: 1.0,
                fail_mode: FailMode::Reset,
                ..Default::default()
            },
        ),
        // Last: the mock's 429 says "reset in 1s", so the target then cools down.
        (
            "429",
            Behavior {
                always_status: Some(429),
                ..Default::default()
            },
        ),
    ];
    for (what, behavior) in kinds {
        m.reset();
        m.set_behavior("bad", behavior);
        let resp = chat(&c, &llmux, &[("x-portkey-config", "pair")], &stream_body()).await;
        assert_eq!(resp.status(), 200, "{what}");
        assert_eq!(
            header(resp.headers(), "x-llmux-virtual-key"),
            "good",
            "{what}"
        );
        assert_eq!(
            header(resp.headers(), "x-portkey-last-used-option-index"),
            "config.targets[1]",
            "{what}"
        );
        let (datas, _) = read_sse(resp).await;
        assert_eq!(
            datas.last().map(String::as_str),
            Some("[DONE]"),
            "{what}: {datas:?}"
        );
        assert!(
            text_of(&datas).contains("Hello from mock good"),
            "{what}: only the good target's content: {datas:?}"
        );
        assert!(
            !datas.iter().any(|d| d.contains("\"error\"")),
            "{what}: no error leaked"
        );
        assert!(
            m.stats("bad").requests >= 1 || what == "connection reset",
            "{what}: bad target was tried: {:?}\n{}",
            m.stats("bad"),
            llmux.logs()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_after_first_token_is_an_error_event_not_a_truncation() {
    let m = mock();
    let llmux = Llmux::start(&config(&m));
    let c = client();
    for mode in [
        StreamFailMode::Drop,
        StreamFailMode::ErrorEvent,
        StreamFailMode::NoTerminator,
    ] {
        m.set_behavior(
            "solo",
            Behavior {
                stream_chunks: 6,
                stream_fail_after: Some(2),
                stream_fail_mode: mode,
                ..Default::default()
            },
        );
        let trace = format!("midstream-{mode:?}");
        let resp = chat(
            &c,
            &llmux,
            &[("x-portkey-config", "solo"), ("x-portkey-trace-id", &trace)],
            &stream_body(),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let (datas, _) = read_sse(resp).await;
        assert!(
            !text_of(&datas).is_empty(),
            "{mode:?}: content before the failure"
        );
        let last: Value = serde_json::from_str(datas.last().unwrap())
            .unwrap_or_else(|_| panic!("{mode:?}: {datas:?}"));
        assert!(
            last["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{mode:?}: ends with an error event: {datas:?}"
        );
        assert!(last["error"].get("type").is_some() && last["error"].get("code").is_some());
        assert!(
            !datas.iter().any(|d| d == "[DONE]"),
            "{mode:?}: no [DONE] after a failure"
        );
        // The request log records the failure.
        let log: Value = get_json(
            &c,
            &llmux.admin_url(&format!("/admin/requests?trace_id={trace}")),
        )
        .await;
        let entry = &log["requests"][0];
        assert!(entry["error"].as_str().is_some(), "{mode:?}: {log}");
        assert_ne!(entry["status"], 200);
    }
    let t: Value = get_json(&c, &llmux.admin_url("/admin/targets/solo")).await;
    assert_eq!(t["failures"], 3, "{t}");
    assert_eq!(t["in_flight"], 0, "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_cancels_upstream() {
    let m = mock();
    let llmux = Llmux::start(&config(&m));
    m.set_behavior(
        "solo",
        Behavior {
            stream_chunks: 20,
            chunk_interval_ms: 200,
            ..Default::default()
        },
    );
    let c = client();
    let resp = chat(&c, &llmux, &[("x-portkey-config", "solo")], &stream_body()).await;
    let mut body = resp.bytes_stream();
    let mut got = 0;
    while got < 2 {
        body.next().await.unwrap().unwrap();
        got += 1;
    }
    drop(body);
    // The mock sees its connection closed long before the 4 s the stream would take.
    let t0 = Instant::now();
    while m.stats("solo").client_disconnects == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "upstream not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And the target's in-flight slot was released.
    let t0 = Instant::now();
    loop {
        let t: Value = get_json(&c, &llmux.admin_url("/admin/targets/solo")).await;
        if t["in_flight"] == 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "in-flight not released: {t}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_and_azure_streams_translate() {
    let m = mock();
    let llmux = Llmux::start(&config(&m));
    let c = client();
    let mut body = stream_body();
    body["stream_options"] = json!({"include_usage": true});
    let resp = chat(&c, &llmux, &[("x-portkey-virtual-key", "claude")], &body).await;
    assert_eq!(resp.status(), 200);
    let (datas, _) = read_sse(resp).await;
    assert_eq!(
        datas.last().map(String::as_str),
        Some("[DONE]"),
        "{datas:?}"
    );
    let chunks: Vec<Value> = datas[..datas.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(
        text_of(&datas).contains("Hello from mock claude"),
        "{datas:?}"
    );
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "stop"));
    let usage = &chunks.last().unwrap()["usage"];
    assert!(
        usage["completion_tokens"].as_u64().unwrap() > 0
            && usage["prompt_tokens"].as_u64().unwrap() > 0,
        "{usage}"
    );

    // Azure's leading prompt_filter_results frame (no choices) is not content and passes through.
    let resp = chat(
        &c,
        &llmux,
        &[("x-portkey-virtual-key", "azure")],
        &stream_body(),
    )
    .await;
    let (datas, _) = read_sse(resp).await;
    assert_eq!(datas.last().map(String::as_str), Some("[DONE]"));
    assert!(
        text_of(&datas).contains("Hello from mock azure"),
        "{datas:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_and_completions_route() {
    let m = mock();
    let llmux = Llmux::start(&config(&m));
    let c = client();
    // Anthropic has no embeddings: the walk skips it; alone, it is a clear 400.
    let resp = c
        .post(llmux.url("/v1/embeddings"))
        .header("x-portkey-config", "embed")
        .json(&json!({"model": "text-embedding-3-small", "input": ["a", "b"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(resp.headers(), "x-llmux-virtual-key"), "good");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let resp = c
        .post(llmux.url("/v1/embeddings"))
        .header("x-portkey-virtual-key", "claude")
        .json(&json!({"model": "e", "input": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("provider anthropic does not serve /embeddings"),
        "{v}"
    );
    assert_eq!(v["error"]["code"], "unsupported_by_targets");
    // Azure embeddings go to the deployment URL.
    let resp = c
        .post(llmux.url("/v1/embeddings"))
        .header("x-portkey-virtual-key", "azure")
        .json(&json!({"input": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(m
        .stats("azure")
        .last_path
        .contains("/openai/deployments/gpt-4o/embeddings"));
    // Legacy completions.
    let resp = c
        .post(llmux.url("/v1/completions"))
        .header("x-portkey-virtual-key", "good")
        .json(&json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "text_completion");
}

/// `request_timeout` bounds the time to the first content; a stream that keeps flowing may
/// run past it (only the idle timeout applies then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flowing_stream_outlives_request_timeout() {
    let m = mock();
    let llmux = Llmux::start(&config(&m));
    m.set_behavior(
        "bad",
        Behavior {
            stream_chunks: 8,
            chunk_interval_ms: 120,
            ..Default::default()
        },
    );
    let c = client();
    let t0 = Instant::now();
    let resp = chat(&c, &llmux, &[("x-portkey-config", "pair")], &stream_body()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(resp.headers(), "x-llmux-virtual-key"), "bad");
    let (datas, _) = read_sse(resp).await;
    assert!(
        t0.elapsed() > Duration::from_millis(800),
        "the stream should have lasted about 1 s"
    );
    assert_eq!(datas.last().map(String::as_str), Some("[DONE]"));
    assert!(
        datas.iter().all(|d| !d.contains("\"error\"")),
        "no error event: {datas:?}"
    );
    let content = datas
        .iter()
        .filter(|d| {
            serde_json::from_str::<Value>(d).is_ok_and(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_some_and(|c| !c.is_empty())
            })
        })
        .count();
    assert_eq!(content, 8, "{datas:?}");
}

/// A client that does not ask for usage still gets none, but llmux asks the target for it
/// (budgets and the request log count tokens), together with the leaf's `override_params`:
/// spliced in front of the client's bytes when the body lacks them, merged when it has one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_asked_for_usage_upstream_and_counted_without_showing_it() {
    let m = mock();
    let llmux = Llmux::start(&config(&m));
    let c = client();
    let inline = |over: Value| {
        json!({"strategy": {"mode": "single"},
               "targets": [{"virtual_key": "solo", "override_params": over}]})
        .to_string()
    };
    let cases = [
        ("usage-only", None),
        (
            "spliced",
            Some(json!({"temperature": 0.25, "user": "u\"1"})),
        ),
        (
            "merged",
            Some(json!({"temperature": 0.25, "model": "gpt-4o-mini"})),
        ),
    ];
    for (trace, over) in cases {
        let cfg = over.clone().map_or_else(|| "solo".to_owned(), inline);
        let headers = [
            ("x-portkey-config", cfg.as_str()),
            ("x-portkey-trace-id", trace),
        ];
        let resp = chat(&c, &llmux, &headers, &stream_body()).await;
        assert_eq!(resp.status(), 200, "{trace}");
        let (datas, _) = read_sse(resp).await;
        assert_eq!(datas.last().map(String::as_str), Some("[DONE]"), "{trace}");
        assert!(text_of(&datas).contains("Hello"), "{trace}: {datas:?}");
        // The client did not ask: no usage chunk and no usage field reach it.
        for d in &datas[..datas.len() - 1] {
            let v: Value = serde_json::from_str(d).unwrap();
            assert!(v.get("usage").is_none_or(Value::is_null), "{trace}: {d}");
            assert!(!v["choices"].as_array().unwrap().is_empty(), "{trace}: {d}");
        }
        let up = m.stats("solo").last_body.expect("the upstream body");
        assert_eq!(
            up["stream_options"],
            json!({"include_usage": true}),
            "{trace}: {up}"
        );
        assert_eq!(up["stream"], true, "{trace}: {up}");
        assert_eq!(up["messages"], stream_body()["messages"], "{trace}: {up}");
        let want_model = over
            .as_ref()
            .and_then(|o| o.get("model"))
            .unwrap_or(&json!("gpt-4o"))
            .clone();
        assert_eq!(up["model"], want_model, "{trace}: {up}");
        for (k, v) in over.iter().flat_map(|o| o.as_object().unwrap()) {
            assert_eq!(&up[k], v, "{trace}: {k} in {up}");
        }
        let e = get_json(
            &c,
            &llmux.admin_url(&format!("/admin/requests?trace_id={trace}")),
        )
        .await["requests"][0]
            .clone();
        assert_eq!(e["status"], 200, "{e}");
        assert!(
            e["prompt_tokens"].as_u64().unwrap() > 0
                && e["completion_tokens"].as_u64().unwrap() > 0,
            "{trace}: {e}"
        );
    }
}
