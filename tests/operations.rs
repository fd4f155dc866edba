//! Operating a real llmux process: SIGHUP reload under load, admin health and request log,
//! metrics, graceful shutdown, sd_notify, the memory policy, and secrets never leaking into any
//! output.

mod common;

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn two_targets(m: &MockServer, w_openai: f64, w_azure: f64) -> String {
    format!(
        r#"
[virtual_keys.openai-main]
provider = "openai"
base_url = "{o}/v1"
rpm = 6000
rpm_burst = 6000

[virtual_keys.azure-east]
provider = "azure-openai"
base_url = "{a}"
deployment = "gpt-4o"

[configs.main]
strategy = {{ mode = "loadbalance" }}
targets = [
  {{ virtual_key = "openai-main", weight = {w_openai} }},
  {{ virtual_key = "azure-east", weight = {w_azure} }},
]

[pricing."gpt-4o"]
input_per_mtok = 2.5
output_per_mtok = 10.0
"#,
        o = m.url("openai-main"),
        a = m.url("azure-east"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reload_under_load_loses_nothing() {
    let m = mock();
    m.set_behavior(
        "*",
        Behavior {
            latency_ms: 5,
            ..Default::default()
        },
    );
    let llmux = Llmux::start_with(&two_targets(&m, 1.0, 0.0), "default_config = \"main\"", &[]);
    let c = client();
    let url = llmux.url("/v1/chat/completions");

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (c, url, stop, sent) = (c.clone(), url.clone(), stop.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut served_by = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let r = c.post(&url).json(&chat_body("gpt-4o")).send().await;
                sent.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(r) if r.status() == 200 => {
                        served_by.push(header(r.headers(), "x-llmux-virtual-key").to_owned())
                    }
                    Ok(r) => failures.push(format!("status {}", r.status())),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            (failures, served_by)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before: Value = get_json(&c, &llmux.admin_url("/admin/targets/openai-main")).await;
    let snap = Instant::now();
    let used_before = 6000 - before["rate_limit"]["rpm_remaining"].as_u64().unwrap();
    assert!(used_before > 100, "{before}");

    // Change only the weights: the target definitions are unchanged, so their actors (and
    // budgets) survive the reload.
    llmux.rewrite_config(&two_targets(&m, 0.0, 1.0));
    llmux.signal("HUP");
    let t0 = Instant::now();
    loop {
        let r = get_json(&c, &llmux.admin_url("/admin/reload")).await;
        if r["generation"] == 2 {
            assert_eq!(r["ok"], true, "{r}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "reload not applied: {r}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after: Value = get_json(&c, &llmux.admin_url("/admin/targets/openai-main")).await;
    // A fresh limiter would show the whole budget; the kept one shows what was used, less what
    // refilled (100/s) since the first snapshot.
    let used_after = 6000 - after["rate_limit"]["rpm_remaining"].as_u64().unwrap();
    let refill = (snap.elapsed().as_secs_f64() * 100.0) as u64 + 20;
    assert!(
        used_after + refill >= used_before && used_after > 0,
        "budget kept across reload: {used_before} -> {used_after}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        after["requests"].as_u64().unwrap() >= before["requests"].as_u64().unwrap(),
        "same actor, same counters"
    );

    // An invalid file changes nothing and is reported with its path.
    llmux.rewrite_config(&two_targets(&m, 0.0, 1.0).replace(
        "virtual_key = \"azure-east\"",
        "virtual_key = \"azure-west\"",
    ));
    llmux.signal("HUP");
    let t0 = Instant::now();
    let r = loop {
        let r = get_json(&c, &llmux.admin_url("/admin/reload")).await;
        if r["failures"] == 1 {
            break r;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "reload failure not reported: {r}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(r["ok"], false);
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("configs.main.targets[1].virtual_key"),
        "{r}"
    );
    assert_eq!(r["generation"], 2);
    tokio::time::sleep(Duration::from_millis(300)).await;

    stop.store(true, Ordering::Relaxed);
    let mut late = Vec::new();
    for t in tasks {
        let (failures, served_by) = t.await.unwrap();
        assert!(failures.is_empty(), "failed during reload: {failures:?}");
        late.extend(served_by.into_iter().rev().take(10));
    }
    assert!(sent.load(Ordering::Relaxed) > 100);
    // The new weights took effect: the last requests all went to Azure.
    assert!(late.iter().all(|k| k == "azure-east"), "{late:?}");
    assert!(llmux.logs().contains("config reload rejected"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_shows_unhealthy_and_recovery_and_trace_lookup() {
    let m = mock();
    let cfg = format!(
        r#"
[virtual_keys.flaky]
provider = "openai"
base_url = "{}/v1"
failure_threshold = 2
cooldown_ms = 300

[virtual_keys.steady]
provider = "openai"
base_url = "{}/v1"

[configs.main]
strategy = {{ mode = "fallback" }}
targets = [ {{ virtual_key = "flaky" }}, {{ virtual_key = "steady", override_params = {{ model = "gpt-4o" }} }} ]

[pricing."gpt-4o"]
input_per_mtok = 2.5
output_per_mtok = 10.0
"#,
        m.url("flaky"),
        m.url("steady")
    );
    let llmux = Llmux::start_with(&cfg, "default_config = \"main\"", &[]);
    let c = client();
    let url = llmux.url("/v1/chat/completions");
    m.set_behavior(
        "flaky",
        Behavior {
            always_status: Some(502),
            ..Default::default()
        },
    );
    for i in 0..3 {
        let r = c
            .post(&url)
            .header("x-portkey-trace-id", format!("t{i}"))
            .json(&chat_body("gpt-4o-mini"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let t: Value = get_json(&c, &llmux.admin_url("/admin/targets/flaky")).await;
    assert_eq!(t["state"], "unhealthy", "{t}");
    assert!(t["consecutive_failures"].as_u64().unwrap() >= 2);
    assert!(
        t["last_error"].as_str().unwrap().contains("502")
            || t["by_status"]["502"].as_u64().unwrap() >= 2,
        "{t}"
    );
    assert!(t["retry_in_ms"].as_u64().is_some());
    let all: Value = get_json(&c, &llmux.admin_url("/admin/targets")).await;
    assert_eq!(all["targets"].as_array().unwrap().len(), 2);

    // Trace lookup: the full attempt path, model asked and used, tokens and cost.
    let log: Value = get_json(&c, &llmux.admin_url("/admin/requests?trace_id=t0")).await;
    let e = &log["requests"][0];
    assert_eq!(e["trace_id"], "t0");
    assert_eq!(e["config"], "main");
    assert_eq!(e["attempts"][0]["virtual_key"], "flaky");
    assert_eq!(e["attempts"][0]["status"], 502);
    assert_eq!(e["attempts"][0]["path"], "config.targets[0]");
    assert_eq!(e["attempts"][1]["virtual_key"], "steady");
    assert_eq!(e["served_by"], "config.targets[1]");
    assert_eq!(e["model_requested"], "gpt-4o-mini");
    assert_eq!(e["model_used"], "gpt-4o");
    assert!(
        e["prompt_tokens"].as_u64().unwrap() > 0 && e["completion_tokens"].as_u64().unwrap() > 0
    );
    assert!(e["cost_usd"].as_f64().unwrap() > 0.0, "{e}");

    // Recovery: the mock heals; after the cooldown one probe goes through and succeeds.
    m.set_behavior("flaky", Behavior::default());
    tokio::time::sleep(Duration::from_millis(700)).await;
    let t0 = Instant::now();
    loop {
        let r = c.post(&url).json(&chat_body("x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let t: Value = get_json(&c, &llmux.admin_url("/admin/targets/flaky")).await;
        if t["state"] == "healthy" {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "never recovered: {t}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Metrics in Prometheus text format.
    let metrics = get_text(&c, &llmux.admin_url("/metrics")).await;
    for name in [
        "llmux_requests_total",
        "llmux_attempts_total",
        "llmux_request_duration_seconds",
        "llmux_target_state",
        "llmux_in_flight_requests",
        "llmux_fallbacks_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    let ready = c.get(llmux.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_then_exits_zero() {
    let m = mock();
    m.set_behavior(
        "*",
        Behavior {
            latency_ms: 1500,
            ..Default::default()
        },
    );
    let mut llmux = Llmux::start_with(
        &two_targets(&m, 1.0, 0.0),
        "default_config = \"main\"\nshutdown_grace_ms = 10000",
        &[],
    );
    let c = client();
    let url = llmux.url("/v1/chat/completions");
    let pending: Vec<_> = (0..4)
        .map(|_| {
            let req = c.post(&url).json(&chat_body("gpt-4o"));
            tokio::spawn(async move { req.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    // A stream in flight too: it must finish with its terminator, not be cut.
    let stream_req = c
        .post(&url)
        .header("x-portkey-virtual-key", "azure-east")
        .json(&serde_json::json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]}));
    m.set_behavior(
        "azure-east",
        Behavior {
            stream_chunks: 8,
            chunk_interval_ms: 250,
            ..Default::default()
        },
    );
    let stream =
        tokio::spawn(async move { stream_req.send().await.unwrap().text().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    llmux.signal("TERM");
    for p in pending {
        assert_eq!(p.await.unwrap().expect("in-flight request answered"), 200);
    }
    let body = stream.await.unwrap();
    assert!(
        body.trim_end().ends_with("data: [DONE]"),
        "stream cut by shutdown: {body}"
    );
    // New connections are refused while draining.
    assert!(c
        .post(&url)
        .json(&chat_body("gpt-4o"))
        .send()
        .await
        .is_err());
    let code = tokio::task::spawn_blocking(move || llmux.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
}

#[test]
fn sd_notify_ready_reloading_stopping() {
    let m = mock();
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let llmux = Llmux::start_with(
        &two_targets(&m, 1.0, 1.0),
        "",
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())],
    );
    let mut buf = [0u8; 512];
    let mut recv = || {
        let n = sock.recv(&mut buf).expect("sd_notify message");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert!(recv().contains("READY=1"));
    llmux.signal("HUP");
    assert!(recv().contains("RELOADING=1"));
    assert!(recv().contains("READY=1"));
    llmux.signal("TERM");
    assert!(recv().contains("STOPPING=1"));
}

/// The memory policy (src/memory.rs) is applied to the daemon: transparent huge pages off for
/// its process, which the kernel reports in /proc (kernels without the field are not checked).
#[test]
fn daemon_runs_without_transparent_huge_pages() {
    let m = mock();
    let llmux = Llmux::start(&two_targets(&m, 1.0, 1.0));
    let status = std::fs::read_to_string(format!("/proc/{}/status", llmux.pid())).unwrap();
    match status.lines().find_map(|l| l.strip_prefix("THP_enabled:")) {
        Some(v) => assert_eq!(v.trim(), "0", "THP still enabled for llmux:\n{status}"),
        None => eprintln!("this kernel does not report THP_enabled; not checked"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_keys_never_leak() {
    const OPENAI: &str = "sk-llmuxtest-SECRET-0123456789abcdef";
    const ANTHROPIC: &str = "anthropic-SECRET-fedcba9876543210";
    const ADMIN: &str = "admin-token-SECRET-42";
    let m = mock();
    let cfg = format!(
        r#"
[virtual_keys.openai-main]
provider = "openai"
base_url = "{}/v1"
api_key_env = "LLMUX_TEST_OPENAI_KEY"

[virtual_keys.claude]
provider = "anthropic"
base_url = "{}"
api_key_file = "anthropic.key"

[configs.main]
strategy = {{ mode = "fallback" }}
targets = [ {{ virtual_key = "openai-main" }}, {{ virtual_key = "claude" }} ]
"#,
        m.url("openai-main"),
        m.url("claude")
    );
    // The key file sits next to the config.
    let llmux = {
        Llmux::start_with_files(
            &cfg,
            "default_config = \"main\"",
            &[
                ("LLMUX_TEST_OPENAI_KEY", OPENAI),
                ("LLMUX_ADMIN_TOKEN", ADMIN),
            ],
            &[("anthropic.key", ANTHROPIC)],
            "token_env = \"LLMUX_ADMIN_TOKEN\"",
        )
    };
    let c = client();
    let url = llmux.url("/v1/chat/completions");
    let mut outputs = Vec::new();
    // Success, upstream auth errors, all-failed errors.
    outputs.push(
        c.post(&url)
            .json(&chat_body("gpt-4o"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    m.set_behavior(
        "openai-main",
        Behavior {
            always_status: Some(401),
            ..Default::default()
        },
    );
    m.set_behavior(
        "claude",
        Behavior {
            always_status: Some(500),
            ..Default::default()
        },
    );
    outputs.push(
        c.post(&url)
            .json(&chat_body("gpt-4o"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    // The keys did reach the provider, in the right headers.
    assert_eq!(
        m.stats("openai-main").last_headers["authorization"],
        format!("Bearer {OPENAI}")
    );
    assert_eq!(m.stats("claude").last_headers["x-api-key"], ANTHROPIC);
    // Admin output, with and without the admin token.
    let denied = c
        .get(llmux.admin_url("/admin/config"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    for path in [
        "/admin/config",
        "/admin/targets",
        "/admin/requests",
        "/metrics",
        "/admin/reload",
    ] {
        let r = c
            .get(llmux.admin_url(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        outputs.push(r.text().await.unwrap());
    }
    assert!(
        outputs[2].contains("[redacted]"),
        "config shows keys as redacted: {}",
        outputs[2]
    );
    outputs.push(llmux.logs());
    for (i, out) in outputs.iter().enumerate() {
        for secret in [OPENAI, ANTHROPIC, ADMIN] {
            assert!(!out.contains(secret), "secret leaked in output {i}: {out}");
        }
    }
}

/// `x-portkey-metadata` is recorded on the request log and filterable there; an invalid header
/// is a 400 that names it, and nothing is sent upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_metadata_is_logged_filterable_and_validated() {
    let m = mock();
    let llmux = Llmux::start_with(&two_targets(&m, 1.0, 0.0), "default_config = \"main\"", &[]);
    let c = client();
    let url = llmux.url("/v1/chat/completions");
    for (i, meta) in [
        r#"{"plan":"paid","_user":"ann"}"#,
        r#"{"plan":"free","_user":"bob"}"#,
        r#"{"plan":"paid","_user":"cid"}"#,
    ]
    .iter()
    .enumerate()
    {
        let r = c
            .post(&url)
            .header("x-portkey-trace-id", format!("meta{i}"))
            .header("x-portkey-metadata", *meta)
            .json(&chat_body("gpt-4o-mini"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let traces = |v: &Value| -> Vec<String> {
        v["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["trace_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let paid: Value = get_json(&c, &llmux.admin_url("/admin/requests?metadata.plan=paid")).await;
    assert_eq!(traces(&paid), ["meta2", "meta0"], "{paid}");
    assert_eq!(paid["requests"][0]["metadata"]["_user"], "cid");
    let both: Value = get_json(
        &c,
        &llmux.admin_url("/admin/requests?metadata.plan=paid&metadata._user=ann"),
    )
    .await;
    assert_eq!(traces(&both), ["meta0"]);
    let none: Value = get_json(&c, &llmux.admin_url("/admin/requests?metadata.plan=gold")).await;
    assert_eq!(traces(&none), Vec::<String>::new());

    let hits = m.stats("openai-main").requests;
    for bad in [
        r#"{"plan":1}"#,
        "[]",
        "{",
        &format!("{{\"k\":\"{}\"}}", "v".repeat(600)),
    ] {
        let r = c
            .post(&url)
            .header("x-portkey-metadata", bad)
            .json(&chat_body("gpt-4o-mini"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_metadata", "{v}");
        assert_eq!(v["error"]["param"], "x-portkey-metadata");
    }
    assert_eq!(
        m.stats("openai-main").requests,
        hits,
        "an invalid request reached the provider"
    );
}

/// A stand-in egress proxy on loopback: it answers every request itself with a chat completion,
/// and records each request line with whether the target's key came along.
/// What [`fake_proxy`] saw: each request line, and whether it carried the key.
type Seen = Arc<std::sync::Mutex<Vec<(String, bool)>>>;

fn fake_proxy(key: &'static str) -> (String, Seen) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(16) {
            let Ok(conn) = conn else { continue };
            let record = record.clone();
            std::thread::spawn(move || {
                let mut out = conn.try_clone().unwrap();
                let mut reader = BufReader::new(conn);
                // One request after another on the connection, until the client closes it.
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let (mut length, mut keyed) = (0, false);
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        let (name, value) = h.split_once(':').unwrap();
                        match name.to_ascii_lowercase().as_str() {
                            "content-length" => length = value.trim().parse().unwrap(),
                            "authorization" => keyed = value.trim() == format!("Bearer {key}"),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    record
                        .lock()
                        .unwrap()
                        .push((line.trim_end().to_owned(), keyed));
                    let answer = r#"{"id":"chatcmpl-proxy","object":"chat.completion","created":0,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"via proxy"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        answer.len()
                    );
                    out.write_all(head.as_bytes()).unwrap();
                    out.write_all(answer.as_bytes()).unwrap();
                }
            });
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_targets_go_through_an_egress_proxy_named_in_the_environment() {
    const KEY: &str = "sk-llmuxtest-proxy-0123";
    // Nothing listens at the target's address: only the proxy can answer for it.
    let target = format!("http://127.0.0.1:{}", free_port());
    let (proxy, seen) = fake_proxy(KEY);
    let cfg = format!(
        r#"
[virtual_keys.behind-proxy]
provider = "openai"
base_url = "{target}/v1"
api_key_env = "LLMUX_TEST_PROXY_KEY"

[configs.main]
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "behind-proxy" }} ]
"#
    );
    let env = [
        ("HTTP_PROXY", proxy.as_str()),
        ("http_proxy", proxy.as_str()),
        ("NO_PROXY", ""),
        ("no_proxy", ""),
        ("LLMUX_TEST_PROXY_KEY", KEY),
    ];
    let llmux = Llmux::start_with(&cfg, "default_config = \"main\"", &env);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for _ in 0..3 {
        let r = client
            .post(llmux.url("/v1/chat/completions"))
            .json(&serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", llmux.logs());
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "via proxy");
    }
    let seen = seen.lock().unwrap();
    let want = format!("POST {target}/v1/chat/completions HTTP/1.1");
    assert_eq!(
        *seen,
        vec![(want, true); 3],
        "absolute-form request lines, key included"
    );
}
