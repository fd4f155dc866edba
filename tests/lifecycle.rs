//! The daemon's life cycle against a real llmux process: requests and streams in flight across
//! a reload finish (and fall back) on the config they started with, a reload reports what it
//! cannot apply, SIGTERM ends what is still open at the end of the grace period with an
//! OpenAI-shaped error, and a known path with the wrong method is a 405.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use llmux::actors::supervisor::{current, Reload, Supervisor};
use llmux::actors::target::GetStatus;
use llmux::config::Config;

/// One OpenAI-shaped virtual key on the mock account of the same name.
fn key(m: &MockServer, name: &str, api_key: &str) -> String {
    format!(
        "[virtual_keys.{name}]\nprovider = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"{api_key}\"\n\n",
        m.url(name)
    )
}

/// Polls `/admin/reload` until `generation` is reached.
async fn wait_generation(c: &reqwest::Client, llmux: &Llmux, generation: u64) -> Value {
    let t0 = Instant::now();
    loop {
        let r = get_json(c, &llmux.admin_url("/admin/reload")).await;
        if r["generation"] == generation {
            assert_eq!(r["ok"], true, "{r}");
            return r;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "reload not applied: {r}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls until `cond` holds (state owned by another process), for at most 5 s.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(5), "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `llmux_in_flight_requests` from /metrics: requests whose handler has started.
async fn in_flight(c: &reqwest::Client, llmux: &Llmux) -> f64 {
    let text = get_text(c, &llmux.admin_url("/metrics")).await;
    text.lines()
        .find_map(|l| l.strip_prefix("llmux_in_flight_requests "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Defect 10 (fails on the old code with 503 `no_target_available`): a request whose body is
/// still arriving when a reload changes its target's key is served by the old actor, with the
/// old key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_mid_body_across_a_key_rotation_uses_the_old_key() {
    let m = mock();
    let llmux = Llmux::start(&key(&m, "vk", "sk-old"));
    let c = client();

    let body = serde_json::to_vec(&chat_body("gpt-4o")).unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    let mut conn = tokio::net::TcpStream::connect(llmux.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: llmux\r\nContent-Type: application/json\r\n\
         x-portkey-virtual-key: vk\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(first).await.unwrap();
    // The handler has taken its runtime once it counts as in flight (same synchronous step).
    let t0 = Instant::now();
    while in_flight(&c, &llmux).await < 1.0 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "request never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    llmux.rewrite_config(&key(&m, "vk", "sk-new"));
    llmux.signal("HUP");
    let r = wait_generation(&c, &llmux, 2).await;
    assert_eq!(r["report"]["retired"], serde_json::json!(["vk"]), "{r}");

    conn.write_all(rest).await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(m.stats("vk").last_headers["authorization"], "Bearer sk-old");

    // New requests use the new key.
    let resp = c
        .post(llmux.url("/v1/chat/completions"))
        .header("x-portkey-virtual-key", "vk")
        .json(&chat_body("gpt-4o"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(m.stats("vk").last_headers["authorization"], "Bearer sk-new");
}

/// A stream in flight across a reload that removes its virtual key completes with `[DONE]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_across_a_reload_that_removes_its_key_completes() {
    let m = mock();
    m.set_behavior(
        "gone",
        Behavior {
            stream_chunks: 6,
            chunk_interval_ms: 100,
            ..Default::default()
        },
    );
    let llmux = Llmux::start(&format!(
        "{}{}",
        key(&m, "stays", "sk-1"),
        key(&m, "gone", "sk-2")
    ));
    let c = client();
    let resp = c
        .post(llmux.url("/v1/chat/completions"))
        .header("x-portkey-virtual-key", "gone")
        .json(&serde_json::json!({"model": "gpt-4o", "stream": true,
            "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::from_utf8(body.next().await.unwrap().unwrap().to_vec()).unwrap();

    llmux.rewrite_config(&key(&m, "stays", "sk-1"));
    llmux.signal("HUP");
    let r = wait_generation(&c, &llmux, 2).await;
    assert_eq!(r["report"]["retired"], serde_json::json!(["gone"]), "{r}");
    // The key is gone for new requests…
    let refused = c
        .post(llmux.url("/v1/chat/completions"))
        .header("x-portkey-virtual-key", "gone")
        .json(&chat_body("gpt-4o"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);

    // …but the stream that started on it runs to its end.
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.expect("stream not cut")).unwrap());
    }
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert_eq!(text.matches("\"delta\":{\"content\"").count(), 6, "{text}");
}

/// Defect 10 (fails on the old code, which answered the first leaf's 500): a request whose
/// first leaf fails after a reload retired its fallback still falls back on the tree it
/// started with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_after_a_reload_uses_the_old_tree() {
    let m = mock();
    m.set_behavior(
        "first",
        Behavior {
            latency_ms: 800,
            always_status: Some(500),
            ..Default::default()
        },
    );
    let config = |second_key: &str, targets: &str| {
        format!(
            "{}{}[configs.main]\nstrategy = {{ mode = \"fallback\" }}\ntargets = [{targets}]\n",
            key(&m, "first", "sk-1"),
            key(&m, "second", second_key)
        )
    };
    let llmux = Llmux::start_with(
        &config(
            "sk-old",
            "{ virtual_key = \"first\" }, { virtual_key = \"second\" }",
        ),
        "default_config = \"main\"",
        &[],
    );
    let c = client();
    let req = c
        .post(llmux.url("/v1/chat/completions"))
        .json(&chat_body("gpt-4o"));
    let pending = tokio::spawn(async move { req.send().await.unwrap() });
    until("first attempt sent", || m.stats("first").requests == 1).await;

    // The new config drops the fallback from the tree and changes its key (a new actor).
    llmux.rewrite_config(&config("sk-new", "{ virtual_key = \"first\" }"));
    llmux.signal("HUP");
    let r = wait_generation(&c, &llmux, 2).await;
    assert_eq!(r["report"]["retired"], serde_json::json!(["second"]), "{r}");
    assert!(
        !pending.is_finished(),
        "reload came too late to test anything"
    );

    let resp = pending.await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(resp.headers(), "x-llmux-virtual-key"), "second");
    assert_eq!(
        m.stats("second").last_headers["authorization"],
        "Bearer sk-old"
    );
}

/// Defect 10: settings only read at start are reported by the reload (answer, status, log),
/// and settings read per request are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_reports_the_settings_it_cannot_apply() {
    let m = mock();
    let llmux = Llmux::start(&key(&m, "vk", "sk-1"));
    let c = client();
    let old = std::fs::read_to_string(&llmux.config_path).unwrap();
    let new_admin = format!("127.0.0.1:{}", free_port());
    let new = old
        .replace(
            "workers = 2\n",
            "workers = 3\nheader_timeout_ms = 4000\nshutdown_grace_ms = 1234\nmax_body_bytes = 4096\n",
        )
        .replace(&llmux.admin.to_string(), &new_admin)
        + "\n[cluster]\nredis_url = \"redis://127.0.0.1:1\"\n";
    std::fs::write(&llmux.config_path, new).unwrap();

    let resp = c
        .post(llmux.admin_url("/admin/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    let settings = |r: &Value| -> Vec<String> {
        r["not_applied"]
            .as_array()
            .unwrap_or_else(|| panic!("{r}"))
            .iter()
            .map(|n| {
                assert_eq!(n["reason"], "takes effect on restart", "{n}");
                n["setting"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    assert_eq!(
        settings(&answer),
        [
            "server.workers",
            "server.header_timeout_ms",
            "admin.listen",
            "cluster"
        ],
        "{answer}"
    );
    let workers = &answer["not_applied"][0];
    assert_eq!(
        (workers["running"].as_str(), workers["configured"].as_str()),
        (Some("2"), Some("3"))
    );
    let status = get_json(&c, &llmux.admin_url("/admin/reload")).await;
    assert_eq!(status["generation"], 2);
    assert_eq!(settings(&status), settings(&answer));
    // The per-request limit did apply.
    let big = serde_json::json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x".repeat(5000)}]});
    let resp = c
        .post(llmux.url("/v1/chat/completions"))
        .header("x-portkey-virtual-key", "vk")
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let logs = llmux.logs();
    assert!(
        logs.matches("not applied by the reload").count() == 4,
        "{logs}"
    );
}

fn stream_request(c: &reqwest::Client, llmux: &Llmux, vk: &str) -> reqwest::RequestBuilder {
    c.post(llmux.url("/v1/chat/completions"))
        .header("x-portkey-virtual-key", vk)
        .json(&serde_json::json!({"model": "gpt-4o", "stream": true,
            "messages": [{"role": "user", "content": "hi"}]}))
}

/// Defect 11 (fails on the old code, which cut the stream without a word after a whole second):
/// at the end of a 300 ms grace period an open stream gets an OpenAI error event and a waiting
/// request a 503, a stream that ends within the grace completes, and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_what_is_open_at_the_end_of_the_grace_period() {
    let m = mock();
    m.set_behavior(
        "long",
        Behavior {
            stream_chunks: 40,
            chunk_interval_ms: 100,
            ..Default::default()
        },
    );
    m.set_behavior(
        "short",
        Behavior {
            stream_chunks: 3,
            chunk_interval_ms: 40,
            ..Default::default()
        },
    );
    m.set_behavior(
        "slow",
        Behavior {
            latency_ms: 10_000,
            ..Default::default()
        },
    );
    let body = format!(
        "{}{}{}",
        key(&m, "long", "k"),
        key(&m, "short", "k"),
        key(&m, "slow", "k")
    );
    let mut llmux = Llmux::start_with(&body, "shutdown_grace_ms = 300", &[]);
    let c = client();

    let long = stream_request(&c, &llmux, "long").send().await.unwrap();
    assert_eq!(long.status(), 200);
    let slow_req = c
        .post(llmux.url("/v1/chat/completions"))
        .header("x-portkey-virtual-key", "slow")
        .json(&chat_body("gpt-4o"));
    let slow = tokio::spawn(async move { slow_req.send().await.unwrap() });
    until("slow request sent upstream", || {
        m.stats("slow").requests == 1
    })
    .await;
    let short = stream_request(&c, &llmux, "short").send().await.unwrap();
    assert_eq!(short.status(), 200);

    let t0 = Instant::now();
    llmux.signal("TERM");
    let exit = tokio::task::spawn_blocking(move || {
        let code = llmux.wait_exit(Duration::from_secs(5));
        (code, llmux)
    });

    let short = short.text().await.expect("short stream completes");
    assert!(short.trim_end().ends_with("data: [DONE]"), "{short}");

    let long = long.text().await.expect("long stream ends cleanly");
    let last = long.trim_end().lines().last().unwrap();
    let event: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(event["error"]["code"], "shutting_down", "{long}");
    assert_eq!(event["error"]["type"], "server_error");
    assert!(long.contains("\"content\""), "{long}");
    assert!(!long.contains("[DONE]"), "{long}");

    let slow = slow.await.unwrap();
    assert_eq!(slow.status(), 503);
    let err: Value = slow.json().await.unwrap();
    assert_eq!(err["error"]["code"], "shutting_down", "{err}");

    let (code, llmux) = exit.await.unwrap();
    let took = t0.elapsed();
    assert_eq!(code, Some(0), "{}", llmux.logs());
    // Grace (300 ms) plus actix's one-second drain poll, with room for a loaded machine.
    assert!(took < Duration::from_millis(2000), "exit took {took:?}");
    let logs = llmux.logs();
    assert!(logs.contains("shutdown grace period over"), "{logs}");
    // The cut stream is in the request log with a status.
    assert!(logs.contains("\"status\":503"), "{logs}");
}

/// Defect 15: a known path with the wrong method is an OpenAI-shaped 405 with `Allow`; an
/// unknown path stays 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_is_405_with_allow() {
    let m = mock();
    let llmux = Llmux::start(&key(&m, "vk", "k"));
    let c = client();
    for (method, path, allow) in [
        (reqwest::Method::GET, "/v1/chat/completions", "POST"),
        (reqwest::Method::PUT, "/v1/embeddings", "POST"),
        (reqwest::Method::DELETE, "/v1/completions", "POST"),
        (reqwest::Method::POST, "/v1/models", "GET"),
    ] {
        let resp = c
            .request(method.clone(), llmux.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "{method} {path}");
        assert_eq!(header(resp.headers(), "allow"), allow);
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["code"], "method_not_allowed", "{err}");
        assert_eq!(err["error"]["type"], "invalid_request_error");
    }
    let resp = c.get(llmux.url("/v1/nothing")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let models = c.get(llmux.url("/v1/models")).send().await.unwrap();
    assert_eq!(models.status(), 200);
}

/// A retired actor keeps serving the runtime that still holds it, and stops once the last such
/// runtime is gone (no leak, no cycle).
#[test]
fn retired_actor_stops_after_the_last_runtime_holding_it() {
    let text = |k: &str| {
        format!("[server]\nlisten = \"127.0.0.1:1\"\n\n[virtual_keys.vk]\nprovider = \"openai\"\napi_key = \"{k}\"\n")
    };
    let parse = |k: &str| Config::parse(&text(k), Path::new("test.toml"), &|_| None).unwrap();
    actix::System::new().block_on(async {
        let (supervisor, cur, _) = Supervisor::start(parse("sk-a"), None).unwrap();
        let old = current(&cur);
        let addr = old.targets[0].addr.clone();
        let report = supervisor
            .send(Reload(parse("sk-b")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(report.retired, ["vk"]);
        // Anything the reload told the old actor has been handled once it answers this (its
        // mailbox is in order); the old code had retired it by then.
        let _ = addr.send(GetStatus).await;
        // The old runtime still gets permits from its actor.
        let permit = old.targets[0].acquire(1).await.expect("old actor serves");
        assert!(addr.connected());
        drop(old);
        drop(permit);
        let t0 = Instant::now();
        while addr.connected() {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "retired actor never stopped"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The kept runtime's actor is untouched.
        assert!(current(&cur).targets[0].addr.connected());
    });
}
