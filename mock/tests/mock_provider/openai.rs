//! OpenAI and Azure OpenAI wire formats over real HTTP.

use std::time::Instant;

use crate::common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn chat_completion_json_shape_and_headers() {
    let mock = server();
    let resp = post(
        &format!("{}/v1/chat/completions", mock.url("acct-a")),
        chat_body(false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "application/json");
    assert!(h["x-request-id"].to_str().unwrap().starts_with("req_"));
    for k in [
        "x-ratelimit-limit-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-remaining-tokens",
    ] {
        h[k].to_str().unwrap().parse::<u64>().unwrap();
    }
    assert_eq!(h["x-ratelimit-reset-requests"], "6ms");
    let v: Value = resp.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(v["model"], "gpt-4o");
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "Hello from mock acct-a");
    assert_eq!(choice["message"]["refusal"], Value::Null);
    assert_eq!(choice["logprobs"], Value::Null);
    assert_eq!(choice["finish_reason"], "stop");
    // "Be brief." (9) + "Hello there, mock!" (18) = 27 chars -> 27/4+1 = 7
    assert_eq!(v["usage"]["prompt_tokens"], 7);
    assert_eq!(v["usage"]["completion_tokens"], 4);
    assert_eq!(v["usage"]["total_tokens"], 11);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"],
        0
    );
    assert!(v.get("prompt_filter_results").is_none());

    let s = mock.stats("acct-a");
    assert_eq!(s.requests, 1);
    assert_eq!(s.by_endpoint["chat_completions"], 1);
    assert_eq!(s.statuses[&200], 1);
    assert_eq!(s.last_path, "/acct-a/v1/chat/completions");
    assert_eq!(s.last_headers["authorization"], "Bearer sk-test");
    assert_eq!(
        s.last_body.unwrap()["messages"][1]["content"],
        "Hello there, mock!"
    );
}

#[tokio::test]
async fn chat_routes_without_v1_and_without_account() {
    let mock = server();
    let v: Value = post(
        &format!("{}/chat/completions", mock.url("b")),
        chat_body(false),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from mock b");
    let v: Value = post(
        &format!("{}/v1/chat/completions", mock.url("")),
        chat_body(false),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from mock");
    assert_eq!(mock.stats("b").requests, 1);
    assert_eq!(mock.stats("").requests, 1);
}

#[tokio::test]
async fn chat_reply_padding_and_max_tokens() {
    let mock = server();
    mock.set_behavior(
        "p",
        llmux_mock::Behavior {
            reply: Some("one two three four five".into()),
            response_padding: 1000,
            ..Default::default()
        },
    );
    let v: Value = post(
        &format!("{}/v1/chat/completions", mock.url("p")),
        chat_body(false),
    )
    .await
    .json()
    .await
    .unwrap();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(content.len(), "one two three four five".len() + 1000);
    assert_eq!(v["usage"]["completion_tokens"], 6);

    let mut body = chat_body(false);
    body["max_tokens"] = json!(2);
    let v: Value = post(&format!("{}/v1/chat/completions", mock.url("p")), body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "one two");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 2);
}

#[tokio::test]
async fn chat_validation_errors() {
    let mock = server();
    let url = format!("{}/v1/chat/completions", mock.url("v"));
    let resp = post(&url, json!({"model": "gpt-4o"})).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["param"], "messages");
    let resp = client().post(&url).body("{not json").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"].get("code").is_some());
}

#[tokio::test]
async fn chat_stream_frames() {
    let mock = server();
    let mut body = chat_body(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = post(&format!("{}/v1/chat/completions", mock.url("s")), body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert!(resp.headers().contains_key("x-request-id"));
    let text = read_timed(resp, Instant::now()).await;
    assert!(text.error.is_none());
    let frames = frames(&text.text());
    assert!(frames.iter().all(|f| f.event.is_none()));
    // role, 5 content, finish, usage, [DONE]
    assert_eq!(frames.len(), 9, "{frames:#?}");
    let first = frames[0].json();
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["model"], "gpt-4o");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(first["choices"][0]["delta"]["content"], "");
    assert_eq!(first["choices"][0]["finish_reason"], Value::Null);
    assert_eq!(first["usage"], Value::Null);
    assert!(first.as_object().unwrap().contains_key("usage"));
    let id = first["id"].as_str().unwrap().to_owned();
    let mut content = String::new();
    for f in &frames[1..6] {
        let v = f.json();
        assert_eq!(v["id"], id.as_str());
        assert!(v["choices"][0]["delta"].get("role").is_none());
        content.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap());
    }
    assert_eq!(content, "Hello from mock s");
    let finish = frames[6].json();
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = frames[7].json();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 7);
    assert_eq!(usage["usage"]["completion_tokens"], 4);
    assert_eq!(usage["usage"]["total_tokens"], 11);
    assert_eq!(frames[8].data, "[DONE]");
}

#[tokio::test]
async fn chat_stream_without_usage_has_no_usage_field() {
    let mock = server();
    let resp = post(
        &format!("{}/v1/chat/completions", mock.url("s")),
        chat_body(true),
    )
    .await;
    let frames = frames(&read_timed(resp, Instant::now()).await.text());
    assert_eq!(frames.len(), 8);
    for f in &frames[..7] {
        assert!(f.json().get("usage").is_none());
    }
    assert_eq!(frames[7].data, "[DONE]");
}

#[tokio::test]
async fn azure_chat_json_and_stream() {
    let mock = server();
    let url = format!(
        "{}/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21",
        mock.url("az")
    );
    let resp = client()
        .post(&url)
        .header("api-key", "k")
        .json(&json!({"messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp
        .headers()
        .contains_key("x-ratelimit-remaining-requests"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["model"], "gpt4o-prod");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from mock az");
    assert_eq!(
        v["prompt_filter_results"][0]["content_filter_results"]["hate"]["filtered"],
        false
    );
    let s = mock.stats("az");
    assert_eq!(s.by_endpoint["azure_chat_completions"], 1);
    assert_eq!(s.last_headers["api-key"], "k");
    assert!(s.last_path.ends_with("?api-version=2024-10-21"));

    let resp = client()
        .post(&url)
        .json(&json!({"messages": [{"role": "user", "content": "hi"}], "stream": true}))
        .send()
        .await
        .unwrap();
    let frames = frames(&resp.text().await.unwrap());
    let pre = frames[0].json();
    assert_eq!(pre["choices"], json!([]));
    assert_eq!(pre["id"], "");
    assert_eq!(pre["model"], "");
    assert_eq!(pre["object"], "");
    assert_eq!(pre["created"], 0);
    assert_eq!(pre["prompt_filter_results"][0]["prompt_index"], 0);
    let role = frames[1].json();
    assert_eq!(role["model"], "gpt4o-prod");
    assert_eq!(role["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(frames.last().unwrap().data, "[DONE]");
}

#[tokio::test]
async fn azure_requires_api_version() {
    let mock = server();
    let resp = post(
        &format!("{}/openai/deployments/d/chat/completions", mock.url("az")),
        chat_body(false),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "MissingApiVersionParameter");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("api-version"));
}

fn decode_b64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("bad base64 {c}"),
    } as u32;
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let mut n = 0u32;
        for &c in chunk {
            n = (n << 6) | if c == b'=' { 0 } else { val(c) };
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    out
}

#[tokio::test]
async fn embeddings_float_and_base64() {
    let mock = server();
    let url = format!("{}/v1/embeddings", mock.url("e"));
    let v: Value = post(
        &url,
        json!({"model": "text-embedding-3-small", "input": ["alpha", "beta"]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-3-small");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["object"], "embedding");
    assert_eq!(data[1]["index"], 1);
    let alpha: Vec<f32> = data[0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(alpha.len(), 64);
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);
    assert_eq!(v["usage"]["prompt_tokens"], 3); // 9 chars / 4 + 1
    assert_eq!(v["usage"]["total_tokens"], 3);

    // Same text, single-string input: same vector (deterministic).
    let v2: Value = post(&url, json!({"model": "m", "input": "alpha"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v2["data"][0]["embedding"], data[0]["embedding"]);

    let v3: Value = post(
        &url,
        json!({"model": "m", "input": "alpha", "encoding_format": "base64"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let bytes = decode_b64(v3["data"][0]["embedding"].as_str().unwrap());
    assert_eq!(bytes.len(), 64 * 4);
    let floats: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(floats, alpha);

    // Azure deployment form.
    let v4: Value = post(
        &format!(
            "{}/openai/deployments/emb/embeddings?api-version=2024-10-21",
            mock.url("az")
        ),
        json!({"input": "alpha"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v4["model"], "emb");
    assert_eq!(v4["data"][0]["embedding"], data[0]["embedding"]);
    assert_eq!(mock.stats("az").by_endpoint["azure_embeddings"], 1);
    assert_eq!(mock.stats("e").by_endpoint["embeddings"], 3);
}

#[tokio::test]
async fn legacy_completions() {
    let mock = server();
    let url = format!("{}/v1/completions", mock.url("c"));
    let v: Value = post(
        &url,
        json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["model"], "gpt-3.5-turbo-instruct");
    assert_eq!(v["choices"][0]["text"], "Hello from mock c");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 2);
    assert_eq!(v["usage"]["completion_tokens"], 4);

    let resp = post(&url, json!({"model": "m", "prompt": "x", "stream": true})).await;
    let frames = frames(&resp.text().await.unwrap());
    assert_eq!(frames.last().unwrap().data, "[DONE]");
    let text: String = frames[..frames.len() - 1]
        .iter()
        .map(|f| f.json()["choices"][0]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, "Hello from mock c");
    assert_eq!(mock.stats("c").by_endpoint["completions"], 2);
}

#[tokio::test]
async fn models_list_and_unknown_path() {
    let mock = server();
    let resp = client()
        .get(format!("{}/v1/models", mock.url("m")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["object"], "model");
    assert_eq!(v["data"][0]["owned_by"], "system");
    assert!(v["data"][0]["created"].is_u64());
    assert_eq!(mock.stats("m").by_endpoint["models"], 1);

    let resp = post(&format!("{}/v1/nope", mock.url("m")), json!({})).await;
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["message"], "Invalid URL (POST /m/v1/nope)");
    assert_eq!(v["error"]["param"], Value::Null);
    let resp = client()
        .get(format!("{}/v1/chat/completions", mock.url("m")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(mock.stats("").by_endpoint["not_found"], 2);
}
