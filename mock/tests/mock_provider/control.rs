//! The `/_mock/*` control API, the library handle, workers, and the binary.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use llmux_mock::{Behavior, MockServer};
use serde_json::{json, Value};

#[tokio::test]
async fn url_formatting() {
    let mock = server();
    let port = mock.addr().port();
    assert_eq!(mock.url(""), format!("http://127.0.0.1:{port}"));
    assert_eq!(
        mock.url("acct-a"),
        format!("http://127.0.0.1:{port}/acct-a")
    );
}

#[tokio::test]
async fn control_api_behavior_stats_reset() {
    let mock = server();
    let base = mock.url("");
    let c = client();

    let resp = c
        .post(format!("{base}/_mock/behavior"))
        .json(&json!({"account": "acct-a", "always_status": 503, "retry_after_s": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = c
        .post(format!("{base}/_mock/behavior"))
        .json(&json!({"account": "*", "reply": "default reply"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let bad = c
        .post(format!("{base}/_mock/behavior"))
        .json(&json!({"account": "x", "fail_mode": "explode"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let behaviors: Value = c
        .get(format!("{base}/_mock/behavior"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(behaviors["acct-a"]["always_status"], 503);
    assert_eq!(behaviors["*"]["reply"], "default reply");

    let r = post(
        &format!("{base}/acct-a/v1/chat/completions"),
        chat_body(false),
    )
    .await;
    assert_eq!(r.status(), 503);
    let v: Value = post(
        &format!("{base}/acct-b/v1/chat/completions"),
        chat_body(false),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "default reply");

    let all: Value = c
        .get(format!("{base}/_mock/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["acct-a"]["requests"], 1);
    assert_eq!(all["acct-a"]["statuses"]["503"], 1);
    assert_eq!(all["acct-b"]["by_endpoint"]["chat_completions"], 1);
    assert_eq!(all["acct-b"]["last_body"]["model"], "gpt-4o");
    assert_eq!(all["acct-b"]["last_path"], "/acct-b/v1/chat/completions");
    assert_eq!(
        all["acct-b"]["last_headers"]["authorization"],
        "Bearer sk-test"
    );
    assert_eq!(all["acct-b"]["client_disconnects"], 0);
    // Control requests are not counted anywhere.
    assert!(all.get("").is_none());
    assert!(all.get("_mock").is_none());

    let one: Value = c
        .get(format!("{base}/_mock/stats?account=acct-a"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["requests"], 1);

    let r = c.post(format!("{base}/_mock/reset")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let all: Value = c
        .get(format!("{base}/_mock/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all, json!({}));
    let r = post(
        &format!("{base}/acct-a/v1/chat/completions"),
        chat_body(false),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(mock.stats("acct-a").requests, 1);
    assert_eq!(mock.stats("never-seen").requests, 0);
}

#[tokio::test]
async fn concurrent_requests_are_all_counted() {
    let mock = MockServer::start_with_workers("127.0.0.1:0", Behavior::default(), 2).unwrap();
    let c = client();
    let mut tasks = Vec::new();
    for i in 0..400 {
        let c = c.clone();
        let url = format!(
            "{}/v1/chat/completions",
            mock.url(if i % 2 == 0 { "a" } else { "b" })
        );
        tasks.push(tokio::spawn(async move {
            c.post(url)
                .json(&chat_body(i % 4 == 1))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for acct in ["a", "b"] {
        let s = mock.stats(acct);
        assert_eq!(s.requests, 200);
        assert_eq!(s.statuses[&200], 200);
        assert_eq!(s.client_disconnects, 0);
    }
}

#[test]
fn start_fails_on_a_busy_port() {
    let a = MockServer::start("127.0.0.1:0", Behavior::default()).unwrap();
    let err = MockServer::start(&a.addr().to_string(), Behavior::default());
    assert!(err.is_err());
}

#[tokio::test]
async fn binary_serves_until_killed() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_llmux-mock"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--latency-ms",
            "1",
            "--fail-rate",
            "1",
            "--fail-status",
            "418",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("llmux-mock listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_owned();
    let resp = client()
        .post(format!("http://{addr}/x/v1/chat/completions"))
        .json(&chat_body(false))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 418);
    let stats: Value = client()
        .get(format!("http://{addr}/_mock/stats?account=x"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["statuses"]["418"], 1);
    child.kill().unwrap();
    child.wait().unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_llmux-mock"))
        .args(["--fail-rate", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
