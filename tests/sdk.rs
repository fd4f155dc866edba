//! The real `openai` Python SDK against a real llmux process (installed into `.venv` by
//! `make test` / `.ci/run`).

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn config(m: &MockServer) -> String {
    format!(
        r#"
[virtual_keys.openai-main]
provider = "openai"
base_url = "{}/v1"

[virtual_keys.anthropic-main]
provider = "anthropic"
base_url = "{}"

[configs.main]
strategy = {{ mode = "fallback" }}
targets = [ {{ virtual_key = "openai-main" }}, {{ virtual_key = "anthropic-main" }} ]
"#,
        m.url("openai-main"),
        m.url("anthropic-main")
    )
}

fn run_sdk_script(llmux: &Llmux, mode: &str) {
    run_client(&python(), "python/openai_sdk.py", llmux, &["unused", mode]);
}

#[test]
fn openai_python_sdk_chat() {
    let m = mock();
    let llmux = Llmux::start_with(&config(&m), "default_config = \"main\"", &[]);
    run_sdk_script(&llmux, "core");
    assert!(m.stats("openai-main").requests >= 1);
    assert!(m.stats("anthropic-main").requests >= 1);
}

#[test]
fn openai_python_sdk_streams_and_embeddings() {
    let m = mock();
    let llmux = Llmux::start_with(&config(&m), "default_config = \"main\"", &[]);
    run_sdk_script(&llmux, "stream");
}

#[test]
fn portkey_python_sdk_with_gateway_auth() {
    let m = mock();
    let cfg = format!(
        "{}\n[configs.anthropic-only]\nstrategy = {{ mode = \"single\" }}\ntargets = [ {{ virtual_key = \"anthropic-main\" }} ]\n\n[auth]\nkeys = [ {{ name = \"sdk\", key_env = \"LLMUX_SDK_KEY\" }} ]\n",
        config(&m)
    );
    let llmux = Llmux::start_with(&cfg, "", &[("LLMUX_SDK_KEY", "gateway-key-for-sdk")]);
    run_client(
        &python(),
        "python/portkey_sdk.py",
        &llmux,
        &["gateway-key-for-sdk"],
    );
    // The SDK's headers arrived as the Portkey gateway would see them.
    let log = llmux.logs();
    assert!(log.contains("portkey-sdk-trace"));
}

#[test]
fn node_openai_and_portkey_sdks() {
    let modules = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/node/node_modules"
    ));
    assert!(
        modules.exists(),
        "{} missing: run `make test` (it runs npm ci in tests/node)",
        modules.display()
    );
    let m = mock();
    let cfg = format!(
        "{}\n[auth]\nkeys = [ {{ name = \"node\", key_env = \"LLMUX_NODE_KEY\" }} ]\n",
        config(&m)
    );
    let llmux = Llmux::start_with(
        &cfg,
        "default_config = \"main\"",
        &[("LLMUX_NODE_KEY", "node-gateway-key")],
    );
    run_client(
        Path::new("node"),
        "node/clients.mjs",
        &llmux,
        &["node-gateway-key"],
    );
    assert!(
        llmux.logs().contains("node-portkey-trace"),
        "the Portkey SDK's trace id reached llmux"
    );
    // The SDK's `metadata` arrived as x-portkey-metadata and is on the request log.
    let url = llmux.admin_url("/admin/requests?metadata._user=node-user&metadata.plan=paid");
    let log: serde_json::Value = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(get_json(&client(), &url));
    assert_eq!(
        log["requests"][0]["trace_id"], "node-portkey-trace",
        "{log}"
    );
    // Its conditional config routed by the metadata it sent.
    for (trace, vk, path) in [
        ("node-cond-paid", "openai-main", "config.targets[0]"),
        ("node-cond-free", "anthropic-main", "config.targets[1]"),
    ] {
        let url = llmux.admin_url(&format!("/admin/requests?trace_id={trace}"));
        let log: serde_json::Value = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(get_json(&client(), &url));
        let entry = &log["requests"][0];
        assert_eq!(entry["virtual_key"], vk, "{log}");
        assert_eq!(entry["served_by"], path, "{log}");
    }
}
