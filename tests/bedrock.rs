//! Amazon Bedrock (Converse) end to end: a real llmux process in front of the mock, whose
//! Bedrock accounts verify every SigV4 signature with their own implementation and stream
//! binary event-stream frames. The real `openai` Python SDK reads what llmux makes of them.

mod common;
#[expect(dead_code, reason = "a fixture with more knobs than these tests turn")]
#[path = "common/hostile.rs"]
mod hostile;

use std::process::Command;

use common::*;
use futures_util::StreamExt;
use llmux_mock::bedrock_keys as keys;
use serde_json::{json, Value};

const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

/// One bedrock virtual key `br` (credentials from the env vars BR_ID / BR_SECRET / BR_TOKEN
/// as `auth` names them) behind a `single` config that sets the model id.
fn config(m: &MockServer, auth: &str) -> String {
    format!(
        "[virtual_keys.br]\nprovider = \"bedrock\"\nbase_url = \"{}\"\nregion = \"eu-west-1\"\n{auth}\n\
         [configs.main]\nstrategy = {{ mode = \"single\" }}\n\
         targets = [ {{ virtual_key = \"br\", override_params = {{ model = \"{MODEL}\" }} }} ]\n",
        m.url("br")
    )
}

const SESSION: &str = "access_key_id_env = \"BR_ID\"\nsecret_access_key_env = \"BR_SECRET\"\nsession_token_env = \"BR_TOKEN\"\n";
const LONG_TERM: &str = "access_key_id_env = \"BR_ID\"\nsecret_access_key_env = \"BR_SECRET\"\n";

fn start(m: &MockServer, auth: &str, env: &[(&str, &str)]) -> Llmux {
    Llmux::start_with(&config(m, auth), "default_config = \"main\"", env)
}

async fn chat(l: &Llmux, body: &Value) -> (u16, Value) {
    let r = client()
        .post(l.url("/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[test]
fn python_sdk_streams_text_and_tool_calls_with_session_credentials() {
    let m = mock();
    let llmux = start(
        &m,
        SESSION,
        &[
            ("BR_ID", keys::SESSION_ACCESS_KEY_ID),
            ("BR_SECRET", keys::SESSION_SECRET_ACCESS_KEY),
            ("BR_TOKEN", keys::SESSION_TOKEN),
        ],
    );
    run_client(&python(), "python/bedrock_sdk.py", &llmux, &[]);
    let stats = m.stats("br");
    // Every request reached the mock signed and accepted; the http image never left llmux.
    assert_eq!(stats.statuses.get(&200).copied(), Some(5), "{stats:?}");
    assert_eq!(stats.by_endpoint.get("converse_stream").copied(), Some(2));
    assert!(
        stats
            .last_path
            .ends_with("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"),
        "{}",
        stats.last_path
    );
    assert_eq!(
        stats
            .last_headers
            .get("x-amz-security-token")
            .map(String::as_str),
        Some(keys::SESSION_TOKEN)
    );
    // Credentials stay out of the logs.
    let logs = llmux.logs();
    for secret in [keys::SESSION_SECRET_ACCESS_KEY, keys::SESSION_TOKEN] {
        assert!(!logs.contains(secret), "a secret in the logs:\n{logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_a_401_naming_the_target_never_the_secret() {
    let m = mock();
    for (auth, env) in [
        // A known key id with the wrong secret: the signature does not verify.
        (
            LONG_TERM,
            vec![
                ("BR_ID", keys::ACCESS_KEY_ID),
                ("BR_SECRET", "wrong/secret+VALUE"),
            ],
        ),
        // An unknown key id.
        (
            LONG_TERM,
            vec![
                ("BR_ID", "AKIAUNKNOWN000000000"),
                ("BR_SECRET", "wrong/secret+VALUE"),
            ],
        ),
        // Session keys without their token.
        (
            LONG_TERM,
            vec![
                ("BR_ID", keys::SESSION_ACCESS_KEY_ID),
                ("BR_SECRET", keys::SESSION_SECRET_ACCESS_KEY),
            ],
        ),
        // A wrong Bedrock API key.
        (
            "api_key_env = \"BR_SECRET\"\n",
            vec![("BR_SECRET", "ABSKwrongwrongwrong")],
        ),
    ] {
        let llmux = start(&m, auth, &env);
        let (status, v) = chat(&llmux, &chat_body("x")).await;
        assert_eq!(status, 401, "{v}");
        assert_eq!(v["error"]["type"], "authentication_error", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("bedrock target `br`"), "{msg}");
        for (_, secret) in &env {
            assert!(!v.to_string().contains(secret), "secret echoed: {v}");
        }
        // AWS's canonical request (after the first blank line) never reaches the client.
        assert!(!msg.contains("Canonical String"), "{msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_and_long_term_keys_are_accepted() {
    let m = mock();
    for (auth, env) in [
        (
            "api_key_env = \"BR_KEY\"\n",
            vec![("BR_KEY", keys::API_KEY)],
        ),
        (
            LONG_TERM,
            vec![
                ("BR_ID", keys::ACCESS_KEY_ID),
                ("BR_SECRET", keys::SECRET_ACCESS_KEY),
                // Even at trace level, no key reaches the logs.
                ("RUST_LOG", "trace"),
            ],
        ),
    ] {
        let llmux = start(&m, auth, &env);
        let (status, v) = chat(&llmux, &chat_body("x")).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["model"], MODEL);
        let logs = llmux.logs();
        for secret in [keys::API_KEY, keys::ACCESS_KEY_ID, keys::SECRET_ACCESS_KEY] {
            assert!(!logs.contains(secret), "{secret} logged");
        }
    }
    let h = &m.stats("br").last_headers;
    assert!(h.get("x-amz-security-token").is_none(), "{h:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_exceptions_become_openai_error_frames() {
    let m = mock();
    let llmux = start(
        &m,
        LONG_TERM,
        &[
            ("BR_ID", keys::ACCESS_KEY_ID),
            ("BR_SECRET", keys::SECRET_ACCESS_KEY),
        ],
    );
    m.set_behavior(
        "br",
        Behavior {
            stream_chunks: 4,
            stream_fail_after: Some(2),
            stream_fail_mode: StreamFailMode::ErrorEvent,
            ..Default::default()
        },
    );
    let r = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(
            &json!({"model": "x", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = String::new();
    let mut s = r.bytes_stream();
    while let Some(c) = s.next().await {
        body.push_str(&String::from_utf8_lossy(&c.unwrap()));
    }
    let datas = llmux::providers::stream::data_events(&body);
    let last: Value = serde_json::from_str(datas.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "rate_limit_error", "{body}");
    assert!(datas.iter().all(|d| d != "[DONE]"), "{body}");
    // Before commit, a throttled stream is an ordinary 429 (the target cools down).
    m.set_behavior(
        "br",
        Behavior {
            stream_fail_after: Some(0),
            stream_fail_mode: StreamFailMode::ErrorEvent,
            ..Default::default()
        },
    );
    let r = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(
            &json!({"model": "x", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
}

#[test]
fn check_config_names_the_missing_variable_and_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bedrock.toml");
    std::fs::write(
        &p,
        "[server]\nlisten = \"127.0.0.1:1\"\n\n[virtual_keys.br]\nprovider = \"bedrock\"\n\
         region = \"us-east-1\"\naccess_key_id_env = \"LLMUX_TEST_BR_ID\"\n\
         secret_access_key_env = \"LLMUX_TEST_BR_MISSING\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_llmux"))
        .arg("check-config")
        .arg(&p)
        .env("LLMUX_TEST_BR_ID", "AKIAX")
        .env_remove("LLMUX_TEST_BR_MISSING")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("bedrock.toml"), "{err}");
    assert!(
        err.contains("virtual_keys.br.secret_access_key_env")
            && err.contains("LLMUX_TEST_BR_MISSING"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_api_is_translated_to_converse() {
    let m = mock();
    let llmux = start(
        &m,
        LONG_TERM,
        &[
            ("BR_ID", keys::ACCESS_KEY_ID),
            ("BR_SECRET", keys::SECRET_ACCESS_KEY),
        ],
    );
    let post = |stream: bool| {
        client()
            .post(llmux.url("/v1/responses"))
            .json(&json!({"model": "x", "input": "Say hi", "instructions": "Be brief.", "stream": stream}))
            .send()
    };
    let r = post(false).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "response", "{v}");
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(
        v["output"][0]["content"][0]["text"], "Hello from mock br",
        "{v}"
    );
    assert!(m
        .stats("br")
        .last_body
        .unwrap()
        .to_string()
        .contains("Be brief."));
    let r = post(true).await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("event: response.output_text.delta"), "{text}");
    assert!(text.contains("event: response.completed"), "{text}");
    assert_eq!(
        m.stats("br").by_endpoint.get("converse_stream").copied(),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_cools_the_account_down_and_falls_back() {
    let m = mock();
    let cfg = format!(
        "[virtual_keys.br]\nprovider = \"bedrock\"\nbase_url = \"{}\"\nregion = \"eu-west-1\"\n{LONG_TERM}\n\
         [virtual_keys.oa]\nprovider = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"sk-test-000000\"\n\n\
         [configs.main]\nstrategy = {{ mode = \"fallback\" }}\n\
         targets = [ {{ virtual_key = \"br\", override_params = {{ model = \"{MODEL}\" }} }}, {{ virtual_key = \"oa\" }} ]\n",
        m.url("br"),
        m.url("oa")
    );
    let llmux = Llmux::start_with(
        &cfg,
        "default_config = \"main\"",
        &[
            ("BR_ID", keys::ACCESS_KEY_ID),
            ("BR_SECRET", keys::SECRET_ACCESS_KEY),
        ],
    );
    m.set_behavior(
        "br",
        Behavior {
            always_status: Some(429),
            ..Default::default()
        },
    );
    for _ in 0..2 {
        let (status, v) = chat(&llmux, &chat_body("gpt-4o")).await;
        assert_eq!(status, 200, "{v}");
    }
    // The ThrottlingException cooled the Bedrock account down: the second request skipped it.
    assert_eq!(m.stats("br").requests, 1);
    assert_eq!(m.stats("oa").requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_body_where_frames_belong_is_a_502_before_commit() {
    let h = hostile::Hostile::start();
    let cfg = format!(
        "[virtual_keys.br]\nprovider = \"bedrock\"\nbase_url = \"{}\"\nregion = \"eu-west-1\"\n{LONG_TERM}\n\
         [configs.main]\nstrategy = {{ mode = \"single\" }}\ntargets = [ {{ virtual_key = \"br\" }} ]\n",
        h.base_url("sse-drop")
    );
    let llmux = Llmux::start_with(
        &cfg,
        "default_config = \"main\"",
        &[
            ("BR_ID", keys::ACCESS_KEY_ID),
            ("BR_SECRET", keys::SECRET_ACCESS_KEY),
        ],
    );
    let r = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(
            &json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].is_string(), "{v}");
    let seen = h.seen("sse-drop");
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].path.ends_with("/model/m/converse-stream"),
        "{:?}",
        seen[0]
    );
    assert!(seen[0]
        .header("authorization")
        .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 ")));
}
