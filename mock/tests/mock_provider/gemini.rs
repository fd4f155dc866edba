//! Gemini wire format over real HTTP: the checks Google makes, the answers, the CRLF stream
//! without terminator, and errors with `RetryInfo` in the body.

use crate::common::*;
use llmux_mock::{Behavior, StreamFailMode};
use serde_json::{json, Value};

async fn gemini(url: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = client().post(url).json(body);
    if let Some(k) = key {
        req = req.header("x-goog-api-key", k);
    }
    req.send().await.expect("send")
}

fn url(mock: &llmux_mock::MockServer, model: &str, verb: &str) -> String {
    format!("{}/v1beta/models/{model}:{verb}", mock.url("g"))
}

fn hello() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}]})
}

async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn generate_content_shape() {
    let mock = server();
    let resp = gemini(
        &url(&mock, "gemini-2.5-flash", "generateContent"),
        Some("k"),
        &hello(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["candidates"][0]["content"]["role"], "model");
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        "Hello from mock g"
    );
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");
    assert_eq!(v["modelVersion"], "gemini-2.5-flash");
    assert!(v["usageMetadata"]["promptTokenCount"].as_u64().unwrap() > 0);
    let s = mock.stats("g");
    assert_eq!(s.by_endpoint["gemini_generate"], 1);
    assert_eq!(s.last_headers["x-goog-api-key"], "k");
}

#[tokio::test]
async fn the_key_belongs_in_the_header() {
    let mock = server();
    let (status, v) =
        error_of(gemini(&url(&mock, "m", "generateContent"), None, &hello()).await).await;
    assert_eq!(status, 403);
    assert_eq!(v["error"]["status"], "PERMISSION_DENIED");
    let (status, v) = error_of(
        gemini(
            &format!("{}?key=k", url(&mock, "m", "generateContent")),
            Some("k"),
            &hello(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
}

#[tokio::test]
async fn requests_are_checked_like_google_does() {
    let mock = server();
    let u = url(&mock, "gemini-3-pro-preview", "generateContent");
    let call = |sig: bool| {
        let mut p = json!({"functionCall": {"name": "wx", "args": {"city": "Paris"}}});
        if sig {
            p["thoughtSignature"] = json!("c2ln");
        }
        p
    };
    let response =
        |name: &str| json!({"functionResponse": {"name": name, "response": {"content": "18C"}}});
    let turns = |model_parts: Value, user_parts: Value| {
        json!({"contents": [
            {"role": "user", "parts": [{"text": "Weather?"}]},
            {"role": "model", "parts": model_parts},
            {"role": "user", "parts": user_parts}]})
    };
    let bad = [
        json!({"contents": []}),
        json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}),
        json!({"contents": [{"role": "user", "parts": []}]}),
        json!({"contents": [{"role": "user", "parts": [{"text": "x", "inlineData": {"mimeType": "a/b", "data": ""}}]}]}),
        json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}], "model": "m"}),
        json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}], "generationConfig": {"max_tokens": 5}}),
        json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}], "tools": [{"functionDeclarations": [{"name": "f", "parameters": {}, "parametersJsonSchema": {}}]}]}),
        // Responses must answer the previous turn's calls, one for one, by name.
        turns(json!([call(true)]), json!([response("other")])),
        turns(json!([call(true)]), json!([response("wx"), response("wx")])),
        // Gemini 3: the first call of a step needs its signature.
        turns(json!([call(false)]), json!([response("wx")])),
    ];
    for body in bad {
        let (status, v) = error_of(gemini(&u, Some("k"), &body).await).await;
        assert_eq!(
            (status, &v["error"]["status"]),
            (400, &json!("INVALID_ARGUMENT")),
            "{body}: {v}"
        );
    }
    let ok = turns(json!([call(true)]), json!([response("wx")]));
    assert_eq!(gemini(&u, Some("k"), &ok).await.status(), 200);
}

#[tokio::test]
async fn forced_calls_and_streams() {
    let mock = server();
    let mut body = hello();
    body["tools"] = json!([{"functionDeclarations": [{"name": "wx", "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}}}]}]);
    body["toolConfig"] = json!({"functionCallingConfig": {"mode": "ANY"}});
    let v: Value = gemini(&url(&mock, "m", "generateContent"), Some("k"), &body)
        .await
        .json()
        .await
        .unwrap();
    let part = &v["candidates"][0]["content"]["parts"][0];
    assert_eq!(
        part["functionCall"],
        json!({"name": "wx", "args": {"city": "Paris"}})
    );
    assert!(part["thoughtSignature"].is_string());

    // Streams need alt=sse; frames end with CRLF; no terminator; usage on the last frame.
    let plain = url(&mock, "m", "streamGenerateContent");
    assert_eq!(gemini(&plain, Some("k"), &hello()).await.status(), 400);
    let resp = gemini(&format!("{plain}?alt=sse"), Some("k"), &hello()).await;
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    assert!(
        text.ends_with("\r\n\r\n") && !text.contains("[DONE]"),
        "{text:?}"
    );
    let frames: Vec<Value> = text
        .split("\r\n\r\n")
        .filter(|f| !f.is_empty())
        .map(|f| serde_json::from_str(f.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    let last = frames.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert!(
        last["usageMetadata"]["candidatesTokenCount"]
            .as_u64()
            .unwrap()
            > 0
    );
    let joined: String = frames
        .iter()
        .filter_map(|f| f["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(joined, "Hello from mock g");

    // A failing stream ends with bare, pretty-printed JSON.
    mock.set_behavior(
        "g",
        Behavior {
            stream_fail_after: Some(1),
            stream_fail_mode: StreamFailMode::ErrorEvent,
            ..Default::default()
        },
    );
    let text = gemini(&format!("{plain}?alt=sse"), Some("k"), &hello())
        .await
        .text()
        .await
        .unwrap();
    let bare = text.rsplit("\r\n\r\n").next().unwrap();
    assert!(bare.starts_with("{\n"), "{text:?}");
    let v: Value = serde_json::from_str(bare).unwrap();
    assert_eq!(v["error"]["status"], "INTERNAL");
}

#[tokio::test]
async fn errors_carry_retry_info_in_the_body() {
    let mock = server();
    mock.set_behavior(
        "g",
        Behavior {
            always_status: Some(429),
            retry_after_s: Some(58),
            ..Default::default()
        },
    );
    let resp = gemini(&url(&mock, "m", "generateContent"), Some("k"), &hello()).await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_none());
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], 429);
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
    let info = v["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.RetryInfo")
        .expect("RetryInfo");
    assert_eq!(info["retryDelay"], "58s");
}

#[tokio::test]
async fn embeddings_and_models() {
    let mock = server();
    let body = json!({"requests": [
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}},
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 4}]});
    let v: Value = gemini(
        &url(&mock, "gemini-embedding-001", "batchEmbedContents"),
        Some("k"),
        &body,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["embeddings"].as_array().unwrap().len(), 2);
    assert_eq!(v["embeddings"][1]["values"].as_array().unwrap().len(), 4);
    // The model inside must match the URL's.
    let resp = gemini(&url(&mock, "other", "batchEmbedContents"), Some("k"), &body).await;
    assert_eq!(resp.status(), 400);
    let resp = client()
        .get(format!("{}/v1beta/models", mock.url("g")))
        .header("x-goog-api-key", "k")
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert!(v["models"][0]["name"]
        .as_str()
        .unwrap()
        .starts_with("models/gemini"));
    assert_eq!(mock.stats("g").by_endpoint["gemini_models"], 1);
}
