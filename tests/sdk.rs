//! The real `openai` Python SDK against a real llmux process (installed into `.venv` by
//! `make test` / `.ci/run`).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("LLMUX_PYTHON") {
        return p.into();
    }
    let venv = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python"));
    assert!(
        venv.exists(),
        "{} missing: run `make test` (it creates the venv with the openai SDK) or set LLMUX_PYTHON",
        venv.display()
    );
    venv
}

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

pub fn run_sdk_script(llmux: &Llmux, mode: &str) {
    let out = Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/openai_sdk.py"
        ))
        .arg(llmux.url("/v1"))
        .arg("unused")
        .arg(mode)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "SDK script failed:\n{stdout}\n{stderr}\nllmux log:\n{}",
        llmux.logs()
    );
    assert!(stdout.contains("passed, 0 failed"), "{stdout}");
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
    let out = Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/portkey_sdk.py"
        ))
        .arg(llmux.url("/v1"))
        .arg("gateway-key-for-sdk")
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Portkey SDK script failed:\n{stdout}\n{stderr}\nllmux log:\n{}",
        llmux.logs()
    );
    assert!(stdout.contains("passed, 0 failed"), "{stdout}");
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
    let out = Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/node/clients.mjs"
        ))
        .arg(llmux.url("/v1"))
        .arg("node-gateway-key")
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Node SDK script failed:\n{stdout}\n{stderr}\nllmux log:\n{}",
        llmux.logs()
    );
    assert!(stdout.contains("passed, 0 failed"), "{stdout}");
    assert!(
        llmux.logs().contains("node-portkey-trace"),
        "the Portkey SDK's trace id reached llmux"
    );
}
