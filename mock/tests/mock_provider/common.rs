//! Helpers shared by the integration tests: an HTTP client, SSE frame
//! parsing, and timed body reading.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use llmux_mock::{Behavior, MockServer};
use serde_json::Value;

pub fn server() -> MockServer {
    MockServer::start("127.0.0.1:0", Behavior::default()).expect("start mock")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

pub async fn post(url: &str, body: Value) -> reqwest::Response {
    client()
        .post(url)
        .header("authorization", "Bearer sk-test")
        .json(&body)
        .send()
        .await
        .expect("send")
}

pub async fn post_anthropic(url: &str, body: Value) -> reqwest::Response {
    client()
        .post(url)
        .header("x-api-key", "sk-ant-test")
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .expect("send")
}

pub fn chat_body(stream: bool) -> Value {
    serde_json::json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello there, mock!"}
        ],
        "stream": stream
    })
}

/// Body bytes with the time each network chunk arrived (since `start`).
pub struct Timed {
    pub chunks: Vec<(Duration, Vec<u8>)>,
    pub error: Option<reqwest::Error>,
}

impl Timed {
    pub fn text(&self) -> String {
        let all: Vec<u8> = self.chunks.iter().flat_map(|(_, c)| c.clone()).collect();
        String::from_utf8(all).expect("utf8")
    }
}

pub async fn read_timed(resp: reqwest::Response, start: Instant) -> Timed {
    let mut stream = resp.bytes_stream();
    let mut out = Timed {
        chunks: Vec::new(),
        error: None,
    };
    while let Some(item) = stream.next().await {
        match item {
            Ok(b) => out.chunks.push((start.elapsed(), b.to_vec())),
            Err(e) => {
                out.error = Some(e);
                break;
            }
        }
    }
    out
}

/// One SSE frame: optional `event:` name and the `data:` payload.
#[derive(Debug, Clone)]
pub struct Frame {
    pub event: Option<String>,
    pub data: String,
}

impl Frame {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }
}

pub fn frames(text: &str) -> Vec<Frame> {
    assert!(
        text.is_empty() || text.ends_with("\n\n"),
        "unterminated frame: {text:?}"
    );
    text.split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| {
            let mut event = None;
            let mut data = None;
            for line in f.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = Some(e.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    assert!(data.is_none(), "two data lines in {f:?}");
                    data = Some(d.to_owned());
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            Frame {
                event,
                data: data.expect("data line"),
            }
        })
        .collect()
}

/// Polls `f` until it returns true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}
