//! Bedrock Converse over real HTTP: authentication as AWS does it, Converse's validation, the
//! JSON answer, binary event-stream frames and AWS-shaped errors.

use crate::common::*;
use llmux_mock::bedrock_keys as keys;
use llmux_mock::sigv4::{self, Signed};
use llmux_mock::{Behavior, MockServer};
use serde_json::{json, Value};

const PATH: &str = "/br/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse";

fn body() -> Value {
    json!({"system": [{"text": "Be brief."}],
           "messages": [{"role": "user", "content": [{"text": "Weather in Paris?"}]}],
           "inferenceConfig": {"maxTokens": 100}})
}

/// POSTs `bytes` to `path`, SigV4-signed over `signed_body` (the same bytes unless a test
/// tampers) with the mock's long-term keys.
async fn signed_post(
    mock: &MockServer,
    path: &str,
    bytes: Vec<u8>,
    signed_body: &[u8],
) -> reqwest::Response {
    let host = mock.addr().to_string();
    let date = sigv4::amz_date(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    );
    let signed = Signed {
        method: "POST",
        path,
        query: "",
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("host".into(), host.clone()),
            ("x-amz-date".into(), date.clone()),
        ],
        body: signed_body,
    };
    let auth = sigv4::authorization(
        &signed,
        keys::ACCESS_KEY_ID,
        keys::SECRET_ACCESS_KEY,
        &date,
        "us-east-1",
    );
    client()
        .post(format!("http://{host}{path}"))
        .header("content-type", "application/json")
        .header("x-amz-date", date)
        .header("authorization", auth)
        .body(bytes)
        .send()
        .await
        .expect("send")
}

async fn api_key_post(mock: &MockServer, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("http://{}{path}", mock.addr()))
        .bearer_auth(keys::API_KEY)
        .json(body)
        .send()
        .await
        .expect("send")
}

fn errortype(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-amzn-errortype")
        .map(|v| v.to_str().unwrap().split(':').next().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn signed_requests_are_answered_and_bad_ones_refused() {
    let mock = server();
    let bytes = body().to_string().into_bytes();
    let r = signed_post(&mock, PATH, bytes.clone(), &bytes).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-amzn-requestid"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["output"]["message"]["content"],
        json!([{"text": "Hello from mock br"}])
    );
    assert_eq!(v["stopReason"], "end_turn");
    assert!(v["usage"]["inputTokens"].as_u64().unwrap() > 0);

    // The body changed after signing.
    let r = signed_post(&mock, PATH, b"{\"messages\":[]}".to_vec(), &bytes).await;
    assert_eq!(r.status(), 403);
    assert_eq!(errortype(&r), "InvalidSignatureException");
    let v: Value = r.json().await.unwrap();
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("The request signature"),
        "{v}"
    );

    // No credentials at all; a wrong API key.
    let r = client()
        .post(format!("http://{}{PATH}", mock.addr()))
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), errortype(&r)),
        (403, "UnrecognizedClientException".into())
    );
    let r = client()
        .post(format!("http://{}{PATH}", mock.addr()))
        .bearer_auth("ABSKnope")
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), errortype(&r)),
        (403, "UnrecognizedClientException".into())
    );
    assert_eq!(mock.stats("br").by_endpoint["converse"], 4);
}

#[tokio::test]
async fn converse_validates_like_bedrock() {
    let mock = server();
    let cases = [
        json!({"messages": []}),
        json!({"messages": [{"role": "assistant", "content": [{"text": "x"}]}]}),
        json!({"messages": [{"role": "user", "content": [{"text": "a"}]}, {"role": "user", "content": [{"text": "b"}]}]}),
        json!({"messages": [{"role": "user", "content": [{"text": "  "}]}]}),
        json!({"messages": [{"role": "user", "content": [{"text": "a", "image": {}}]}]}),
        json!({"model": "x", "messages": [{"role": "user", "content": [{"text": "a"}]}]}),
        json!({"messages": [{"role": "user", "content": [{"toolResult": {"toolUseId": "t", "content": [{"text": "r"}]}}]}]}),
        json!({"messages": [{"role": "user", "content": [{"text": "a"}]}], "inferenceConfig": {"temperature": 3}}),
        json!({"messages": [{"role": "user", "content": [{"text": "a"}]}],
               "toolConfig": {"tools": [{"toolSpec": {"name": "bad name", "inputSchema": {"json": {}}}}]}}),
    ];
    for c in cases {
        let r = api_key_post(&mock, PATH, &c).await;
        assert_eq!(
            (r.status().as_u16(), errortype(&r)),
            (400, "ValidationException".into()),
            "{c}"
        );
        let v: Value = r.json().await.unwrap();
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
}

/// Decodes a whole event-stream body with a minimal reader (lengths only; the CRCs are the
/// encoder's own unit test's business and llmux's decoder's).
fn frames(mut b: &[u8]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    while b.len() >= 16 {
        let total = u32::from_be_bytes(b[0..4].try_into().unwrap()) as usize;
        let hlen = u32::from_be_bytes(b[4..8].try_into().unwrap()) as usize;
        let (mut h, payload) = (&b[12..12 + hlen], &b[12 + hlen..total - 4]);
        let mut event = String::new();
        while !h.is_empty() {
            let n = h[0] as usize;
            let name = std::str::from_utf8(&h[1..1 + n]).unwrap();
            let len = u16::from_be_bytes([h[2 + n], h[3 + n]]) as usize;
            let value = std::str::from_utf8(&h[4 + n..4 + n + len]).unwrap();
            if name == ":event-type" || name == ":exception-type" {
                event = value.to_owned();
            }
            h = &h[4 + n + len..];
        }
        out.push((event, serde_json::from_slice(payload).unwrap()));
        b = &b[total..];
    }
    assert!(b.is_empty());
    out
}

#[tokio::test]
async fn converse_stream_sends_binary_frames() {
    let mock = server();
    let path = "/br/model/m/converse-stream";
    let r = api_key_post(&mock, path, &body()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.amazon.eventstream"
    );
    let f = frames(&r.bytes().await.unwrap());
    let names: Vec<&str> = f.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"messageStart"));
    assert_eq!(
        &names[names.len() - 3..],
        ["contentBlockStop", "messageStop", "metadata"]
    );
    let text: String = f
        .iter()
        .filter_map(|(_, v)| v.pointer("/delta/text").and_then(Value::as_str))
        .collect();
    assert_eq!(text, "Hello from mock br");
    assert_eq!(f[f.len() - 2].1["stopReason"], "end_turn");

    // A named tool choice streams a toolUse block.
    let mut b = body();
    b["toolConfig"] = json!({"tools": [{"toolSpec": {"name": "wx", "inputSchema": {"json": {"type": "object"}}}}],
                             "toolChoice": {"tool": {"name": "wx"}}});
    let f = frames(&api_key_post(&mock, path, &b).await.bytes().await.unwrap());
    assert_eq!(f[1].1["start"]["toolUse"]["name"], "wx");
    let args: String = f
        .iter()
        .filter_map(|(_, v)| v.pointer("/delta/toolUse/input").and_then(Value::as_str))
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "Paris"})
    );

    // A failing stream ends with an exception frame.
    mock.set_behavior(
        "br",
        Behavior {
            stream_fail_after: Some(1),
            stream_fail_mode: llmux_mock::StreamFailMode::ErrorEvent,
            ..Default::default()
        },
    );
    let f = frames(
        &api_key_post(&mock, path, &body())
            .await
            .bytes()
            .await
            .unwrap(),
    );
    assert_eq!(f.last().unwrap().0, "throttlingException");
}

#[tokio::test]
async fn behaviors_answer_with_aws_error_types() {
    let mock = server();
    for (status, want_status, want) in [
        (400, 400, "ValidationException"),
        (401, 403, "UnrecognizedClientException"),
        (403, 403, "AccessDeniedException"),
        (404, 404, "ResourceNotFoundException"),
        (408, 408, "ModelTimeoutException"),
        (429, 429, "ThrottlingException"),
        (500, 500, "InternalServerException"),
        (503, 503, "ServiceUnavailableException"),
        (413, 413, ""),
    ] {
        mock.set_behavior(
            "br",
            Behavior {
                always_status: Some(status),
                ..Default::default()
            },
        );
        let r = api_key_post(&mock, PATH, &body()).await;
        assert_eq!(
            (r.status().as_u16(), errortype(&r)),
            (want_status, want.to_owned()),
            "{status}"
        );
        let v: Value = r.json().await.unwrap();
        assert!(v["message"].is_string(), "{v}");
    }
}
