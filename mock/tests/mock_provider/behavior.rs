//! Latency, failure injection, stream timing/failures and client-disconnect
//! accounting, observed by a real HTTP client.

use crate::common;

use std::time::{Duration, Instant};

use crate::common::*;
use futures_util::StreamExt;
use llmux_mock::{Behavior, FailMode, MockServer, StreamFailMode};
use serde_json::{json, Value};

fn chat_url(mock: &MockServer, account: &str) -> String {
    format!("{}/v1/chat/completions", mock.url(account))
}

#[tokio::test]
async fn latency_delays_headers() {
    let mock = server();
    mock.set_behavior(
        "slow",
        Behavior {
            latency_ms: 250,
            ..Default::default()
        },
    );
    let t = Instant::now();
    let resp = post(&chat_url(&mock, "slow"), chat_body(false)).await;
    assert_eq!(resp.status(), 200);
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    // Other accounts are unaffected.
    let t = Instant::now();
    post(&chat_url(&mock, "fast"), chat_body(false)).await;
    assert!(t.elapsed() < Duration::from_millis(200));
}

#[tokio::test]
async fn always_status_429_openai_with_retry_after() {
    let mock = server();
    mock.set_behavior(
        "rl",
        Behavior {
            always_status: Some(429),
            retry_after_s: Some(7),
            ..Default::default()
        },
    );
    let resp = post(&chat_url(&mock, "rl"), chat_body(false)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(resp.headers()["retry-after-ms"], "7000");
    assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], "0");
    assert!(resp.headers().contains_key("x-request-id"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "requests");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(v["error"]["param"], Value::Null);
    assert!(v["error"]["message"].is_string());
    let s = mock.stats("rl");
    assert_eq!(s.statuses[&429], 1);
    assert_eq!(s.requests, 1);
}

#[tokio::test]
async fn error_envelopes_per_provider() {
    let mock = server();
    for (status, kind) in [(500, "server_error"), (503, "server_error")] {
        mock.set_behavior(
            "x",
            Behavior {
                always_status: Some(status),
                ..Default::default()
            },
        );
        let resp = post(&chat_url(&mock, "x"), chat_body(false)).await;
        assert_eq!(resp.status().as_u16(), status);
        assert!(!resp.headers().contains_key("retry-after"));
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], kind);
        assert_eq!(v["error"]["code"], Value::Null);
    }

    // Azure 429.
    mock.set_behavior(
        "az",
        Behavior {
            always_status: Some(429),
            retry_after_s: Some(6),
            ..Default::default()
        },
    );
    let resp = post(
        &format!(
            "{}/openai/deployments/d/chat/completions?api-version=2024-10-21",
            mock.url("az")
        ),
        chat_body(false),
    )
    .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "6");
    assert_eq!(resp.headers()["retry-after-ms"], "6000");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "429");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.ends_with("Please retry after 6 seconds."), "{msg}");
    assert!(msg.contains("2024-10-21"), "{msg}");

    // Anthropic 429 / 500 / 529.
    for (status, kind) in [
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
    ] {
        mock.set_behavior(
            "ant",
            Behavior {
                always_status: Some(status),
                retry_after_s: Some(3),
                ..Default::default()
            },
        );
        let resp = post_anthropic(
            &format!("{}/v1/messages", mock.url("ant")),
            json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(resp.status().as_u16(), status);
        assert_eq!(resp.headers().contains_key("retry-after"), status == 429);
        if status == 429 {
            assert_eq!(resp.headers()["retry-after"], "3");
            assert_eq!(
                resp.headers()["anthropic-ratelimit-requests-remaining"],
                "0"
            );
        }
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], kind);
        assert!(v["error"]["message"].is_string());
    }
}

#[tokio::test]
async fn fail_rate_and_fail_statuses() {
    let mock = server();
    mock.set_behavior(
        "half",
        Behavior {
            fail_rate: 0.5,
            fail_status: 503,
            ..Default::default()
        },
    );
    let mut failed = 0;
    for _ in 0..200 {
        let resp = post(&chat_url(&mock, "half"), chat_body(false)).await;
        match resp.status().as_u16() {
            200 => {}
            503 => failed += 1,
            s => panic!("unexpected {s}"),
        }
    }
    assert!((60..=140).contains(&failed), "failed {failed}/200");
    let s = mock.stats("half");
    assert_eq!(s.statuses[&503], failed);
    assert_eq!(s.statuses[&200], 200 - failed);

    // fail_status 0 means 500; fail_statuses picks among the list.
    mock.set_behavior(
        "all",
        Behavior {
            fail_rate: 1.0,
            ..Default::default()
        },
    );
    assert_eq!(
        post(&chat_url(&mock, "all"), chat_body(false))
            .await
            .status(),
        500
    );
    mock.set_behavior(
        "mix",
        Behavior {
            fail_rate: 1.0,
            fail_statuses: vec![429, 500, 503],
            ..Default::default()
        },
    );
    for _ in 0..60 {
        post(&chat_url(&mock, "mix"), chat_body(false)).await;
    }
    let s = mock.stats("mix");
    assert_eq!(
        s.statuses.keys().copied().collect::<Vec<_>>(),
        [429, 500, 503]
    );
    assert_eq!(s.statuses.values().sum::<u64>(), 60);
}

#[tokio::test]
async fn default_behavior_applies_to_all_accounts() {
    let mock = MockServer::start(
        "127.0.0.1:0",
        Behavior {
            always_status: Some(502),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        post(&chat_url(&mock, "a"), chat_body(false)).await.status(),
        502
    );
    mock.set_behavior("b", Behavior::default());
    assert_eq!(
        post(&chat_url(&mock, "b"), chat_body(false)).await.status(),
        200
    );
    mock.set_behavior(
        "*",
        Behavior {
            always_status: Some(504),
            ..Default::default()
        },
    );
    assert_eq!(
        post(&chat_url(&mock, "a"), chat_body(false)).await.status(),
        504
    );
    mock.reset();
    assert_eq!(
        post(&chat_url(&mock, "b"), chat_body(false)).await.status(),
        502
    );
    assert_eq!(mock.stats("a").requests, 0);
    assert_eq!(mock.stats("b").requests, 1);
}

#[tokio::test]
async fn timeout_mode_never_answers_and_counts_the_hangup() {
    let mock = server();
    mock.set_behavior(
        "hang",
        Behavior {
            fail_rate: 1.0,
            fail_mode: FailMode::Timeout,
            ..Default::default()
        },
    );
    let t = Instant::now();
    let err = client()
        .post(chat_url(&mock, "hang"))
        .json(&chat_body(false))
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(
        eventually(Duration::from_secs(3), || mock
            .stats("hang")
            .client_disconnects
            == 1)
        .await,
        "{:?}",
        mock.stats("hang")
    );
    assert!(mock.stats("hang").statuses.is_empty());
}

#[tokio::test]
async fn reset_mode_is_a_connection_error() {
    let mock = server();
    mock.set_behavior(
        "rst",
        Behavior {
            fail_rate: 1.0,
            fail_mode: FailMode::Reset,
            ..Default::default()
        },
    );
    for body in [chat_body(false), chat_body(true)] {
        let err = client()
            .post(chat_url(&mock, "rst"))
            .json(&body)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect_err("reset must not produce a response");
        assert!(!err.is_timeout(), "{err:?}");
        assert!(err.is_request(), "{err:?}");
        // A real TCP RST (SO_LINGER 0), not a clean close.
        let msg = format!("{err:?}");
        assert!(msg.contains("ConnectionReset"), "{msg}");
    }
    let s = mock.stats("rst");
    assert_eq!(s.requests, 2);
    assert!(s.statuses.is_empty());
    assert_eq!(s.client_disconnects, 0);
    // The server keeps serving.
    assert_eq!(
        post(&chat_url(&mock, "ok"), chat_body(false))
            .await
            .status(),
        200
    );
}

#[cfg(unix)]
#[tokio::test]
async fn reset_is_rst_on_raw_socket() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mock = server();
    mock.set_behavior(
        "rst",
        Behavior {
            fail_rate: 1.0,
            fail_mode: FailMode::Reset,
            ..Default::default()
        },
    );
    let mut sock = tokio::net::TcpStream::connect(mock.addr()).await.unwrap();
    let body = r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#;
    let req = format!(
        "POST /rst/v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut buf))
        .await
        .expect("closed in time");
    assert!(
        buf.is_empty(),
        "got bytes: {:?}",
        String::from_utf8_lossy(&buf)
    );
    let err = r.expect_err("expected ECONNRESET");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
}

/// Reads an SSE body; returns (arrival time, frame text) for each frame.
async fn timed_frames(
    resp: reqwest::Response,
    start: Instant,
) -> (Vec<(Duration, String)>, Option<reqwest::Error>) {
    let timed = read_timed(resp, start).await;
    let mut out = Vec::new();
    let mut buf = String::new();
    for (t, chunk) in &timed.chunks {
        buf.push_str(std::str::from_utf8(chunk).unwrap());
        while let Some(i) = buf.find("\n\n") {
            out.push((*t, buf[..i].to_owned()));
            buf.drain(..i + 2);
        }
    }
    assert!(buf.is_empty(), "partial frame {buf:?}");
    (out, timed.error)
}

#[tokio::test]
async fn stream_chunks_arrive_incrementally() {
    let mock = server();
    mock.set_behavior(
        "st",
        Behavior {
            stream_chunks: 4,
            chunk_interval_ms: 150,
            ..Default::default()
        },
    );
    let start = Instant::now();
    let resp = post(&chat_url(&mock, "st"), chat_body(true)).await;
    let headers_at = start.elapsed();
    assert!(headers_at < Duration::from_millis(120), "{headers_at:?}");
    let (frames, err) = timed_frames(resp, start).await;
    assert!(err.is_none());
    assert_eq!(frames.len(), 1 + 4 + 2); // role, 4 content, finish, [DONE]
    let content: Vec<Duration> = frames[1..5].iter().map(|(t, _)| *t).collect();
    // Each content chunk arrives about one interval after the previous one.
    assert!(content[0] >= Duration::from_millis(140), "{content:?}");
    for w in content.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(100),
            "gap {gap:?} in {content:?}"
        );
    }
    assert!(
        frames[0].0 < Duration::from_millis(120),
        "role chunk late: {:?}",
        frames[0].0
    );
    assert_eq!(frames.last().unwrap().1, "data: [DONE]");
    assert_eq!(mock.stats("st").client_disconnects, 0);
}

#[tokio::test]
async fn anthropic_stream_arrives_incrementally() {
    let mock = server();
    mock.set_behavior(
        "ant",
        Behavior {
            stream_chunks: 3,
            chunk_interval_ms: 120,
            ..Default::default()
        },
    );
    let start = Instant::now();
    let resp = post_anthropic(
        &format!("{}/v1/messages", mock.url("ant")),
        json!({"model": "c", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let (frames, err) = timed_frames(resp, start).await;
    assert!(err.is_none());
    let deltas: Vec<Duration> = frames
        .iter()
        .filter(|(_, f)| f.starts_with("event: content_block_delta"))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(deltas.len(), 3);
    for w in deltas.windows(2) {
        assert!(w[1] - w[0] >= Duration::from_millis(80), "{deltas:?}");
    }
    assert!(frames.last().unwrap().1.starts_with("event: message_stop"));
}

fn stream_fail(after: usize, mode: StreamFailMode) -> Behavior {
    Behavior {
        stream_chunks: 5,
        chunk_interval_ms: 20,
        stream_fail_after: Some(after),
        stream_fail_mode: mode,
        ..Default::default()
    }
}

#[tokio::test]
async fn stream_fail_drop_is_a_body_error_after_partial_data() {
    let mock = server();
    mock.set_behavior("d", stream_fail(2, StreamFailMode::Drop));
    let resp = post(&chat_url(&mock, "d"), chat_body(true)).await;
    assert_eq!(resp.status(), 200);
    let (frames, err) = timed_frames(resp, Instant::now()).await;
    assert!(err.is_some(), "expected a body error");
    assert_eq!(frames.len(), 3, "{frames:?}"); // role + 2 content
    assert!(frames.iter().all(|(_, f)| !f.contains("[DONE]")));
    assert_eq!(mock.stats("d").client_disconnects, 0);

    // Also with no interval (everything produced in one go) and after 0.
    mock.set_behavior(
        "d0",
        Behavior {
            stream_fail_after: Some(0),
            ..Default::default()
        },
    );
    let resp = post(&chat_url(&mock, "d0"), chat_body(true)).await;
    assert_eq!(resp.status(), 200);
    let (frames, err) = timed_frames(resp, Instant::now()).await;
    assert!(err.is_some());
    assert_eq!(frames.len(), 1, "{frames:?}");
}

#[tokio::test]
async fn stream_fail_error_event() {
    let mock = server();
    mock.set_behavior("e", stream_fail(3, StreamFailMode::ErrorEvent));
    let resp = post(&chat_url(&mock, "e"), chat_body(true)).await;
    let (frames, err) = timed_frames(resp, Instant::now()).await;
    assert!(err.is_none());
    assert_eq!(frames.len(), 5, "{frames:?}"); // role + 3 content + error
    let last: Value = serde_json::from_str(frames[4].1.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "server_error");
    assert!(frames.iter().all(|(_, f)| !f.contains("[DONE]")));

    mock.set_behavior("ant", stream_fail(1, StreamFailMode::ErrorEvent));
    let resp = post_anthropic(
        &format!("{}/v1/messages", mock.url("ant")),
        json!({"model": "c", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let frames = common::frames(&resp.text().await.unwrap());
    let names: Vec<&str> = frames.iter().map(|f| f.event.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "error"
        ]
    );
    let e = frames[4].json();
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn stream_fail_no_terminator() {
    let mock = server();
    mock.set_behavior("n", stream_fail(5, StreamFailMode::NoTerminator));
    let resp = post(&chat_url(&mock, "n"), chat_body(true)).await;
    let (frames, err) = timed_frames(resp, Instant::now()).await;
    assert!(err.is_none(), "clean end expected");
    assert_eq!(frames.len(), 6, "{frames:?}"); // role + 5 content, no finish/[DONE]
    assert!(frames.iter().all(|(_, f)| !f.contains("[DONE]")));

    mock.set_behavior("ant", stream_fail(2, StreamFailMode::NoTerminator));
    let resp = post_anthropic(
        &format!("{}/v1/messages", mock.url("ant")),
        json!({"model": "c", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let text = resp.text().await.unwrap();
    let frames = common::frames(&text);
    assert_eq!(frames.len(), 5);
    assert!(!text.contains("message_stop"));
    assert_eq!(mock.stats("ant").client_disconnects, 0);
}

#[tokio::test]
async fn client_disconnect_mid_stream_is_counted() {
    let mock = server();
    mock.set_behavior(
        "cx",
        Behavior {
            stream_chunks: 100,
            chunk_interval_ms: 50,
            ..Default::default()
        },
    );
    let resp = post(&chat_url(&mock, "cx"), chat_body(true)).await;
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    let second = body.next().await.unwrap().unwrap();
    assert!(!second.is_empty());
    assert_eq!(mock.stats("cx").client_disconnects, 0);
    drop(body);
    let t = Instant::now();
    assert!(
        eventually(Duration::from_secs(3), || mock
            .stats("cx")
            .client_disconnects
            == 1)
        .await,
        "{:?}",
        mock.stats("cx")
    );
    // Detected promptly (read-side EOF), not only at the end of the stream.
    assert!(t.elapsed() < Duration::from_secs(2));

    // A stream read to the end does not count.
    mock.set_behavior(
        "done",
        Behavior {
            chunk_interval_ms: 5,
            ..Default::default()
        },
    );
    let text = post(&chat_url(&mock, "done"), chat_body(true))
        .await
        .text()
        .await
        .unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(mock.stats("done").client_disconnects, 0);
}

#[tokio::test]
async fn client_disconnect_with_long_interval_is_prompt() {
    // Even while the stream is sleeping between chunks for a long time.
    let mock = server();
    mock.set_behavior(
        "cx",
        Behavior {
            chunk_interval_ms: 10_000,
            ..Default::default()
        },
    );
    let resp = post(&chat_url(&mock, "cx"), chat_body(true)).await;
    let mut body = resp.bytes_stream();
    body.next().await.unwrap().unwrap();
    drop(body);
    assert!(
        eventually(Duration::from_secs(2), || mock
            .stats("cx")
            .client_disconnects
            == 1)
        .await,
        "{:?}",
        mock.stats("cx")
    );
}

#[tokio::test]
async fn drop_stops_server_with_requests_in_flight() {
    let mock = server();
    mock.set_behavior(
        "*",
        Behavior {
            fail_rate: 1.0,
            fail_mode: FailMode::Timeout,
            ..Default::default()
        },
    );
    let url = chat_url(&mock, "a");
    let pending = tokio::spawn(async move { post(&url, chat_body(false)).await.status() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let addr = mock.addr();
    let t = Instant::now();
    drop(mock);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    pending.abort();
}
