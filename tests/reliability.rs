//! Reliability and security against real mock providers: gateway auth, local rate limits,
//! cooldowns and circuit breaking seen from the provider's side, and a chaos run.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_auth_bearer_and_portkey_header() {
    let m = mock();
    // sha256("key-b-plain")
    let hash: String = {
        use std::process::Command;
        let out = Command::new("sh")
            .arg("-c")
            .arg("printf %s key-b-plain | sha256sum")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    let cfg = format!(
        r#"
[auth]
keys = [ {{ name = "app-a", key_env = "LLMUX_KEY_APP_A" }}, {{ name = "app-b", sha256 = "{hash}" }} ]

[virtual_keys.openai-main]
provider = "openai"
base_url = "{}/v1"
api_key = "sk-provider-key-000000"

[configs.main]
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "openai-main" }} ]
"#,
        m.url("openai-main")
    );
    let llmux = Llmux::start_with(
        &cfg,
        "default_config = \"main\"",
        &[("LLMUX_KEY_APP_A", "key-a-plain")],
    );
    let c = client();
    let url = llmux.url("/v1/chat/completions");
    let send = |auth: Option<(&'static str, String)>| {
        let mut r = c.post(&url).json(&chat_body("gpt-4o"));
        if let Some((k, v)) = auth {
            r = r.header(k, v);
        }
        r.send()
    };
    for (what, auth) in [
        ("missing", None),
        ("wrong", Some(("authorization", "Bearer nope".to_owned()))),
        (
            "provider key is not a gateway key",
            Some(("authorization", "Bearer sk-provider-key-000000".to_owned())),
        ),
        (
            "prefix of a real key",
            Some(("x-portkey-api-key", "key-a-plai".to_owned())),
        ),
    ] {
        let r = send(auth).await.unwrap();
        assert_eq!(r.status(), 401, "{what}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "authentication_error", "{what}");
    }
    assert_eq!(
        m.stats("openai-main").requests,
        0,
        "rejected requests never reach a provider"
    );
    for auth in [
        ("authorization", "Bearer key-a-plain".to_owned()),
        ("x-portkey-api-key", "key-a-plain".to_owned()),
        ("authorization", "Bearer key-b-plain".to_owned()),
    ] {
        let r = send(Some(auth.clone())).await.unwrap();
        assert_eq!(r.status(), 200, "{auth:?}");
    }
    // The client's key is never forwarded: the provider sees its own key only.
    assert_eq!(
        m.stats("openai-main").last_headers["authorization"],
        "Bearer sk-provider-key-000000"
    );
    let models = c.get(llmux.url("/v1/models")).send().await.unwrap();
    assert_eq!(models.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_budgets_skip_targets_and_answer_429_with_retry_after() {
    let m = mock();
    let cfg = format!(
        r#"
[virtual_keys.small]
provider = "openai"
base_url = "{}/v1"
rpm = 5
rpm_burst = 5

[virtual_keys.big]
provider = "openai"
base_url = "{}/v1"

[configs.split]
strategy = {{ mode = "loadbalance" }}
targets = [ {{ virtual_key = "small", weight = 9 }}, {{ virtual_key = "big", weight = 1 }} ]

[configs.only-small]
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "small" }} ]
"#,
        m.url("small"),
        m.url("big")
    );
    let llmux = Llmux::start(&cfg);
    let c = client();
    let url = llmux.url("/v1/chat/completions");
    let results = fire(&c, &url, 60, 4, &[("x-portkey-config", "split")]).await;
    assert!(
        results.iter().all(|r| r.0 == 200),
        "a spent budget renormalizes onto the other target"
    );
    assert_eq!(m.stats("small").requests, 5, "never more than its rpm");
    assert_eq!(m.stats("big").requests, 55);
    // Nothing else can serve: 429 with Retry-After for when the budget frees up (12 s per request at 5 rpm).
    let r = c
        .post(&url)
        .header("x-portkey-config", "only-small")
        .json(&chat_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry_after: u64 = header(r.headers(), "retry-after").parse().unwrap();
    assert!((1..=13).contains(&retry_after), "retry-after {retry_after}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(m.stats("small").requests, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_target_gets_only_half_open_probes() {
    let m = mock();
    let cfg = format!(
        r#"
[virtual_keys.dead]
provider = "openai"
base_url = "{}/v1"
failure_threshold = 3
cooldown_ms = 400

[virtual_keys.alive]
provider = "openai"
base_url = "{}/v1"

[configs.main]
strategy = {{ mode = "fallback" }}
targets = [ {{ virtual_key = "dead" }}, {{ virtual_key = "alive" }} ]
"#,
        m.url("dead"),
        m.url("alive")
    );
    let llmux = Llmux::start_with(&cfg, "default_config = \"main\"", &[]);
    m.set_behavior(
        "dead",
        Behavior {
            always_status: Some(503),
            ..Default::default()
        },
    );
    let c = client();
    let url = llmux.url("/v1/chat/completions");
    let t0 = Instant::now();
    let mut n = 0;
    while t0.elapsed() < Duration::from_millis(2000) {
        let results = fire(&c, &url, 8, 8, &[]).await;
        assert!(results.iter().all(|r| r.0 == 200));
        n += 8;
    }
    // 3 failures open the circuit; then one probe per cooldown (400, 800 ms…) at most.
    let hits = m.stats("dead").requests;
    assert!(n > 100, "{n} requests sent");
    assert!(hits <= 3 + 8 + 4, "dead target got {hits} of {n} requests");
    let t: Value = get_json(&c, &llmux.admin_url("/admin/targets/dead")).await;
    assert_eq!(t["state"], "unhealthy", "{t}");
}

fn rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_every_request_answered_once() {
    let m = MockServer::start_with_workers("127.0.0.1:0", Behavior::default(), 2).unwrap();
    let mut cfg = String::new();
    for name in ["flaky-status", "flaky-reset", "flaky-slow", "healthy"] {
        cfg += &format!("[virtual_keys.{name}]\nprovider = \"openai\"\nbase_url = \"{}/v1\"\nmax_retry_after_ms = 1000\n\n", m.url(name));
    }
    cfg += r#"
[configs.main]
strategy = { mode = "fallback" }
targets = [
  { strategy = { mode = "loadbalance" }, request_timeout = 300, targets = [
      { virtual_key = "flaky-status" },
      { virtual_key = "flaky-reset" },
      { virtual_key = "flaky-slow" },
  ] },
  { virtual_key = "healthy" },
]
"#;
    // 30 % failures of every kind: 429 with Retry-After, 500/503, connection resets, requests
    // that never answer (timeouts), plus slow answers.
    m.set_behavior(
        "flaky-status",
        Behavior {
            fail_rate: 0.3,
            fail_statuses: vec![429, 500, 503],
            retry_after_s: Some(1),
            ..Default::default()
        },
    );
    m.set_behavior(
        "flaky-reset",
        Behavior {
            fail_rate: 0.3,
            fail_status: 500,
            fail_mode: FailMode::Reset,
            ..Default::default()
        },
    );
    m.set_behavior(
        "flaky-slow",
        Behavior {
            fail_rate: 0.3,
            fail_status: 500,
            fail_mode: FailMode::Timeout,
            latency_ms: 20,
            ..Default::default()
        },
    );
    let llmux = Llmux::start_with(&cfg, "default_config = \"main\"", &[("RUST_LOG", "warn")]);
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let url = llmux.url("/v1/chat/completions");
    let body = chat_body("gpt-4o");
    let run = |n: usize| {
        let (c, url, body) = (c.clone(), url.clone(), body.clone());
        async move {
            futures_util::stream::iter(0..n)
                .map(|_| {
                    let req = c.post(&url).json(&body);
                    async move {
                        match req.send().await {
                            Ok(r) => {
                                let s = r.status().as_u16();
                                // Exactly one complete response per request.
                                let ok = r.bytes().await.is_ok();
                                if ok {
                                    s
                                } else {
                                    0
                                }
                            }
                            Err(_) => 0,
                        }
                    }
                })
                .buffer_unordered(200)
                .collect::<Vec<u16>>()
                .await
        }
    };
    let t0 = Instant::now();
    let warm = run(2000).await;
    let rss_warm = rss_kb(llmux.pid());
    let results = run(20_000).await;
    let elapsed = t0.elapsed();
    let mut by_status: HashMap<u16, usize> = HashMap::new();
    for s in warm.iter().chain(&results) {
        *by_status.entry(*s).or_default() += 1;
    }
    let ok = by_status.get(&200).copied().unwrap_or(0);
    let total = warm.len() + results.len();
    assert_eq!(total, 22_000);
    assert!(
        ok as f64 / total as f64 >= 0.999,
        "success {ok}/{total}: {by_status:?}"
    );
    assert!(elapsed < Duration::from_secs(120), "took {elapsed:?}");
    // No panic, still serving, memory flat.
    let logs = llmux.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    let r = c.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let rss_after = rss_kb(llmux.pid());
    assert!(
        rss_after < rss_warm + 32 * 1024,
        "RSS grew from {rss_warm} kB to {rss_after} kB"
    );
    // The failing targets were cooled down / opened, as the admin endpoint shows.
    let t: Value = get_json(&c, &llmux.admin_url("/admin/targets")).await;
    let flaky: Vec<&Value> = t["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"].as_str().unwrap().starts_with("flaky"))
        .collect();
    assert!(
        flaky.iter().all(|t| t["failures"].as_u64().unwrap() > 0),
        "{t}"
    );
    assert!(
        flaky
            .iter()
            .any(|t| t["by_status"]["429"].as_u64().unwrap_or(0) > 0),
        "{t}"
    );
    eprintln!(
        "chaos: {total} requests in {elapsed:?}, {by_status:?}, rss {rss_warm} -> {rss_after} kB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_checks_mark_down_and_bring_back_without_user_requests() {
    let m = mock();
    let cfg = format!(
        r#"
[virtual_keys.sick]
provider = "openai"
base_url = "{}/v1"
health_check_interval_ms = 100
failure_threshold = 2
cooldown_ms = 60000

[virtual_keys.gone]
provider = "azure-openai"
base_url = "http://127.0.0.1:{}"
deployment = "d"
health_check_interval_ms = 100
failure_threshold = 2
"#,
        m.url("sick"),
        free_port()
    );
    m.set_behavior(
        "sick",
        Behavior {
            always_status: Some(503),
            ..Default::default()
        },
    );
    let llmux = Llmux::start(&cfg);
    let c = client();
    let state = |name: &'static str| {
        let c = c.clone();
        let url = llmux.admin_url(&format!("/admin/targets/{name}"));
        async move {
            c.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let wait_for = |name: &'static str, want: &'static str| async move {
        let t0 = Instant::now();
        loop {
            let t = state(name).await;
            if t["state"] == want {
                return t;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "{name} never became {want}: {t}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let t = wait_for("sick", "unhealthy").await;
    assert_eq!(t["requests"], 0, "no user request was needed: {t}");
    wait_for("gone", "unhealthy").await;
    assert!(
        m.stats("sick")
            .by_endpoint
            .get("models")
            .copied()
            .unwrap_or(0)
            >= 2
    );
    // Recovery comes from the checks too, long before the 60 s cooldown would let a probe through.
    m.set_behavior("sick", Behavior::default());
    let t = wait_for("sick", "healthy").await;
    assert_eq!(t["requests"], 0, "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_wait_for_budget_instead_of_429() {
    let m = mock();
    let cfg = format!(
        "[virtual_keys.tiny]\nprovider = \"openai\"\nbase_url = \"{}/v1\"\nrpm = 120\nrpm_burst = 120\n\n[configs.main]\nstrategy = {{ mode = \"single\" }}\ntargets = [ {{ virtual_key = \"tiny\" }} ]\n",
        m.url("tiny")
    );
    let llmux = Llmux::start_with(
        &cfg,
        "default_config = \"main\"\nmax_queue_wait_ms = 3000",
        &[],
    );
    let c = client();
    let url = llmux.url("/v1/chat/completions");
    // Spend the burst (120), then a few more: each waits ~0.5 s for a cell instead of failing.
    let results = fire(&c, &url, 120, 16, &[]).await;
    assert!(results.iter().all(|r| r.0 == 200));
    let t0 = Instant::now();
    let results = fire(&c, &url, 3, 3, &[]).await;
    assert!(
        results.iter().all(|r| r.0 == 200),
        "{:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "they waited for budget: {:?}",
        t0.elapsed()
    );
    assert_eq!(m.stats("tiny").requests, 123);
}

#[test]
fn slow_clients_time_out() {
    use std::io::{Read, Write};
    let m = mock();
    let cfg = format!(
        "[virtual_keys.a]\nprovider = \"openai\"\nbase_url = \"{}/v1\"\n",
        m.url("a")
    );
    let llmux = Llmux::start_with(&cfg, "header_timeout_ms = 500\nbody_timeout_ms = 500", &[]);
    // Headers never finished.
    let mut s = std::net::TcpStream::connect(llmux.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let t0 = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "connection held {:?}",
        t0.elapsed()
    );
    // Headers sent, body trickles: 408 in OpenAI's shape.
    let mut s = std::net::TcpStream::connect(llmux.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"mo").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"error\""), "{text}");
}
