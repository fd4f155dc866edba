//! Scoped gateway keys on a real daemon: which configs, virtual keys and inline configs a key
//! may reach (403 otherwise, whether the target exists or not, and errors never list the
//! accounts a gateway has), and the key's metadata on the request log.

mod common;

use common::*;
use serde_json::{json, Value};

fn config(m: &MockServer) -> String {
    format!(
        r#"{keys}
[configs.search]
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "openai-main" }} ]

[configs.billing]
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "azure-east" }} ]

[auth]
keys = [
  {{ name = "admin-team", key_env = "LLMUX_KEY_ALL" }},
  {{ name = "search-team", key_env = "LLMUX_KEY_SEARCH", configs = ["search"], virtual_keys = ["openai-main"], allow_inline_configs = true, metadata = {{ team = "search" }} }},
  {{ name = "locked", key_env = "LLMUX_KEY_LOCKED", configs = ["search"], allow_inline_configs = false }},
]
"#,
        keys = provider_keys(m)
    )
}

async fn post(
    c: &reqwest::Client,
    llmux: &Llmux,
    key: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut r = c
        .post(llmux.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat_body("gpt-4o-mini"));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_keys_reach_only_their_configs_and_accounts() {
    let m = mock();
    let llmux = Llmux::start_with(
        &config(&m),
        "default_config = \"billing\"",
        &[
            ("LLMUX_KEY_ALL", "key-all-0000"),
            ("LLMUX_KEY_SEARCH", "key-search-0000"),
            ("LLMUX_KEY_LOCKED", "key-locked-0000"),
        ],
    );
    let c = client();
    let (all, search, locked) = ("key-all-0000", "key-search-0000", "key-locked-0000");
    let cfg = |id: &'static str| ("x-portkey-config", id);
    let vk = |name: &'static str| ("x-portkey-virtual-key", name);

    // The unscoped key reaches everything, as without scopes.
    for h in [cfg("search"), cfg("billing"), vk("anthropic-main")] {
        assert_eq!(post(&c, &llmux, all, &[h]).await.0, 200, "{h:?}");
    }
    assert_eq!(
        post(&c, &llmux, all, &[]).await.0,
        200,
        "the default config"
    );

    // The scoped key: its config and account only.
    let calls = m.stats("azure-east").requests;
    assert_eq!(post(&c, &llmux, search, &[cfg("search")]).await.0, 200);
    for (h, names) in [
        (cfg("billing"), "config `billing`"),
        (vk("azure-east"), "virtual key `azure-east`"),
        // Unknown names get the same 403: a scoped key cannot probe what exists.
        (cfg("no-such"), "config `no-such`"),
        (vk("no-such"), "virtual key `no-such`"),
    ] {
        let (s, v) = post(&c, &llmux, search, &[h]).await;
        assert_eq!(s, 403, "{h:?}: {v}");
        assert_eq!(v["error"]["type"], "permission_error");
        assert_eq!(v["error"]["code"], "forbidden");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(names), "{msg}");
        for other in ["anthropic-main", "billing"] {
            if !names.contains(other) {
                assert!(
                    !msg.contains(other),
                    "lists another account or config: {msg}"
                );
            }
        }
    }
    let (s, v) = post(&c, &llmux, search, &[]).await;
    assert_eq!(s, 403, "the default config is outside the scope: {v}");
    assert_eq!(
        m.stats("azure-east").requests,
        calls,
        "nothing outside the scope was called"
    );

    // Inline configs: allowed, but only over the key's accounts.
    let inline_ok =
        json!({"strategy": {"mode": "single"}, "targets": [{"virtual_key": "openai-main"}]})
            .to_string();
    let inline_bad = json!({"strategy": {"mode": "fallback"}, "targets": [
        {"virtual_key": "openai-main"}, {"virtual_key": "anthropic-main"}]})
    .to_string();
    assert_eq!(
        post(&c, &llmux, search, &[("x-portkey-config", &inline_ok)])
            .await
            .0,
        200
    );
    let (s, v) = post(&c, &llmux, search, &[("x-portkey-config", &inline_bad)]).await;
    assert_eq!(s, 403, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("anthropic-main"));
    // A key without inline configs.
    let (s, v) = post(&c, &llmux, locked, &[("x-portkey-config", &inline_ok)]).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(post(&c, &llmux, locked, &[cfg("search")]).await.0, 200);

    // An inline config naming an unknown account does not list the accounts that exist.
    let unknown =
        json!({"strategy": {"mode": "single"}, "targets": [{"virtual_key": "nope"}]}).to_string();
    let (s, v) = post(&c, &llmux, all, &[("x-portkey-config", &unknown)]).await;
    assert_eq!(s, 400, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    for name in ["openai-main", "azure-east", "anthropic-main"] {
        assert!(!msg.contains(name), "lists {name}: {msg}");
    }

    // The key's metadata lands on the request log, over the client's own `team`.
    let (s, _) = post(
        &c,
        &llmux,
        search,
        &[
            cfg("search"),
            ("x-portkey-trace-id", "tenant-1"),
            ("x-portkey-metadata", r#"{"team":"spoofed","user":"ann"}"#),
        ],
    )
    .await;
    assert_eq!(s, 200);
    let log = get_json(&c, &llmux.admin_url("/admin/requests?metadata.team=search")).await;
    let entry = &log["requests"][0];
    assert_eq!(entry["trace_id"], "tenant-1", "{log}");
    assert_eq!(entry["metadata"]["user"], "ann");
}

/// Per-key limits, checked before any provider call: concurrency (held through a stream), a
/// request rate with `Retry-After`, and a spend budget (429 `insufficient_quota` until the
/// period ends). A key without limits is not slowed by another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_limits_refuse_before_any_provider_call() {
    let m = mock();
    let cfg = format!(
        r#"{keys}
[configs.main]
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "openai-main" }} ]

[pricing."gpt-4o-mini"]
input_per_mtok = 1000.0
output_per_mtok = 1000.0

[auth]
keys = [
  {{ name = "free", key_env = "K_FREE" }},
  {{ name = "narrow", key_env = "K_NARROW", max_concurrent = 2 }},
  {{ name = "slow", key_env = "K_SLOW", rpm = 20 }},
  {{ name = "cheap", key_env = "K_CHEAP", budget_usd = {{ daily = 0.005, monthly = 5 }} }},
]
"#,
        keys = provider_keys(&m)
    );
    let llmux = Llmux::start_with(
        &cfg,
        "default_config = \"main\"",
        &[
            ("K_FREE", "k-free-000"),
            ("K_NARROW", "k-narrow-000"),
            ("K_SLOW", "k-slow-000"),
            ("K_CHEAP", "k-cheap-000"),
        ],
    );
    let c = client();
    let send = |key: &'static str, body: Value| {
        let c = c.clone();
        let url = llmux.url("/v1/chat/completions");
        async move {
            let r = c
                .post(&url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            (
                status,
                retry,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)),
            )
        }
    };

    // Concurrency: two slow requests in flight, the third refused at once.
    m.set_behavior(
        "openai-main",
        Behavior {
            latency_ms: 600,
            ..Default::default()
        },
    );
    let body = chat_body("gpt-4o-mini");
    let (a, b) = (
        send("k-narrow-000", body.clone()),
        send("k-narrow-000", body.clone()),
    );
    let third = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        send("k-narrow-000", body.clone()).await
    };
    let free = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        send("k-free-000", body.clone()).await
    };
    let (a, b, third, free) = tokio::join!(a, b, third, free);
    assert_eq!((a.0, b.0, free.0), (200, 200, 200));
    assert_eq!(third.0, 429, "{}", third.2);
    assert_eq!(third.2["error"]["code"], "concurrency_limit_exceeded");
    // Slots come back when the answers end.
    assert_eq!(send("k-narrow-000", body.clone()).await.0, 200);
    m.set_behavior("openai-main", Behavior::default());
    // A stream holds its slot until it ends.
    let mut s = body.clone();
    s["stream"] = json!(true);
    m.set_behavior(
        "openai-main",
        Behavior {
            chunk_interval_ms: 150,
            ..Default::default()
        },
    );
    let (s1, s2, refused) = tokio::join!(
        send("k-narrow-000", s.clone()),
        send("k-narrow-000", s.clone()),
        async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            send("k-narrow-000", body.clone()).await
        }
    );
    assert_eq!((s1.0, s2.0, refused.0), (200, 200, 429));
    m.set_behavior("openai-main", Behavior::default());

    // Rate: rpm 20 admits a burst of 2, then 429 with Retry-After.
    let calls = m.stats("openai-main").requests;
    assert_eq!(send("k-slow-000", body.clone()).await.0, 200);
    assert_eq!(send("k-slow-000", body.clone()).await.0, 200);
    let (st, retry, v) = send("k-slow-000", body.clone()).await;
    assert_eq!(st, 429, "{v}");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(
        m.stats("openai-main").requests,
        calls + 2,
        "refused before any provider call"
    );

    // Budget: the first request spends past $0.005 (6 tokens at $1000/M), the next is refused
    // until the UTC day ends.
    assert_eq!(send("k-cheap-000", body.clone()).await.0, 200);
    let (st, retry, v) = send("k-cheap-000", body.clone()).await;
    assert_eq!(st, 429, "{v}");
    assert_eq!(v["error"]["code"], "insufficient_quota");
    assert_eq!(v["error"]["type"], "insufficient_quota");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("daily"),
        "{v}"
    );
    let secs: u64 = retry.unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&secs), "{secs}");
    // /admin/keys shows each key's limits and spend (never the key itself).
    let keys = get_json(&c, &llmux.admin_url("/admin/keys")).await;
    let cheap = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "cheap")
        .unwrap()
        .clone();
    assert_eq!(cheap["limits"]["daily_usd"], 0.005, "{keys}");
    assert!(
        cheap["spent_today_usd"].as_f64().unwrap() >= 0.006,
        "{keys}"
    );
    assert!(
        !keys.to_string().contains("k-cheap-000"),
        "a key leaked: {keys}"
    );
    // The unlimited key is unaffected, and the log names each request's key.
    assert_eq!(send("k-free-000", body.clone()).await.0, 200);
    let log = get_json(&c, &llmux.admin_url("/admin/requests?limit=3")).await;
    assert_eq!(log["requests"][0]["key"], "free", "{log}");
}

/// With `[cluster]`, a key's budget and rate are shared by replicas through redis-server: three
/// replicas together spend no more than the budget (plus what one request costs), and the rate
/// is one rate, not one per replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_budgets_and_rates_are_shared_between_replicas() {
    let redis = Redis::start();
    let m = mock();
    let cfg = format!(
        r#"[cluster]
redis_url = "{url}"
local_share = 0.34
{keys}
[configs.main]
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "openai-main" }} ]

[pricing."gpt-4o-mini"]
input_per_mtok = 1000.0
output_per_mtok = 1000.0

[auth]
keys = [
  {{ name = "cheap", key_env = "K_CHEAP", budget_usd = {{ daily = 0.015 }} }},
  {{ name = "slow", key_env = "K_SLOW", rpm = 30 }},
  {{ name = "narrow", key_env = "K_NARROW", max_concurrent = 2 }},
]
"#,
        url = redis.url(),
        keys = provider_keys(&m)
    );
    let env = [
        ("K_CHEAP", "k-cheap-000"),
        ("K_SLOW", "k-slow-000"),
        ("K_NARROW", "k-narrow-000"),
    ];
    let replicas: Vec<Llmux> = (0..3)
        .map(|_| Llmux::start_with(&cfg, "default_config = \"main\"", &env))
        .collect();
    let c = client();
    for l in &replicas {
        wait_cluster_connected(&c, l).await;
    }
    let port = redis.url().rsplit(':').next().unwrap().to_owned();
    let spent = || {
        let out = std::process::Command::new("redis-cli")
            .args([
                "-p",
                &port,
                "--scan",
                "--pattern",
                "llmux:spend:key:cheap:d*",
            ])
            .output()
            .unwrap();
        let key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if key.is_empty() {
            return 0.0;
        }
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &port, "get", &key])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<f64>()
            .unwrap_or(0.0)
    };
    // Each request costs $0.006 (6 tokens at $1000/M): round-robin over the replicas, waiting
    // for each spend to land in Redis, until refused.
    let mut served = 0;
    for i in 0..9 {
        let l = &replicas[i % 3];
        let before = spent();
        let r = c
            .post(l.url("/v1/chat/completions"))
            .bearer_auth("k-cheap-000")
            .json(&chat_body("gpt-4o-mini"))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => {
                served += 1;
                for _ in 0..100 {
                    if spent() > before {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
            429 => {
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["error"]["code"], "insufficient_quota", "{v}");
            }
            s => panic!("unexpected {s}"),
        }
    }
    // 0.015 admits requests while spend < 0.015: three (0.018 spent); each replica alone
    // would have admitted three by itself (nine in all).
    assert_eq!(served, 3, "spent {}", spent());
    assert!(spent() < 0.015 + 0.0061, "{}", spent());

    // One rate for all: rpm 30 gives a burst of 3 across the replicas, not 3 each.
    let mut ok = 0;
    for i in 0..9 {
        let r = c
            .post(replicas[i % 3].url("/v1/chat/completions"))
            .bearer_auth("k-slow-000")
            .json(&chat_body("gpt-4o-mini"))
            .send()
            .await
            .unwrap();
        ok += (r.status() == 200) as u32;
    }
    // 9 requests in well under the 2 s one more cell takes: the burst of 3, maybe one more.
    assert!((3..=4).contains(&ok), "{ok} admitted");

    // One concurrency limit for all: 2 slow requests in flight anywhere, the others refused
    // (each replica alone would take 2); the slots come back when they end.
    m.set_behavior(
        "openai-main",
        Behavior {
            latency_ms: 800,
            ..Default::default()
        },
    );
    let fire = |i: usize, delay_ms: u64| {
        let (c, url) = (c.clone(), replicas[i % 3].url("/v1/chat/completions"));
        async move {
            tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
            c.post(&url)
                .bearer_auth("k-narrow-000")
                .json(&chat_body("gpt-4o-mini"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let statuses =
        futures_util::future::join_all((0..6).map(|i| fire(i, if i < 2 { 0 } else { 300 }))).await;
    assert_eq!(&statuses[..2], &[200, 200], "{statuses:?}");
    assert!(statuses[2..].iter().all(|s| *s == 429), "{statuses:?}");
    m.set_behavior("openai-main", Behavior::default());
    let mut again = 0;
    for _ in 0..50 {
        again = fire(0, 0).await;
        if again == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(again, 200, "the slots came back");
}

/// `/admin/usage`: per-key and per-metadata aggregates with cost and latency, as JSON and CSV,
/// persisted across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_reports_group_and_survive_a_restart() {
    let m = mock();
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        r#"{keys}
[usage]
path = "{path}"

[configs.main]
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "openai-main" }} ]

[pricing."gpt-4o-mini"]
input_per_mtok = 1000.0
output_per_mtok = 1000.0

[auth]
keys = [
  {{ name = "search", key_env = "K_SEARCH", metadata = {{ team = "search" }} }},
  {{ name = "ads", key_env = "K_ADS", metadata = {{ team = "ads" }} }},
]
"#,
        keys = provider_keys(&m),
        path = dir.path().join("usage.json").display()
    );
    let env = [("K_SEARCH", "k-search-00"), ("K_ADS", "k-ads-00")];
    let c = client();
    let send = |llmux: &Llmux, key: &'static str| {
        let (c, url) = (c.clone(), llmux.url("/v1/chat/completions"));
        async move {
            c.post(&url)
                .bearer_auth(key)
                .json(&chat_body("gpt-4o-mini"))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let mut llmux = Llmux::start_with(&cfg, "default_config = \"main\"", &env);
    for _ in 0..3 {
        assert_eq!(send(&llmux, "k-search-00").await, 200);
    }
    assert_eq!(send(&llmux, "k-ads-00").await, 200);
    let report = |llmux: &Llmux, q: &str| {
        let (c, url) = (c.clone(), llmux.admin_url(&format!("/admin/usage?{q}")));
        async move { get_json(&c, &url).await }
    };
    let by_key = report(&llmux, "group_by=key").await;
    let rows = by_key["rows"].as_array().unwrap();
    let row = |g: &str| rows.iter().find(|r| r["group"] == g).cloned().unwrap();
    assert_eq!(row("search")["requests"], 3, "{by_key}");
    assert_eq!(row("ads")["requests"], 1);
    assert!(
        (row("search")["cost_usd"].as_f64().unwrap() - 0.018).abs() < 1e-9,
        "{by_key}"
    );
    assert!(row("search")["p50_ms"].as_f64().unwrap() > 0.0);
    let by_team = report(&llmux, "group_by=metadata.team&bucket=day").await;
    assert_eq!(by_team["rows"].as_array().unwrap().len(), 2, "{by_team}");
    let csv = c
        .get(llmux.admin_url("/admin/usage?group_by=model&format=csv"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv.starts_with("start,group,requests,"), "{csv}");
    assert!(csv.lines().any(|l| l.contains(",gpt-4o-mini,4,")), "{csv}");
    // Saved at shutdown, read back at start.
    llmux.signal("TERM");
    assert_eq!(llmux.wait_exit(std::time::Duration::from_secs(10)), Some(0));
    let llmux = Llmux::start_with(&cfg, "default_config = \"main\"", &env);
    let again = report(&llmux, "group_by=key").await;
    let rows = again["rows"].as_array().unwrap();
    assert_eq!(
        rows.iter().find(|r| r["group"] == "search").unwrap()["requests"],
        3,
        "{again}"
    );
    let r = c
        .get(llmux.admin_url("/admin/usage?group_by=colour"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
