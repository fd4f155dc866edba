//! Anthropic Messages wire format over real HTTP.

use crate::common::*;
use llmux_mock::Behavior;
use serde_json::{json, Value};

fn body(stream: bool, max_tokens: u64) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": max_tokens,
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Where?"}]},
            {"role": "user", "content": [{"type": "text", "text": "Paris"}]}
        ],
        "stream": stream
    })
}

#[tokio::test]
async fn message_json_shape() {
    let mock = server();
    let resp = post_anthropic(
        &format!("{}/v1/messages", mock.url("ant")),
        body(false, 1024),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["request-id"]
        .to_str()
        .unwrap()
        .starts_with("req_"));
    assert_eq!(resp.headers()["anthropic-ratelimit-requests-limit"], "4000");
    assert!(resp.headers()["anthropic-ratelimit-requests-reset"]
        .to_str()
        .unwrap()
        .ends_with('Z'));
    let v: Value = resp.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "Hello from mock ant"}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["stop_sequence"], Value::Null);
    // 9 + 8 + 6 + 5 = 28 chars -> 8
    assert_eq!(v["usage"]["input_tokens"], 8);
    assert_eq!(v["usage"]["output_tokens"], 4);
    assert_eq!(v["usage"]["cache_creation_input_tokens"], 0);
    assert_eq!(v["usage"]["cache_read_input_tokens"], 0);
    let s = mock.stats("ant");
    assert_eq!(s.by_endpoint["messages"], 1);
    assert_eq!(s.last_headers["anthropic-version"], "2023-06-01");
    assert_eq!(s.last_body.unwrap()["max_tokens"], 1024);
}

#[tokio::test]
async fn bearer_auth_is_accepted() {
    let mock = server();
    let resp = post(&format!("{}/v1/messages", mock.url("ant")), body(false, 10)).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn max_tokens_truncates() {
    let mock = server();
    let resp = post_anthropic(&format!("{}/v1/messages", mock.url("ant")), body(false, 2)).await;
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["content"][0]["text"], "Hello from");
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["usage"]["output_tokens"], 2);
}

#[tokio::test]
async fn validation_errors_are_anthropic_shaped() {
    let mock = server();
    let url = format!("{}/v1/messages", mock.url("ant"));
    let mut b = body(false, 10);
    b.as_object_mut().unwrap().remove("max_tokens");
    let resp = post_anthropic(&url, b).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().contains_key("request-id"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_tokens"));
    assert!(v["request_id"].as_str().unwrap().starts_with("req_"));

    let mut b = body(false, 10);
    b["messages"][0]["role"] = json!("system");
    let resp = post_anthropic(&url, b).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("messages.0.role"));

    // Neither anthropic-version nor Authorization.
    let resp = client()
        .post(&url)
        .header("x-api-key", "k")
        .json(&body(false, 10))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("anthropic-version"));
    assert_eq!(mock.stats("ant").statuses[&400], 3);
}

#[tokio::test]
async fn stream_event_sequence() {
    let mock = server();
    mock.set_behavior(
        "ant",
        Behavior {
            stream_chunks: 3,
            ..Default::default()
        },
    );
    let resp = post_anthropic(
        &format!("{}/v1/messages", mock.url("ant")),
        body(true, 1024),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let frames = frames(&resp.text().await.unwrap());
    let names: Vec<&str> = frames.iter().map(|f| f.event.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for f in &frames {
        assert_eq!(f.json()["type"], f.event.as_deref().unwrap());
    }
    let start = frames[0].json();
    assert_eq!(start["message"]["model"], "claude-sonnet-4-5");
    assert_eq!(start["message"]["content"], json!([]));
    assert_eq!(start["message"]["stop_reason"], Value::Null);
    assert_eq!(start["message"]["usage"]["input_tokens"], 8);
    assert_eq!(
        frames[1].json()["content_block"],
        json!({"type": "text", "text": ""})
    );
    let text: String = frames[3..6]
        .iter()
        .map(|f| {
            let v = f.json();
            assert_eq!(v["index"], 0);
            assert_eq!(v["delta"]["type"], "text_delta");
            v["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, "Hello from mock ant");
    assert_eq!(frames[6].json()["index"], 0);
    let delta = frames[7].json();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["delta"]["stop_sequence"], Value::Null);
    assert_eq!(delta["usage"]["output_tokens"], 4);
}

#[tokio::test]
async fn stream_max_tokens_stop_reason() {
    let mock = server();
    let resp = post_anthropic(&format!("{}/v1/messages", mock.url("ant")), body(true, 1)).await;
    let frames = frames(&resp.text().await.unwrap());
    let delta = frames
        .iter()
        .find(|f| f.event.as_deref() == Some("message_delta"))
        .unwrap();
    assert_eq!(delta.json()["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta.json()["usage"]["output_tokens"], 1);
}

#[tokio::test]
async fn models_in_anthropic_shape() {
    let mock = server();
    let v: Value = client()
        .get(format!("{}/v1/models", mock.url("ant")))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"][0]["type"], "model");
    assert_eq!(v["has_more"], false);
}
