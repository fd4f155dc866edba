//! Bad input gets a clear OpenAI-shaped error with the right status, never a crash or a hang;
//! invalid configs are refused with the file and the path in the tree.

mod common;

use std::process::Command;

use common::*;
use serde_json::{json, Value};

fn one_target(m: &MockServer) -> String {
    format!(
        r#"
[virtual_keys.openai-main]
provider = "openai"
base_url = "{}/v1"

[configs.main]
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "openai-main" }} ]
"#,
        m.url("openai-main")
    )
}

fn assert_openai_error(v: &Value) {
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(
        e.get("type").is_some() && e.get("param").is_some() && e.get("code").is_some(),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_errors() {
    let m = mock();
    let llmux = Llmux::start_with(
        &one_target(&m),
        "default_config = \"main\"\nmax_body_bytes = 65536",
        &[],
    );
    let c = client();
    let url = llmux.url("/v1/chat/completions");
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        ("malformed json", c.post(&url).header("content-type", "application/json").body("{\"model\": "), 400),
        ("not an object", c.post(&url).body("[1,2,3]"), 400),
        ("messages missing", c.post(&url).json(&json!({"model": "x"})), 400),
        ("messages wrong type", c.post(&url).json(&json!({"model": "x", "messages": "hi"})), 400),
        ("messages empty", c.post(&url).json(&json!({"model": "x", "messages": []})), 400),
        ("role missing", c.post(&url).json(&json!({"model": "x", "messages": [{"content": "hi"}]})), 400),
        ("model wrong type", c.post(&url).json(&json!({"model": 5, "messages": [{"role": "user", "content": "hi"}]})), 400),
        ("max_tokens wrong type", c.post(&url).json(&json!({"model": "x", "max_tokens": "many", "messages": [{"role": "user", "content": "hi"}]})), 400),
        ("unknown config id", c.post(&url).header("x-portkey-config", "nope").json(&chat_body("x")), 400),
        ("inline config unknown vk", c.post(&url).header("x-portkey-config", r#"{"virtual_key":"evil"}"#).json(&chat_body("x")), 400),
        ("inline config smuggles a host", c.post(&url).header("x-portkey-config", r#"{"provider":"openai","api_key":"k","custom_host":"http://10.0.0.1"}"#).json(&chat_body("x")), 400),
        ("inline config not json", c.post(&url).header("x-portkey-config", "{oops").json(&chat_body("x")), 400),
        ("unknown virtual key", c.post(&url).header("x-portkey-virtual-key", "nope").json(&chat_body("x")), 400),
        ("huge body", c.post(&url).json(&json!({"model": "x", "messages": [{"role": "user", "content": "a".repeat(100_000)}]})), 413),
        ("deep nesting", c.post(&url).header("content-type", "application/json").body(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000))), 400),
        ("unknown path", c.post(llmux.url("/v1/nope")).json(&json!({})), 404),
        ("embeddings without input", c.post(llmux.url("/v1/embeddings")).json(&json!({"model": "e"})), 400),
    ];
    for (name, req, want) in cases {
        let r = req.send().await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.status().as_u16(), want, "{name}");
        let v: Value = r
            .json()
            .await
            .unwrap_or_else(|e| panic!("{name}: body not JSON: {e}"));
        assert_openai_error(&v);
    }
    // Inline config errors name the path inside the header's JSON.
    let r = c
        .post(&url)
        .header("x-portkey-config", r#"{"strategy":{"mode":"fallback"},"targets":[{"virtual_key":"openai-main"},{"virtual_key":"evil"}]}"#)
        .json(&chat_body("x"))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-portkey-config.targets[1].virtual_key"),
        "{v}"
    );
    // Oversized headers: 431 (over max_header_bytes, 64 KiB by default), or refused by the HTTP
    // layer itself when far larger.
    let r = c
        .post(&url)
        .header("x-big", "a".repeat(100_000))
        .json(&chat_body("x"))
        .send()
        .await;
    let status = r.as_ref().map(|r| r.status().as_u16());
    assert!(
        matches!(status, Ok(431) | Err(_)),
        "oversized headers refused: {status:?}"
    );
    // The mock never saw any of them, and llmux is still healthy.
    assert_eq!(m.stats("openai-main").requests, 0);
    let r = c.post(&url).json(&chat_body("x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_garbage_and_unreachable_targets() {
    let m = mock();
    let dead = free_port();
    let cfg = format!(
        r#"
[virtual_keys.dead]
provider = "openai-compatible"
base_url = "http://127.0.0.1:{dead}/v1"

[virtual_keys.live]
provider = "openai"
base_url = "{}/v1"

[configs.main]
strategy = {{ mode = "fallback" }}
targets = [ {{ virtual_key = "dead" }}, {{ virtual_key = "live" }} ]

[configs.deadonly]
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "dead" }} ]
"#,
        m.url("live")
    );
    let llmux = Llmux::start_with(&cfg, "default_config = \"main\"", &[]);
    let c = client();
    let url = llmux.url("/v1/chat/completions");
    let r = c.post(&url).json(&chat_body("x")).send().await.unwrap();
    assert_eq!(r.status(), 200, "connection refused falls back");
    assert_eq!(header(r.headers(), "x-llmux-virtual-key"), "live");
    let r = c
        .post(&url)
        .header("x-portkey-config", "deadonly")
        .json(&chat_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_openai_error(&v);
}

fn check_config(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_llmux"))
        .arg("check-config")
        .arg(&p)
        .env_remove("LLMUX_TEST_MISSING")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn invalid_configs_name_file_and_path() {
    let base = r#"
[server]
listen = "127.0.0.1:1"

[virtual_keys.a]
provider = "openai"

[virtual_keys.b]
provider = "openai"
"#;
    let cases = [
        ("[configs.main]\nstrategy = { mode = \"loadbalance\" }\ntargets = [ { virtual_key = \"a\" }, { strategy = { mode = \"fallback\" }, targets = [ { virtual_key = \"zzz\" } ] } ]",
         "configs.main.targets[1].targets[0].virtual_key"),
        ("[configs.main]\nstrategy = { mode = \"loadbalance\" }\ntargets = [ { virtual_key = \"a\", weight = -0.5 } ]", "configs.main.targets[0].weight"),
        ("[configs.main]\nstrategy = { mode = \"loadbalance\" }\ntargets = []", "configs.main.targets"),
        ("[configs.main]\nstrategy = { mode = \"fallback\" }\ntargets = []", "configs.main.targets"),
        ("[configs.main]\nstrategy = { mode = \"fallback\" }\ntargets = [ { virtual_key = \"a\", colour = 1 } ]", "configs.main.targets[0]"),
        ("[configs.main]\nstrategy = { mode = \"conditional\" }\ntargets = [ { virtual_key = \"a\" } ]", "configs.main.strategy.conditions"),
        ("[configs.main]\nstrategy = { mode = \"conditional\", conditions = [ { query = { \"metadata.plan\" = \"paid\" }, then = \"smart\" } ] }\ntargets = [ { name = \"cheap\", virtual_key = \"a\" } ]", "configs.main.strategy.conditions[0].then"),
        ("[configs.main]\nstrategy = { mode = \"conditional\", default = \"nope\" }\ntargets = [ { name = \"cheap\", virtual_key = \"a\" } ]", "configs.main.strategy.default"),
        ("[configs.main]\nstrategy = { mode = \"fallback\" }\ntargets = [ { strategy = { mode = \"conditional\", conditions = [ { query = { \"metadata.plan\" = { \"$regex\" = \"(\" } }, then = \"x\" } ] }, targets = [ { name = \"x\", virtual_key = \"a\" } ] } ]", "configs.main.targets[0].strategy.conditions[0].query.metadata.plan.$regex"),
        ("[configs.main]\nstrategy = { mode = \"conditional\", conditions = [ { query = { \"params.n\" = { \"$near\" = 1 } }, then = \"x\" } ] }\ntargets = [ { name = \"x\", virtual_key = \"a\" } ]", "configs.main.strategy.conditions[0].query.params.n.$near"),
        ("[configs.main]\nstrategy = { mode = \"conditional\", default = \"x\" }\ntargets = [ { name = \"x\", virtual_key = \"a\" }, { name = \"x\", virtual_key = \"b\" } ]", "configs.main.targets[1].name"),
        ("[configs.main]\nstrategy = { mode = \"fallback\", default = \"x\" }\ntargets = [ { name = \"x\", virtual_key = \"a\" } ]", "configs.main.strategy"),
        ("[virtual_keys.c]\nprovider = \"openai\"\napi_key_env = \"LLMUX_TEST_MISSING\"", "virtual_keys.c.api_key_env"),
        ("[virtual_keys.c]\nprovider = \"azure-openai\"\nbase_url = \"https://x.openai.azure.com\"", "virtual_keys.c.deployment"),
        ("[virtual_keys.c]\nprovider = \"martian\"", "virtual_keys.c.provider"),
        ("[auth]\nkeys = [ { name = \"k\", sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\", configs = [\"nope\"] } ]", "auth.keys[0].configs"),
        ("[auth]\nkeys = [ { name = \"k\", sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\", virtual_keys = [\"nope\"] } ]", "auth.keys[0].virtual_keys"),
        // Passes the config's own checks; the provider's URL building refuses it.
        ("[virtual_keys.c]\nprovider = \"openai\"\nbase_url = \"http://exa mple.com/v1\"", "virtual_keys.c.base_url"),
    ];
    for (extra, path) in cases {
        let (ok, err) = check_config(&format!("{base}\n{extra}\n"));
        assert!(!ok, "accepted: {extra}");
        assert!(err.contains("bad.toml"), "names the file: {err}");
        assert!(err.contains(path), "names {path}: {err}");
    }
    let (ok, err) = check_config(&format!("{base}\n[configs.main]\nstrategy = {{ mode = \"fallback\" }}\ntargets = [ {{ virtual_key = \"a\" }}, {{ virtual_key = \"b\", weight = 0 }} ]\n"));
    assert!(ok, "{err}");
    // A conditional node in TOML: operators are quoted keys.
    let (ok, err) = check_config(&format!(
        "{base}\n[configs.main]\nstrategy = {{ mode = \"conditional\", default = \"cheap\", conditions = [\
         {{ query = {{ \"metadata.plan\" = {{ \"$eq\" = \"paid\" }} }}, then = \"smart\" }},\
         {{ query = {{ \"$or\" = [ {{ \"params.model\" = \"gpt-4o\" }}, {{ \"params.temperature\" = {{ \"$gt\" = 0.7 }} }} ] }}, then = \"smart\" }} ] }}\n\
         targets = [ {{ name = \"smart\", virtual_key = \"a\" }}, {{ name = \"cheap\", strategy = {{ mode = \"loadbalance\" }}, targets = [ {{ virtual_key = \"a\" }}, {{ virtual_key = \"b\" }} ] }} ]\n"
    ));
    assert!(ok, "{err}");

    // The daemon refuses to start on the same errors, and the shipped example is valid.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, format!("{base}\n[configs.main]\nstrategy = {{ mode = \"single\" }}\ntargets = [ {{ virtual_key = \"nope\" }} ]\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_llmux"))
        .arg("--config")
        .arg(&p)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("configs.main.targets[0].virtual_key"));
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_llmux"))
        .arg("check-config")
        .arg(example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `examples/production.toml` is a config llmux accepts once its secrets exist: every provider
/// kind it shows is checked the way a real deployment's would be.
#[test]
fn the_production_example_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/production.toml");
    let p = dir.path().join("config.toml");
    std::fs::copy(src, &p).unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(
        dir.path().join("secrets/openai-backup.key"),
        "sk-backup-000000\n",
    )
    .unwrap();
    // The test-only service account (tests/fixtures/README.md): its key must parse at load.
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vertex-sa.json"),
        dir.path().join("secrets/vertex-sa.json"),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llmux"));
    cmd.arg("check-config").arg(&p);
    for var in [
        "LLMUX_ADMIN_TOKEN",
        "LLMUX_KEY_APP_A",
        "OPENAI_API_KEY",
        "AZURE_OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "BEDROCK_ACCESS_KEY_ID",
        "BEDROCK_SECRET_ACCESS_KEY",
    ] {
        cmd.env(var, format!("test-value-for-{var}"));
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
