//! A Vertex AI target end to end, in front of the mock's Vertex URLs and OAuth2 token endpoint:
//! Gemini and Claude models through the real `openai` Python SDK (whole and streamed), the
//! access token fetched once and refreshed near expiry with one token call for many concurrent
//! requests, rejected credentials as an OpenAI-shaped 401 naming the target (and the tree
//! falling back), an unreachable token endpoint as a 503, and a missing key file refused by
//! `llmux check-config` with its tree path.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

const ACCOUNT: &str = "vx";

/// The test service account's key file with its `token_uri` at the mock (`fixture` names one
/// of `tests/fixtures/vertex-sa*.json`, test-only keys that grant nothing anywhere).
fn key_file(fixture: &str, token_uri: &str) -> String {
    let path = format!("{}/tests/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"));
    let mut sa: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    sa["token_uri"] = token_uri.into();
    sa.to_string()
}

/// A piece of the fixture's private key: must never show up in answers or logs.
fn key_fragment() -> String {
    let sa: Value = serde_json::from_str(include_str!("fixtures/vertex-sa.json")).unwrap();
    sa["private_key"].as_str().unwrap()[40..80].to_owned()
}

fn start(m: &MockServer, fixture: &str, extra_body: &str) -> Llmux {
    let cfg = format!(
        r#"
[virtual_keys.vertex-main]
provider = "vertex"
base_url = "{}"
project = "proj-1"
location = "us-east5"
credentials_file = "sa.json"

[configs.main]
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "vertex-main" }} ]
{extra_body}
"#,
        m.url(ACCOUNT)
    );
    let sa = key_file(fixture, &format!("{}/token", m.url(ACCOUNT)));
    Llmux::start_with_files(
        &cfg,
        "default_config = \"main\"",
        &[],
        &[("sa.json", &sa)],
        "",
    )
}

fn token_calls(m: &MockServer) -> u64 {
    m.stats(ACCOUNT)
        .by_endpoint
        .get("vertex_token")
        .copied()
        .unwrap_or(0)
}

#[test]
fn openai_python_sdk_through_vertex_gemini_and_claude() {
    let m = mock();
    let llmux = start(&m, "vertex-sa.json", "");
    run_client(
        &python(),
        "python/vertex_sdk.py",
        &llmux,
        &["gemini-2.5-flash", "claude-sonnet-4@20250514"],
    );
    let s = m.stats(ACCOUNT);
    for (endpoint, n) in [
        ("vertex_generate", 1),
        ("vertex_stream", 2),
        ("vertex_raw_predict", 1),
        ("vertex_stream_raw_predict", 2),
        // One token for the six calls.
        ("vertex_token", 1),
    ] {
        assert_eq!(s.by_endpoint.get(endpoint), Some(&n), "{endpoint}: {s:?}");
    }
    assert_eq!(s.statuses.get(&200), Some(&7), "{s:?}");
    assert!(
        s.last_path.starts_with(
            "/vx/v1/projects/proj-1/locations/us-east5/publishers/anthropic/models/claude-sonnet-4@20250514:streamRawPredict"
        ),
        "{}",
        s.last_path
    );
    let auth = s
        .last_headers
        .get("authorization")
        .cloned()
        .unwrap_or_default();
    assert!(auth.starts_with("Bearer ya29.mock-"), "{auth}");
    let logs = llmux.logs();
    assert!(
        !logs.contains(&key_fragment()),
        "the private key was logged"
    );
    assert!(!logs.contains(&auth[7..]), "the access token was logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_api_and_admin_output() {
    let m = mock();
    let llmux = start(&m, "vertex-sa.json", "");
    let c = client();
    // /v1/responses is translated to chat for both publishers.
    for model in ["gemini-2.5-flash", "claude-sonnet-4@20250514"] {
        let r = c
            .post(llmux.url("/v1/responses"))
            .json(&serde_json::json!({"model": model, "input": "Say hi"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{model}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["object"], "response", "{v}");
        let text = v["output"][0]["content"][0]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(text.starts_with("Hello from mock"), "{v}");
    }
    // Embeddings are refused before anything is sent.
    let r = c
        .post(llmux.url("/v1/embeddings"))
        .json(&serde_json::json!({"model": "text-embedding-005", "input": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16() / 100, 4);
    // The admin view names the account and its key file, never the key.
    let admin = get_text(&c, &llmux.admin_url("/admin/config")).await;
    assert!(
        admin.contains("llmux-test@llmux-test.iam.gserviceaccount.com"),
        "{admin}"
    );
    assert!(
        !admin.contains(&key_fragment()) && !admin.contains("PRIVATE KEY"),
        "{admin}"
    );
}

async fn chat_status(c: &reqwest::Client, llmux: &Llmux, model: &str) -> u16 {
    c.post(llmux.url("/v1/chat/completions"))
        .json(&chat_body(model))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn concurrent(c: &reqwest::Client, llmux: &Llmux, n: usize) {
    let all = (0..n).map(|i| {
        let model = if i % 2 == 0 {
            "gemini-2.5-flash"
        } else {
            "claude-sonnet-4@20250514"
        };
        chat_status(c, llmux, model)
    });
    for status in futures_util::future::join_all(all).await {
        assert_eq!(status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_cached_refreshed_near_expiry_and_fetched_once_for_concurrent_requests() {
    let m = mock();
    // A 4 s token: llmux refreshes it after 2 s and stops using it after 3.6 s.
    m.set_behavior(
        ACCOUNT,
        Behavior {
            token_expires_in_s: Some(4),
            ..Default::default()
        },
    );
    let llmux = start(&m, "vertex-sa.json", "");
    let c = client();
    // Cold: 16 concurrent requests, one token call.
    concurrent(&c, &llmux, 16).await;
    assert_eq!(token_calls(&m), 1);
    concurrent(&c, &llmux, 4).await;
    assert_eq!(token_calls(&m), 1, "a fresh token is reused");
    // Near expiry: one request refreshes while the others use the current token.
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    concurrent(&c, &llmux, 16).await;
    assert_eq!(token_calls(&m), 2);
    // Expired: one fetch, everyone waits for it.
    tokio::time::sleep(Duration::from_millis(4_200)).await;
    concurrent(&c, &llmux, 16).await;
    assert_eq!(token_calls(&m), 3);
    let s = m.stats(ACCOUNT);
    assert_eq!(s.statuses.get(&401), None, "a stale token was sent: {s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_credentials_are_a_401_naming_the_target_and_the_tree_falls_back() {
    let m = mock();
    // Signed with a key the token endpoint does not know.
    let llmux = start(
        &m,
        "vertex-sa-wrong.json",
        &format!(
            r#"
[virtual_keys.openai-main]
provider = "openai"
base_url = "{}/v1"

[configs.fb]
strategy = {{ mode = "fallback" }}
targets = [
  {{ virtual_key = "vertex-main", override_params = {{ model = "gemini-2.5-flash" }} }},
  {{ virtual_key = "openai-main" }},
]
"#,
            m.url("openai-main")
        ),
    );
    let c = client();
    let r = c
        .post(llmux.url("/v1/chat/completions"))
        .json(&chat_body("gemini-2.5-flash"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let text = r.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["type"], "authentication_error", "{v}");
    assert_eq!(v["error"]["code"], "vertex_credentials_rejected", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("vertex-main") && msg.contains("Invalid JWT Signature"),
        "{msg}"
    );
    assert!(
        !text.contains(&key_fragment()) && !text.contains("eyJ"),
        "{text}"
    );
    assert_eq!(m.stats(ACCOUNT).by_endpoint.get("vertex_generate"), None);

    let r = c
        .post(llmux.url("/v1/chat/completions"))
        .header("x-portkey-config", "fb")
        .json(&chat_body("gpt-4o"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert!(
        !llmux.logs().contains(&key_fragment()),
        "the key was logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_token_endpoint_is_a_503() {
    let m = mock();
    m.set_behavior(
        ACCOUNT,
        Behavior {
            token_status: Some(500),
            ..Default::default()
        },
    );
    let llmux = start(&m, "vertex-sa.json", "");
    let r = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&chat_body("gemini-2.5-flash"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "vertex_token_unavailable", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("vertex-main"),
        "{v}"
    );
}

#[test]
fn a_missing_key_file_fails_check_config_with_its_tree_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(
        &p,
        "[server]\nlisten = \"127.0.0.1:1\"\n\n[virtual_keys.vx]\nprovider = \"vertex\"\n\
         project = \"p\"\nlocation = \"global\"\ncredentials_file = \"missing-sa.json\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_llmux"))
        .arg("check-config")
        .arg(&p)
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("virtual_keys.vx.credentials_file") && err.contains("missing-sa.json"),
        "{err}"
    );
    // Neither a file nor GOOGLE_APPLICATION_CREDENTIALS: the fix is named.
    std::fs::write(
        &p,
        "[server]\nlisten = \"127.0.0.1:1\"\n\n[virtual_keys.vx]\nprovider = \"vertex\"\n\
         project = \"p\"\nlocation = \"global\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_llmux"))
        .arg("check-config")
        .arg(&p)
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("virtual_keys.vx.credentials_file")
            && err.contains("GOOGLE_APPLICATION_CREDENTIALS"),
        "{err}"
    );
}
