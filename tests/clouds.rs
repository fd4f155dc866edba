//! The seed scenario across clouds: Gemini and Bedrock accounts in one tree behind a real llmux
//! process, in front of the mock (which checks Gemini's key header and every Bedrock SigV4
//! signature). Load balancing splits by weight; a rate-limited Gemini account hands over to
//! Bedrock and cools down for the delay its 429 named.

mod common;

use common::*;
use llmux_mock::bedrock_keys as keys;
use serde_json::Value;

const GEMINI_KEY: &str = "gemini-test-key-0000000000";
const BEDROCK_MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

fn accounts(m: &MockServer) -> String {
    format!(
        r#"
[virtual_keys.gemini-main]
provider = "gemini"
base_url = "{g}"
api_key = "{GEMINI_KEY}"
rate_limit_cooldown_ms = 60000
max_retry_after_ms = 20000

[virtual_keys.bedrock-main]
provider = "bedrock"
base_url = "{b}"
region = "us-east-1"
access_key_id_env = "BR_ID"
secret_access_key_env = "BR_SECRET"
"#,
        g = m.url("gemini-main"),
        b = m.url("bedrock-main"),
    )
}

fn start(m: &MockServer, mode: &str) -> Llmux {
    let cfg = format!(
        r#"{accounts}
[configs.main]
strategy = {{ mode = "{mode}" }}
targets = [
  {{ virtual_key = "gemini-main", override_params = {{ model = "gemini-2.5-flash" }} }},
  {{ virtual_key = "bedrock-main", override_params = {{ model = "{BEDROCK_MODEL}" }} }},
]
"#,
        accounts = accounts(m)
    );
    Llmux::start_with(
        &cfg,
        "default_config = \"main\"",
        &[
            ("BR_ID", keys::ACCESS_KEY_ID),
            ("BR_SECRET", keys::SECRET_ACCESS_KEY),
        ],
    )
}

/// 50/50 between the clouds. 7,000 requests so that ±3 % is also the 10⁻⁶ bound
/// (`assert_share`): at 2,000 a fair split leaves ±3 % about once in 150 runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_and_bedrock_share_a_loadbalance_by_weight() {
    let m = mock();
    let llmux = start(&m, "loadbalance");
    let n = 7_000u64;
    let results = fire(
        &client(),
        &llmux.url("/v1/chat/completions"),
        n as usize,
        32,
        &[],
    )
    .await;
    let mut gemini = 0u64;
    for (status, h, body) in &results {
        assert_eq!(*status, 200, "{body}");
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["object"], "chat.completion", "{v}");
        match header(h, "x-llmux-virtual-key") {
            "gemini-main" => gemini += 1,
            "bedrock-main" => {}
            other => panic!("served by {other:?}"),
        }
    }
    let (lo, hi) = (n * 47 / 100, n * 53 / 100);
    assert!((lo..=hi).contains(&gemini), "{gemini} of {n} to Gemini");
    assert_share(gemini, n, 0.5, "Gemini's share");
    assert_eq!(m.stats("gemini-main").requests, gemini);
    assert_eq!(m.stats("bedrock-main").requests, n - gemini);
    // `/v1/models` lists the models the tree's leaves select on each cloud.
    let models = get_json(&client(), &llmux.url("/v1/models")).await;
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(ids.contains(&"gemini-2.5-flash"), "{models}");
    assert!(ids.contains(&BEDROCK_MODEL), "{models}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_gemini_falls_back_to_bedrock_and_cools_down_for_its_hint() {
    let m = mock();
    m.set_behavior(
        "gemini-main",
        Behavior {
            always_status: Some(429),
            retry_after_s: Some(7),
            ..Default::default()
        },
    );
    let llmux = start(&m, "fallback");
    let c = client();
    for _ in 0..3 {
        let r = c
            .post(llmux.url("/v1/chat/completions"))
            .json(&chat_body("gpt-4o"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(r.headers(), "x-llmux-virtual-key"), "bedrock-main");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["object"], "chat.completion", "{v}");
        assert!(
            v["choices"][0]["message"]["content"].as_str().is_some(),
            "{v}"
        );
    }
    // Only the first request met the 429; the others skipped Gemini while it cooled down,
    // for the 7 s its RetryInfo named, not the 60 s configured for hintless 429s.
    assert_eq!(m.stats("gemini-main").requests, 1);
    assert_eq!(m.stats("bedrock-main").requests, 3);
    let t = get_json(&c, &llmux.admin_url("/admin/targets/gemini-main")).await;
    let wait = t["retry_in_ms"].as_u64().unwrap_or(0);
    assert!((4_000..=7_000).contains(&wait), "cooldown {wait} ms: {t}");
}
